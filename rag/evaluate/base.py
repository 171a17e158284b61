"""What the dataset adapters share: the run plan, results, reading the data,
sampling questions, searching, asking, and the progress bar."""

from __future__ import annotations

import json
import re
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import rag
from rag.cite import MARKER_NUMBERS
from rag.evaluate.errors import DatasetFormatError, DatasetNotFoundError
from rag.generate import resolve
from rag.generate.extractive import is_note
from rag.retrieve import cap_per_article
from rag.settings import Settings

T = TypeVar("T")
_MARKERS = re.compile(rf"\s*\[{MARKER_NUMBERS}\]")  # the markers and the space before them


@dataclass(frozen=True)
class RunSpec:
    """One row of the report: a retrieval mode on an index of one chunk size."""

    mode: str
    chunk_tokens: int
    chunk_overlap: int
    reranker: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "reranker": self.reranker, "chunk_tokens": self.chunk_tokens,
                "chunk_overlap": self.chunk_overlap}


@dataclass(frozen=True)
class EvalOptions:
    modes: tuple[str, ...] = ("hybrid",)
    rerankers: tuple[str, ...] = ()
    #: One index per size; empty: the settings' own chunk size.
    chunk_tokens: tuple[int, ...] = ()
    answers: bool = True
    limit: int | None = None
    answer_k: int = 5
    generator: str | None = None
    rebuild: bool = False
    cache_dir: Path | None = None
    progress: bool = False
    #: Write every answer (question, text, citations, flags, gold) here as JSON lines.
    answers_log: Path | None = None


@dataclass
class RunResult:
    spec: RunSpec
    metrics: dict[str, float | None]
    counts: dict[str, int]
    timings: dict[str, float]
    by_type: dict[str, dict[str, float | None]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    index: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**self.spec.to_dict(), "metrics": self.metrics, "by_type": self.by_type, "counts": self.counts,
                "timings": {k: round(v, 2) for k, v in self.timings.items()}, "index": self.index,
                "notes": self.notes}


