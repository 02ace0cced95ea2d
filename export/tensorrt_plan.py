"""Build a TensorRT plan from the exported ONNX with the TensorRT Python API.

Plans only run on the TensorRT version and GPU that built them, so build the plan
where it is served (NVIDIA's container of the server's release: see
`docker compose --profile build-plan run --rm build-plan`, which runs trtexec with the
same profile). The optimisation profile covers batch 1..max_batch_size at the model's
tile size, so Triton never sends a batch the plan cannot take; FP16 is used only where
the FP16 ONNX passed its plume-IoU parity check.
"""

from __future__ import annotations

from pathlib import Path

from export.onnx_export import INPUT_NAME, ExportError


def tensorrt_available() -> str | None:
    """None when a plan can be built here, else the reason why not."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "the TensorRT Python package (tensorrt) is not installed"
    try:
        import torch

        if not torch.cuda.is_available():
            return "no CUDA GPU is visible"
    except ImportError:
        return "torch is not installed to probe for a CUDA GPU"
    return None


def build_plan(onnx_path: str | Path, plan_path: str | Path, tile: int, max_batch_size: int = 16,
               fp16: bool = True, workspace_gib: float = 2.0) -> Path:
    why = tensorrt_available()
    if why:
        raise ExportError(f"cannot build a TensorRT plan here: {why}. Build it on the serving GPU with "
                          "`docker compose --profile build-plan run --rm build-plan`.")
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    bands = network.get_input(0).shape[1]  # 6, or 12 for the multi-pass model
    shape = lambda n: (n, bands, tile, tile)  # noqa: E731
    profile.set_shape(INPUT_NAME, shape(1), shape(max(1, max_batch_size // 2)), shape(max_batch_size))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ExportError("TensorRT failed to build the plan (see its log above)")
    plan_path = Path(plan_path)
    plan_path.write_bytes(bytes(plan))
    return plan_path
