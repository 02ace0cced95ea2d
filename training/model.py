"""The segmentation network: a small smp U-Net behind an input-normalising wrapper.

The wrapper takes the raw contract input (uint16 reflectance x 10000, any
float/int dtype) and does everything in the graph, so the exported ONNX file
needs no pre-processing: /10000, a B12/B11 log-ratio channel (the methane
signal), per-channel (x - mean) / std with statistics from the training data.
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.contract import BANDS

I11, I12 = BANDS.index("B11"), BANDS.index("B12")
I4, I8 = BANDS.index("B4"), BANDS.index("B8")
ANOMALY_CLIP = 0.3  # |log-ratio anomaly| above this is not methane (a 26 % ratio drop)
SMOOTH_SIGMAS = (1.5, 4.0)  # pixels: the anomaly averaged over about a plume's width (matched filters)
# Input feature sets compared in docs/model_comparison.md; "ratio" is the default and served one.
#   bands       the six reflectances only (the network must find the ratio itself)
#   ratio       bands, log(B12/B11), its local anomaly and that anomaly smoothed at SMOOTH_SIGMAS
#   ratio_ndvi  ratio + NDVI from B4/B8 (vegetation, which drives the SWIR ratio's texture)
#   regress     ratio + B12's drop below B12 predicted from the other five bands over the tile
#               (`regression_drop`), and that drop smoothed at SMOOTH_SIGMAS
FEATURE_SETS = {
    "bands": len(BANDS),
    "ratio": len(BANDS) + 2 + len(SMOOTH_SIGMAS),
    "ratio_ndvi": len(BANDS) + 3 + len(SMOOTH_SIGMAS),
    "regress": len(BANDS) + 3 + 2 * len(SMOOTH_SIGMAS),
}
DEFAULT_FEATURES = "ratio"
N_IN = FEATURE_SETS[DEFAULT_FEATURES]
# Multi-pass feature sets (training/multipass.py) take the 12 bands of a target and its reference.
MULTIPASS_FEATURES = ("mp", "mp_derived", "mp_compact")


def input_bands(feature_set: str) -> int:
    """Raw bands the network of a feature set takes: 6 (one pass) or 12 (target and reference)."""
    return 2 * len(BANDS) if feature_set in MULTIPASS_FEATURES else len(BANDS)


def feature_channels(feature_set: str) -> int:
    if feature_set in MULTIPASS_FEATURES:
        from training.multipass import MULTIPASS_FEATURE_SETS

        return MULTIPASS_FEATURE_SETS[feature_set]
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {feature_set!r}; one of {sorted(FEATURE_SETS) + list(MULTIPASS_FEATURES)}")
    return FEATURE_SETS[feature_set]
ANOMALY_WINDOW = 31  # pixels: local background of the log-ratio
RATIO_EPS = 1e-3

DEFAULT_ARCH = {
    "arch": "Unet",
    "encoder_name": "resnet18",
    "encoder_depth": 3,
    "decoder_channels": [64, 32, 16],
}


def build_net(arch: dict, n_in: int = N_IN, classes: int = 1) -> nn.Module:
    import segmentation_models_pytorch as smp

    a = dict(arch)
    cls = getattr(smp, a.pop("arch"))
    if "decoder_channels" in a:
        a["decoder_channels"] = tuple(a["decoder_channels"])
    return cls(in_channels=n_in, classes=classes, encoder_weights=None, **a)


def features(x: torch.Tensor, feature_set: str = DEFAULT_FEATURES) -> torch.Tensor:
    """(N, 6, H, W) reflectance x 10000 -> (N, FEATURE_SETS[feature_set], H, W): reflectance and, for
    "ratio", log(B12/B11), its local anomaly (against a 31-pixel box mean) and that anomaly smoothed
    at SMOOTH_SIGMAS; "ratio_ndvi" adds NDVI."""
    if feature_set in MULTIPASS_FEATURES:
        from training.multipass import multipass_features

        return multipass_features(x, feature_set)
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {feature_set!r}; one of {sorted(FEATURE_SETS)}")
    x = x.float() * (1.0 / 10000.0)
    if feature_set == "bands":
        return x
    lr = torch.log((x[:, I12:I12 + 1] + RATIO_EPS) / (x[:, I11:I11 + 1] + RATIO_EPS))
    # local anomaly: log-ratio minus its local mean (separable box filter, edges by the valid mean)
    k = ANOMALY_WINDOW
    bg = F.avg_pool2d(lr, (1, k), stride=1, padding=(0, k // 2), count_include_pad=False)
    bg = F.avg_pool2d(bg, (k, 1), stride=1, padding=(k // 2, 0), count_include_pad=False)
    # Methane lowers the ratio by at most a few tens of percent; dark pixels (water, shadow) give
    # wild ratios from a few counts. Clipping keeps them from swamping the normalisation.
    anomaly = torch.clamp(lr - bg, -ANOMALY_CLIP, ANOMALY_CLIP)
    smoothed = [gaussian_blur(anomaly, s) for s in SMOOTH_SIGMAS]
    extra = []
    if feature_set == "ratio_ndvi":
        extra.append((x[:, I8:I8 + 1] - x[:, I4:I4 + 1]) / (x[:, I8:I8 + 1] + x[:, I4:I4 + 1] + RATIO_EPS))
    if feature_set == "regress":
        drop = regression_drop(x)
        extra += [drop, *(gaussian_blur(drop, s) for s in SMOOTH_SIGMAS)]
    return torch.cat([x, lr, anomaly, *smoothed, *extra], dim=1)


REGRESSION_ITERATIONS = 2  # Huber reweightings after the first least-squares fit
REGRESSION_RIDGE = 1e-2  # on standardised predictors: keeps the 6 x 6 system well posed (a weaker ridge
# lets the solve amplify summation order, and ONNX and PyTorch drift apart on dark pixels)


def ridge_matrix(k: int, ridge: float, like: torch.Tensor) -> torch.Tensor:
    """(k + 1, k + 1) diagonal: `ridge` on k predictors and a tiny one on the intercept, so that a tile
    with no fitting pixel (all nodata or cloud) solves to 0 instead of dividing by zero. Made on
    `like`'s device (no host-to-device copy, so a CUDA graph can capture the forward), as eye x vector
    (aten::diag has no ONNX export)."""
    diagonal = torch.cat([torch.full((k,), ridge, dtype=like.dtype, device=like.device),
                          torch.full((1,), 1e-6, dtype=like.dtype, device=like.device)])
    return torch.eye(k + 1, dtype=like.dtype, device=like.device) * diagonal


def regression_drop(x: torch.Tensor) -> torch.Tensor:
    """(N, 6, H, W) reflectance -> (N, 1, H, W) relative drop of B12 below B12 predicted from B2, B3,
    B4, B8 and B11 by a linear fit over each image (Huber-reweighted, nodata left out), clipped to
    +-ANOMALY_CLIP. The surface's own spectrum is predicted, so soils, vegetation and pads that
    change B12/B11 drop out; methane does not. The same signal as core/plumes/'s
    `regression_signal`, here in plain tensor ops (a 6 x 6 Gauss-Jordan solve) so that it exports
    to ONNX."""
    n, _, h, w = x.shape
    valid = (x[:, I11] > 0).float().reshape(n, 1, h * w)
    pred_in = x[:, :I12].reshape(n, I12, h * w)  # B2, B3, B4, B8, B11
    y = x[:, I12].reshape(n, 1, h * w)
    weight = valid
    ridge = ridge_matrix(I12, REGRESSION_RIDGE, x)
    for _ in range(REGRESSION_ITERATIONS + 1):
        total = weight.sum(-1, keepdim=True).clamp_min(1.0)
        mean = (pred_in * weight).sum(-1, keepdim=True) / total
        centred = pred_in - mean
        std = ((centred ** 2 * weight).sum(-1, keepdim=True) / total).sqrt().clamp_min(1e-4)
        a = torch.cat([centred / std, torch.ones_like(y)], dim=1)  # (n, 6, P)
        aw = a * weight
        gram = aw @ a.transpose(1, 2) / total + ridge
        rhs = (aw * y).sum(-1, keepdim=True) / total
        coef = _solve(gram, rhs)  # (n, 6, 1)
        pred = (coef * a).sum(1, keepdim=True)
        resid = (y - pred) * valid
        scale = 1.25 * resid.abs().sum(-1, keepdim=True) / total + 1e-5  # mean |r| -> sigma
        weight = valid / torch.clamp(resid.abs() / (2.0 * scale), min=1.0)
    drop = (pred - y) / pred.clamp_min(RATIO_EPS) * valid
    return torch.clamp(drop, -ANOMALY_CLIP, ANOMALY_CLIP).reshape(n, 1, h, w)


def _solve(gram: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """Solve (n, k, k) @ out = (n, k, 1) for a symmetric positive-definite system by Gauss-Jordan
    elimination without pivoting, unrolled (k is small and fixed)."""
    k = gram.shape[-1]
    eye = torch.eye(k, dtype=gram.dtype, device=gram.device)  # unit vectors as slices of one constant
    m = torch.cat([gram, rhs], dim=-1)
    for i in range(k):
        row = m[:, i:i + 1, :] / m[:, i:i + 1, i:i + 1]
        m = m - (m[:, :, i:i + 1] - eye[:, i:i + 1]) * row
    return m[:, :, k:]


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a (N, 1, H, W) map, edges by reflection (exports to ONNX as convs)."""
    radius = int(3 * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(x.dtype)
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, k.reshape(1, 1, 1, -1))
    return F.conv2d(x, k.reshape(1, 1, -1, 1))


