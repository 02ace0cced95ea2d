"""Surface reflectance maps for the six contract bands (B2, B3, B4, B8, B11, B12).

Spectra are top-of-atmosphere-like reflectances of common endmembers (values in
the range of USGS/ASTER library spectra band-averaged to Sentinel-2, rounded;
plausible, not measured). A surface type mixes endmembers with multi-scale
abundance fields, then man-made features (roads, well pads, ponds) and
deliberate confounders (dark/wet soil patches, water) are painted on top.
"""

from __future__ import annotations

import numpy as np

from training.noise import fbm, smooth_field, threshold_fraction

#                      B2     B3     B4     B8     B11    B12
ENDMEMBERS = {
    "sand":        (0.210, 0.270, 0.340, 0.420, 0.520, 0.460),
    "bright_soil": (0.150, 0.190, 0.240, 0.300, 0.390, 0.340),
    "red_soil":    (0.090, 0.120, 0.190, 0.260, 0.360, 0.320),
    "dark_soil":   (0.070, 0.090, 0.110, 0.160, 0.230, 0.190),
    "wet_soil":    (0.050, 0.065, 0.080, 0.110, 0.120, 0.085),  # water absorption: B12 < B11
    "dry_grass":   (0.080, 0.100, 0.130, 0.230, 0.330, 0.260),
    "green_veg":   (0.035, 0.070, 0.045, 0.420, 0.220, 0.110),
    "shrub":       (0.060, 0.080, 0.090, 0.240, 0.260, 0.180),
    "water":       (0.070, 0.060, 0.035, 0.020, 0.008, 0.005),
    "turbid_water": (0.090, 0.090, 0.070, 0.040, 0.012, 0.007),
    "asphalt":     (0.080, 0.090, 0.100, 0.120, 0.150, 0.140),
    "concrete":    (0.200, 0.220, 0.240, 0.270, 0.300, 0.280),
    "roof_metal":  (0.250, 0.260, 0.270, 0.290, 0.270, 0.240),
    "caliche":     (0.260, 0.300, 0.330, 0.370, 0.430, 0.380),
    "carbonate":   (0.280, 0.310, 0.340, 0.380, 0.450, 0.350),  # CO3 feature near 2.33 um lowers B12
    "tar_black":   (0.040, 0.045, 0.050, 0.060, 0.070, 0.065),
}

SURFACE_TYPES = (
    "desert_sand",
    "bright_soil",
    "dark_soil",
    "sparse_vegetation",
    "cropland",
    "water",
    "urban_industrial",
    "mixed",
)


def spec(name: str) -> np.ndarray:
    return np.asarray(ENDMEMBERS[name], np.float32)


def _jitter(rng, s: np.ndarray, amount=0.08) -> np.ndarray:
    """Per-scene variation of an endmember: overall brightness and a small spectral tilt.

    The SWIR bands tilt together (B11 and B12 lie on the same smooth SWIR
    continuum of soils and minerals), so the B12/B11 ratio of an instance varies
    by about 1 %, not by the independent spread of two bands.
    """
    tilt = rng.normal(0, amount / 2, size=6).astype(np.float32)
    tilt[5] = tilt[4] + np.float32(rng.normal(0, amount / 8))
    return s * np.float32(rng.uniform(1 - amount, 1 + amount)) * (1 + tilt)


def mix(fracs: list[np.ndarray], spectra: list[np.ndarray]) -> np.ndarray:
    """Linear mixture: sum_k f_k * spectrum_k -> (6, H, W); fractions are normalised."""
    f = np.stack(fracs).astype(np.float32)
    f /= np.maximum(f.sum(0, keepdims=True), 1e-6)
    return np.einsum("khw,kb->bhw", f, np.stack(spectra).astype(np.float32), optimize=True)


def paint(refl: np.ndarray, mask: np.ndarray, spectrum: np.ndarray) -> None:
    """In place: refl = refl * (1 - m) + m * spectrum for a soft mask m in [0, 1]."""
    m = mask.astype(np.float32)[None]
    refl *= 1 - m
    refl += m * spectrum[:, None, None]


def _abund(rng, n, scale, mean_frac):
    """Smooth abundance field in [0, 1] with the given mean fraction (logistic of fbm)."""
    f = fbm(rng, n, scales=(scale, scale / 4, 3.0), weights=(1.0, 0.5, 0.2))
    off = np.log(mean_frac / (1 - mean_frac))
    return 1 / (1 + np.exp(-(1.6 * f + off)))


def _background(rng, n, names, scale=None):
    """Mixture of endmembers with smooth abundances, plus fine brightness texture.

    Composition (which changes band ratios) varies over tens of pixels; the
    pixel-scale texture of natural surfaces (roughness, shading, moisture
    speckle) changes brightness, which scales all SWIR bands alike.
    """
    scale = scale or rng.uniform(30, 120)
    fr = [np.exp(1.2 * fbm(rng, n, scales=(scale, scale / 4), weights=(1, 0.4))) for _ in names]
    r = mix(fr, [_jitter(rng, spec(nm)) for nm in names])
    r *= 1 + np.float32(rng.uniform(0.02, 0.06)) * fbm(rng, n, scales=(6.0, 2.0), weights=(1, 0.6))[None]
    return r


