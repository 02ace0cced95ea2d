"""Benchmark: the client on a whole Sentinel-2 tile (5490 x 5490 at 20 m) against the real Triton.

    python perf/bench_client.py [--size 5490] [--url HOST:PORT --protocol grpc] [--json FILE]
                                [--variant 2x1-nobatch] [--onnx model_int8.onnx] [--shared-memory auto|none]
                                [--repository DIR] [--source-margin PX|all] [--pair]

Without --url it starts the pip-installed tritonserver on model_repository/ (with --variant or --onnx: on a
temporary copy with that layout, instances x threads and dynamic batching or not, and/or that ONNX file;
model_repository/ itself is not changed). The scene is a
simulated 1830 x 1830 scene with one plume, repeated to the requested size (3 x 3 times for a
whole tile: 9 plumes). Its content changes the cost only through the tiles sent again for the
source heat map near plume pixels (`--source-margin`, client/segmenter.py; `all`: every tile
asks for both outputs in one pass, as before). The client runs in a child process (`methane-seg segment`), so its peak RSS is measured
alone: time, tiles/s and peak RSS, against the targets (<= 20 s, <= 2 GB). `--shared-memory none` sends the
tiles over the socket instead of the shared memory the client uses beside a local server (client/shm.py).
`--pair`: the scene and its reference pass as two files (`segment --reference`), which the client sends
to the multi-pass model as 12 bands per tile.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "perf"))
from client.shm import MODES, is_local  # noqa: E402
from common import served_onnx  # noqa: E402


BLOCK = 1830  # a third of a Sentinel-2 tile at 20 m


def make_scene(path: Path, size: int, reference: Path | None = None) -> None:
    """The scene (and, given `reference`, its reference pass as a file of its own)."""
    from core.contract import write_scene
    from training.simulate import simulate_scene

    sim = simulate_scene(2_999_001, size=BLOCK, n_sources=1, q_kg_h=10_000.0, wind_ms=3.0, clouds=False)
    reps = -(-size // BLOCK)
    for data, dst in ((sim.data, path), (sim.reference, reference)):
        if dst is not None:
            write_scene(dst, np.ascontiguousarray(np.tile(data, (1, reps, reps))[:, :size, :size]), sim.crs, sim.transform)


def run_client(scene: Path, out: Path, url: str, protocol: str, batch: int, concurrency: int,
               shared_memory: str = "auto", source_margin: str = "32", source_views: str = "2",
               reference: Path | None = None) -> dict:
    cmd = [sys.executable, "-m", "methane_seg", "segment", str(scene), "--out", str(out), "--url", url,
           *(["--reference", str(reference)] if reference else []),
           "--protocol", protocol, "--batch-size", str(batch), "--concurrency", str(concurrency),
           "--shared-memory", shared_memory, "--source-margin", source_margin,
           "--source-views", source_views]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"segment failed ({done.returncode}): {done.stderr.strip()}")
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # kB on Linux
    tiles = int(re.search(r"\b(\d+) tiles\b", done.stdout).group(1))  # "(model ..., one pass; N tiles, ..."
    again = re.search(r"(\d+) for the source heat map in (\d+) view", done.stdout)  # 0 without the heat map
    plumes = re.search(r"(\d+) plume\(s\)", done.stdout)
    return {"seconds": round(elapsed, 2), "tiles": tiles, "tiles_per_s": round(tiles / elapsed, 1),
            "source_tiles": int(again.group(1)) if again else None,
            "source_views": int(again.group(2)) if again else None,
            "plumes": int(plumes.group(1)) if plumes else None,
            "peak_rss_mb": round(rss_mb, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=5490)
    p.add_argument("--url")
    p.add_argument("--protocol", choices=["http", "grpc"], default="grpc")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--variant", help="LAYOUT-(dyn|nobatch), e.g. 2x1-nobatch: serve a modified copy of the repository")
    p.add_argument("--onnx", help="serve this ONNX file instead of the repository's (e.g. the INT8 model)")
    p.add_argument("--repository", type=Path, default=ROOT / "model_repository",
                   help="serve this model repository (e.g. an older version from `git archive`) instead of "
                        "model_repository/ (without --variant or --onnx)")
    p.add_argument("--shared-memory", choices=MODES, default="auto",
                   help="the client's --shared-memory (default auto: shared memory beside a local server)")
    p.add_argument("--source-margin", default="32",
                   help="the client's --source-margin (default 32: the heat map near plumes only; all: everywhere)")
    p.add_argument("--source-views", default="2",
                   help="the client's --source-views (default 2: the heat map averaged over the tile and the tile "
                        "turned 180 degrees)")
    p.add_argument("--pair", action="store_true", help="a target + reference pair (the multi-pass model)")
    p.add_argument("--json")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-client-") as tmp:
        scene = Path(tmp) / "scene.tif"
        reference = Path(tmp) / "reference.tif" if a.pair else None
        make_scene(scene, a.size, reference)
        server = None
        url = a.url
        if url is None:
            from serving.tritonserver import TritonServer

            repo = a.repository
            if (a.variant or a.onnx) and a.repository != ROOT / "model_repository":
                p.error("--repository serves a repository as it is: not with --variant or --onnx")
            if a.variant or a.onnx:
                from common import repository_variant

                layout, mode = (a.variant or "1x2-dyn").split("-")
                inst, threads = (int(v) for v in layout.split("x"))
                repo = repository_variant(Path(tmp) / "repo", instances=inst, threads=threads, dynamic=(mode == "dyn"),
                                          onnx_file=Path(a.onnx) if a.onnx else None)
            server = TritonServer(repo).start()
            url = server.grpc_url if a.protocol == "grpc" else server.http_url
        try:
            figures = run_client(scene, Path(tmp) / "out", url, a.protocol, a.batch_size, a.concurrency,
                                 a.shared_memory, a.source_margin, a.source_views, reference)
        finally:
            if server is not None:
                server.cleanup()
    figures.update(size=a.size, pair=a.pair, protocol=a.protocol, batch_size=a.batch_size, concurrency=a.concurrency,
                   variant=a.variant or ("shipped" + (", socket" if a.shared_memory == "none" else "")
                                         + (", heat map on every tile" if a.source_margin == "all" else "")
                                         + (f", heat map in {a.source_views} view(s)" if a.source_views != "2"
                                            else "")),
                   shared_memory=a.shared_memory, source_margin=a.source_margin,
                   transport="socket" if a.shared_memory == "none" or (a.url and not is_local(a.url)) else "shm",
                   onnx=Path(a.onnx).name if a.onnx else served_onnx(a.repository, pair=a.pair).name,
                   repository=str(a.repository),
                   target_seconds=20, target_rss_mb=2048)
    print(json.dumps(figures))
    if a.json:
        Path(a.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
