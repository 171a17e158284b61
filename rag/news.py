"""The nouns of the domain: articles, their chunks, search hits, citations and
answers, plus the reports that ingest returns. Frozen dataclasses only."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rag.dates import normalize_date
from rag.errors import InvalidFilterError

#: The metadata fields an article export may carry (only ``text`` is required).
ARTICLE_FIELDS = ("id", "title", "text", "url", "source", "author", "published_at", "language")


@dataclass(frozen=True)
class Article:
    """A cleaned news article, ready to be chunked and indexed."""

    id: str
    text: str
    title: str | None = None
    url: str | None = None
    source: str | None = None
    author: str | None = None
    published_at: str | None = None  # ISO 8601 date or date-time
    language: str | None = None
    origin: str | None = None  # where it came from: a path, "path:line 7", "api"
    content_hash: str = ""  # text + metadata: unchanged articles are skipped
    text_hash: str = ""  # text only: exact duplicates under another id are refused
    #: The title was not given but made from the first sentence (rag.titles): display only.
    title_derived: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ArticleSummary:
    """One line of the list of indexed articles."""

    id: str
    title: str | None
    source: str | None
    published_at: str | None
    language: str | None
    url: str | None
    origin: str | None
    ingested_at: str
    chars: int
    chunks: int
    title_derived: bool = False  # the title is the first sentence, not a given headline

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class IndexStats:
    """What an index folder holds (``rag stats``). Before the first ingest only ``index``,
    ``embedding_model`` and the zero counts are known."""

    index: str
    embedding_model: str
    articles: int = 0
    chunks: int = 0
    dim: int | None = None
    vector_index: str | None = None  # "flat" | "hnsw"
    generation: int | None = None
    created: str | None = None
    updated: str | None = None
    chunk_tokens: int | None = None
    chunk_overlap: int | None = None
    sources: dict[str, int] = field(default_factory=dict)  # articles per publisher
    languages: dict[str, int] = field(default_factory=dict)
    published_from: str | None = None
    published_to: str | None = None
    size_bytes: int = 0
    format_version: int | None = None  # of the index folder; older ones: `rag upgrade`
    rag_version: str | None = None  # of the rag that wrote it

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Chunk:
    """A span of an article's text: ``article.text[start:end] == text``."""

    article_id: str
    ordinal: int
    text: str
    start: int
    end: int
    n_tokens: int

    @property
    def id(self) -> str:
        return chunk_id(self.article_id, self.ordinal)


def chunk_id(article_id: str, ordinal: int) -> str:
    return f"{article_id}#{ordinal}"


