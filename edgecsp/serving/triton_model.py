"""Triton python-backend model that runs an edgecsp artefact with edgecsp's own runner (``edgecsp serve``).

Copied as ``REPO/<name>/1/model.py`` by ``edgecsp.serving.repository.python_repository``; Triton's python
backend stub imports it, with the serving process's ``sys.path`` in ``PYTHONPATH`` (``edgecsp.serving.server``).
Triton's dynamic batcher hands ``execute`` several requests at once: their frames are stacked into one batch
when the artefact's batch is dynamic, else submitted one frame each with requests in flight (OpenVINO's
asynchronous infer requests), so both kinds of artefact use the cores the way ``edgecsp bench`` does.

Tensors cross the stub through DLPack, not ``as_numpy()`` / ``Tensor(name, array)``: the python backend's stub
(Triton 2.51, built against numpy 1) reads numpy 2's dtype struct at the old offsets, so ``as_numpy()`` gives
zeros and ``Tensor(name, array)`` an empty buffer. DLPack hands over the data pointer itself. The stub then
renames the consumed capsule to a name numpy 2 does not know, and numpy's capsule destructor reports that as an
unraisable ValueError on every request; ``quiet_capsule_errors`` drops exactly that report.
"""
import json
import os

# the same keys as edgecsp.serving.triton_config's ARTEFACT_PARAMETER and PATHS_PARAMETER
ARTEFACT_PARAMETER = "edgecsp_artefact"
PATHS_PARAMETER = "edgecsp_python_paths"


def add_paths(paths):
    """Put the serving process's import paths in front (site folders with their .pth files: editable installs)."""
    import site
    import sys

    for path in reversed(paths):
        if path in sys.path:
            continue
        if os.path.basename(path.rstrip(os.sep)) in ("site-packages", "dist-packages"):
            site.addsitedir(path)
            sys.path.remove(path)
        sys.path.insert(0, path)


def _parameter(config, key):
    value = config.get("parameters", {}).get(key, {})
    return value.get("string_value") if isinstance(value, dict) else value


def quiet_capsule_errors():
    import sys

    default = sys.unraisablehook

    def hook(unraisable):
        if isinstance(unraisable.exc_value, ValueError) and "PyCapsule_GetPointer" in str(unraisable.exc_value):
            return
        default(unraisable)

    sys.unraisablehook = hook


def split_rows(batches):
    """``[(request index, row)]`` over the first axis of each request's input array."""
    return [(index, row) for index, batch in enumerate(batches) for row in range(batch.shape[0])]


class TritonPythonModel(object):
    def initialize(self, args):
        quiet_capsule_errors()
        config = json.loads(args["model_config"])
        add_paths(json.loads(_parameter(config, PATHS_PARAMETER) or "[]"))
        from edgecsp.backends import open_runner

        folder = os.path.join(args["model_repository"], args["model_version"])
        path = os.path.join(folder, _parameter(config, ARTEFACT_PARAMETER))
        self.max_batch = int(config.get("max_batch_size", 0)) or 1
        self.input_name = config["input"][0]["name"]
        self.runner = open_runner(path)
        self.runner.set_in_flight(self.max_batch)
        self.runner.__enter__()
        self.dynamic = self.runner.input_shape[0] is None
        self.output_names = self.runner.output_names  # the order the runner returns them in

    def execute(self, requests):
        import numpy as np
        import triton_python_backend_utils as pb_utils

        batches = [np.from_dlpack(pb_utils.get_input_tensor_by_name(r, self.input_name)) for r in requests]
        try:
            if self.dynamic:
                outputs = self.runner.infer(np.ascontiguousarray(np.concatenate(batches, axis=0)))
                per_request, start = [], 0
                for batch in batches:
                    per_request.append([o[start:start + batch.shape[0]] for o in outputs])
                    start += batch.shape[0]
            else:
                handles = [self.runner.submit(np.ascontiguousarray(batches[i][row:row + 1]))
                           for i, row in split_rows(batches)]
                rows = [h.result() for h in handles]
                per_request, start = [], 0
                for batch in batches:
                    chunk = rows[start:start + batch.shape[0]]
                    per_request.append([np.concatenate([r[k] for r in chunk], axis=0)
                                        for k in range(len(self.output_names))])
                    start += batch.shape[0]
        except Exception as exc:  # one line back to the client, as edgecsp's CLI would print it
            error = pb_utils.TritonError("edgecsp: {}".format(str(exc).splitlines()[0] if str(exc) else exc))
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        return [pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor.from_dlpack(n, np.ascontiguousarray(o).__dlpack__())
            for n, o in zip(self.output_names, outs)]) for outs in per_request]

    def finalize(self):
        runner = getattr(self, "runner", None)
        if runner is not None:
            runner.__exit__(None, None, None)
