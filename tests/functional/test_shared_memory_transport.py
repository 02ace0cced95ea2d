"""Tiles through system shared memory (client/shm.py) against the real server: same probabilities as
over the socket, nothing left registered or on /dev/shm afterwards, and the socket when refused."""

import os
from pathlib import Path

import numpy as np
import pytest

from client import shm
from core.contract import Scene
from client.segmenter import Segmenter, TritonUnavailable
from tests.conftest import random_scene, utm

pytestmark = pytest.mark.slow


def leftovers() -> list[str]:
    return sorted(p.name for p in Path("/dev/shm").glob(f"methane_seg_{os.getpid()}_*"))


def registered(url: str) -> list[str]:
    import tritonclient.http as http

    return [r["name"] for r in http.InferenceServerClient(url).get_system_shared_memory_status()]


@pytest.mark.parametrize("url, local", [("localhost:8001", True), ("127.0.0.1:8000", True), ("[::1]:8001", True),
                                        ("0.0.0.0:8000", True), ("triton:8001", False), ("10.0.0.7:8000", False),
                                        ("localhost", True)])
def test_local_hosts(url, local):
    assert shm.is_local(url) is local


@pytest.fixture
def array_scene():
    def make(seed=3) -> Scene:
        data = random_scene((6, 600, 700), seed=seed)
        crs, transform = utm()
        profile = {"crs": crs, "transform": transform, "height": 600, "width": 700}
        return Scene(data=data, profile=profile, valid=np.ones((600, 700), bool), name=f"shm-{seed}")

    return make


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_shared_memory_matches_socket(triton, array_scene, protocol):
    url = triton.http_url if protocol == "http" else triton.grpc_url
    by_socket = Segmenter(url, protocol, batch_size=4, shared_memory="none").segment_array(array_scene())
    used = []
    original = shm.TilePair.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        used.append(self.inp.name)

    shm.TilePair.__init__ = spy
    try:
        by_shm = Segmenter(url, protocol, batch_size=4, concurrency=2, shared_memory="system").segment_array(
            array_scene())
    finally:
        shm.TilePair.__init__ = original
    assert 1 <= len(used) <= 2  # one pair of regions per worker thread
    np.testing.assert_array_equal(by_shm.mask, by_socket.mask)
    np.testing.assert_allclose(by_shm.probability, by_socket.probability, atol=1e-6, equal_nan=True)
    assert leftovers() == []
    assert not [n for n in registered(triton.http_url) if n.startswith(f"methane_seg_{os.getpid()}_")]


def test_auto_falls_back_to_the_socket_when_refused(triton, array_scene, monkeypatch):
    """A server that cannot open the regions (another host, a container with its own /dev/shm) refuses
    the registration; auto mode then sends the tiles over the socket, system mode says why."""
    def refuse(client, byte_size, tag):
        raise RuntimeError("failed to register shared memory region: unable to open '/x'")

    monkeypatch.setattr(shm.Region, "__init__", refuse)
    result = Segmenter(triton.grpc_url, "grpc", shared_memory="auto").segment_array(array_scene(4))
    reference = Segmenter(triton.grpc_url, "grpc", shared_memory="none").segment_array(array_scene(4))
    np.testing.assert_array_equal(result.mask, reference.mask)
    with pytest.raises(TritonUnavailable, match="refused system shared memory"):
        Segmenter(triton.grpc_url, "grpc", shared_memory="system").segment_array(array_scene(4))
    assert leftovers() == []


def test_a_lost_registration_is_retried_over_the_socket(triton, array_scene, monkeypatch):
    """A server restarted mid-scene has forgotten the regions: the request is sent again over the socket."""
    import tritonclient.grpc as grpc

    original = shm.Region.__init__

    def register_then_forget(self, client, byte_size, tag):
        original(self, client, byte_size, tag)
        grpc.InferenceServerClient(triton.grpc_url).unregister_system_shared_memory(self.name)

    monkeypatch.setattr(shm.Region, "__init__", register_then_forget)
    result = Segmenter(triton.grpc_url, "grpc", shared_memory="auto").segment_array(array_scene(5))
    reference = Segmenter(triton.grpc_url, "grpc", shared_memory="none").segment_array(array_scene(5))
    np.testing.assert_array_equal(result.mask, reference.mask)
    assert leftovers() == []


def test_bad_mode_is_refused():
    with pytest.raises(ValueError, match="shared_memory must be one of"):
        Segmenter("localhost:8001", "grpc", shared_memory="posix")


def test_setting_is_read_from_the_environment_and_checked(monkeypatch, tmp_path):
    import subprocess
    import sys

    from client.cli import segment_parser
    from webapp.config import settings_from_env

    monkeypatch.delenv("TRITON_SHARED_MEMORY", raising=False)
    assert segment_parser().parse_args(["x.tif", "--out", "o"]).shared_memory == "auto"
    assert settings_from_env()["TRITON_SHARED_MEMORY"] == "auto"
    monkeypatch.setenv("TRITON_SHARED_MEMORY", "none")
    assert segment_parser().parse_args(["x.tif", "--out", "o"]).shared_memory == "none"
    assert settings_from_env()["TRITON_SHARED_MEMORY"] == "none"
    monkeypatch.setenv("TRITON_SHARED_MEMORY", "posix")
    with pytest.raises(ValueError, match="TRITON_SHARED_MEMORY='posix' is not one of auto, system, none"):
        settings_from_env()
    done = subprocess.run([sys.executable, "-m", "methane_seg", "segment", "x.tif", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "TRITON_SHARED_MEMORY must be auto, system or none" in done.stderr


def test_a_killed_client_leaves_no_region_in_dev_shm(triton, tmp_path):
    """A client SIGKILLed with its regions registered: Python's resource tracker unlinks them."""
    import signal
    import subprocess
    import sys
    import time

    code = f"""
import os, signal, tritonclient.grpc as g
from client import shm
pair = shm.TilePair(g.InferenceServerClient({triton.grpc_url!r}), 2, 256, "uint16")
print(pair.inp.name, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    name = done.stdout.split()[0]
    assert name.startswith("methane_seg_")
    deadline = time.monotonic() + 10
    while Path("/dev/shm", name).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path("/dev/shm", name).exists()
    assert not list(Path("/dev/shm").glob(name.rsplit("_", 2)[0] + "_*"))
