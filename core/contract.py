"""The input contract: the one place that says what a scene must look like.

A scene is a GeoTIFF with six bands of Sentinel-2 L1C top-of-atmosphere
reflectance at 20 m: B2, B3, B4, B8, B11, B12, stored as uint16 =
reflectance x 10000, nodata 0. The band order comes from the band
descriptions when all six are named ("B2", ..., "B12"; "B02" and "B8A"-free
spellings are accepted), else the file order is taken as the order above.
Any projected CRS, any size from 64 x 64 up to 20 000 pixels a side (checked
from the header, before any pixel is read).

A scene may carry a reference pass: the same place on another (earlier, clear) date, which the
multi-pass model compares the target with. Two forms give the same input:
(a) one 12-band GeoTIFF, the target's six bands then the reference's, described
    B2 B3 B4 B8 B11 B12 B2_ref B3_ref B4_ref B8_ref B11_ref B12_ref (reordered by description;
    without descriptions the file order is taken as that order);
(b) the target and a separate six-band reference file (`open_scene(path, reference=REF)`). A
    reference on another grid or CRS is warped onto the target's grid (bilinear, rasterio's
    WarpedVRT); one that does not overlap the target, or covers less than half of it, is refused.
Nodata in the reference stays 0 (masked, not guessed); the model masks it with its clouds.

Every entry point (CLI, web app, simulator, training) uses these names and
`read_scene` / `open_scene` / `validate_*` so the contract lives in one module.
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
# The reference pass: the same six bands of the same place on another date, on the target's grid.
REF_SUFFIX = "_ref"
REF_BANDS: tuple[str, ...] = tuple(b + REF_SUFFIX for b in BANDS)
ALL_BANDS: tuple[str, ...] = BANDS + REF_BANDS
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
    # The reference pass on this grid, if any: in memory (6, H, W) in BANDS order; or in `path`
    # itself (a 12-band document: `ref_order`, the file band index of each of REF_BANDS); or in a
    # file of its own (`ref_path`, read through a WarpedVRT onto this grid unless it shares it).
    reference: np.ndarray | None = None
    ref_order: list[int] | None = None
    ref_path: Path | None = None
    ref_coverage: float | None = None  # share of this grid that the reference's footprint covers
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

    def _ref_dataset(self):
        """This thread's reader of the separate reference file, on this scene's grid."""
        import rasterio
        from rasterio.enums import Resampling
        from rasterio.vrt import WarpedVRT

        key = ("ref", threading.get_ident())
        ds = self._handles.get(key)
        if ds is None or ds.closed:
            src = rasterio.open(self.ref_path)
            if same_grid(src, self.profile):
                ds = src
            else:
                ds = WarpedVRT(src, crs=self.crs, transform=self.transform, width=self.width,
                               height=self.height, resampling=Resampling.bilinear, src_nodata=NODATA,
                               nodata=NODATA)
                self._handles[("ref-src", threading.get_ident())] = src
            self._handles[key] = ds
        return ds

    @property
    def has_reference(self) -> bool:
        return self.reference is not None or self.ref_order is not None or self.ref_path is not None

    @property
    def bands(self) -> tuple[str, ...]:
        """The bands this scene can give: BANDS, and REF_BANDS when it has a reference pass."""
        return ALL_BANDS if self.has_reference else BANDS

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

        bands: names from BANDS, and from REF_BANDS when the scene has a reference pass (ALL_BANDS:
        the multi-pass model's twelve). out_shape decimates (nearest) the window to (h, w), for previews.
        """
        unknown = [b for b in bands if b not in self.bands]
        if unknown:
            why = "the scene has no reference pass" if set(unknown) <= set(REF_BANDS) else "not a contract band"
            raise ContractError(f"cannot read {', '.join(unknown)}: {why}")
        window = window or (0, 0, self.height, self.width)
        target = [b for b in bands if b in BANDS]
        ref = [b[: -len(REF_SUFFIX)] for b in bands if b in REF_BANDS]
        parts = {}
        if target:
            parts["t"] = self._read_pass(self.data, self.order, self._dataset, target, window, out_shape)
        if ref:
            if self.ref_path is not None:
                parts["r"] = self._read_pass(None, None, self._ref_dataset, ref, window, out_shape)
            else:
                parts["r"] = self._read_pass(self.reference, self.ref_order, self._dataset, ref, window, out_shape)
        if len(parts) == 1:
            return next(iter(parts.values()))
        it = {"t": iter(parts["t"]), "r": iter(parts["r"])}
        return np.stack([next(it["r" if b in REF_BANDS else "t"]) for b in bands])

    def _read_pass(self, data, order, dataset, names, window, out_shape) -> np.ndarray:
        """One pass's `names` (BANDS names) in `window`: from `data` in memory, else from a file
        whose band index of each of BANDS is `order` (file order when None)."""
        row, col, h, w = window
        idx = [BANDS.index(b) for b in names]
        if data is not None:
            block = data[idx, row:row + h, col:col + w]
            if out_shape is not None:
                rr = np.linspace(0, h - 1, out_shape[0]).round().astype(int)
                cc = np.linspace(0, w - 1, out_shape[1]).round().astype(int)
                block = block[:, rr][:, :, cc]
            return block
        from rasterio.windows import Window

        order = order or list(range(len(BANDS)))
        return dataset().read([order[i] + 1 for i in idx], window=Window(col, row, w, h),
                              out_shape=None if out_shape is None else (len(idx),) + tuple(out_shape))


