"""The classical baseline: segmentation by threshold on the B12/B11 ratio.

`methane-seg baseline SCENE.tif [...] --out DIR` writes the same files as
`segment`, so `evaluate` scores both alike.

Method (multi-band single-pass, after Varon et al. 2021): methane absorbs
strongly in B12 and weakly in B11, while the surface changes both. The
fractional methane signal is the drop of the B12/B11 ratio against a robust
local background (the median ratio in a window around each pixel), divided
by a robust noise scale (1.4826 x the median absolute deviation over the
scene) to give a z-score. The score is squashed to 0..1 with a logistic,
thresholded, and specks smaller than a few pixels are removed.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from core.contract import BANDS, ContractError, Scene, read_scene

WINDOW = 31  # pixels (620 m): wider than most plumes, narrower than surface patterns
Z_CENTRE = 6.0  # z-score that maps to probability 0.5 (chosen on 60 validation scenes)
Z_SCALE = 1.0
MIN_PIXELS = 5
SMOOTH_SIGMA = 1.0  # pixels


def ratio_zscore(scene: Scene, window: int = WINDOW) -> np.ndarray:
    from scipy import ndimage

    b11 = scene.data[BANDS.index("B11")].astype(np.float32)
    b12 = scene.data[BANDS.index("B12")].astype(np.float32)
    ratio = np.divide(b12, b11, out=np.ones_like(b12), where=b11 > 0)
    ratio[~scene.valid] = np.median(ratio[scene.valid]) if scene.valid.any() else 1.0
    # Median at a quarter resolution, then back up: a robust background that costs little.
    step = 4
    small = ndimage.median_filter(ratio[::step, ::step], size=max(3, window // step) | 1, mode="reflect")
    background = ndimage.zoom(small, (ratio.shape[0] / small.shape[0], ratio.shape[1] / small.shape[1]), order=1)
    background = background[: ratio.shape[0], : ratio.shape[1]]
    signal = 1.0 - ratio / np.maximum(background, 1e-6)
    # Average over about a plume's width: noise drops, a plume a few pixels wide stays.
    signal = ndimage.gaussian_filter(signal, SMOOTH_SIGMA)
    valid_signal = signal[scene.valid]
    mad = np.median(np.abs(valid_signal - np.median(valid_signal))) if valid_signal.size else 1.0
    return signal / max(1.4826 * mad, 1e-6)


def segment_baseline(scene: Scene, z_centre: float = Z_CENTRE, min_pixels: int = MIN_PIXELS):
    from scipy import ndimage

    from core.segmentation import SegmentationResult

    z = ratio_zscore(scene)
    prob = (1.0 / (1.0 + np.exp(-np.clip((z - z_centre) / Z_SCALE, -50, 50)))).astype(np.float32)
    mask = prob >= 0.5
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), int))
    if n:
        sizes = ndimage.sum(mask, labels, index=np.arange(1, n + 1))
        mask = np.isin(labels, np.flatnonzero(sizes >= min_pixels) + 1)
    mask &= scene.valid
    prob[~scene.valid] = np.nan
    return SegmentationResult(scene=scene, probability=prob, mask=mask.astype(np.uint8), threshold=0.5,
                              model_name="baseline-b12-b11-ratio", model_version="1")


def baseline_main(argv: list[str]) -> int:
    from core.outputs import write_outputs

    p = argparse.ArgumentParser(prog="methane-seg baseline", description=__doc__.split("\n\n")[0])
    p.add_argument("scenes", nargs="+", metavar="SCENE")
    p.add_argument("--out", required=True)
    p.add_argument("--z", type=float, default=Z_CENTRE, help=f"z-score of the decision (default {Z_CENTRE})")
    args = p.parse_args(argv)
    worst = 0
    for path in args.scenes:
        try:
            result = segment_baseline(read_scene(path), z_centre=args.z)
            write_outputs(result, args.out)
        except ContractError as exc:
            print(f"methane-seg: error: bad input: {exc}", file=sys.stderr)
            worst = 2
            continue
        if len(args.scenes) == 1:
            print(f"{result.scene.name}: {result.plume_pixels} plume pixels (baseline)")
    return worst
