"""Trial record (not product code): plume records on scenes with several leaks.

docs/methods.md, "One plume, one source point", reports what this gave. It checks that joining a
plume's downwind puffs to it (core.plumes.downwind_joins) and dropping small pieces without a
source (core.plumes.sourceless) keep separate leaks apart and keep them located. Run from the
repository root with the training extra installed:

    python -m experiments.several_leaks [SEED0 N SIZE SOURCES Q_KG_H]   # default 3990000 150 512 3 30000
    python -m experiments.several_leaks 3980000 400 256 0                # plume-free scenes

Each scene (no clouds) is segmented in one pass of the graph that the repository serves on CPU,
its heat map averaged over two views as the client asks for it; leaks at one pad count as one
site. For each way of decoding: the sites with a source point within 2 px, and how many of all
points lie within 2 px of a site. With SOURCES 0 (plume-free scenes, clouds as drawn): how many
scenes report a plume, and how many plumes.
"""
import math
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from core.plumes import find_plumes
from core.tiling import SOURCE_VIEWS
from core.tiling import mean_of_views, views
from training.simulate import simulate_scene
from training.sources import WITHIN_PX, _result, served_model

DECODINGS = {
    "served": {},
    "puffs not joined": {"join_downwind": False},
    "sourceless pieces kept": {"drop_sourceless": False},
    "neither": {"join_downwind": False, "drop_sourceless": False},
}


def sites(sources: list[dict]) -> list[dict]:
    """The true sources, leaks at one pad (within WITHIN_PX of each other) counted once."""
    out = []
    for s in sources:
        if all(math.hypot(s["row"] - t["row"], s["col"] - t["col"]) > WITHIN_PX for t in out):
            out.append(s)
    return out


def main(seed0=3_990_000, n=150, size=512, n_sources=3, q_kg_h=30_000.0):
    session, threshold = served_model(Path("model_repository/methane_seg/1"))
    name = session.get_inputs()[0].name
    totals = {k: [0, 0, 0] for k in DECODINGS}  # sites located (scenes with a plume), points, right
    n_sites = 0
    for seed in tqdm(range(seed0, seed0 + n), desc="scenes"):
        if n_sources == 0:
            sim = simulate_scene(seed=seed, size=size, n_sources=0)
        else:
            sim = simulate_scene(seed=seed, size=size, n_sources=n_sources, q_kg_h=q_kg_h, clouds=False)
        prob, heat = session.run(None, {name: np.stack(views(sim.data, SOURCE_VIEWS))})
        result = _result(sim, prob[0, 0], prob[0, 0] >= threshold, threshold, source=mean_of_views(heat[:, 0]))
        true = sites(sim.meta["sources"])
        n_sites += len(true)
        for decoding, options in DECODINGS.items():
            points = find_plumes(result, **options)
            d = np.array([[math.hypot(p.source_row - t["row"], p.source_col - t["col"]) for t in true]
                          for p in points]).reshape(len(points), len(true))
            t = totals[decoding]
            if not true:
                t[0], t[1] = t[0] + bool(points), t[1] + len(points)
            elif len(points):
                t[0] += int((d.min(axis=0) <= WITHIN_PX).sum())
                t[1] += len(points)
                t[2] += int((d.min(axis=1) <= WITHIN_PX).sum())
    if n_sources == 0:
        print(f"{n} plume-free scenes of {size} px")
        for decoding, (scenes, points, _) in totals.items():
            print(f"{decoding:<24} scenes with a plume {scenes} ({scenes / n:.1%}), plumes {points}")
        return
    print(f"{n} scenes of {size} px, {n_sources} leaks of {q_kg_h:,.0f} kg/h each: {n_sites} sites")
    for decoding, (located, points, right) in totals.items():
        print(f"{decoding:<24} sites located {located} ({located / n_sites:.1%}), points {points}, "
              f"within 2 px of a site {right} ({right / max(points, 1):.1%})")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(*(int(a) for a in args[:4]), *(float(a) for a in args[4:5]))
