"""The source heat-map trial's decoding (training/trials/source_heat.py, docs/methods.md)."""

import numpy as np

from training.trials.source_heat import heat_sources


def _scene():
    mask = np.zeros((64, 64), bool)
    mask[30:33, 20:50] = True  # a plume along the columns
    mask[5:8, 5:8] = True  # a second component, no peak near it
    heat = np.zeros((64, 64), np.float32)
    heat[31, 12], heat[31, 13], heat[31, 11] = 0.8, 0.4, 0.4  # the source, 7 px upwind of the mask
    heat[60, 60] = 0.9  # a peak far from any mask: ignored
    heat[40, 35] = 0.05  # below the threshold: ignored
    return heat, mask


def test_the_strongest_peak_near_a_component_is_its_source_at_the_heat_weighted_centre():
    heat, mask = _scene()
    near, found = heat_sources(heat, mask, tau=0.1, dmax=30.0)
    assert len(found) == 1
    (label, (row, col)), = found.items()
    assert label == near(31, 25)  # the plume's component
    assert abs(row - 31) < 1e-9 and abs(col - 12) < 1e-9  # symmetric neighbours: centred on the peak
    assert near(6, 6) not in found  # the other component keeps find_plumes' source


def test_peaks_beyond_dmax_or_without_a_mask_give_nothing():
    heat, mask = _scene()
    assert heat_sources(heat, mask, tau=0.1, dmax=5.0)[1] == {}
    near, found = heat_sources(heat, np.zeros_like(mask))
    assert found == {} and near(1, 1) == 0
