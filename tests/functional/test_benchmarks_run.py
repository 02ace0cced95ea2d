"""Each benchmark script runs on a tiny setting (the figures come from `make bench`, not from tests)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_simulator_benchmark_runs(tmp_path):
    out = tmp_path / "sim.json"
    done = subprocess.run([sys.executable, str(ROOT / "perf" / "bench_simulator.py"), "--n", "6", "--workers", "2",
                           "--json", str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(out.read_text())
    assert figures["scenes"] == 6 and figures["ms_per_scene_wall"] > 0


def test_client_benchmark_runs(tmp_path):
    out = tmp_path / "client.json"
    done = subprocess.run([sys.executable, str(ROOT / "perf" / "bench_client.py"), "--size", "600",
                           "--json", str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(out.read_text())
    assert figures["tiles"] == 9 and figures["peak_rss_mb"] > 0 and figures["seconds"] > 0


def test_client_benchmark_on_a_variant(tmp_path):
    out = tmp_path / "client.json"
    done = subprocess.run([sys.executable, str(ROOT / "perf" / "bench_client.py"), "--size", "300",
                           "--variant", "2x1-nobatch", "--json", str(out)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(out.read_text())
    assert figures["variant"] == "2x1-nobatch" and figures["tiles"] == 4 and figures["seconds"] > 0


def _run(args, timeout=240):
    done = subprocess.run([sys.executable] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_int8_export_runs(tmp_path):
    out = tmp_path / "int8.json"
    _run(["-m", "export.int8", "--calib", "2", "--n-test", "2", "--test", tmp_path / "none",
          "--speed-seconds", "0.1", "--speed-rounds", "1", "--speed-batch", "1", "--out", tmp_path / "m8.onnx",
          "--json", out])
    report = json.loads(out.read_text())
    assert (tmp_path / "m8.onnx").stat().st_size > 0
    assert report["quality"]["scenes"] == 2 and report["speed"]["int8_tiles_per_s"] > 0
    assert isinstance(report["serve"], bool) and report["reason"]


def test_int8_serve_decision_rewrites_the_repository(tmp_path):
    """--serve puts model_int8.onnx and the decision into the version folder; config.pbtxt's
    onnx_file follows it (the INT8 file where both gates held, else the FP32 one)."""
    import shutil

    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "model_repository", repo)
    version = repo / "methane_seg" / "1"
    _run(["-m", "export.int8", "--onnx", version / "model.onnx", "--calib", "2", "--n-test", "2",
          "--test", tmp_path / "none", "--speed-seconds", "0.1", "--speed-rounds", "1", "--speed-batch", "1",
          "--out", tmp_path / "m8.onnx", "--serve"])
    meta = json.loads((version / "metadata.json").read_text())
    assert (version / "model_int8.onnx").stat().st_size > 0
    served = meta["int8"]["served"]
    assert meta["cpu_onnx_file"] == ("model_int8.onnx" if served else "model.onnx") and meta["int8"]["reason"]
    assert meta["version"] == 1 and meta["target"] == "cpu"
    config = text_format.Parse((repo / "methane_seg" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.parameters["onnx_file"].string_value == meta["cpu_onnx_file"]
    ort_cpu = text_format.Parse((repo / "methane_seg" / "configs" / "onnxruntime_cpu.pbtxt").read_text(),
                                model_config_pb2.ModelConfig())
    gpu = text_format.Parse((repo / "methane_seg" / "configs" / "onnxruntime_gpu.pbtxt").read_text(),
                            model_config_pb2.ModelConfig())
    assert ort_cpu.default_model_filename == meta["cpu_onnx_file"] and gpu.default_model_filename == "model.onnx"


def test_int8_speed_override_serves_when_the_quality_gate_holds(tmp_path):
    """--speed-override serves INT8 although the speed gate missed, with the reason recorded beside
    the measured speed-up; it never overrides the quality gate."""
    import shutil

    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "model_repository", repo)
    version = repo / "methane_seg" / "1"
    _run(["-m", "export.int8", "--onnx", version / "model.onnx", "--calib", "2", "--n-test", "2",
          "--test", tmp_path / "none", "--speed-seconds", "0.1", "--speed-rounds", "1", "--speed-batch", "1",
          "--out", tmp_path / "m8.onnx", "--json", tmp_path / "r.json", "--serve", "--speed-override", "measured elsewhere"])
    report = json.loads((tmp_path / "r.json").read_text())
    meta = json.loads((version / "metadata.json").read_text())
    assert meta["int8"]["served"] == report["iou_ok"] == report["serve"]
    assert meta["int8"]["speedup"] == report["speed"]["speedup"]
    if not report["speed_ok"]:
        assert report["speed_override"] == "measured elsewhere" and "served all the same" in meta["int8"]["reason"]
    assert meta["cpu_onnx_file"] == ("model_int8.onnx" if report["serve"] else "model.onnx")


@pytest.mark.slow
def test_models_benchmark_runs(tmp_path):
    out = tmp_path / "models.json"
    _run([ROOT / "perf" / "bench_models.py", "--batches", "1", "--layouts", "1x2,2x1", "--seconds", "0.1",
          "--rounds", "1", "--peak-seconds", "0.3", "--json", out])
    figures = json.loads(out.read_text())
    engines = {(r["engine"], r["layout"]) for r in figures["rows"]}
    assert {("onnxruntime-fp32", "1x2"), ("onnxruntime-fp32", "2x1")} <= engines
    assert any(e == "pytorch-eager" for e, _ in engines)
    assert 1.0 < figures["flops"]["conv_gflop"] < 100 and figures["peak"]["gflops"] > 0
    assert abs(figures["flops"]["torch_counter_gflop"] - figures["flops"]["conv_gflop"]) < 0.05 * figures["flops"][
        "conv_gflop"]


@pytest.mark.slow
def test_triton_benchmark_runs(tmp_path):
    """Real tritonserver on a modified copy of the repository, real perf_analyzer: each protocol, 1 and 2
    tiles per request, over the socket and through system shared memory; then the report's (b2) table."""
    work = tmp_path / "work"
    work.mkdir()
    out = work / "triton-local.json"
    _run([ROOT / "perf" / "bench_triton.py", "--configs", "2x1-nobatch-float32", "--concurrency", "1",
          "--protocols", "grpc,http", "--batch", "1,2", "--shared-memory", "none,system", "--window-requests", "3",
          "--trials", "3", "--baseline-seconds", "0.1", "--json", out])
    figures = json.loads(out.read_text())
    assert not figures["failed_points"]
    assert {(p["protocol"], p["batch"], p["shared_memory"]) for p in figures["points"]} == {
        (proto, b, sm) for proto in ("grpc", "http") for b in (1, 2) for sm in ("none", "system")}
    for p in figures["points"]:
        assert p["dtype"] == "float32" and p["infer_per_s"] > 0 and p["p50_ms"] > 0 and p["ratio_to_inprocess"] > 0
    assert {b["batch"] for b in figures["baselines"]} == {1, 2}
    _run([ROOT / "perf" / "report.py", "--work", work, "--out", tmp_path])
    md = (tmp_path / "RESULTS.md").read_text()
    assert "(b2) Eight tiles per request" in md and "| 2 | shm | 1 |" in md


