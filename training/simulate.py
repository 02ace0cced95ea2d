"""Assemble a simulated Sentinel-2 scene (target and reference pass) with methane plumes; write it.

    sim = simulate_scene(seed, size=256, n_sources=None, q_kg_h=None, wind_ms=None, clouds=None,
                         surface=None, turbulence=True, reference_plume=None, ref_clouds=None,
                         days_before=None, changes=None)
    write_sim_scene(out_dir, stem, sim) -> Path of <stem>.tif (12 bands) (+ <stem>_mask.tif, <stem>.json)

One static site (training/site.py) is rendered twice: on the target date and on a reference
date some days earlier, each with its own date state (training/dates.py: sun, haze, clouds,
phenology, moisture, water level, flares, sensor). Plumes (training/plume.py) are put on the
target; the label is computed noise-free on the target (core.physics.label_plumes). Some
references carry a plume of their own from an intermittent source; it is never in the mask.

Everything is drawn from one numpy Generator seeded with `seed`, so a seed gives the same scene
bit for bit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.contract import BANDS, write_scene
from core.physics import LABEL_MIN_B12_DROP, LABEL_MIN_PLUME_PIXELS, label_plumes, transmittance
from training import atmosphere as atm
from training import changes as chg
from training import dates
from training import ground as gr
from training import infrastructure as infra
from training.geo import PIXEL_M, georef, pixel_to_lonlat
from training.plume import plume_column
from training.render import surface as render_surface
from training.sensor import add_noise_and_quantise, gain_map, resample
from training.site import MARGIN, SURFACE_TYPES, make_site
from training.splits import split_of

SIMULATOR_VERSION = "2.0"
I11, I12 = BANDS.index("B11"), BANDS.index("B12")
Q_RANGE_KG_H = (300.0, 20_000.0)
WIND_RANGE_MS = (1.0, 10.0)
# Scenes without any source; with the sources too weak to give a labelled plume (most under
# ~1000 kg/h) about a third of all scenes are plume-free by the label.
NO_SOURCE_P = 0.1
AT_FACILITY_P = 0.5  # share of sources put at a pad or plant (when the site has one)
ON_PIPELINE_P = 0.15  # ... on a pipeline
N_ANCHORS = 3  # places where a source can be, drawn in every scene (wet patches gather there too)
REF_PLUME_P_PLUME = 0.25  # a plume scene's reference carries a plume of one of its sources
REF_PLUME_P_FREE = 0.2  # a plume-free scene's reference carries a plume the target does not
REF_Q_SIGMA = 0.7  # log-normal spread of an intermittent source's rate on the reference date
LABEL_TEXT = (f"B12 lowered by >= {100 * LABEL_MIN_B12_DROP:g} % by methane and cloud opacity < 0.5; "
              f"plumes with fewer than {LABEL_MIN_PLUME_PIXELS} such pixels not labelled")


@dataclass
class SimScene:
    data: np.ndarray  # (6, H, W) uint16 target, BANDS order
    mask: np.ndarray  # (H, W) uint8, 1 = plume (target only)
    meta: dict
    crs: object
    transform: object
    column: np.ndarray | None = field(default=None, repr=False)  # (H, W) float32 mol/m2, target
    reference: np.ndarray | None = field(default=None, repr=False)  # (6, H, W) uint16 reference pass
    ref_column: np.ndarray | None = field(default=None, repr=False)  # (H, W) float32 mol/m2, reference
    change_map: np.ndarray | None = field(default=None, repr=False)  # (H, W) uint16, bit i: changes.CHANGE_KINDS[i]


def _n_sources(rng) -> int:
    if rng.random() < NO_SOURCE_P:
        return 0
    return int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))


def _stability(rng, wind: float) -> str:
    # strong wind -> neutral (D); light wind in daytime -> more convective (B, C)
    if wind >= 6:
        return str(rng.choice(["C", "D"], p=[0.3, 0.7]))
    if wind >= 3:
        return str(rng.choice(["B", "C", "D"], p=[0.2, 0.4, 0.4]))
    return str(rng.choice(["B", "C", "D"], p=[0.5, 0.3, 0.2]))


def _anchor(rng, site, n: int) -> tuple[float, float]:
    """A place where a leak can be (site coordinates): a facility, a pipeline, or anywhere."""
    lo, hi = MARGIN + max(4, n // 16), MARGIN + n - 1 - max(4, n // 16)
    inner = [p for p in site.pads if lo <= p["row"] <= hi and lo <= p["col"] <= hi]
    u = rng.random()
    if inner and u < AT_FACILITY_P:
        p = inner[int(rng.integers(len(inner)))]
        return p["row"] + float(rng.uniform(-1, 1)), p["col"] + float(rng.uniform(-1, 1))
    if site.pipelines and u < AT_FACILITY_P + ON_PIPELINE_P:
        (r0, c0), (r1, c1) = site.pipelines[int(rng.integers(len(site.pipelines)))]
        for _ in range(8):
            t = rng.uniform()
            r, c = r0 + t * (r1 - r0), c0 + t * (c1 - c0)
            if lo <= r <= hi and lo <= c <= hi:
                return float(r), float(c)
    r, c = rng.uniform(lo, hi, 2)
    return float(r), float(c)


def _draw_plume(rng, q_kg_h, wind_ms) -> dict:
    q = float(np.exp(rng.uniform(*np.log(Q_RANGE_KG_H))))
    q = q if q_kg_h is None else float(q_kg_h)
    u = float(rng.uniform(*WIND_RANGE_MS))
    u = u if wind_ms is None else float(wind_ms)
    wind_to = float(rng.uniform(0, 360))
    return dict(q_kg_h=q, wind_ms=u, wind_to_deg=wind_to, wind_from_deg=(wind_to + 180) % 360,
                stability=_stability(rng, u))


def _force_site(rng, site, force: dict, n: int) -> None:
    """Give the site what a forced change needs (a flare, a planned pad, a burnable area)."""
    if force.get("flare") and not site.flares:
        site.add_flare(rng.uniform(MARGIN + 8, MARGIN + n - 8, 2), rng.uniform(0.2, 1.0), 0.5)
    if force.get("construction") and not site.planned:
        infra.plan_construction(rng, site, 1)
    if force.get("burn") and site.fresh_burn is None:
        site.fresh_burn = gr.burn_scar(rng, site.n)


def _observe(rng, site, st, columns: list, amf: float, n: int, label: bool):
    """One pass on the scene grid: (uint16 data, column, mask or None, plume pixel counts, cloud info)."""
    refl = np.maximum(resample(render_surface(site, st), st.sensor.phase, MARGIN, n), 1e-3)
    opacity = shadow = None
    cloud_h = 0.0
    if st.clouds:
        opacity, shadow, cloud_h = atm.clouds(rng, n, st.cloud_cover, st.sza, st.saa, PIXEL_M)
        refl = atm.apply_shadow(refl, shadow)
    column = np.sum(columns, axis=0).astype(np.float32) if columns else np.zeros((n, n), np.float32)
    b12_clear = refl[I12].copy()
    if columns:
        refl[I12] *= transmittance(column, "B12", amf).astype(np.float32)
        refl[I11] *= transmittance(column, "B11", amf).astype(np.float32)
    tau = atm.aerosol_field(rng, n, st.aod)
    refl = atm.apply_haze(refl, tau)
    cloud_refl = atm.cloud_reflectance(rng) if st.clouds else None
    if st.clouds:
        refl = atm.apply_cloud(refl, opacity, cloud_refl)
    mask, counts = np.zeros((n, n), np.uint8), np.zeros(len(columns), np.int64)
    if label and columns:
        # the same B12 without methane, through the same haze and cloud (both are affine in the surface)
        clear = atm.apply_haze(b12_clear[None], tau, bands=slice(I12, I12 + 1))
        if st.clouds:
            clear = atm.apply_cloud(clear, opacity, cloud_refl[I12:I12 + 1])
        drop = 1 - refl[I12] / np.maximum(clear[0], 1e-6)
        owner = (np.argmax(np.stack(columns), axis=0) + 1) * (column > 0)
        mask, counts = label_plumes(drop, owner, opacity)
    refl *= gain_map(n, st.sensor.gains, st.sensor.step)
    data = add_noise_and_quantise(rng, refl, st.sensor.snr_swir, st.sensor.noise_alpha)
    cloud = {"clouds": st.clouds, "cloud_cover": round(float((opacity >= 0.5).mean()), 4) if st.clouds else 0.0,
             "cloud_height_m": round(cloud_h, 1)}
    return data, column, mask, counts, cloud, (opacity, shadow) if st.clouds else None


def _source_meta(src: dict, crs, transform) -> dict:
    (lon,), (lat,) = pixel_to_lonlat(crs, transform, [src["row"]], [src["col"]])
    out = {k: v for k, v in src.items() if not k.startswith("_")}
    out.update(row=round(src["row"], 2), col=round(src["col"], 2), lon=float(lon), lat=float(lat))
    return out


def _sensor_meta(st) -> dict:
    s = st.sensor
    step = None if s.step is None else {"angle_deg": round(s.step["angle"], 2), "offset": round(s.step["offset"], 3),
                                         "gains": [round(float(g), 5) for g in s.step["gains"]]}
    return {"snr_swir": round(s.snr_swir, 1), "noise_alpha": round(s.noise_alpha, 3),
            "gains": [round(float(g), 5) for g in s.gains], "detector_step": step}


def simulate_scene(
    seed: int,
    size: int = 256,
    n_sources: int | None = None,
    q_kg_h: float | None = None,
    wind_ms: float | None = None,
    clouds: bool | None = None,
    surface: str | None = None,
    turbulence: bool = True,
    reference_plume: bool | None = None,
    ref_clouds: bool | None = None,
    days_before: int | None = None,
    changes: dict | None = None,
) -> SimScene:
    """A target scene with its reference pass. None draws a quantity; a value forces it.

    reference_plume: True gives the reference a plume of its own (from a target source, or in a
    plume-free scene from a source silent on the target date), False none. ref_clouds: clouds on
    the reference. days_before: reference date. changes: {kind: True / False} forces a change
    between the dates where the site allows (see dates.draw_pass; "flare", "construction" and
    "burn" add what the site lacks).
    """
    if size < 64:
        raise ValueError("size must be >= 64")
    n = int(size)
    rng = np.random.default_rng(seed)
    # drawn whether forced or not, so that forcing one quantity leaves the others' draws alone
    kind = str(rng.choice(SURFACE_TYPES))
    kind = surface or kind
    n_src = _n_sources(rng)
    n_src = n_src if n_sources is None else int(n_sources)
    crs, transform, region = georef(rng, n)
    (lon0,), (lat0,) = pixel_to_lonlat(crs, transform, [n / 2], [n / 2])
    site = make_site(rng, n, kind)
    force = dict(changes or {})
    _force_site(rng, site, force, n)
    anchors = [_anchor(rng, site, n) for _ in range(max(N_ANCHORS, n_src))]

    doy = float(rng.uniform(0, 365))
    tgt = dates.draw_pass(rng, site, lat0, doy, anchors, clouds=clouds)
    days = dates.draw_days(rng)
    days = days if days_before is None else int(days_before)
    ref = dates.draw_pass(rng, site, lat0, doy - days, anchors, clouds=ref_clouds, target=tgt, days=days, force=force)

    # target plumes
    sources = []
    for i in range(n_src):
        s = _draw_plume(rng, q_kg_h, wind_ms)
        s["row"] = anchors[i][0] - MARGIN + tgt.sensor.phase[0]
        s["col"] = anchors[i][1] - MARGIN + tgt.sensor.phase[1]
        s["_anchor"] = i
        s["_col"] = plume_column(n, (s["row"], s["col"]), s["q_kg_h"], s["wind_ms"], s["wind_to_deg"], s["stability"],
                                 PIXEL_M, rng, turbulence=turbulence)
        sources.append(s)
    # an intermittent source on the reference date
    p_ref = REF_PLUME_P_PLUME if n_src else REF_PLUME_P_FREE
    has_ref_plume = rng.random() < p_ref
    has_ref_plume = has_ref_plume if reference_plume is None else bool(reference_plume)
    ref_sources = []
    s = _draw_plume(rng, None, None)  # drawn in every scene, so that forcing the plume changes nothing else
    j = int(rng.integers(max(n_src, 1)))
    rate = float(np.exp(rng.normal(0, REF_Q_SIGMA)))
    if has_ref_plume:
        if n_src:
            s["q_kg_h"] = float(np.clip(sources[j]["q_kg_h"] * rate, *Q_RANGE_KG_H))
            s["target_source"] = j
        a = anchors[j]
        s["row"] = a[0] - MARGIN + ref.sensor.phase[0]
        s["col"] = a[1] - MARGIN + ref.sensor.phase[1]
        s["reference_only"] = True
        s["_col"] = plume_column(n, (s["row"], s["col"]), s["q_kg_h"], s["wind_ms"], s["wind_to_deg"], s["stability"],
                                 PIXEL_M, rng, turbulence=turbulence)
        ref_sources.append(s)

    data, column, mask, counts, cloud_t, clouds_t = _observe(rng, site, tgt, [s["_col"] for s in sources], tgt.amf, n,
                                                             label=True)
    refd, ref_column, ref_mask, ref_counts, cloud_r, clouds_r = _observe(
        rng, site, ref, [s["_col"] for s in ref_sources], ref.amf, n, label=True)
    kinds, change_map, shares = chg.describe(site, tgt, ref, MARGIN, n, clouds_t, clouds_r, bool(ref_sources))

    src_meta = []
    for s, c in zip(sources, counts):
        s["pixels"] = int(c)
        src_meta.append(_source_meta(s, crs, transform))
    ref_meta_sources = []
    for s, c in zip(ref_sources, ref_counts):
        s["pixels"] = int(c)
        ref_meta_sources.append(_source_meta(s, crs, transform))
    shift = (ref.sensor.phase[0] - tgt.sensor.phase[0], ref.sensor.phase[1] - tgt.sensor.phase[1])
    ts = _sensor_meta(tgt)
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
        "site": site.elements,
        "day_of_year": round(tgt.doy, 2),
        "local_solar_time_h": round(tgt.lst_h, 3),
        "sza_deg": round(tgt.sza, 3),
        "vza_deg": round(tgt.vza, 3),
        "saa_deg": round(tgt.saa, 3),
        "air_mass_factor": round(tgt.amf, 4),
        "aod": round(tgt.aod, 4),
        "snr_swir": ts["snr_swir"],
        "sensor": ts,
        **cloud_t,
        "sources": src_meta,
        "plume_pixels": int(mask.sum()),
        "max_column_mol_m2": round(float(column.max()), 4),
        "label_rule": LABEL_TEXT,
        "wind_convention": "wind_to_deg: direction the plume travels, clockwise from north; wind_from_deg: meteorological",
        "reference": {
            "days_before": int(days),
            "same_orbit": bool(days % dates.REVISIT_DAYS == 0),
            "day_of_year": round(ref.doy, 2),
            "sza_deg": round(ref.sza, 3),
            "vza_deg": round(ref.vza, 3),
            "saa_deg": round(ref.saa, 3),
            "air_mass_factor": round(ref.amf, 4),
            "aod": round(ref.aod, 4),
            **cloud_r,
            **_sensor_meta(ref),
            "shift_px": [round(shift[0], 4), round(shift[1], 4)],
            "water_level_change_m": round(tgt.level - ref.level, 3) if site.shore_elev is not None else None,
            "rain_cover": round(ref.rain_cover, 3),
            "target_rain_cover": round(tgt.rain_cover, 3),
            "changes": kinds,
            "change_share": shares,
            "sources": ref_meta_sources,
            "plume_pixels": int(ref_mask.sum()),
        },
    }
    return SimScene(data=data, mask=mask, meta=meta, crs=crs, transform=transform, column=column, reference=refd,
                    ref_column=ref_column, change_map=change_map)


def write_sim_scene(out_dir, stem: str, sim: SimScene) -> Path:
    """Write <stem>.tif (12-band contract GeoTIFF: target then reference), <stem>_mask.tif (uint8)
    and <stem>.json; return the .tif path."""
    import rasterio

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tif = out / f"{stem}.tif"
    write_scene(tif, np.concatenate([sim.data, sim.reference]), sim.crs, sim.transform)
    h, w = sim.mask.shape
    profile = {"driver": "GTiff", "dtype": "uint8", "count": 1, "height": h, "width": w,
               "crs": sim.crs, "transform": sim.transform, "compress": "deflate"}
    with rasterio.open(out / f"{stem}_mask.tif", "w", **profile) as dst:
        dst.write(sim.mask[None])
        dst.set_band_description(1, "plume")
    (out / f"{stem}.json").write_text(json.dumps(sim.meta, indent=1))
    return tif
