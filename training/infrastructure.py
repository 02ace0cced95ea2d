"""Oil-and-gas and transport infrastructure: roads, tracks, pipelines, well pads, plants, flares.

Pads, plants and pipelines are where leaks usually are, so they are also where the simulator
puts many sources; they appear with the same statistics in plume-free scenes, so that a model
cannot read "there is a plume" off the presence of a pad. Flares are hot (bright in B12 and,
less, B11) when burning; whether one burns is drawn per pass. Planned pads are built between
the reference date and the target date (construction).
"""

from __future__ import annotations

import numpy as np

from training import shapes
from training.spectra import jitter, pick, spec

SECTION_PX = 80.5  # one mile at 20 m: the Permian's section-line road grid


def _across(rng, n: int, angle: float | None = None):
    """End points of a straight line through the scene."""
    a = rng.uniform(0.1 * n, 0.9 * n, 2)
    ang = rng.uniform(0, np.pi) if angle is None else angle
    d = np.array([np.sin(ang), np.cos(ang)]) * 1.5 * n
    return a - d, a + d


def roads(rng, site, highways: int, section_grid: bool, tracks: bool) -> None:
    n = site.n
    for _ in range(highways):
        p0, p1 = _across(rng, n)
        site.paint_full(shapes.full(n, shapes.segment(n, p0, p1, rng.uniform(0.6, 1.8))),
                        pick(rng, ("asphalt", "asphalt", "concrete")), wet_k=0.3)
    if section_grid:
        th = rng.normal(0, 0.03)
        spacing = SECTION_PX * rng.choice([0.5, 1.0, 1.0])
        yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
        u = xx * np.float32(np.cos(th)) - yy * np.float32(np.sin(th)) + rng.uniform(0, spacing)
        v = xx * np.float32(np.sin(th)) + yy * np.float32(np.cos(th)) + rng.uniform(0, spacing)
        w = rng.uniform(0.4, 0.9)
        du = np.abs((u + spacing / 2) % spacing - spacing / 2)
        dv = np.abs((v + spacing / 2) % spacing - spacing / 2)
        keep_u, keep_v = rng.random() < 0.9, rng.random() < 0.7
        m = np.maximum(np.clip(w + 0.5 - du, 0, 1) * keep_u, np.clip(w + 0.5 - dv, 0, 1) * keep_v)
        site.paint_full(m, pick(rng, ("caliche", "gravel")), wet_k=1.0)
        site.elements["section_roads"] = True
    if tracks:
        spectrum = pick(rng, ("bright_soil", "gravel", "sand"))
        for _ in range(int(rng.integers(1, 5))):
            for seg in track(rng, n):
                site.paint(shapes.segment(n, *seg, rng.uniform(0.4, 0.8)), spectrum, wet_k=1.0, strength=0.6)


def track(rng, n: int, step: float = 4.0) -> list:
    """A dirt track: a gently wandering polyline (heading changes a little at every step)."""
    p = rng.uniform(0, n, 2)
    heading = rng.uniform(0, 2 * np.pi)
    turn = rng.uniform(0.03, 0.2)
    segs = []
    for _ in range(int(rng.uniform(10, 1.5 * n / step))):
        heading += rng.normal(0, turn)
        q = p + step * np.array([np.sin(heading), np.cos(heading)])
        segs.append((tuple(p), tuple(q)))
        p = q
        if not (-step <= p[0] <= n + step and -step <= p[1] <= n + step):
            break
    return segs


def pipelines(rng, site, count: int) -> None:
    """Right-of-way scars: cleared, disturbed strips (2-3 straight legs), brighter and without shrubs."""
    n = site.n
    for _ in range(count):
        pts = [rng.uniform(-0.1 * n, 1.1 * n, 2)]
        for _ in range(int(rng.integers(1, 4))):
            ang = rng.uniform(0, 2 * np.pi)
            pts.append(pts[-1] + np.array([np.sin(ang), np.cos(ang)]) * rng.uniform(0.3, 1.0) * n)
        width = rng.uniform(0.8, 2.5)
        spec_row = pick(rng, ("bright_soil", "caliche", "sand", "red_soil"), 0.1)
        for p0, p1 in zip(pts, pts[1:]):
            site.paint(shapes.segment(n, p0, p1, width), spec_row * np.float32(rng.uniform(1.0, 1.15)), wet_k=1.0,
                       clear_veg=True, strength=rng.uniform(0.4, 0.9))
            site.pipelines.append((tuple(p0), tuple(p1)))


