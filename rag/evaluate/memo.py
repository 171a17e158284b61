"""Query vectors computed once per evaluation.

Every run (retrieval mode, reranker, chunk size) and every answer asks the
same questions, and embedding a question is most of a search's time on a
CPU. ``MemoIndex`` is a ``NewsIndex`` whose embedder remembers query vectors
(a query is embedded alone, so the remembered vector is exactly the one a
new call would give). Document embedding is left alone."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rag.embed import Embedder
from rag.index import NewsIndex
from rag.settings import Settings

QueryMemo = dict[tuple[str, str], np.ndarray]


class MemoEmbedder:
    """``inner`` with ``embed_query`` remembered in ``memo`` (keyed by model and text)."""

    def __init__(self, inner: Embedder, memo: QueryMemo) -> None:
        self.inner = inner
        self.memo = memo
        self.model_id = inner.model_id
        self.dim = inner.dim
        self.max_tokens = inner.max_tokens

    def embed_query(self, text: str) -> np.ndarray:
        key = (self.model_id, text)
        vector = self.memo.get(key)
        if vector is None:
            vector = self.memo[key] = self.inner.embed_query(text)
        return vector.copy()

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed_documents(texts)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.inner.count_tokens(texts)


class MemoIndex(NewsIndex):
    """A ``NewsIndex`` whose searches and answers share one query memo."""

    def __init__(self, folder: str | os.PathLike[str], settings: Settings, memo: QueryMemo, *,
                 create: bool = False) -> None:
        super().__init__(Path(folder), settings, create=create)
        self.memo = memo

    @property
    def embedder(self) -> Embedder:
        return MemoEmbedder(super().embedder, self.memo)