@pytest.mark.slow
def test_peer_benchmark_runs(tmp_path):
    out = tmp_path / "peer.json"
    _run([ROOT / "perf" / "bench_peer.py", "--concurrency", "2", "--seconds", "0.2", "--json", out])
    table = json.loads(out.read_text())["table"]
    assert {r["target"] for r in table} == {"peer", "triton-shipped", "triton-2x1-nobatch"}
    assert all(r["tiles_per_s"] > 0 for r in table)


@pytest.mark.slow
def test_upload_benchmark_runs(tmp_path):
    """The Locust run, then the one-at-a-time run of the largest scene answered in the request (small
    here), which the report turns into its target row."""
    work = tmp_path / "work"
    work.mkdir()
    out = work / "upload.json"
    _run([ROOT / "perf" / "bench_upload.py", "--users", "1", "--seconds", "1", "--size", "256",
          "--largest-size", "320", "--largest-seconds", "1", "--json", out])
    figures = json.loads(out.read_text())
    (run,) = figures["runs"]
    assert run["requests"] >= 1 and run["errors"] == 0 and run["p95_s"] > 0
    largest = figures["largest"]
    assert largest["size"] == 320 and largest["users"] == 1 and largest["requests"] >= 1
    assert largest["errors"] == 0 and largest["answered_in_request"] and largest["statuses"] == {"201": largest["requests"]}
    assert largest["max_s"] >= largest["p50_s"] > 0 and figures["target_largest_s"] == largest["target_s"] == 10.0
    _run([ROOT / "perf" / "report.py", "--work", work, "--out", tmp_path])
    (row,) = [t for t in json.loads((tmp_path / "results.json").read_text())["targets"]
              if t["target"] == "slowest 320x320 upload through Flask"]
    assert row["measured"] == largest["max_s"] and row["goal"] == 10.0 and row["status"] in ("PASS", "MISS")
    assert "| 1 | 320 |" in (tmp_path / "RESULTS.md").read_text()


def test_upload_benchmark_sizes_the_largest_run_from_the_web_apps_setting():
    """By default the one-at-a-time run uses the largest scene the web app answers in the request."""
    import os

    code = "import bench_upload; print(bench_upload.largest_synchronous_side())"
    for setting, side in ((None, "2048"), (str(1000 * 1000), "1000")):
        env = {k: v for k, v in os.environ.items() if k != "SYNC_MAX_PIXELS"}
        if setting:
            env["SYNC_MAX_PIXELS"] = setting
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                              cwd=ROOT / "perf", env=env)
        assert done.returncode == 0 and done.stdout.split() == [side], done.stderr


def test_report_from_partial_figures(tmp_path):
    """The report stands on what was measured and says NOT MEASURED for the rest."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "client.json").write_text(json.dumps({
        "seconds": 12.5, "tiles": 625, "tiles_per_s": 50.0, "peak_rss_mb": 900.0, "size": 5490, "protocol": "grpc",
        "batch_size": 8, "concurrency": 2, "target_seconds": 20, "target_rss_mb": 2048}))
    (work / "errors.json").write_text(json.dumps({"upload": "exit code 1"}))
    done = _run([ROOT / "perf" / "report.py", "--work", work, "--out", tmp_path])
    md = (tmp_path / "RESULTS.md").read_text()
    assert "PASS" in done.stdout and "NOT MEASURED" in md and "upload: exit code 1" in md
    assert "NOT MEASURED slowest 2048x2048 upload through Flask" in done.stdout
    assert (tmp_path / "results.png").stat().st_size > 1000
    targets = json.loads((tmp_path / "results.json").read_text())["targets"]
    assert any(t["status"] == "PASS" and t["unit"] == "MB" for t in targets)


def test_gpu_script_without_gpu():
    import shutil

    if shutil.which("nvidia-smi"):
        pytest.skip("a GPU machine: perf/gpu.sh runs for real there")
    done = subprocess.run(["bash", str(ROOT / "perf" / "gpu.sh")], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)
    assert done.returncode == 0 and "no NVIDIA GPU" in done.stdout
