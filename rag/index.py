"""``NewsIndex``: the public face of an index folder.

ingest -> chunk -> embed -> store happens in ``ingest``/``add_articles``;
``search`` embeds the question and asks the current generation."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from rag.chunk import chunk_article
from rag.embed import Embedder, load_embedder
from rag.errors import (ArticleNotFoundError, IndexCorruptError, IndexNotFoundError, InvalidQueryError,
                        ModelMismatchError)
from rag.ingest.articles import detect_query_language, to_article
from rag.ingest.readers import Record, iter_files, read_file
from rag.news import Article, Chunk, Duplicate, Failure, Hit, IngestReport
from rag.retrieve import Retrieval, RetrievalOptions, retrieve
from rag.settings import Settings
from rag.store.catalog import Filters
from rag.store.generation import GenerationWriter, Snapshot
from rag.store.lock import WriteLock
from rag.store.manifest import MANIFEST, Manifest, read_manifest

log = logging.getLogger(__name__)

#: (stage, done, total) -> None; stages: "reading", "embedding", "writing".
ProgressCallback = Callable[[str, int, int], None]
_EMBED_SLICE = 64


def open_index(path: str | os.PathLike[str] | None = None, settings: Settings | None = None,
               *, create: bool = True) -> NewsIndex:
    """Open (or create) the index folder ``path`` (default: settings.index_dir)."""
    settings = settings or Settings.from_env()
    return NewsIndex(Path(path) if path is not None else settings.index_dir, settings, create=create)


class NewsIndex:
    def __init__(self, folder: Path, settings: Settings, *, create: bool = True) -> None:
        self.folder = folder
        self.settings = settings
        manifest = read_manifest(folder) if folder.is_dir() else None
        if manifest is None and not create:
            raise IndexNotFoundError(f"no index in {folder} (expected {folder / MANIFEST}); "
                                     f"build one with 'rag ingest PATH --index {folder}'")
        if manifest is not None and manifest.embed_model != settings.embed_model:
            raise ModelMismatchError(
                f"index {folder} was built with embedding model {manifest.embed_model!r} "
                f"(dim {manifest.dim}), but the configured model is {settings.embed_model!r}; "
                f"set RAG_EMBED_MODEL={manifest.embed_model} or use another index folder")
        self._snapshot: Snapshot | None = None
        self._manifest_stamp: tuple[int, int, int] | None = None
        self._lock = threading.Lock()

    # ---- reading ----
    @property
    def embedder(self) -> Embedder:
        embedder = load_embedder(self.settings)
        manifest = self._current_manifest()
        if manifest is not None and manifest.dim != embedder.dim:
            raise ModelMismatchError(f"index {self.folder} holds {manifest.dim}-d vectors but model "
                                     f"{embedder.model_id!r} makes {embedder.dim}-d ones")
        return embedder

    def snapshot(self) -> Snapshot | None:
        """The current generation (reopened when another process published one)."""
        with self._lock:
            try:
                st = (self.folder / MANIFEST).stat()
                stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                return None
            if self._snapshot is None or stamp != self._manifest_stamp:
                self._snapshot = self._open_snapshot()
                self._manifest_stamp = stamp
            return self._snapshot

    def _open_snapshot(self) -> Snapshot | None:
        for _attempt in range(5):
            manifest = read_manifest(self.folder)
            if manifest is None:
                return None
            try:
                return Snapshot(self.folder, manifest)
            except FileNotFoundError:
                continue  # a writer published again and removed that generation; re-read
        raise IndexCorruptError(f"index {self.folder}: generation folder keeps disappearing")

    def _current_manifest(self) -> Manifest | None:
        snap = self.snapshot()
        return snap.manifest if snap else None

    def search(self, query: str, k: int = 5, filters: Filters | dict[str, Any] | None = None, *,
               mode: str = "hybrid", **options: Any) -> list[Hit]:
        """The k best chunks for ``query``, best first.

        ``mode``: "hybrid" (dense + BM25), "dense" or "sparse". Further
        options are those of ``rag.retrieve.RetrievalOptions``; by default a
        search returns raw chunks (no per-article cap, no merging, no dates
        read from the query)."""
        defaults: dict[str, Any] = {"max_per_article": None, "merge_neighbours": False, "time_intent": False}
        return list(self.retrieve(query, k, filters, mode=mode, **(defaults | options)).hits)

    def retrieve(self, query: str, k: int = 5, filters: Filters | dict[str, Any] | None = None, *,
                 mode: str = "hybrid", **options: Any) -> Retrieval:
        """Like ``search`` with answer-oriented defaults (diverse, merged passages,
        dates in the question applied), plus what was inferred on the way."""
        if not isinstance(query, str) or not query.strip():
            raise InvalidQueryError("the query is empty")
        if not isinstance(k, int) or isinstance(k, bool):
            raise InvalidQueryError(f"k must be an integer, got {k!r}")
        try:
            opts = RetrievalOptions(k=k, mode=mode, filters=Filters.parse(filters), **options)
        except TypeError as exc:
            raise InvalidQueryError(f"unknown search option: {exc}") from None
        snap = self.snapshot()
        if snap is None or snap.manifest.chunks == 0:
            return Retrieval(())
        query = query.strip()
        return retrieve(snap, self.embedder, query, opts, detect_query_language(query, self.settings.languages))

    def stats(self) -> dict[str, Any]:
        snap = self.snapshot()
        out: dict[str, Any] = {"index": str(self.folder), "embedding_model": self.settings.embed_model,
                               "articles": 0, "chunks": 0}
        if snap is None:
            return out
        m = snap.manifest
        first, last = snap.catalog.date_range()
        out.update({
            "embedding_model": m.embed_model, "dim": m.dim, "articles": m.articles, "chunks": m.chunks,
            "vector_index": m.vector_index, "generation": m.generation, "created": m.created,
            "updated": m.updated, "chunk_tokens": m.chunk_tokens, "chunk_overlap": m.chunk_overlap,
            "sources": dict(snap.catalog.sources()), "languages": dict(snap.catalog.languages()),
            "published_from": first, "published_to": last,
            "size_bytes": sum(m.file_sizes.values()),
        })
        return out

    def articles(self, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
        snap = self.snapshot()
        return snap.catalog.articles(limit, offset) if snap else []

    def article(self, article_id: str) -> dict[str, Any]:
        snap = self.snapshot()
        found = snap.catalog.article(article_id) if snap else None
        if found is None:
            raise ArticleNotFoundError(f"no article with id {article_id!r} in {self.folder}")
        return found

    # ---- writing ----
    def ingest(self, paths: Iterable[str | os.PathLike[str]], progress: ProgressCallback | None = None,
               names: dict[str, str] | None = None) -> IngestReport:
        """Index files and folders. Bad inputs are reported, never fatal.

        ``names`` maps a file path to the name to record and report instead
        (an upload's original name rather than its temporary path); a file's
        article id derives from it, so re-uploading an edited file updates it."""
        files: list[Path] = []
        early = IngestReport()
        for item in iter_files(paths):
            if isinstance(item, Failure):
                early = early.merge(IngestReport(failed=(item,)))
            elif isinstance(item, tuple):
                early = early.merge(IngestReport(skipped=(item[1],)))
            else:
                files.append(item)
        max_bytes = int(self.settings.max_file_mb * 1_000_000)

        def records() -> Iterator[Record | Failure]:
            bar = self._bar("Reading", len(files), "file")
            for n, path in enumerate(files, 1):
                name = (names or {}).get(str(path))
                for item in read_file(path, max_bytes):
                    yield _renamed(item, str(path), name) if name else item
                bar(n)
                if progress:
                    progress("reading", n, len(files))
            bar(None)

        return early.merge(self._ingest(records(), progress))

    def add_articles(self, items: Iterable[dict[str, Any]], progress: ProgressCallback | None = None) -> IngestReport:
        """Index articles given as dicts (fields as in a JSONL export)."""
        def records() -> Iterator[Record | Failure]:
            for n, item in enumerate(items, 1):
                if not isinstance(item, dict):
                    yield Failure(f"item {n}", f"expected a dict, got {type(item).__name__}")
                else:
                    yield Record(item, f"item {n}", f"item {n}", single_file=False)
        return self._ingest(records(), progress)

    def delete(self, article_id: str) -> None:
        """Remove an article and its chunks."""
        with WriteLock(self.folder, self.settings.lock_timeout):
            base = self._fresh_snapshot()
            if base is None or base.catalog.article(article_id) is None:
                raise ArticleNotFoundError(f"no article with id {article_id!r} in {self.folder}")
            writer = self._writer(base, base.manifest.dim)
            try:
                writer.remove([article_id])
                writer.publish()
            except BaseException:
                writer.abort()
                raise

    def _fresh_snapshot(self) -> Snapshot | None:
        self._manifest_stamp = None  # force a re-read: another writer may have published
        return self.snapshot()

    def _writer(self, base: Snapshot | None, dim: int) -> GenerationWriter:
        s = self.settings
        return GenerationWriter(self.folder, base, s.embed_model, dim, s.chunk_tokens, s.chunk_overlap,
                                s.exact_search_limit)

    def _ingest(self, records: Iterator[Record | Failure], progress: ProgressCallback | None) -> IngestReport:
        self.folder.mkdir(parents=True, exist_ok=True)
        report = IngestReport()
        with WriteLock(self.folder, self.settings.lock_timeout):
            batch: list[Article] = []
            for item in records:
                if isinstance(item, Failure):
                    report = report.merge(IngestReport(failed=(item,)))
                    continue
                article, failure, notes = to_article(item, self.settings.languages)
                report = report.merge(IngestReport(failed=(failure,) if failure else (), notes=tuple(notes)))
                if article is not None:
                    batch.append(article)
                if len(batch) >= self.settings.commit_every:
                    report = report.merge(self._commit(batch, progress))
                    batch = []
            if batch or self.snapshot() is None:
                report = report.merge(self._commit(batch, progress))
        return report

    def _commit(self, batch: list[Article], progress: ProgressCallback | None) -> IngestReport:
        """Write one batch of articles as a new generation."""
        base = self._fresh_snapshot()
        latest: dict[str, Article] = {}
        for article in batch:  # the same id twice in one run: the last one wins
            latest[article.id] = article
        known = base.catalog.hashes(list(latest)) if base else {}
        by_text = base.catalog.ids_by_text_hash([a.text_hash for a in latest.values()]) if base else {}
        added: list[Article] = []
        updated: list[Article] = []
        unchanged: list[str] = []
        duplicates: list[Duplicate] = []
        seen_text: dict[str, str] = {}
        for article in latest.values():
            if known.get(article.id) == article.content_hash:
                unchanged.append(article.id)
                continue
            owner = by_text.get(article.text_hash) or seen_text.get(article.text_hash)
            if owner is not None and owner != article.id:
                duplicates.append(Duplicate(article.origin or article.id, article.id, owner))
                continue
            seen_text[article.text_hash] = article.id
            (updated if article.id in known else added).append(article)

        todo = added + updated
        embedder = self.embedder
        chunks = self._chunk(todo, embedder)
        vectors = self._embed(todo, chunks, embedder, progress)
        if not todo and base is not None:
            return IngestReport(unchanged=tuple(unchanged), duplicates=tuple(duplicates))
        writer = self._writer(base, embedder.dim)
        try:
            if updated:
                writer.remove([a.id for a in updated])
            offset = 0
            for article, article_chunks in zip(todo, chunks):
                writer.add(article, article_chunks, vectors[offset:offset + len(article_chunks)])
                offset += len(article_chunks)
            if progress:
                progress("writing", 0, 1)
            writer.publish()
            if progress:
                progress("writing", 1, 1)
        except BaseException:
            writer.abort()
            raise
        self._fresh_snapshot()
        return IngestReport(added=tuple(a.id for a in added), updated=tuple(a.id for a in updated),
                            unchanged=tuple(unchanged), duplicates=tuple(duplicates),
                            chunks_added=sum(len(c) for c in chunks))

    def _chunk(self, articles: list[Article], embedder: Embedder) -> list[list[Chunk]]:
        # Leave room for the title line and the model's prompt inside its window.
        target = min(self.settings.chunk_tokens, max(16, embedder.max_tokens - 48))
        overlap = min(self.settings.chunk_overlap, target // 2)
        if target < self.settings.chunk_tokens:
            log.warning("RAG_CHUNK_TOKENS=%d exceeds what %s reads; using %d", self.settings.chunk_tokens,
                        embedder.model_id, target)
        return [chunk_article(a, embedder.count_tokens, target, overlap) for a in articles]

    def _embed(self, articles: list[Article], chunks: list[list[Chunk]], embedder: Embedder,
               progress: ProgressCallback | None) -> Any:
        import numpy as np

        texts = [embedding_text(a, c) for a, cs in zip(articles, chunks) for c in cs]
        if not texts:
            return np.zeros((0, embedder.dim), np.float32)
        # Sort by length so each batch pads little; restore order afterwards.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), embedder.dim), np.float32)
        bar = self._bar("Embedding", len(texts), "chunk")
        for start in range(0, len(order), _EMBED_SLICE):
            idx = order[start:start + _EMBED_SLICE]
            out[idx] = embedder.embed_documents([texts[i] for i in idx])
            done = min(start + _EMBED_SLICE, len(order))
            bar(done)
            if progress:
                progress("embedding", done, len(texts))
        bar(None)
        return out

    def _bar(self, desc: str, total: int, unit: str) -> Callable[[int | None], None]:
        """A tqdm bar on stderr when progress is on; call with n done, None to close."""
        show = self.settings.progress if self.settings.progress is not None else sys.stderr.isatty()
        if not show or total == 0:
            return lambda n: None
        from tqdm import tqdm

        bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False)

        def update(n: int | None) -> None:
            if n is None:
                bar.close()
            else:
                bar.update(n - bar.n)
        return update

    def close(self) -> None:
        with self._lock:
            if self._snapshot is not None:
                self._snapshot.close()
                self._snapshot = None


def _renamed(item: Record | Failure, path: str, name: str) -> Record | Failure:
    if isinstance(item, Failure):
        return Failure(name + item.path[len(path):], item.reason)
    return Record(item.fields, name + item.origin[len(path):], name, item.single_file, item.notes)


def embedding_text(article: Article, chunk: Chunk) -> str:
    """What gets embedded: the title travels with every chunk."""
    if article.title and not chunk.text.startswith(article.title):
        return f"{article.title}\n{chunk.text}"
    return chunk.text
