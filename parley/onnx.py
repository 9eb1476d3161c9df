"""ONNX Runtime sessions built the one way Parley wants them on a small CPU.

ONNX Runtime's worker threads spin while waiting for work by default. On a 2-core machine shared by
several models that spinning steals the cores the other models need and roughly triples latency, so every
session Parley creates turns it off and sets its thread counts on purpose.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import onnxruntime as ort

_CPU = ("CPUExecutionProvider",)


def session_options(intra_op_threads: int = 1, inter_op_threads: int = 1) -> ort.SessionOptions:
    """Options with spinning off, explicit thread counts and sequential execution."""
    if intra_op_threads < 1 or inter_op_threads < 1:
        raise ValueError(f"thread counts must be >= 1, got intra={intra_op_threads} inter={inter_op_threads}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Warnings about unused initializers and the like are noise for end users.
    options.log_severity_level = 3
    return options


def inference_session(
    model: str | os.PathLike[str] | bytes,
    intra_op_threads: int = 1,
    inter_op_threads: int = 1,
    providers: Sequence[str] = _CPU,
) -> ort.InferenceSession:
    """Load a model (path or serialized bytes) with :func:`session_options`."""
    source: str | bytes = model if isinstance(model, bytes) else os.fspath(model)
    return ort.InferenceSession(
        source,
        sess_options=session_options(intra_op_threads, inter_op_threads),
        providers=list(providers),
    )
