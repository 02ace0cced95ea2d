"""Benchmark (e): Locust against the Flask API with 1024 x 1024 uploads, on loopback, bounded;
then the largest scene the API answers in the request itself, one upload at a time.

    python perf/bench_upload.py [--users 1,4] [--seconds 60] [--size 1024]
                                [--largest-size 2048] [--largest-seconds 60] [--json FILE]

Starts `methane-seg serve` (the real Triton and the web app, as `make run` does) on free loopback
ports with a temporary DATA_DIR, then runs Locust headless with perf/locust_webapp.py (the load
file of the reliability work, reused as is): every upload is a distinct 1024 x 1024 contract
GeoTIFF (one corner pixel from a counter), so each is computed, not answered from the store; no
wait between a user's uploads. For each user count: requests/s, p50/p95/p99 latency, errors. The
percentiles come from the per-request log the load file writes (exact), Locust's own (rounded)
aggregate is kept beside them. Target: p95 of one upload at a time (1 user) <= 2 s.

Then one user uploads --largest-size scenes (default: the side of the web app's SYNC_MAX_PIXELS,
2048 x 2048, the largest answered at once rather than as a background job) for --largest-seconds,
on the same server: every such upload answered in the request (201) within 10 s is the target, so
the figure is the slowest of them (`largest` in the JSON; --largest-size 0 leaves the run out).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEFAULT_ONNX, ROOT, conditions, log, write_json  # noqa: E402

LOCUSTFILE = ROOT / "perf" / "locust_webapp.py"
TARGET_P95_S = 2.0  # p95 of one --size upload at a time
TARGET_LARGEST_S = 10.0  # every upload of the largest scene answered in the request, one at a time


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    from serving.ready import wait_for_url

    wait_for_url(url, timeout, proc, what="methane-seg serve")


def run_locust(host: str, users: int, seconds: float, size: int, workdir: Path, name: str = "") -> dict:
    """One headless Locust run of `users` users uploading distinct size x size scenes for `seconds`;
    its files in workdir are named after `name` (default: the user count)."""
    name = name or f"u{users}"
    prefix = workdir / f"locust-{name}"
    answers = workdir / f"answers-{name}.jsonl"
    env = dict(os.environ, SCENE_SIZE=str(size), SCENE_UNIQUE="1", WAIT_MIN="0", WAIT_MAX="0",
               LOCUST_LOG=str(answers), REQUEST_TIMEOUT="120")
    cmd = [str(Path(sys.executable).parent / "locust"), "-f", str(LOCUSTFILE), "--headless", "-u", str(users),
           "-r", str(users), "-t", f"{int(max(1, seconds))}s", "--stop-timeout", "120", "--host", host,
           "--csv", str(prefix), "--only-summary", "--exit-code-on-error", "0", "--loglevel", "WARNING"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=seconds + 300)
    if done.returncode != 0:
        raise RuntimeError(f"locust failed ({done.returncode}): {done.stderr[-2000:]}")
    stats = {}
    with open(f"{prefix}_stats.csv") as f:
        for row in csv.DictReader(f):
            if row["Name"] == "Aggregated":
                stats = row
    records = [json.loads(line) for line in answers.read_text().splitlines()] if answers.exists() else []
    ok = [r for r in records if r.get("id") or r.get("job")]
    lat = np.array([r["seconds"] for r in ok], dtype=float)
    pct = (lambda q: round(float(np.percentile(lat, q)), 3)) if len(lat) else (lambda q: None)
    span = (max(r["sent"] + r["seconds"] for r in records) - min(r["sent"] for r in records)) if records else 0
    return {
        "users": users, "seconds": seconds, "size": size,
        "requests": len(records), "errors": len(records) - len(ok),
        "statuses": {str(s): sum(1 for r in records if r.get("status") == s) for s in {r.get("status") for r in records}},
        "requests_per_s": round(len(ok) / span, 3) if span else None,
        "p50_s": pct(50), "p95_s": pct(95), "p99_s": pct(99), "max_s": pct(100),
        "locust": {"requests": int(stats.get("Request Count", 0) or 0), "failures": int(stats.get("Failure Count", 0) or 0),
                   "rps": float(stats.get("Requests/s", 0) or 0), "p50_ms": stats.get("50%"),
                   "p95_ms": stats.get("95%"), "p99_ms": stats.get("99%")},
    }


def largest_synchronous_side() -> int:
    """The side of the largest square scene the web app answers in the request (SYNC_MAX_PIXELS,
    as the server started here reads it from the environment)."""
    import math

    from webapp.config import settings_from_env

    return math.isqrt(settings_from_env()["SYNC_MAX_PIXELS"])


def start_server(model_repository: str, workdir: Path) -> tuple[subprocess.Popen, str]:
    """`methane-seg serve` on free loopback ports with a DATA_DIR under workdir, no API key: the
    process and the web app's URL once it answers."""
    from serving.tritonserver import free_port

    port = free_port()
    env = dict(os.environ, DATA_DIR=str(workdir / "data"), API_KEY="")
    cmd = [sys.executable, "-m", "methane_seg", "serve", "--model-repository", model_repository,
           "--host", "127.0.0.1", "--port", str(port), "--http-port", str(free_port()),
           "--grpc-port", str(free_port()), "--metrics-port", str(free_port())]
    log(f"bench_upload: starting methane-seg serve on 127.0.0.1:{port}")
    server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(workdir / "serve.log", "w"),
                              stderr=subprocess.STDOUT, start_new_session=True)
    host = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{host}/api/v1/openapi.json", server)
    except BaseException:
        stop_server(server)
        raise
    return server, host


