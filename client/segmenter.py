"""Segment whole scenes with the methane_seg model on a Triton server.

    from client.segmenter import Segmenter
    result = Segmenter("localhost:8000", protocol="http").segment("scene.tif")
    result.probability  # (H, W) float32 0..1, NaN where the input is nodata
    result.mask         # (H, W) uint8, 1 = plume

The scene is cut into the model's fixed-size tiles (the size is read from the model's configuration
on the server) with overlap, sent in batches with several requests in flight so Triton's dynamic
batcher can merge them, and blended back without seams (core/tiling.py). The mask threshold comes
from the model's configuration (`parameters.threshold`), which the exporter writes from the value
chosen on the validation split. Talking to Triton is client/transport.py's job.

Models with a source heat map (the `source` output) compute it in a branch that costs as much again
as the plume output on CPU, and it is only read near plumes (core.plumes.heat_sources): every tile
asks for the probability alone (the server's CPU instances run a plume-only graph for it,
export/plume_graph.py), then a tile is centred on each group of plume pixels (core.tiling.
tiles_around: every pixel within `source_margin` of a plume pixel, with SOURCE_CONTEXT_PX of context)
and sent for the heat map in `source_views` views (the tile and its flips, core.tiling.views), whose
maps are averaged: test-time augmentation, which puts more sources within 2 px (docs/methods.md).
Elsewhere `result.source` is NaN. `source_margin=None` asks every tile of the grid for both outputs
in one pass, in one view.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

from client.transport import (DEFAULT_MODEL, MULTIPASS_MODEL, InferenceFailed, TritonModel, TritonUnavailable,
                              normalise_url)
from core.contract import BANDS, NODATA, ContractError, Scene, open_scene, read_error

AUTO_MODEL = "auto"  # the multi-pass model for a scene with a reference pass, else the single-pass one
from core.segmentation import SegmentationResult, document_reference
from core.tiling import SOURCE_VIEWS, VIEW_COUNTS, Blender, mean_of_views, pad_tile, tile_grid, tiles_around, views

# Pixels around the plume pixels where the source heat map is computed: core.plumes.heat_sources
# reads peaks within HEAT_MAX_PX (30) of a plume pixel, and a peak's 3 x 3 neighbourhood.
SOURCE_MARGIN_PX = 32
# Context around that area in a heat-map tile: the model's 31-pixel local background and most of its
# receptive field lie inside the tile.
SOURCE_CONTEXT_PX = 32


class Segmenter:
    """Whole scenes through a TritonModel: tiling, requests in flight, blending, the mask.

    model_name "auto" (the default) segments a scene that carries a reference pass with the
    multi-pass model (`multipass_model`) when the server has it ready, and any other scene with the
    single-pass model (DEFAULT_MODEL); another name uses that model for every scene (a multi-pass
    model then needs a reference, a single-pass one reads the target's bands only).
    """

    def __init__(
        self,
        url: str | None = None,
        protocol: str = "http",
        model_name: str = AUTO_MODEL,
        model_version: str = "",
        batch_size: int = 8,
        concurrency: int = 2,
        overlap: int = 32,
        timeout: float = 60.0,
        retries: int = 3,
        shared_memory: str = "auto",
        source_margin: int | None = SOURCE_MARGIN_PX,
        source_views: int = SOURCE_VIEWS,
        multipass_model: str = MULTIPASS_MODEL,
    ):
        self.auto = model_name in (None, AUTO_MODEL)
        self.multipass_model = multipass_model
        self._settings = dict(model_version=model_version, batch_size=batch_size, timeout=timeout, retries=retries,
                              shared_memory=shared_memory)
        self.transport = TritonModel(url, protocol, model_name=DEFAULT_MODEL if self.auto else model_name,
                                     **self._settings)
        self._transports = {self.transport.model_name: self.transport}
        self.concurrency = max(1, int(concurrency))
        self.overlap = int(overlap)
        if source_margin is not None and int(source_margin) < 0:
            raise ValueError(f"source_margin must be >= 0 pixels or None, not {source_margin!r}")
        self.source_margin = None if source_margin is None else int(source_margin)
        if source_views not in VIEW_COUNTS:
            raise ValueError(f"source_views must be one of {VIEW_COUNTS}, not {source_views!r}")
        self.source_views = int(source_views)

    # The transport's settings, read through (the web app names the model and its version).
    url = property(lambda self: self.transport.url)
    protocol = property(lambda self: self.transport.protocol)
    model_name = property(lambda self: self.transport.model_name)
    model_version = property(lambda self: self.transport.model_version)
    batch_size = property(lambda self: self.transport.batch_size)
    timeout = property(lambda self: self.transport.timeout)

    def model_info(self) -> dict:
        """Tile size, threshold, input/output names and version from the server; cached (the
        single-pass model's, or the named one's)."""
        return self.transport.info()

    def _transport(self, name: str) -> TritonModel:
        if name not in self._transports:
            self._transports[name] = TritonModel(self.url, self.protocol, model_name=name, **self._settings)
        return self._transports[name]

    def transport_for(self, scene: Scene) -> TritonModel:
        """The model that segments `scene` (the class docstring), its configuration read from the server."""
        if self.auto and scene.has_reference:
            multipass = self._transport(self.multipass_model)
            try:
                multipass.info()
                return multipass
            except TritonUnavailable:
                pass  # no multi-pass model ready here: the single-pass one reads the target (or the server is down)
        info = self.transport.info()
        if len(info["bands"]) > len(BANDS) and not scene.has_reference:
            raise ContractError(f"model {self.transport.model_name} is a multi-pass model: give the scene a "
                                "reference pass (a 12-band document, or a separate reference file)")
        return self.transport

    def infer_tiles(self, tiles: np.ndarray, outputs: list[str] | None = None) -> np.ndarray:
        """(N, 6, T, T) uint16 -> (N, C, T, T) float32 (client.transport.TritonModel.infer)."""
        return self.transport.infer(tiles, outputs)

    def segment(self, path: str | Path, progress: bool = False,
                on_tiles: Callable[[int], None] | None = None, reference: str | Path | None = None
                ) -> SegmentationResult:
        """Check `path` (and its separate `reference` file, if given) under the input contract and
        segment it, reading it tile by tile."""
        from rasterio.errors import RasterioError

        scene = open_scene(path, reference)
        try:
            return self.segment_array(scene, progress=progress, on_tiles=on_tiles)
        except RasterioError as exc:
            raise read_error(path, exc) from None

    def segment_array(self, scene: Scene, progress: bool = False,
                      on_tiles: Callable[[int], None] | None = None) -> SegmentationResult:
        """Segment a scene held in memory or read window by window from its file.

        Tiles are read as they are sent: memory holds the scene-sized outputs, not the scene's
        bands. `scene.valid` is filled in from the tiles read. With a source heat map and
        `source_margin` set, every tile is sent for the probability, then tiles centred on the plumes
        for the heat map, in several views (the module's docstring). on_tiles(n) is called as each
        batch of n grid tiles has its probability (job progress).
        """
        t0 = time.perf_counter()
        model = self.transport_for(scene)
        info = model.info()
        tile, overlap = info["tile"], min(self.overlap, info["tile"] // 4)
        grid = tile_grid(scene.height, scene.width, tile, overlap)
        outputs = info["outputs"]
        near_plumes = len(outputs) > 1 and self.source_margin is not None
        bar = _progress_bar(scene.name, len(grid)) if progress else None
        regions: list = []  # this call's workers' shared memory, released at its end
        source, source_tiles = None, len(grid)
        try:
            with ThreadPoolExecutor(max_workers=self.concurrency, initializer=model.bind_worker,
                                    initargs=(regions,)) as pool:
                blender = Blender(scene.height, scene.width, tile, overlap,
                                  channels=1 if near_plumes else len(outputs))
                self._send(model, pool, scene, grid, outputs[:1] if near_plumes else outputs, blender, bar, tile,
                           on_tiles=on_tiles)
                blended = blender.result()  # its weights are freed before the heat map's blender is made
                probability = np.clip(blended[0], 0.0, 1.0, out=blended[0])
                mask = (probability >= info["threshold"]).astype(np.uint8)
                mask[~scene.valid] = 0
                if near_plumes:
                    source, source_tiles = self._heat_near_plumes(model, pool, scene, mask, outputs[1:], bar, tile)
                elif len(blended) > 1:
                    source = blended[1]
        finally:
            for pair in regions:
                pair.close()
            if bar is not None:
                bar.close()
        if source is not None:
            np.clip(source, 0.0, 1.0, out=source)
            source[~scene.valid] = np.nan
        probability[~scene.valid] = np.nan
        views_used = (self.source_views if near_plumes else 1) if source is not None else 0
        reference = reference_name(scene) if len(info["bands"]) > len(BANDS) else None
        return SegmentationResult(
            scene=scene, probability=probability, mask=mask, threshold=info["threshold"],
            model_name=model.model_name, model_version=info["version"], source=source, reference=reference,
            timings={"inference_s": time.perf_counter() - t0, "tiles": len(grid),
                     "source_tiles": source_tiles if source is not None else 0, "source_views": views_used},
        )

    def _heat_near_plumes(self, model: TritonModel, pool, scene: Scene, mask: np.ndarray, outputs: list[str], bar,
                          tile: int) -> tuple[np.ndarray, int]:
        """The source heat map on tiles centred on the mask's plumes (NaN elsewhere), and their count."""
        near = tiles_around(mask, tile, self.source_margin, SOURCE_CONTEXT_PX)
        if bar is not None and near:
            bar.total += len(near)
            bar.refresh()
        heat = Blender(scene.height, scene.width, tile, 2 * SOURCE_CONTEXT_PX)
        self._send(model, pool, scene, near, outputs, heat, bar, tile, n_views=self.source_views)
        return heat.result(empty=np.nan)[0], len(near)  # NaN where no heat-map tile fell

    def _send(self, model: TritonModel, pool, scene: Scene, tiles: list, outputs: list[str], blender: Blender,
              bar, tile: int, n_views: int = 1, on_tiles: Callable[[int], None] | None = None) -> None:
        """Send `tiles` in batches, several requests in flight, for `outputs`; blend the answers into
        the blender. Each tile goes in `n_views` views (core.tiling.views) whose answers are averaged.
        The first pass (one view) also fills scene.valid (from the target's bands)."""
        per_request = max(1, model.batch() // n_views)
        chunks = [tiles[i : i + per_request] for i in range(0, len(tiles), per_request)]
        bands = model.info()["bands"]

        def run(chunk):
            blocks = [scene.read((t.row, t.col, t.height, t.width), bands=bands) for t in chunk]
            if n_views == 1:
                for t, block in zip(chunk, blocks):
                    scene.valid[t.row : t.row + t.height, t.col : t.col + t.width] = \
                        np.any(block[: len(BANDS)] != NODATA, axis=0)
            arrays = [v for b in blocks for v in views(pad_tile(b, tile), n_views)]
            predictions = model.infer(np.stack(arrays), outputs)
            if n_views > 1:
                predictions = np.stack([mean_of_views(predictions[i : i + n_views])
                                        for i in range(0, len(predictions), n_views)])
            return chunk, predictions

        def collect(future):
            chunk, predictions = future.result()
            for t, p in zip(chunk, predictions):
                blender.add(t, p)
            if bar is not None:
                bar.update(len(chunk))
            if on_tiles is not None:
                on_tiles(len(chunk))

        # Bounded look-ahead: at most 2 x concurrency batches of tiles in flight.
        pending = []
        for chunk in chunks:
            pending.append(pool.submit(run, chunk))
            if len(pending) >= 2 * self.concurrency:
                collect(pending.pop(0))
        for future in pending:
            collect(future)


def reference_name(scene: Scene) -> str:
    """How outputs name the reference pass a multi-pass model used."""
    return Path(scene.ref_path).name if scene.ref_path is not None else document_reference(scene.name)


def _progress_bar(name: str, total: int):
    from tqdm import tqdm

    return tqdm(total=total, desc=name, unit="tile", leave=False)


__all__ = [
    "ContractError",
    "InferenceFailed",
    "SegmentationResult",
    "Segmenter",
    "TritonUnavailable",
    "normalise_url",
]
