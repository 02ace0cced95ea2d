"""Write the committed example scenes (examples/): `python -m training.examples [--out examples]`.

- sample_scene: 384 x 384, one strong plume (15 000 kg/h, wind 3 m/s) over bright soil, no cloud on
  the target; the scene the README tells users to upload: a 12-band document (the target's six bands,
  then its reference pass's), and the same pair as two files, sample_target.tif + sample_reference.tif.
- plume_free_scene: 256 x 256, no methane, over sparse vegetation (12-band document).
Each comes with its true mask and JSON sidecar, as `methane-seg simulate` writes them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core.contract import write_scene
from training.simulate import simulate_scene, write_sim_scene

PAIR = {"sample_scene": ("sample_target.tif", "sample_reference.tif")}

EXAMPLES = {
    "sample_scene": dict(seed=2_100_004, size=384, n_sources=1, q_kg_h=15000.0, wind_ms=3.0, clouds=False,
                         surface="bright_soil"),
    "plume_free_scene": dict(seed=2_100_100, size=256, n_sources=0, clouds=False, surface="sparse_vegetation"),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("examples"))
    a = p.parse_args(argv)
    for stem, kwargs in EXAMPLES.items():
        sim = simulate_scene(**kwargs)
        path = write_sim_scene(a.out, stem, sim)
        print(f"{path}: {int(sim.mask.sum())} plume pixels")
        if stem in PAIR:
            for data, name in zip((sim.data, sim.reference), PAIR[stem]):
                write_scene(a.out / name, data, sim.crs, sim.transform)
                print(f"{a.out / name}: six bands")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
