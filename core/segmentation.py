"""A segmented scene: what the client hands to plume analysis and output writing.

The client (client/segmenter.py) fills it from Triton; evaluation (training/) fills it from a model
run in process or from a classical baseline; core/plumes and core/outputs read it either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.contract import Scene


def mode_of(reference: str | None) -> str:
    """What ran: a multi-pass model (against `reference`) or a single-pass one (None)."""
    return "multi-pass" if reference else "single-pass"


def document_reference(name: str) -> str:
    """How outputs name the reference pass that a 12-band document carries itself."""
    return f"{name} bands B2_ref..B12_ref"


@dataclass
class SegmentationResult:
    scene: Scene
    probability: np.ndarray  # (H, W) float32 0..1, NaN where the input is nodata
    mask: np.ndarray  # (H, W) uint8, 1 = plume, 0 = background
    threshold: float
    model_name: str
    model_version: str
    timings: dict = field(default_factory=dict)
    source: np.ndarray | None = None  # the source heat map (0..1; NaN on nodata and where not computed)
    # The reference pass the model compared the target with: the separate file's name, or the 12-band
    # document's own B*_ref bands; None when a single-pass model read the target alone.
    reference: str | None = None

    @property
    def mode(self) -> str:
        return mode_of(self.reference)

    @property
    def plume_pixels(self) -> int:
        return int((self.mask == 1).sum())
