"""Every ONNX Runtime session is built with spinning off and the thread counts asked for."""

from __future__ import annotations

import pytest

from parley.onnx import inference_session, session_options
from parley.providers.assets import silero_vad_onnx


def test_options_turn_spinning_off_and_set_threads() -> None:
    options = session_options(intra_op_threads=2, inter_op_threads=1)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (2, 1)


def test_a_loaded_session_keeps_those_options() -> None:
    session = inference_session(silero_vad_onnx(), intra_op_threads=1)
    options = session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.intra_op_num_threads == 1
    assert session.get_providers() == ["CPUExecutionProvider"]


def test_zero_threads_is_refused() -> None:
    # 0 would mean "one per core" to ONNX Runtime: exactly what we must not get by accident.
    with pytest.raises(ValueError):
        session_options(intra_op_threads=0)
