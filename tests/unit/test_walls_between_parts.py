"""The walls between the project's parts, held by tests.

Data flows one way: simulate -> train -> export -> model_repository -> Triton -> client -> web app,
over the domain package core/ that all of them use. The serving side (the CLI's serving commands,
the client, the web app, the local Triton launcher) never loads torch or training code; training
imports neither export/ nor the client; the web app reaches Triton only through the client.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SERVING_IMPORTS = """
import sys
import methane_seg.cli, client, client.cli, client.segmenter, client.transport, client.shm
import core.contract, core.tiling, core.physics, core.plumes, core.outputs, core.model_files
import serving.tritonserver, serving.ready
import webapp.app, webapp.run, webapp.api, webapp.pages, webapp.service, webapp.pipeline
from client.cli import segment_parser
segment_parser().parse_args(["x.tif", "--out", "o"])
app = webapp.app.create_app({"DATA_DIR": sys.argv[1], "TRITON_URL": "127.0.0.1:9"})
app.test_client().get("/")
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "training", "export", "segmentation_models_pytorch"))
print(",".join(loaded))
"""


def test_the_serving_side_loads_neither_torch_nor_training_code(tmp_path):
    done = subprocess.run([sys.executable, "-c", SERVING_IMPORTS, str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1:] in ([""], []), f"loaded: {done.stdout.strip()}"


def _imports(path: Path) -> set[str]:
    """Top-level package names and dotted modules that a file imports (anywhere in it)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


FORBIDDEN = {
    # part: packages it must not import
    "core": {"client", "serving", "webapp", "training", "export", "methane_seg", "torch", "tritonclient"},
    "client": {"serving", "webapp", "training", "export", "methane_seg", "torch"},
    "serving": {"client", "webapp", "training", "export", "methane_seg", "torch"},
    "training": {"export", "client", "serving", "webapp", "methane_seg", "perf"},
    "export": {"client", "webapp", "serving", "methane_seg", "perf"},
    "webapp": {"training", "export", "torch", "tritonclient", "methane_seg"},
}


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_imports_flow_one_way(part):
    offences = []
    for path in sorted((ROOT / part).rglob("*.py")):
        for name in _imports(path):
            if name.split(".")[0] in FORBIDDEN[part]:
                offences.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offences, "\n".join(offences)


TRAINING_COMMANDS = ["train", "train-source", "import-onnx", "export", "report", "simulate", "evaluate", "sources"]


@pytest.mark.parametrize("command", TRAINING_COMMANDS)
def test_a_training_command_on_a_serving_install_names_the_extra(command):
    """With torch, onnx and matplotlib missing (a serving-only install), `COMMAND --help` either
    prints its usage (the commands that load them only to work) or says which extra to install: one
    line, exit 2; never a traceback."""
    blocked = ["torch", "torchvision", "segmentation_models_pytorch", "timm", "onnx", "onnxslim", "matplotlib"]
    code = ("import sys\n"
            f"for name in {blocked!r}: sys.modules[name] = None\n"
            "from methane_seg.cli import main\n"
            f"sys.exit(main([{command!r}, '--help']))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    if done.returncode == 0:
        assert done.stdout.startswith(f"usage: methane-seg {command}"), done.stdout[:500]
    else:
        assert done.returncode == 2, (done.stdout[-2000:], done.stderr[-2000:])
        assert "pip install 'methane-seg[train]'" in done.stderr and f"`{command}` needs the training extra" in done.stderr
    if command in ("train", "train-source", "import-onnx"):  # these load torch as they start
        assert done.returncode == 2


def test_export_on_a_serving_install_names_the_extra(tmp_path):
    """Past its usage, a command that needs torch says which extra it needs."""
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"x")
    code = ("import sys\n"
            "for name in ['torch', 'onnx', 'onnxslim']: sys.modules[name] = None\n"
            "from methane_seg.cli import main\n"
            f"sys.exit(main(['export', {str(checkpoint)!r}, '--out', {str(tmp_path / 'repo')!r}]))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "pip install 'methane-seg[train]'" in done.stderr
