"""The classical B12/B11-ratio baseline: same outputs as `segment`, finds the core of a strong plume."""

import numpy as np
import rasterio

from methane_seg.cli import main
from training.simulate import simulate_scene, write_sim_scene


def test_mbmp_baseline_finds_the_core_of_a_strong_desert_plume(tmp_path):
    """A 12-band document with a clear reference: the default method is then MBMP, which finds most of
    a strong plume on dune sand, where the single-date ratio is lost in the sand's SWIR texture
    (measured on this scene: MBMP 268 of its 405 pixels on the plume, the ratio 39 of 479)."""
    sim = simulate_scene(seed=1_000_001, size=256, n_sources=1, q_kg_h=15000, wind_ms=2, clouds=False,
                         surface="desert_sand", ref_clouds=False, reference_plume=False)
    path = write_sim_scene(tmp_path, "desert", sim)
    assert main(["baseline", str(path), "--out", str(tmp_path / "out")]) == 0
    with rasterio.open(tmp_path / "out" / "desert_mask.tif") as ds, rasterio.open(path) as src:
        mask = ds.read(1)
        assert (ds.crs, ds.transform, ds.shape) == (src.crs, src.transform, src.shape)
    hits = np.logical_and(mask == 1, sim.mask == 1).sum()
    assert hits >= 100 and hits >= 0.5 * (mask == 1).sum()
    for suffix in ("_prob.tif", "_overlay.png", "_plumes.geojson"):
        assert (tmp_path / "out" / f"desert{suffix}").is_file()
    assert main(["baseline", str(path), "--method", "ratio", "--out", str(tmp_path / "ratio")]) == 0
    with rasterio.open(tmp_path / "ratio" / "desert_mask.tif") as ds:
        ratio_hits = np.logical_and(ds.read(1) == 1, sim.mask == 1).sum()
    assert ratio_hits < hits


def test_baseline_refuses_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.tif"
    bad.write_text("nope")
    assert main(["baseline", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert "not a GeoTIFF" in capsys.readouterr().err


def plume_pair(tmp_path, drop=0.04):
    """A smooth surface with strong SWIR texture seen twice (independent noise), a plume lowering the
    target's B12 by `drop` along a band of rows; written as target.tif and ref.tif."""
    from scipy import ndimage

    from core.contract import write_scene
    from tests.conftest import utm

    rng = np.random.default_rng(7)
    n = 200
    surface = ndimage.gaussian_filter(rng.random((6, n, n)), (0, 3, 3))
    soil = np.array([0.08, 0.10, 0.13, 0.23, 0.33, 0.26])[:, None, None]  # a soil's spectrum, brightness varying
    surface = soil * (0.6 + 0.8 * (surface - surface.min()) / np.ptp(surface))
    target = surface * (1 + rng.normal(0, 0.005, surface.shape))
    reference = surface * (1 + rng.normal(0, 0.005, surface.shape))
    rows, cols = np.mgrid[:n, :n]
    plume = np.exp(-((rows - 100) ** 2) / (2 * 6 ** 2)) * (cols > 60) * (cols < 160)
    target[5] *= 1 - drop * plume
    crs, transform = utm()
    for name, data in (("target", target), ("ref", reference)):
        write_scene(tmp_path / f"{name}.tif", np.clip(data * 10000, 1, 65535).astype(np.uint16), crs, transform)
    return tmp_path / "target.tif", tmp_path / "ref.tif", plume > 0.25


def test_mbmp_sees_against_the_reference_what_one_date_cannot(tmp_path):
    """The surface's own B12/B11 texture hides a 4 % plume from the single-pass ratio; against the
    reference pass (MBMP) it stands out."""
    target, ref, truth = plume_pair(tmp_path)
    assert main(["baseline", str(target), "--reference", str(ref), "--out", str(tmp_path / "mbmp")]) == 0
    assert main(["baseline", str(target), "--method", "ratio", "--out", str(tmp_path / "ratio")]) == 0

    def iou(folder):
        with rasterio.open(folder / "target_mask.tif") as ds:
            mask = ds.read(1) == 1
        return (mask & truth).sum() / (mask | truth).sum()

    assert iou(tmp_path / "mbmp") > 0.35 and iou(tmp_path / "ratio") < 0.05


def test_mbmp_needs_a_reference_and_masks_where_the_reference_has_none(tmp_path, capsys):
    from core.contract import read_scene
    from training.baseline import mbmp_zscore

    target, ref, truth = plume_pair(tmp_path)
    assert main(["baseline", str(target), "--method", "mbmp", "--out", str(tmp_path / "o")]) == 2
    assert "needs a reference pass" in capsys.readouterr().err
    scene = read_scene(target, reference=ref)
    scene.reference[:, 80:120, 50:100] = 0  # the reference has no data across the plume's first half
    z = mbmp_zscore(scene)
    assert (z[80:120, 50:100] == 0).all()
    assert np.median(z[:, 110:150][truth[:, 110:150]]) > 3  # the other half stands out