def _close_all(handles: dict) -> None:
    for ds in reversed(list(handles.values())):  # a warped reader before the file under it
        ds.close()
    handles.clear()

def _canonical_band_name(text: str | None) -> str | None:
    """'B02', 'b2', 'B2 (blue)' -> 'B2'; anything else -> None."""
    if not text:
        return None
    m = re.match(r"^\s*[Bb]0*(\d{1,2})(?![0-9A-Za-z])", text)
    return f"B{int(m.group(1))}" if m else None


def _canonical_name(text: str | None) -> str | None:
    """A band description as a name of ALL_BANDS ('B02' -> 'B2', 'b12_ref' -> 'B12_ref'), or None."""
    if not text:
        return None
    m = re.match(r"^\s*(.*?)(?:[ _-]?(ref|reference))\s*$", text, flags=re.IGNORECASE)
    if m and m.group(1):
        base = _canonical_band_name(m.group(1))
        return base + REF_SUFFIX if base else None
    return _canonical_band_name(text)


def band_order(descriptions: tuple[str | None, ...]) -> list[int]:
    """Indices into the file's bands that give BANDS order (a six-band scene), or ALL_BANDS order
    (a twelve-band document: the target's bands, then the reference pass's).

    Uses the band descriptions when they name the bands; otherwise assumes the file already is in
    that order.
    """
    if len(descriptions) not in (len(BANDS), len(ALL_BANDS)):
        raise ContractError(
            f"expected {len(BANDS)} bands ({', '.join(BANDS)}), or {len(ALL_BANDS)} with a reference pass "
            f"({', '.join(REF_BANDS)} after them); the file has {len(descriptions)}"
        )
    wanted = BANDS if len(descriptions) == len(BANDS) else ALL_BANDS
    names = [_canonical_name(d) for d in descriptions]
    if all(n is None for n in names):
        return list(range(len(wanted)))
    missing = [b for b in wanted if b not in names]
    if missing:
        named = ", ".join(n or "?" for n in names)
        raise ContractError(
            f"band descriptions ({named}) lack {', '.join(missing)}; expected {', '.join(wanted)}"
        )
    return [names.index(b) for b in wanted]


def validate_georeferencing(crs, transform, projected: bool = True) -> None:
    if crs is None:
        raise ContractError("the file has no CRS: a georeferenced GeoTIFF in a projected CRS is required")
    if transform is None or transform.is_identity:
        raise ContractError("the file has no geotransform: a georeferenced GeoTIFF is required")
    if projected and not crs.is_projected:
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


def open_checked(path: str | Path, projected: bool = True):
    """Open `path` with rasterio and check everything that the header tells.

    Returns an open rasterio dataset (the caller closes it) and the band order (6 or 12 indices).
    projected=False accepts any CRS (a reference pass, which is warped onto the target's grid).
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
        validate_georeferencing(ds.crs, ds.transform, projected=projected)
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


MIN_REFERENCE_COVERAGE = 0.5  # share of the target that a separate reference file must cover


def same_grid(ds, profile: dict) -> bool:
    """Whether an open dataset lies on the grid of `profile` (same CRS, transform and size)."""
    return (ds.crs == profile["crs"] and ds.width == profile["width"] and ds.height == profile["height"]
            and ds.transform.almost_equals(profile["transform"], precision=1e-6))


def reference_coverage(ref_crs, ref_transform, ref_width: int, ref_height: int, profile: dict) -> float:
    """Share of the target grid (`profile`) that the reference's footprint covers (0 when disjoint)."""
    from rasterio.transform import array_bounds
    from rasterio.warp import transform_bounds

    west, south, east, north = array_bounds(ref_height, ref_width, ref_transform)
    try:
        left, bottom, right, top = transform_bounds(ref_crs, profile["crs"], west, south, east, north, densify_pts=21)
    except Exception as exc:  # PROJ cannot take one CRS to the other
        raise ContractError(f"the reference's CRS cannot be brought onto the target's: {exc}") from None
    t_west, t_south, t_east, t_north = array_bounds(profile["height"], profile["width"], profile["transform"])
    dx = max(0.0, min(right, t_east) - max(left, t_west))
    dy = max(0.0, min(top, t_north) - max(bottom, t_south))
    area = (t_east - t_west) * (t_north - t_south)
    return float(dx * dy / area) if area > 0 else 0.0


