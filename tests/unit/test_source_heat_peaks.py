"""Source points from the model's source heat map (core.plumes.heat_peaks / heat_sources, used by
find_plumes when a SegmentationResult carries `source`)."""

import numpy as np
import pytest

from core.plumes import heat_peaks, heat_sources, pick_source
from core.plumes import label_pieces as plume_labels


def _scene():
    mask = np.zeros((64, 64), bool)
    mask[30:33, 20:50] = True  # a plume along the columns
    mask[5:8, 5:8] = True  # a second plume, no peak near it
    heat = np.zeros((64, 64), np.float32)
    heat[31, 12], heat[31, 13], heat[31, 11] = 0.8, 0.4, 0.4  # the source, 7 px upwind of the mask
    heat[31, 30] = 0.3  # a weaker peak on the same plume: not its source
    heat[60, 60] = 0.9  # a peak far from any plume: ignored
    heat[40, 35] = 0.05  # below the threshold: ignored
    return heat, mask


def test_peaks_are_local_maxima_above_tau_at_the_heat_weighted_centre_highest_first():
    heat, _ = _scene()
    heat[10, 40], heat[10, 41] = 0.6, 0.2  # an asymmetric peak: its centre moves towards the neighbour
    peaks = heat_peaks(heat, 0.1)
    assert [round(h, 2) for _, _, h in peaks] == [0.9, 0.8, 0.6, 0.3]
    r, c, _ = peaks[2]
    assert r == 10 and abs(c - (40 * 0.6 + 41 * 0.2) / 0.8) < 1e-6
    assert heat_peaks(np.zeros((8, 8), np.float32)) == []


def test_a_plumes_peaks_are_the_peaks_nearest_to_it_highest_first():
    heat, mask = _scene()
    labels, _ = plume_labels(mask)
    found = heat_sources(heat, labels, tau=0.1, max_px=30.0)
    assert list(found) == [labels[31, 25]]  # the other plume keeps the traced source
    (row, col, h), second = found[labels[31, 25]]
    assert abs(row - 31) < 1e-9 and abs(col - 12) < 1e-9  # symmetric neighbours: centred on the peak
    assert h == np.float32(0.8) and second[:2] == (31.0, 30.0)


def test_one_sidedness_is_one_at_a_plumes_end_and_low_in_its_middle():
    from core.plumes import one_sidedness

    rows, cols = np.nonzero(np.pad(np.ones((3, 30), bool), ((30, 31), (20, 14))))  # rows 30-32, cols 20-49
    assert one_sidedness((31.0, 12.0), rows, cols) > 0.99  # upwind of the plume
    assert one_sidedness((31.0, 20.0), rows, cols) > 0.9  # at its end
    assert one_sidedness((31.0, 35.0), rows, cols) < 0.1  # in its middle
    assert one_sidedness((31.0, 35.0), np.array([31]), np.array([35])) == 0.0


def test_the_source_is_the_best_scored_peak():
    """score = height / highest + 0.5 x one-sidedness - 0.5 x min(distance to the traced end, 10) / 10"""
    rows, cols = np.nonzero(np.pad(np.ones((3, 30), bool), ((30, 31), (20, 14))))  # rows 30-32, cols 20-49
    end, middle, tail = (31.0, 19.0, 0.8), (31.0, 35.0, 0.9), (31.0, 50.0, 0.5)
    # the highest peak is in the plume's middle: the one at its end, also where tracing ended, wins
    assert pick_source([middle, end], (31.0, 19.5), rows, cols) == end[:2]
    # ... and wins without tracing's support too: 0.89 + 0.49 - 0.5 against 1 + 0.02 - 0.25
    assert pick_source([middle, end], (31.0, 40.0), rows, cols) == end[:2]
    # two ends: the traced one wins unless the other is much higher
    assert pick_source([end, tail], (31.0, 50.0), rows, cols) == tail[:2]
    assert pick_source([end, (31.0, 50.0, 0.1)], (31.0, 50.0), rows, cols) == end[:2]
    assert pick_source([middle, end], (31.0, 19.5), rows, cols, choice="highest") == middle[:2]
    assert pick_source([tail], (31.0, 19.0), rows, cols) == tail[:2]  # the only peak
    with pytest.raises(ValueError, match="choice"):
        pick_source([end], (0.0, 0.0), rows, cols, choice="first")


def test_peaks_beyond_max_px_or_without_a_plume_give_nothing():
    heat, mask = _scene()
    labels, _ = plume_labels(mask)
    # the source lies 8 px from the mask: beyond 5 px only the weaker peak on the plume is left
    assert heat_sources(heat, labels, tau=0.1, max_px=5.0) == {labels[31, 25]: [(31.0, 30.0, np.float32(0.3))]}
    assert heat_sources(heat, np.zeros_like(labels)) == {}
    assert heat_sources(np.full(mask.shape, np.nan, np.float32), labels) == {}  # nodata heat


def test_find_plumes_takes_the_source_from_the_heat_map():
    from training.simulate import simulate_scene
    from training.sources import _result

    sim = simulate_scene(seed=3_100_001, size=256, n_sources=1, q_kg_h=30000.0, clouds=False)
    truth = sim.mask == 1
    src = sim.meta["sources"][0]
    heat = np.zeros(truth.shape, np.float32)
    r, c = int(round(src["row"])), int(round(src["col"]))
    heat[r, c] = 0.9
    from core.plumes import find_plumes

    traced = find_plumes(_result(sim, truth.astype(np.float32), truth, 0.5))
    with_heat = find_plumes(_result(sim, truth.astype(np.float32), truth, 0.5, source=heat))
    assert len(with_heat) == len(traced) >= 1
    best = min(with_heat, key=lambda p: np.hypot(p.source_row - r, p.source_col - c))
    assert (best.source_row, best.source_col) == (r, c)
    # the lon/lat follow the heat-map source
    assert best.source_lon != 0 and [p.pixels for p in with_heat] == [p.pixels for p in traced]


def test_find_plumes_prefers_a_peak_at_the_traced_end_over_a_higher_one_elsewhere():
    from core.plumes import find_plumes
    from training.simulate import simulate_scene
    from training.sources import _result

    sim = simulate_scene(seed=3_100_001, size=256, n_sources=1, q_kg_h=30000.0, clouds=False)
    truth = sim.mask == 1
    main = max(find_plumes(_result(sim, truth.astype(np.float32), truth, 0.5)), key=lambda p: p.pixels)
    end = (int(round(main.source_row)), int(round(main.source_col)))
    rows, cols = np.nonzero(truth)
    far = np.argmax(np.hypot(rows - end[0], cols - end[1]))  # the plume pixel furthest from its traced end
    heat = np.zeros(truth.shape, np.float32)
    heat[end], heat[rows[far], cols[far]] = 0.5, 0.9

    def source_of_main(**kw):
        found = find_plumes(_result(sim, truth.astype(np.float32), truth, 0.5, source=heat), **kw)
        p = max(found, key=lambda p: p.pixels)
        return (p.source_row, p.source_col), p.source_from

    assert source_of_main() == (end, "heat_map")  # at the traced end: 0.5 / 0.9 against 1 - 0.5
    assert source_of_main(heat_choice="highest") == ((rows[far], cols[far]), "heat_map")
    heat[end] = 0.3  # a third of the highest: it no longer wins
    assert source_of_main()[0] == (rows[far], cols[far])
