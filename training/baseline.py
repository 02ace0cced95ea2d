"""The classical baselines: segmentation by threshold on the B12/B11 ratio, one date or two.

    methane-seg baseline SCENE.tif [--reference REF.tif] [--method ratio|mbmp] --out DIR

writes the same files as `segment`, so `evaluate` scores the baselines and the model alike.

ratio (multi-band single-pass, after Varon et al. 2021): methane absorbs strongly in B12 and
weakly in B11, while the surface changes both. The fractional methane signal is the drop of the
B12/B11 ratio against a robust local background (the median ratio in a window around each pixel).

mbmp (multi-band multi-pass, Varon et al. 2021): the target's B12/B11 against the reference pass's
of the same place. The ratio of the two ratios removes the surface's own static SWIR texture; its
drop against a robust local background (the median in a window, so that a scene-wide change of
gain or haze is fitted away and a few changed pixels pull little) is the fractional methane signal.
Pixels where the reference is nodata or cloudy are masked (no signal), not guessed.

Either signal is averaged over about a plume's width, divided by a robust noise scale (1.4826 x the
median absolute deviation over the scene) to a z-score, squashed to 0..1 with a logistic, and
thresholded; specks smaller than a few pixels are removed.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from core.contract import BANDS, ContractError, Scene, read_scene
from core.masks import cloud_mask, nodata_mask

WINDOW = 31  # pixels (620 m): wider than most plumes, narrower than surface patterns
# z-score that maps to probability 0.5, per method (chosen on validation scenes: docs/methods.md)
Z_CENTRE = {"ratio": 6.0, "mbmp": 4.0}
Z_SCALE = 1.0
MIN_PIXELS = 5
SMOOTH_SIGMA = 1.0  # pixels
METHODS = ("ratio", "mbmp")


def swir_ratio(b11: np.ndarray, b12: np.ndarray) -> np.ndarray:
    b11, b12 = b11.astype(np.float32), b12.astype(np.float32)
    return np.divide(b12, b11, out=np.ones_like(b12), where=b11 > 0)


def local_drop(values: np.ndarray, valid: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """1 - values / (their median over a window around each pixel): the fractional drop against a
    robust local background (positive where methane absorbs)."""
    from scipy import ndimage

    values = values.copy()
    values[~valid] = np.median(values[valid]) if valid.any() else 1.0
    # Median at a quarter resolution, then back up: a robust background that costs little.
    step = 4
    small = ndimage.median_filter(values[::step, ::step], size=max(3, window // step) | 1, mode="reflect")
    background = ndimage.zoom(small, (values.shape[0] / small.shape[0], values.shape[1] / small.shape[1]), order=1)
    background = background[: values.shape[0], : values.shape[1]]
    return 1.0 - values / np.maximum(background, 1e-6)


def zscore(signal: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The signal averaged over about a plume's width (noise drops, a plume a few pixels wide stays),
    over its robust noise scale on the valid pixels."""
    from scipy import ndimage

    signal = ndimage.gaussian_filter(np.where(valid, signal, 0.0).astype(np.float32), SMOOTH_SIGMA)
    valid_signal = signal[valid]
    mad = np.median(np.abs(valid_signal - np.median(valid_signal))) if valid_signal.size else 1.0
    return signal / max(1.4826 * mad, 1e-6)


def ratio_zscore(scene: Scene, window: int = WINDOW) -> np.ndarray:
    """Single-pass: the drop of the target's B12/B11 against its local background, as a z-score."""
    b11, b12 = scene.data[BANDS.index("B11")], scene.data[BANDS.index("B12")]
    return zscore(local_drop(swir_ratio(b11, b12), scene.valid, window), scene.valid)


def reference_valid(scene: Scene) -> np.ndarray:
    """Pixels where the reference pass can be compared with: not nodata, not cloudy, and the target valid."""
    ref = scene.reference
    return scene.valid & ~nodata_mask(ref) & ~cloud_mask(ref, scene.data) & ~cloud_mask(scene.data, ref)


def mbmp_zscore(scene: Scene, window: int = WINDOW) -> np.ndarray:
    """Multi-pass: the drop of (target B12/B11) / (reference B12/B11) against its local background,
    as a z-score; 0 where the reference is masked."""
    if scene.reference is None:
        raise ContractError("the mbmp baseline needs a reference pass (a 12-band document or --reference REF.tif)")
    i11, i12 = BANDS.index("B11"), BANDS.index("B12")
    ok = reference_valid(scene)
    rr = swir_ratio(scene.data[i11], scene.data[i12]) / np.maximum(
        swir_ratio(scene.reference[i11], scene.reference[i12]), 1e-6)
    z = zscore(np.where(ok, local_drop(rr, ok, window), 0.0), ok)
    z[~ok] = 0.0
    return z


def segment_baseline(scene: Scene, z_centre: float | None = None, min_pixels: int = MIN_PIXELS,
                     method: str = "ratio"):
    from scipy import ndimage

    from core.segmentation import SegmentationResult

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    z_centre = Z_CENTRE[method] if z_centre is None else z_centre
    z = ratio_zscore(scene) if method == "ratio" else mbmp_zscore(scene)
    prob = (1.0 / (1.0 + np.exp(-np.clip((z - z_centre) / Z_SCALE, -50, 50)))).astype(np.float32)
    mask = prob >= 0.5
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), int))
    if n:
        sizes = ndimage.sum(mask, labels, index=np.arange(1, n + 1))
        mask = np.isin(labels, np.flatnonzero(sizes >= min_pixels) + 1)
    mask &= scene.valid
    prob[~scene.valid] = np.nan
    name = "baseline-b12-b11-ratio" if method == "ratio" else "baseline-mbmp"
    return SegmentationResult(scene=scene, probability=prob, mask=mask.astype(np.uint8), threshold=0.5,
                              model_name=name, model_version="2")


def baseline_main(argv: list[str]) -> int:
    from core.outputs import write_outputs

    p = argparse.ArgumentParser(prog="methane-seg baseline", description=__doc__.split("\n\n")[0])
    p.add_argument("scenes", nargs="+", metavar="SCENE")
    p.add_argument("--out", required=True)
    p.add_argument("--reference", metavar="REF", help="a six-band reference pass of SCENE (one SCENE only); a "
                                                       "12-band SCENE carries its own")
    p.add_argument("--method", choices=METHODS, default=None,
                   help="ratio (one date) or mbmp (against the reference pass); default: mbmp when SCENE has a "
                        "reference pass, else ratio")
    p.add_argument("--z", type=float, default=None,
                   help=f"z-score of the decision (default {Z_CENTRE['ratio']} for ratio, {Z_CENTRE['mbmp']} for mbmp)")
    args = p.parse_args(argv)
    if args.reference and len(args.scenes) > 1:
        p.error("--reference goes with one SCENE")
    worst = 0
    for path in args.scenes:
        try:
            scene = read_scene(path, reference=args.reference)
            method = args.method or ("mbmp" if scene.has_reference else "ratio")
            result = segment_baseline(scene, z_centre=args.z, method=method)
            write_outputs(result, args.out)
        except ContractError as exc:
            print(f"methane-seg: error: bad input: {exc}", file=sys.stderr)
            worst = 2
            continue
        if len(args.scenes) == 1:
            print(f"{result.scene.name}: {result.plume_pixels} plume pixels (baseline, {method})")
    return worst
