"""The input contract: the one place that says what a scene must look like.

A scene is a GeoTIFF with six bands of Sentinel-2 L1C top-of-atmosphere
reflectance at 20 m: B2, B3, B4, B8, B11, B12, stored as uint16 =
reflectance x 10000, nodata 0. The band order comes from the band
descriptions when all six are named ("B2", ..., "B12"; "B02" and "B8A"-free
spellings are accepted), else the file order is taken as the order above.
Any projected CRS, any size from 64 x 64 up to 20 000 pixels a side (checked
from the header, before any pixel is read).

Every entry point (CLI, web app, simulator, training) uses these names and
`read_scene` / `validate_*` so the contract lives in one module.
"""

from __future__ import annotations

import os
import re
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BANDS: tuple[str, ...] = ("B2", "B3", "B4", "B8", "B11", "B12")
DTYPE = np.uint16
SCALE = 10000.0  # stored value = reflectance * SCALE
NODATA = 0
MIN_SIZE = 64
MAX_SIDE = 20000  # pixels; a whole Sentinel-2 tile at 20 m is 5490 x 5490
# The model's outputs, (N, 1, T, T) float32 each: the plume probability, and in models with a
# source branch (training/source.py) a heat map whose peaks are the plumes' sources.
PROBABILITY_OUTPUT = "probability"
SOURCE_OUTPUT = "source"
MAX_FILE_MB = 512  # default file size limit (CLI --max-size-mb, web app MAX_UPLOAD_MB)

# GDAL's block cache (decompressed blocks that overlapping tile windows share) defaults to 5 % of
# the machine's memory; bounded here so that a whole Sentinel-2 tile stays well below the client's
# 2 GB. On a 5490 x 5490 scene (24 GB machine): the default 2.09 GB peak RSS; 512 MB 1.43-1.47 GB in
# 12.0-12.3 s; 256 MB 1.17 GB but 14.8 s. GDAL reads it when it first caches a block; an explicit
# GDAL_CACHEMAX in the environment wins.
os.environ.setdefault("GDAL_CACHEMAX", "512")


class ContractError(ValueError):
    """The input breaks the contract; the message says how, in one line."""


class NotGeoTIFF(ContractError):
    """The input is not a (readable) GeoTIFF at all."""


@dataclass
class Scene:
    """A scene under the contract: its grid, its valid pixels, and its bands in BANDS order.

    data: (6, H, W) uint16 in BANDS order when held in memory, else None and the
    bands are read from `path` window by window (`read`), so that a whole
    Sentinel-2 tile never has to sit in memory.
    profile: the rasterio profile of the source (crs, transform, width, height).
    valid: (H, W) bool, False where every band is nodata.
    """

    data: np.ndarray | None
    profile: dict
    valid: np.ndarray
    name: str = "scene"
    path: Path | None = None
    order: list[int] | None = None  # file band index (0-based) of each of BANDS
    # One open dataset per reading thread (rasterio datasets are not thread-safe), kept open so that
    # GDAL's block cache serves the blocks that overlapping windows share; close() (or garbage
    # collection) closes them.
    _handles: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        self._finalizer = weakref.finalize(self, _close_all, self._handles)

    def close(self) -> None:
        """Close the files this scene holds open (reading again reopens them)."""
        _close_all(self._handles)

    def _dataset(self):
        import rasterio

        key = threading.get_ident()
        ds = self._handles.get(key)
        if ds is None or ds.closed:
            ds = self._handles[key] = rasterio.open(self.path)
        return ds

    @property
    def height(self) -> int:
        return int(self.profile["height"]) if self.data is None else int(self.data.shape[1])

    @property
    def width(self) -> int:
        return int(self.profile["width"]) if self.data is None else int(self.data.shape[2])

    @property
    def crs(self):
        return self.profile["crs"]

    @property
    def transform(self):
        return self.profile["transform"]

    def read(self, window: tuple[int, int, int, int] | None = None, bands: tuple[str, ...] = BANDS,
             out_shape: tuple[int, int] | None = None) -> np.ndarray:
        """(len(bands), h, w) uint16 of `bands` in `window` = (row, col, height, width).

        out_shape decimates (nearest) the window to (h, w), for previews.
        """
        row, col, h, w = window or (0, 0, self.height, self.width)
        idx = [BANDS.index(b) for b in bands]
        if self.data is not None:
            block = self.data[idx, row:row + h, col:col + w]
            if out_shape is not None:
                rr = np.linspace(0, h - 1, out_shape[0]).round().astype(int)
                cc = np.linspace(0, w - 1, out_shape[1]).round().astype(int)
                block = block[:, rr][:, :, cc]
            return block
        from rasterio.windows import Window

        order = self.order or list(range(len(BANDS)))
        return self._dataset().read([order[i] + 1 for i in idx], window=Window(col, row, w, h),
                                    out_shape=None if out_shape is None else (len(idx),) + tuple(out_shape))


