"""Triton's dynamic batcher merges concurrent requests: fewer executions than inferences.

The shipped CPU layout has no batcher (2 single-thread instances measured faster); the GPU
configurations have it. This test writes the same model with batching on (`methane-seg repository
--batching`) and serves it with the real tritonserver.
"""

import threading
import time

import numpy as np
import pytest
import tritonclient.http as httpclient

pytestmark = pytest.mark.slow


def model_stats(client):
    stats = client.get_inference_statistics("methane_seg")["model_stats"][0]
    return int(stats["inference_count"]), int(stats["execution_count"])


@pytest.fixture(scope="module")
def batching_triton(tmp_path_factory):
    from methane_seg.cli import main
    from serving.tritonserver import TritonServer
    from tests.conftest import MODEL_REPOSITORY

    repo = tmp_path_factory.mktemp("batching_repo")
    assert main(["repository", "--target", "cpu", "--from", str(MODEL_REPOSITORY / "methane_seg" / "1"),
                 "--out", str(repo), "--instances", "1", "--threads", "2", "--batching"]) == 0
    server = TritonServer(repo)
    try:
        server.start(timeout=180)
        yield server
    finally:
        server.cleanup()


def test_eight_concurrent_requests_are_batched(batching_triton):
    triton = batching_triton
    client = httpclient.InferenceServerClient(triton.http_url)
    config = client.get_model_config("methane_seg")
    tile = int(config["input"][0]["dims"][1])
    before = model_stats(client)
    barrier = threading.Barrier(8)
    errors = []

    def send(i):
        c = httpclient.InferenceServerClient(triton.http_url, network_timeout=120)
        x = np.full((1, 6, tile, tile), 1000 + i, np.uint16)
        inp = httpclient.InferInput(config["input"][0]["name"], list(x.shape), "UINT16")
        inp.set_data_from_numpy(x)
        barrier.wait()
        try:
            r = c.infer("methane_seg", [inp])
            assert r.as_numpy(config["output"][0]["name"]).shape == (1, 1, tile, tile)
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    deadline = time.monotonic() + 10  # statistics are updated just after the responses go out
    while (after := model_stats(client))[0] - before[0] < 8 and time.monotonic() < deadline:
        time.sleep(0.1)
    inferences, executions = after[0] - before[0], after[1] - before[1]
    assert inferences == 8
    assert executions < inferences, f"{executions} executions for {inferences} inferences: nothing was batched"
