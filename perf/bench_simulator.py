"""Benchmark: how long the simulator takes for N scenes of 256x256 on this machine's cores.

    python perf/bench_simulator.py [--n 400] [--workers 2] [--size 256]

Runs `methane-seg simulate` end to end (site, target and reference pass, 12-band GeoTIFF + mask +
JSON writing) and extrapolates to the 10 000-scene target (< 10 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time


def main(argv=None) -> int:
    from training.cli import simulate_main

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=400)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--json", help="write the figures here")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-sim-") as out:
        t0 = time.perf_counter()
        code = simulate_main(["--out", out, "--n", str(a.n), "--size", str(a.size), "--split", "test",
                              "--workers", str(a.workers)])
        elapsed = time.perf_counter() - t0
        written = len([f for f in os.listdir(out) if f.endswith(".json")])
    if code != 0 or written != a.n:
        print(f"simulate failed (exit {code}, {written} of {a.n} scenes)")
        return 1
    per_scene = elapsed / a.n
    result = {"scenes": a.n, "size": a.size, "workers": a.workers, "seconds": round(elapsed, 2),
              "ms_per_scene_wall": round(1000 * per_scene, 1),
              "minutes_for_10000": round(per_scene * 10_000 / 60, 2), "target_minutes": 10}
    print(json.dumps(result))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