def desert_sand(rng, n):
    r = _background(rng, n, ["sand", "sand", "bright_soil", "carbonate"])
    # dunes: oriented ridges with slope shading
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    th = rng.uniform(0, np.pi)
    lam = rng.uniform(8, 30)
    ph = (xx * np.cos(th) + yy * np.sin(th)) / lam * 2 * np.pi + 3 * smooth_field(rng, n, 40)
    r *= 1 + np.float32(rng.uniform(0.03, 0.08)) * np.sin(ph)[None]
    paint(r, 0.3 * _abund(rng, n, 20, 0.05), _jitter(rng, spec("shrub")))
    return r


def bright_soil(rng, n):
    return _background(rng, n, ["bright_soil", "caliche", "dry_grass", "red_soil"])


def dark_soil(rng, n):
    r = _background(rng, n, ["dark_soil", "red_soil", "shrub", "dark_soil"])
    paint(r, np.clip(_abund(rng, n, 40, 0.1) * 1.5 - 0.3, 0, 1), _jitter(rng, spec("wet_soil")))
    return r


def sparse_vegetation(rng, n):
    r = _background(rng, n, ["bright_soil", "dry_grass", "shrub", "red_soil"])
    paint(r, 0.7 * _abund(rng, n, 6, rng.uniform(0.05, 0.3)), _jitter(rng, spec("green_veg")))
    return r


def cropland(rng, n):
    soil = _background(rng, n, ["bright_soil", "dark_soil", "red_soil"])
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    th = rng.normal(0, 0.05)
    u = xx * np.cos(th) - yy * np.sin(th)
    v = xx * np.sin(th) + yy * np.cos(th)
    fw, fh = rng.uniform(10, 40), rng.uniform(10, 40)
    iu = np.floor(u / fw + rng.uniform()).astype(np.int64)
    iv = np.floor(v / fh + rng.uniform()).astype(np.int64)
    fid = (iu * 7919 + iv * 104729 + int(rng.integers(1 << 30))) % 9973
    states = ["green_veg", "dry_grass", "bright_soil", "dark_soil", "wet_soil", "shrub"]
    probs = np.array([0.35, 0.2, 0.15, 0.15, 0.05, 0.1])
    lut_state = rng.choice(len(states), size=9973, p=probs)
    lut_amt = rng.uniform(0.6, 1.0, size=9973).astype(np.float32)
    st = lut_state[fid]
    amt = lut_amt[fid]
    r = soil.copy()
    for k, nm in enumerate(states):
        m = (st == k) * amt
        if m.any():
            paint(r, m, _jitter(rng, spec(nm)))
    # field edges (tracks / hedges): thin lines at field boundaries
    edge = (np.abs((u / fw + 0.5) % 1 - 0.5) * fw < 0.6) | (np.abs((v / fh + 0.5) % 1 - 0.5) * fh < 0.6)
    paint(r, edge * 0.5, _jitter(rng, spec("bright_soil")))
    # centre pivots
    for _ in range(int(rng.integers(0, 4))):
        cy, cx, rad = rng.uniform(0, n), rng.uniform(0, n), rng.uniform(8, 25)
        m = ((yy - cy) ** 2 + (xx - cx) ** 2) < rad * rad
        paint(r, m * rng.uniform(0.7, 1.0), _jitter(rng, spec("green_veg")))
    r *= 1 + 0.05 * smooth_field(rng, n, 2)[None]  # within-field texture
    return r


def water(rng, n):
    r = _background(rng, n, ["bright_soil", "dark_soil", "shrub"])
    f = fbm(rng, n, scales=(rng.uniform(60, 200), 30, 6), weights=(1, 0.3, 0.1))
    t = threshold_fraction(f, rng.uniform(0.2, 0.6))
    shore = np.clip((f - t + 0.15) / 0.15, 0, 1)
    paint(r, shore * 0.8, _jitter(rng, spec("wet_soil")))
    wspec = _jitter(rng, spec(rng.choice(["water", "turbid_water"])), 0.2)
    paint(r, np.clip((f - t) / 0.05, 0, 1), wspec)
    return r


def urban_industrial(rng, n):
    r = _background(rng, n, ["bright_soil", "concrete", "dry_grass"])
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    bs = rng.uniform(4, 10)
    bid = (np.floor(yy / bs).astype(np.int64) * 7919 + np.floor(xx / bs).astype(np.int64) * 31 + 17) % 4093
    lut = rng.choice(5, size=4093, p=[0.3, 0.25, 0.2, 0.15, 0.1])
    kind = lut[bid]
    dens = _abund(rng, n, 80, rng.uniform(0.4, 0.8)) > 0.5
    for k, nm in enumerate(["concrete", "roof_metal", "asphalt", "tar_black", "caliche"]):
        paint(r, (kind == k) & dens, _jitter(rng, spec(nm), 0.15))
    streets = ((yy % bs) < 1) | ((xx % bs) < 1)
    paint(r, streets & dens, _jitter(rng, spec("asphalt")))
    # storage tanks: bright discs
    for _ in range(int(rng.integers(0, 12))):
        cy, cx, rad = rng.uniform(0, n), rng.uniform(0, n), rng.uniform(1, 3)
        paint(r, ((yy - cy) ** 2 + (xx - cx) ** 2) < rad * rad, _jitter(rng, spec("roof_metal")))
    return r


