"""Write a segmentation result: probability and mask GeoTIFFs on the input's grid, and an overlay PNG.

The GeoTIFFs are Cloud-Optimized (tiled 256, deflate, overviews) with the
input's CRS and transform and an explicit nodata value.

File names (other tools read them): `<stem>_prob.tif` (float32 0..1, nodata NaN),
`<stem>_mask.tif` (uint8, 1 = plume, 0 = background, nodata 255 where the input
was nodata), `<stem>_overlay.png` and `<stem>_plumes.geojson` (plume polygons and
source points, WGS84).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image


MASK_NODATA = 255
PLUME_RGB = (255, 40, 40)


def output_profile(scene_profile: dict, dtype: str, nodata, resampling: str = "nearest") -> dict:
    """A single-band Cloud-Optimized GeoTIFF profile on the input's grid (size, CRS, transform)."""
    return {
        "driver": "COG",
        "height": scene_profile["height"],
        "width": scene_profile["width"],
        "count": 1,
        "dtype": dtype,
        "crs": scene_profile["crs"],
        "transform": scene_profile["transform"],
        "nodata": nodata,
        "compress": "deflate",
        "level": 1,  # the fastest level: a whole scene's float map compresses far faster than at 6, a little larger
        "num_threads": "ALL_CPUS",  # blocks compressed in parallel
        "predictor": 3 if dtype.startswith("float") else 2,
        "blocksize": 256,
        "overview_resampling": resampling,
    }


def write_probability(path: Path, result) -> None:
    import rasterio

    with rasterio.open(path, "w", **output_profile(result.scene.profile, "float32", float("nan"), "average")) as dst:
        dst.write(result.probability.astype(np.float32), 1)
        dst.set_band_description(1, "plume probability")
        dst.update_tags(threshold=str(result.threshold), model=result.model_name,
                        model_version=result.model_version, mode=result.mode, reference=result.reference or "none")


def write_mask(path: Path, result) -> None:
    import rasterio

    mask = result.mask.copy()
    mask[~result.scene.valid] = MASK_NODATA
    with rasterio.open(path, "w", **output_profile(result.scene.profile, "uint8", MASK_NODATA)) as dst:
        dst.write(mask, 1)
        dst.set_band_description(1, "plume mask (1 = plume)")
        dst.update_tags(threshold=str(result.threshold), model=result.model_name,
                        model_version=result.model_version, mode=result.mode, reference=result.reference or "none")


def stretch(bands: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(3, H, W) reflectance -> (H, W, 3) uint8 with a 2-98 % percentile stretch per band."""
    out = np.zeros(bands.shape[1:] + (3,), dtype=np.uint8)
    for i in range(3):
        band = bands[i].astype(np.float32)
        values = band[valid] if valid.any() else band.ravel()
        lo, hi = np.percentile(values, [2, 98]) if values.size else (0.0, 1.0)
        scaled = (band - lo) / max(hi - lo, 1e-6)
        out[..., i] = (np.clip(scaled, 0, 1) * 255).astype(np.uint8)
    out[~valid] = 0
    return out


PREVIEW_MAX = 2048  # previews larger than this on a side are decimated


def preview_shape(height: int, width: int, max_size: int = PREVIEW_MAX) -> tuple[int, int]:
    scale = min(1.0, max_size / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def decimate(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour decimation of a 2-D array to `shape` (no copy when already that size)."""
    if array.shape == tuple(shape):
        return array
    rr = np.linspace(0, array.shape[0] - 1, shape[0]).round().astype(int)
    cc = np.linspace(0, array.shape[1] - 1, shape[1]).round().astype(int)
    return array[rr][:, cc]


def _preview(scene, bands, shape) -> np.ndarray:
    data = scene.read(bands=bands, out_shape=None if shape == (scene.height, scene.width) else shape)
    return stretch(data, decimate(scene.valid, shape))


def rgb_preview(scene, max_size: int = PREVIEW_MAX) -> np.ndarray:
    return _preview(scene, ("B4", "B3", "B2"), preview_shape(scene.height, scene.width, max_size))


def swir_preview(scene, max_size: int = PREVIEW_MAX) -> np.ndarray:
    """False colour B12, B11, B8: methane darkens the red channel."""
    return _preview(scene, ("B12", "B11", "B8"), preview_shape(scene.height, scene.width, max_size))


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend the plume mask over an (H, W, 3) uint8 image, outline included."""
    out = image.astype(np.float32)
    plume = mask == 1
    colour = np.array(PLUME_RGB, dtype=np.float32)
    out[plume] = (1 - alpha) * out[plume] + alpha * colour
    edge = plume & ~_eroded(plume)
    out[edge] = colour
    return out.astype(np.uint8)


def _eroded(m: np.ndarray) -> np.ndarray:
    e = m.copy()
    e[1:, :] &= m[:-1, :]
    e[:-1, :] &= m[1:, :]
    e[:, 1:] &= m[:, :-1]
    e[:, :-1] &= m[:, 1:]
    return e


def overlay_png(result, preview: str = "rgb", max_size: int = PREVIEW_MAX) -> bytes:
    image = (rgb_preview if preview == "rgb" else swir_preview)(result.scene, max_size)
    buf = io.BytesIO()
    Image.fromarray(overlay(image, decimate(result.mask, image.shape[:2]))).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def write_geojson(path: Path, result, plumes) -> None:
    from core.plumes import plumes_geojson

    scene = result.scene
    properties = {"scene": scene.name, "model": result.model_name, "model_version": result.model_version,
                  "mode": result.mode, "reference": result.reference, "threshold": result.threshold, "crs": scene.crs.to_string(), "plumes": len(plumes)}
    path.write_text(json.dumps(plumes_geojson(plumes, properties), separators=(",", ":")))


def write_outputs(result, out_dir: str | Path, stem: str | None = None, plumes=None,
                  wind_to_deg: float | None = None, wind_ms: float | None = None,
                  every_piece: bool = False) -> tuple[dict[str, Path], list]:
    """Write the probability and mask GeoTIFFs, the overlay PNG and the plumes' GeoJSON.

    The rasters are written in worker threads (GDAL and PIL release the GIL) while the plumes are
    traced in this one, unless `plumes` are given. every_piece: every piece of the mask is a plume
    (no puffs joined to their plume, no small sourceless pieces dropped; core.plumes).
    Returns the paths and the plumes."""
    from concurrent.futures import ThreadPoolExecutor

    from core.plumes import find_plumes

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = stem or result.scene.name
    paths = {
        "prob": out_dir / f"{stem}_prob.tif",
        "mask": out_dir / f"{stem}_mask.tif",
        "overlay": out_dir / f"{stem}_overlay.png",
        "geojson": out_dir / f"{stem}_plumes.geojson",
    }
    with ThreadPoolExecutor(max_workers=3) as pool:
        jobs = [pool.submit(write_probability, paths["prob"], result), pool.submit(write_mask, paths["mask"], result),
                pool.submit(lambda: paths["overlay"].write_bytes(overlay_png(result)))]
        if plumes is None:
            plumes = find_plumes(result, wind_to_deg=wind_to_deg, wind_ms=wind_ms,
                                 join_downwind=not every_piece, drop_sourceless=not every_piece)
        for job in jobs:
            job.result()
    write_geojson(paths["geojson"], result, plumes)
    return paths, plumes
