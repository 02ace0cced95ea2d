"""Plume records from a segmentation: polygons, sizes, confidence and the source point.

Each group of plume pixels (8-connected, pieces within GAP_PX pixels joined,
since turbulent plumes are patchy) becomes one plume; a smaller piece further
downwind along a plume from its source is a puff of it and joins it
(`downwind_joins`), and with the model's source heat map a small piece with no
source on it is not reported (`sourceless`): one plume, one source point. Its source (where
the leak is) is the upwind end of the plume: with a wind direction given,
the end that lies furthest upwind; without one, the end of the plume's long
axis that scores higher (`end_score`) on what a source end has: the strongest
methane signal at its tip (the column is highest near the source and dilutes
downwind), a narrow plume (plumes widen downwind) and a facility nearby.

The methane signal is B12's drop below the B12 that the other five bands
predict for the surface around the plume (`regression_signal`, a multi-band
regression fitted on the plume-free pixels nearby): fields, soils and the pads
that leaks come from change B12/B11 but drop out of it. The segmentation's mask
tends to begin a few pixels downwind of the source, where the plume is one
pixel wide: from the mask's upwind tip the source is followed further upwind
along the signal's ridge (`walk_upwind`) while it stays above the local noise.
Leaks come from facilities (well pads, tank batteries), and a facility whose
own B12 the regression does not predict hides the gas over it, so the walk
stops at its edge: when a single compact man-made surface (`facilities`:
anomalous in the bands methane leaves alone, or with B12 brighter than
predicted, which gas never makes) lies at the followed source,
its centre is the source (`snap_to_facility`). Coordinates come from the
scene's transform and CRS; geometries are returned in WGS84 lon/lat (RFC 7946).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

MIN_PIXELS = 5
END_FRACTION = 0.15  # share of a plume's pixels, along its axis, that makes up each end


@dataclass
class Plume:
    id: int
    pixels: int
    area_m2: float
    length_m: float
    mean_probability: float
    max_probability: float
    source_row: float
    source_col: float
    source_x: float
    source_y: float
    source_lon: float
    source_lat: float
    geometry: dict  # GeoJSON geometry in WGS84
    emission: dict | None = None  # IME emission-rate estimate when a wind speed is given
    source_from: str = "traced"  # "heat_map": the model's source heat map; "traced": from the mask

    def properties(self) -> dict:
        d = asdict(self)
        d.pop("geometry")
        return d


def swir_ratio(block: np.ndarray) -> np.ndarray:
    """B12/B11 of a (2, h, w) block of B11, B12 (1 where B11 is nodata)."""
    b11, b12 = block[0].astype(np.float32), block[1].astype(np.float32)
    return np.divide(b12, b11, out=np.ones_like(b12), where=b11 > 0)


def regression_signal(block: np.ndarray, fit: np.ndarray, iterations: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Relative drop of B12 below B12 predicted from the other five bands (positive where methane
    absorbs), and the share of that prediction that the observed B11 carries.

    block: (6, h, w) reflectance in BANDS order; fit: (h, w) bool, the pixels the prediction is
    fitted on (valid and plume-free). B12 = a . (B2, B3, B4, B8, B11, 1) is fitted by least squares,
    reweighted (Huber) so that leftover methane and odd pixels pull little: the surface's own
    spectrum is predicted, so fields, soils and pads that change B12/B11 drop out and what is left
    is methane's absorption (and noise). The B11 share lets the column be retrieved exactly
    (`client.methane.column_from_b12_drop`), since methane lowers B11 a little too. With fewer
    than MIN_FIT_PX fitting pixels: the drop of B12/B11 against its median over them (share 1).
    """
    x = block.astype(np.float64)
    b12 = x[5]
    idx = np.flatnonzero(fit)
    if idx.size < MIN_FIT_PX:
        ratio = swir_ratio(block[4:6])
        background = float(np.median(ratio[fit])) if idx.size else 1.0
        return (1.0 - ratio / max(background, 1e-6)).astype(np.float32), np.ones_like(b12, dtype=np.float32)
    design = np.concatenate([x[:5], np.ones_like(b12)[None]]).reshape(6, -1).T
    a, y = design[idx], b12.ravel()[idx]
    weight = np.ones_like(y)
    for _ in range(iterations):
        coef = np.linalg.lstsq(a * weight[:, None], y * weight, rcond=None)[0]
        resid = y - a @ coef
        scale = 1.4826 * np.median(np.abs(resid)) + 1e-9
        weight = 1.0 / np.maximum(1.0, np.abs(resid) / (2.0 * scale))
    pred = (design @ coef).reshape(b12.shape)
    ok = pred > 0
    signal = np.divide(pred - b12, pred, out=np.zeros_like(b12), where=ok)
    share = np.divide(coef[4] * x[4], pred, out=np.zeros_like(b12), where=ok)
    return signal.astype(np.float32), share.astype(np.float32)