def _close_all(handles: dict) -> None:
    for ds in list(handles.values()):
        ds.close()
    handles.clear()

def _canonical_band_name(text: str | None) -> str | None:
    """'B02', 'b2', 'B2 (blue)' -> 'B2'; anything else -> None."""
    if not text:
        return None
    m = re.match(r"^\s*[Bb]0*(\d{1,2})(?![0-9A-Za-z])", text)
    return f"B{int(m.group(1))}" if m else None


def band_order(descriptions: tuple[str | None, ...]) -> list[int]:
    """Indices into the file's bands that give BANDS order.

    Uses the band descriptions when all six contract bands are named;
    otherwise assumes the file already is in BANDS order.
    """
    if len(descriptions) != len(BANDS):
        raise ContractError(
            f"expected {len(BANDS)} bands ({', '.join(BANDS)}), the file has {len(descriptions)}"
        )
    names = [_canonical_band_name(d) for d in descriptions]
    if all(n is None for n in names):
        return list(range(len(BANDS)))
    missing = [b for b in BANDS if b not in names]
    if missing:
        named = ", ".join(n or "?" for n in names)
        raise ContractError(
            f"band descriptions ({named}) lack {', '.join(missing)}; expected {', '.join(BANDS)}"
        )
    return [names.index(b) for b in BANDS]


def validate_georeferencing(crs, transform) -> None:
    if crs is None:
        raise ContractError("the file has no CRS: a georeferenced GeoTIFF in a projected CRS is required")
    if transform is None or transform.is_identity:
        raise ContractError("the file has no geotransform: a georeferenced GeoTIFF is required")
    if not crs.is_projected:
        raise ContractError(
            f"the CRS {crs.to_string()} is not projected: use a projected CRS such as UTM (metres)"
        )


def validate_size(height: int, width: int) -> None:
    if height < MIN_SIZE or width < MIN_SIZE:
        raise ContractError(
            f"the image is {width}x{height} pixels; at least {MIN_SIZE}x{MIN_SIZE} is required"
        )
    if height > MAX_SIDE or width > MAX_SIDE:
        raise ContractError(
            f"the image is {width}x{height} pixels; at most {MAX_SIDE} pixels a side are accepted"
        )


def validate_file_size(path: str | Path, max_mb: float = MAX_FILE_MB) -> None:
    """Refuse a file larger than `max_mb` megabytes (MiB) before opening it."""
    size = Path(path).stat().st_size
    if size > max_mb * 1024 * 1024:
        raise ContractError(f"{Path(path).name} is {size / 2**20:.1f} MB, larger than the {max_mb:g} MB limit")


def validate_dtype(dtype: str) -> None:
    if np.dtype(dtype) != np.dtype(DTYPE):
        raise ContractError(
            f"the bands are {dtype}; expected uint16 (top-of-atmosphere reflectance x {int(SCALE)})"
        )


