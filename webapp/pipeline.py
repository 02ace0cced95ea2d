"""One upload through the model: segment, find plumes, write the files, store the result.

Used by the synchronous requests and by the background jobs alike. Triton is
reached only through `client.segmenter.Segmenter`.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from client.segmenter import Segmenter
from core.segmentation import document_reference
from webapp.models import PlumeRecord, Result

# kind -> file name inside a result's folder (generated names; downloads are named after the input)
FILENAMES = {
    "mask": "mask.tif",
    "prob": "prob.tif",
    "geojson": "plumes.geojson",
    "png": "overlay.png",
    "preview_rgb": "preview_rgb.png",
    "preview_swir": "preview_swir.png",
}
DOWNLOAD_SUFFIX = {
    "mask": "_mask.tif",
    "prob": "_prob.tif",
    "geojson": "_plumes.geojson",
    "png": "_overlay.png",
    "preview_rgb": "_rgb.png",
    "preview_swir": "_swir.png",
}


@dataclass
class Upload:
    """A saved upload: our generated path, the user's file name, its hash and size."""

    path: Path
    name: str
    sha256: str
    bytes: int
    seconds: float = 0.0
    reference: "Upload | None" = None  # the optional reference pass (form field 'reference')

    @property
    def key(self) -> str:
        """What identifies the document: the scene's SHA-256, or the pair's (scene + reference)."""
        if self.reference is None:
            return self.sha256
        return hashlib.sha256(f"{self.sha256}+{self.reference.sha256}".encode()).hexdigest()

    @property
    def total_bytes(self) -> int:
        return self.bytes + (self.reference.bytes if self.reference else 0)

    def unlink(self) -> None:
        self.path.unlink(missing_ok=True)
        if self.reference is not None:
            self.reference.path.unlink(missing_ok=True)

    @property
    def stem(self) -> str:
        return Path(self.name).stem or "upload"


def expected_tiles(segmenter: Segmenter, height: int, width: int) -> int:
    from core.tiling import tile_grid

    tile = segmenter.model_info()["tile"]
    return len(tile_grid(height, width, tile, min(segmenter.overlap, tile // 4)))


def _footprint(scene) -> dict | None:
    """The scene's outline in WGS84 (its bounds, densified along the edges)."""
    from rasterio.transform import array_bounds
    from rasterio.warp import transform_geom

    left, bottom, right, top = array_bounds(scene.height, scene.width, scene.transform)
    n = 8
    xs = [left + (right - left) * i / n for i in range(n)] + [right] * n + \
         [right - (right - left) * i / n for i in range(n)] + [left] * n
    ys = [top] * n + [top - (top - bottom) * i / n for i in range(n)] + \
         [bottom] * n + [bottom + (top - bottom) * i / n for i in range(n)]
    ring = [[x, y] for x, y in zip(xs, ys)] + [[xs[0], ys[0]]]
    try:
        geom = transform_geom(scene.crs, "EPSG:4326", {"type": "Polygon", "coordinates": [ring]}, precision=7)
    except Exception:  # a CRS that PROJ cannot take to WGS84: keep the result, without a footprint
        return None
    return {"type": "Polygon", "coordinates": [[list(p) for p in r] for r in geom["coordinates"]]}


def run(segmenter: Segmenter, upload: Upload, store, preview_size: int = 1024,
        stage: Callable[[str], None] | None = None,
        on_tiles: Callable[[int], None] | None = None) -> tuple[Result, object]:
    """Segment `upload`, write its files and commit the result. Returns (stored result, segmentation).
    stage(name) is told each step; on_tiles(n) each batch of grid tiles segmented (job progress).

    Raises the segmenter's errors (ContractError, TritonUnavailable, InferenceFailed).
    """
    from core.outputs import overlay_png, write_geojson, write_mask, write_probability
    from core.plumes import find_plumes
    from PIL import Image

    stage = stage or (lambda name: None)
    timings = {"upload_s": round(upload.seconds, 4)}
    t0 = time.perf_counter()
    stage("segmenting")
    seg = segmenter.segment(upload.path, on_tiles=on_tiles,
                            reference=upload.reference.path if upload.reference else None)
    seg.scene.name = upload.stem
    if seg.reference is not None:  # name it as the user did: their reference file, or their document's bands
        seg.reference = upload.reference.name if upload.reference else document_reference(upload.name)
    t1 = time.perf_counter()
    timings["inference_s"] = round(t1 - t0, 4)
    timings["tiles"] = int(seg.timings.get("tiles", 0))

    stage("writing outputs")
    result_id = uuid.uuid4().hex
    staged = store.staging_dir(result_id)
    files = {kind: staged / name for kind, name in FILENAMES.items()}
    try:
        def overlays():
            files["png"].write_bytes(overlay_png(seg, "rgb"))
            with Image.open(files["png"]) as im:
                im.thumbnail((preview_size, preview_size), Image.Resampling.NEAREST)
                im.save(files["preview_rgb"], format="PNG")

        # The GeoTIFFs and the previews are written while the plumes are traced.
        try:
            with ThreadPoolExecutor(max_workers=3) as pool:
                jobs = [pool.submit(write_probability, files["prob"], seg),
                        pool.submit(write_mask, files["mask"], seg), pool.submit(overlays),
                        pool.submit(lambda: files["preview_swir"].write_bytes(overlay_png(seg, "swir", preview_size)))]
                t2 = time.perf_counter()
                plumes = find_plumes(seg)
                timings["plumes_s"] = round(time.perf_counter() - t2, 4)
                for job in jobs:
                    job.result()
        finally:
            seg.scene.close()  # the upload's open file handles (one per reading thread)
        write_geojson(files["geojson"], seg, plumes)
        timings["outputs_s"] = round(time.perf_counter() - t1, 4)
        timings["total_s"] = round(time.perf_counter() - t0 + upload.seconds, 4)

        scene = seg.scene
        from rasterio.transform import array_bounds

        left, bottom, right, top = array_bounds(scene.height, scene.width, scene.transform)
        valid = scene.valid
        max_prob = float(np.nanmax(seg.probability[valid])) if valid.any() else 0.0
        record = Result(
            id=result_id, input_name=upload.name, input_bytes=upload.total_bytes, content_sha256=upload.key,
            width=scene.width, height=scene.height, crs=scene.crs.to_string(),
            bounds=[float(left), float(bottom), float(right), float(top)], footprint=_footprint(scene),
            model_name=seg.model_name, model_version=str(seg.model_version), reference_name=seg.reference,
            threshold=float(seg.threshold),
            plume_pixels=seg.plume_pixels, plume_count=len(plumes), max_probability=max_prob, timings=timings,
            directory=result_id,
        )
        records = [PlumeRecord(
            number=p.id, pixels=p.pixels, area_m2=p.area_m2, length_m=p.length_m,
            mean_probability=p.mean_probability, max_probability=p.max_probability,
            source_lon=p.source_lon, source_lat=p.source_lat, source_row=p.source_row, source_col=p.source_col,
            geometry=p.geometry, source={"type": "Point", "coordinates": [p.source_lon, p.source_lat]},
        ) for p in plumes]
    except BaseException:
        store.discard(staged)
        raise
    stage("storing")
    return store.commit(record, records, staged, files), seg
