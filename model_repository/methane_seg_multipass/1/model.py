"""Triton Python-backend model: runs the ONNX segmenter with onnxruntime.

Triton hands `execute` every request its dynamic batcher gathered; they are
concatenated into one batch, run once, and split back, so batching pays off.
A request gets the outputs it asks for (all of them when it names none). In models
with a source branch the whole graph computes the plume probability and the source
heat map in one run; when the configuration names a plume-only graph
(`plume_onnx_file`, export/plume_graph.py: the same probability to the bit, without
the branch), requests that ask for the probability alone run that cheaper graph, as
the client does for every tile before asking for the heat map near plumes.
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

        def session(name):
            return ort.InferenceSession(os.path.join(version_dir, name), sess_options=options,
                                        providers=["CPUExecutionProvider"])

        self.session = session(params.get("onnx_file", "model.onnx"))
        # (output names, session) pairs: the first whose outputs cover a request's runs it
        self.graphs = [(self.output_names, self.session)]
        if params.get("plume_onnx_file") and len(self.output_names) > 1:
            self.graphs.insert(0, (self.output_names[:1], session(params["plume_onnx_file"])))

    def _wanted(self, request):
        return set(request.requested_output_names()) or set(self.output_names)

    def execute(self, requests):
        responses = [None] * len(requests)
        try:
            wanted = [self._wanted(request) for request in requests]
            groups = {}
            for i, want in enumerate(wanted):
                g = next(k for k, (names, _) in enumerate(self.graphs) if want <= set(names))
                groups.setdefault(g, []).append(i)
        except Exception as exc:
            error = pb_utils.TritonError(f"inference failed: {exc}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        for g, members in groups.items():
            names, session = self.graphs[g]
            answers = self._run([requests[i] for i in members], [wanted[i] for i in members], names, session)
            for i, response in zip(members, answers):
                responses[i] = response
        return responses

    def _run(self, requests, wanted, names, session):
        """One onnxruntime run of `session` for `requests`; each response holds the outputs its
        request wants."""
        inputs = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        sizes = [x.shape[0] for x in inputs]
        try:
            batch = inputs[0] if len(inputs) == 1 else np.concatenate(inputs, axis=0)
            outs = session.run(names, {self.input_name: batch})
        except Exception as exc:  # one bad batch must not take the model down
            error = pb_utils.TritonError(f"inference failed: {exc}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        responses = []
        start = 0
        for want, n in zip(wanted, sizes):
            tensors = [pb_utils.Tensor(name, np.ascontiguousarray(out[start:start + n]))
                       for name, out in zip(names, outs) if name in want]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += n
        return responses

    def finalize(self):
        self.session = None
        self.graphs = []