def open_reference(ref_path: str | Path, profile: dict) -> tuple[Path, float]:
    """Check a separate reference file against the target's grid (`profile`): a six-band contract
    GeoTIFF, georeferenced, covering at least MIN_REFERENCE_COVERAGE of the target. Returns its
    path and that coverage."""
    ref_path = Path(ref_path)
    try:
        ds, order = open_checked(ref_path, projected=False)
    except ContractError as exc:
        raise ContractError(f"reference: {exc}") from None
    with ds:
        if len(order) != len(BANDS):
            raise ContractError(f"reference: {ref_path.name} has {ds.count} bands; a reference file has the "
                                f"six bands {', '.join(BANDS)}")
        if order != list(range(len(BANDS))):
            raise ContractError(f"reference: {ref_path.name} has its bands in another order "
                                f"({', '.join(d or '?' for d in ds.descriptions)}); write it in the order "
                                f"{', '.join(BANDS)}")
        coverage = 1.0 if same_grid(ds, profile) else reference_coverage(ds.crs, ds.transform, ds.width,
                                                                         ds.height, profile)
    if coverage <= 0:
        raise ContractError(f"reference: {ref_path.name} does not overlap the target scene")
    if coverage < MIN_REFERENCE_COVERAGE:
        raise ContractError(f"reference: {ref_path.name} covers {100 * coverage:.0f} % of the target scene; "
                            f"at least {100 * MIN_REFERENCE_COVERAGE:.0f} % is required")
    return ref_path, coverage


def _split_order(order: list[int]) -> tuple[list[int], list[int] | None]:
    """A file's band order -> (target's, reference's or None)."""
    if len(order) == len(ALL_BANDS):
        return order[: len(BANDS)], order[len(BANDS):]
    return order, None


def read_scene(path: str | Path, reference: str | Path | None = None) -> Scene:
    """Read a whole scene under the contract into memory, bands in BANDS order (and its reference
    pass, from the 12-band document itself or from the separate file `reference`, on its grid)."""
    scene = open_scene(path, reference)
    try:
        data = np.ascontiguousarray(scene.read(bands=scene.bands))
    except Exception as exc:
        from rasterio.errors import RasterioError

        if isinstance(exc, RasterioError):
            raise read_error(path, exc) from None
        raise
    finally:
        scene.close()
    scene.data = data[: len(BANDS)]
    scene.reference = data[len(BANDS):] if scene.has_reference else None
    scene.ref_order, scene.ref_path = None, None
    scene.valid = np.any(scene.data != NODATA, axis=0)
    return scene


def open_scene(path: str | Path, reference: str | Path | None = None) -> Scene:
    """Check a scene's header under the contract without reading its pixels.

    The returned Scene reads its bands window by window (`Scene.read`); its
    `valid` mask starts all True and is filled in by whoever reads the windows.
    reference: a separate six-band reference file (form (b) of the module's docstring); a
    12-band document carries its own, and then `reference` is refused.
    """
    ds, order = open_checked(path)
    with ds:
        profile = dict(ds.profile)
    order, ref_order = _split_order(order)
    ref_path = coverage = None
    if reference is not None:
        if ref_order is not None:
            raise ContractError(f"{Path(path).name} already holds a reference pass (12 bands); "
                                "give a separate reference only with a six-band scene")
        ref_path, coverage = open_reference(reference, profile)
    elif ref_order is not None:
        coverage = 1.0
    valid = np.ones((profile["height"], profile["width"]), dtype=bool)
    return Scene(data=None, profile=profile, valid=valid, name=Path(path).stem, path=Path(path), order=order,
                 ref_order=ref_order, ref_path=ref_path, ref_coverage=coverage)


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


def _band_names(count: int) -> tuple[str, ...]:
    if count == len(BANDS):
        return BANDS
    if count == len(ALL_BANDS):
        return ALL_BANDS
    raise ContractError(f"a scene has {len(BANDS)} bands ({', '.join(BANDS)}) or {len(ALL_BANDS)} (and "
                        f"{', '.join(REF_BANDS)}), not {count}")


def _write_bands(dst, data: np.ndarray) -> None:
    dst.write(data)
    for i, band in enumerate(_band_names(data.shape[0]), start=1):
        dst.set_band_description(i, band)


def _check_writable(data: np.ndarray, what: str) -> None:
    if data.ndim != 3 or data.shape[0] not in (len(BANDS), len(ALL_BANDS)) or data.dtype != DTYPE:
        raise ContractError(f"{what} needs (6, H, W) or (12, H, W) uint16, got {data.shape} {data.dtype}")


def write_scene(path: str | Path, data: np.ndarray, crs, transform) -> None:
    """Write uint16 reflectance x 10000 as a contract GeoTIFF with band descriptions: (6, H, W), one
    pass, or (12, H, W), the target's six bands then the reference pass's (ALL_BANDS)."""
    import rasterio

    _check_writable(data, "write_scene")
    profile = dict(scene_profile(crs, transform, data.shape[1], data.shape[2]), count=data.shape[0])
    with rasterio.open(path, "w", **profile) as dst:
        _write_bands(dst, data)


def scene_bytes(data: np.ndarray, crs, transform) -> bytes:
    """The contract GeoTIFF of (6 or 12, H, W) uint16 data as bytes (an upload built in memory)."""
    from rasterio.io import MemoryFile

    _check_writable(data, "scene_bytes")
    profile = dict(scene_profile(crs, transform, data.shape[1], data.shape[2]), count=data.shape[0])
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            _write_bands(dst, data)
        return bytes(mem.read())
