"""The one way both model wrappers (detector, classifier) open an ONNX model: ONNX Runtime on the CPU."""
from __future__ import annotations

import onnxruntime as ort

from facemask.core.errors import ModelError


def load_session(model: str | bytes, source: str, num_threads: int | None = None,
                 what: str = "detector model") -> ort.InferenceSession:
    """An ONNX Runtime CPU session with num_threads intra-op threads (None or 0: ONNX Runtime's choice); a file that
    is not a loadable graph is a one-line ModelError."""
    options = ort.SessionOptions()
    if num_threads:
        options.intra_op_num_threads = num_threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # CenterFace lists its weights as graph inputs: one warning per weight otherwise
    try:
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # ORT raises its own exception types for unreadable or invalid graphs
        raise ModelError(f"cannot load {what} {source}: {error}") from None
