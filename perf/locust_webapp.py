"""Locust load on the web app's JSON upload API (POST /api/v1/segment), on loopback or anywhere.

    locust -f perf/locust_webapp.py --headless -u 20 -r 5 -t 2m --stop-timeout 120 \
        --host http://127.0.0.1:5000 --csv var/locust --only-summary

Each simulated user uploads a contract GeoTIFF of SCENE_SIZE x SCENE_SIZE pixels (the committed
sample scene tiled up to that size), waits for the answer, then waits WAIT_MIN..WAIT_MAX seconds.
Settings, all environment variables:

  SCENE_SIZE    pixels a side (512); any size from 64 up
  SCENE_PATH    the contract GeoTIFF to tile up (examples/sample_scene.tif; random bands if missing)
  SCENE_UNIQUE  1 (default): every upload differs by one pixel, so that each is computed rather than
                answered from the store; 0: the same bytes every time (the first is computed, the
                rest are answered from the stored result)
  API_KEY       sent as X-API-Key when set
  WAIT_MIN, WAIT_MAX   seconds between a user's uploads (0.5, 1.5)
  REQUEST_TIMEOUT      seconds a user waits for an answer (120)
  LOCUST_LOG    a file to which every answer is appended as one JSON line: time sent, seconds,
                the upload's SHA-256, HTTP status, result id (201/200), job id (202), error message. The fault and load
                tests (tests/functional/test_faults_lose_nothing.py) read it to check every accepted upload in the database.
  LOCUST_ACCEPT_503   1: a 503 with a JSON error message counts as a success for Locust (fault
                injection, where it is the expected answer); default 0, every non-2xx is a failure.

A 2xx answer without a result or job id, an answer that is not JSON, a 5xx other than a clean 503,
and a timeout count as failures.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
from locust import HttpUser, between, events, task

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # core.contract, when the package is not installed
SCENE_SIZE = int(os.environ.get("SCENE_SIZE", "512"))
SCENE_PATH = Path(os.environ.get("SCENE_PATH") or ROOT / "examples" / "sample_scene.tif")
SCENE_UNIQUE = os.environ.get("SCENE_UNIQUE", "1") != "0"
API_KEY = os.environ.get("API_KEY") or None
REQUEST_TIMEOUT = float(os.environ.get("REQUEST_TIMEOUT", "120"))
LOCUST_LOG = os.environ.get("LOCUST_LOG") or None
ACCEPT_503 = os.environ.get("LOCUST_ACCEPT_503", "0") == "1"


def base_scene(size: int = SCENE_SIZE):
    """(6, size, size) uint16 bands, CRS and transform: the sample scene tiled up, or random bands."""
    import rasterio
    from rasterio.crs import CRS
    from rasterio.transform import from_origin

    if SCENE_PATH.is_file():
        with rasterio.open(SCENE_PATH) as ds:
            data, crs, transform = ds.read(list(range(1, 7))), ds.crs, ds.transform  # the target (B*_ref follow)
        reps = (1, -(-size // data.shape[1]), -(-size // data.shape[2]))
        return np.ascontiguousarray(np.tile(data, reps)[:, :size, :size]), crs, transform
    rng = np.random.default_rng(0)
    data = (rng.random((6, size, size)) * 3000 + 300).astype(np.uint16)
    return data, CRS.from_epsg(32613), from_origin(600_000.0, 3_500_000.0, 20.0, 20.0)


def geotiff_bytes(data: np.ndarray, crs, transform) -> bytes:
    """A contract GeoTIFF (deflate, band descriptions) in memory."""
    from core.contract import scene_bytes

    return scene_bytes(data, crs, transform)


class Scenes:
    """Upload bodies: the same scene, with one pixel set from a counter when SCENE_UNIQUE."""

    def __init__(self):
        self.data, self.crs, self.transform = base_scene()
        self._counter = itertools.count(int(time.time() * 1000) % 1_000_000_000)
        self._lock = threading.Lock()
        self._fixed = None if SCENE_UNIQUE else geotiff_bytes(self.data, self.crs, self.transform)

    def next(self) -> tuple[str, bytes]:
        if self._fixed is not None:
            return f"scene_{SCENE_SIZE}.tif", self._fixed
        with self._lock:
            n = next(self._counter)
        data = self.data.copy()
        data[:, 0, 0] = 1 + n % 60000  # a corner pixel: the content (and its hash) is new
        data[:, 0, 1] = 1 + (n // 60000) % 60000
        return f"scene_{SCENE_SIZE}_{n}.tif", geotiff_bytes(data, self.crs, self.transform)


_SCENES: Scenes | None = None
_LOG_LOCK = threading.Lock()


def scenes() -> Scenes:
    global _SCENES
    if _SCENES is None:
        _SCENES = Scenes()
    return _SCENES


def log_answer(record: dict) -> None:
    if LOCUST_LOG:
        with _LOG_LOCK, open(LOCUST_LOG, "a") as f:
            f.write(json.dumps(record) + "\n")


class UploadUser(HttpUser):
    wait_time = between(float(os.environ.get("WAIT_MIN", "0.5")), float(os.environ.get("WAIT_MAX", "1.5")))

    @task
    def upload(self):
        name, body = scenes().next()
        headers = {"X-API-Key": API_KEY} if API_KEY else {}
        sent = time.time()
        record = {"sent": sent, "name": name, "sha256": hashlib.sha256(body).hexdigest(), "status": None,
                  "seconds": None, "id": None, "job": None, "error": None}
        with self.client.post("/api/v1/segment", files={"file": (name, io.BytesIO(body), "image/tiff")},
                              headers=headers, name="POST /api/v1/segment", timeout=REQUEST_TIMEOUT,
                              catch_response=True) as r:
            record["seconds"] = round(time.time() - sent, 4)
            record["status"] = r.status_code or None
            try:
                payload = r.json()
            except ValueError:
                payload = None
            if r.status_code in (200, 201) and payload and payload.get("id"):
                record["id"] = payload["id"]
                r.success()
            elif r.status_code == 202 and payload and payload.get("id"):
                record["job"] = payload["id"]
                r.success()
            else:
                message = ((payload or {}).get("error") or {}).get("message") if isinstance(payload, dict) else None
                record["error"] = message or (str(r.error) if r.error else f"HTTP {r.status_code}")
                if r.status_code == 503 and message and ACCEPT_503:
                    r.success()
                else:
                    r.failure(record["error"])
        log_answer(record)


@events.test_start.add_listener
def _prepare(environment, **_kwargs):
    scenes()  # read and tile the base scene once, before the users start