def stop_server(server: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (Triton with it), SIGKILL after 30 s."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def log_run(r: dict) -> None:
    log(f"    {r['requests']} requests, {r['errors']} errors, {r['requests_per_s']} req/s, "
        f"p50 {r['p50_s']} s, p95 {r['p95_s']} s, p99 {r['p99_s']} s, slowest {r['max_s']} s")


def measure_largest(host: str, size: int, seconds: float, workdir: Path) -> dict:
    """One user uploading size x size scenes: the run, whether every upload was answered in the
    request (201, not a 202 job), and the slowest against TARGET_LARGEST_S."""
    log(f"  locust: 1 user, {seconds:.0f} s, {size}x{size} uploads (the largest answered in the request)")
    r = run_locust(host, 1, seconds, size, workdir, name=f"largest-{size}")
    r["answered_in_request"] = bool(r["requests"]) and set(r["statuses"]) == {"201"}
    r["target_s"] = TARGET_LARGEST_S
    log_run(r)
    return r


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", default="1,4", help="Locust user counts, one run each (empty: none)")
    p.add_argument("--seconds", type=float, default=60.0, help="per run")
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--largest-size", type=int, default=None,
                   help="side of the scenes of the one-user run against the 10 s target (default: the side of "
                        "SYNC_MAX_PIXELS, the largest scene answered in the request; 0: no such run)")
    p.add_argument("--largest-seconds", type=float, default=60.0, help="the largest scene's run")
    p.add_argument("--model-repository", default=str(ROOT / "model_repository"))
    p.add_argument("--json")
    a = p.parse_args(argv)
    if not LOCUSTFILE.exists():
        p.error(f"{LOCUSTFILE} is missing")
    largest_size = largest_synchronous_side() if a.largest_size is None else a.largest_size
    runs, largest = [], None
    with tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp:
        tmp = Path(tmp)
        server, host = start_server(a.model_repository, tmp)
        try:
            for users in [int(u) for u in a.users.split(",") if u.strip()]:
                log(f"  locust: {users} user(s), {a.seconds:.0f} s, {a.size}x{a.size} uploads")
                runs.append(run_locust(host, users, a.seconds, a.size, tmp))
                log_run(runs[-1])
            if largest_size > 0:
                largest = measure_largest(host, largest_size, a.largest_seconds, tmp)
        finally:
            stop_server(server)
    out = {"conditions": conditions(DEFAULT_ONNX), "runs": runs, "target_p95_s": TARGET_P95_S,
           "largest": largest, "target_largest_s": TARGET_LARGEST_S,
           "locustfile": str(LOCUSTFILE.relative_to(ROOT))}
    print(json.dumps(runs + ([largest] if largest else [])))
    if a.json:
        write_json(a.json, out)
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
