"""Metrics against independent references: scikit-learn and hand-computed cases."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, jaccard_score

from training.metrics import (
    SceneScore, average_precision, detection_summary, fit_detection_curve, iou, plume_detected,
    score_scene, summarise,
)


def test_iou_hand_computed():
    t = np.array([[1, 1, 0], [0, 0, 0]])
    p = np.array([[1, 0, 1], [0, 0, 0]])
    assert iou(t, p) == pytest.approx(1 / 3)
    assert iou(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0


@pytest.mark.parametrize("seed", range(5))
def test_iou_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    t = rng.random((40, 40)) < 0.2
    p = rng.random((40, 40)) < 0.3
    assert iou(t, p) == pytest.approx(jaccard_score(t.ravel(), p.ravel()))


@pytest.mark.parametrize("seed", range(8))
def test_ap_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    t = rng.random(2000) < 0.1
    s = np.round(rng.random(2000) * 0.5 + t * rng.random(2000) * 0.5, 2)  # many ties
    assert average_precision(t, s) == pytest.approx(average_precision_score(t, s), abs=1e-12)


def test_ap_hand_computed():
    # scores 0.9 (pos), 0.8 (neg), 0.7 (pos): P/R steps (1, .5), (.5, .5), (2/3, 1) -> .5*1 + .5*2/3
    assert average_precision([1, 0, 1], [0.9, 0.8, 0.7]) == pytest.approx(0.5 + 1 / 3)
    assert np.isnan(average_precision([0, 0], [0.1, 0.2]))


def test_pooled_iou_and_seed_ap_over_scenes():
    t1 = np.zeros((10, 10), np.uint8); t1[2:5, 2:5] = 1
    p1 = t1.copy(); p1[2, 2] = 0
    t2 = np.zeros((10, 10), np.uint8)  # plume-free
    p2 = np.zeros((10, 10), np.uint8); p2[0, 0] = 1
    s1 = score_scene("a", t1, p1.astype(float), p1)
    s2 = score_scene("b", t2, p2.astype(float), p2)
    summary = summarise([s1, s2])
    assert summary["pooled_iou"] == pytest.approx(8 / 10)  # TP 8, FN 1, FP 1
    assert summary["mean_scene_iou"] == pytest.approx((8 / 9 + 0.0) / 2)
    assert summary["ap_scenes"] == 1 and summary["seed_ap"] == pytest.approx(s1.ap)


def test_scene_detection_counts():
    def s(truth, pred):
        return SceneScore("x", 0, 0, 0, 0.0, float("nan"), truth, pred)

    d = detection_summary([s(50, 30), s(50, 0), s(0, 12), s(0, 0), s(5, 3)])
    assert d["recall"] == 0.5 and d["precision"] == 0.5
    assert d["false_positive_rate"] == pytest.approx(1 / 3)


def test_plume_detected_near_source_only():
    m = np.zeros((100, 100), np.uint8)
    m[50:52, 60:64] = 1
    assert plume_detected(m, 50, 55)
    assert not plume_detected(m, 5, 5)


def test_detection_curve_recovers_known_rates():
    rng = np.random.default_rng(0)
    q = 10 ** rng.uniform(2, 4.3, 4000)
    p = 1 / (1 + np.exp(-(np.log10(q) - 3.0) * 4))  # 50 % at 1000 kg/h
    fit = fit_detection_curve(q, rng.random(q.size) < p)
    assert fit["q50_kg_h"] == pytest.approx(1000, rel=0.1)
    assert fit["q90_kg_h"] == pytest.approx(10 ** (3 + np.log(9) / 4), rel=0.15)


def test_threshold_keeps_the_scene_false_positive_rate_within_target():
    from training.metrics import choose_threshold

    thresholds = np.array([0.1, 0.5, 0.9])
    conf = np.array([[90, 60, 10], [70, 10, 30], [20, 0, 80]])  # IoU 0.56, 0.64, 0.2
    free_kth = np.array([0.05] * 18 + [0.6, 0.95])  # scene FPR 0.1, 0.1, 0.05
    thr, sc = choose_threshold(conf, free_kth, thresholds)
    assert thr == 0.9 and sc["free_scene_fp_rate"] == 0.05
    thr, _ = choose_threshold(conf, free_kth, thresholds, max_fpr=0.2)
    assert thr == 0.5  # the best IoU once the target allows it
