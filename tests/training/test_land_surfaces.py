"""Surfaces that look like land: parcels with straight edges, SWIR mineral texture the visible bands
do not predict, water that follows its level, and confounders in plume-free scenes too."""

from __future__ import annotations

import numpy as np
import pytest

from core.contract import BANDS
from training import water as wt
from training.simulate import MARGIN, _anchor, simulate_scene
from training.site import RECIPES, SURFACE_TYPES, make_site
from training.spectra import ENDMEMBERS


@pytest.mark.parametrize("kind", SURFACE_TYPES)
def test_every_surface_type_builds_a_plausible_site(kind):
    site = make_site(np.random.default_rng(11), 96, kind)
    assert site.ground.shape == (6, 96 + 2 * MARGIN, 96 + 2 * MARGIN) and site.ground.dtype == np.float32
    assert np.isfinite(site.ground).all() and 0.002 <= site.ground.min() and site.ground.max() <= 1.2
    assert np.isfinite(site.height).all() and 0 <= site.veg.min() and site.veg.max() <= 1
    parts = site.elements["parts"]
    assert (len(parts) == 1 and parts[0]["surface"] == kind) or (kind == "mixed" and 2 <= len(parts) <= 3)


def test_no_element_belongs_to_one_surface_type_only():
    elements = ("parcels", "town", "lake", "river", "ponds", "salt", "burn", "wadis", "greenhouses", "solar", "plants")
    for e in elements:
        assert sum(RECIPES[k][e] > 0 for k in RECIPES) >= 3, e


def test_parcels_are_fields_with_straight_edges_and_their_own_identity():
    site = make_site(np.random.default_rng(2), 128, "cropland")
    pc = site.parcels
    assert pc is not None and pc.count > 20
    pid = pc.pid
    # piecewise constant: most pixels share their parcel with their right and lower neighbours
    same = (pid[:, 1:] == pid[:, :-1]).mean() + (pid[1:] == pid[:-1]).mean()
    assert same / 2 > 0.85
    # a parcel's boundary pixels lie on few rows/columns of a rotated grid: the largest parcel is convex-ish
    sizes = np.bincount(pid.ravel())
    big = np.argmax(sizes[1:]) + 1
    rr, cc = np.nonzero(pid == big)
    box = (rr.max() - rr.min() + 1) * (cc.max() - cc.min() + 1)
    assert sizes[big] / box > 0.6
    assert len(set(pc.crop.tolist())) >= 3


def test_swir_mineral_texture_is_not_predicted_by_the_visible_bands():
    sim = simulate_scene(2_001_000, size=128, n_sources=0, surface="rocky_relief", clouds=False, ref_clouds=False)
    assert sim.meta["site"]["parts"][0].get("minerals")
    x = np.log(sim.data.astype(np.float64)).reshape(6, -1)
    ratio = x[BANDS.index("B12")] - x[BANDS.index("B11")]
    vnir = np.vstack([x[:4], np.ones(x.shape[1])]).T
    coef, *_ = np.linalg.lstsq(vnir, ratio, rcond=None)
    resid = ratio - vnir @ coef
    noise = 2.0 / sim.meta["snr_swir"]  # per-pixel noise of a log ratio of two bands, roughly
    assert resid.std() > 1.5 * noise  # B12/B11 varies with structure the visible bands do not explain


def test_a_higher_water_level_floods_more_and_moves_the_shore():
    rng = np.random.default_rng(4)
    shore = wt.lake(rng, 128)
    low, _ = wt.water_cover(shore, -0.3)
    high, _ = wt.water_cover(shore, 0.3)
    assert high.sum() > low.sum() > 0
    assert np.all(high >= low)
    wet = wt.wet_shore(shore, 0.0, 0.6, 0.2)
    assert wet.max() > 0.3 and np.all(wet[shore < 0] == 0)  # wet above the water line only


def test_wet_soil_and_water_absorb_more_in_b12_than_b11():
    for name in ("wet_soil", "water", "turbid_water", "green_veg", "clay", "carbonate", "plastic"):
        s = ENDMEMBERS[name]
        assert s[5] / s[4] < ENDMEMBERS["bright_soil"][5] / ENDMEMBERS["bright_soil"][4], name


def test_plume_free_scenes_hold_the_confounders_too():
    seen = {"water": 0, "minerals": 0, "clouds": 0, "wet": 0, "man_made": 0, "date_change": 0}
    n = 40
    for seed in range(2_001_100, 2_001_100 + n):
        m = simulate_scene(seed, size=64, n_sources=0).meta
        site, ref = m["site"], m["reference"]
        assert m["plume_pixels"] == 0
        seen["water"] += any(site.get(k) for k in ("lake", "coast", "river", "ponds"))
        seen["minerals"] += any(p.get("minerals") for p in site["parts"])
        seen["clouds"] += m["clouds"] or ref["clouds"]
        seen["wet"] += any(k in ref["changes"] for k in ("rain_soil", "wet_patch", "water_level"))
        seen["man_made"] += bool(site["pads"] or site.get("town") or site.get("plant"))
        seen["date_change"] += any(k in ref["changes"] for k in ("parcels", "rain_soil", "water_level", "flare"))
    for k, v in seen.items():
        assert v >= 0.15 * n, (k, seen)


def test_sources_sit_at_facilities_and_elsewhere():
    site = make_site(np.random.default_rng(8), 256, "bright_soil")
    assert len(site.pads) >= 3
    rng = np.random.default_rng(0)
    pads = np.array([[p["row"], p["col"]] for p in site.pads])
    d = [np.min(np.hypot(*(pads - np.array(_anchor(rng, site, 256))).T)) for _ in range(300)]
    at_pad = np.mean(np.array(d) < 2.0)
    assert 0.3 < at_pad < 0.75
