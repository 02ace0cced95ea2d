"""Tensors through system shared memory when the client runs on Triton's host.

Over a socket every tile is serialised by the client, parsed by the server and
copied again on the way back (786 KB in, 256 KB out per 256-pixel tile). A
client beside the server can instead write the tiles into a POSIX shared-memory
region that it registers with Triton (`register_system_shared_memory`) and read
the probabilities from a second one: the request then carries only the names.
That is Triton's own mechanism (perf_analyzer's `--shared-memory system`).

Regions are made with the standard library (`/dev/shm/<name>`, opened by the
server with the key `/<name>`), one input and one output region per worker
thread, sized for the largest batch, and are unregistered and unlinked when the
segmentation ends. A server that cannot see them (another host, a container
without the host's IPC namespace) refuses the registration: the caller then
falls back to the socket.
"""

from __future__ import annotations

import os
import uuid
from multiprocessing import shared_memory

import numpy as np

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]", "0.0.0.0"}
MODES = ("auto", "system", "none")


def is_local(url: str) -> bool:
    """Whether host:port names this machine (the only place system shared memory can work)."""
    if url.startswith("["):
        host = url[: url.find("]") + 1]
    elif url.count(":") == 1:
        host = url.split(":")[0]
    else:
        host = url
    return host.lower() in LOCAL_HOSTS


class Region:
    """One POSIX shared-memory region registered with a Triton server."""

    def __init__(self, client, byte_size: int, tag: str):
        self.client = client
        self.name = f"methane_seg_{os.getpid()}_{tag}_{uuid.uuid4().hex[:8]}"
        self.byte_size = int(byte_size)
        self._shm = shared_memory.SharedMemory(name=self.name, create=True, size=self.byte_size)
        try:
            client.register_system_shared_memory(self.name, "/" + self.name, self.byte_size)
        except Exception:
            self._unlink()
            raise

    def array(self, shape, dtype, offset: int = 0) -> np.ndarray:
        """A view of the region from byte `offset` as an array (no copy)."""
        return np.ndarray(shape, dtype=dtype, buffer=self._shm.buf, offset=offset)

    def close(self) -> None:
        try:
            self.client.unregister_system_shared_memory(self.name)
        except Exception:  # the server may be gone; the region is ours to unlink either way
            pass
        self._unlink()

    def _unlink(self) -> None:
        try:
            self._shm.close()
            self._shm.unlink()
        except (FileNotFoundError, BufferError):
            pass


class TilePair:
    """The input and output regions of one worker: `batch` tiles of (bands, T, T) in (6 bands, or
    12 for a multi-pass model); out, for each of `outputs` output tensors, `batch` tiles of
    (1, T, T) float32 one after the other."""

    def __init__(self, client, batch: int, tile: int, in_dtype, outputs: int = 1, bands: int = 6):
        self.in_shape = (batch, int(bands), tile, tile)
        self.out_shape = (batch, 1, tile, tile)
        self.outputs = int(outputs)
        self.in_dtype = np.dtype(in_dtype)
        self.inp = Region(client, int(np.prod(self.in_shape)) * self.in_dtype.itemsize, "in")
        try:
            self.out = Region(client, self.outputs * int(np.prod(self.out_shape)) * 4, "out")
        except Exception:
            self.inp.close()
            raise

    def write(self, data: np.ndarray) -> int:
        """Copy a batch of n <= batch tiles in; returns its size in bytes."""
        n = len(data)
        self.inp.array((n,) + self.in_shape[1:], self.in_dtype)[...] = data
        return data.nbytes

    def out_offset(self, k: int) -> int:
        """Byte offset of output tensor k in the out region."""
        return k * int(np.prod(self.out_shape)) * 4

    def out_bytes(self, n: int) -> int:
        """Bytes of n tiles of one output tensor."""
        return n * int(np.prod(self.out_shape[1:])) * 4

    def read(self, n: int, outputs: int | None = None) -> np.ndarray:
        """A copy of the first n tiles of the first `outputs` output tensors (default: all),
        (n, outputs, T, T) float32."""
        count = self.outputs if outputs is None else min(int(outputs), self.outputs)
        return np.stack([self.out.array((n,) + self.out_shape[1:], np.float32, self.out_offset(k))[:, 0]
                         for k in range(count)], axis=1)

    def close(self) -> None:
        self.inp.close()
        self.out.close()