MIN_FIT_PX = 60  # fewest plume-free pixels that the B12 prediction is fitted on
BORDER_PX = 4  # an end of a plume this close to the scene's edge may be cut off by it
SMOOTH_PX = 0.7  # Gaussian sigma of the signal smoothing that gives the signal at a plume's tips
GAP_PX = 6  # plume pieces closer than this (turbulent, patchy plumes) are one plume
WALK_PX = 20  # furthest the source is followed upwind of the mask's tip
WALK_SIGMAS = 3.0  # ... while the signal on the ridge stays this many noise sigmas above the background
WALK_GAP = 0  # steps below that level that may be crossed
WALK_COS = 0.6  # a step's direction keeps at least this cosine with the upwind direction
TIP_RADIUS_PX = 10  # the mask pixels within this distance of the tip give the plume's local direction


def _label(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Label plume pixels, grouping pieces that lie within GAP_PX pixels of each other."""
    from scipy import ndimage

    mask = mask.astype(bool)
    # GAP_PX dilations by a 3 x 3 square are one (2 GAP_PX + 1)-square maximum filter (separable: fast).
    grown = ndimage.maximum_filter(mask.view(np.uint8), size=2 * GAP_PX + 1).view(bool)
    labels, n = ndimage.label(grown, structure=np.ones((3, 3), dtype=int))
    labels[~mask] = 0
    return labels, n


@dataclass
class _End:
    """One end of a plume that may hold its source: its tip (the outermost pixels, weighted by the
    signal), the upwind direction there (row, col; None if unknown), the strongest signal among the
    tip's pixels and the spread of the end's pixels across the plume (pixels)."""

    row: float
    col: float
    upwind: np.ndarray | None
    tip_signal: float
    width: float


def _candidate_ends(rows, cols, signal, wind_to_deg, shape) -> tuple[list[_End], float]:
    """The ends of one plume's pixels that may hold the source, and the plume's length in pixels.

    With a wind direction: the upwind end. Without: both ends of the long axis, unless exactly one
    of them runs out of the scene (the plume leaves the image there, so the other is the source);
    `end_score` then chooses between them.
    """
    pts = np.stack([cols.astype(np.float64), rows.astype(np.float64)], axis=1)  # x right, y down
    centre = pts.mean(axis=0)
    if wind_to_deg is not None:
        # Wind direction the plume travels to, degrees clockwise from north; north is -row.
        rad = math.radians(wind_to_deg)
        axis = np.array([math.sin(rad), -math.cos(rad)])
        proj = (pts - centre) @ axis
        ends = [(proj, proj <= np.quantile(proj, END_FRACTION))]
    else:
        if len(pts) >= 2:
            axis = np.linalg.eigh(np.cov((pts - centre).T))[1][:, -1]
        else:
            axis = np.array([1.0, 0.0])
        proj = (pts - centre) @ axis
        low = proj <= np.quantile(proj, END_FRACTION)
        high = proj >= np.quantile(proj, 1 - END_FRACTION)
        h, w = shape

        def at_border(sel):
            m = BORDER_PX
            return bool(np.any((rows[sel] < m) | (cols[sel] < m) | (rows[sel] >= h - m) | (cols[sel] >= w - m)))

        low_cut, high_cut = at_border(low), at_border(high)
        ends = [(proj, low), (-proj, high)]
        if low_cut != high_cut:
            ends = [ends[1] if low_cut else ends[0]]
    across = (pts - centre) @ np.array([-axis[1], axis[0]])
    out = []
    for along, end in ends:  # `along` grows away from this end
        # The source: the outermost pixels (within 1.5 px along the axis) of the end.
        tip = end & (along <= along[end].min() + 1.5)
        wt = np.clip(signal[tip], 1e-3, None)
        row, col = float(np.average(rows[tip], weights=wt)), float(np.average(cols[tip], weights=wt))
        if wind_to_deg is not None:
            upwind = -axis[::-1]  # (row, col)
        else:  # the plume's own direction near the tip: from the pixels behind it to the tip
            near = np.hypot(rows - row, cols - col) <= TIP_RADIUS_PX
            upwind = np.array([row - rows[near].mean(), col - cols[near].mean()])
            norm = float(np.hypot(*upwind))
            upwind = upwind / norm if norm > 1e-6 else None
        out.append(_End(row, col, upwind, float(signal[tip].max()), float(np.std(across[end]))))
    return out, float(proj.max() - proj.min() + 1.0)


# Weights of `end_score`, fitted (logistic regression, no intercept) on the ends of the 605 plumes
# of 1000 simulated scenes whose source only one end finds; on 630 such plumes of 1220 other scenes
# the rule picks the right end for 95 % (the strongest-signal rule it replaced: 90 %).
END_FACILITY_WEIGHT = 0.16  # per pixel between the followed source and the nearest facility
END_FACILITY_MAX_PX = 10.0  # ... counted up to this distance
END_WIDTH_WEIGHT = 0.74  # per pixel of the end's spread across the plume


def end_score(tip_signal: float, width: float, facility_px: float) -> float:
    """How likely an end of a plume is its source, from three things a source end has: the strongest
    methane signal at its tip (tip_signal, in noise sigmas: the column is highest at the leak and
    dilutes downwind), the narrowest plume (width: the spread of the end's pixels across the plume,
    in pixels; plumes widen downwind) and a facility nearby (facility_px: pixels from the followed
    source to the nearest facility pixel). The higher score is the source."""
    return tip_signal - END_WIDTH_WEIGHT * width - END_FACILITY_WEIGHT * min(facility_px, END_FACILITY_MAX_PX)


def _facility_distance(sites, point) -> float:
    return min((float(np.min(np.hypot(px[:, 0] - point[0], px[:, 1] - point[1]))) for _, _, px in sites),
               default=math.inf)


def walk_upwind(signal: np.ndarray, start: tuple[float, float], upwind, noise: float) -> tuple[float, float]:
    """Follow a plume from its mask's tip upwind along the ridge of the methane signal.

    signal: the methane signal around the plume, its background at 0 (unsmoothed: near the source
    the plume is about a pixel wide); start: the tip in that array's (row, col); upwind: unit
    (row, col) vector; noise: the signal's noise sigma. Each step goes to the strongest of the
    neighbouring pixels that lie upwind (within WALK_COS of the direction), so the path bends with a
    meandering plume; the source moves along while that pixel is WALK_SIGMAS x noise above the
    background, and WALK_GAP + 1 weaker steps in a row end the walk (at most WALK_PX steps).
    """
    if upwind is None or not noise > 0:
        return start
    h, w = signal.shape
    moves = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)
             if (dr or dc) and dr * upwind[0] + dc * upwind[1] > WALK_COS * math.hypot(dr, dc)]
    row, col = int(round(start[0])), int(round(start[1]))
    best, misses = start, 0
    for _ in range(WALK_PX):
        steps = [(row + dr, col + dc) for dr, dc in moves if 0 <= row + dr < h and 0 <= col + dc < w]
        if not steps:
            break
        row, col = max(steps, key=lambda rc: signal[rc])
        if signal[row, col] >= WALK_SIGMAS * noise:
            best, misses = (float(row), float(col)), 0
        else:
            misses += 1
            if misses > WALK_GAP:
                break
    return best


FACILITY_SIGMAS = 6.0  # a pixel that departs this far from its surroundings in B2-B8 (or B12 excess) is man-made
FACILITY_BG_PX = 15  # size of the median filter that gives the surroundings' spectrum
FACILITY_MAX_PX = 12  # largest side of a facility's footprint (pads, tank batteries, compressor stations)
SNAP_PX = 3.0  # furthest from the followed source that a facility takes the source over
CROWD_PX = 8.0  # ... provided that no other facility lies this close to it


def facilities(block: np.ndarray, valid: np.ndarray, excess: np.ndarray | None = None
               ) -> list[tuple[float, float, np.ndarray]]:
    """Compact man-made surfaces (well pads, tanks) in a (6, h, w) block: (row, col) centre and pixels.

    Methane leaves B2, B3, B4 and B8 alone, so a pixel whose visible/NIR spectrum stands out from
    its surroundings (median over FACILITY_BG_PX) by FACILITY_SIGMAS robust sigmas is a surface
    feature, not gas; so is one whose B12 is brighter than the other bands predict by as many
    sigmas (excess: the regression signal's negative, in noise sigmas), since gas only darkens B12.
    Thin lines (roads, pipelines) are opened away; what is left with a footprint of at most
    FACILITY_MAX_PX a side is a facility.
    """
    from scipy import ndimage

    score = np.zeros(valid.shape, np.float32)
    for band in block[:4].astype(np.float32):  # B2, B3, B4, B8
        dev = band - _coarse_median(band, FACILITY_BG_PX)
        scale = _mad(dev[valid]) if valid.sum() >= 20 else 0.0
        if scale > 0:
            score = np.maximum(score, np.abs(dev) / scale)
    if excess is not None:  # B12 brighter than the other bands predict: a surface, never methane
        score = np.maximum(score, excess)
    found = ndimage.binary_opening(valid & (score >= FACILITY_SIGMAS), np.ones((2, 2), bool))
    labels, _ = ndimage.label(found)
    out = []
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None or max(box[0].stop - box[0].start, box[1].stop - box[1].start) > FACILITY_MAX_PX:
            continue
        rows, cols = np.nonzero(labels[box] == k)
        rows, cols = rows + box[0].start, cols + box[1].start
        out.append((float(rows.mean()), float(cols.mean()), np.stack([rows, cols], axis=1)))
    return out


def _coarse_median(band: np.ndarray, size: int, step: int = 3) -> np.ndarray:
    """About a size x size median filter, taken on every `step`-th pixel and spread back (cheap)."""
    from scipy import ndimage

    small = ndimage.median_filter(band[::step, ::step], size=max(1, size // step), mode="nearest")
    return np.repeat(np.repeat(small, step, axis=0), step, axis=1)[: band.shape[0], : band.shape[1]]


def snap_to_facility(sites, source: tuple[float, float], upwind) -> tuple[float, float]:
    """The centre of the facility at the followed source, if there is one; else the source.

    sites: `facilities`' list. Leaks come from facilities, and a facility's own spectrum hides the
    gas over it from the B12 regression (the walk upwind stops at its edge): the one facility
    within CROWD_PX of the source, if it lies within SNAP_PX and not downwind, is where the plume
    starts.
    """
    near = []
    for row, col, pixels in sites:
        d = float(np.min(np.hypot(pixels[:, 0] - source[0], pixels[:, 1] - source[1])))
        if d <= CROWD_PX:
            near.append((d, row, col))
    if len(near) != 1:  # none, or a crowd of man-made surfaces (a town): no single facility to name
        return source
    d, row, col = near[0]
    if d > SNAP_PX:
        return source
    if upwind is not None and (row - source[0]) * upwind[0] + (col - source[1]) * upwind[1] < -1.0:
        return source
    return row, col


HEAT_TAU = 0.1  # a source heat-map peak at least this high is a source
HEAT_MAX_PX = 30.0  # ... of the plume that lies within this many pixels of it
# A plume's source is the peak with the best score (pick_source): its height over the highest peak's,
# plus SIDE_WEIGHT x its one-sidedness (1 where the plume lies all on one side of it, as it does of
# its source), less TRACED_WEIGHT x its distance to the end traced from the mask, counted up to
# TRACED_CAP_PX, over TRACED_CAP_PX (chosen on 840 scenes, checked on 1540 others: docs/methods.md).
SIDE_WEIGHT = 0.5
TRACED_WEIGHT = 0.5
TRACED_CAP_PX = 10.0
HEAT_CHOICES = ("scored", "highest")


def heat_peaks(heat: np.ndarray, tau: float = HEAT_TAU) -> list[tuple[float, float, float]]:
    """(row, col, height) of the local maxima (3 x 3) of a source heat map at or above tau, each at
    the heat-weighted centre of its 3 x 3 pixels (sub-pixel), highest first."""
    from scipy import ndimage

    heat = np.nan_to_num(np.asarray(heat, dtype=np.float32), nan=0.0)
    peaks = (heat == ndimage.maximum_filter(heat, 3)) & (heat >= tau)
    out = []
    for r, c in zip(*np.nonzero(peaks)):
        r0, c0 = max(0, r - 1), max(0, c - 1)
        wt = heat[r0:r + 2, c0:c + 2].astype(np.float64)
        gr, gc = np.mgrid[r0:r0 + wt.shape[0], c0:c0 + wt.shape[1]]
        out.append((float((wt * gr).sum() / wt.sum()), float((wt * gc).sum() / wt.sum()), float(heat[r, c])))
    return sorted(out, key=lambda t: -t[2])


def heat_sources(heat: np.ndarray, labels: np.ndarray, tau: float = HEAT_TAU,
                 max_px: float = HEAT_MAX_PX) -> dict[int, list[tuple[float, float, float]]]:
    """{plume label: [(row, col, height), ...]}: for each labelled plume, the heat-map peaks
    (`heat_peaks`) whose nearest plume pixel, within max_px, belongs to it, highest first.

    Worked out plume by plume in a window around each (peaks within max_px of its box, nearest plume
    pixels within 2 max_px), so a whole Sentinel-2 tile costs no scene-sized distance transform."""
    from scipy import ndimage

    out: dict[int, list[tuple[float, float, float]]] = {}
    reach, h, w = int(math.ceil(max_px)) + 1, labels.shape[0], labels.shape[1]
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        # inner window: where a peak within max_px of the plume can lie; outer: its neighbourhoods
        # and every plume pixel that can be nearer to such a peak than this plume is
        r0, r1 = max(0, box[0].start - 2 * reach), min(h, box[0].stop + 2 * reach)
        c0, c1 = max(0, box[1].start - 2 * reach), min(w, box[1].stop + 2 * reach)
        lab = labels[r0:r1, c0:c1]
        dist, (ir, ic) = ndimage.distance_transform_edt(lab == 0, return_indices=True)
        inner = np.zeros(lab.shape, bool)
        inner[max(0, box[0].start - reach) - r0:box[0].stop + reach - r0,
              max(0, box[1].start - reach) - c0:box[1].stop + reach - c0] = True
        win = heat[r0:r1, c0:c1]
        for r, c, v in heat_peaks(win, tau):
            ri, ci = min(int(round(r)), lab.shape[0] - 1), min(int(round(c)), lab.shape[1] - 1)
            if inner[ri, ci] and dist[ri, ci] <= max_px and lab[ir[ri, ci], ic[ri, ci]] == k:
                out.setdefault(k, []).append((r + r0, c + c0, v))
    return out


def one_sidedness(point: tuple[float, float], rows: np.ndarray, cols: np.ndarray) -> float:
    """Length of the mean unit vector from `point` to the plume pixels (rows, cols): 1 when the
    plume lies all on one side of the point, as it does of its source, near 0 from its middle."""
    dr, dc = np.asarray(rows, float) - point[0], np.asarray(cols, float) - point[1]
    d = np.hypot(dr, dc)
    away = d > 0.5  # the pixel under the point has no direction
    if not away.any():
        return 0.0
    return float(np.hypot((dr[away] / d[away]).mean(), (dc[away] / d[away]).mean()))


def pick_source(peaks: list[tuple[float, float, float]], traced: tuple[float, float], rows: np.ndarray,
                cols: np.ndarray, choice: str = "scored") -> tuple[float, float]:
    """A plume's source from its heat peaks (highest first), its traced upwind end and its pixels:
    the peak with the best score (SIDE_WEIGHT, TRACED_WEIGHT above); choice "highest": the highest."""
    if choice not in HEAT_CHOICES:
        raise ValueError(f"choice must be one of {HEAT_CHOICES}, not {choice!r}")
    if choice == "highest" or len(peaks) == 1:
        return peaks[0][0], peaks[0][1]
    top = peaks[0][2]

    def score(peak):
        r, c, h = peak
        traced_px = min(math.hypot(r - traced[0], c - traced[1]), TRACED_CAP_PX)
        return h / top + SIDE_WEIGHT * one_sidedness((r, c), rows, cols) - TRACED_WEIGHT * traced_px / TRACED_CAP_PX

    best = max(peaks, key=score)  # the first of equals: the higher peak
    return best[0], best[1]


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
    if wind_to_deg is not None and not math.isfinite(wind_to_deg):
        raise ValueError(f"wind direction must be a finite number of degrees, not {wind_to_deg!r}")
    if wind_ms is not None and not (math.isfinite(wind_ms) and wind_ms > 0):
        raise ValueError(f"wind speed must be a positive number of m/s, not {wind_ms!r}")
    from rasterio import features
    from rasterio.warp import transform as warp_transform
    from rasterio.warp import transform_geom
    from scipy import ndimage

    scene = result.scene
    mask = result.mask == 1
    if not mask.any():
        return []
    labels, n = _label(mask)
    transform = scene.transform
    pixel_size = math.sqrt(abs(transform.a * transform.e - transform.b * transform.d))
    prob = result.probability
    heat = getattr(result, "source", None)
    from_heat = heat_sources(heat, labels) if heat is not None else {}
    options = dict(wind_to_deg=wind_to_deg, wind_ms=wind_ms, facility_step=facility_step,
                   heat_choice=heat_choice, pixel_size=pixel_size)
    traced, boxes = {}, dict(enumerate(ndimage.find_objects(labels), start=1))
    for k, box in boxes.items():
        # (a label whose grown area held no plume pixel has no box, or fewer than min_pixels)
        if box is not None and np.count_nonzero(labels[box] == k) >= min_pixels:
            traced[k] = _trace(scene, mask, labels, k, box, from_heat.get(k), **options)
    if join_downwind:
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
    if drop_sourceless and heat is not None:
        traced = {k: t for k, t in traced.items() if not sourceless(t)}
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
            source_lon=float(lon[0]), source_lat=float(lat[0]), geometry=_plain(geometry),
            emission=t.emission, source_from=t.source_from,
        ))
    plumes.sort(key=lambda pl: pl.pixels, reverse=True)
    for i, pl in enumerate(plumes, start=1):
        pl.id = i
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
    block = scene.read((r0, c0, r1 - r0, c1 - c0))
    raw, b11_share = regression_signal(block, outside)
    raw[~valid] = 0.0  # the walk does not follow nodata
    # Smoothed over about a plume's width, so that a tip's signal is the plume's, not a noisy pixel's.
    signal = ndimage.gaussian_filter(raw, SMOOTH_PX)[rows, cols]
    noise = _mad(raw[outside]) if outside.sum() >= 20 else 0.0
    walked = raw - float(np.median(raw[outside])) if noise else raw
    ends, length_px = _candidate_ends(rows + r0, cols + c0, signal, wind_to_deg, labels.shape)
    # facilities: for the source's end and step, and for the emission estimate
    sites = facilities(block, valid, -walked / noise if noise else None) if source is None or wind_ms else []
    if source is None:
        # Tip signals in noise sigmas (in a noiseless scene: against the plume's median signal).
        scale = noise if noise else float(np.median(np.abs(signal))) or 1.0
        best = None
        for end in ends:  # the source is followed upwind of each candidate end; the best end wins
            followed = walk_upwind(walked, (end.row - r0, end.col - c0), end.upwind, noise)
            score = end_score(end.tip_signal / scale, end.width, _facility_distance(sites, followed))
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
        emission = _emission(raw, b11_share, labels[r0:r1, c0:c1] == k, outside, pixel_size, wind_ms, surface)
    return _Traced(rows=rows + r0, cols=cols + c0, row=float(src_row), col=float(src_col),
                   length_m=length_px * pixel_size, emission=emission,
                   source_from="heat_map" if peaks else "traced", heat=peaks[0][2] if peaks else 0.0)


SOURCELESS_PX = 50  # a piece smaller than this (2 ha at 20 m) ...
SOURCELESS_HEAT = 0.25  # ... whose highest source heat peak is lower than this is no leak


def sourceless(t: _Traced) -> bool:
    """Whether a traced piece is too small to be a plume without a source the model sees on it.

    The source heat map peaks at a leak, and a plume detected at its source carries a peak there.
    Small pieces without one are mostly false alarms on the surface, or puffs of a plume whose
    source lies elsewhere, and their points would be wrong leaks: on 600 tuning scenes (seeds
    3 900 000+ and 3 950 000+) this drops 50 of 111 wrong points and 1 of the 465 plumes whose
    source was located within 2 px (docs/methods.md). Larger pieces are kept without one (a plume
    whose head was not detected is still a plume)."""
    return t.rows.size < SOURCELESS_PX and t.heat < SOURCELESS_HEAT


JOIN_PX = 300.0  # furthest (pixels, from the source) that a puff of a plume is joined to it
JOIN_DEG = 20.0  # ... within this angle of the plume's direction from its source
JOIN_HEAT = 0.5  # ... unless its own heat peak is at least this share of the plume's (a source itself)


def downwind_joins(traced: dict) -> dict[int, int]:
    """{piece's label: plume's label} for the pieces that are puffs of a larger plume.

    traced: {label: _Traced}. A turbulent plume breaks up downwind, and the segmentation marks the
    puffs it sees as pieces of their own, each of which would get a source point of its own, far
    from the leak. A piece is a puff of a larger plume when its centre lies downwind of that plume's
    source: further from it than the plume's centre, within JOIN_PX of it and within JOIN_DEG of the
    direction from the source to the plume's centre; and when the piece has no source heat peak of
    its own of JOIN_HEAT x the plume's or higher. The nearest such plume takes it (largest first,
    so no chains)."""
    order = sorted(traced, key=lambda k: -traced[k].rows.size)
    if len(order) < 2:
        return {}
    t = [traced[k] for k in order]
    size = np.array([x.rows.size for x in t])
    heat = np.array([x.heat for x in t])
    centre = np.array([(x.rows.mean(), x.cols.mean()) for x in t])
    to_centre = centre - np.array([(x.row, x.col) for x in t])  # each plume's direction from its source
    reach = np.hypot(to_centre[:, 0], to_centre[:, 1])
    cos_max = math.cos(math.radians(JOIN_DEG))
    joined = np.zeros(len(t), bool)
    joins: dict[int, int] = {}
    for i in range(1, len(t)):
        # candidates: the larger plumes before it (largest first) that are not puffs themselves
        b = centre[i] - (centre[:i] - to_centre[:i])  # from each candidate's source to this piece
        dist = np.hypot(b[:, 0], b[:, 1])
        along = (to_centre[:i] * b).sum(axis=1)
        ok = (~joined[:i] & (size[:i] > size[i]) & (reach[:i] > 0) & (reach[:i] < dist) & (dist <= JOIN_PX)
              & (along >= cos_max * reach[:i] * dist) & ((heat[i] == 0) | (heat[i] < JOIN_HEAT * heat[:i])))
        if ok.any():
            parent = int(np.flatnonzero(ok)[np.argmin(dist[ok])])
            joins[order[i]] = order[parent]
            joined[i] = True
    return joins


def _mad(values: np.ndarray) -> float:
    """Robust standard deviation (1.4826 x the median absolute deviation)."""
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


RING_PX = 8  # width of the plume-free ring around a plume that gives its local background


def _emission(signal, b11_share, plume, outside, pixel_size, wind_ms, surface=None) -> dict | None:
    """IME emission rate of one plume from its methane signal (the multi-band regression's).

    signal, b11_share: `regression_signal`'s over a block; plume, outside: the plume's pixels and
    the plume-free valid pixels there. The background level and its noise come from a ring of
    plume-free pixels around the plume (RING_PX wide), so that the surface around the source is what
    the plume is compared with. surface: pixels of facilities, whose own spectrum the regression
    does not predict; the plume's pixels there get the median column of its other pixels.
    """
    from scipy import ndimage

    from client.methane import column_from_b12_drop, emission_rate

    ring = ndimage.binary_dilation(plume, np.ones((3, 3), bool), iterations=RING_PX) & outside
    if ring.sum() < 10:
        return None
    background = float(np.median(signal[ring]))
    noise = float(column_from_b12_drop(_mad(signal[ring]), float(np.median(b11_share[ring]))))
    omega = column_from_b12_drop(signal[plume] - background, b11_share[plume])
    if surface is not None:
        hidden = surface[plume]
        if hidden.any() and not hidden.all():
            omega = np.where(hidden, np.median(omega[~hidden]), omega)
    return emission_rate(omega, pixel_size ** 2, wind_ms, omega_noise=noise).as_dict()


def _plain(obj):
    """Tuples -> lists, so the geometry is plain JSON."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def plumes_geojson(plumes: list[Plume], properties: dict | None = None) -> dict:
    """An RFC 7946 FeatureCollection: one polygon feature per plume and one point per source."""
    features = []
    for pl in plumes:
        props = pl.properties()
        features.append({"type": "Feature", "id": f"plume-{pl.id}", "geometry": pl.geometry,
                         "properties": {"kind": "plume", **props}})
        features.append({"type": "Feature", "id": f"source-{pl.id}",
                         "geometry": {"type": "Point", "coordinates": [round(pl.source_lon, 7),
                                                                       round(pl.source_lat, 7)]},
                         "properties": {"kind": "source", "plume_id": pl.id, "source_from": pl.source_from}})
    collection = {"type": "FeatureCollection", "features": features}
    if properties:
        collection["properties"] = properties
    return collection
