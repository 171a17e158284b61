"""Run one dataset: build (or reuse) an index per chunk size, then score every
retrieval mode, with and without each reranker, on it."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rag
from rag.embed import index_model_id
from rag.evaluate.base import Adapter, EvalOptions, RunResult, RunSpec
from rag.evaluate.cache import default_cache_dir, open_eval_index
from rag.evaluate.errors import DatasetNotFoundError, EvalError
from rag.evaluate.memo import MemoIndex, QueryMemo
from rag.evaluate.multihop import MultiHopRAG
from rag.evaluate.rgb import RGB
from rag.evaluate.xquad import XQuAD
from rag.settings import Settings

log = logging.getLogger(__name__)

ADAPTERS: dict[str, type[Adapter]] = {a.name: a for a in (XQuAD, MultiHopRAG, RGB)}


@dataclass
class Report:
    dataset: str
    title: str
    data_dir: Path
    settings: dict[str, Any]
    counts: dict[str, int]
    columns: tuple[tuple[str, str], ...]
    type_columns: tuple[tuple[str, str], ...]
    runs: list[RunResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: Embedding the questions once for all runs (the runs' own times exclude it).
    query_seconds: float = 0.0
    #: 1-minute load average at the start and the end: other work on the machine skews the times.
    load: tuple[float, float] = (0.0, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "title": self.title, "data": str(self.data_dir), "settings": self.settings,
                "counts": self.counts, "runs": [r.to_dict() for r in self.runs], "notes": self.notes,
                "timings": {"total_seconds": round(self.seconds, 2),
                            "query_embedding_seconds": round(self.query_seconds, 2),
                            "loadavg_1m": [round(x, 2) for x in self.load], "cpu_count": os.cpu_count()}}


def datasets_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Where the shared datasets are: ``explicit`` (the datasets folder, or the
    folder holding ``datasets/``), else ``$RAG_SHARED/datasets``, else
    ``<repo>/../shared/datasets``."""
    if explicit:
        path = Path(explicit).expanduser()
        return path / "datasets" if (path / "datasets").is_dir() else path
    shared = os.environ.get("RAG_SHARED")
    if shared:
        return Path(shared).expanduser() / "datasets"
    repo = Path(rag.__file__).resolve().parent.parent
    for base in (repo, Path.cwd()):
        candidate = base.parent / "shared" / "datasets"
        if candidate.is_dir():
            return candidate
    return repo.parent / "shared" / "datasets"


def chunk_settings(settings: Settings, chunk_tokens: int | None) -> Settings:
    """The settings for an index of ``chunk_tokens`` (None: unchanged)."""
    if chunk_tokens is None:
        return settings
    return settings.replace(chunk_tokens=chunk_tokens, chunk_overlap=min(40, chunk_tokens // 4))


def plan(options: EvalOptions, settings: Settings) -> list[tuple[Settings, list[RunSpec]]]:
    """Per index (chunk size): the runs on it, plain modes first, then each reranker."""
    out = []
    for size in options.chunk_tokens or (None,):
        s = chunk_settings(settings, size)
        specs = [RunSpec(mode, s.chunk_tokens, s.chunk_overlap, reranker)
                 for reranker in (None, *options.rerankers) for mode in options.modes]
        out.append((s, specs))
    return out


def run_eval(dataset: str, settings: Settings, options: EvalOptions,
             data: str | os.PathLike[str] | None = None) -> Report:
    if dataset not in ADAPTERS:
        raise DatasetNotFoundError(f"unknown dataset {dataset!r}; choose one of {', '.join(ADAPTERS)}")
    start, load = time.perf_counter(), _load()
    root = datasets_dir(data)
    adapter = ADAPTERS[dataset](root, settings, options)
    runs = plan(options, settings)  # settings errors (bad chunk sizes) before any work
    articles = adapter.articles()
    cache = options.cache_dir or default_cache_dir()
    report = Report(dataset, adapter.title, adapter.root, _settings_used(settings, options, adapter, cache),
                    adapter.counts(), adapter.columns, adapter.type_columns)
    memo: QueryMemo = {}
    for index_settings, specs in runs:
        built = open_eval_index(dataset, articles, index_settings, cache, rebuild=options.rebuild, memo=memo)
        if built.aliases:
            log.warning("%d evaluation articles were merged as duplicates by the index", len(built.aliases))
        try:
            if not memo:
                report.query_seconds = embed_queries(built.index, adapter)
            for spec in specs:
                run_start = time.perf_counter()
                try:
                    result = adapter.evaluate(built.index, spec)
                except OSError as exc:  # what sentence-transformers raises for a model it cannot find
                    if spec.reranker is None:
                        raise
                    raise EvalError(f"cannot load the reranker {spec.reranker!r}: {exc}") from None
                result.index = built.info()
                result.timings["total_seconds"] = time.perf_counter() - run_start
                report.runs.append(result)
        finally:
            built.index.close()
    report.notes = adapter.notes()
    report.seconds = time.perf_counter() - start
    report.load = (load, _load())
    return report


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # not available on this platform
        return 0.0


def embed_queries(index: MemoIndex, adapter: Adapter) -> float:
    """Embed every question once (into the index's memo); returns the seconds
    it took, without loading the model."""
    embedder = index.embedder
    embedder.embed_query("warm-up")  # loads the model if the index was reused
    start = time.perf_counter()
    for text in adapter.bar(adapter.queries(), "embedding questions"):
        embedder.embed_query(text.strip())  # as NewsIndex.retrieve and rag.answer pass it
    return time.perf_counter() - start


def _llm_model(settings: Settings, generator: str | None) -> str | None:
    """The model that writes the answers, for the report."""
    if generator == "local":
        from rag.generate.bundled_llm import MODEL_NAME

        return Path(settings.local_model).name if settings.local_model else MODEL_NAME
    return settings.llm_model if generator not in (None, "extractive") else None


def _settings_used(settings: Settings, options: EvalOptions, adapter: Adapter, cache: Path) -> dict[str, Any]:
    generator = adapter.generator if options.answers else None
    return {
        "embed_model": settings.embed_model, "embed_backend": settings.embed_backend,
        "index_model_id": index_model_id(settings),
        "chunk_tokens": [s.chunk_tokens for s, _ in plan(options, settings)],
        "chunk_overlap": [s.chunk_overlap for s, _ in plan(options, settings)],
        "modes": list(options.modes), "rerankers": list(options.rerankers),
        "answers": options.answers, "generator": generator,
        "min_similarity": getattr(settings, "min_similarity", None),
        "llm_model": _llm_model(settings, generator),
        "answer_k": options.answer_k, "limit": options.limit, "cache": str(cache),
    }
