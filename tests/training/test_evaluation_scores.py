"""`methane-seg evaluate` on simulated truth and prediction GeoTIFFs."""

import json
import shutil

import numpy as np
import pytest
import rasterio

from methane_seg.cli import main
from training.simulate import simulate_scene, write_sim_scene


@pytest.fixture(scope="module")
def truth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("truth")
    write_sim_scene(out, "a", simulate_scene(seed=2_000_001, size=128, n_sources=1, q_kg_h=8000, wind_ms=3, clouds=False))
    write_sim_scene(out, "b", simulate_scene(seed=2_000_002, size=128, n_sources=0))
    write_sim_scene(out, "c", simulate_scene(seed=2_000_003, size=128, n_sources=1, q_kg_h=500, wind_ms=5))
    return out


def perfect_predictions(truth_dir, pred_dir):
    pred_dir.mkdir()
    for mask_path in truth_dir.glob("*_mask.tif"):
        stem = mask_path.name[: -len("_mask.tif")]
        shutil.copy(mask_path, pred_dir / mask_path.name)
        with rasterio.open(mask_path) as src:
            profile = src.profile
            profile.update(dtype="float32", nodata=None)
            with rasterio.open(pred_dir / f"{stem}_prob.tif", "w", **profile) as dst:
                dst.write(src.read(1).astype(np.float32), 1)


def test_perfect_predictions_score_one(truth_dir, tmp_path, capsys):
    pred = tmp_path / "pred"
    perfect_predictions(truth_dir, pred)
    assert main(["evaluate", "--truth", str(truth_dir), "--pred", str(pred), "--json", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["all"]["pooled_iou"] == 1.0 and report["all"]["seed_ap"] == 1.0
    assert report["all"]["detection"]["false_positive_rate"] == 0.0
    assert report["by_q_bin"][">10000"]["plumes"] == 0 and report["by_q_bin"]["3000-10000"]["plumes"] == 1
    assert "IoU" in capsys.readouterr().out


def test_empty_predictions_score_zero(truth_dir, tmp_path):
    pred = tmp_path / "pred"
    perfect_predictions(truth_dir, pred)
    for path in pred.glob("*.tif"):
        with rasterio.open(path, "r+") as ds:
            ds.write(np.zeros((ds.height, ds.width), ds.dtypes[0]), 1)
    assert main(["evaluate", "--truth", str(truth_dir), "--pred", str(pred), "--json", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["all"]["pooled_iou"] == 0.0 and report["all"]["detection"]["recall"] == 0.0


def test_missing_prediction_is_a_clear_error(truth_dir, tmp_path, capsys):
    pred = tmp_path / "pred"
    perfect_predictions(truth_dir, pred)
    (pred / "a_prob.tif").unlink()
    assert main(["evaluate", "--truth", str(truth_dir), "--pred", str(pred)]) == 2
    assert "missing file" in capsys.readouterr().err


def test_grid_mismatch_is_a_clear_error(truth_dir, tmp_path, capsys):
    pred = tmp_path / "pred"
    perfect_predictions(truth_dir, pred)
    with rasterio.open(pred / "a_prob.tif", "r+") as ds:
        t = ds.transform
        ds.transform = rasterio.Affine(t.a, t.b, t.c + 100, t.d, t.e, t.f)
    assert main(["evaluate", "--truth", str(truth_dir), "--pred", str(pred)]) == 2
    assert "not on the truth's grid" in capsys.readouterr().err


def test_report_perfect_against_baseline(truth_dir, tmp_path):
    """`methane-seg report`: markdown with every figure and PNG it names; a perfect predictor reads 1."""
    pred = tmp_path / "pred"
    perfect_predictions(truth_dir, pred)
    base = tmp_path / "base"
    scenes = sorted(p for p in truth_dir.glob("*.tif") if not p.name.endswith("_mask.tif"))
    assert main(["baseline", *map(str, scenes), "--out", str(base)]) == 0
    out = tmp_path / "report"
    assert main(["report", "--truth", str(truth_dir), "--pred", str(pred), "--baseline", str(base),
                 "--out", str(out), "--quiet"]) == 0
    md = (out / "report.md").read_text()
    assert "| pooled pixel IoU, Q ≥ 1000 kg/h | 1.000 |" in md
    assert "| plume-free scenes flagged | 0.0 % |" in md
    for png in ("pr_curve.png", "detection_vs_q.png", "iou_by_surface.png", "gallery.png"):
        assert f"({png})" in md and (out / png).stat().st_size > 2000
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert set(evaluation) == {"model", "baseline"}


def test_report_refuses_missing_predictions(truth_dir, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", "--truth", str(truth_dir), "--pred", str(empty), "--out", str(tmp_path / "r")]) == 2
    assert "missing file" in capsys.readouterr().err


def test_ceiling_shares_grow_as_the_noise_to_see_through_shrinks(tmp_path):
    """training/ceiling.py re-simulates scenes written by `methane-seg simulate` and reports, per
    detector, the share of labelled pixels whose signal clears 1 and 2 noise sigmas: shares between
    0 and 1, fewer at 2 sigma than at 1, and a perfect background sees at least what the reference
    pass lets through (it has only the target's B12 noise)."""
    from training.ceiling import DETECTORS, SIGMAS, ceiling, table

    assert main(["simulate", "--out", str(tmp_path), "--n", "3", "--size", "128", "--split", "test",
                 "--seed", "2", "--workers", "1"]) == 0
    result = ceiling(tmp_path, progress=False)["all"]
    assert result["labelled_pixels"] > 0
    for det in DETECTORS:
        one, two = (result[f"{det}_{k:g}sigma"] for k in SIGMAS)
        assert 0 <= two <= one <= 1, (det, one, two)
    assert result["perfect_background_2sigma"] >= result["reference_2sigma"]
    assert "| all |" in table({"all": result})


def test_side_by_side_puts_evaluations_in_one_table(truth_dir, tmp_path, capsys):
    from training.side_by_side import main as side_by_side

    perfect_predictions(truth_dir, tmp_path / "perfect")
    assert main(["evaluate", "--truth", str(truth_dir), "--pred", str(tmp_path / "perfect"),
                 "--json", str(tmp_path / "p.json")]) == 0
    assert main(["baseline", *map(str, sorted(truth_dir.glob("?.tif"))), "--out", str(tmp_path / "mbmp")]) == 0
    assert main(["evaluate", "--truth", str(truth_dir), "--pred", str(tmp_path / "mbmp"),
                 "--json", str(tmp_path / "m.json")]) == 0
    out = tmp_path / "t.md"
    assert side_by_side([f"perfect={tmp_path / 'p.json'}", f"MBMP={tmp_path / 'm.json'}", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| 3 test scenes | perfect | MBMP |" in text
    assert "| pooled pixel IoU, Q ≥ 1000 kg/h / all | 1.000 / 1.000 |" in text
    assert "| 3000-10000 | 1 | 100.0 % / 1.000 / 1.000 |" in text
    with pytest.raises(SystemExit):
        side_by_side(["nameless.json"])
    assert "NAME=EVAL.json" in capsys.readouterr().err
