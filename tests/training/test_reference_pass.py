"""The reference pass: same grid and site as the target, what changes between two dates changes,
a reference's own plume never enters the target's mask, and everything is deterministic."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from core.contract import BANDS
from training import dates, render, sensor
from training.changes import CHANGE_KINDS
from training.simulate import MARGIN, simulate_scene
from training.site import make_site

I2, I8, I11, I12 = (BANDS.index(b) for b in ("B2", "B8", "B11", "B12"))


def _bit(sim, kind):
    return ((sim.change_map >> CHANGE_KINDS.index(kind)) & 1).astype(bool)


def _log_change(sim):
    return np.abs(np.log(sim.reference.astype(np.float64) / sim.data.astype(np.float64)))


def test_the_reference_shares_the_target_grid_and_surface():
    sim = simulate_scene(2_000_700, size=128, clouds=False, ref_clouds=False)
    assert sim.reference.shape == sim.data.shape == (6, 128, 128) and sim.reference.dtype == np.uint16
    assert sim.reference.min() >= 1
    unchanged = sim.change_map == 0
    for b in (I2, I8, I11, I12):  # the same place: the surface's texture is common to both passes
        t, r = np.log(sim.data[b][unchanged].astype(float)), np.log(sim.reference[b][unchanged].astype(float))
        assert np.corrcoef(t, r)[0, 1] > 0.8, BANDS[b]
    assert not np.array_equal(sim.data, sim.reference)  # ... seen on another date, with its own noise


# kind -> scene options that make it happen (forced, or as good as certain on that surface)
CASES = {
    "rain_soil": dict(surface="salt_flat", changes={"rain_soil": True}),
    "wet_patch": dict(surface="bright_soil", changes={"wet_patch": True}),
    "water_level": dict(surface="water", changes={"water_level": True}),
    "construction": dict(surface="cropland", changes={"construction": True}),
    "burn": dict(surface="sparse_vegetation", changes={"burn": True}),
    "parcels": dict(surface="cropland", days_before=40),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_each_local_change_changes_its_pixels_and_is_named(kind):
    sim = simulate_scene(2_000_710, size=128, n_sources=0, clouds=False, ref_clouds=False, **CASES[kind])
    ref = sim.meta["reference"]
    assert kind in ref["changes"] and ref["change_share"][kind] > 0
    where = _bit(sim, kind)
    assert where.any()
    d = _log_change(sim)
    # the band the change moves most, on its pixels against the rest of the scene
    inside, outside = np.median(d[:, where], axis=1), np.median(d[:, ~where], axis=1)
    assert np.max(inside / outside) > 2.0, (inside, outside)


def test_a_flare_burning_on_one_date_only():
    sim = simulate_scene(2_000_711, size=128, n_sources=0, clouds=False, ref_clouds=False, surface="bright_soil",
                         changes={"flare": True})
    assert "flare" in sim.meta["reference"]["changes"]
    where = _bit(sim, "flare")
    d12 = np.abs(sim.reference[I12].astype(float) - sim.data[I12].astype(float)) / 1e4
    assert d12[where].max() > 0.02 and d12[where].max() > np.quantile(d12[~where], 0.999)


def test_clouds_of_the_reference_date():
    sim = simulate_scene(2_000_712, size=128, clouds=False, ref_clouds=True)
    ref = sim.meta["reference"]
    assert ref["clouds"] and not sim.meta["clouds"] and "clouds" in ref["changes"]
    assert ref["cloud_cover"] > 0
    where = _bit(sim, "clouds")
    brighter = sim.reference[I2].astype(float) - sim.data[I2].astype(float)
    assert np.quantile(brighter[where], 0.9) > 1000  # cloud tops are bright in B2 (x 10000)


def test_sun_haze_gains_and_dates_are_their_own():
    seen = {k: 0 for k in ("sun", "haze", "gains", "shift")}
    for seed in range(2_000_720, 2_000_740):
        m = simulate_scene(seed, size=64).meta
        ref = m["reference"]
        assert 2 <= ref["days_before"] <= 63
        for k in seen:
            seen[k] += k in ref["changes"]
        if "sun" in ref["changes"]:
            assert abs(ref["sza_deg"] - m["sza_deg"]) > 1 or abs(ref["saa_deg"] - m["saa_deg"]) > 1
        if "haze" in ref["changes"]:
            assert abs(ref["aod"] - m["aod"]) > 0.05
    assert all(v >= 5 for v in seen.values()), seen


def test_haze_brightens_the_blue_band():
    for seed in range(2_000_740, 2_000_790):
        sim = simulate_scene(seed, size=64, clouds=False, ref_clouds=False)
        m = sim.meta
        if abs(m["reference"]["aod"] - m["aod"]) > 0.2 and not m["reference"]["changes"].count("rain_soil"):
            d = np.median(sim.reference[I2].astype(float) - sim.data[I2].astype(float)) / 1e4
            assert np.sign(d) == np.sign(m["reference"]["aod"] - m["aod"]), (seed, d)
            return
    pytest.fail("no scene with a large haze change")


def test_misregistration_is_sub_pixel_and_real():
    shifts = [np.hypot(*simulate_scene(s, size=64).meta["reference"]["shift_px"]) for s in range(2_000_800, 2_000_840)]
    assert max(shifts) <= 0.4 + 1e-6 and np.median(shifts) > 0.03
    # a forced shift is seen in the pixels: least squares on the image gradient
    sim = simulate_scene(2_000_841, size=128, n_sources=0, clouds=False, ref_clouds=False, surface="urban_industrial",
                         changes={"shift": (0.35, -0.25), "rain_soil": False, "wet_patch": False})
    assert sim.meta["reference"]["shift_px"] == [0.35, -0.25]
    t = np.log(sim.data[I8].astype(float))
    r = np.log(sim.reference[I8].astype(float))
    gy, gx = np.gradient(t)
    keep = (slice(4, -4), slice(4, -4))
    a = np.stack([-gy[keep].ravel(), -gx[keep].ravel(), np.ones(gy[keep].size)], 1)
    (dy, dx, _), *_ = np.linalg.lstsq(a, (r - t)[keep].ravel(), rcond=None)
    assert abs(dy - 0.35) < 0.12 and abs(dx + 0.25) < 0.12, (dy, dx)


def test_reference_plume_is_never_in_the_target_mask():
    free = simulate_scene(2_000_850, size=128, n_sources=0, reference_plume=True, clouds=False, ref_clouds=False)
    ref = free.meta["reference"]
    assert free.mask.sum() == 0 and free.meta["sources"] == [] and free.column.max() == 0
    assert len(ref["sources"]) == 1 and ref["sources"][0]["reference_only"] is True
    assert "reference_plume" in ref["changes"] and free.ref_column.max() > 0
    # plume scenes whose source also emitted on the reference date, in another wind and at another rate
    seen = 0
    for seed in range(2_000_851, 2_000_857):
        sim = simulate_scene(seed, size=128, n_sources=1, q_kg_h=8000.0, reference_plume=True, turbulence=False)
        rs, ts = sim.meta["reference"]["sources"][0], sim.meta["sources"][0]
        assert rs["reference_only"] and rs["target_source"] == 0
        assert abs(rs["row"] - ts["row"]) <= 1 and abs(rs["col"] - ts["col"]) <= 1  # the same source
        assert np.all(sim.column[sim.mask == 1] > 0)
        only_ref = (sim.ref_column > 0.2) & (sim.column < 0.01)
        assert sim.mask[only_ref].sum() == 0
        # the same scene without the reference's plume: the target is the same bit for bit, and the
        # reference differs by the plume's absorption (B12 most), nowhere else
        off = simulate_scene(seed, size=128, n_sources=1, q_kg_h=8000.0, reference_plume=False, turbulence=False)
        assert np.array_equal(sim.data, off.data) and np.array_equal(sim.mask, off.mask)
        assert off.meta["reference"]["sources"] == [] and off.ref_column.max() == 0
        drop = 1 - sim.reference[I12].astype(float) / off.reference[I12].astype(float)
        assert abs(drop[sim.ref_column < 1e-4].mean()) < 1e-3
        strong = sim.ref_column > 0.3
        if strong.sum() >= 5:
            seen += 1
            assert drop[strong].mean() > 0.015
    assert seen >= 3
    none = simulate_scene(2_000_851, size=128, n_sources=1, q_kg_h=8000.0, reference_plume=False)
    assert none.meta["reference"]["sources"] == [] and none.ref_column.max() == 0


def test_intermittent_sources_in_both_kinds_of_scenes():
    plume_ref = {0: 0, 1: 0}
    for seed in range(2_000_900, 2_000_960):
        m = simulate_scene(seed, size=64, n_sources=int(seed % 2)).meta
        plume_ref[seed % 2] += bool(m["reference"]["sources"])
        assert all(s["reference_only"] for s in m["reference"]["sources"])
    assert plume_ref[0] >= 2 and plume_ref[1] >= 2, plume_ref


def test_the_site_and_dates_do_not_depend_on_the_sources():
    a = simulate_scene(2_000_970, size=96, n_sources=0)
    b = simulate_scene(2_000_970, size=96, n_sources=2, q_kg_h=5000.0)
    assert a.meta["site"] == b.meta["site"] and a.meta["surface"] == b.meta["surface"]
    for k in ("days_before", "sza_deg", "aod", "shift_px", "gains"):
        assert a.meta["reference"][k] == b.meta["reference"][k]
    assert np.array_equal(a.change_map, b.change_map)


def test_determinism_with_every_option():
    kw = dict(size=96, n_sources=2, q_kg_h=3000.0, reference_plume=True, ref_clouds=True,
              changes={"flare": True, "rain_soil": True})
    a, b = simulate_scene(2_000_980, **kw), simulate_scene(2_000_980, **kw)
    for f in ("data", "reference", "mask", "column", "ref_column", "change_map"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f
    assert a.meta == b.meta


# render level: one date attribute at a time on the same site


def _site_and_state(kind="desert_sand", seed=3):
    rng = np.random.default_rng(seed)
    site = make_site(rng, 96, kind)
    st = dates.draw_pass(rng, site, 32.0, 100.0, [(50.0, 50.0)], clouds=False)
    st = replace(st, rain=None, wet_patches=[], flares_on=[0.0] * len(site.flares))
    return site, st


def test_sun_position_changes_the_shading_of_relief_only():
    site, st = _site_and_state("desert_sand")
    assert site.elements["relief_m"] > 10
    a = render.surface(site, st)
    b = render.surface(site, replace(st, sza=st.sza + 15, saa=st.saa - 20))
    ratio = b[I8] / a[I8]
    slope = np.hypot(*np.gradient(site.height))
    assert np.std(ratio[slope > np.quantile(slope, 0.8)]) > 3 * np.std(ratio[slope < np.quantile(slope, 0.05)])


def test_greener_vegetation_raises_nir_over_red():
    site, st = _site_and_state("sparse_vegetation")
    a = render.surface(site, replace(st, veg_green=0.2))
    b = render.surface(site, replace(st, veg_green=0.8))
    ndvi = lambda r: (r[I8] - r[2]) / (r[I8] + r[2])  # noqa: E731
    dn = ndvi(b) - ndvi(a)
    assert dn[site.veg[:] > 0.4].mean() > 5 * abs(dn[site.veg < 0.02].mean()) + 0.01


def test_rain_darkens_b12_more_than_b11():
    site, st = _site_and_state("bright_soil")
    wet = replace(st, rain=np.full((site.n, site.n), 0.3, np.float32))
    a, b = render.surface(site, st), render.surface(site, wet)
    soil = site.wet_k > 0.8
    d11, d12 = (b[I11] / a[I11])[soil], (b[I12] / a[I12])[soil]
    assert d12.mean() < d11.mean() < 0.9  # a methane look-alike in a difference of the two dates


def test_a_detector_step_splits_the_scene_in_two():
    g = sensor.gain_map(64, np.ones(6), {"angle": 10.0, "offset": 0.1, "gains": np.full(6, 0.01)})
    assert g.shape == (6, 64, 64)
    assert np.isclose(g.min(), 1.0) and np.isclose(g.max(), 1.01)
    assert 0.2 < (g[0] > 1.005).mean() < 0.6


def test_resampling_moves_content_by_the_phase():
    img = np.zeros((1, 20 + 2 * MARGIN, 20 + 2 * MARGIN), np.float32)
    img[0, MARGIN + 10, MARGIN + 10] = 1.0
    out = sensor.resample(img, (1.0, -1.0), MARGIN, 20)
    assert np.unravel_index(np.argmax(out[0]), out[0].shape) == (11, 9)
    assert np.isclose(out.sum(), 1.0, atol=1e-5)
