"""The default store: FAISS vectors, a SQLite catalog and bm25s files in generation folders
beside ``manifest.json`` (rag.store.generation), everything in the index folder."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from rag.errors import IndexCorruptError
from rag.settings import Settings
from rag.store.generation import GenerationWriter, Snapshot
from rag.store.lock import WriteLock
from rag.store.manifest import MANIFEST, Manifest, read_manifest
from rag.stories import StoryLSH

log = logging.getLogger(__name__)


class FaissStore:
    name = "faiss"

    def __init__(self, folder: Path, settings: Settings | None = None) -> None:
        self.folder = folder
        #: Above this many chunks the FAISS index is IVF-PQ (RAG_HNSW_LIMIT; None: HNSW at any size).
        self.hnsw_limit = settings.hnsw_limit if settings is not None else None

    def manifest(self) -> Manifest | None:
        return read_manifest(self.folder) if self.folder.is_dir() else None

    def stamp(self) -> tuple[int, int, int] | None:
        try:
            st = (self.folder / MANIFEST).stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def snapshot(self) -> Snapshot | None:
        # A writer keeps the published generation and the one before; one publishing faster
        # than we open can remove the generation we read the manifest for. Then the manifest
        # names a newer one: open that. Only a failure on the generation still current is real.
        for attempt in range(20):
            manifest = read_manifest(self.folder)
            if manifest is None:
                return None
            try:
                return Snapshot(self.folder, manifest)
            except (FileNotFoundError, IndexCorruptError) as exc:
                latest = read_manifest(self.folder)
                if latest is not None and latest.generation == manifest.generation:
                    if isinstance(exc, IndexCorruptError):
                        raise
                    raise IndexCorruptError(f"index {self.folder}: {exc.filename or exc} named by the manifest is "
                                            f"missing; the index is damaged (restore it or rebuild it with "
                                            f"'rag ingest')") from exc
                log.debug("generation %d was superseded while opening it; retrying", manifest.generation)
                time.sleep(0.01 * attempt)
        raise IndexCorruptError(f"index {self.folder}: generation folder keeps disappearing")

    def writer(self, base: Snapshot | None, embed_model: str, dim: int, chunk_tokens: int, chunk_overlap: int,
               exact_limit: int, stories: StoryLSH | None = None) -> GenerationWriter:
        return GenerationWriter(self.folder, base, embed_model, dim, chunk_tokens, chunk_overlap, exact_limit,
                                stories, self.hnsw_limit)

    def lock(self, timeout: float) -> WriteLock:
        return WriteLock(self.folder, timeout)

    def close(self) -> None:
        pass
