"""Each benchmark script runs on a tiny setting (the figures come from `make bench`, not from tests)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_simulator_benchmark_runs(tmp_path):
    out = tmp_path / "sim.json"
    done = subprocess.run([sys.executable, str(ROOT / "perf" / "bench_simulator.py"), "--n", "6", "--workers", "2",
                           "--json", str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(out.read_text())
    assert figures["scenes"] == 6 and figures["ms_per_scene_wall"] > 0


def test_client_benchmark_runs(tmp_path):
    out = tmp_path / "client.json"
    done = subprocess.run([sys.executable, str(ROOT / "perf" / "bench_client.py"), "--size", "600",
                           "--json", str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(out.read_text())
    assert figures["tiles"] == 9 and figures["peak_rss_mb"] > 0 and figures["seconds"] > 0
