"""`methane-seg sources`: leak coordinates of the served graph (in process) against the simulator's
true sources, with a table, JSON and PNG (training/sources.py)."""

import json

import pytest
from PIL import Image

from methane_seg.cli import main


def test_sources_report_on_a_few_scenes(tmp_path, capsys):
    out = tmp_path / "sources"
    assert main(["sources", "--n", "6", "--seed", "3100000", "--quiet", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "served model's mask" in table and "within 2 px" in table
    doc = json.loads((out / "sources.json").read_text())
    assert doc["settings"]["n"] == 6 and doc["settings"]["views"] == 2  # as the client asks by default
    errors, summary = doc["errors_px"], doc["summary"]
    assert set(errors) == {"model", "model_heat_top", "model_no_heat", "model_no_facility", "model_wind",
                           "model_no_join", "model_keep_sourceless", "truth"}
    assert all(len(e) == 6 for e in errors.values())  # each scene's list of source points' errors
    for variant, r in summary.items():  # every point is counted, and each scene's nearest among them
        assert r["points"] == sum(map(len, errors[variant])) >= r["found"], variant
    # joining a plume's downwind puffs to it only removes points, never the nearest one
    assert summary["model"]["points"] <= summary["model_no_join"]["points"]
    assert [min(e, default=None) for e in errors["model"]] == [min(e, default=None) for e in errors["model_no_join"]]
    # dropping small pieces without a source only removes points
    assert summary["model"]["points"] <= summary["model_keep_sourceless"]["points"]
    # The simulator's own masks are always found, and the source step puts nearly all of their
    # sources within 2 px (measured: 6 of these 6).
    assert summary["truth"]["found"] == 6 and summary["truth"]["within_2px"] >= 5 / 6
    # The served single-pass graph finds 4 of these 6 plumes on simulator 2.0's surfaces (measured;
    # 6 of 6 on the simulator it was designed on); the 4 sources all within 2 px with the heat map in
    # two views (median 0.55 px), the same with its highest peak alone or traced from the mask (0.63 px).
    assert summary["model"]["found"] >= 4 and summary["model"]["within_2px"] >= 3 / 4
    assert summary["model_heat_top"]["within_2px"] >= 5 / 6
    assert summary["model"]["median_px"] <= 1.5
    assert summary["model_no_heat"]["within_2px"] >= 5 / 6 and summary["model_no_heat"]["median_px"] <= 1.0
    with Image.open(out / "sources.png") as png:
        assert png.size[0] > 400


@pytest.mark.parametrize("args, message", [
    (["--model-dir", "no/such/folder"], "no metadata.json"),
    (["--model-dir", "TMP/broken"], "is not the exporter's JSON"),
    (["--model-dir", "TMP/empty"], "names model_int8.onnx, which is not in"),
    (["--n", "0"], "--n must be at least 1"),
    (["--q", "-5"], "--q positive"),
    (["--q", "inf"], "--q positive"),
    (["--views", "3"], "invalid choice"),
])
def test_sources_bad_options(tmp_path, capsys, args, message):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "metadata.json").write_text("{not json")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "metadata.json").write_text('{"cpu_onnx_file": "model_int8.onnx"}')
    args = [a.replace("TMP", str(tmp_path)) for a in args]
    try:
        code = main(["sources", "--n", "1", "--quiet", *args])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    assert message in capsys.readouterr().err
