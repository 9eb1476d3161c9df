"""all-MiniLM-L6-v2 (int8 ONNX) with its WordPiece tokenizer: about 5 ms for a short sentence here."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from parley.onnx import inference_session
from parley.providers.embeddings.base import Vectors

MAX_TOKENS = 128
"""Facts and questions are short; longer text is cut (the model was trained on up to 128 tokens)."""


class MiniLMEmbedder:
    """Mean-pooled, normalized sentence vectors, as sentence-transformers computes them for this model."""

    name = "all-MiniLM-L6-v2-int8"

    def __init__(self, model_path: Path, tokenizer_path: Path, threads: int = 1) -> None:
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.enable_padding()
        self._session = inference_session(str(model_path), intra_op_threads=threads)
        self._lock = threading.Lock()  # the tokenizer's padding settings are per object

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, 384), np.float32)
        with self._lock:
            encoded = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encoded], np.int64)
        mask = np.array([e.attention_mask for e in encoded], np.int64)
        hidden = self._session.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        )[0]
        pooled = (hidden * mask[..., None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        vectors: Vectors = (pooled / np.maximum(norms, 1e-9)).astype(np.float32)
        return vectors
