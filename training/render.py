"""Render a site on a date: the surface reflectance a pass sees, on the site grid.

    refl = surface(site, state)      # (6, N, N), before atmosphere and sensor

Order: dry ground -> natural vegetation with the date's vigour -> parcels in their phenology
state -> fresh burn and new pads (if they exist on the date) -> soil wetness (rain, wet
patches, wet shore; darkening by `spectra.WET_K`, scaled by each pixel's susceptibility) ->
water up to the date's level -> terrain illumination for the date's sun -> flare emission.
"""

from __future__ import annotations

import numpy as np

from training import shapes, terrain
from training import water as wt
from training.landuse import parcel_spectra
from training.spectra import WET_K, paint, paint_box, spec

# Flare emission in reflectance-equivalent units per unit strength, per band: a ~1800 K flame is
# brightest in B12; B11 gets about a third (less radiance over a brighter solar irradiance), B8 little.
FLARE_BANDS = np.array([0.0, 0.0, 0.0, 0.02, 0.35, 1.0], np.float32)
FLARE_PSF_PX = 0.7
CHAR = spec("char")


def wetness(site, st) -> np.ndarray:
    """(N, N) soil wetness of the date before each pixel's susceptibility: rain, wet patches, wet shore."""
    n = site.n
    wet = np.zeros((n, n), np.float32) if st.rain is None else st.rain.copy()
    for p in st.wet_patches:
        prof, (r0, r1, c0, c1) = patch_profile(n, p)
        wet[r0:r1, c0:c1] += np.float32(p["wetness"]) * prof
    if site.shore_elev is not None:
        wet += wt.wet_shore(site.shore_elev, st.level, *st.shore_wet)
    return wet


def patch_profile(n: int, p: dict):
    """(wetness profile 0..1, box) of a wet patch: an ellipse of semi-axes radius and radius / aspect,
    its long axis at `angle` (radians clockwise from north), wettest in the middle."""
    _, box = shapes.disc(n, (p["row"], p["col"]), p["radius"])
    r0, r1, c0, c1 = box
    yy, xx = np.mgrid[r0:r1, c0:c1].astype(np.float32)
    dn, de = -(yy - np.float32(p["row"])), xx - np.float32(p["col"])
    ca, sa = np.float32(np.cos(p["angle"])), np.float32(np.sin(p["angle"]))
    along = (dn * ca + de * sa) / np.float32(p["radius"])
    across = (-dn * sa + de * ca) * np.float32(p["aspect"] / p["radius"])
    return np.clip(1 - np.hypot(along, across), 0, 1) ** 0.6, box


def surface(site, st) -> np.ndarray:
    r = site.ground.copy()
    if site.veg.max() > 0:
        canopy = site.veg_dry + np.float32(st.veg_green) * (site.veg_green - site.veg_dry)
        paint(r, site.veg, canopy)
    pc = site.parcels
    if pc is not None:
        lut = parcel_spectra(pc, st.doy, st.parcel_wet)
        img = np.moveaxis(lut[pc.pid], -1, 0) * pc.texture[None]
        r += pc.cover[None] * (img - r)
    if st.burnt and site.fresh_burn is not None:
        paint(r, site.fresh_burn * np.float32(0.85), CHAR)
    if st.built:
        for pl in site.planned:
            paint_box(r, pl["shape"][0], pl["spectrum"], pl["shape"][1])
    wet = wetness(site, st) * site.wet_k
    if wet.max() > 0:
        r *= np.exp(-WET_K[:, None, None] * wet[None])
    if site.shore_elev is not None:
        frac, depth = wt.water_cover(site.shore_elev, st.level)
        if frac.max() > 0:
            ws = wt.water_spectrum(site.water_deep, site.water_shallow, site.water_turbid, st.turbidity, depth)
            r += frac[None] * (ws - r)
    if float(site.height.max() - site.height.min()) > 2.0:
        r *= terrain.illumination(site.height, st.sza, st.saa, st.aod)
    for fl, on in zip(site.flares, st.flares_on):
        if on > 0:
            add_flare(r, fl["row"], fl["col"], fl["strength"] * on)
    return r


def add_flare(r: np.ndarray, row: float, col: float, strength: float) -> None:
    """In place: a burning flare's emission, a point source spread by the sensor's PSF."""
    n = r.shape[1]
    m, (r0, r1, c0, c1) = shapes.disc(n, (row, col), 3.0)
    if not m.size:
        return
    yy, xx = np.mgrid[r0:r1, c0:c1].astype(np.float32)
    psf = np.exp(-((yy - row) ** 2 + (xx - col) ** 2) / np.float32(2 * FLARE_PSF_PX ** 2))
    psf /= np.float32(2 * np.pi * FLARE_PSF_PX ** 2)
    r[:, r0:r1, c0:c1] += np.float32(strength) * FLARE_BANDS[:, None, None] * psf[None]
