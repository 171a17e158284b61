"""Copying a FAISS index into another store (``rag migrate``) without embedding anything again:
articles, chunks, their vectors and the story groups go across as they are, in one generation
(a copy that fails half-way publishes nothing)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from rag.errors import IndexWriteError
from rag.store.base import Store
from rag.store.generation import Snapshot
from rag.store.manifest import Manifest

log = logging.getLogger(__name__)

#: Articles read from the source at once.
COPY_BATCH = 500


def copy_index(source: Snapshot, target: Store, exact_limit: int,
               progress: Callable[[int, int], None] | None = None) -> Manifest:
    """Copy the FAISS generation ``source`` into the empty store ``target``; returns its manifest."""
    if not isinstance(source, Snapshot):
        raise IndexWriteError(f"'rag migrate' copies a FAISS index; {source.manifest.store} is not one")
    if target.manifest() is not None:
        raise IndexWriteError(f"{target.folder} already holds an index; migrate into a new folder")
    target.folder.mkdir(parents=True, exist_ok=True)
    m, catalog = source.manifest, source.catalog
    position = {int(rowid): n for n, rowid in enumerate(source.vectors.ids)}
    ids = catalog.article_ids()
    with target.lock(0.0), target.writer(None, m.embed_model, m.dim, m.chunk_tokens, m.chunk_overlap,
                                         exact_limit) as writer:
        for start in range(0, len(ids), COPY_BATCH):
            batch = ids[start:start + COPY_BATCH]
            chunks = catalog.chunks_of(batch)
            stories = catalog.stories_of(batch)
            signatures = dict(catalog.signatures(batch))
            ingested = catalog.ingested(batch)
            add_stories = getattr(writer, "add_stories", None)  # a Milvus writer: stories and dates kept
            for article_id in batch:
                article = catalog.article(article_id)
                if article is None:
                    raise IndexWriteError(f"article {article_id!r} vanished from {source.folder} while copying")
                rows = chunks.get(article_id, [])
                vectors = np.asarray(source.vectors.vectors[[position[r] for r, _ in rows]], dtype=np.float32)
                kept = {"ingested_at": ingested.get(article_id)} if add_stories is not None else {}
                writer.add(article, [c for _, c in rows], vectors.reshape(len(rows), m.dim), **kept)  # type: ignore
            if add_stories is not None:  # else the target signs and groups them again when publishing
                add_stories([(a, stories.get(a), signatures[a]) for a in batch if a in signatures])
            if progress:
                progress(min(start + COPY_BATCH, len(ids)), len(ids))
        published = writer.publish()
    log.info("copied %d articles, %d chunks from %s to the %s store in %s", published.articles, published.chunks,
             source.folder, target.name, target.folder)
    return published