BUILDERS = {
    "desert_sand": desert_sand,
    "bright_soil": bright_soil,
    "dark_soil": dark_soil,
    "sparse_vegetation": sparse_vegetation,
    "cropland": cropland,
    "water": water,
    "urban_industrial": urban_industrial,
}


def mixed(rng, n):
    kinds = rng.choice(list(BUILDERS), size=int(rng.integers(2, 4)), replace=False)
    fields = np.stack([fbm(rng, n, scales=(rng.uniform(60, 160), 20, 5)) for _ in kinds])
    w = np.exp(8 * fields)
    w /= w.sum(0, keepdims=True)
    r = np.zeros((6, n, n), np.float32)
    for k, kind in enumerate(kinds):
        r += w[k][None] * BUILDERS[kind](rng, n)
    return r


BUILDERS["mixed"] = mixed


def _line_mask(n, p0, p1, width):
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    (y0, x0), (y1, x1) = p0, p1
    dy, dx = y1 - y0, x1 - x0
    L2 = dx * dx + dy * dy + 1e-9
    t = np.clip(((yy - y0) * dy + (xx - x0) * dx) / L2, 0, 1)
    d = np.hypot(yy - (y0 + t * dy), xx - (x0 + t * dx))
    return np.clip(width / 2 + 0.5 - d, 0, 1)  # anti-aliased


def add_infrastructure(rng, r: np.ndarray, n: int, industrial: bool = True):
    """Roads, well pads (returned as (row, col) centres), ponds and dark patches. In place."""
    pads = []
    for _ in range(int(rng.integers(0, 4))):  # straight roads across the scene
        a = rng.uniform(0, n, 2)
        ang = rng.uniform(0, np.pi)
        d = np.array([np.sin(ang), np.cos(ang)]) * 2 * n
        nm = rng.choice(["asphalt", "caliche", "bright_soil"])
        paint(r, _line_mask(n, a - d, a + d, rng.uniform(0.4, 1.5)), _jitter(rng, spec(nm)))
    if industrial:
        for _ in range(int(rng.integers(0, 10))):  # well pads: caliche squares with an access road
            c = rng.uniform(8, n - 8, 2)
            h = rng.uniform(1.5, 4)
            yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
            m = (np.abs(yy - c[0]) < h) & (np.abs(xx - c[1]) < h)
            paint(r, m * rng.uniform(0.7, 1.0), _jitter(rng, spec("caliche")))
            end = c + rng.normal(0, n / 6, 2)
            paint(r, _line_mask(n, c, end, 0.6), _jitter(rng, spec("caliche")))
            if rng.random() < 0.3:  # tank battery / equipment: dark and bright specks
                paint(r, (np.abs(yy - c[0] - 1) < 0.8) & (np.abs(xx - c[1]) < 1.5), _jitter(rng, spec("tar_black")))
            pads.append((float(c[0]), float(c[1])))
    if rng.random() < 0.25:  # small ponds (evaporation / produced-water pits): B12 confounder
        for _ in range(int(rng.integers(1, 4))):
            c = rng.uniform(0, n, 2)
            h, w = rng.uniform(1.5, 6, 2)
            yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
            m = (np.abs(yy - c[0]) < h) & (np.abs(xx - c[1]) < w)
            paint(r, m, _jitter(rng, spec(rng.choice(["water", "turbid_water", "wet_soil"])), 0.3))
    if rng.random() < 0.35:  # dark / wet soil patches: B12 confounder
        f = smooth_field(rng, n, rng.uniform(4, 15))
        m = np.clip((f - threshold_fraction(f, rng.uniform(0.02, 0.1))) / 0.3, 0, 1)
        paint(r, m * rng.uniform(0.5, 1.0), _jitter(rng, spec(rng.choice(["wet_soil", "dark_soil", "tar_black"]))))
    return pads


def make_surface(rng: np.random.Generator, n: int, kind: str):
    """(6, n, n) float32 surface reflectance and the list of well-pad centres."""
    if kind not in BUILDERS:
        raise ValueError(f"unknown surface {kind!r}; choose from {', '.join(SURFACE_TYPES)}")
    r = BUILDERS[kind](rng, n).astype(np.float32)
    # multi-scale brightness texture (topography, moisture) and pixel-scale speckle
    tex = fbm(rng, n, scales=(100, 25, 6, 1.5), weights=(1, 0.6, 0.4, 0.3))
    r *= (1 + np.float32(rng.uniform(0.03, 0.10)) * tex)[None]
    pads = add_infrastructure(rng, r, n, industrial=kind != "water" or rng.random() < 0.5)
    return np.clip(r, 0.002, 1.2), pads
