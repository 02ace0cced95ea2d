"""Crop parcels with a phenology, centre pivots, greenhouses, towns and industrial estates.

Parcels are static (their outlines and per-parcel identities: crop, sowing date, season
length, soil, irrigation); their look on a date comes from `parcel_spectra`, so two passes
some days apart see fields that greened, were harvested, ploughed or irrigated in between.
Greening lowers B12 more than B11 (leaf water), a methane look-alike in a naive difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training import shapes
from training.noise import smooth_field
from training.spectra import WET_K, jitter, pick, spec

CROPS = ("fallow", "winter_cereal", "summer_crop", "alfalfa", "perennial")
CROP_P = (0.15, 0.25, 0.3, 0.15, 0.15)


@dataclass
class Parcels:
    pid: np.ndarray  # (N, N) int32, 0 = no parcel
    cover: np.ndarray  # (N, N) float32, 1 inside a field, 0 on tracks and outside
    crop: np.ndarray  # (P + 1,) index into CROPS (entry 0 unused)
    sow: np.ndarray  # sowing day of year
    season: np.ndarray  # days from sowing to harvest
    gmax: np.ndarray  # peak green cover
    stubble: np.ndarray  # days a harvested field stays as stubble before it is ploughed
    soil: np.ndarray  # (P + 1, 6) bare soil of the parcel
    green: np.ndarray  # (P + 1, 6) the crop's green canopy
    irrigated: np.ndarray  # bool
    texture: np.ndarray  # (N, N) within-field brightness texture (rows, uneven growth)

    @property
    def count(self) -> int:
        return len(self.crop) - 1


def _edges(rng, n: int, lo: float, hi: float) -> np.ndarray:
    """Irregular cumulative field boundaries covering 0..n (and a margin for rotation)."""
    out, x = [], -rng.uniform(0, hi) - n
    while x < 2 * n:
        out.append(x)
        x += rng.uniform(lo, hi)
    return np.asarray(out, np.float32)


def make_parcels(rng, n: int, region: np.ndarray, pivots: int, size=(8, 40)) -> Parcels:
    """Rectangular fields on a slightly rotated, irregular grid (some split in two) plus centre pivots."""
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    th = rng.normal(0, 0.08) + (np.pi / 2 if rng.random() < 0.1 else 0)
    u = xx * np.float32(np.cos(th)) - yy * np.float32(np.sin(th))
    v = xx * np.float32(np.sin(th)) + yy * np.float32(np.cos(th))
    eu, ev = _edges(rng, n, *size), _edges(rng, n, *size)
    iu = np.searchsorted(eu, u) - 1
    iv = np.searchsorted(ev, v) - 1
    du = u - eu[iu]
    dv = v - ev[iv]
    wu = eu[np.minimum(iu + 1, len(eu) - 1)] - eu[iu]
    wv = ev[np.minimum(iv + 1, len(ev) - 1)] - ev[iv]
    split = rng.random((len(eu), len(ev))) < 0.3
    half = split[iu, iv] & (dv > wv / 2)
    cell = (iu * len(ev) + iv) * 2 + half
    # tracks between fields: about one pixel wide
    edge_d = np.minimum(np.minimum(du, wu - du), np.minimum(dv, wv - dv))
    edge_d = np.where(split[iu, iv], np.minimum(edge_d, np.abs(dv - wv / 2)), edge_d)
    cover = np.clip(edge_d - 0.3, 0, 1) * (region > 0.5)
    _, pid = np.unique(cell, return_inverse=True)
    pid = pid.reshape(n, n).astype(np.int32) + 1
    pid[region <= 0.5] = 0
    # centre pivots: discs, sometimes in halves or quarters, each its own parcel
    nxt = int(pid.max()) + 1
    for _ in range(pivots):
        cy, cx = rng.uniform(0, n, 2)
        rad = rng.uniform(10, 26)
        m, (r0, r1, c0, c1) = shapes.disc(n, (cy, cx), rad)
        if not m.any():
            continue
        sectors = int(rng.choice([1, 2, 4], p=[0.6, 0.25, 0.15]))
        gy, gx = np.mgrid[r0:r1, c0:c1].astype(np.float32)
        ang = (np.arctan2(gy - cy, gx - cx) + np.pi + rng.uniform(0, 2 * np.pi)) % (2 * np.pi)
        sec = np.floor(ang / (2 * np.pi / sectors)).astype(np.int32)
        inside = m > 0.5
        pid[r0:r1, c0:c1] = np.where(inside, nxt + sec, pid[r0:r1, c0:c1])
        cover[r0:r1, c0:c1] = np.where(inside, m, np.minimum(cover[r0:r1, c0:c1], 1 - m))
        nxt += sectors
    # renumber to 1..P (parcels cut away by pivots drop out)
    used, pid = np.unique(pid, return_inverse=True)
    pid = pid.reshape(n, n).astype(np.int32)
    if used[0] != 0:
        pid += 1
    p = int(pid.max()) + 1
    crop = rng.choice(len(CROPS), size=p, p=CROP_P)
    sow = np.where(crop == CROPS.index("winter_cereal"), rng.uniform(270, 340, p), rng.uniform(60, 170, p)) % 365
    season = np.where(crop == CROPS.index("winter_cereal"), rng.uniform(190, 250, p), rng.uniform(100, 170, p))
    soils = np.stack([pick(rng, ("bright_soil", "dark_soil", "red_soil", "bright_soil")) for _ in range(p)])
    greens = np.stack([jitter(rng, spec("green_veg"), 0.12) for _ in range(p)])
    texture = 1 + np.float32(rng.uniform(0.02, 0.06)) * smooth_field(rng, n, rng.uniform(1.5, 6))
    return Parcels(pid=pid, cover=cover.astype(np.float32), texture=texture, crop=crop, sow=sow, season=season,
                   gmax=rng.uniform(0.6, 0.98, p), stubble=rng.uniform(10, 80, p), soil=soils, green=greens,
                   irrigated=rng.random(p) < 0.5)


def parcel_spectra(pc: Parcels, doy: float, wet: np.ndarray) -> np.ndarray:
    """(P + 1, 6) spectrum of every parcel on day of year `doy`; wet: (P + 1,) irrigation wetness."""
    t = (doy - pc.sow) % 365
    phase = np.clip(t / pc.season, 0, 1)
    growing = t < pc.season
    g = np.where(growing, pc.gmax * np.sin(np.pi * phase) ** 0.8, 0.0)
    crop = pc.crop
    alfalfa = crop == CROPS.index("alfalfa")
    g = np.where(alfalfa, pc.gmax * (0.25 + 0.75 * ((t % 33) / 33) ** 0.7), g)
    g = np.where(crop == CROPS.index("perennial"), pc.gmax * (0.75 + 0.2 * np.cos(2 * np.pi * (doy - 180) / 365)), g)
    g = np.where(crop == CROPS.index("fallow"), 0.05, g)
    after = ~growing & (crop != CROPS.index("fallow")) & ~alfalfa & (crop != CROPS.index("perennial"))
    stub = after & (t - pc.season < pc.stubble)
    ploughed = after & ~stub
    base = pc.soil * np.exp(-WET_K[None] * wet[:, None])
    base = np.where(stub[:, None], 0.6 * spec("stubble")[None] + 0.4 * base, base)
    base = np.where(ploughed[:, None], base * np.float32(0.78) * np.array([1, 1, 1, 1, 0.95, 0.93], np.float32), base)
    return ((1 - g)[:, None] * base + g[:, None] * pc.green).astype(np.float32)


def town(rng, site, region: np.ndarray, industrial: bool) -> None:
    """A town: irregular blocks on a street grid, each a mixture of roofs, yards and paving.

    At 20 m a block is a few pixels; what a pass sees is a mixture (a dominant roof material over
    a background of paving, bare ground and trees), not single-material tiles.
    """
    n = site.n
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    cy, cx = rng.uniform(0.15 * n, 0.85 * n, 2)
    rad = rng.uniform(0.12, 0.4) * n
    blob = np.hypot(yy - cy, xx - cx) / rad + 0.3 * smooth_field(rng, n, 40)
    built = np.clip((1 - blob) * 4, 0, 1) * (region > 0.5)
    if not built.any():
        return
    th = rng.uniform(0, np.pi / 2)
    u = xx * np.float32(np.cos(th)) - yy * np.float32(np.sin(th))
    v = xx * np.float32(np.sin(th)) + yy * np.float32(np.cos(th))
    eu, ev = _edges(rng, n, 3, 10), _edges(rng, n, 3, 14)
    iu, iv = np.searchsorted(eu, u) - 1, np.searchsorted(ev, v) - 1
    cell = iu * len(ev) + iv
    ncell = len(eu) * len(ev)
    # urban background: paving, bare ground, trees, mixed at the pixel scale
    bg = np.stack([jitter(rng, spec(m), 0.1) for m in ("concrete", "asphalt", "bright_soil", "forest")])
    bw = rng.dirichlet([3, 2, 2, 1.5], size=ncell).astype(np.float32)
    roofs = ("concrete", "roof_metal", "roof_tile", "asphalt", "tar_black", "bright_soil")
    rs = np.stack([jitter(rng, spec(m), 0.15) for m in roofs])
    dom = rng.choice(len(roofs), size=ncell, p=[0.25, 0.15, 0.3, 0.1, 0.1, 0.1])
    share = rng.uniform(0.25, 0.75, ncell).astype(np.float32)
    lut = (1 - share)[:, None] * (bw @ bg) + share[:, None] * rs[dom]  # (cells, 6)
    img = np.moveaxis(lut[cell], -1, 0)
    img *= 1 + np.float32(0.12) * smooth_field(rng, n, 1.0)[None]  # buildings and yards within a block
    green = bw[cell, 3] * (1 - share[cell])
    site.paint_full(built, img, wet_k=0.3)
    site.veg *= 1 - built
    for pos, bs in ((u, eu), (v, ev)):
        d = np.abs(pos - bs[np.clip(np.searchsorted(bs, pos) - 1, 0, len(bs) - 1)])
        street = np.clip(1.0 - d, 0, 1) * built * np.float32(rng.uniform(0.4, 0.8))
        site.paint_full(street, jitter(rng, spec("asphalt")), wet_k=0.3)
    site.elements["town"] = int((built > 0.5).sum())
    site.elements["town_green"] = round(float((green * built).sum() / max(built.sum(), 1)), 3)
    if industrial:
        for _ in range(int(rng.integers(3, 12))):
            c = (cy + rng.normal(0, rad), cx + rng.normal(0, rad))
            site.paint(shapes.rect(n, c, rng.uniform(1.5, 8), rng.uniform(2, 12), th),
                       pick(rng, ("roof_metal", "concrete", "roof_metal", "plastic", "tar_black"), 0.12), wet_k=0.1)
        for _ in range(int(rng.integers(0, 10))):  # storage tanks
            c = (cy + rng.normal(0, rad), cx + rng.normal(0, rad))
            site.paint(shapes.disc(n, c, rng.uniform(0.8, 2.5)), jitter(rng, spec("roof_metal")), wet_k=0.0)
        site.elements["industrial"] = True


def greenhouses(rng, site, region: np.ndarray) -> None:
    """Rows of plastic greenhouses (plastic lowers B12: a static methane look-alike)."""
    n = site.n
    cy, cx = rng.uniform(0.1 * n, 0.9 * n, 2)
    th = rng.normal(0, 0.1)
    for i in range(int(rng.integers(3, 15))):
        c = (cy + rng.normal(0, 12), cx + rng.normal(0, 12))
        if region[int(np.clip(c[0], 0, n - 1)), int(np.clip(c[1], 0, n - 1))] > 0.5:
            site.paint(shapes.rect(n, c, rng.uniform(1, 3), rng.uniform(2, 6), th), jitter(rng, spec("plastic"), 0.1),
                       wet_k=0.0)
    site.elements["greenhouses"] = True


def solar_farm(rng, site) -> None:
    """Dark photovoltaic panel rows in a rectangle."""
    n = site.n
    c = rng.uniform(0.15 * n, 0.85 * n, 2)
    hh, hw, th = rng.uniform(4, 15), rng.uniform(5, 20), rng.normal(0, 0.05)
    m, box = shapes.rect(n, c, hh, hw, th)
    rows = (np.arange(box[0], box[1])[:, None] % 2 == 0).astype(np.float32)
    site.paint(((m * (0.6 + 0.3 * rows)).astype(np.float32), box), jitter(rng, spec("pv_panel")), wet_k=0.0)
    site.elements["solar_farm"] = True