class PlumeNet(nn.Module):
    """Raw uint16-valued input -> plume logits (N, 1, H, W)."""

    def __init__(self, arch: dict | None = None, mean=None, std=None, feature_set: str = DEFAULT_FEATURES):
        super().__init__()
        self.arch = dict(arch or DEFAULT_ARCH)
        self.feature_set = feature_set
        self.bands = input_bands(feature_set)  # raw bands in: 6, or 12 for a multi-pass network
        n = feature_channels(feature_set)
        self.net = build_net(self.arch, n)
        mean = torch.zeros(n) if mean is None else torch.tensor(np.asarray(mean, dtype=np.float32))
        std = torch.ones(n) if std is None else torch.tensor(np.asarray(std, dtype=np.float32))
        self.register_buffer("mean", mean.reshape(1, n, 1, 1).clone())
        self.register_buffer("std", std.reshape(1, n, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (features(x, self.feature_set) - self.mean) / self.std
        return self.net(z)


class ProbabilityModel(nn.Module):
    """What is exported: reflectance -> probability (sigmoid folded in); for a SourcePlumeNet the
    tuple (probability, source heat map), each (N, 1, H, W)."""

    def __init__(self, model: PlumeNet):
        super().__init__()
        self.model = model

    def forward(self, reflectance: torch.Tensor):
        p = torch.sigmoid(self.model(reflectance))
        if p.shape[1] == 1:
            return p
        return p[:, :1], p[:, 1:]


# ONNX node names of the U-Net (the exporter traces `Exported(PlumeNet).model.net`): everything else
# in the graph is the feature extraction and the sigmoid. INT8 quantisation and the rebuild from ONNX
# (export/) select the network's nodes by this prefix.
NET_PREFIX = "/model/net/"


def load_checkpoint(path, map_location="cpu") -> tuple[PlumeNet, dict]:
    """A plume network (`methane-seg train`) or a plume + source network (`methane-seg
    train-source`, its checkpoint has "source") and the checkpoint's dict."""
    ck = torch.load(path, map_location=map_location, weights_only=False)
    cls = SourcePlumeNet if "source" in ck else PlumeNet
    m = cls(ck["arch"], ck["norm_mean"], ck["norm_std"], ck.get("features", DEFAULT_FEATURES))
    if ck.get("batchnorm_folded"):  # rebuilt from an ONNX file (export/onnx_import.py), or trained on from one
        add_conv_biases(m.net)
        m.batchnorm_folded = True
    m.load_state_dict(ck["model"])
    m.eval()
    return m, ck


def fuse_batchnorm(net: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d into the Conv2d before it (eval statistics), in place: the BN becomes
    an Identity and the conv gets a bias. The network then computes the same function in train and
    eval mode, which a frozen base under a trained source branch needs (and it is what an ONNX
    export holds: export/onnx_import.py rebuilds a network in this form)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for conv_name, conv, bn_name, bn in _conv_bn_pairs(net):
        _set_module(net, conv_name, fuse_conv_bn_eval(conv.eval(), bn.eval()))
        _set_module(net, bn_name, nn.Identity())
    return net


def add_conv_biases(net: nn.Module) -> nn.Module:
    """The structure of `fuse_batchnorm` without its numbers: BNs after convs become Identity and
    those convs get a (zero) bias, so that a fused state dict loads."""
    for _, conv, bn_name, _ in _conv_bn_pairs(net):
        if conv.bias is None:
            conv.bias = nn.Parameter(torch.zeros(conv.out_channels))
        _set_module(net, bn_name, nn.Identity())
    return net


def _conv_bn_pairs(net: nn.Module) -> list[tuple[str, nn.Conv2d, str, nn.BatchNorm2d]]:
    """(conv name, conv, BN name, BN) for each BatchNorm2d registered right after a Conv2d."""
    mods = list(net.named_modules())
    return [(pn, p, n, m) for (pn, p), (n, m) in zip(mods, mods[1:])
            if isinstance(m, nn.BatchNorm2d) and isinstance(p, nn.Conv2d)]


def _set_module(root: nn.Module, dotted: str, new: nn.Module) -> None:
    parent, _, leaf = dotted.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


SOURCE_HIDDEN = 16  # channels of the source head's hidden layer
SOURCE_PRIOR = 0.01  # the source heat map starts here (bias), or its loss swamps everything


class SourcePlumeNet(PlumeNet):
    """The plume network (BatchNorm folded, frozen while the source branch trains) and a source
    branch: a second U-Net decoder on the same encoder features, started as a copy of the plume
    decoder, whose output and the plume logit go through a small head to a heat map of plume
    sources (peaks at the emission points, CenterNet-style). forward -> (N, 2, H, W) logits:
    channel 0 the plume, channel 1 the source heat map."""

    def __init__(self, arch: dict | None = None, mean=None, std=None, feature_set: str = DEFAULT_FEATURES):
        super().__init__(arch, mean, std, feature_set)
        add_conv_biases(self.net)
        # Called as one module (its nodes keep their /model/net/ names in the ONNX graph, which is
        # what the FP16 and INT8 conversions select), returning the encoder features as well.
        self.net.__class__ = _returning_features(type(self.net))
        self.source_decoder = copy.deepcopy(self.net.decoder)
        width = self.net.segmentation_head[0].in_channels
        self.source_head = nn.Sequential(
            nn.Conv2d(width + 1, SOURCE_HIDDEN, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(SOURCE_HIDDEN, 1, 3, padding=1))
        with torch.no_grad():
            self.source_head[-1].bias.fill_(float(torch.logit(torch.tensor(SOURCE_PRIOR))))

    @classmethod
    def from_plumenet(cls, base: PlumeNet) -> "SourcePlumeNet":
        """A source network around a trained plume network (copied, BatchNorm folded)."""
        m = cls(base.arch, base.mean.flatten(), base.std.flatten(), base.feature_set)
        fused = fuse_batchnorm(copy.deepcopy(base.net).eval())
        m.net.load_state_dict(fused.state_dict())
        m.source_decoder.load_state_dict(m.net.decoder.state_dict())
        return m

    def base_parameters(self):
        return self.net.parameters()

    def source_parameters(self):
        return [*self.source_decoder.parameters(), *self.source_head.parameters()]

    def encode(self, x: torch.Tensor):
        """Encoder features and the plume logits."""
        return self.net((features(x, self.feature_set) - self.mean) / self.std)

    def source_logits(self, f, plume: torch.Tensor) -> torch.Tensor:
        return self.source_head(torch.cat([self.source_decoder(f), plume], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f, plume = self.encode(x)
        return torch.cat([plume, self.source_logits(f, plume)], dim=1)


@functools.cache
def _returning_features(cls: type) -> type:
    """A subclass of an smp model class whose forward returns (encoder features, logits)."""
    def forward(self, x):
        f = self.encoder(x)
        return f, self.segmentation_head(self.decoder(f))

    return type(cls.__name__ + "WithFeatures", (cls,), {"forward": forward})