class Adapter(ABC):
    """A dataset: its corpus (indexed once) and how a run over it is scored."""

    name: ClassVar[str]
    folder: ClassVar[str]  # under the datasets folder
    title: ClassVar[str]
    #: (metric key, column header) of the main table, in order.
    columns: ClassVar[tuple[tuple[str, str], ...]]
    #: Same for the per-question-type table (empty: no such table).
    type_columns: ClassVar[tuple[tuple[str, str], ...]] = ()

    def __init__(self, datasets: Path, settings: Settings, options: EvalOptions) -> None:
        self.root = datasets / self.folder
        if not self.root.is_dir():
            raise DatasetNotFoundError(f"dataset folder {self.root} not found; pass --data DIR (the folder "
                                       f"holding {self.folder}/) or set RAG_SHARED")
        self.settings = settings
        self.options = options

    #: Filled by each adapter's loader: the corpus (dicts for ``NewsIndex.add_articles``)
    #: and the questions (each with a ``text``).
    _articles: list[dict[str, Any]]
    questions: list[Any]

    def articles(self) -> list[dict[str, Any]]:
        """The whole corpus, as dicts for ``NewsIndex.add_articles``."""
        return self._articles

    def queries(self) -> list[str]:
        """The questions a run will search and ask (``options.limit`` applied)."""
        return [q.text for q in self.sample(self.questions)]

    @abstractmethod
    def evaluate(self, index: rag.NewsIndex, spec: RunSpec) -> RunResult:
        """Score one run (the questions honour ``options.limit``)."""

    def counts(self) -> dict[str, int]:
        return {"articles": len(self._articles), "questions": len(self.questions),
                "evaluated": len(self.sample(self.questions))}

    def notes(self) -> list[str]:
        """Remarks printed under the tables (skipped metrics and the like)."""
        return []

    # ---- helpers for subclasses ----
    def read_json(self, name: str) -> Any:
        path = self.root / name
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DatasetNotFoundError(f"dataset file {path} not found") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise DatasetFormatError(f"cannot read {path}: {exc}") from None

    def read_jsonl(self, name: str) -> list[Any]:
        path = self.root / name
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise DatasetNotFoundError(f"dataset file {path} not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetFormatError(f"cannot read {path}: {exc}") from None
        rows = []
        for n, line in enumerate(lines, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as exc:
                    raise DatasetFormatError(f"{path} line {n}: {exc}") from None
        return rows

    def sample(self, items: Sequence[T]) -> list[T]:
        return spread(items, self.options.limit)

    def bar(self, items: Sequence[T], desc: str) -> Iterator[T]:
        if not self.options.progress:
            return iter(items)
        from tqdm import tqdm

        return iter(tqdm(items, desc=desc, unit="q", file=sys.stderr, leave=False))

    def ask(self, index: rag.NewsIndex, question: str, spec: RunSpec, generator: str | None = None,
            gold: Any = None) -> rag.Answer:
        options: dict[str, Any] = {"mode": spec.mode}
        if spec.reranker:
            options["reranker"] = spec.reranker
        if generator or self.options.generator:
            options["generator"] = generator or self.options.generator
        start = time.perf_counter()
        result = rag.answer(question, index, k=self.options.answer_k, **options)
        if self.options.answers_log is not None:
            record = {"dataset": self.name, "mode": spec.mode, "seconds": round(time.perf_counter() - start, 2),
                      "gold": gold, **result.to_dict()}
            record["passages"] = [{k: p[k] for k in ("n", "article_id", "chunk_id", "title")}
                                  for p in record["passages"]]
            with open(self.options.answers_log, "a", encoding="utf-8") as log:
                log.write(json.dumps(record, ensure_ascii=False) + "\n")
        return result

    @property
    def generator(self) -> str:
        return resolve_generator(self.settings, self.options.generator)


def spread(items: Sequence[T], limit: int | None) -> list[T]:
    """``limit`` items evenly spaced over ``items`` (all of them when no limit),
    so a small run still covers every part of the dataset."""
    if limit is None or limit >= len(items):
        return list(items)
    if limit < 1:
        return []
    return [items[i * len(items) // limit] for i in range(limit)]


def top_articles(index: rag.NewsIndex, question: str, n: int, spec: RunSpec) -> list[rag.Hit]:
    """The best hit of each of the n best articles: chunks are searched, and
    chunks of an article already seen are skipped (searching deeper if needed)."""
    options: dict[str, Any] = {"reranker": spec.reranker} if spec.reranker else {}
    k = 3 * n
    while True:
        hits = index.search(question, k=k, mode=spec.mode, **options)
        unique = cap_per_article(hits, len(hits), 1)
        if len(unique) >= n or len(hits) < k or k >= 1000:
            return unique[:n]
        k = min(1000, 3 * k)


def resolve_generator(settings: Settings, name: str | None) -> str:
    """The generator ``rag.answer`` will use ("auto" resolved as rag.generate does)."""
    return resolve(settings, name)[0]


@dataclass
class CitationTally:
    """Citation metrics over the answers of a run: precision (the share of citations whose
    passage holds the supporting text), the share of answers citing anything, and the share
    with a claim the citation check flagged."""

    citations: int = 0
    precise: int = 0
    answers: int = 0
    cited: int = 0
    flagged: int = 0

    def add(self, answer: rag.Answer, supports: Callable[[rag.Hit], bool]) -> None:
        if answer.refused or answer.error:
            return
        self.answers += 1
        self.cited += bool(answer.citations)
        self.flagged += bool(answer.unsupported)
        for c in answer.citations:
            self.citations += 1
            self.precise += supports(answer.hits[c.n - 1])

    def metrics(self) -> dict[str, float | None]:
        return {"citation_precision": self.precise / self.citations if self.citations else None,
                "cited": self.cited / self.answers if self.answers else None,
                "flagged": self.flagged / self.answers if self.answers else None}


def answer_body(answer: rag.Answer) -> str:
    """The part of an answer to score against a gold answer: nothing for a
    refusal; for the extractive generator the quoted sentences without its
    note line; for others the text without the [n] citation markers."""
    if answer.refused:
        return ""
    text = answer.text
    lines = text.split("\n", 1)
    if is_note(lines[0]):
        text = lines[1] if len(lines) > 1 else ""
    text = _MARKERS.sub("", text)
    if answer.generator == "extractive":
        text = text.replace("«", "").replace("»", "")
    return text.strip()
