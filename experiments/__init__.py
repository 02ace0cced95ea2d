"""One-off trials that decided a setting (docs/methods.md names each); not part of the installed packages.

Run from the repository root: `python -m experiments.several_leaks ...`, `python -m experiments.source_heat ...`.
"""
