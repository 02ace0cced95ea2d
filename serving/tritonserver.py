"""Start and stop the real Triton Inference Server that nvidia-pytriton carries.

Outside NVIDIA's container the server is the `tritonserver` binary inside the
nvidia-pytriton wheel (Triton 2.51), with its Python backend only. To run it:
- the Python-backend stub for this interpreter is copied into a private copy of
  the bundled `backends/` folder (`backends/python/triton_python_backend_stub`);
- LD_LIBRARY_PATH starts with this interpreter's libpython directory, then the
  wheel's `nvidia_pytriton.libs`;
- PATH starts with this environment's `bin`, so the stub runs this python3 and
  sees its site-packages (onnxruntime, numpy).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from serving.ready import NotReady, probe, wait_for_url


class ServerError(RuntimeError):
    pass


def _pytriton_root() -> Path:
    try:
        import pytriton
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise ServerError("nvidia-pytriton is not installed: run `make run` or `pip install nvidia-pytriton`") from exc
    return Path(pytriton.__file__).parent / "tritonserver"


def _libs_dir() -> Path:
    import pytriton

    return Path(pytriton.__file__).parent.parent / "nvidia_pytriton.libs"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_backends(workdir: Path) -> Path:
    """A copy of the bundled backends with this Python's stub in place."""
    root = _pytriton_root()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise ServerError(f"nvidia-pytriton has no Python-backend stub for Python {version}")
    backends = workdir / "backends"
    if backends.exists():
        shutil.rmtree(backends)
    shutil.copytree(root / "backends", backends)
    shutil.copy2(stub, backends / "python" / "triton_python_backend_stub")
    return backends


def server_environment() -> dict[str, str]:
    env = dict(os.environ)
    libdirs = [sysconfig.get_config_var("LIBDIR") or "", str(_libs_dir())]
    if env.get("LD_LIBRARY_PATH"):
        libdirs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = ":".join(d for d in libdirs if d)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


@dataclass
class TritonServer:
    """A tritonserver process on localhost.

    Use as a context manager, or call start() / stop(). Ports default to
    free ones; `log_path` collects the server's output.
    """

    model_repository: Path
    http_port: int = 0
    grpc_port: int = 0
    metrics_port: int = 0
    host: str = "127.0.0.1"
    models: list[str] = field(default_factory=list)  # explicit model control when given
    model_control_explicit: bool = False
    log_path: Path | None = None
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = None

    def __post_init__(self):
        self.model_repository = Path(self.model_repository).resolve()
        self.http_port = self.http_port or free_port()
        self.grpc_port = self.grpc_port or free_port()
        self.metrics_port = self.metrics_port or free_port()
        self._workdir = Path(tempfile.mkdtemp(prefix="methane-seg-triton-"))
        if self.log_path is None:
            self.log_path = self._workdir / "tritonserver.log"

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def command(self) -> list[str]:
        backends = prepare_backends(self._workdir)
        cmd = [
            str(_pytriton_root() / "bin" / "tritonserver"),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backends}",
            f"--http-address={self.host}",
            f"--grpc-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            "--allow-metrics=true",
            "--exit-timeout-secs=5",
            "--log-verbose=0",
        ]
        if self.model_control_explicit or self.models:
            cmd.append("--model-control-mode=explicit")
            cmd += [f"--load-model={m}" for m in self.models]
        return cmd + list(self.extra_args)

    def start(self, timeout: float = 120.0) -> "TritonServer":
        if not self.model_repository.is_dir():
            raise ServerError(f"model repository {self.model_repository} does not exist")
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=server_environment(),
            start_new_session=True,
        )
        log.close()
        self.wait_ready(timeout)
        return self

    def is_ready(self) -> bool:
        return probe(f"http://{self.http_url}/v2/health/ready") is not None

    def wait_ready(self, timeout: float) -> None:
        try:
            wait_for_url(f"http://{self.http_url}/v2/health/ready", timeout, self.process, what="tritonserver")
        except NotReady as exc:
            self.stop()
            raise ServerError(f"{exc}:\n{self.log_tail()}") from None

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = Path(self.log_path).read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self, timeout: float = 15.0) -> None:
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGINT)
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
            except ProcessLookupError:
                pass
        # A server that crashed or was killed leaves its Python-backend stubs running (each polls,
        # using CPU, for ever): end whatever is left of its process group.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()
