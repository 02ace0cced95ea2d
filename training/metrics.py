"""The seed's metrics, as plain numpy functions.

Definitions (also in docs/metrics.md):
- IoU of the plume class, pooled over a dataset: sum TP / sum (TP + FP + FN).
- Mean per-scene IoU: the mean over scenes of each scene's IoU; a scene with no
  plume in truth or prediction counts as 1 (nothing to find, nothing found).
- AP as the seed defines it: per image, precision and recall over every
  binarisation threshold of the probability map, the area under that PR curve
  (the step-wise sum over thresholds of (R_k - R_{k-1}) * P_k, as scikit-learn's
  average_precision_score); AP = the mean over images that have plume pixels.
  A plume-free image has no recall, so no PR curve: it is left out of AP and
  judged by the scene-level false-positive rate instead.
- Pooled pixel AP: the same area over all pixels of the dataset at once.
- Scene detection: a scene is positive when its mask has >= 10 plume pixels.
- Plume detection: a source counts as detected when the predicted mask has at
  least 5 plume pixels within 25 pixels (500 m at 20 m) of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCENE_MIN_PIXELS = 10
PLUME_MIN_PIXELS = 5
PLUME_RADIUS_PX = 25
Q_BINS = (("<1000", 0.0, 1000.0), ("1000-3000", 1000.0, 3000.0),
          ("3000-10000", 3000.0, 10000.0), (">10000", 10000.0, float("inf")))


def pixel_confusion(truth: np.ndarray, pred: np.ndarray) -> tuple[int, int, int]:
    """(TP, FP, FN) of the plume class for binary arrays."""
    t = np.asarray(truth).astype(bool)
    p = np.asarray(pred).astype(bool)
    tp = int(np.count_nonzero(t & p))
    return tp, int(np.count_nonzero(p)) - tp, int(np.count_nonzero(t)) - tp


def iou(truth: np.ndarray, pred: np.ndarray, empty: float = 1.0) -> float:
    tp, fp, fn = pixel_confusion(truth, pred)
    denom = tp + fp + fn
    return tp / denom if denom else empty


def average_precision(truth: np.ndarray, score: np.ndarray) -> float:
    """Area under the precision-recall curve over all thresholds of `score`.

    Same definition as sklearn.metrics.average_precision_score; NaN when
    `truth` has no positive pixel.
    """
    y = np.asarray(truth).ravel().astype(bool)
    s = np.asarray(score, dtype=np.float64).ravel()
    keep = ~np.isnan(s)
    y, s = y[keep], s[keep]
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_each = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]
    tps = np.cumsum(y)[last_of_each]
    precision = tps / (last_of_each + 1)
    recall = tps / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


@dataclass
class SceneScore:
    name: str
    tp: int
    fp: int
    fn: int
    iou: float
    ap: float  # NaN for plume-free scenes
    truth_pixels: int
    pred_pixels: int

    @property
    def truth_positive(self) -> bool:
        return self.truth_pixels >= SCENE_MIN_PIXELS

    @property
    def pred_positive(self) -> bool:
        return self.pred_pixels >= SCENE_MIN_PIXELS


def score_scene(name: str, truth: np.ndarray, prob: np.ndarray, mask: np.ndarray) -> SceneScore:
    tp, fp, fn = pixel_confusion(truth, mask)
    return SceneScore(name, tp, fp, fn, iou(truth, mask), average_precision(truth, prob),
                      int(np.count_nonzero(truth)), int(np.count_nonzero(mask)))


def plume_detected(mask: np.ndarray, row: float, col: float,
                   radius: int = PLUME_RADIUS_PX, min_pixels: int = PLUME_MIN_PIXELS) -> bool:
    h, w = mask.shape
    r0, r1 = max(0, int(row) - radius), min(h, int(row) + radius + 1)
    c0, c1 = max(0, int(col) - radius), min(w, int(col) + radius + 1)
    if r0 >= r1 or c0 >= c1:
        return False
    rr, cc = np.mgrid[r0:r1, c0:c1]
    disk = (rr - row) ** 2 + (cc - col) ** 2 <= radius ** 2
    return int(np.count_nonzero(mask[r0:r1, c0:c1].astype(bool) & disk)) >= min_pixels


def detection_summary(scores: list[SceneScore]) -> dict:
    tp = sum(s.truth_positive and s.pred_positive for s in scores)
    fp = sum((not s.truth_positive) and s.pred_positive for s in scores)
    fn = sum(s.truth_positive and not s.pred_positive for s in scores)
    negatives = sum(not s.truth_positive for s in scores)
    recall = tp / (tp + fn) if tp + fn else float("nan")
    precision = tp / (tp + fp) if tp + fp else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return {"scenes": len(scores), "positive_scenes": tp + fn, "negative_scenes": negatives,
            "recall": recall, "precision": precision, "f1": f1,
            "false_positive_rate": fp / negatives if negatives else float("nan")}


def fit_detection_curve(q_kg_h: np.ndarray, detected: np.ndarray, iters: int = 100) -> dict:
    """Logistic fit of P(detected) on log10(Q); returns the rates for 50 % and 90 % detection."""
    q = np.asarray(q_kg_h, dtype=np.float64)
    y = np.asarray(detected, dtype=np.float64)
    if q.size < 2 or y.min() == y.max():
        return {"q50_kg_h": float("nan"), "q90_kg_h": float("nan"), "a": float("nan"), "b": float("nan")}
    x = np.log10(q)
    X = np.stack([np.ones_like(x), x - x.mean()], axis=1)
    beta = np.zeros(2)
    for _ in range(iters):  # Newton-Raphson with a small ridge for separable data
        p = 1 / (1 + np.exp(-X @ beta))
        grad = X.T @ (y - p) - 1e-3 * beta
        hess = X.T @ (X * (p * (1 - p))[:, None]) + 1e-3 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        beta += step
        if np.abs(step).max() < 1e-8:
            break
    a, b = beta[0] - beta[1] * x.mean(), beta[1]
    if b <= 0:
        return {"q50_kg_h": float("nan"), "q90_kg_h": float("nan"), "a": float(a), "b": float(b)}
    return {"q50_kg_h": float(10 ** (-a / b)), "q90_kg_h": float(10 ** ((np.log(9) - a) / b)),
            "a": float(a), "b": float(b)}


def summarise(scores: list[SceneScore], pooled_ap: float | None = None) -> dict:
    tp = sum(s.tp for s in scores)
    fp = sum(s.fp for s in scores)
    fn = sum(s.fn for s in scores)
    aps = [s.ap for s in scores if not np.isnan(s.ap)]
    return {
        "scenes": len(scores),
        "pooled_iou": tp / (tp + fp + fn) if tp + fp + fn else float("nan"),
        "mean_scene_iou": float(np.mean([s.iou for s in scores])) if scores else float("nan"),
        "seed_ap": float(np.mean(aps)) if aps else float("nan"),
        "ap_scenes": len(aps),
        "pooled_pixel_ap": float("nan") if pooled_ap is None else pooled_ap,
        "detection": detection_summary(scores),
    }


# -- threshold choice on the validation split (used by training) --------------

THRESHOLDS = np.round(np.r_[0.01, 0.02, 0.03, np.arange(0.05, 0.951, 0.05), 0.97, 0.98, 0.99, 0.995, 0.998, 0.999], 4)


def confusion(prob: np.ndarray, mask: np.ndarray, thresholds=THRESHOLDS) -> np.ndarray:
    """(T, 3) counts of TP, FP, FN for each threshold (prob, mask: any matching shape)."""
    p = prob.reshape(-1)
    m = mask.reshape(-1).astype(bool)
    out = np.zeros((len(thresholds), 3), np.int64)
    for k, t in enumerate(thresholds):
        pred = p >= t
        tp = int(np.count_nonzero(pred & m))
        out[k] = (tp, int(np.count_nonzero(pred)) - tp, int(np.count_nonzero(m)) - tp)
    return out


def scores(tp, fp, fn) -> dict:
    iou = tp / max(tp + fp + fn, 1)
    prec = tp / max(tp + fp, 1)
    rec = tp / max(tp + fn, 1)
    f1 = 2 * prec * rec / max(prec + rec, 1e-12)
    return {"iou": float(iou), "precision": float(prec), "recall": float(rec), "f1": float(f1)}


def best_threshold(conf: np.ndarray, thresholds=THRESHOLDS) -> tuple[float, dict]:
    """Threshold maximising pixel IoU over the whole validation set, and the scores there."""
    ious = [scores(*c)["iou"] for c in conf]
    k = int(np.argmax(ious))
    return float(thresholds[k]), scores(*conf[k])


MAX_SCENE_FPR = 0.05  # the product's target: at most 5 % of plume-free scenes flagged


def choose_threshold(conf: np.ndarray, free_kth: np.ndarray, thresholds=THRESHOLDS,
                     max_fpr: float = MAX_SCENE_FPR) -> tuple[float, dict]:
    """The validation threshold: the best pixel IoU among thresholds whose scene false-positive rate
    (plume-free scenes with >= SCENE_MIN_PIXELS pixels above it) is at most `max_fpr`; if none is,
    the threshold with the lowest rate. free_kth: each plume-free scene's SCENE_MIN_PIXELS-th largest
    probability."""
    fpr = np.array([float((free_kth >= t).mean()) if len(free_kth) else 0.0 for t in thresholds])
    allowed = np.flatnonzero(fpr <= max_fpr)
    if allowed.size:
        k = int(allowed[np.argmax([scores(*conf[j])["iou"] for j in allowed])])
    else:
        k = int(np.argmin(fpr))
    sc = scores(*conf[k])
    sc["free_scene_fp_rate"] = float(fpr[k])
    return float(thresholds[k]), sc
