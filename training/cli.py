"""`methane-seg simulate` and `methane-seg train` (dispatched from methane_seg.cli)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def _sim_one(args):
    out, seed, size = args
    from training.simulate import simulate_scene, write_sim_scene

    sim = simulate_scene(seed, size=size)
    write_sim_scene(out, f"s{seed:07d}", sim)
    return sim.meta["plume_pixels"] > 0, bool(sim.meta["reference"]["sources"])


def simulate_main(argv: list[str]) -> int:
    from tqdm import tqdm

    from training.splits import seeds_for

    p = argparse.ArgumentParser(prog="methane-seg simulate",
                                description="simulate Sentinel-2 scenes (target + reference pass, 12-band documents) with methane plumes")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--n", type=int, default=100, help="number of scenes")
    p.add_argument("--size", type=int, default=256, help="scene size in pixels (>= 64)")
    p.add_argument("--split", choices=["train", "val", "test"], default="train", help="seed range to draw from")
    p.add_argument("--seed", type=int, default=0, help="offset into the split's seed range")
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args(argv)
    if a.size < 64 or a.n < 1:
        print("error: --size must be >= 64 and --n >= 1", file=sys.stderr)
        return 2
    try:
        seeds = seeds_for(a.split, a.n, a.seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    a.out.mkdir(parents=True, exist_ok=True)
    jobs = [(str(a.out), s, a.size) for s in seeds]
    t0 = time.time()
    n_plume = n_ref_plume = 0
    if a.workers > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(a.workers) as pool:
            for has, ref in tqdm(pool.imap_unordered(_sim_one, jobs, chunksize=8), total=len(jobs), desc="simulate"):
                n_plume += has
                n_ref_plume += ref
    else:
        for j in tqdm(jobs, desc="simulate"):
            has, ref = _sim_one(j)
            n_plume += has
            n_ref_plume += ref
    dt = time.time() - t0
    print(f"{a.n} scenes ({n_plume} with labelled plume pixels, {n_ref_plume} references with a plume of their own) "
          f"in {a.out} "
          f"[{a.split} seeds {seeds[0]}..{seeds[-1]}], {dt:.1f} s, {1000 * dt / a.n:.0f} ms/scene wall")
    return 0


def train_main(argv: list[str]) -> int:
    from training.train import main

    return main(argv)


def train_source_main(argv: list[str]) -> int:
    from training.source import main

    return main(argv)
