"""Where a plume's leak is: its upwind end traced from the mask, or a peak of the model's heat map.

From the mask's upwind tip the source is followed further upwind along the ridge of the methane
signal (`walk_upwind`) while it stays above the local noise; without a wind direction the end of the
long axis that scores higher (`end_score`) is taken; a single facility at the followed source takes
it over (`snap_to_facility`). With the model's source heat map, a plume's source is one of its
peaks (`heat_sources`, `pick_source`).
"""

from __future__ import annotations

import math

import numpy as np

from core.plumes.geometry import one_sidedness


WALK_PX = 20  # furthest the source is followed upwind of the mask's tip

WALK_SIGMAS = 3.0  # ... while the signal on the ridge stays this many noise sigmas above the background

WALK_GAP = 0  # steps below that level that may be crossed

WALK_COS = 0.6  # a step's direction keeps at least this cosine with the upwind direction

# Weights of `end_score`, fitted (logistic regression, no intercept) on the ends of simulated plumes
# whose source only one end finds, and checked on such plumes of other scenes (docs/methods.md).
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

def facility_distance(sites, point) -> float:
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

SNAP_PX = 3.0  # furthest from the followed source that a facility takes the source over

CROWD_PX = 8.0  # ... provided that no other facility lies this close to it

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
# TRACED_CAP_PX, over TRACED_CAP_PX (chosen on tuning scenes, checked on others: docs/methods.md).
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
