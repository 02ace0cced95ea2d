"""A one-cycle learning rate over wall-clock time, for runs given minutes rather than epochs.

`methane-seg train --minutes M` and `train-source --minutes M` use it: on a machine whose speed is
not known ahead (a GPU lent for a few minutes), the run follows PyTorch's OneCycleLR (warm-up over
the first `pct_start` of the run, cosine decay to 1/(div * final_div) of the peak) with time in place
of steps, and stops when the time is up, at the end of the cycle.
"""

from __future__ import annotations

import math
import time

PCT_START = 0.1
DIV_FACTOR = 25.0
FINAL_DIV_FACTOR = 1e4


def one_cycle(frac: float, max_lr: float, pct_start: float = PCT_START, div: float = DIV_FACTOR,
              final_div: float = FINAL_DIV_FACTOR) -> float:
    """OneCycleLR's cosine learning rate (PyTorch's defaults) at `frac` (0..1, clipped) of the run."""
    frac = min(max(frac, 0.0), 1.0)
    initial = max_lr / div
    if frac < pct_start:
        t, start, end = frac / pct_start, initial, max_lr
    else:
        t, start, end = (frac - pct_start) / (1 - pct_start), max_lr, initial / final_div
    return end + (start - end) / 2 * (1 + math.cos(math.pi * t))


class TimedOneCycle:
    """Sets the optimizer's learning rate from the time passed since it was made; `step()` returns
    False once `minutes` have passed (the caller stops there)."""

    def __init__(self, optimizer, max_lr: float, minutes: float, clock=time.monotonic):
        if minutes <= 0:
            raise ValueError("minutes must be positive")
        self.optimizer, self.max_lr, self.seconds, self.clock = optimizer, max_lr, 60.0 * minutes, clock
        self.t0 = clock()
        self.step()

    @property
    def frac(self) -> float:
        return (self.clock() - self.t0) / self.seconds

    def step(self) -> bool:
        f = self.frac
        for group in self.optimizer.param_groups:
            group["lr"] = one_cycle(f, self.max_lr)
        return f < 1.0


def stop_reason(epoch: int, started: float, max_minutes: float, timed: TimedOneCycle | None) -> str | None:
    """Why a run stops after this epoch (0-based): --max-minutes passed since `started` (time.time())
    or the timed cycle done; None to go on."""
    if max_minutes and time.time() - started > 60 * max_minutes:
        return f"time budget of {max_minutes} min reached after epoch {epoch + 1}"
    if timed is not None and timed.frac >= 1:
        return f"{timed.seconds / 60:g} min of training done after epoch {epoch + 1}"
    return None


def run_steps(steps: int, desc: str, one_step, timed: TimedOneCycle | None = None,
              mininterval: float = 5.0) -> float:
    """An epoch: up to `steps` calls of one_step() (one optimiser step each, returning its loss)
    behind a progress bar, fewer when the timed cycle ends first. Returns the running loss (an
    exponential average, started at the first step's)."""
    from tqdm import tqdm

    run = 0.0
    bar = tqdm(range(steps), desc=desc, mininterval=mininterval)
    for i in bar:
        if timed is not None and not timed.step():
            break
        loss = one_step()
        run = 0.95 * run + 0.05 * loss if i else loss
        bar.set_postfix(loss=f"{run:.3f}")
    return run


def end_epoch(out, metrics: dict, epoch: int, started: float, max_minutes: float,
              timed: TimedOneCycle | None) -> bool:
    """Appends the epoch's metrics to OUT/history.jsonl; True (the reason printed) when the run
    stops after this epoch (`stop_reason`)."""
    import json

    with open(out / "history.jsonl", "a") as fh:
        fh.write(json.dumps(metrics) + "\n")
    why = stop_reason(epoch, started, max_minutes, timed)
    if why:
        print(why, flush=True)
    return bool(why)
