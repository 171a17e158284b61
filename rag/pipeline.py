"""Ingest, the writing half: sort incoming articles against the index (``plan``), chunk
and embed what changed, and write each batch as one new generation.

It drives ``rag.ingest`` (reading, cleaning), ``rag.chunk``, ``rag.embed`` and ``rag.store``,
so it sits above them (not inside ``rag/ingest``, the bottom layer) and below ``rag.index``,
whose ``NewsIndex`` calls it."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.chunk import chunk_article
from rag.embed import Embedder, index_model_id
from rag.ingest.articles import to_article
from rag.ingest.readers import Record
from rag.news import Article, Chunk, Duplicate, Failure, IngestReport
from rag.settings import Settings
from rag.store.generation import GenerationWriter, Snapshot, write_errors
from rag.store.lock import WriteLock, remove_if_only_lock
from rag.stories import StoryLSH
from rag.titles import with_derived_title

log = logging.getLogger(__name__)

#: (stage, done, total) -> None; stages: "reading", "embedding", "writing".
ProgressCallback = Callable[[str, int, int], None]
#: Chunks embedded per call: small enough for a smooth progress bar.
EMBED_SLICE = 64


@dataclass(frozen=True)
class Plan:
    """What one batch does to the index."""

    added: tuple[Article, ...] = ()
    updated: tuple[Article, ...] = ()
    unchanged: tuple[str, ...] = ()
    duplicates: tuple[Duplicate, ...] = ()

    @property
    def todo(self) -> tuple[Article, ...]:
        """The articles to chunk, embed and write."""
        return self.added + self.updated


def plan(batch: Sequence[Article], known: Mapping[str, str], owners: Mapping[str, str]) -> Plan:
    """Sort a batch. ``known``: content hash of each of its ids already indexed; ``owners``:
    the indexed article holding each text hash. The same id twice in a batch: the last wins.
    An article whose text another article (indexed, or earlier in the batch) already holds
    is a duplicate; one whose id and content are indexed is unchanged."""
    latest: dict[str, Article] = {}
    for article in batch:
        latest[article.id] = article
    added: list[Article] = []
    updated: list[Article] = []
    unchanged: list[str] = []
    duplicates: list[Duplicate] = []
    seen_text: dict[str, str] = {}
    for article in latest.values():
        if known.get(article.id) == article.content_hash:
            unchanged.append(article.id)
            continue
        owner = owners.get(article.text_hash) or seen_text.get(article.text_hash)
        if owner is not None and owner != article.id:
            duplicates.append(Duplicate(article.origin or article.id, article.id, owner))
            continue
        seen_text[article.text_hash] = article.id
        (updated if article.id in known else added).append(article)
    return Plan(tuple(added), tuple(updated), tuple(unchanged), tuple(duplicates))


class ReportBuilder:
    """Collects what an ingest did, record by record, and freezes it once (``build``).
    Appending is constant time (merging frozen reports per record was quadratic), and a
    note every record of a file repeats ("decoded as Windows-1252") is kept once."""

    def __init__(self) -> None:
        self.added: list[str] = []
        self.updated: list[str] = []
        self.unchanged: list[str] = []
        self.failed: list[Failure] = []
        self.duplicates: list[Duplicate] = []
        self.skipped: list[str] = []
        self.notes: dict[str, None] = {}
        self.chunks_added = 0

    def note(self, *notes: str) -> None:
        self.notes.update(dict.fromkeys(notes))

    def planned(self, done: Plan, chunks_added: int) -> None:
        self.added += [a.id for a in done.added]
        self.updated += [a.id for a in done.updated]
        self.unchanged += done.unchanged
        self.duplicates += done.duplicates
        self.chunks_added += chunks_added

    def build(self) -> IngestReport:
        return IngestReport(added=tuple(self.added), updated=tuple(self.updated), unchanged=tuple(self.unchanged),
                            failed=tuple(self.failed), duplicates=tuple(self.duplicates),
                            skipped=tuple(self.skipped), chunks_added=self.chunks_added, notes=tuple(self.notes))


class Ingest:
    """One ingest into ``folder``: records in, batches of ``settings.commit_every`` articles
    written as generations, under the folder's write lock. ``snapshot`` returns the freshly
    read current generation; ``embedder`` the embedder checked against the index."""

    def __init__(self, folder: Path, settings: Settings, snapshot: Callable[[], Snapshot | None],
                 embedder: Callable[[], Embedder], progress: ProgressCallback | None = None) -> None:
        self.folder = folder
        self.settings = settings
        self._snapshot = snapshot
        self._embedder = embedder
        self._progress = progress
        #: The story LSH, built from the catalog by the first batch and reused by the next ones.
        self._stories: StoryLSH | None = None

    def run(self, records: Iterator[Record | Failure], report: ReportBuilder) -> None:
        """Clean, plan and write every record; failures go to the report, never raise
        (a full disk or an unwritable folder raises IndexWriteError)."""
        created = not self.folder.exists()
        with write_errors(self.folder):
            self.folder.mkdir(parents=True, exist_ok=True)
        with WriteLock(self.folder, self.settings.lock_timeout):
            self._run(records, report)
        if created and self._snapshot() is None:
            remove_if_only_lock(self.folder)  # every input failed: leave no empty index behind

    def _run(self, records: Iterator[Record | Failure], report: ReportBuilder) -> None:
        batch: list[Article] = []
        for item in records:
            if isinstance(item, Failure):
                report.failed.append(item)
                continue
            article, failure, notes = to_article(item, self.settings.languages)
            if failure is not None:
                report.failed.append(failure)
            report.note(*notes)
            if article is not None:
                batch.append(with_derived_title(article))
            if len(batch) >= self.settings.commit_every:
                self.commit(batch, report)
                batch = []
        if batch or (self._snapshot() is None and not report.failed):
            self.commit(batch, report)  # an empty index is still written, so it can be opened

    def commit(self, batch: list[Article], report: ReportBuilder) -> None:
        """Write one batch as a new generation (nothing when it changes nothing)."""
        base = self._snapshot()
        known = base.catalog.hashes([a.id for a in batch]) if base else {}
        owners = base.catalog.ids_by_text_hash([a.text_hash for a in batch]) if base else {}
        todo = plan(batch, known, owners)
        if not todo.todo and base is not None:
            report.planned(todo, 0)
            return
        embedder = self._embedder()
        chunks = self.chunk(todo.todo, embedder)
        vectors = self.embed(todo.todo, chunks, embedder)
        s = self.settings
        with GenerationWriter(self.folder, base, index_model_id(s), embedder.dim, s.chunk_tokens, s.chunk_overlap,
                              s.exact_search_limit, self._stories, s.hnsw_limit) as writer:
            if todo.updated:
                writer.remove([a.id for a in todo.updated])
            offset = 0
            for article, article_chunks in zip(todo.todo, chunks):
                writer.add(article, article_chunks, vectors[offset:offset + len(article_chunks)])
                offset += len(article_chunks)
            self._report("writing", 0, 1)
            writer.publish()
            self._stories = writer.stories
            self._report("writing", 1, 1)
        self._snapshot()
        report.planned(todo, sum(len(c) for c in chunks))

    def chunk(self, articles: Sequence[Article], embedder: Embedder) -> list[list[Chunk]]:
        # Leave room for the title line and the model's prompt inside its window.
        target = min(self.settings.chunk_tokens, max(16, embedder.max_tokens - 48))
        overlap = min(self.settings.chunk_overlap, target // 2)
        if target < self.settings.chunk_tokens:
            log.warning("RAG_CHUNK_TOKENS=%d exceeds what %s reads; using %d", self.settings.chunk_tokens,
                        embedder.model_id, target)
        return [chunk_article(a, embedder.count_tokens, target, overlap) for a in articles]

    def embed(self, articles: Sequence[Article], chunks: list[list[Chunk]], embedder: Embedder) -> Any:
        import numpy as np

        texts = [embedding_text(a, c) for a, cs in zip(articles, chunks) for c in cs]
        if not texts:
            return np.zeros((0, embedder.dim), np.float32)
        # Sort by length so each batch pads little; restore order afterwards.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), embedder.dim), np.float32)
        bar = progress_bar(self.settings, "Embedding", len(texts), "chunk")
        for start in range(0, len(order), EMBED_SLICE):
            idx = order[start:start + EMBED_SLICE]
            out[idx] = embedder.embed_documents([texts[i] for i in idx])
            done = min(start + EMBED_SLICE, len(order))
            bar(done)
            self._report("embedding", done, len(texts))
        bar(None)
        return out

    def _report(self, stage: str, done: int, total: int) -> None:
        if self._progress:
            self._progress(stage, done, total)


def embedding_text(article: Article, chunk: Chunk) -> str:
    """What gets embedded: the title travels with every chunk (a derived one is the text's own
    first sentence, so it adds nothing, and vectors stay as they were before titles were derived)."""
    if article.title and not article.title_derived and not chunk.text.startswith(article.title):
        return f"{article.title}\n{chunk.text}"
    return chunk.text


def progress_bar(settings: Settings, desc: str, total: int, unit: str) -> Callable[[int | None], None]:
    """A tqdm bar on stderr when progress is on; call it with the number done, None to close."""
    show = settings.progress if settings.progress is not None else sys.stderr.isatty()
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
