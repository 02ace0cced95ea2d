"""The segmentation network: a small smp U-Net behind an input-normalising wrapper.

The wrapper takes the raw contract input (uint16 reflectance x 10000, any
float/int dtype) and does everything in the graph, so the exported ONNX file
needs no pre-processing: /10000, a B12/B11 log-ratio channel (the methane
signal), per-channel (x - mean) / std with statistics from the training data.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from client.contract import BANDS

I11, I12 = BANDS.index("B11"), BANDS.index("B12")
ANOMALY_CLIP = 0.3  # |log-ratio anomaly| above this is not methane (a 26 % ratio drop)
SMOOTH_SIGMAS = (1.5, 4.0)  # pixels: the anomaly averaged over about a plume's width (matched filters)
N_IN = len(BANDS) + 2 + len(SMOOTH_SIGMAS)  # six bands, log(B12/B11), its local anomaly, smoothed anomalies
ANOMALY_WINDOW = 31  # pixels: local background of the log-ratio
RATIO_EPS = 1e-3

DEFAULT_ARCH = {
    "arch": "Unet",
    "encoder_name": "resnet18",
    "encoder_depth": 3,
    "decoder_channels": [64, 32, 16],
}


def build_net(arch: dict) -> nn.Module:
    import segmentation_models_pytorch as smp

    a = dict(arch)
    cls = getattr(smp, a.pop("arch"))
    if "decoder_channels" in a:
        a["decoder_channels"] = tuple(a["decoder_channels"])
    return cls(in_channels=N_IN, classes=1, encoder_weights=None, **a)


def features(x: torch.Tensor) -> torch.Tensor:
    """(N, 6, H, W) reflectance x 10000 -> (N, N_IN, H, W): reflectance, log(B12/B11), its local
    anomaly (against a 31-pixel box mean), and that anomaly smoothed at SMOOTH_SIGMAS."""
    x = x.float() * (1.0 / 10000.0)
    lr = torch.log((x[:, I12:I12 + 1] + RATIO_EPS) / (x[:, I11:I11 + 1] + RATIO_EPS))
    # local anomaly: log-ratio minus its local mean (separable box filter, edges by the valid mean)
    k = ANOMALY_WINDOW
    bg = F.avg_pool2d(lr, (1, k), stride=1, padding=(0, k // 2), count_include_pad=False)
    bg = F.avg_pool2d(bg, (k, 1), stride=1, padding=(k // 2, 0), count_include_pad=False)
    # Methane lowers the ratio by at most a few tens of percent; dark pixels (water, shadow) give
    # wild ratios from a few counts. Clipping keeps them from swamping the normalisation.
    anomaly = torch.clamp(lr - bg, -ANOMALY_CLIP, ANOMALY_CLIP)
    smoothed = [gaussian_blur(anomaly, s) for s in SMOOTH_SIGMAS]
    return torch.cat([x, lr, anomaly, *smoothed], dim=1)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a (N, 1, H, W) map, edges by reflection (exports to ONNX as convs)."""
    radius = int(3 * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(x.dtype)
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, k.reshape(1, 1, 1, -1))
    return F.conv2d(x, k.reshape(1, 1, -1, 1))


class PlumeNet(nn.Module):
    """Raw uint16-valued input -> plume logits (N, 1, H, W)."""

    def __init__(self, arch: dict | None = None, mean=None, std=None):
        super().__init__()
        self.arch = dict(arch or DEFAULT_ARCH)
        self.net = build_net(self.arch)
        mean = torch.zeros(N_IN) if mean is None else torch.as_tensor(mean, dtype=torch.float32)
        std = torch.ones(N_IN) if std is None else torch.as_tensor(std, dtype=torch.float32)
        self.register_buffer("mean", mean.reshape(1, N_IN, 1, 1).clone())
        self.register_buffer("std", std.reshape(1, N_IN, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (features(x) - self.mean) / self.std
        return self.net(z)


class ProbabilityModel(nn.Module):
    """What is exported: reflectance -> probability (sigmoid folded in)."""

    def __init__(self, model: PlumeNet):
        super().__init__()
        self.model = model

    def forward(self, reflectance: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(reflectance))


def load_checkpoint(path, map_location="cpu") -> tuple[PlumeNet, dict]:
    ck = torch.load(path, map_location=map_location, weights_only=False)
    m = PlumeNet(ck["arch"], ck["norm_mean"], ck["norm_std"])
    m.load_state_dict(ck["model"])
    m.eval()
    return m, ck
