"""Plume records of a segmentation: polygons, sizes, confidence, the source point and the rate.

`find_plumes` labels the mask's pieces (core.plumes.geometry), traces each to its source
(core.plumes.sources, over the methane signal of core.plumes.signal and the facilities of
core.plumes.facilities), joins downwind puffs to their plume, drops small pieces without a source
on the heat map (`sourceless`: one plume, one source point) and estimates each plume's emission
rate when the wind speed is known (core.plumes.emission). Coordinates come from the scene's
transform and CRS; geometries are returned in WGS84 lon/lat (RFC 7946).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.contract import REF_BANDS

from core.plumes.emission import plume_emission
from core.plumes.facilities import facilities
from core.plumes.geometry import MIN_PIXELS, Plume, candidate_ends, label_pieces, plain_json, downwind_joins
from core.plumes.signal import robust_sigma, regression_signal
from core.plumes.sources import (WALK_PX, facility_distance, end_score, heat_sources, pick_source,
                                 snap_to_facility, walk_upwind)


SMOOTH_PX = 0.7  # Gaussian sigma of the signal smoothing that gives the signal at a plume's tips

def find_plumes(result, min_pixels: int = MIN_PIXELS, wind_to_deg: float | None = None,
                wind_ms: float | None = None, facility_step: bool = True,
                heat_choice: str = "scored", join_downwind: bool = True,
                drop_sourceless: bool = True) -> list[Plume]:
    """Plume records of a SegmentationResult, largest first.

    wind_to_deg: the direction the wind blows to (clockwise from north), if known.
    wind_ms: the 10 m wind speed, if known: adds an IME emission-rate estimate.
    facility_step: move the source to the facility at it (`snap_to_facility`); False measures
    what that step adds (training/sources.py).
    When the result carries the model's source heat map (`result.source`), a plume's source is one
    of its heat peaks (`heat_sources`, `pick_source`: the best scored, heat_choice "scored", or the
    highest, "highest"); plumes without one keep the upwind end found as above.
    join_downwind: a smaller piece that lies downwind of a plume's source, along the plume
    (`downwind_joins`), is a puff of that plume: one plume, one source (False measures what it adds).
    drop_sourceless: with a heat map, a small piece that has no source on it (`sourceless`) is not
    reported as a plume (it stays in the mask; False measures what this adds).
    """
    _check_wind(wind_to_deg, wind_ms)
    scene = result.scene
    mask = result.mask == 1
    if not mask.any():
        return []
    labels, _ = label_pieces(mask)
    transform = scene.transform
    pixel_size = math.sqrt(abs(transform.a * transform.e - transform.b * transform.d))
    heat = getattr(result, "source", None)
    options = dict(wind_to_deg=wind_to_deg, wind_ms=wind_ms, facility_step=facility_step,
                   heat_choice=heat_choice, pixel_size=pixel_size)
    traced, boxes = _trace_pieces(scene, mask, labels, heat, min_pixels, options)
    if join_downwind:
        _join_puffs(scene, mask, labels, traced, boxes, options)
    if drop_sourceless and heat is not None:
        traced = {k: t for k, t in traced.items() if not sourceless(t)}
    plumes = _records(scene, labels, result.probability, traced, pixel_size)
    plumes.sort(key=lambda pl: pl.pixels, reverse=True)
    for i, pl in enumerate(plumes, start=1):
        pl.id = i
    return plumes


def _check_wind(wind_to_deg: float | None, wind_ms: float | None) -> None:
    """Refuse a wind direction that is not a finite angle and a speed that is not positive."""
    if wind_to_deg is not None and not math.isfinite(wind_to_deg):
        raise ValueError(f"wind direction must be a finite number of degrees, not {wind_to_deg!r}")
    if wind_ms is not None and not (math.isfinite(wind_ms) and wind_ms > 0):
        raise ValueError(f"wind speed must be a positive number of m/s, not {wind_ms!r}")


def _trace_pieces(scene, mask, labels, heat, min_pixels: int, options: dict) -> tuple[dict, dict]:
    """Every labelled piece of at least min_pixels traced to its source: ({label: _Traced},
    {label: its box})."""
    from scipy import ndimage

    from_heat = heat_sources(heat, labels) if heat is not None else {}
    traced, boxes = {}, dict(enumerate(ndimage.find_objects(labels), start=1))
    for k, box in boxes.items():
        # (a label whose grown area held no plume pixel has no box, or fewer than min_pixels)
        if box is not None and np.count_nonzero(labels[box] == k) >= min_pixels:
            traced[k] = _trace(scene, mask, labels, k, box, from_heat.get(k), **options)
    return traced, boxes


def _join_puffs(scene, mask, labels, traced: dict, boxes: dict, options: dict) -> None:
    """Relabel each downwind puff as its plume (in labels, boxes and traced, in place), then trace
    each plume that gained a puff again as one, from its own source."""
    joins = downwind_joins(traced)
    for child, parent in joins.items():
        part = labels[boxes[child]]
        part[part == child] = parent
        boxes[parent] = tuple(slice(min(a.start, b.start), max(a.stop, b.stop))
                              for a, b in zip(boxes[parent], boxes[child]))
        del traced[child]
    for parent in set(joins.values()):  # traced again as one plume, from the parent's source
        keep = traced[parent]
        traced[parent] = _trace(scene, mask, labels, parent, boxes[parent], None, **options,
                                source=(keep.row, keep.col))
        traced[parent].source_from, traced[parent].heat = keep.source_from, keep.heat


def _records(scene, labels, prob, traced: dict, pixel_size: float) -> list[Plume]:
    """One Plume per traced piece: its polygons and source point in WGS84, its size and confidence
    (ids still 0)."""
    from rasterio import features
    from rasterio.warp import transform as warp_transform
    from rasterio.warp import transform_geom

    transform = scene.transform
    shapes = {}
    for geom, value in features.shapes(labels.astype(np.int32), mask=labels > 0, transform=transform,
                                       connectivity=8):
        shapes.setdefault(int(value), []).append(geom)
    plumes = []
    for k, t in traced.items():
        x, y = transform @ (t.col + 0.5, t.row + 0.5)
        lon, lat = warp_transform(scene.crs, "EPSG:4326", [x], [y])
        polys = shapes.get(k, [])
        geometry = polys[0] if len(polys) == 1 else {
            "type": "MultiPolygon", "coordinates": [p["coordinates"] for p in polys]}
        geometry = transform_geom(scene.crs, "EPSG:4326", geometry, precision=7)
        p = np.nan_to_num(prob[t.rows, t.cols], nan=0.0)
        plumes.append(Plume(
            id=0, pixels=int(t.rows.size), area_m2=float(t.rows.size * pixel_size ** 2), length_m=t.length_m,
            mean_probability=float(p.mean()), max_probability=float(p.max()),
            source_row=t.row, source_col=t.col, source_x=float(x), source_y=float(y),
            source_lon=float(lon[0]), source_lat=float(lat[0]), geometry=plain_json(geometry),
            emission=t.emission, source_from=t.source_from,
        ))
    return plumes

@dataclass
class _Traced:
    """One labelled plume's pixels (scene rows, cols), its source, length and emission estimate, and
    the height of its highest source heat peak (0 without one)."""

    rows: np.ndarray
    cols: np.ndarray
    row: float
    col: float
    length_m: float
    emission: dict | None
    source_from: str
    heat: float

def _trace(scene, mask, labels, k, box, peaks, *, wind_to_deg, wind_ms, facility_step, heat_choice,
           pixel_size, source=None) -> _Traced:
    """Trace plume k (its label's box `box`) to its source; peaks: its heat peaks (`heat_sources`),
    or None. source: (row, col) in the scene, when it is known already (a joined plume's)."""
    from scipy import ndimage

    h, w = labels.shape
    rows, cols = np.nonzero(labels[box] == k)
    # The plume's box and WALK_PX around it (the source may lie upwind of the mask).
    r0, c0 = max(0, box[0].start - WALK_PX - 1), max(0, box[1].start - WALK_PX - 1)
    r1, c1 = min(h, box[0].stop + WALK_PX + 1), min(w, box[1].stop + WALK_PX + 1)
    rows, cols = rows + box[0].start - r0, cols + box[1].start - c0
    valid = scene.valid[r0:r1, c0:c1]
    outside = ~mask[r0:r1, c0:c1] & valid
    window = (r0, c0, r1 - r0, c1 - c0)
    block = scene.read(window)
    # with a reference pass, the multi-pass regression (its B11 and B12 predict the static SWIR texture)
    reference = scene.read(window, REF_BANDS) if scene.has_reference else None
    raw, b11_share = regression_signal(block, outside, reference=reference)
    raw[~valid] = 0.0  # the walk does not follow nodata
    # Smoothed over about a plume's width, so that a tip's signal is the plume's, not a noisy pixel's.
    signal = ndimage.gaussian_filter(raw, SMOOTH_PX)[rows, cols]
    noise = robust_sigma(raw[outside]) if outside.sum() >= 20 else 0.0
    walked = raw - float(np.median(raw[outside])) if noise else raw
    ends, length_px = candidate_ends(rows + r0, cols + c0, signal, wind_to_deg, labels.shape)
    # facilities: for the source's end and step, and for the emission estimate
    sites = facilities(block, valid, -walked / noise if noise else None) if source is None or wind_ms else []
    if source is None:
        # Tip signals in noise sigmas (in a noiseless scene: against the plume's median signal).
        scale = noise if noise else float(np.median(np.abs(signal))) or 1.0
        best = None
        for end in ends:  # the source is followed upwind of each candidate end; the best end wins
            followed = walk_upwind(walked, (end.row - r0, end.col - c0), end.upwind, noise)
            score = end_score(end.tip_signal / scale, end.width, facility_distance(sites, followed))
            if best is None or score > best[0]:
                best = (score, followed, end.upwind)
        _, (src_row, src_col), upwind = best
        if facility_step:
            src_row, src_col = snap_to_facility(sites, (src_row, src_col), upwind)
        src_row, src_col = src_row + r0, src_col + c0
        if peaks:
            src_row, src_col = pick_source(peaks, (src_row, src_col), rows + r0, cols + c0, heat_choice)
    else:
        src_row, src_col = source
    emission = None
    if wind_ms is not None:
        surface = np.zeros_like(valid)
        for _, _, pixels in sites:
            surface[pixels[:, 0], pixels[:, 1]] = True
        emission = plume_emission(raw, b11_share, labels[r0:r1, c0:c1] == k, outside, pixel_size, wind_ms, surface)
    return _Traced(rows=rows + r0, cols=cols + c0, row=float(src_row), col=float(src_col),
                   length_m=length_px * pixel_size, emission=emission,
                   source_from="heat_map" if peaks else "traced", heat=peaks[0][2] if peaks else 0.0)

SOURCELESS_PX = 50  # a piece smaller than this (2 ha at 20 m) ...

SOURCELESS_HEAT = 0.25  # ... whose highest source heat peak is lower than this is no leak

def sourceless(t: _Traced) -> bool:
    """Whether a traced piece is too small to be a plume without a source the model sees on it.

    The source heat map peaks at a leak, and a plume detected at its source carries a peak there.
    Small pieces without one are mostly false alarms on the surface, or puffs of a plume whose
    source lies elsewhere, and their points would be wrong leaks. Dropping them removes many wrong
    points for very few right ones; both bounds were chosen on tuning scenes (docs/methods.md).
    Larger pieces are kept without one (a plume whose head was not detected is still a plume)."""
    return t.rows.size < SOURCELESS_PX and t.heat < SOURCELESS_HEAT
