"""The web app as a real, separate process (waitress serving `webapp.app:create_app`), and Locust
runs against it, for the bad-input, fault and load tests.

The app is configured only through its environment (webapp/config.py), as in production.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from serving.tritonserver import free_port

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "perf" / "locust_webapp.py"


class WebApp:
    """`python -m waitress --call webapp.app:create_app` on a free loopback port."""

    def __init__(self, data_dir: Path, triton_url: str, threads: int = 4, **env: str):
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.threads = threads
        self.env = {**os.environ, "TRITON_URL": triton_url, "TRITON_PROTOCOL": "http",
                    "DATA_DIR": str(self.data_dir), **{k: str(v) for k, v in env.items() if v is not None}}
        self.log_path = self.data_dir.parent / f"webapp-{self.port}.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> "WebApp":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "waitress", "--host=127.0.0.1", f"--port={self.port}",
             f"--threads={self.threads}", "--call", "webapp.app:create_app"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the web app exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the web app did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind runs."""
        if self.alive():
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def post(self, name: str, body: bytes, timeout: float = 60.0, headers: dict | None = None):
        return requests.post(self.url + "/api/v1/segment", files={"file": (name, body, "image/tiff")},
                             headers=headers or {}, timeout=timeout)


class Locust:
    """A headless Locust run of perf/locust_webapp.py in its own process (gevent stays out of pytest)."""

    def __init__(self, host: str, workdir: Path, users: int, seconds: int, spawn_rate: float | None = None,
                 stop_timeout: int = 120, **env: str):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log = self.workdir / "answers.jsonl"
        self.csv = self.workdir / "locust"
        self.cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", host,
                    "-u", str(users), "-r", str(spawn_rate or users), "-t", f"{seconds}s",
                    "--stop-timeout", str(stop_timeout), "--csv", str(self.csv), "--only-summary",
                    "--loglevel", "WARNING", "--exit-code-on-error", "1"]
        self.env = {**os.environ, "LOCUST_LOG": str(self.log), **{k: str(v) for k, v in env.items()}}
        self.process: subprocess.Popen | None = None
        self.output = ""

    def start(self) -> "Locust":
        self.process = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, start_new_session=True)
        return self

    def wait(self, timeout: float) -> int:
        try:
            self.output, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.output, _ = self.process.communicate()
            raise AssertionError(f"locust did not finish within {timeout:.0f} s:\n{self.output[-3000:]}")
        return self.process.returncode

    def finish(self, timeout: float) -> int:
        """SIGTERM: Locust stops its users, writes its summary and exits; then wait for it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def finish_after_created(self, n: int, timeout: float, what: str = "uploads served after the restart") -> int:
        """Wait until n more uploads than now have been answered 201, then finish."""
        seen = len(self.answers())
        wait_until(lambda: sum(a["status"] == 201 for a in self.answers()[seen:]) >= n, timeout, what=what)
        return self.finish(timeout=120)

    def answers(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def stats(self) -> dict:
        """The aggregated row of Locust's CSV: requests, failures, rps and percentiles."""
        import csv

        with open(f"{self.csv}_stats.csv") as f:
            rows = list(csv.DictReader(f))
        row = next(r for r in rows if r["Name"] == "Aggregated")
        return {"requests": int(row["Request Count"]), "failures": int(row["Failure Count"]),
                "rps": float(row["Requests/s"]), "p50_ms": float(row["50%"]), "p95_ms": float(row["95%"]),
                "max_ms": float(row["Max Response Time"]), "mean_ms": float(row["Average Response Time"])}


def sample_bands(size: int):
    """(6, size, size) uint16: the committed sample scene's target bands tiled up to `size`, with its CRS
    and transform.

    (perf/locust_webapp.py builds its uploads the same way; it cannot be imported here, as importing
    Locust monkey-patches the standard library with gevent.)
    """
    import numpy as np
    import rasterio

    with rasterio.open(ROOT / "examples" / "sample_scene.tif") as ds:
        data, crs, transform = ds.read(list(range(1, 7))), ds.crs, ds.transform  # B2..B12; B*_ref after them
    reps = (1, -(-size // data.shape[1]), -(-size // data.shape[2]))
    return np.ascontiguousarray(np.tile(data, reps)[:, :size, :size]), crs, transform


def scene_bytes(size: int = 256, n: int = 0) -> bytes:
    """A contract GeoTIFF of size x size pixels, distinct for each `n` (one corner pixel differs)."""
    from core import contract

    data, crs, transform = sample_bands(size)
    data[:, 0, 0] = 1 + n % 60000
    data[:, 0, 1] = 1 + n // 60000
    return contract.scene_bytes(data, crs, transform)


def wait_until(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} not met within {timeout:.0f} s")


def check_store(database_url: str, data_dir: Path) -> dict:
    """Every result row has its folder with every file of its rows (size and SHA-256 as recorded).

    Returns {"ids": ids of the rows, "orphans": folders no row names (a crash's leftovers, invisible)}.
    """
    import sqlalchemy as sa

    from webapp.db import make_engine
    from webapp.store import ResultStore, file_sha256

    engine = make_engine(database_url)
    try:
        store = ResultStore(engine, data_dir)
        rows, total = store.page(1, 100000)
        ids = set()
        for r in rows:
            full = store.get(r.id)
            assert full.files, f"result {r.id} has no files"
            for f in full.files:
                path = store.path(full, f.kind)
                assert path.is_file(), f"result {r.id}: {f.kind} missing ({path})"
                assert path.stat().st_size == f.bytes and file_sha256(path) == f.sha256, f"{r.id}: {f.kind} differs"
            ids.add(r.id)
        assert len(ids) == total
        with engine.connect() as conn:
            shas = conn.execute(sa.text("SELECT content_sha256 FROM results")).scalars().all()
        assert len(shas) == len(set(shas)), "one upload stored twice"
        orphans = sorted(p.name for p in store.root.iterdir() if p.name not in ids)
        return {"ids": ids, "shas": set(shas), "orphans": orphans}
    finally:
        engine.dispose()
