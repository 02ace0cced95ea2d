"""Plume analysis of a segmentation: one record per plume, with its source and emission rate.

    from core.plumes import find_plumes, plumes_geojson
    plumes = find_plumes(result, wind_ms=3.0)   # result: a client.segmenter.SegmentationResult

geometry    pieces of the mask, their ends, downwind puffs joined to their plume, GeoJSON
signal      the methane signal: B12's drop below the B12 that the other bands predict
sources     the leak: the upwind end traced from the mask, or a peak of the model's heat map
facilities  compact man-made surfaces (well pads) that leaks come from
emission    the emission rate by the integrated mass enhancement method
records     find_plumes: all of the above, per plume
"""

from core.plumes.emission import EmissionEstimate, emission_rate
from core.plumes.facilities import facilities
from core.plumes.geometry import MIN_PIXELS, Plume, downwind_joins, label_pieces, one_sidedness, plumes_geojson
from core.plumes.records import find_plumes, sourceless
from core.plumes.signal import regression_signal, swir_ratio
from core.plumes.sources import HEAT_TAU, end_score, heat_peaks, heat_sources, pick_source, snap_to_facility

__all__ = ["EmissionEstimate", "MIN_PIXELS", "Plume", "HEAT_TAU", "downwind_joins", "emission_rate", "end_score",
           "facilities", "find_plumes", "heat_peaks", "heat_sources", "label_pieces", "one_sidedness",
           "pick_source", "plumes_geojson", "regression_signal", "snap_to_facility", "sourceless", "swir_ratio"]
