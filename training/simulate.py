"""Assemble a simulated Sentinel-2 scene with methane plumes; write it to disk.

    sim = simulate_scene(seed, size=256, n_sources=None, q_kg_h=None, wind_ms=None,
                         clouds=None, surface=None)
    write_sim_scene(out_dir, stem, sim) -> Path of <stem>.tif (+ <stem>_mask.tif, <stem>.json)

Everything is drawn from one numpy Generator seeded with `seed`, so a seed
gives the same scene bit for bit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.contract import BANDS, write_scene
from training import atmosphere as atm
from training.geo import PIXEL_M, georef, pixel_to_lonlat
from core.physics import label_rule, transmittance
from training.plume import plume_column
from training.splits import split_of
from training.surfaces import SURFACE_TYPES, make_surface

SIMULATOR_VERSION = "1.0"
I11, I12 = BANDS.index("B11"), BANDS.index("B12")
Q_RANGE_KG_H = (100.0, 20_000.0)
WIND_RANGE_MS = (1.0, 10.0)


@dataclass
class SimScene:
    data: np.ndarray  # (6, H, W) uint16, BANDS order
    mask: np.ndarray  # (H, W) uint8, 1 = plume
    meta: dict
    crs: object
    transform: object
    column: np.ndarray | None = field(default=None, repr=False)  # (H, W) float32 mol/m2


def _n_sources(rng) -> int:
    u = rng.random()
    if u < 1 / 3:
        return 0
    return int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))


def _stability(rng, wind: float) -> str:
    # strong wind -> neutral (D); light wind in daytime -> more convective (B, C)
    if wind >= 6:
        return str(rng.choice(["C", "D"], p=[0.3, 0.7]))
    if wind >= 3:
        return str(rng.choice(["B", "C", "D"], p=[0.2, 0.4, 0.4]))
    return str(rng.choice(["B", "C", "D"], p=[0.5, 0.3, 0.2]))


def simulate_scene(
    seed: int,
    size: int = 256,
    n_sources: int | None = None,
    q_kg_h: float | None = None,
    wind_ms: float | None = None,
    clouds: bool | None = None,
    surface: str | None = None,
    turbulence: bool = True,
) -> SimScene:
    if size < 64:
        raise ValueError("size must be >= 64")
    n = int(size)
    rng = np.random.default_rng(seed)
    kind = surface or str(rng.choice(SURFACE_TYPES))
    n_src = _n_sources(rng) if n_sources is None else int(n_sources)
    crs, transform, region = georef(rng, n)
    sza = float(rng.uniform(20, 65))
    vza = float(rng.uniform(0, 11))
    saa = float(rng.uniform(110, 170))  # morning overpass, sun to the south-east (northern hemisphere)
    amf = 1 / np.cos(np.deg2rad(sza)) + 1 / np.cos(np.deg2rad(vza))

    refl, pads = make_surface(rng, n, kind)

    # clouds (drawn first so their shadows fall on the surface)
    has_clouds = (rng.random() < 0.3) if clouds is None else bool(clouds)
    cover = float(rng.uniform(0.02, 0.3)) if has_clouds else 0.0
    opacity, shadow, cloud_h = atm.clouds(rng, n, cover, sza, saa, PIXEL_M)
    if has_clouds:
        refl = atm.apply_shadow(refl, shadow)

    # methane sources
    sources = []
    column = np.zeros((n, n), np.float32)
    margin = max(4, n // 16)
    for i in range(n_src):
        q = float(np.exp(rng.uniform(*np.log(Q_RANGE_KG_H)))) if q_kg_h is None else float(q_kg_h)
        u = float(rng.uniform(*WIND_RANGE_MS)) if wind_ms is None else float(wind_ms)
        wind_to = float(rng.uniform(0, 360))
        stab = _stability(rng, u)
        # Most leaks are at a well pad; a pad in the border strip is passed over (a source moved
        # into the scene from its pad would sit beside the pad, not at it).
        inner = [p for p in pads if min(p) >= margin and max(p) <= n - 1 - margin]
        if pads and rng.random() < 0.7 and inner:
            r0, c0 = inner[int(rng.integers(len(inner)))]
        else:
            r0, c0 = (float(v) for v in rng.uniform(margin, n - 1 - margin, 2))
        col_i = plume_column(n, (r0, c0), q, u, wind_to, stab, PIXEL_M, rng, turbulence=turbulence)
        column += col_i
        sources.append(dict(q_kg_h=q, wind_ms=u, wind_to_deg=wind_to, wind_from_deg=(wind_to + 180) % 360,
                            stability=stab, row=r0, col=c0, _col=col_i))

    # methane absorption on the surface-reflected light (plume in the boundary layer, below clouds)
    t12 = transmittance(column, "B12", amf).astype(np.float32)
    t11 = transmittance(column, "B11", amf).astype(np.float32)
    b12_clear = refl[I12].copy()
    refl[I12] *= t12
    refl[I11] *= t11

    aod = float(rng.uniform(0.03, 0.4))
    hz_rng_state = rng.bit_generator.state
    refl = atm.haze(rng, refl, n, aod)
    # B12 without methane through the same haze (same random draws) for the label
    rng_b = np.random.default_rng()
    rng_b.bit_generator.state = hz_rng_state
    b12_no_ch4 = atm.haze(rng_b, np.stack([b12_clear] * 6), n, aod)[I12]
    if has_clouds:
        cloud_rng_state = rng.bit_generator.state
        refl = atm.apply_cloud(refl, opacity, rng)
        rng_b.bit_generator.state = cloud_rng_state
        b12_no_ch4 = atm.apply_cloud(np.stack([b12_no_ch4] * 6), opacity, rng_b)[I12]
    drop = 1 - refl[I12] / np.maximum(b12_no_ch4, 1e-6)
    mask = label_rule(drop, opacity if has_clouds else None)

    snr = float(rng.uniform(100, 200))
    data = atm.add_noise_and_quantise(rng, refl, snr)

    # per-source plume pixel counts: the rule applied to that source's column alone
    rows = [s["row"] for s in sources]
    cols = [s["col"] for s in sources]
    lons, lats = pixel_to_lonlat(crs, transform, rows, cols)
    for s, lon, lat in zip(sources, lons, lats):
        ci = s.pop("_col")
        drop_i = 1 - transmittance(ci, "B12", amf)
        s["pixels"] = int(label_rule(drop_i, opacity if has_clouds else None).sum())
        s["lon"], s["lat"] = float(lon), float(lat)
        s["row"], s["col"] = round(s["row"], 2), round(s["col"], 2)

    meta = {
        "simulator_version": SIMULATOR_VERSION,
        "seed": int(seed),
        "split": split_of(int(seed)),
        "size": n,
        "pixel_m": PIXEL_M,
        "region": region,
        "crs": crs.to_string(),
        "transform": list(transform)[:6],
        "surface": kind,
        "sza_deg": round(sza, 3),
        "vza_deg": round(vza, 3),
        "saa_deg": round(saa, 3),
        "air_mass_factor": round(float(amf), 4),
        "aod": round(aod, 4),
        "snr_swir": round(snr, 1),
        "clouds": has_clouds,
        "cloud_cover": round(float((opacity >= 0.5).mean()), 4),
        "cloud_height_m": round(cloud_h, 1),
        "sources": sources,
        "plume_pixels": int(mask.sum()),
        "max_column_mol_m2": round(float(column.max()), 4),
        "label_rule": "B12 lowered by >= 0.5 % by methane and cloud opacity < 0.5",
        "wind_convention": "wind_to_deg: direction the plume travels, clockwise from north; wind_from_deg: meteorological",
    }
    return SimScene(data=data, mask=mask, meta=meta, crs=crs, transform=transform, column=column)


def write_sim_scene(out_dir, stem: str, sim: SimScene) -> Path:
    """Write <stem>.tif (contract GeoTIFF), <stem>_mask.tif (uint8) and <stem>.json; return the .tif path."""
    import rasterio

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tif = out / f"{stem}.tif"
    write_scene(tif, sim.data, sim.crs, sim.transform)
    h, w = sim.mask.shape
    profile = {"driver": "GTiff", "dtype": "uint8", "count": 1, "height": h, "width": w,
               "crs": sim.crs, "transform": sim.transform, "compress": "deflate"}
    with rasterio.open(out / f"{stem}_mask.tif", "w", **profile) as dst:
        dst.write(sim.mask[None])
        dst.set_band_description(1, "plume")
    (out / f"{stem}.json").write_text(json.dumps(sim.meta, indent=1))
    return tif
