"""The classical B12/B11-ratio baseline: same outputs as `segment`, finds the core of a strong plume."""

import numpy as np
import rasterio

from methane_seg.cli import main
from training.simulate import simulate_scene, write_sim_scene


def test_baseline_finds_the_core_of_a_strong_desert_plume(tmp_path):
    sim = simulate_scene(seed=1_000_001, size=256, n_sources=1, q_kg_h=15000, wind_ms=2, clouds=False,
                         surface="desert_sand")
    path = write_sim_scene(tmp_path, "desert", sim)
    assert main(["baseline", str(path), "--out", str(tmp_path / "out")]) == 0
    with rasterio.open(tmp_path / "out" / "desert_mask.tif") as ds, rasterio.open(path) as src:
        mask = ds.read(1)
        assert (ds.crs, ds.transform, ds.shape) == (src.crs, src.transform, src.shape)
    hits = np.logical_and(mask == 1, sim.mask == 1).sum()
    assert hits >= 10 and hits >= 0.5 * (mask == 1).sum()
    for suffix in ("_prob.tif", "_overlay.png", "_plumes.geojson"):
        assert (tmp_path / "out" / f"desert{suffix}").is_file()


def test_baseline_refuses_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.tif"
    bad.write_text("nope")
    assert main(["baseline", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert "not a GeoTIFF" in capsys.readouterr().err
