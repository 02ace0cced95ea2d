"""Write the committed example scenes (examples/): `python -m training.examples [--out examples]`.

- sample_scene: 512 x 512, one strong plume (15 000 kg/h, wind 3 m/s) over bright soil, no cloud;
  the scene the README tells users to upload.
- plume_free_scene: 256 x 256, no methane, over sparse vegetation.
Each comes with its true mask and JSON sidecar, as `methane-seg simulate` writes them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from training.simulate import simulate_scene, write_sim_scene

EXAMPLES = {
    "sample_scene": dict(seed=2_100_004, size=512, n_sources=1, q_kg_h=15000.0, wind_ms=3.0, clouds=False,
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
