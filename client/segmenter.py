"""Segment whole scenes with the methane_seg model on a Triton server.

    from client.segmenter import Segmenter
    result = Segmenter("localhost:8000", protocol="http").segment("scene.tif")
    result.probability  # (H, W) float32 0..1, NaN where the input is nodata
    result.mask         # (H, W) uint8, 1 = plume

The scene is cut into the model's fixed-size tiles (the size is read from the
model's configuration on the server) with overlap, sent in batches with
several requests in flight so Triton's dynamic batcher can merge them, and
blended back without seams. The mask threshold comes from the model's
configuration (`parameters.threshold`), which the exporter writes from the
value chosen on the validation split.

Models with a source heat map (the `source` output) compute it in a branch that costs as much
again as the plume output on CPU, and it is only read near plumes (client.plumes.heat_sources): every
tile asks for the probability alone (the server's CPU instances run a plume-only graph for it,
export/plume_graph.py), then a tile is centred on each group of plume pixels (client.tiling.
tiles_around: every pixel within `source_margin` of a plume pixel, with SOURCE_CONTEXT_PX of context)
and sent for the heat map in `source_views` views (the tile and its flips, client.tiling.views),
whose maps are averaged: test-time augmentation, which puts more sources within 2 px (README).
Elsewhere `result.source` is NaN. `source_margin=None` asks every tile of the grid for both outputs
in one pass, in one view.

On the server's own host the tiles travel through system shared memory
(`shared_memory="auto"`, client/shm.py) instead of the socket; elsewhere, or
when the server refuses the regions, they go over HTTP/gRPC as usual.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from client import shm
from client.contract import BANDS, NODATA, SOURCE_OUTPUT, ContractError, Scene, open_scene, read_error
from client.tiling import VIEW_COUNTS, Blender, mean_of_views, pad_tile, tile_grid, tiles_around, views

DEFAULT_MODEL = "methane_seg"
DEFAULT_PORTS = {"http": 8000, "grpc": 8001}
# Pixels around the plume pixels where the source heat map is computed: client.plumes.heat_sources
# reads peaks within HEAT_MAX_PX (30) of a plume pixel, and a peak's 3 x 3 neighbourhood.
SOURCE_MARGIN_PX = 32
# Context around that area in a heat-map tile: the model's 31-pixel local background and most of its
# receptive field lie inside the tile.
SOURCE_CONTEXT_PX = 32
# Views of each heat-map tile whose maps are averaged (1, 2: and the tile turned 180 degrees, 4: and
# flipped by rows and by columns). Sources within 2 px in 1, 2 and 4 views (the branch at 40 epochs):
# 91.4, 92.9 and about 92.5 % on 840 held-out scenes, 91.8, 93.0 and about 93.6 % on 1000 more; a
# whole Sentinel-2 tile takes 17.8-18.4, 19.1-19.6 and 21.0-21.3 s (README, "Plumes, leak sources"; perf/RESULTS.md).
SOURCE_VIEWS = 2


class TritonUnavailable(RuntimeError):
    """The server cannot be reached, or the model is not ready."""


class InferenceFailed(RuntimeError):
    """The server answered with an error."""


@dataclass
class SegmentationResult:
    scene: Scene
    probability: np.ndarray
    mask: np.ndarray
    threshold: float
    model_name: str
    model_version: str
    timings: dict = field(default_factory=dict)
    source: np.ndarray | None = None  # the source heat map (0..1; NaN on nodata and where not computed)

    @property
    def plume_pixels(self) -> int:
        return int((self.mask == 1).sum())


def normalise_url(url: str | None, protocol: str) -> str:
    if protocol not in DEFAULT_PORTS:
        raise ValueError(f"protocol must be http or grpc, not {protocol!r}")
    if not url:
        return f"localhost:{DEFAULT_PORTS[protocol]}"
    for prefix in ("http://", "https://", "grpc://"):
        if url.startswith(prefix):
            url = url[len(prefix):]
    return url.rstrip("/")


class Segmenter:
    def __init__(
        self,
        url: str | None = None,
        protocol: str = "http",
        model_name: str = DEFAULT_MODEL,
        model_version: str = "",
        batch_size: int = 8,
        concurrency: int = 2,
        overlap: int = 32,
        timeout: float = 60.0,
        retries: int = 3,
        shared_memory: str = "auto",
        source_margin: int | None = SOURCE_MARGIN_PX,
        source_views: int = SOURCE_VIEWS,
    ):
        self.protocol = protocol
        self.url = normalise_url(url, protocol)
        self.model_name = model_name
        self.model_version = model_version
        self.batch_size = max(1, int(batch_size))
        self.concurrency = max(1, int(concurrency))
        self.overlap = int(overlap)
        self.timeout = float(timeout)
        self.retries = max(1, int(retries))
        if shared_memory not in shm.MODES:
            raise ValueError(f"shared_memory must be one of {shm.MODES}, not {shared_memory!r}")
        self.shared_memory = shared_memory
        if source_margin is not None and int(source_margin) < 0:
            raise ValueError(f"source_margin must be >= 0 pixels or None, not {source_margin!r}")
        self.source_margin = None if source_margin is None else int(source_margin)
        if source_views not in VIEW_COUNTS:
            raise ValueError(f"source_views must be one of {VIEW_COUNTS}, not {source_views!r}")
        self.source_views = int(source_views)
        self._local = threading.local()
        self._model_info: dict | None = None

    # -- connection -------------------------------------------------------
    def _module(self):
        if self.protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
        return module

    def _client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            module = self._module()
            if self.protocol == "grpc":
                client = module.InferenceServerClient(self.url)
            else:
                client = module.InferenceServerClient(
                    self.url, connection_timeout=self.timeout, network_timeout=self.timeout
                )
            self._local.client = client
        return client

    def model_info(self) -> dict:
        """Tile size, threshold, input/output names and version from the server; cached."""
        if self._model_info is not None:
            return self._model_info
        from tritonclient.utils import InferenceServerException

        client = self._client()
        try:
            live = client.is_server_live()
        except Exception as exc:  # connection refused, DNS, timeouts
            raise TritonUnavailable(f"Triton is not reachable at {self.url} ({self.protocol}): {_short(exc)}") from None
        if not live:
            raise TritonUnavailable(f"Triton at {self.url} is not live")
        try:
            ready = client.is_model_ready(self.model_name, self.model_version)
        except InferenceServerException as exc:
            raise TritonUnavailable(f"model {self.model_name} is not available: {_short(exc)}") from None
        if not ready:
            raise TritonUnavailable(f"model {self.model_name} is not ready on Triton at {self.url}")
        if self.protocol == "grpc":
            config = client.get_model_config(self.model_name, self.model_version, as_json=True)["config"]
            meta = client.get_model_metadata(self.model_name, self.model_version, as_json=True)
        else:
            config = client.get_model_config(self.model_name, self.model_version)
            meta = client.get_model_metadata(self.model_name, self.model_version)
        params = {k: v.get("string_value", v.get("stringValue")) for k, v in config.get("parameters", {}).items()}
        inp = config["input"][0]
        names = [o["name"] for o in config["output"]]
        # The probability comes first; the source heat map when the model has one (training/source.py).
        outputs = [names[0]] + [n for n in names[1:] if n == SOURCE_OUTPUT]
        dims = [int(d) for d in inp["dims"]]
        if len(dims) != 3 or dims[0] != len(BANDS) or dims[1] != dims[2] or dims[1] <= 0:
            raise TritonUnavailable(f"model {self.model_name} takes {dims}, expected [6, T, T] tiles")
        versions = meta.get("versions") or [""]
        self._model_info = {
            "input": inp["name"],
            "output": outputs[0],
            "outputs": outputs,
            "datatype": inp.get("data_type", inp.get("dataType", "TYPE_UINT16")).replace("TYPE_", ""),
            "tile": dims[1],
            "max_batch_size": int(config.get("max_batch_size", config.get("maxBatchSize", 1)) or 1),
            "threshold": float(params.get("threshold", 0.5)),
            "version": str(versions[-1]),
        }
        return self._model_info

    def _batch(self, info: dict) -> int:
        """Tiles per request: the client's batch size within the model's max_batch_size."""
        return max(1, min(self.batch_size, info["max_batch_size"]))

    # -- shared memory --------------------------------------------------------
    def _tile_pair(self, info: dict, dtype) -> shm.TilePair | None:
        """This worker thread's shared-memory regions, made on first use; None to use the socket.

        Only worker threads of a segmentation have them (segment_array owns and releases them)."""
        regions = getattr(self._local, "regions", None)
        if regions is None or self.shared_memory == "none" or getattr(self._local, "refused", False):
            return None
        if self.shared_memory == "auto" and not shm.is_local(self.url):
            return None
        pair = getattr(self._local, "shm", None)
        if pair is None:
            try:
                pair = shm.TilePair(self._client(), self._batch(info), info["tile"], dtype, len(info["outputs"]))
            except Exception as exc:
                if self.shared_memory == "system":
                    raise TritonUnavailable(f"Triton at {self.url} refused system shared memory: {_short(exc)}") \
                        from None
                self._local.refused = True  # auto: another host or IPC namespace; the socket works everywhere
                return None
            regions.append(pair)
            self._local.shm = pair
        return pair

    def _infer(self, info: dict, data: np.ndarray, pair: shm.TilePair | None, names: list[str]) -> np.ndarray:
        """One request for the outputs `names` -> (n, len(names), T, T); the tensors go through
        `pair`'s regions when given, else in the request."""
        module = self._module()
        inp = module.InferInput(info["input"], list(data.shape), info["datatype"])
        outs = [module.InferRequestedOutput(name) for name in names]
        if pair is not None:
            inp.set_shared_memory(pair.inp.name, pair.write(data))
            for k, out in enumerate(outs):
                out.set_shared_memory(pair.out.name, pair.out_bytes(len(data)), offset=pair.out_offset(k))
        else:
            inp.set_data_from_numpy(data)
        kwargs = {"client_timeout": self.timeout} if self.protocol == "grpc" else {}
        result = self._client().infer(self.model_name, [inp], outputs=outs, model_version=self.model_version,
                                      **kwargs)
        if pair is not None:
            return pair.read(len(data), len(names))
        return np.stack([result.as_numpy(name)[:, 0] for name in names], axis=1)

    # -- inference ----------------------------------------------------------
    def infer_tiles(self, tiles: np.ndarray, outputs: list[str] | None = None) -> np.ndarray:
        """(N, 6, T, T) uint16 -> (N, C, T, T) float32, with retries: one channel per output asked
        for (default: all of the model's, the plume probability first, then the source heat map
        when the model has one)."""
        info = self.model_info()
        from tritonclient.utils import InferenceServerException

        names = list(info["outputs"] if outputs is None else outputs)
        unknown = [n for n in names if n not in info["outputs"]]
        if unknown or not names:
            raise ValueError(f"outputs must be some of {info['outputs']}, not {outputs!r}")
        data = tiles.astype(np.uint16 if info["datatype"] == "UINT16" else np.float32, copy=False)
        pair = self._tile_pair(info, data.dtype) if len(data) <= self._batch(info) else None
        if pair is not None:
            try:
                return self._infer(info, data, pair, names)
            except Exception:  # e.g. a restarted server lost the registration: this worker uses the socket
                self._local.refused = True
        delay = 0.2
        for attempt in range(self.retries):
            try:
                return self._infer(info, data, None, names)
            except InferenceServerException as exc:
                transient = _is_transient(exc)
                if not transient or attempt == self.retries - 1:
                    if transient:
                        raise TritonUnavailable(f"Triton at {self.url} failed: {_short(exc)}") from None
                    raise InferenceFailed(f"inference failed: {_short(exc)}") from None
            except Exception as exc:  # socket errors from the HTTP client
                if attempt == self.retries - 1:
                    raise TritonUnavailable(f"Triton at {self.url} is unreachable: {_short(exc)}") from None
                self._local.client = None
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def segment_array(self, scene: Scene, progress: bool = False) -> SegmentationResult:
        """Segment a scene held in memory or read window by window from its file.

        Tiles are read as they are sent: memory holds the scene-sized outputs,
        not the scene's bands. `scene.valid` is filled in from the tiles read.
        With a source heat map and `source_margin` set, every tile is sent for the probability,
        then tiles centred on the plumes for the heat map, in several views (the module's docstring).
        """
        t0 = time.perf_counter()
        info = self.model_info()
        tile, overlap = info["tile"], min(self.overlap, info["tile"] // 4)
        grid = tile_grid(scene.height, scene.width, tile, overlap)
        outputs = info["outputs"]
        near_plumes = len(outputs) > 1 and self.source_margin is not None
        blender = Blender(scene.height, scene.width, tile, overlap, channels=1 if near_plumes else len(outputs))
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(grid), desc=scene.name, unit="tile", leave=False)
        regions: list[shm.TilePair] = []  # this call's workers' shared memory, released at its end

        def worker_init():
            self._local.regions = regions

        source_tiles, source = len(grid), None
        try:
            with ThreadPoolExecutor(max_workers=self.concurrency, initializer=worker_init) as pool:
                self._send(pool, scene, grid, outputs[:1] if near_plumes else outputs, blender, bar, tile)
                blended = blender.result()  # its weights are freed before the heat map's blender is made
                probability = blended[0]
                np.clip(probability, 0.0, 1.0, out=probability)
                mask = (probability >= info["threshold"]).astype(np.uint8)
                mask[~scene.valid] = 0
                if near_plumes:
                    near = tiles_around(mask, tile, self.source_margin, SOURCE_CONTEXT_PX)
                    source_tiles = len(near)
                    if bar is not None and near:
                        bar.total += len(near)
                        bar.refresh()
                    heat = Blender(scene.height, scene.width, tile, 2 * SOURCE_CONTEXT_PX)
                    self._send(pool, scene, near, outputs[1:], heat, bar, tile, n_views=self.source_views)
                    source = heat.result(empty=np.nan)[0]  # NaN where no heat-map tile fell
        finally:
            for pair in regions:
                pair.close()
            if bar is not None:
                bar.close()
        if len(blended) > 1:
            source = blended[1]
        if source is not None:
            np.clip(source, 0.0, 1.0, out=source)
            source[~scene.valid] = np.nan
        probability[~scene.valid] = np.nan
        return SegmentationResult(
            scene=scene,
            probability=probability,
            mask=mask,
            threshold=info["threshold"],
            model_name=self.model_name,
            model_version=info["version"],
            timings={"inference_s": time.perf_counter() - t0, "tiles": len(grid),
                     "source_tiles": source_tiles if source is not None else 0,
                     "source_views": (self.source_views if near_plumes else 1) if source is not None else 0},
            source=source,
        )

    def _send(self, pool, scene: Scene, tiles: list, outputs: list[str], blender: Blender, bar, tile: int,
              n_views: int = 1) -> None:
        """Send `tiles` in batches, several requests in flight, for `outputs`; blend the answers into
        the blender. Each tile goes in `n_views` views (client.tiling.views) whose answers are averaged.
        The first pass (one view) also fills scene.valid."""
        per_request = max(1, self._batch(self.model_info()) // n_views)
        chunks = [tiles[i : i + per_request] for i in range(0, len(tiles), per_request)]

        def run(chunk):
            blocks = [scene.read((t.row, t.col, t.height, t.width)) for t in chunk]
            if n_views == 1:
                for t, block in zip(chunk, blocks):
                    scene.valid[t.row : t.row + t.height, t.col : t.col + t.width] = np.any(block != NODATA, axis=0)
            arrays = [v for b in blocks for v in views(pad_tile(b, tile), n_views)]
            predictions = self.infer_tiles(np.stack(arrays), outputs)
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

        # Bounded look-ahead: at most 2 x concurrency batches of tiles in flight.
        pending = []
        for chunk in chunks:
            pending.append(pool.submit(run, chunk))
            if len(pending) >= 2 * self.concurrency:
                collect(pending.pop(0))
        for future in pending:
            collect(future)

    def segment(self, path: str | Path, progress: bool = False) -> SegmentationResult:
        """Check `path` under the input contract and segment it, reading it tile by tile."""
        from rasterio.errors import RasterioError

        scene = open_scene(path)
        try:
            return self.segment_array(scene, progress=progress)
        except RasterioError as exc:
            raise read_error(path, exc) from None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _is_transient(exc) -> bool:
    status = str(getattr(exc, "status", lambda: "")() or "")
    text = str(exc).lower()
    return any(s in status for s in ("503", "UNAVAILABLE", "502", "504")) or "unavailable" in text


__all__ = [
    "ContractError",
    "InferenceFailed",
    "SegmentationResult",
    "Segmenter",
    "TritonUnavailable",
]
