"""The Triton transport: one model on one Triton server, tiles in, predictions out.

    model = TritonModel("localhost:8001", protocol="grpc")
    model.info()                          # tile size, threshold, inputs and outputs, from the server
    model.infer(tiles)                    # (N, 6, T, T) uint16 -> (N, C, T, T) float32

Connections are per thread (tritonclient's clients are not thread-safe). Transient failures (503,
UNAVAILABLE, a dropped socket) are retried with a doubling delay. On the server's own host the
tensors travel through system shared memory (`shared_memory="auto"`, client/shm.py) instead of the
socket: each worker thread bound to a list of regions (`bind_worker`) makes its pair on first use,
and whoever owns that list closes them; a server that refuses the regions, or forgot them after a
restart, gets the socket instead.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from client import shm
from core.contract import ALL_BANDS, BANDS, SOURCE_OUTPUT

DEFAULT_MODEL = "methane_seg"  # the single-pass model: six bands of one date
MULTIPASS_MODEL = "methane_seg_multipass"  # the multi-pass model: the target's six bands and a reference's
DEFAULT_PORTS = {"http": 8000, "grpc": 8001}


class TritonUnavailable(RuntimeError):
    """The server cannot be reached, or the model is not ready."""


class InferenceFailed(RuntimeError):
    """The server answered with an error."""


def normalise_url(url: str | None, protocol: str) -> str:
    """host:port of a Triton endpoint (scheme and trailing slash dropped; the protocol's default port)."""
    if protocol not in DEFAULT_PORTS:
        raise ValueError(f"protocol must be http or grpc, not {protocol!r}")
    if not url:
        return f"localhost:{DEFAULT_PORTS[protocol]}"
    for prefix in ("http://", "https://", "grpc://"):
        if url.startswith(prefix):
            url = url[len(prefix):]
    return url.rstrip("/")


class TritonModel:
    def __init__(self, url: str | None = None, protocol: str = "http", model_name: str = DEFAULT_MODEL,
                 model_version: str = "", batch_size: int = 8, timeout: float = 60.0, retries: int = 3,
                 shared_memory: str = "auto"):
        self.protocol = protocol
        self.url = normalise_url(url, protocol)
        self.model_name = model_name
        self.model_version = model_version
        self.batch_size = max(1, int(batch_size))
        self.timeout = float(timeout)
        self.retries = max(1, int(retries))
        if shared_memory not in shm.MODES:
            raise ValueError(f"shared_memory must be one of {shm.MODES}, not {shared_memory!r}")
        self.shared_memory = shared_memory
        self._local = threading.local()
        self._info: dict | None = None

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

    def _check_ready(self, client) -> None:
        from tritonclient.utils import InferenceServerException

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

    def info(self) -> dict:
        """Tile size, threshold, input/output names and version from the server; cached."""
        if self._info is not None:
            return self._info
        client = self._client()
        self._check_ready(client)
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
        if len(dims) != 3 or dims[0] not in (len(BANDS), len(ALL_BANDS)) or dims[1] != dims[2] or dims[1] <= 0:
            raise TritonUnavailable(f"model {self.model_name} takes {dims}, expected [6, T, T] or [12, T, T] tiles")
        versions = meta.get("versions") or [""]
        self._info = {
            "input": inp["name"],
            "output": outputs[0],
            "outputs": outputs,
            "datatype": inp.get("data_type", inp.get("dataType", "TYPE_UINT16")).replace("TYPE_", ""),
            "tile": dims[1],
            "bands": BANDS if dims[0] == len(BANDS) else ALL_BANDS,  # what each tile holds, in order
            "max_batch_size": int(config.get("max_batch_size", config.get("maxBatchSize", 1)) or 1),
            "threshold": float(params.get("threshold", 0.5)),
            "version": str(versions[-1]),
        }
        return self._info

    def batch(self) -> int:
        """Tiles per request: the client's batch size within the model's max_batch_size."""
        return max(1, min(self.batch_size, self.info()["max_batch_size"]))

    # -- shared memory --------------------------------------------------------
    def bind_worker(self, regions: list) -> None:
        """Make this thread a worker whose shared-memory regions go into `regions` (a thread pool's
        initializer); the caller closes them when its work is done."""
        self._local.regions = regions

    def _tile_pair(self, dtype) -> shm.TilePair | None:
        """This worker thread's shared-memory regions, made on first use; None to use the socket."""
        regions = getattr(self._local, "regions", None)
        if regions is None or self.shared_memory == "none" or getattr(self._local, "refused", False):
            return None
        if self.shared_memory == "auto" and not shm.is_local(self.url):
            return None
        pair = getattr(self._local, "shm", None)
        if pair is None:
            info = self.info()
            try:
                pair = shm.TilePair(self._client(), self.batch(), info["tile"], dtype, len(info["outputs"]),
                                    bands=len(info["bands"]))
            except Exception as exc:
                if self.shared_memory == "system":
                    raise TritonUnavailable(f"Triton at {self.url} refused system shared memory: {_short(exc)}") \
                        from None
                self._local.refused = True  # auto: another host or IPC namespace; the socket works everywhere
                return None
            regions.append(pair)
            self._local.shm = pair
        return pair

    # -- inference ----------------------------------------------------------
    def _request(self, data: np.ndarray, pair: shm.TilePair | None, names: list[str]) -> np.ndarray:
        """One request for the outputs `names` -> (n, len(names), T, T); the tensors go through
        `pair`'s regions when given, else in the request."""
        info, module = self.info(), self._module()
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

    def infer(self, tiles: np.ndarray, outputs: list[str] | None = None) -> np.ndarray:
        """(N, B, T, T) uint16 (B: 6, or 12 for a multi-pass model) -> (N, C, T, T) float32, with retries: one channel per output asked
        for (default: all of the model's, the plume probability first, then the source heat map
        when the model has one)."""
        info = self.info()
        names = list(info["outputs"] if outputs is None else outputs)
        unknown = [n for n in names if n not in info["outputs"]]
        if unknown or not names:
            raise ValueError(f"outputs must be some of {info['outputs']}, not {outputs!r}")
        data = tiles.astype(np.uint16 if info["datatype"] == "UINT16" else np.float32, copy=False)
        pair = self._tile_pair(data.dtype) if len(data) <= self.batch() else None
        if pair is not None:
            try:
                return self._request(data, pair, names)
            except Exception:  # e.g. a restarted server lost the registration: this worker uses the socket
                self._local.refused = True
        return self._with_retries(data, names)

    def _with_retries(self, data: np.ndarray, names: list[str]) -> np.ndarray:
        from tritonclient.utils import InferenceServerException

        delay = 0.2
        for attempt in range(self.retries):
            try:
                return self._request(data, None, names)
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


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _is_transient(exc) -> bool:
    status = str(getattr(exc, "status", lambda: "")() or "")
    text = str(exc).lower()
    return any(s in status for s in ("503", "UNAVAILABLE", "502", "504")) or "unavailable" in text
