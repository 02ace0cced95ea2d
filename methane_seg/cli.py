"""`methane-seg`: one command, dispatched by name to the part of the project that does the work.

    methane-seg segment SCENE.tif --out DIR       the client (client/cli.py)
    methane-seg serve                             Triton and the upload page (webapp/run.py)
    methane-seg simulate | train | train-source   the simulator and training (training/; `train` extra)
    methane-seg export | repository               ONNX, TensorRT and model_repository/ (export/)
    methane-seg baseline | evaluate | report | sources   evaluation (training/)

Each command's module is imported only when it is asked for, so the serving commands never load
training code or torch, and a training command on a serving-only install says which extra to
install instead of failing with a traceback. Exit codes: core/exit_codes.py.
"""

from __future__ import annotations

import importlib
import sys

from core.exit_codes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_UNAVAILABLE  # noqa: F401 (the CLI's codes)

TRAINING_DEPENDENCIES = {"torch", "torchvision", "segmentation_models_pytorch", "timm", "onnx", "onnxslim", "matplotlib"}

# name -> ("module:function", help); each function takes argv (list) and returns an exit code.
COMMANDS: dict[str, tuple[str, str]] = {
    "segment": ("client.cli:segment_main", "segment a scene on a Triton server"),
    "serve": ("webapp.run:main", "start Triton and the upload page (what `make run` does)"),
    "simulate": ("training.cli:simulate_main", "simulate Sentinel-2 scenes with methane plumes"),
    "train": ("training.cli:train_main", "train the segmentation model"),
    "train-source": ("training.cli:train_source_main", "train a source heat-map branch onto a trained model"),
    "export": ("export.cli:export_main", "export a checkpoint to ONNX and the Triton model repository"),
    "import-onnx": ("export.onnx_import:import_main", "rebuild a PyTorch checkpoint from an exported model.onnx"),
    "repository": ("export.repository:repository_main", "lay out model_repository/ for a target (cpu, onnxruntime, tensorrt)"),
    "baseline": ("training.baseline:baseline_main", "classical B12/B11-ratio segmenter (same outputs as segment)"),
    "evaluate": ("training.evaluate:evaluate_main", "score predictions against simulated truth"),
    "report": ("training.report:report_main", "markdown quality report with PNGs, model beside baseline"),
    "sources": ("training.sources:sources_main", "leak-source coordinates against the simulator's true sources"),
}


def _usage() -> str:
    lines = ["usage: methane-seg COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<13} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`methane-seg COMMAND --help` describes each."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else EXIT_BAD_INPUT
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        return _fail(f"unknown command {name!r}\n{_usage()}", EXIT_BAD_INPUT)
    module_name, func_name = COMMANDS[name][0].split(":")
    try:
        return int(getattr(importlib.import_module(module_name), func_name)(rest) or 0)
    except ModuleNotFoundError as exc:
        # The training commands import torch and friends when they start (`--help` included): on a
        # serving-only install, say which extra brings them instead of a traceback.
        if exc.name and exc.name.split(".")[0] in TRAINING_DEPENDENCIES:
            return _fail(f"`{name}` needs the training extra ({exc.name} is not installed): "
                         "pip install 'methane-seg[train]'", EXIT_BAD_INPUT)
        raise
    except KeyboardInterrupt:
        return 130


def _fail(message: str, code: int) -> int:
    print(f"methane-seg: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
