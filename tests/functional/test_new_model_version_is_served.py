"""The real server: answers as onnxruntime in-process does, and takes a new model version without a restart."""

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as httpclient

from serving.tritonserver import TritonServer
from core.model_files import versions
from export.repository import write_model_repository
from tests.conftest import MODEL_REPOSITORY, served_onnx

pytestmark = pytest.mark.slow


def infer(client, x, version=""):
    inp = httpclient.InferInput("reflectance", list(x.shape), "UINT16")
    inp.set_data_from_numpy(x)
    result = client.infer("methane_seg", [inp], model_version=version)
    return result.as_numpy("probability"), result.get_response()["model_version"]


def test_triton_answers_exactly_as_onnxruntime(triton, scenes):
    from core.contract import read_scene

    model_dir = MODEL_REPOSITORY / "methane_seg"
    latest = model_dir / str(versions(model_dir)[-1])
    tile = json.loads((latest / "metadata.json").read_text())["tile_size"]
    data = read_scene(scenes["strong"]).data[:, :tile, :tile]
    x = np.stack([data, data[:, ::-1, :]]).copy()
    session = ort.InferenceSession(str(served_onnx(latest)), providers=["CPUExecutionProvider"])
    expected, expected_source = session.run(None, {"reflectance": x})
    inp = httpclient.InferInput("reflectance", list(x.shape), "UINT16")
    inp.set_data_from_numpy(x)
    result = httpclient.InferenceServerClient(triton.http_url).infer("methane_seg", [inp])  # every output
    np.testing.assert_allclose(result.as_numpy("probability"), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(result.as_numpy("source"), expected_source, rtol=0, atol=1e-6)


def test_new_version_is_served_without_restart(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(MODEL_REPOSITORY, repo)
    model_dir = repo / "methane_seg"
    latest = model_dir / str(versions(model_dir)[-1])
    metadata = json.loads((latest / "metadata.json").read_text())
    with TritonServer(repo, models=["methane_seg"]) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        tile = metadata["tile_size"]
        x = np.full((1, 6, tile, tile), 1200, np.uint16)
        before, version_before = infer(client, x)
        pid = server.process.pid

        write_model_repository(repo, latest / "model.onnx", metadata, version=None)
        new_version = versions(model_dir)[-1]
        assert new_version == int(version_before) + 1
        client.load_model("methane_seg")  # model control API: re-read the repository

        assert client.is_model_ready("methane_seg", str(new_version))
        assert not client.is_model_ready("methane_seg", version_before)
        after, version_after = infer(client, x)
        assert version_after == str(new_version)
        np.testing.assert_allclose(after, before, atol=1e-6)
        assert server.process.pid == pid and server.process.poll() is None
