"""From a question to the passages worth showing a generator.

dense (FAISS) + sparse (BM25) -> weighted reciprocal rank fusion -> optional
cross-encoder rerank -> date intent (filter or recency) -> one copy per story ->
per-article cap -> neighbouring chunks merged into one passage. Timeline and change questions
("How did X develop?", "What changed since Monday?") search their topic and get
relevant dated passages in date order instead of the per-article cap (timeline.py)."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import date

from rag.embed import Embedder
from rag.errors import InvalidQueryError
from rag.news import Filters, Hit
from rag.retrieve.diversity import cap_per_article, merge_neighbours
from rag.retrieve.fusion import fuse
from rag.retrieve.rerank import rerank
from rag.retrieve.stories import one_copy_per_story, with_copies
from rag.retrieve.timeline import CHANGE, TimelineIntent, arrange, parse_timeline_intent
from rag.retrieve.time_intent import TimeIntent, parse_time_intent, recency_weight
from rag.settings import RETRIEVAL_MODES, RetrievalMode
from rag.store.base import Reader as Snapshot

log = logging.getLogger(__name__)

MODES = RETRIEVAL_MODES


@dataclass(frozen=True)
class RetrievalOptions:
    k: int = 5
    mode: RetrievalMode = "hybrid"
    filters: Filters | None = None
    #: Weight of the BM25 ranking in the fusion (dense has 1). Passages in
    #: other languages than the question's use their dense rank instead (see fuse()).
    sparse_weight: float = 1.0
    #: At most this many passages from one article (None: no cap).
    max_per_article: int | None = 2
    merge_neighbours: bool = True
    #: Apply dates found in the question ("last week", "in March 2023").
    time_intent: bool = True
    #: Reference date for relative dates; None: the newest article's date.
    now: date | None = None
    #: A sentence-transformers CrossEncoder name or path; None: no reranking.
    reranker: str | None = None
    candidates: int = 50
    #: Timeline and change questions get dated passages in date order (False: as any question).
    timeline: bool = True
    #: One passage per story (syndicated copies, rag.stories), naming the other copies' outlets.
    group_stories: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InvalidQueryError(f"unknown retrieval mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if not 1 <= self.k <= 1000:
            raise InvalidQueryError(f"k must be from 1 to 1000, got {self.k}")
        if self.max_per_article is not None and (not _is_int(self.max_per_article) or self.max_per_article < 1):
            raise InvalidQueryError(f"max_per_article must be 1 or more (None: no cap), got {self.max_per_article!r}")
        if not _is_int(self.candidates) or self.candidates < 1:
            raise InvalidQueryError(f"candidates must be a positive integer, got {self.candidates!r}")
        if isinstance(self.sparse_weight, bool) or not isinstance(self.sparse_weight, (int, float)) \
                or not 0 <= self.sparse_weight < float("inf"):
            raise InvalidQueryError(f"sparse_weight must be a number >= 0, got {self.sparse_weight!r}")
        if self.now is not None and not isinstance(self.now, date):
            raise InvalidQueryError(f"now must be a datetime.date, got {self.now!r}")
        if self.reranker is not None and (not isinstance(self.reranker, str) or not self.reranker.strip()):
            raise InvalidQueryError(f"reranker must be a model name or folder, got {self.reranker!r}")
        for flag in ("merge_neighbours", "time_intent", "timeline", "group_stories"):
            if not isinstance(getattr(self, flag), bool):
                raise InvalidQueryError(f"{flag} must be True or False, got {getattr(self, flag)!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Retrieval:
    hits: tuple[Hit, ...]
    time_intent: TimeIntent | None = None
    #: Best cosine similarity among the candidates (0 when nothing matched).
    best_similarity: float = 0.0
    #: The language of the passage with that similarity (None: unknown): cross-lingual
    #: similarities run lower, so the relevance gate needs to know.
    best_language: str | None = None
    #: The question asks for a timeline or what changed: ``hits`` are in date order.
    timeline: TimelineIntent | None = None


def retrieve(snapshot: Snapshot, embedder: Embedder, question: str, options: RetrievalOptions,
             query_language: str | None = None) -> Retrieval:
    filters = options.filters
    intent = None
    now = options.now or _newest(snapshot) if options.time_intent or options.timeline else None
    timeline = parse_timeline_intent(question, now) if options.timeline else None
    if options.time_intent:
        intent = parse_time_intent(question, now) if now else None
        if intent and timeline and timeline.kind == CHANGE:
            intent = None  # it compares the periods on either side of its date: no filter to one of them
        if intent and (intent.since or intent.until) and not (filters and (filters.since or filters.until)):
            filters = dataclasses.replace(filters or Filters(), since=intent.since, until=intent.until)
    allowed = snapshot.allowed(filters)
    n = max(options.candidates, 4 * options.k)
    search = timeline.topic if timeline else question
    qvec = embedder.embed_query(search)
    dense = snapshot.dense(qvec, n, allowed) if options.mode != "sparse" else []
    sparse = snapshot.sparse.search(search, n, query_language, allowed) if options.mode != "dense" else []
    if options.mode == "dense":
        fused = dense
    elif options.mode == "sparse":
        fused = sparse
    else:
        fused = fuse(dense, sparse, snapshot.sparse.language_of([r for r, _ in dense + sparse]),
                     query_language, options.sparse_weight)
    sims = dict(dense)
    missing = [r for r, _ in fused if r not in sims]
    sims.update(snapshot.similarities(qvec, missing))
    hits = _attach_similarity(snapshot, fused, sims)
    if options.reranker:
        hits = rerank(options.reranker, search, hits[: max(3 * options.k, 20)])
    if intent and intent.recent and not timeline:
        if now:
            top = max((h.score for h in hits), default=1.0) or 1.0
            hits = sorted(hits, key=lambda h: -(h.score / top + 0.5 * recency_weight(h.published_at, now)))
    if options.group_stories:
        hits = one_copy_per_story(snapshot, hits)
    if timeline:
        hits = arrange(hits, timeline, options.k, options.max_per_article)
    else:
        hits = cap_per_article(hits, options.k, options.max_per_article)
    if options.merge_neighbours:
        hits = merge_neighbours(snapshot, hits)
    if options.group_stories:
        hits = with_copies(snapshot, hits)
    best = max((s for s in sims.values()), default=0.0)
    closest = max(hits, key=lambda h: h.similarity or 0.0, default=None)  # nearly always holds ``best``
    return Retrieval(tuple(hits), intent, float(best), closest.language if closest else None, timeline)


def _attach_similarity(snapshot: Snapshot, fused: list[tuple[int, float]], sims: dict[int, float]) -> list[Hit]:
    # catalog.hits keeps the order of `fused` and drops nothing in a consistent snapshot
    return [dataclasses.replace(h, similarity=sims.get(r))
            for h, (r, _) in zip(snapshot.catalog.hits(fused), fused)]


def _newest(snapshot: Snapshot) -> date | None:
    _, last = snapshot.catalog.date_range()
    try:
        return date.fromisoformat(last[:10]) if last else None
    except ValueError:
        return None


__all__ = ["MODES", "Retrieval", "RetrievalOptions", "cap_per_article", "fuse", "merge_neighbours", "rerank",
           "retrieve"]
