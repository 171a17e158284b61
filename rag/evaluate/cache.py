"""Evaluation indexes, built once per (corpus, embedding model, chunking) and
reused while none of these change.

The folder is ``<cache>/<dataset>-<hash>``; a marker file written after a
complete build holds the hash, so a crashed build is redone. Builds happen in
a private sibling folder that is renamed into place, so two runs never see a
half-built index."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rag
from rag.evaluate.errors import EvalIndexError
from rag.evaluate.memo import MemoIndex, QueryMemo
from rag.settings import Settings, cache_home

log = logging.getLogger(__name__)

MARKER = "eval-corpus.json"
#: Bump when the way adapters build their corpus changes meaning.
FORMAT = 1
#: The code that decides what an index holds (chunking, cleaning, vectors, file
#: format): an edit there makes cached evaluation indexes stale.
INDEX_CODE = ("chunk.py", "index.py", "ingest", "store", "embed", "stories.py")
#: The settings that change what an index holds.
INDEX_SETTINGS = ("embed_model", "embed_backend", "query_prefix", "passage_prefix", "chunk_tokens",
                  "chunk_overlap", "exact_search_limit", "hnsw_limit", "languages", "onnx_precision")


def default_cache_dir() -> Path:
    return cache_home() / "eval"


def corpus_key(articles: list[dict[str, Any]], settings: Settings) -> str:
    """A hash of the corpus and of every setting that shapes the index."""
    payload = {"format": FORMAT, "rag": rag.__version__, "code": code_digest(), "articles": articles,
               "settings": {name: getattr(settings, name) for name in INDEX_SETTINGS}}
    blob = json.dumps(payload, ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def code_digest() -> str:
    """A hash of the source files listed in INDEX_CODE."""
    package = Path(rag.__file__).parent
    digest = hashlib.sha256()
    for name in INDEX_CODE:
        path = package / name
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            if file.is_file():
                digest.update(str(file.relative_to(package)).encode())
                digest.update(file.read_bytes())
    return digest.hexdigest()


def variant_key(settings: Settings) -> str:
    """A hash of the index settings alone: indexes of one dataset with the same
    variant but another corpus or code are stale versions of each other."""
    blob = json.dumps({name: getattr(settings, name) for name in INDEX_SETTINGS}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _prune(folder: Path, variant: str) -> None:
    """Remove older builds of the same dataset and variant (kept: other chunk sizes, models)."""
    dataset = folder.name.rsplit("-", 1)[0]
    for other in folder.parent.glob(f"{dataset}-*"):
        if other == folder or ".tmp-" in other.name or other.name.rsplit("-", 1)[0] != dataset:
            continue
        try:
            meta = json.loads((other / MARKER).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if meta.get("variant") == variant:
            log.info("removing stale evaluation index %s", other)
            shutil.rmtree(other, ignore_errors=True)


@dataclass
class EvalIndex:
    index: MemoIndex
    folder: Path
    reused: bool
    seconds: float
    articles: int
    chunks: int
    #: Ids the index refused as exact duplicates -> the id it kept instead.
    aliases: dict[str, str] = field(default_factory=dict)

    def info(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "reused": self.reused, "build_seconds": round(self.seconds, 2),
                "articles": self.articles, "chunks": self.chunks, "duplicates": len(self.aliases)}


def open_eval_index(dataset: str, articles: list[dict[str, Any]], settings: Settings, cache_dir: Path, *,
                    rebuild: bool = False, memo: QueryMemo | None = None) -> EvalIndex:
    """The index of ``articles`` under ``cache_dir``: reused when complete and
    current, else (re)built. Its searches remember query vectors in ``memo``."""
    start = time.perf_counter()
    key = corpus_key(articles, settings)
    folder = cache_dir / f"{dataset}-{key[:16]}"
    memo = {} if memo is None else memo
    if not rebuild:
        found = _reuse(folder, key, settings, memo)
        if found is not None:
            index, meta = found
            log.info("reusing evaluation index %s", folder)
            return EvalIndex(index, folder, True, time.perf_counter() - start, meta["articles"], meta["chunks"],
                             meta.get("aliases", {}))
    return _build(folder, key, articles, settings, start, memo)


def _reuse(folder: Path, key: str, settings: Settings, memo: QueryMemo) -> tuple[MemoIndex, dict[str, Any]] | None:
    marker = folder / MARKER
    if not marker.is_file():
        return None
    try:
        meta = json.loads(marker.read_text(encoding="utf-8"))
        if meta.get("key") != key:
            return None
        index = MemoIndex(folder, settings.replace(index_dir=folder), memo)
        if index.stats().articles != meta["articles"]:
            raise EvalIndexError("article count differs from the marker")
        return index, meta
    except (OSError, ValueError, KeyError, rag.RagError) as exc:
        log.warning("cached evaluation index %s is unusable (%s); rebuilding it", folder, exc)
        return None


def _build(folder: Path, key: str, articles: list[dict[str, Any]], settings: Settings, start: float,
           memo: QueryMemo) -> EvalIndex:
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    log.info("building evaluation index %s (%d articles)", folder, len(articles))
    try:
        index = rag.open_index(work, settings.replace(index_dir=work))
        report = index.add_articles(articles)
        if report.failed:
            reasons = "; ".join(f"{f.path}: {f.reason}" for f in report.failed[:5])
            raise EvalIndexError(f"{len(report.failed)} of {len(articles)} evaluation articles could not be "
                                 f"indexed ({reasons})")
        aliases = {d.article_id: d.existing_id for d in report.duplicates}
        stats = index.stats()
        meta = {"key": key, "variant": variant_key(settings), "articles": stats.articles,
                "chunks": stats.chunks, "aliases": aliases, "built": time.strftime("%Y-%m-%dT%H:%M:%S")}
        (work / MARKER).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        index.close()
        shutil.rmtree(folder, ignore_errors=True)  # stale or incomplete: it had no current marker
        try:
            work.rename(folder)
        except OSError:  # another run finished the same build first: use that one
            log.info("evaluation index %s appeared meanwhile; using it", folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _prune(folder, meta["variant"])
    index = MemoIndex(folder, settings.replace(index_dir=folder), memo)
    return EvalIndex(index, folder, False, time.perf_counter() - start, meta["articles"], meta["chunks"], aliases)
