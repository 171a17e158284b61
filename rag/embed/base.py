"""The embedder protocol. A backend is one file with one class; BACKENDS in
``rag.embed`` maps a name to it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """Turns text into L2-normalised float32 vectors."""

    #: Stored in the index manifest; another id means another vector space.
    model_id: str
    dim: int
    #: Longest input in model tokens; chunks are sized below it.
    max_tokens: int

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, rows normalised; passage prompt applied."""
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """(dim,) float32, normalised; query prompt applied."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Model tokens per text, without special tokens or prompts."""
        ...


class PromptedEmbedder:
    """The two embedding calls of a backend that puts a query or passage prompt before the
    text: it provides ``_encode(texts, prompt)``, ``dim`` and the two prompts."""

    dim: int
    _query_prefix: str
    _passage_prefix: str

    def _encode(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        raise NotImplementedError

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._encode(texts, self._passage_prefix)

    def embed_query(self, text: str) -> np.ndarray:
        return self._encode([text], self._query_prefix)[0]
