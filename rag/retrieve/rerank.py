"""Optional cross-encoder reranking (none ships offline; any sentence-transformers
CrossEncoder name or path). Each model is loaded once per process, under a lock, so two
UI requests do not load it twice."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import numpy as np

from rag.errors import InvalidQueryError
from rag.news import Hit

_lock = threading.Lock()
_rerankers: dict[str, Any] = {}


def rerank(model: str, question: str, hits: list[Hit]) -> list[Hit]:
    """Reorder by a cross-encoder's relevance score (kept in ``score``)."""
    if not hits:
        return hits
    from sentence_transformers import CrossEncoder

    with _lock:
        if model not in _rerankers:
            try:
                _rerankers[model] = CrossEncoder(model, device="cpu")
            except (OSError, ValueError) as exc:  # not a model folder, not on the hub, offline, ...
                raise InvalidQueryError(f"cannot load the reranker {model!r}: give a sentence-transformers "
                                        f"CrossEncoder name or folder ({type(exc).__name__})") from None
        encoder = _rerankers[model]
    scores = np.asarray(encoder.predict([(question, h.text) for h in hits]), dtype=np.float32)
    order = np.argsort(-scores, kind="stable")
    return [dataclasses.replace(hits[i], score=float(scores[i])) for i in order]