def open_checked(path: str | Path):
    """Open `path` with rasterio and check everything that the header tells.

    Returns an open rasterio dataset (the caller closes it) and the band order.
    """
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    path = Path(path)
    if not path.is_file():
        raise ContractError(f"no such file: {path}")
    if path.stat().st_size == 0:
        raise NotGeoTIFF(f"{path.name} is empty")
    try:
        with warnings.catch_warnings():
            # A missing geotransform is reported as a contract error below, not as a warning.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            ds = rasterio.open(path)
    except RasterioIOError:
        raise NotGeoTIFF(f"{path.name} is not a GeoTIFF (rasterio cannot read it)") from None
    try:
        if ds.driver != "GTiff":
            raise NotGeoTIFF(f"{path.name} is a {ds.driver} file, not a GeoTIFF")
        order = band_order(ds.descriptions)
        validate_dtype(ds.dtypes[0])
        if len(set(ds.dtypes)) != 1:
            raise ContractError(f"the bands have mixed types {sorted(set(ds.dtypes))}; expected uint16")
        validate_georeferencing(ds.crs, ds.transform)
        validate_size(ds.height, ds.width)
    except BaseException:
        ds.close()
        raise
    return ds, order


def read_error(path: str | Path, exc: BaseException) -> ContractError:
    """The contract error for pixels that cannot be read, with GDAL's own reason (the innermost one)."""
    reason, cause = str(exc), exc
    while (cause := cause.__cause__ or cause.__context__) is not None:
        reason = str(cause) or reason
    reason = (reason.strip().splitlines() or [type(exc).__name__])[0][:300]
    return ContractError(f"{Path(path).name} could not be read: the file is truncated or damaged ({reason})")


def read_scene(path: str | Path) -> Scene:
    """Read a whole scene under the contract into memory, bands in BANDS order."""
    from rasterio.errors import RasterioError

    ds, order = open_checked(path)
    with ds:
        try:
            raw = ds.read()
        except RasterioError as exc:
            raise read_error(path, exc) from None
        profile = dict(ds.profile)
    data = np.ascontiguousarray(raw[order])
    valid = np.any(data != NODATA, axis=0)
    return Scene(data=data, profile=profile, valid=valid, name=Path(path).stem, path=Path(path), order=order)


def open_scene(path: str | Path) -> Scene:
    """Check a scene's header under the contract without reading its pixels.

    The returned Scene reads its bands window by window (`Scene.read`); its
    `valid` mask starts all True and is filled in by whoever reads the windows.
    """
    ds, order = open_checked(path)
    with ds:
        profile = dict(ds.profile)
    valid = np.ones((profile["height"], profile["width"]), dtype=bool)
    return Scene(data=None, profile=profile, valid=valid, name=Path(path).stem, path=Path(path), order=order)


def scene_profile(crs, transform, height: int, width: int) -> dict:
    """A GeoTIFF profile for a scene that follows the contract (tiled where the scene is large enough)."""
    profile = {
        "driver": "GTiff",
        "dtype": "uint16",
        "count": len(BANDS),
        "height": height,
        "width": width,
        "crs": crs,
        "transform": transform,
        "nodata": NODATA,
        "compress": "deflate",
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "interleave": "pixel",
    }
    if height < 256 or width < 256:
        profile.update(tiled=False)
        profile.pop("blockxsize")
        profile.pop("blockysize")
    return profile


def _write_bands(dst, data: np.ndarray) -> None:
    dst.write(data)
    for i, band in enumerate(BANDS, start=1):
        dst.set_band_description(i, band)


def write_scene(path: str | Path, data: np.ndarray, crs, transform) -> None:
    """Write (6, H, W) uint16 reflectance x 10000 as a contract GeoTIFF with band descriptions."""
    import rasterio

    if data.shape[0] != len(BANDS) or data.dtype != DTYPE:
        raise ContractError(f"write_scene needs (6, H, W) uint16, got {data.shape} {data.dtype}")
    with rasterio.open(path, "w", **scene_profile(crs, transform, data.shape[1], data.shape[2])) as dst:
        _write_bands(dst, data)


def scene_bytes(data: np.ndarray, crs, transform) -> bytes:
    """The contract GeoTIFF of (6, H, W) uint16 data as bytes (an upload built in memory)."""
    from rasterio.io import MemoryFile

    if data.shape[0] != len(BANDS) or data.dtype != DTYPE:
        raise ContractError(f"scene_bytes needs (6, H, W) uint16, got {data.shape} {data.dtype}")
    with MemoryFile() as mem:
        with mem.open(**scene_profile(crs, transform, data.shape[1], data.shape[2])) as dst:
            _write_bands(dst, data)
        return bytes(mem.read())
