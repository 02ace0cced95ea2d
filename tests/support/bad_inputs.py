"""One table of bad inputs, shared by the CLI tests and the web API tests (tests/functional/test_bad_inputs_are_refused.py).

Each entry writes a real file into a folder and says what both entry points must answer: the web
API's HTTP status and a fragment of the one-line message that both the API and the CLI (exit code 2)
give. docs/reliability.md reproduces this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

from core.contract import write_scene
from tests.conftest import random_scene, raw_geotiff, utm

LIMIT_MB = 2  # the size limit the tests configure on both sides (the default is 512 MB)
POLYGLOT_HTML = b"<html><body><script>alert(document.cookie)</script></body></html>"
TRAVERSAL_NAME = "../../../etc/cron.d/passwd.tif"
ODD_NAME = "my scene; rm -rf ~ $(id) `id` <b>\u00fc\u00df\u2603 & 'q\" %2e%2e.tif"  # no '/': it is a file


def _geotiff(path: Path, data: np.ndarray, crs="utm", transform="utm", **extra) -> Path:
    return raw_geotiff(path, data, crs, transform, **extra)


def _contract_bytes(shape=(6, 300, 300)) -> bytes:
    """A valid contract GeoTIFF whose header (IFD) comes first, as GDAL's CreateCopy lays it out."""
    import tempfile

    from rasterio.shutil import copy as rio_copy

    crs, transform = utm()
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "src.tif", Path(tmp) / "dst.tif"
        write_scene(src, random_scene(shape, seed=7), crs, transform)
        rio_copy(src, dst, driver="GTiff", compress="deflate", tiled=True)
        return dst.read_bytes()


def empty(d: Path) -> Path:
    (d / "empty.tif").write_bytes(b"")
    return d / "empty.tif"


def not_tiff(d: Path) -> Path:
    (d / "notes.tif").write_text("these are my field notes, not an image\n")
    return d / "notes.tif"