def _from_fields(cls: type[Any], data: Mapping[str, Any], **given: Any) -> Any:
    """``cls(**data)`` for the dataclass ``cls``, the inverse of ``dataclasses.asdict`` for flat
    records: keys it does not know are ignored (a newer version's extra fields), a missing key
    takes the field's default (an older version's record) or is an error, lists become tuples.
    ``given`` are fields the caller already converted."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{cls.__name__}.from_dict needs a dict, not {type(data).__name__}")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in given:
            values[f.name] = given[f.name]
        elif f.name in data:
            value = data[f.name]
            values[f.name] = tuple(value) if isinstance(value, list) else value
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ValueError(f"{cls.__name__}.from_dict: the field {f.name!r} is missing")
    return cls(**values)


@dataclass(frozen=True)
class ArticleRef:
    """Another copy of a story: enough to name it (its outlet, else its title) and link it."""

    id: str
    title: str | None = None
    source: str | None = None
    url: str | None = None
    published_at: str | None = None

    @property
    def name(self) -> str:
        return self.source or self.title or self.id


@dataclass(frozen=True)
class Hit:
    """One retrieved passage with the metadata needed to cite it."""

    article_id: str
    chunk_id: str
    title: str | None
    url: str | None
    source: str | None
    published_at: str | None
    text: str
    start: int
    end: int
    score: float
    language: str | None = None
    #: Cosine similarity with the query (the fused ``score`` is rank-based).
    similarity: float | None = None
    #: ``title`` is the article's first sentence (it had none), not a headline.
    title_derived: bool = False
    #: The story this article is a copy of (rag.stories; None: an index without stories).
    story_id: str | None = None
    #: The outlets (else titles) of the story's other copies, which retrieval left out for this one.
    also_reported_by: tuple[str, ...] = ()
    #: Articles in the story, this one included.
    copies: int = 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Hit:
        """The inverse of ``to_dict`` (an answer's passages also carry ``n``, ignored here)."""
        return _from_fields(cls, data)


def also_reported(also_reported_by: tuple[str, ...], copies: int, most: int = 5) -> str:
    """How a passage names its story's other copies: "also reported by: A, B (3 copies)"; ""
    when the story has one copy. Names past ``most`` are counted, not listed."""
    if copies < 2:
        return ""
    names = ", ".join(also_reported_by[:most]) + (f" and {len(also_reported_by) - most} more"
                                                  if len(also_reported_by) > most else "")
    return f"also reported by: {names} ({copies} copies)" if names else f"{copies} copies of this story"


@dataclass(frozen=True)
class Failure:
    """An input that could not be indexed, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class Duplicate:
    """An article whose text is already indexed under another id."""

    origin: str
    article_id: str
    existing_id: str


@dataclass(frozen=True)
class IngestReport:
    """What one ingest did. ``failed`` and ``duplicates`` name every input."""

    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    failed: tuple[Failure, ...] = ()
    duplicates: tuple[Duplicate, ...] = ()
    skipped: tuple[str, ...] = ()  # files of types we do not read, met while walking folders
    chunks_added: int = 0
    notes: tuple[str, ...] = field(default=())  # e.g. "decoded as Windows-1252"

    @property
    def ok(self) -> bool:
        return not self.failed

    def counts(self) -> dict[str, int]:
        return {
            "added": len(self.added), "updated": len(self.updated),
            "unchanged": len(self.unchanged), "failed": len(self.failed),
            "duplicates": len(self.duplicates), "skipped": len(self.skipped),
            "chunks_added": self.chunks_added,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts(),
            "added": list(self.added), "updated": list(self.updated),
            "unchanged": list(self.unchanged),
            "failed": [dataclasses.asdict(f) for f in self.failed],
            "duplicates": [dataclasses.asdict(d) for d in self.duplicates],
            "skipped": list(self.skipped), "notes": list(self.notes),
        }


@dataclass(frozen=True)
class DeleteReport:
    """What one delete did: ``missing`` ids were not in the index (already deleted, or a typo)."""

    deleted: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"deleted": list(self.deleted), "missing": list(self.missing)}


@dataclass(frozen=True)
class Citation:
    """Source ``[n]`` of an answer: the passage's article and the sentence that
    supports the claim (``start``/``end`` index the article text; -1 when the
    supporting text is the article's headline)."""

    n: int
    article_id: str
    chunk_id: str
    title: str | None
    url: str | None
    source: str | None
    published_at: str | None
    quote: str
    start: int
    end: int
    title_derived: bool = False  # ``title`` is the article's first sentence, not a headline
    #: As on Hit: the story, the outlets of its other copies, and how many copies it has.
    story_id: str | None = None
    also_reported_by: tuple[str, ...] = ()
    copies: int = 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Citation:
        return _from_fields(cls, data)


@dataclass(frozen=True)
class Unsupported:
    """An answer sentence the citation check could not match to its sources."""

    sentence: str
    cited: tuple[int, ...]
    reason: str  # "no citation", "not found in source [2]", ...
    support: float  # best similarity found

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Unsupported:
        return _from_fields(cls, data)


@dataclass(frozen=True)
class Answer:
    """A grounded answer: text with ``[n]`` markers, the sources they point
    to, the passages the generator saw, and what the checks found."""

    question: str
    text: str
    citations: tuple[Citation, ...]
    hits: tuple[Hit, ...]
    generator: str
    query: str = ""  # the standalone query actually searched (after follow-up rewriting)
    unsupported: tuple[Unsupported, ...] = ()
    refused: bool = False  # retrieval found nothing relevant enough; nothing was generated
    error: str | None = None  # the generator failed; text explains, hits are still given
    notes: tuple[str, ...] = ()
    #: The text as the generator wrote it, before the citation check changed markers.
    draft: str = ""
    #: "timeline" or "change" when the question asked how a story developed or what changed
    #: since a date (the passages are then in date order); "" for any other answer.
    mode: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question, "answer": self.text, "query": self.query,
            "citations": [c.to_dict() for c in self.citations],
            "passages": [dict(h.to_dict(), n=i) for i, h in enumerate(self.hits, 1)],
            "generator": self.generator, "unsupported": [u.to_dict() for u in self.unsupported],
            "refused": self.refused, "error": self.error, "notes": list(self.notes), "draft": self.draft,
            "mode": self.mode,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Answer:
        """The inverse of ``to_dict``: ``Answer.from_dict(a.to_dict()) == a``, also after a JSON round trip."""
        if not isinstance(data, Mapping) or "answer" not in data:
            raise ValueError("Answer.from_dict needs the dict of Answer.to_dict() (with 'answer', the text)")
        return _from_fields(
            cls, data, text=data["answer"],
            citations=tuple(Citation.from_dict(c) for c in data.get("citations") or ()),
            hits=tuple(Hit.from_dict(h) for h in data.get("passages") or ()),
            unsupported=tuple(Unsupported.from_dict(u) for u in data.get("unsupported") or ()))


FILTER_KEYS = ("source", "language", "article_ids", "since", "until")


@dataclass(frozen=True)
class Filters:
    """Search restrictions. ``since``/``until`` are inclusive ISO dates."""

    source: tuple[str, ...] = ()
    language: tuple[str, ...] = ()
    article_ids: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None

    @classmethod
    def parse(cls, value: Filters | dict[str, Any] | None) -> Filters | None:
        if value is None or isinstance(value, Filters):
            return value
        if not isinstance(value, dict):
            raise InvalidFilterError(f"filters must be a dict, not {type(value).__name__}")
        aliases = {"sources": "source", "languages": "language", "article_id": "article_ids",
                   "ids": "article_ids", "published_after": "since", "published_before": "until",
                   "from": "since", "to": "until"}
        out: dict[str, Any] = {}
        for key, val in value.items():
            name = aliases.get(key, key)
            if name not in FILTER_KEYS:
                raise InvalidFilterError(f"unknown filter {key!r}; known: {', '.join(FILTER_KEYS)}")
            if val is None or val == () or val == []:
                continue
            if name in ("since", "until"):
                date = normalize_date(str(val))
                if date is None:
                    raise InvalidFilterError(f"filter {key}={val!r} is not a date (use YYYY-MM-DD)")
                out[name] = date
            else:
                items = (val,) if isinstance(val, str) else tuple(val) if isinstance(val, (list, tuple, set)) else None
                if items is None or not all(isinstance(v, str) and v for v in items):
                    raise InvalidFilterError(f"filter {key} must be a string or a list of strings, "
                                             f"not {type(val).__name__}")
                out[name] = items
        if out.get("since") and out.get("until") and out["since"][:10] > out["until"][:10]:
            raise InvalidFilterError(f"filter since ({out['since']}) is after until ({out['until']}): "
                                     f"nothing could match")
        return cls(**out) if out else None
