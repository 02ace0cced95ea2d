"""Input features of the multi-pass network: the target and its reference pass, compared in the graph.

The network takes the 12 raw contract bands (the target's B2 B3 B4 B8 B11 B12, then the
reference's, uint16 reflectance x 10000) and computes here, in plain tensor ops that export to
ONNX, what the field has found useful (MARS-S2L's inputs; Varon et al. 2021's multi-pass retrieval):

- a reference mask: where the reference is nodata or cloudy (core/masks.py's test) nothing of it
  is compared, and the network sees where that is;
- the multi-band multi-pass retrieval (MBMP): log(B12/B11) of the target minus the reference's,
  against its local background (a masked 31-pixel mean), and smoothed over about a plume's width;
- a multi-pass regression: the target's B12/B11 predicted from the reference's B12/B11 and both
  passes' visible and NIR bands over their B11, fitted per tile by least squares reweighted (Huber)
  so that the pixels that changed between the dates pull little; the drop below that prediction is
  methane (and noise), since the static texture, shading, haze and gains are predicted;
- the change of each of the other bands between the dates (log target / reference), so that the
  network can tell a greened parcel, rain-darkened soil or a moved shoreline from methane, which
  leaves B2-B8 alone and B11 nearly so;
- the single-pass features (the target's B12/B11 anomaly), for where the reference is masked;
- the target's and the reference's own bands.

A reference plume (methane on the reference's date only) brightens the target's B12 against the
reference: it shows as a negative drop, which the network learns is not a plume of the target.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.contract import BANDS
from core.masks import CLOUD_MIN_B11, CLOUD_MIN_BLUE_RED, CLOUD_MIN_BRIGHTENING, CLOUD_MIN_VISIBLE
from training.model import ANOMALY_CLIP, ANOMALY_WINDOW, RATIO_EPS, SMOOTH_SIGMAS, _solve, gaussian_blur, ridge_matrix

NB = len(BANDS)
I2, I3, I4, I8, I11, I12 = (BANDS.index(b) for b in ("B2", "B3", "B4", "B8", "B11", "B12"))
CHANGE_CLIP = 1.0  # |log change| of a band between the dates above this (x 2.7) is clipped
MP_REGRESSION_ITERATIONS = 3  # Huber reweightings after the first fit
MP_REGRESSION_RIDGE = 1e-2  # on standardised predictors (B12 and B11 of both dates are collinear)

# Feature sets of the multi-pass network (docs/model_comparison.md compares them):
#   mp          everything above: 6 + 6 bands, mask, single-pass anomaly (3), MBMP (3),
#               multi-pass regression (3), band changes (5)
#   mp_derived  mp without the reference's raw bands
#   mp_compact  the target's bands, the mask, MBMP (3) and the multi-pass regression (3)
MULTIPASS_FEATURE_SETS = {
    "mp": 2 * NB + 1 + 3 + 3 + 3 + 5,
    "mp_derived": NB + 1 + 3 + 3 + 3 + 5,
    "mp_compact": NB + 1 + 3 + 3,
}


def reference_ok(t: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) 1 where both passes have data and neither is an opaque cloud (reflectances in):
    core/masks.py's two-pass test, a cloud-like pixel that is also brighter in B2 than on the other date."""
    def cloud(x, other):
        vis = torch.minimum(torch.minimum(x[:, I2], x[:, I3]), x[:, I4])
        return ((vis >= CLOUD_MIN_VISIBLE) & (x[:, I11] >= CLOUD_MIN_B11) & (x[:, I11] < x[:, I8])
                & (x[:, I2] >= CLOUD_MIN_BLUE_RED * x[:, I4]) & (x[:, I2] - other[:, I2] >= CLOUD_MIN_BRIGHTENING))

    has = (t.amin(1) > 0) & (r.amin(1) > 0)
    return (has & ~cloud(t, r) & ~cloud(r, t)).unsqueeze(1).to(t.dtype)


