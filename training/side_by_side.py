"""Several detectors' evaluations (`methane-seg evaluate --json`) side by side, as markdown tables:
the headline figures, per emission-rate bin and per surface.

    python -m training.side_by_side "multi-pass=runs/eval_mp.json" "single-pass=runs/eval_sp.json" \
        "MBMP=runs/eval_mbmp.json" [--out FILE.md]

The bound they read against is `python -m training.ceiling`'s table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def _f(x, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:.1f} %" if pct else f"{x:.3f}"


def _kg(x) -> str:
    return "not reached" if x is None or not math.isfinite(x) or x > 1e5 else f"{x:,.0f} kg/h".replace(",", " ")


def headline(reports: dict[str, dict]) -> list[str]:
    names = list(reports)
    rows = [
        ("pooled pixel IoU, Q ≥ 1000 kg/h / all", lambda r: f"{_f(r['q_ge_1000']['pooled_iou'])} / {_f(r['all']['pooled_iou'])}"),
        ("seed AP, Q ≥ 1000 kg/h / all", lambda r: f"{_f(r['q_ge_1000']['seed_ap'])} / {_f(r['all']['seed_ap'])}"),
        ("pooled pixel AP", lambda r: _f(r["all"]["pooled_pixel_ap"])),
        ("plume-free scenes flagged", lambda r: _f(r["all"]["detection"]["false_positive_rate"], pct=True)),
        ("scene recall / precision", lambda r: f"{_f(r['all']['detection']['recall'])} / {_f(r['all']['detection']['precision'])}"),
        ("50 % / 90 % of plumes detected at", lambda r: f"{_kg(r.get('detection_curve', {}).get('q50_kg_h'))} / "
                                                      f"{_kg(r.get('detection_curve', {}).get('q90_kg_h'))}"),
    ]
    out = ["| " + " | ".join([f"{next(iter(reports.values()))['all']['scenes']} test scenes"] + names) + " |",
           "|" + "---|" * (len(names) + 1)]
    out += ["| " + " | ".join([label] + [fn(reports[n]) for n in names]) + " |" for label, fn in rows]
    return out


def subsets(reports: dict[str, dict], key: str, label: str, count: str, cell) -> list[str]:
    """One row per subset of report[key] (emission bins, surfaces), one cell per detector."""
    names = list(reports)
    groups = next(iter(reports.values()))[key]
    out = [f"| {label} | {count} | " + " | ".join(f"{n}: {cell.__doc__}" for n in names) + " |",
           "|" + "---|" * (len(names) + 2)]
    for g, first in groups.items():
        cells = [cell(reports[n][key].get(g, {})) for n in names]
        out.append(f"| {g} | {first[count]} | " + " | ".join(cells) + " |")
    return out


def _bin_cell(r: dict) -> str:
    """detected / IoU / AP"""
    return f"{_f(r.get('plume_detection_rate'), pct=True)} / {_f(r.get('pooled_iou'))} / {_f(r.get('seed_ap'))}"


def _surface_cell(r: dict) -> str:
    """IoU / AP"""
    return f"{_f(r.get('pooled_iou'))} / {_f(r.get('seed_ap'))}"


def by_bin(reports: dict[str, dict]) -> list[str]:
    return subsets(reports, "by_q_bin", "Q (kg/h)", "plumes", _bin_cell)


def by_surface(reports: dict[str, dict]) -> list[str]:
    return subsets(reports, "by_surface", "surface", "scenes", _surface_cell)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.side_by_side", description=__doc__.split("\n\n")[0])
    p.add_argument("reports", nargs="+", metavar="NAME=EVAL.json")
    p.add_argument("--out", type=Path, help="markdown file to write (default: print)")
    a = p.parse_args(argv)
    reports = {}
    for item in a.reports:
        name, sep, path = item.partition("=")
        if not sep or not Path(path).is_file():
            p.error(f"give NAME=EVAL.json with an existing file, not {item!r}")
        reports[name] = json.loads(Path(path).read_text())
    lines = headline(reports) + [""] + by_bin(reports) + [""] + by_surface(reports)
    text = "\n".join(lines) + "\n"
    if a.out:
        a.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
