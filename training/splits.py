"""Fixed, non-overlapping seed ranges for the data splits."""

SPLIT_SEEDS = {
    "train": (0, 1_000_000),
    "val": (1_000_000, 2_000_000),
    "test": (2_000_000, 3_000_000),
}


def seeds_for(split: str, n: int, offset: int = 0) -> list[int]:
    """`n` seeds of `split`, starting `offset` into its range; raises if the range is exceeded."""
    lo, hi = SPLIT_SEEDS[split]
    if offset < 0 or lo + offset + n > hi:
        raise ValueError(f"split {split!r} holds seeds {lo}..{hi - 1}; offset {offset} + n {n} runs past it")
    return list(range(lo + offset, lo + offset + n))


def split_of(seed: int) -> str:
    for name, (lo, hi) in SPLIT_SEEDS.items():
        if lo <= seed < hi:
            return name
    return "other"