def masked_box_mean(v: torch.Tensor, m: torch.Tensor, k: int = ANOMALY_WINDOW) -> torch.Tensor:
    """Mean of v over a k x k box, over the pixels where m is 1 (separable; 0 where none are)."""
    def box(a):
        a = F.avg_pool2d(a, (1, k), stride=1, padding=(0, k // 2), count_include_pad=True)
        return F.avg_pool2d(a, (k, 1), stride=1, padding=(k // 2, 0), count_include_pad=True)

    return box(v * m) / box(m).clamp_min(1e-3)


def masked_blur(v: torch.Tensor, m: torch.Tensor, sigma: float) -> torch.Tensor:
    return gaussian_blur(v * m, sigma) / gaussian_blur(m, sigma).clamp_min(1e-3) * m


def regression_drop_mp(t: torch.Tensor, r: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) relative drop of the target's B12/B11 below the B12/B11 predicted from the
    reference's B12/B11 and both passes' B2, B3, B4, B8 over their B11, fitted over each image on the
    pixels where m is 1 (Huber-reweighted), clipped to +-ANOMALY_CLIP, 0 where m is 0.

    Every predictor is a ratio to B11 of its own pass, so that what multiplies all bands of a pass
    alike (slope shading under another sun, haze's transmittance, an overall gain) cancels, as it
    does in MBMP; the fit then predicts what MBMP cannot: how the target's SWIR ratio follows the
    reference's and the changes the visible bands show (greening, wetting)."""
    n, _, h, w = t.shape
    b11t, b11r = t[:, I11:I11 + 1] + RATIO_EPS, r[:, I11:I11 + 1] + RATIO_EPS
    preds = torch.cat([t[:, :I11] / b11t, r[:, :I11] / b11r, (r[:, I12:I12 + 1] + RATIO_EPS) / b11r], dim=1)
    k = preds.shape[1]
    preds = preds.reshape(n, k, h * w)
    y = ((t[:, I12:I12 + 1] + RATIO_EPS) / b11t).reshape(n, 1, h * w)
    valid = m.reshape(n, 1, h * w)
    ridge = ridge_matrix(k, MP_REGRESSION_RIDGE, t)  # a tile with no comparable pixel: a masked zero
    weight = valid
    for _ in range(MP_REGRESSION_ITERATIONS + 1):
        total = weight.sum(-1, keepdim=True).clamp_min(1.0)
        mean = (preds * weight).sum(-1, keepdim=True) / total
        centred = preds - mean
        std = ((centred ** 2 * weight).sum(-1, keepdim=True) / total).sqrt().clamp_min(1e-4)
        a = torch.cat([centred / std, torch.ones_like(y)], dim=1)
        aw = a * weight
        gram = aw @ a.transpose(1, 2) / total + ridge
        rhs = (aw * y).sum(-1, keepdim=True) / total
        coef = _solve(gram, rhs)
        pred = (coef * a).sum(1, keepdim=True)
        resid = (y - pred) * valid
        scale = 1.25 * resid.abs().sum(-1, keepdim=True) / total + 1e-5
        weight = valid / torch.clamp(resid.abs() / (2.0 * scale), min=1.0)
    drop = (pred - y) / pred.clamp_min(RATIO_EPS) * valid
    return torch.clamp(drop, -ANOMALY_CLIP, ANOMALY_CLIP).reshape(n, 1, h, w)


def multipass_features(x: torch.Tensor, feature_set: str = "mp") -> torch.Tensor:
    """(N, 12, H, W) reflectance x 10000 (target, then reference) -> (N, C, H, W) features."""
    if feature_set not in MULTIPASS_FEATURE_SETS:
        raise ValueError(f"unknown multi-pass feature set {feature_set!r}; one of {sorted(MULTIPASS_FEATURE_SETS)}")
    x = x.float() * (1.0 / 10000.0)
    t, r = x[:, :NB], x[:, NB:]
    m = reference_ok(t, r)

    def log_ratio(p):
        return torch.log((p[:, I12:I12 + 1] + RATIO_EPS) / (p[:, I11:I11 + 1] + RATIO_EPS))

    lr_t = log_ratio(t)
    valid_t = (t[:, I11:I11 + 1] > 0).to(t.dtype)
    sp = torch.clamp(lr_t - masked_box_mean(lr_t, valid_t), -ANOMALY_CLIP, ANOMALY_CLIP) * valid_t
    single = [sp, *(masked_blur(sp, valid_t, s) for s in SMOOTH_SIGMAS)]
    d = (lr_t - log_ratio(r)) * m
    mbmp = torch.clamp(d - masked_box_mean(d, m), -ANOMALY_CLIP, ANOMALY_CLIP) * m
    mbmp_feats = [mbmp, *(masked_blur(mbmp, m, s) for s in SMOOTH_SIGMAS)]
    reg = regression_drop_mp(t, r, m)
    reg_feats = [reg, *(masked_blur(reg, m, s) for s in SMOOTH_SIGMAS)]
    if feature_set == "mp_compact":
        return torch.cat([t, m, *mbmp_feats, *reg_feats], dim=1)
    change = torch.clamp(torch.log((t[:, :I12] + RATIO_EPS) / (r[:, :I12] + RATIO_EPS)), -CHANGE_CLIP, CHANGE_CLIP) * m
    parts = [t, r] if feature_set == "mp" else [t]
    return torch.cat([*parts, m, *single, *mbmp_feats, *reg_feats, change], dim=1)
