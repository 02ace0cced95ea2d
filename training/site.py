"""A static site: everything about a place that two passes some days apart have in common.

    site = make_site(rng, n, kind)      # kind in SURFACE_TYPES

Layers (all on an (N, N) grid, N = n + 2 * MARGIN so that a pass can be resampled by a
sub-pixel shift without inventing edges): terrain height (relief, dunes), the dry ground
reflectance (soils, SWIR mineral texture, man-made surfaces painted in), each pixel's
susceptibility to soil moisture, natural vegetation cover, crop parcels with per-parcel
identities, water bodies as a height above the nominal water level, facilities (pads, plants,
pipelines) where leaks happen, flares, and pads that will be built before the target date.
What a date changes is drawn in training/dates.py and applied in training/render.py.

A surface type is a recipe: probabilities of relief kinds, a soil palette, and of each element
(parcels, pivots, town, industry, lake, coast, river, ponds, salt flat, burn scar, wadis,
greenhouses, solar farm, pads, plants, pipelines, roads). No element belongs to one type only,
so that no type is the look of one generator. `mixed` puts two or three types side by side in
smooth regions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from training import ground as gr
from training import infrastructure as infra
from training import landuse, terrain
from training import water as wt
from training.noise import fbm, smooth_field
from training.spectra import jitter, mix, paint, pick, spec

MARGIN = 3  # site pixels beyond each edge of the scene


def _r(**kw):
    base = dict(relief={"flat": 0.4, "plain": 0.5, "hills": 0.1}, palette=("bright_soil", "red_soil", "dry_grass"),
                minerals=(0.2, 0.8), veg=(0.02, 0.15), parcels=0.04, pivots=0.03, town=0.04, industrial=0.3,
                lake=0.03, coast=0.01, river=0.03, ponds=0.3, salt=0.03, burn=0.03, wadis=0.15, greenhouses=0.02,
                solar=0.03, pads=(0, 12), plants=0.2, pipelines=(0, 3), highways=(0, 2), section=0.1, tracks=0.4)
    base.update(kw)
    return base


RECIPES = {
    "desert_sand": _r(relief={"dunes": 0.75, "plain": 0.15, "flat": 0.1}, palette=("sand", "sand", "pale_sand", "bright_soil"),
                      minerals=(0.3, 1.2), veg=(0.0, 0.05), salt=0.15, wadis=0.05, section=0.02, ponds=0.25),
    "bright_soil": _r(relief={"flat": 0.45, "plain": 0.45, "hills": 0.1}, palette=("bright_soil", "caliche", "red_soil", "dry_grass"),
                      veg=(0.03, 0.2), pads=(2, 25), section=0.4, pipelines=(0, 4), plants=0.3),
    "dark_soil": _r(relief={"flat": 0.3, "plain": 0.5, "hills": 0.2}, palette=("dark_soil", "red_soil", "basalt", "dark_soil"),
                    veg=(0.05, 0.3), pads=(0, 10), burn=0.08, wadis=0.25),
    "sparse_vegetation": _r(relief={"flat": 0.3, "plain": 0.5, "hills": 0.2}, palette=("bright_soil", "dry_grass", "red_soil"),
                            veg=(0.15, 0.5), burn=0.25, pads=(0, 16), section=0.2),
    "cropland": _r(relief={"flat": 0.6, "plain": 0.4}, palette=("bright_soil", "dark_soil", "red_soil"), veg=(0.02, 0.1),
                   parcels=1.0, pivots=0.5, town=0.25, river=0.15, greenhouses=0.2, pads=(0, 8), burn=0.05, solar=0.05),
    "water": _r(relief={"flat": 0.5, "plain": 0.4, "hills": 0.1}, veg=(0.05, 0.3), lake=0.6, coast=0.3, river=0.3,
                ponds=0.5, town=0.2, parcels=0.2, pads=(0, 6)),
    "urban_industrial": _r(relief={"flat": 0.6, "plain": 0.4}, palette=("bright_soil", "concrete", "dry_grass"),
                           town=1.0, industrial=0.85, parcels=0.3, pivots=0.1, ponds=0.3, solar=0.15, greenhouses=0.1,
                           plants=0.4, pads=(0, 8), highways=(1, 3)),
    "rocky_relief": _r(relief={"hills": 0.4, "mesas": 0.35, "mountains": 0.25}, palette=("limestone", "bright_soil", "red_soil", "basalt"),
                       minerals=(0.6, 1.6), veg=(0.0, 0.25), wadis=0.6, pads=(0, 6), section=0.0, river=0.08, lake=0.03),
    "salt_flat": _r(relief={"flat": 0.8, "plain": 0.2}, palette=("bright_soil", "clay", "sand"), minerals=(0.5, 1.4),
                    veg=(0.0, 0.08), salt=1.0, lake=0.15, ponds=0.4, pads=(0, 8)),
    "river_valley": _r(relief={"flat": 0.3, "plain": 0.5, "hills": 0.2}, palette=("dark_soil", "bright_soil", "red_soil"),
                       veg=(0.05, 0.3), river=1.0, parcels=0.6, pivots=0.2, town=0.3, lake=0.1, pads=(0, 8)),
}
SURFACE_TYPES = tuple(RECIPES) + ("mixed",)


@dataclass
class Site:
    n: int  # grid size N (the scene plus MARGIN on each side)
    kind: str
    ground: np.ndarray  # (6, N, N) dry ground reflectance
    height: np.ndarray  # (N, N) terrain height, m
    wet_k: np.ndarray  # (N, N) susceptibility to soil moisture (1: bare soil, 0: roofs and panels)
    veg: np.ndarray  # (N, N) natural vegetation cover 0..1
    veg_green: np.ndarray  # (6,) its green canopy
    veg_dry: np.ndarray  # (6,) its dry canopy
    veg_peak_doy: float  # day of year of the greenest natural vegetation
    shore_elev: np.ndarray | None = None  # (N, N) m above the nominal water level
    water_deep: np.ndarray | None = None
    water_shallow: np.ndarray | None = None
    water_turbid: np.ndarray | None = None
    parcels: landuse.Parcels | None = None
    pads: list = field(default_factory=list)  # facilities: {"row", "col", "kind"}
    pipelines: list = field(default_factory=list)  # ((r0, c0), (r1, c1)) legs
    flares: list = field(default_factory=list)  # {"row", "col", "strength", "p_on"}
    planned: list = field(default_factory=list)  # pads built between the reference and the target
    fresh_burn: np.ndarray | None = None  # (N, N) area that may burn between the two dates
    elements: dict = field(default_factory=dict)  # what the site holds (metadata)

    def paint(self, mask_box, spectrum, wet_k: float | None = None, clear_veg: bool = True, strength: float = 1.0):
        """Paint a (mask, box) shape into the ground; it takes the given moisture susceptibility and clears shrubs."""
        m, (r0, r1, c0, c1) = mask_box
        if r1 <= r0 or c1 <= c0:
            return
        m = np.asarray(m, np.float32) * np.float32(strength)
        paint(self.ground[:, r0:r1, c0:c1], m, spectrum)
        if wet_k is not None:
            w = self.wet_k[r0:r1, c0:c1]
            w += m * (np.float32(wet_k) - w)
        if clear_veg:
            self.veg[r0:r1, c0:c1] *= 1 - m

    def paint_full(self, mask, spectrum, wet_k: float | None = None, clear_veg: bool = True):
        self.paint((mask, (0, self.n, 0, self.n)), spectrum, wet_k, clear_veg)

    def _water(self):
        if self.shore_elev is None:
            self.shore_elev = np.full((self.n, self.n), wt.DRY, np.float32)
        return self.shore_elev

    def add_water(self, shore_elev: np.ndarray) -> None:
        np.minimum(self._water(), shore_elev, out=self.shore_elev)

    def add_pond(self, rng, centre, half_h, half_w, angle) -> None:
        wt.pond(rng, self.n, self._water(), centre, half_h, half_w, angle)
        self.elements["ponds"] = self.elements.get("ponds", 0) + 1

    def add_flare(self, pos, strength: float, p_on: float) -> None:
        """A flare at pos (row, col) burning with probability p_on on a date."""
        self.flares.append({"row": float(pos[0]), "col": float(pos[1]), "strength": float(strength), "p_on": float(p_on)})

    def is_dry(self, r: float, c: float) -> bool:
        """No water body at (r, c) at the nominal level."""
        if self.shore_elev is None:
            return True
        i, j = int(np.clip(r, 0, self.n - 1)), int(np.clip(c, 0, self.n - 1))
        return bool(self.shore_elev[i, j] > 0.3)


def _choose(rng, probs: dict) -> str:
    names = list(probs)
    p = np.asarray([probs[k] for k in names], np.float64)
    return str(rng.choice(names, p=p / p.sum()))


def _natural(rng, n: int, recipe: dict) -> dict:
    """Relief, soils, minerals, playa, wadis, vegetation cover and old burn scars of one surface type."""
    relief = _choose(rng, recipe["relief"])
    height, inter = terrain.height_map(rng, n, relief)
    g = gr.soil_background(rng, n, recipe["palette"])
    if inter is not None:  # interdune floors of another material
        floor = gr.soil_background(rng, n, list(rng.choice(["gypsum", "clay", "carbonate", "bright_soil", "dark_soil"],
                                                           size=2, replace=False)))
        g += inter[None] * (floor - g)
    wet_k = (1 + 0.3 * smooth_field(rng, n, rng.uniform(20, 80))).astype(np.float32)
    info = {"relief": relief}
    if rng.random() < recipe["salt"]:
        crust, zone = gr.salt_flat(rng, n)
        zw = np.clip(zone / 1.5, 0, 1)
        salt = mix([zw, 0.6 * (1 - zw) + 0.1, 0.4 * (1 - zw)], [jitter(rng, spec("halite"), 0.06),
                                                              jitter(rng, spec("gypsum"), 0.08), jitter(rng, spec("clay"))])
        salt *= 1 + np.float32(rng.uniform(0.02, 0.06)) * smooth_field(rng, n, rng.uniform(1.5, 4))[None]  # polygons
        g += crust[None] * (salt - g)
        wet_k += crust * np.float32(rng.uniform(0.5, 1.5))
        info["salt_flat"] = round(float(crust.mean()), 3)
    m11, m12, minerals = gr.mineral_texture(rng, n, rng.uniform(*recipe["minerals"]), height, inter)
    g[4] *= m11
    g[5] *= m12
    if minerals:
        info["minerals"] = minerals
    if rng.random() < recipe["wadis"]:
        ch = gr.channels(rng, n, rng.uniform(0.8, 3.0))
        paint(g, 0.8 * ch, pick(rng, ("gravel", "sand", "bright_soil")))
        wet_k += ch * np.float32(rng.uniform(0.5, 1.2))
        info["wadis"] = True
    veg = gr.vegetation_cover(rng, n, rng.uniform(*recipe["veg"]))
    if "salt_flat" in info:
        veg *= 1 - crust  # nothing grows on the crust
    if rng.random() < recipe["burn"]:
        b = gr.burn_scar(rng, n)
        paint(g, b * np.float32(rng.uniform(0.5, 0.95)), pick(rng, ("char", "char", "ash")))
        veg *= 1 - b
        info["burn_scar"] = round(float(b.mean()), 3)
    return {"ground": g, "height": height, "wet_k": wet_k, "veg": veg, "info": info}


def _elements(rng, site: Site, recipe: dict, region: np.ndarray) -> None:
    """Water, land use and infrastructure of one surface type inside `region` (0..1)."""
    n = site.n
    inside = region > 0.5
    if not inside.any():
        return
    for name, coast in (("lake", False), ("coast", True)):
        if rng.random() < recipe[name]:
            site.add_water(np.where(inside, wt.lake(rng, n, coast), wt.DRY))
            site.elements[name] = True
    if recipe is RECIPES["water"] and not any(site.elements.get(k) for k in ("lake", "coast")):
        site.add_water(np.where(inside, wt.lake(rng, n, False), wt.DRY))  # a water scene holds a water body
        site.elements["lake"] = True
    if rng.random() < recipe["river"]:
        e, dist = wt.river(rng, n)
        site.add_water(np.where(inside, e, wt.DRY))
        site.height -= np.float32(rng.uniform(2, 15)) * np.exp(-(dist / rng.uniform(8, 40)) ** 2) * inside
        site.elements["river"] = True
    if rng.random() < recipe["ponds"]:
        for _ in range(int(rng.integers(1, 5))):
            c = rng.uniform(5, n - 5, 2)
            if region[int(c[0]), int(c[1])] > 0.5:
                site.add_pond(rng, c, rng.uniform(1, 6), rng.uniform(1, 8), rng.uniform(0, np.pi))
    if site.parcels is None and rng.random() < recipe["parcels"]:
        pivots = int(rng.integers(1, 7)) if rng.random() < recipe["pivots"] else 0
        farmed = region
        if recipe["parcels"] < 0.5:  # fields are incidental here: they take part of the scene
            f = smooth_field(rng, n, rng.uniform(60, 150))
            farmed = region * (f > np.quantile(f, 1 - rng.uniform(0.2, 0.6)))
        site.parcels = landuse.make_parcels(rng, n, farmed, pivots)
        site.veg *= 1 - site.parcels.cover
        site.elements["parcels"] = site.parcels.count
        site.elements["pivots"] = pivots
    if rng.random() < recipe["town"]:
        landuse.town(rng, site, region, industrial=rng.random() < recipe["industrial"])
    if rng.random() < recipe["greenhouses"]:
        landuse.greenhouses(rng, site, region)
    if rng.random() < recipe["solar"]:
        landuse.solar_farm(rng, site)
    infra.roads(rng, site, int(rng.integers(recipe["highways"][0], recipe["highways"][1] + 1)),
                rng.random() < recipe["section"], rng.random() < recipe["tracks"])
    infra.pipelines(rng, site, int(rng.integers(recipe["pipelines"][0], recipe["pipelines"][1] + 1)))
    infra.pads(rng, site, int(rng.integers(recipe["pads"][0], recipe["pads"][1] + 1)), region)
    if rng.random() < recipe["plants"]:
        infra.plant(rng, site)


def make_site(rng: np.random.Generator, n: int, kind: str) -> Site:
    """The static site of a scene of n x n pixels (the grid holds n + 2 * MARGIN pixels a side)."""
    if kind not in SURFACE_TYPES:
        raise ValueError(f"unknown surface {kind!r}; choose from {', '.join(SURFACE_TYPES)}")
    big = n + 2 * MARGIN
    kinds = [kind] if kind != "mixed" else list(rng.choice(list(RECIPES), size=int(rng.integers(2, 4)), replace=False))
    if len(kinds) == 1:
        weights = [np.ones((big, big), np.float32)]
    else:
        w = np.exp(8 * np.stack([fbm(rng, big, scales=(rng.uniform(60, 160), 20, 5)) for _ in kinds]))
        weights = list((w / w.sum(0, keepdims=True)).astype(np.float32))
    parts = [_natural(rng, big, RECIPES[k]) for k in kinds]
    blend = (lambda key: sum(wk * p[key] for wk, p in zip(weights, parts))) if len(kinds) > 1 else (lambda key: parts[0][key])
    ground = parts[0]["ground"] if len(kinds) == 1 else sum(wk[None] * p["ground"] for wk, p in zip(weights, parts))
    site = Site(n=big, kind=kind, ground=ground.astype(np.float32), height=blend("height").astype(np.float32),
                wet_k=blend("wet_k").astype(np.float32), veg=blend("veg").astype(np.float32),
                veg_green=jitter(rng, 0.5 * spec("green_veg") + 0.5 * spec(str(rng.choice(["forest", "green_veg"]))), 0.1),
                veg_dry=pick(rng, ("dry_grass", "shrub", "stubble")), veg_peak_doy=float(rng.uniform(60, 220)))
    site.elements["parts"] = [{"surface": k, **p["info"]} for k, p in zip(kinds, parts)]
    for k, wk in zip(kinds, weights):
        _elements(rng, site, RECIPES[k], wk)
    if site.shore_elev is not None:
        site.water_deep = pick(rng, ("water", "water", "turbid_water"), 0.2)
        site.water_turbid = jitter(rng, spec("turbid_water"), 0.2)
        site.water_shallow = 0.5 * spec("shallow_water") + 0.5 * site.ground[:, big // 2, big // 2]
        riparian = np.exp(-np.maximum(site.shore_elev, 0) / rng.uniform(0.3, 2.0)) * (site.shore_elev > 0)
        np.maximum(site.veg, riparian.astype(np.float32) * np.float32(rng.uniform(0.2, 0.8)), out=site.veg)
    if rng.random() < 0.12:
        infra.plan_construction(rng, site, int(rng.integers(1, 4)))
    if float(site.veg.mean()) > 0.05 and rng.random() < 0.05:
        site.fresh_burn = gr.burn_scar(rng, big)
    site.elements["relief_m"] = round(float(site.height.max() - site.height.min()), 1)
    site.elements["vegetation_cover"] = round(float(site.veg.mean()), 3)
    site.elements["pads"] = sum(p["kind"] == "pad" for p in site.pads)
    site.elements["pipeline_legs"] = len(site.pipelines)
    site.elements["flares"] = len(site.flares)
    np.clip(site.ground, 0.002, 1.2, out=site.ground)
    return site
