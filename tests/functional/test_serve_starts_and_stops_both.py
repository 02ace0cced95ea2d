"""`methane-seg serve` (what `make run` starts): Triton + upload page, stopped cleanly by Ctrl-C."""

import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from serving.ready import NotReady, wait_for_url
from serving.tritonserver import free_port
from tests.conftest import MODEL_REPOSITORY

pytestmark = pytest.mark.slow


def wait_for(url, proc, timeout=120):
    try:
        return wait_for_url(url, timeout, proc, what="methane-seg serve")
    except NotReady as exc:
        raise AssertionError(f"{exc}: {proc.stdout.read() if proc.poll() is not None else ''}") from None


def test_serve_starts_both_and_ctrl_c_stops_both(tmp_path):
    ports = {name: free_port() for name in ("web", "http", "grpc", "metrics")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "methane_seg", "serve", "--model-repository", str(MODEL_REPOSITORY),
         "--port", str(ports["web"]), "--http-port", str(ports["http"]),
         "--grpc-port", str(ports["grpc"]), "--metrics-port", str(ports["metrics"])],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        status, body = wait_for(f"http://127.0.0.1:{ports['web']}/", proc)
        assert status == 200 and b'type="file"' in body
        status, _ = wait_for(f"http://127.0.0.1:{ports['http']}/v2/models/methane_seg/ready", proc)
        assert status == 200
        status, metrics = wait_for(f"http://127.0.0.1:{ports['metrics']}/metrics", proc)
        assert b"nv_inference_count" in metrics
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        assert "stopped." in out
        for port in (ports["web"], ports["http"]):
            with pytest.raises(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
def test_stop_ends_the_python_stubs_of_a_server_that_was_killed():
    """SIGKILL reaches tritonserver only; its Python-backend stubs would poll on for ever. stop() ends
    what is left of the server's process group."""
    from serving.tritonserver import TritonServer

    server = TritonServer(MODEL_REPOSITORY).start()
    pgid = server.process.pid

    def group() -> list[int]:
        out = subprocess.run(["ps", "-o", "pid=", "-g", str(pgid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    try:
        assert len(group()) >= 2  # the server and at least one stub
        os.kill(pgid, signal.SIGKILL)
        server.process.wait(timeout=10)
        time.sleep(0.5)
        assert group(), "the stubs outlive their server"
    finally:
        server.cleanup()
    deadline = time.monotonic() + 5
    while group() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert group() == []
