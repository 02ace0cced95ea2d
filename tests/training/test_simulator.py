"""The scene simulator: physics figures, labels, determinism, files on disk."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.contract import ALL_BANDS, BANDS
from core.physics import LABEL_MIN_PLUME_PIXELS, M_CH4, TABLE, label_plumes, label_rule, transmittance
from training.plume import plume_column, sigma_y
from training.simulate import simulate_scene, write_sim_scene
from training.site import SURFACE_TYPES
from training.splits import SPLIT_SEEDS, seeds_for, split_of


def test_b12_absorbs_more_than_b11():
    w = np.array([0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 50.0])
    t12, t11 = transmittance(w, "B12"), transmittance(w, "B11")
    assert np.all(t12 < t11) and np.all(t11 < 1)
    assert np.all(np.diff(t12) < 0) and np.all(np.diff(t11) < 0)  # monotone
    assert transmittance(0.0, "B12") == 1.0


@pytest.mark.parametrize("band", ["B12", "B11"])
def test_transmittance_fit_reproduces_table(band):
    for w, change in TABLE[band].items():
        got = transmittance(w, band) - 1
        assert abs(got / change - 1) < 0.10, (band, w, got, change)


def test_air_mass_factor_strengthens_absorption():
    assert transmittance(1.0, "B12", amf=3.0) < transmittance(1.0, "B12", amf=2.0)
    assert np.isclose(transmittance(1.0, "B12", amf=4.0), transmittance(2.0, "B12", amf=2.0))


def test_label_threshold_is_one_percent_of_b12():
    assert label_rule(np.array([0.0099, 0.01, 0.2])).tolist() == [0, 1, 1]
    # an opaque cloud hides the plume
    assert label_rule(np.array([0.2, 0.2]), np.array([0.1, 0.9])).tolist() == [1, 0]
    # about 0.16 mol/m2 at air-mass factor 2 (PHYSICS.md says about 0.17)
    w = np.linspace(0.1, 0.25, 400)
    w_min = w[np.argmax(1 - transmittance(w, "B12") >= 0.01)]
    assert 0.15 < w_min < 0.18


def test_a_plume_with_fewer_than_five_pixels_is_not_labelled():
    assert LABEL_MIN_PLUME_PIXELS == 5
    drop = np.zeros((8, 8))
    owner = np.zeros((8, 8), int)
    drop[0, :4], owner[0, :4] = 0.02, 1  # plume 1: four pixels over the threshold
    drop[3, :5], owner[3, :5] = 0.02, 2  # plume 2: five
    drop[6, :8], owner[6, :8] = 0.005, 3  # plume 3: eight pixels, all under 1 %
    mask, counts = label_plumes(drop, owner)
    assert counts.tolist() == [0, 5, 0]
    assert mask[0].sum() == 0 and mask[3].sum() == 5 and mask[6].sum() == 0
    # a cloud can take a plume under five pixels
    opacity = np.zeros((8, 8))
    opacity[3, 0] = 0.9
    mask, counts = label_plumes(drop, owner, opacity)
    assert counts.tolist() == [0, 0, 0] and mask.sum() == 0
    # without owners all methane is one plume
    mask, counts = label_plumes(drop)
    assert counts.tolist() == [9] and mask.sum() == 9


def test_simulated_sources_have_no_plume_under_five_pixels():
    for seed in range(2_000_300, 2_000_312):
        sim = simulate_scene(seed, size=128, n_sources=3, q_kg_h=None)
        px = [s["pixels"] for s in sim.meta["sources"]]
        assert all(p == 0 or p >= LABEL_MIN_PLUME_PIXELS for p in px), px
        assert sum(px) == sim.meta["plume_pixels"] == int(sim.mask.sum())
        # a labelled pixel carries enough methane for a 1 % drop in B12 at the surface
        assert np.all(1 - transmittance(sim.column[sim.mask == 1], "B12", sim.meta["air_mass_factor"]) >= 0.01)


def test_worked_example_peak_column():
    # Q = 1000 kg/h, u = 3 m/s: about 0.29 mol/m2 at 100 m downwind (unsmoothed formula)
    peak = (1000 / 3600) / (np.sqrt(2 * np.pi) * sigma_y(100.0, "D") * 3.0) / M_CH4
    assert abs(peak - 0.29) < 0.02


@pytest.mark.parametrize("stability", ["B", "C", "D"])
def test_cross_section_integral_is_q_over_u(stability):
    q_kg_h, u, px = 5000.0, 4.0, 20.0
    n = 256
    col = plume_column(n, (128.0, 20.0), q_kg_h, u, 90.0, stability, px, rng=None, turbulence=False)
    expected = q_kg_h / 3600 / u / M_CH4  # mol per metre along the wind
    for dx in (5, 20, 60, 100):  # columns downwind of the source (wind blows east)
        got = col[:, 20 + dx].sum() * px
        assert abs(got / expected - 1) < 0.05, (dx, got, expected)
    assert col[:, :19].max() == 0  # nothing upwind


def test_diagonal_wind_mass_flux():
    col = plume_column(256, (200.0, 50.0), 3000.0, 2.0, 45.0, "D", 20.0, rng=None, turbulence=False)
    # total mass within 100 px downwind ~ (Q/u) * length
    assert col.max() > 0 and np.isfinite(col).all()


def test_plume_free_scenes_have_empty_masks():
    for seed in range(5):
        sim = simulate_scene(seed, size=128, n_sources=0)
        assert sim.mask.sum() == 0
        assert sim.meta["sources"] == [] and sim.meta["plume_pixels"] == 0


def test_strong_plume_is_labelled():
    sim = simulate_scene(2_000_101, size=256, n_sources=1, q_kg_h=10_000.0, wind_ms=3.0, clouds=False)
    assert sim.mask.sum() > 100
    src = sim.meta["sources"][0]
    r, c = int(round(src["row"])), int(round(src["col"]))
    assert sim.mask[max(r - 3, 0):r + 4, max(c - 3, 0):c + 4].any()  # the plume starts at the source
    # B12/B11 is lower inside the plume than around it
    d = sim.data.astype(np.float64)
    ratio = d[BANDS.index("B12")] / d[BANDS.index("B11")]
    assert ratio[sim.mask == 1].mean() < ratio[sim.mask == 0].mean()


def test_same_seed_same_scene():
    a = simulate_scene(123, size=96)
    b = simulate_scene(123, size=96)
    c = simulate_scene(124, size=96)
    assert np.array_equal(a.data, b.data) and np.array_equal(a.mask, b.mask) and a.meta == b.meta
    assert np.array_equal(a.reference, b.reference) and np.array_equal(a.change_map, b.change_map)
    assert not np.array_equal(a.data, c.data)


@pytest.mark.parametrize("surface", SURFACE_TYPES)
def test_every_surface_is_plausible(surface):
    sim = simulate_scene(7, size=64, surface=surface, clouds=False, ref_clouds=False)
    for data in (sim.data, sim.reference):
        assert data.dtype == np.uint16 and data.shape == (6, 64, 64)
        assert data.min() >= 1  # never nodata
        refl = data / 10000.0
        assert 0.005 < refl.mean() < 0.8
    assert sim.meta["surface"] == surface


def test_other_sizes_and_options():
    sim = simulate_scene(5, size=512, n_sources=3, q_kg_h=2000.0, wind_ms=5.0, clouds=True)
    assert sim.data.shape == (6, 512, 512) and sim.mask.shape == (512, 512)
    assert len(sim.meta["sources"]) == 3
    assert all(s["q_kg_h"] == 2000.0 and s["wind_ms"] == 5.0 for s in sim.meta["sources"])
    assert sim.meta["clouds"] is True
    json.dumps(sim.meta)


def test_files_read_back(tmp_path):
    import rasterio

    sim = simulate_scene(2_000_005, size=128, n_sources=1, q_kg_h=8000.0)
    tif = write_sim_scene(tmp_path, "x", sim)
    assert tif == tmp_path / "x.tif"
    with rasterio.open(tif) as ds:  # the 12-band document: target, then reference
        assert ds.descriptions == ALL_BANDS
        assert ds.dtypes[0] == "uint16" and ds.count == 12
        assert ds.crs == sim.crs and ds.crs.is_projected and ds.crs.to_epsg() // 100 == 326
        assert ds.transform == sim.transform and ds.transform.a == 20.0
        assert np.array_equal(ds.read(list(range(1, 7))), sim.data)
        assert np.array_equal(ds.read(list(range(7, 13))), sim.reference)
    with rasterio.open(tmp_path / "x_mask.tif") as ms:
        assert ms.dtypes[0] == "uint8" and ms.count == 1
        assert ms.crs == sim.crs and ms.transform == sim.transform
        assert (ms.height, ms.width) == (128, 128)
        assert np.array_equal(ms.read(1), sim.mask)
    meta = json.loads((tmp_path / "x.json").read_text())
    assert meta["seed"] == 2_000_005 and meta["split"] == "test"
    s = meta["sources"][0]
    assert {"q_kg_h", "wind_ms", "wind_from_deg", "row", "col", "lon", "lat", "pixels"} <= set(s)
    assert -180 <= s["lon"] <= 180 and -90 <= s["lat"] <= 90
    ref = meta["reference"]
    assert {"days_before", "sza_deg", "saa_deg", "aod", "clouds", "cloud_cover", "snr_swir", "gains", "shift_px",
            "changes", "sources"} <= set(ref)


def test_source_lonlat_lies_in_a_region():
    sim = simulate_scene(3, size=128, n_sources=1)
    s = sim.meta["sources"][0]
    from training.geo import REGIONS

    lo0, lo1, la0, la1 = REGIONS[sim.meta["region"]]
    assert lo0 - 0.2 < s["lon"] < lo1 + 0.2 and la0 - 0.2 < s["lat"] < la1 + 0.2


def test_splits_do_not_overlap():
    ranges = sorted(SPLIT_SEEDS.values())
    assert all(a[1] <= b[0] for a, b in zip(ranges, ranges[1:]))
    assert split_of(seeds_for("val", 3)[0]) == "val"
    with pytest.raises(ValueError):
        seeds_for("train", 10, offset=999_995)
