"""Plume geometry: pieces of the mask, their ends, puffs joined to their plume, GeoJSON.

Each group of plume pixels (8-connected, pieces within GAP_PX pixels joined, since turbulent plumes
are patchy) is one plume (`label_pieces`). A smaller piece further downwind along a plume from its
source is a puff of it and joins it (`downwind_joins`). `candidate_ends` gives the ends of a plume
that may hold its source; `plumes_geojson` writes the records as an RFC 7946 FeatureCollection.
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

BORDER_PX = 4  # an end of a plume this close to the scene's edge may be cut off by it

GAP_PX = 6  # plume pieces closer than this (turbulent, patchy plumes) are one plume

TIP_RADIUS_PX = 10  # the mask pixels within this distance of the tip give the plume's local direction

def label_pieces(mask: np.ndarray) -> tuple[np.ndarray, int]:
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

def candidate_ends(rows, cols, signal, wind_to_deg, shape) -> tuple[list[_End], float]:
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

def one_sidedness(point: tuple[float, float], rows: np.ndarray, cols: np.ndarray) -> float:
    """Length of the mean unit vector from `point` to the plume pixels (rows, cols): 1 when the
    plume lies all on one side of the point, as it does of its source, near 0 from its middle."""
    dr, dc = np.asarray(rows, float) - point[0], np.asarray(cols, float) - point[1]
    d = np.hypot(dr, dc)
    away = d > 0.5  # the pixel under the point has no direction
    if not away.any():
        return 0.0
    return float(np.hypot((dr[away] / d[away]).mean(), (dc[away] / d[away]).mean()))

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

def plain_json(obj):
    """Tuples -> lists, so the geometry is plain JSON."""
    if isinstance(obj, dict):
        return {k: plain_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain_json(v) for v in obj]
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
