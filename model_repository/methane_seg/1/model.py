"""Triton Python-backend model: runs the ONNX segmenter with onnxruntime.

Triton hands `execute` every request its dynamic batcher gathered; they are
concatenated into one batch, run once, and split back, so batching pays off.
Every output of the configuration is computed in the one run (the plume probability
and, in models with a source branch, the source heat map); Triton returns a request
the ones it asked for.
The ONNX file (`model.onnx`) sits beside this file in the version folder;
normalisation and the sigmoid are inside the graph, so nothing heavy runs here.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.input_name = config["input"][0]["name"]
        self.output_names = [o["name"] for o in config["output"]]  # probability[, source]
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_threads", "0"))
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            os.path.join(version_dir, params.get("onnx_file", "model.onnx")),
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )

    def execute(self, requests):
        inputs = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        sizes = [x.shape[0] for x in inputs]
        try:
            batch = inputs[0] if len(inputs) == 1 else np.concatenate(inputs, axis=0)
            outs = self.session.run(self.output_names, {self.input_name: batch})
        except Exception as exc:  # one bad batch must not take the model down
            error = pb_utils.TritonError(f"inference failed: {exc}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        responses = []
        start = 0
        for n in sizes:
            tensors = [pb_utils.Tensor(name, np.ascontiguousarray(out[start:start + n]))
                       for name, out in zip(self.output_names, outs)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += n
        return responses

    def finalize(self):
        self.session = None