def pads(rng, site, count: int, region: np.ndarray) -> None:
    """Well pads: caliche rectangles with an access road; tanks, dark equipment, pits; some with flares."""
    n = site.n
    grid = rng.normal(0, 0.03) if rng.random() < 0.6 else None
    for _ in range(count):
        c = rng.uniform(4, n - 4, 2)
        if region[int(c[0]), int(c[1])] < 0.5 or not site.is_dry(*c):
            continue
        hh, hw = rng.uniform(1.5, 4.5, 2)
        ang = grid if grid is not None else rng.uniform(0, np.pi)
        site.paint(shapes.rect(n, c, hh, hw, ang), pick(rng, ("caliche", "caliche", "gravel", "bright_soil")),
                   wet_k=0.9, strength=rng.uniform(0.7, 1.0))
        end = c + rng.normal(0, n / 7, 2)
        site.paint(shapes.segment(n, c, end, rng.uniform(0.5, 1.0)), jitter(rng, spec("caliche")), wet_k=1.0,
                   strength=rng.uniform(0.5, 0.9))
        if rng.random() < 0.4:  # tank battery
            for k in range(int(rng.integers(1, 4))):
                site.paint(shapes.disc(n, (c[0] + rng.uniform(-hh, hh), c[1] + rng.uniform(-hw, hw)),
                                       rng.uniform(0.4, 0.9)), pick(rng, ("roof_metal", "tar_black")), wet_k=0.0)
        if rng.random() < 0.2:  # reserve / produced-water pit
            site.add_pond(rng, (c[0] + rng.choice([-1, 1]) * (hh + 1.5), c[1]), rng.uniform(0.8, 2), rng.uniform(1, 3), ang)
        site.pads.append({"row": float(c[0]), "col": float(c[1]), "kind": "pad"})
        if rng.random() < 0.12:
            site.add_flare(c + rng.uniform(-1, 1, 2), rng.uniform(0.03, 0.6), rng.uniform(0.3, 0.95))


def plant(rng, site) -> None:
    """A compressor station or gas plant: a compound of roofs and tanks, often with a flare."""
    n = site.n
    c = rng.uniform(0.15 * n, 0.85 * n, 2)
    ang = rng.normal(0, 0.05)
    hh, hw = rng.uniform(5, 14, 2)
    site.paint(shapes.rect(n, c, hh, hw, ang), pick(rng, ("caliche", "gravel", "concrete")), wet_k=0.7)
    for _ in range(int(rng.integers(2, 8))):
        cc = c + rng.uniform(-0.7, 0.7, 2) * np.array([hh, hw])
        site.paint(shapes.rect(n, cc, rng.uniform(0.8, 3), rng.uniform(1, 4), ang),
                   pick(rng, ("roof_metal", "concrete", "tar_black")), wet_k=0.0)
    for _ in range(int(rng.integers(0, 6))):
        cc = c + rng.uniform(-0.8, 0.8, 2) * np.array([hh, hw])
        site.paint(shapes.disc(n, cc, rng.uniform(0.7, 2)), jitter(rng, spec("roof_metal")), wet_k=0.0)
    site.pads.append({"row": float(c[0]), "col": float(c[1]), "kind": "plant"})
    site.elements["plant"] = site.elements.get("plant", 0) + 1
    if rng.random() < 0.6:
        site.add_flare(c + rng.uniform(-0.9, 0.9, 2) * np.array([hh, hw]), rng.uniform(0.1, 1.5), rng.uniform(0.5, 0.98))


def plan_construction(rng, site, count: int) -> None:
    """Pads that will be built between the reference date and the target date (not yet painted)."""
    n = site.n
    for _ in range(count):
        c = rng.uniform(6, n - 6, 2)
        shape = shapes.rect(n, c, *rng.uniform(1.5, 4.5, 2), rng.uniform(0, np.pi))
        site.planned.append({"shape": shape, "spectrum": pick(rng, ("caliche", "bright_soil", "gravel")),
                             "row": float(c[0]), "col": float(c[1])})