def truncated_header(d: Path) -> Path:
    """Cut where the header is lost: GDAL cannot open it."""
    path = d / "cut_header.tif"
    write_scene(d / "whole.tif", random_scene((6, 300, 300)), *utm())
    raw = (d / "whole.tif").read_bytes()
    (d / "whole.tif").unlink()
    path.write_bytes(raw[: len(raw) // 2])
    return path


def truncated_pixels(d: Path) -> Path:
    """Cut where the header survives and the pixels do not: refused when the tiles are read."""
    raw = _contract_bytes()
    path = d / "cut_pixels.tif"
    path.write_bytes(raw[: int(len(raw) * 0.6)])
    return path


def bands(n: int) -> Callable[[Path], Path]:
    def build(d: Path) -> Path:
        return _geotiff(d / f"bands{n}.tif", random_scene((n, 80, 80)))
    return build


def float32(d: Path) -> Path:
    return _geotiff(d / "float.tif", random_scene().astype(np.float32) / 10000)


def int8(d: Path) -> Path:
    return _geotiff(d / "int8.tif", (random_scene() % 120).astype(np.int8))


def nan_inf(d: Path) -> Path:
    data = random_scene().astype(np.float32)
    data[:, :10, :10] = np.nan
    data[:, 20:30, :] = np.inf
    data[0, 40, :] = -np.inf
    return _geotiff(d / "nan_inf.tif", data)


def no_crs(d: Path) -> Path:
    return _geotiff(d / "nocrs.tif", random_scene(), crs=None, transform=None)


def no_transform(d: Path) -> Path:
    return _geotiff(d / "notransform.tif", random_scene(), transform=None)


def geographic(d: Path) -> Path:
    return _geotiff(d / "wgs84.tif", random_scene(), crs=CRS.from_epsg(4326),
                    transform=from_origin(5.0, 30.0, 0.0002, 0.0002))


def tiny(d: Path) -> Path:
    return _geotiff(d / "tiny.tif", random_scene((6, 10, 10)))


def huge_header(d: Path) -> Path:
    """About 120 kB whose header claims 100 000 x 100 000 pixels x 6 bands (120 GB of uint16)."""
    path = d / "huge.tif"
    with rasterio.open(path, "w", driver="GTiff", width=100_000, height=100_000, count=6, dtype="uint16",
                       crs="EPSG:32613", transform=from_origin(600_000, 3_500_000, 20, 20), tiled=True,
                       blockxsize=1024, blockysize=1024, sparse_ok=True):
        pass
    assert path.stat().st_size < 1_000_000
    return path


def over_limit(d: Path) -> Path:
    """A valid contract GeoTIFF (uncompressed) larger than LIMIT_MB."""
    side = int((LIMIT_MB * 1.3 * 2**20 / 12) ** 0.5)
    path = d / "big.tif"
    crs, transform = utm()
    _geotiff(path, random_scene((6, side, side)), crs=crs, transform=transform)
    assert path.stat().st_size > LIMIT_MB * 2**20
    return path


def polyglot(d: Path) -> Path:
    """A TIFF header followed by HTML (and the rest of a real GeoTIFF): a file that is both, or neither."""
    raw = _contract_bytes((6, 80, 80))
    path = d / "polyglot.tif"
    path.write_bytes(raw[:8] + POLYGLOT_HTML + raw[8:])
    return path


def traversal_name(d: Path) -> Path:
    """A non-TIFF under a path-traversal name: the name must reach no path and no message whole."""
    (d / "passwd.tif").write_text("root:x:0:0:root:/root:/bin/bash\n")
    return d / "passwd.tif"


def odd_name(d: Path) -> Path:
    """A 3-band GeoTIFF whose name holds shell metacharacters, HTML, quotes and non-ASCII."""
    return _geotiff(d / ODD_NAME, random_scene((3, 80, 80)))


@dataclass(frozen=True)
class BadInput:
    id: str
    build: Callable[[Path], Path]
    status: int  # the web API's answer; the CLI exits with 2
    message: str  # in the API's JSON message and in the CLI's one line
    upload_name: str | None = None  # the name the upload is given (default: the file's own)

    def __str__(self) -> str:
        return self.id


BAD_INPUTS = [
    BadInput("empty file", empty, 415, "is empty"),
    BadInput("not a TIFF", not_tiff, 415, "not a GeoTIFF"),
    BadInput("truncated TIFF, header lost", truncated_header, 415, "not a GeoTIFF"),
    BadInput("truncated TIFF, pixels lost", truncated_pixels, 422, "truncated or damaged"),
    BadInput("3 bands", bands(3), 422, "expected 6 bands (B2, B3, B4, B8, B11, B12), or 12 with a reference pass (B2_ref, B3_ref, B4_ref, B8_ref, B11_ref, B12_ref after them); the file has 3"),
    BadInput("7 bands", bands(7), 422, "or 12 with a reference pass (B2_ref, B3_ref, B4_ref, B8_ref, B11_ref, B12_ref after them); the file has 7"),
    BadInput("float32 data", float32, 422, "the bands are float32; expected uint16"),
    BadInput("int8 data", int8, 422, "the bands are int8; expected uint16"),
    BadInput("NaN and inf values", nan_inf, 422, "the bands are float32; expected uint16"),
    BadInput("no CRS, no transform", no_crs, 422, "no CRS"),
    BadInput("CRS without a transform", no_transform, 422, "no geotransform"),
    BadInput("geographic CRS (EPSG:4326)", geographic, 422, "EPSG:4326 is not projected"),
    BadInput("10x10 pixels", tiny, 422, "the image is 10x10 pixels; at least 64x64"),
    BadInput("header claims 100000x100000", huge_header, 422, "at most 20000 pixels a side"),
    BadInput(f"over the size limit ({LIMIT_MB} MB set)", over_limit, 413, f"than the {LIMIT_MB} MB limit"),
    BadInput("polyglot: TIFF header + HTML", polyglot, 415, "not a GeoTIFF"),
    BadInput("path traversal in the name", traversal_name, 415, "passwd.tif is not a GeoTIFF",
             upload_name=TRAVERSAL_NAME),
    BadInput("shell and HTML characters in the name", odd_name, 422, "the file has 3"),
]
