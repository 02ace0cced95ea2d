"""What differs between a scene's target and its reference pass: names, pixel masks, shares.

`describe` compares the two date states of one site and returns the change kinds present (the
metadata's `reference.changes`), a per-pixel bit map (bit i set where CHANGE_KINDS[i] changed
the surface) and the share of the scene each local kind covers. Global kinds (sun, haze, gains,
misregistration) are named from their parameters.
"""

from __future__ import annotations

import numpy as np

from training import shapes
from training import water as wt
from training.landuse import parcel_spectra
from training.render import patch_profile

CHANGE_KINDS = ("sun", "haze", "clouds", "parcels", "vegetation", "rain_soil", "wet_patch", "water_level", "flare",
                "construction", "burn", "gains", "shift", "reference_plume")
SUN_MIN_DEG = 1.0  # sun zenith or azimuth differing by more than this is a change of shading
HAZE_MIN_AOD = 0.05
GAIN_MIN = 0.01  # a band gain differing by more than 1 %
SHIFT_MIN_PX = 0.05
PARCEL_MIN = 0.04  # relative change of a parcel's reflectance in some band
VEG_MIN = 0.08
WET_MIN = 0.03


def _parcels(site, tgt, ref):
    pc = site.parcels
    if pc is None:
        return None
    a = parcel_spectra(pc, tgt.doy, tgt.parcel_wet)
    b = parcel_spectra(pc, ref.doy, ref.parcel_wet)
    changed = np.max(np.abs(a - b) / np.maximum(np.maximum(a, b), 1e-3), axis=1) > PARCEL_MIN
    changed[0] = False
    return changed[pc.pid] & (pc.cover > 0.5)


def _rain(site, tgt, ref):
    if tgt.rain is None and ref.rain is None:
        return None
    a = tgt.rain if tgt.rain is not None else 0.0
    b = ref.rain if ref.rain is not None else 0.0
    return np.abs((a - b) * site.wet_k) > WET_MIN


def _patches(site, tgt, ref):
    if not tgt.wet_patches and not ref.wet_patches:
        return None
    m = np.zeros((site.n, site.n), np.float32)
    for p in tgt.wet_patches + ref.wet_patches:
        prof, box = patch_profile(site.n, p)
        shapes.add_max(m, (prof * np.float32(p["wetness"]) * site.wet_k[box[0]:box[1], box[2]:box[3]], box))
    return m > WET_MIN


def _water(site, tgt, ref):
    if site.shore_elev is None:
        return None
    fa, _ = wt.water_cover(site.shore_elev, tgt.level)
    fb, _ = wt.water_cover(site.shore_elev, ref.level)
    wa = wt.wet_shore(site.shore_elev, tgt.level, *tgt.shore_wet)
    wb = wt.wet_shore(site.shore_elev, ref.level, *ref.shore_wet)
    return (np.abs(fa - fb) > 0.5) | (np.abs(wa - wb) * site.wet_k > WET_MIN)


def _flares(site, tgt, ref):
    m = np.zeros((site.n, site.n), np.float32)
    for fl, a, b in zip(site.flares, tgt.flares_on, ref.flares_on):
        if (a > 0) != (b > 0) or (a > 0 and abs(a / b - 1) > 0.3):
            shapes.add_max(m, shapes.disc(site.n, (fl["row"], fl["col"]), 2.0))
    return m > 0.5 if m.any() else None


def _construction(site, tgt, ref):
    if not site.planned or tgt.built == ref.built:
        return None
    m = np.zeros((site.n, site.n), np.float32)
    for pl in site.planned:
        shapes.add_max(m, pl["shape"])
    return m > 0.5


def describe(site, tgt, ref, margin: int, n: int, clouds_t=None, clouds_r=None, ref_plume: bool = False):
    """(names of the kinds that changed, (n, n) uint16 bit map, {kind: share of pixels}).

    clouds_t / clouds_r: (opacity, shadow) of each pass on the scene grid, or None.
    """
    crop = (slice(margin, margin + n), slice(margin, margin + n))
    local = {
        "parcels": _parcels(site, tgt, ref),
        "vegetation": (site.veg > 0.2) if abs(tgt.veg_green - ref.veg_green) > VEG_MIN and site.veg.max() > 0.2 else None,
        "rain_soil": _rain(site, tgt, ref),
        "wet_patch": _patches(site, tgt, ref),
        "water_level": _water(site, tgt, ref),
        "flare": _flares(site, tgt, ref),
        "construction": _construction(site, tgt, ref),
        "burn": (site.fresh_burn > 0.5) if site.fresh_burn is not None and tgt.burnt != ref.burnt else None,
    }
    masks = {k: m[crop] for k, m in local.items() if m is not None and m[crop].any()}
    cloud = np.zeros((n, n), bool)
    for c in (clouds_t, clouds_r):
        if c is not None:
            cloud |= (c[0] > 0.1) | (c[1] > 0.1)
    if cloud.any():
        masks["clouds"] = cloud
    names = set(masks)
    if abs(tgt.sza - ref.sza) > SUN_MIN_DEG or abs(tgt.saa - ref.saa) > SUN_MIN_DEG:
        names.add("sun")
    if abs(tgt.aod - ref.aod) > HAZE_MIN_AOD:
        names.add("haze")
    g = np.max(np.abs(tgt.sensor.gains / ref.sensor.gains - 1))
    if g > GAIN_MIN or tgt.sensor.step is not None or ref.sensor.step is not None:
        names.add("gains")
    dy, dx = ref.sensor.phase[0] - tgt.sensor.phase[0], ref.sensor.phase[1] - tgt.sensor.phase[1]
    if np.hypot(dy, dx) > SHIFT_MIN_PX:
        names.add("shift")
    if ref_plume:
        names.add("reference_plume")
    bits = np.zeros((n, n), np.uint16)
    for i, kind in enumerate(CHANGE_KINDS):
        if kind in masks:
            bits |= masks[kind].astype(np.uint16) << np.uint16(i)
    shares = {k: round(float(m.mean()), 5) for k, m in masks.items()}
    return [k for k in CHANGE_KINDS if k in names], bits, shares
