"""``NewsIndex``: the public face of an index folder.

ingest -> chunk -> embed -> store happens in ``ingest``/``add_articles``;
``search`` embeds the question and asks the current generation."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rag.embed import Embedder, index_model_id, load_embedder, mismatch_hint, settle
from rag.errors import (ArticleNotFoundError, IndexFolderError, IndexNotFoundError,
                        InvalidQueryError, ModelMismatchError)
from rag.ingest.articles import detect_query_language
from rag.ingest.fetch import FetchLimits, looks_like_url
from rag.ingest.readers import Record, iter_files, read_file, renamed
from rag.ingest.web import read_url
from rag.news import Article, ArticleSummary, DeleteReport, Failure, Filters, Hit, IndexStats, IngestReport
from rag.retrieve import Retrieval, RetrievalOptions, retrieve
from rag.settings import Settings
from rag.pipeline import Ingest, ProgressCallback, ReportBuilder, progress_bar
from rag.pipeline_ray import ingest_on_ray
from rag.store.base import Reader, Store
from rag.store.manifest import FORMAT_VERSION, MANIFEST, Manifest
from rag.store.migrate import copy_index
from rag.store.stores import milvus_target, open_store

log = logging.getLogger(__name__)



def open_index(path: str | os.PathLike[str] | None = None, settings: Settings | None = None,
               *, create: bool = True) -> NewsIndex:
    """Open (or create) the index folder ``path`` (default: settings.index_dir)."""
    settings = settings or Settings.from_env()
    return NewsIndex(Path(path) if path is not None else settings.index_dir, settings, create=create)


class NewsIndex:
    """An index folder: articles in (``ingest``, ``add_articles``, ``delete``), passages out
    (``search``, ``retrieve``), and what it holds (``stats``, ``articles``, ``article``).
    Readers see whole generations; one process writes at a time. Open it with ``open_index``."""

    def __init__(self, folder: Path, settings: Settings, *, create: bool = True) -> None:
        self.folder = folder
        if folder.exists() and not folder.is_dir():
            raise IndexFolderError(f"{folder} is a file, not an index folder; give a folder with --index "
                                   f"or RAG_INDEX (it is created if missing)")
        #: Where the chunks live (RAG_STORE for a new index; an existing one keeps its own).
        self.store: Store = open_store(folder, settings)
        manifest = self.store.manifest()
        # RAG_ONNX_PRECISION=auto keeps an existing index's precision (an index built on torch stays fp32).
        self.settings = settings = settle(settings, manifest.embed_model if manifest else None)
        if manifest is None and not create:
            raise IndexNotFoundError(f"no index in {folder} (expected {folder / MANIFEST}); "
                                     f"build one with 'rag ingest PATH --index {folder}'")
        if manifest is not None and manifest.embed_model != index_model_id(settings):
            raise ModelMismatchError(
                f"index {folder} was built with embedding model {manifest.embed_model!r} "
                f"(dim {manifest.dim}), but the configured model is {index_model_id(settings)!r}; "
                f"{mismatch_hint(manifest.embed_model, settings)}")
        self._snapshot: Reader | None = None
        self._manifest_stamp: object = None
        self._lock = threading.Lock()

    # ---- reading ----
    @property
    def embedder(self) -> Embedder:
        """The configured embedding model (loaded once per process), checked against the index."""
        embedder = load_embedder(self.settings)
        manifest = self._current_manifest()
        if manifest is not None and manifest.dim != embedder.dim:
            raise ModelMismatchError(f"index {self.folder} holds {manifest.dim}-d vectors but model "
                                     f"{embedder.model_id!r} makes {embedder.dim}-d ones")
        return embedder

    def snapshot(self) -> Reader | None:
        """The current generation (reopened when another process published one)."""
        with self._lock:
            stamp = self.store.stamp()
            if stamp is None:
                return None
            if self._snapshot is None or stamp != self._manifest_stamp:
                self._snapshot = self.store.snapshot()
                self._manifest_stamp = stamp
            return self._snapshot

    def _current_manifest(self) -> Manifest | None:
        snap = self.snapshot()
        return snap.manifest if snap else None

    def search(self, query: str, k: int = 5, filters: Filters | dict[str, Any] | None = None, *,
               mode: str = "hybrid", **options: Any) -> list[Hit]:
        """The k best chunks for ``query``, best first.

        ``mode``: "hybrid" (dense + BM25), "dense" or "sparse". Further
        options are those of ``rag.retrieve.RetrievalOptions``; by default a
        search returns raw chunks (no per-article cap, no merging, no dates
        read from the query, no timeline ordering)."""
        defaults: dict[str, Any] = {"max_per_article": None, "merge_neighbours": False, "time_intent": False,
                                    "timeline": False}
        return list(self.retrieve(query, k, filters, mode=mode, **(defaults | options)).hits)

    def retrieve(self, query: str, k: int = 5, filters: Filters | dict[str, Any] | None = None, *,
                 mode: str = "hybrid", **options: Any) -> Retrieval:
        """Like ``search`` with answer-oriented defaults (diverse, merged passages,
        dates in the question applied), plus what was inferred on the way."""
        if not isinstance(query, str) or not query.strip():
            raise InvalidQueryError("the query is empty")
        if not isinstance(k, int) or isinstance(k, bool):
            raise InvalidQueryError(f"k must be an integer, got {k!r}")
        options.setdefault("group_stories", self.settings.group_stories)
        try:
            opts = RetrievalOptions(k=k, mode=mode, filters=Filters.parse(filters), **options)
        except TypeError as exc:
            raise InvalidQueryError(f"unknown search option: {exc}") from None
        snap = self.snapshot()
        if snap is None or snap.manifest.chunks == 0:
            return Retrieval(())
        # Lone surrogates (undecodable bytes from a terminal) cannot reach the tokenizers.
        query = query.strip().encode("utf-8", "replace").decode("utf-8")
        return retrieve(snap, self.embedder, query, opts, detect_query_language(query, self.settings.languages))

    def stats(self) -> IndexStats:
        """Counts, model, dates, publishers and languages of the current generation."""
        snap = self.snapshot()
        if snap is None:
            return IndexStats(index=str(self.folder), embedding_model=index_model_id(self.settings))
        m = snap.manifest
        first, last = snap.catalog.date_range()
        return IndexStats(
            index=str(self.folder), embedding_model=m.embed_model, dim=m.dim, articles=m.articles, chunks=m.chunks,
            vector_index=m.vector_index, generation=m.generation, created=m.created, updated=m.updated,
            chunk_tokens=m.chunk_tokens, chunk_overlap=m.chunk_overlap, sources=dict(snap.catalog.sources()),
            languages=dict(snap.catalog.languages()), published_from=first, published_to=last,
            size_bytes=sum(m.file_sizes.values()), format_version=m.format_version, rag_version=m.rag_version)

    def articles(self, limit: int | None = None, offset: int = 0) -> list[ArticleSummary]:
        """The indexed articles, newest first (``limit``/``offset`` page through them)."""
        snap = self.snapshot()
        return snap.catalog.articles(limit, offset) if snap else []

    def article(self, article_id: str) -> Article:
        """One indexed article, whole; ArticleNotFoundError when the id is unknown."""
        snap = self.snapshot()
        found = snap.catalog.article(article_id) if snap else None
        if found is None:
            raise ArticleNotFoundError(f"no article with id {article_id!r} in {self.folder}")
        return found

    # ---- writing ----
    def ingest(self, paths: Iterable[str | os.PathLike[str]], progress: ProgressCallback | None = None,
               names: dict[str, str] | None = None, *, ray: str | bool | None = None,
               ray_actors: int | None = None) -> IngestReport:
        """Index files and folders, and http(s) URLs of article pages or RSS/Atom feeds (each
        entry of a feed is an article). Bad inputs are reported, never fatal.

        ``names`` maps a file path to the name to record and report instead
        (an upload's original name rather than its temporary path); a file's
        article id derives from it, so re-uploading an edited file updates it.

        ``ray``: read, chunk and embed on Ray (``rag.pipeline_ray``; needs
        ``pip install 'rag-news[ray]'``): True for $RAY_ADDRESS or else a local
        Ray, or the address of the cluster this machine is a node of ("auto", "host:6379");
        ``ray_actors`` embedding actors (default: the cluster's CPUs but one).
        The result is the same as without it."""
        report = ReportBuilder()
        paths = list(paths)
        urls = [str(p).strip() for p in paths if looks_like_url(p)]  # http(s) pages and feeds
        paths = [p for p in paths if not looks_like_url(p)]
        files: list[Path] = []
        for item in iter_files(paths):
            if isinstance(item, Failure):
                report.failed.append(item)
            elif isinstance(item, tuple):
                report.skipped.append(item[1])
            else:
                files.append(item)
        if ray is not None and ray is not False:
            ingest_on_ray(self._pipeline(progress), files, urls, report, None if ray is True else str(ray), names,
                          ray_actors, progress)
            return report.build()
        max_bytes = int(self.settings.max_file_mb * 1_000_000)

        def records() -> Iterator[Record | Failure]:
            total = len(files) + len(urls)
            bar = progress_bar(self.settings, "Reading", total, "file")
            for n, path in enumerate(files, 1):
                name = (names or {}).get(str(path))
                for item in read_file(path, max_bytes):
                    yield renamed(item, str(path), name) if name else item
                bar(n)
                if progress:
                    progress("reading", n, total)
            limits = FetchLimits(max_bytes=max_bytes)
            for n, url in enumerate(urls, len(files) + 1):
                yield from read_url(url, limits)
                bar(n)
                if progress:
                    progress("reading", n, total)
            bar(None)

        self._pipeline(progress).run(records(), report)
        return report.build()

    def add_articles(self, items: Iterable[dict[str, Any]], progress: ProgressCallback | None = None) -> IngestReport:
        """Index articles given as dicts (fields as in a JSONL export)."""
        def records() -> Iterator[Record | Failure]:
            for n, item in enumerate(items, 1):
                if not isinstance(item, dict):
                    yield Failure(f"item {n}", f"expected a dict, got {type(item).__name__}")
                else:
                    yield Record(item, f"item {n}", f"item {n}", single_file=False)
        report = ReportBuilder()
        self._pipeline(progress).run(records(), report)
        return report.build()

    def add_records(self, records: Iterable[Record | Failure],
                    progress: ProgressCallback | None = None) -> IngestReport:
        """Index records read elsewhere (``rag.feeds`` reads them from feeds it polls)."""
        report = ReportBuilder()
        self._pipeline(progress).run(iter(records), report)
        return report.build()

    def delete(self, article_ids: str | Iterable[str]) -> DeleteReport:
        """Remove articles and their chunks, all in one new generation. Ids not in the
        index are reported as ``missing``, not an error, so a killed delete can be re-run."""
        wanted = list(dict.fromkeys([article_ids] if isinstance(article_ids, str) else article_ids))
        if not all(isinstance(i, str) for i in wanted):
            raise InvalidQueryError("article ids must be strings")
        with self.store.lock(self.settings.lock_timeout):
            base = self._fresh_snapshot()
            present = set(base.catalog.hashes(wanted)) if base is not None else set()
            deleted = tuple(i for i in wanted if i in present)
            report = DeleteReport(deleted, tuple(i for i in wanted if i not in present))
            if not deleted:
                return report
            s = self.settings
            with self.store.writer(base, index_model_id(s), base.manifest.dim, s.chunk_tokens,
                                   s.chunk_overlap, s.exact_search_limit) as writer:
                writer.remove(list(deleted))
                writer.publish()
        self._fresh_snapshot()
        return report

    def upgrade(self) -> bool:
        """Rewrite an index written in an older format (the manifest's ``format_version``) as
        the current one, with the same articles, chunks and vectors. False: nothing to do."""
        with self.store.lock(self.settings.lock_timeout):
            base = self._fresh_snapshot()
            if base is None or (base.manifest.format_version == FORMAT_VERSION and base.sparse_is_current):
                return False
            log.info("upgrading %s from format %d to %d", self.folder, base.manifest.format_version, FORMAT_VERSION)
            s = self.settings
            with self.store.writer(base, base.manifest.embed_model, base.manifest.dim,
                                   base.manifest.chunk_tokens, base.manifest.chunk_overlap,
                                   s.exact_search_limit) as writer:
                writer.publish()
        self._fresh_snapshot()
        return True

    def migrate(self, to: str, into: str | os.PathLike[str] | None = None) -> NewsIndex:
        """Copy this FAISS index into a Milvus store (``to``: milvus://HOST:PORT[/DB], milvus:PATH or
        milvus) as the new index folder ``into`` (default: this folder's name + "-milvus"), without
        embedding anything again. Returns the new index; this one is left as it is."""
        settings = milvus_target(to, self.settings)
        folder = Path(into) if into is not None else self.folder.with_name(self.folder.name + "-milvus")
        if self.store.name == "faiss" and self.upgrade():  # the copy reads the current catalog schema
            log.warning("%s was written in an older format: upgraded it in place first (as 'rag upgrade' does)",
                        self.folder)
        base = self._fresh_snapshot()
        if base is None:
            raise IndexNotFoundError(f"no index in {self.folder} to migrate")
        copy_index(base, open_store(folder, settings), settings.exact_search_limit)  # type: ignore[arg-type]
        return NewsIndex(folder, settings)

    def _fresh_snapshot(self) -> Reader | None:
        self._manifest_stamp = None  # force a re-read: another writer may have published
        return self.snapshot()

    def _pipeline(self, progress: ProgressCallback | None) -> Ingest:
        return Ingest(self.folder, self.settings, self._fresh_snapshot, lambda: self.embedder, progress,
                      store=self.store)

    def close(self) -> None:
        """Close the current generation's files (the index can be opened again)."""
        with self._lock:
            if self._snapshot is not None:
                self._snapshot.close()
                self._snapshot = None
            self.store.close()
