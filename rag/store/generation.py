"""Index generations: every change is written into a new ``gen-NNNNNN`` folder
beside the current one and published by atomically replacing manifest.json.
Readers hold a ``Snapshot`` of one generation and never see a half-written
index; a crashed writer leaves only an unpublished folder, removed next time.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.metadata
import logging
import os
import platform
import shutil
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from rag.errors import IndexCorruptError, IndexWriteError
from rag.news import Article, Chunk, Filters
from rag.store import vectors as vec
from rag.store.catalog import Catalog
from rag.store.grouping import regroup
from rag.store.manifest import Manifest, fsync_dir, now_iso, write_manifest
from rag.store.sparse import SPARSE_DIR, TOKENIZER_VERSION, SparseIndex
from rag.stories import StoryLSH

log = logging.getLogger(__name__)

CATALOG_FILE = "news.sqlite"
#: Filtered searches over at most this many chunks are done exactly in numpy.
EXACT_FILTER_LIMIT = 20_000


def gen_dir_name(generation: int) -> str:
    return f"gen-{generation:06d}"


class Snapshot:
    """A read-only view of one published generation.

    Everything a search needs is opened or loaded here, at once: a writer removes old
    generations after publishing, and on POSIX open files and maps survive that, so a
    reader holding a Snapshot never needs a file by name again."""

    def __init__(self, folder: Path, manifest: Manifest) -> None:
        self.folder = folder
        self.manifest = manifest
        self.data = folder / manifest.data_dir
        if not self.data.is_dir():
            raise FileNotFoundError(self.data)  # superseded between reading manifest and here
        for name, size in manifest.file_sizes.items():
            path = self.data / name
            actual = path.stat().st_size if path.exists() else -1
            if actual != size:
                raise IndexCorruptError(
                    f"{path} is {'missing' if actual < 0 else f'{actual} bytes'}, the manifest says {size} "
                    f"bytes: the index is damaged (restore it or rebuild with 'rag ingest')")
        self.catalog = Catalog(self.data / CATALOG_FILE, writable=False)
        self.vectors = vec.load_vectors(self.data, manifest.dim)
        self.index = vec.load_index(self.data)
        self._sparse_lock = threading.Lock()
        #: Whether the BM25 files were tokenised as today (else they are rebuilt in memory).
        self.sparse_is_current = SparseIndex.is_current(self.data)
        # Loaded now, not on first use: by then a writer may have removed this generation.
        # An index from an older tokenizer is rebuilt lazily from the (open) catalog instead.
        self._sparse: SparseIndex | None = SparseIndex.load(self.data) if self.sparse_is_current else None
        n_articles, n_chunks = self.catalog.counts()
        if not (self.index.ntotal == len(self.vectors.ids) == n_chunks == manifest.chunks
                and n_articles == manifest.articles):
            raise IndexCorruptError(
                f"index {folder} is inconsistent: manifest says {manifest.articles} articles / "
                f"{manifest.chunks} chunks, catalog has {n_articles} / {n_chunks}, FAISS has "
                f"{self.index.ntotal} vectors")

    def close(self) -> None:
        self.catalog.close()

    @property
    def sparse(self) -> SparseIndex:
        with self._sparse_lock:
            if self._sparse is None:
                # Written by an older rag with another tokenizer: its postings would not match
                # today's query tokens. Rebuild in memory; the next ingest writes it to disk.
                log.warning("%s: the BM25 index was written by an older version; re-tokenising %d chunks "
                            "in memory ('rag upgrade' or any 'rag ingest' stores the new one)", self.folder,
                            self.manifest.chunks)
                self._sparse = SparseIndex.build(self.catalog.chunk_texts())
            return self._sparse

    def allowed(self, filters: Filters | None) -> np.ndarray | None:
        if filters is None:
            return None
        return np.asarray(self.catalog.allowed_rowids(filters), dtype=np.int64)

    def dense(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """Top-k (rowid, cosine) by the FAISS index (exact in numpy for small filtered sets)."""
        if allowed is not None and (len(allowed) <= EXACT_FILTER_LIMIT or self.manifest.vector_index == "flat"):
            return vec.exact_search(self.vectors, query, k, allowed)
        return vec.search(self.index, query, k, allowed, self.vectors)

    def similarities(self, query: np.ndarray, rowids: Sequence[int]) -> dict[int, float]:
        """Cosine of the query with given chunks (for fusing sparse-only hits)."""
        if not len(rowids):
            return {}
        rows = self.vectors.rows(np.asarray(rowids, dtype=np.int64))
        scores = np.asarray(self.vectors.vectors[rows] @ query.astype(np.float32))
        return {int(self.vectors.ids[r]): float(s) for r, s in zip(rows, scores)}


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def build_info() -> dict[str, str]:
    """What a generation was written with, for the manifest (a person debugging an index
    copied from another machine wants to know)."""
    return {"python": platform.python_version(), "platform": platform.platform(terse=True),
            "faiss": _version("faiss-cpu"), "bm25s": _version("bm25s"),
            "bm25_tokenizer": str(TOKENIZER_VERSION)}


class GenerationWriter:
    """Builds the next generation from ``base`` (None for a new index). The caller holds the
    folder's WriteLock. Use it as a context manager: leaving the block without ``publish()``
    (an error, an interrupt) removes the unpublished generation, so readers never see it."""

    def __init__(self, folder: Path, base: Snapshot | None, embed_model: str, dim: int,
                 chunk_tokens: int, chunk_overlap: int, exact_limit: int, stories: StoryLSH | None = None,
                 hnsw_limit: int | None = None) -> None:
        self.folder = folder
        self.base = base
        #: The story LSH of an ingest's previous batch, reused when it is in step with ``base``.
        self.stories = stories
        self._removed: list[str] = []
        self._touched: set[str] = set()
        self.generation = (base.manifest.generation if base else 0) + 1
        self.data = folder / gen_dir_name(self.generation)
        self._meta = (embed_model, dim, chunk_tokens, chunk_overlap, exact_limit)
        #: Above this many chunks the index is IVF-PQ (None: never).
        self.hnsw_limit = hnsw_limit
        self._dropped: set[int] = set()
        self._new_vectors: list[np.ndarray] = []
        self._new_ids: list[int] = []
        self._published = False
        self.catalog: Catalog | None = None
        try:
            with write_errors(self.folder):
                if self.data.exists():  # left by a writer that crashed before publishing
                    shutil.rmtree(self.data)
                self.data.mkdir(parents=True)
                db_path = self.data / CATALOG_FILE
                if base is not None:
                    _copy_catalog(base.catalog.path, db_path)
                self.catalog = Catalog(db_path, writable=True)
        except BaseException:
            self.abort()
            raise

    def __enter__(self) -> GenerationWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._published:
            self.abort()

    @property
    def _db(self) -> Catalog:
        if self.catalog is None:
            raise RuntimeError("the generation writer is closed")
        return self.catalog

    def remove(self, article_ids: Sequence[str]) -> None:
        with write_errors(self.folder):
            self._touched.update(self._db.stories_of(article_ids).values())
            self._removed += article_ids
            self._dropped.update(self._db.chunk_rowids(article_ids))
            self._db.delete_articles(article_ids)

    def add(self, article: Article, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        with write_errors(self.folder):
            rowids = self._db.insert(article, chunks, now_iso())
        self._new_ids += rowids
        self._new_vectors.append(np.asarray(vectors, dtype=np.float32).reshape(len(rowids), -1))

    def publish(self) -> Manifest:
        with write_errors(self.folder):
            return self._publish()

    def _publish(self) -> Manifest:
        embed_model, dim, chunk_tokens, chunk_overlap, exact_limit = self._meta
        self.catalog = catalog = self._db
        self.stories = regroup(catalog, self.stories, self.base.manifest.generation if self.base else None,
                               self._removed, self._touched)
        catalog.commit()
        n_articles, n_chunks = catalog.counts()
        SparseIndex.build(catalog.chunk_texts()).save(self.data)
        catalog.close()
        self.catalog = None
        vset = self.base.vectors if self.base else vec.VectorSet.empty(dim)
        new = np.concatenate(self._new_vectors) if self._new_vectors else np.zeros((0, dim), np.float32)
        vset = vset.without(self._dropped).plus(new, np.asarray(self._new_ids, dtype=np.int64))
        if len(vset.ids) != n_chunks:
            raise IndexCorruptError(f"internal error: {len(vset.ids)} vectors for {n_chunks} chunks")
        vec.save_vectors(self.data, vset)
        kind = vec.choose_kind(len(vset.ids), exact_limit, self.hnsw_limit)
        index = None
        if kind == "ivfpq" and self.base is not None and self.base.manifest.vector_index == "ivfpq":
            index = vec.update_index(self.base.index, len(vset.ids), self._dropped, new,
                                     np.asarray(self._new_ids, dtype=np.int64))
        vec.save_index(self.data, index if index is not None else vec.build_index(vset, kind))
        sizes = {}
        for path in sorted(p for p in self.data.rglob("*") if p.is_file()):
            with path.open("rb") as fh:
                os.fsync(fh.fileno())
            sizes[path.relative_to(self.data).as_posix()] = path.stat().st_size
        fsync_dir(self.data / SPARSE_DIR)
        fsync_dir(self.data)
        now = now_iso()
        manifest = Manifest(
            embed_model=embed_model, dim=dim, generation=self.generation,
            data_dir=self.data.name, articles=n_articles, chunks=n_chunks, vector_index=kind,
            created=self.base.manifest.created if self.base else now, updated=now,
            chunk_tokens=chunk_tokens, chunk_overlap=chunk_overlap, file_sizes=sizes,
            rag_version=_version("rag-news"), build=build_info())
        write_manifest(self.folder, manifest)
        self._published = True
        if self.stories is not None:
            self.stories.generation = self.generation  # in step: the next batch's writer may reuse it
        log.info("published generation %d: %d articles, %d chunks (%s)", self.generation,
                 n_articles, n_chunks, kind)
        self._collect_garbage()
        return manifest

    def abort(self) -> None:
        try:
            if self.catalog is not None:
                self.catalog.close()
        except sqlite3.Error:
            pass
        self.catalog = None
        shutil.rmtree(self.data, ignore_errors=True)

    def _collect_garbage(self) -> None:
        """Keep this generation and the one before (a reader may still be
        opening it); remove older ones and any unpublished leftovers."""
        keep = {gen_dir_name(self.generation), gen_dir_name(self.generation - 1)}
        for child in self.folder.iterdir():
            if child.is_dir() and child.name.startswith("gen-") and child.name not in keep:
                shutil.rmtree(child, ignore_errors=True)


def _copy_catalog(source: Path, target: Path) -> None:
    src = sqlite3.connect(f"file:{source}?mode=ro&immutable=1", uri=True)
    try:
        dst = sqlite3.connect(target)
        try:
            with dst:
                src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@contextlib.contextmanager
def write_errors(folder: Path) -> Iterator[None]:
    """Turn the ways a write fails (full disk, quota, read-only or unwritable folder) into one
    ``IndexWriteError`` that says what happened and that the index is unchanged."""
    unchanged = ("the new generation was discarded and the index is as it was before this write; "
                 "re-running the same command after fixing this adds the rest (unchanged articles are skipped)")
    try:
        yield
    except OSError as exc:
        # numpy's tofile (np.save, FAISS bytes) reports a short write without an errno:
        # "503040 requested and 28640 written".
        if exc.errno in _DISK_FULL or (exc.errno is None and "requested and" in str(exc)):
            raise IndexWriteError(f"not enough disk space to write the index in {folder}: {unchanged}") from exc
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise IndexWriteError(f"cannot write to {folder} ({exc.strerror}): {unchanged}") from exc
        raise
    except sqlite3.OperationalError as exc:
        if "full" in str(exc) or "disk i/o" in str(exc).lower():
            raise IndexWriteError(f"not enough disk space to write the index in {folder} "
                                  f"(SQLite: {exc}): {unchanged}") from exc
        if "readonly" in str(exc) or "unable to open" in str(exc):
            raise IndexWriteError(f"cannot write to {folder} (SQLite: {exc}): {unchanged}") from exc
        raise
