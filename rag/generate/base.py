"""The generator protocol: one method that turns a question and numbered
passages into answer text, as a stream of text pieces."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from rag.evidence import Evidence
from rag.news import Hit
from rag.retrieve.timeline import TimelineIntent


@dataclass(frozen=True)
class Turn:
    role: str  # "user" | "assistant"
    content: str


@dataclass(frozen=True)
class GenerationRequest:
    question: str
    passages: tuple[Hit, ...]  # passage n is passages[n - 1]
    history: tuple[Turn, ...] = field(default=())
    language: str | None = None  # ISO code of the question's language
    #: What the prompt shows of each passage (the sentences that match the question);
    #: None: the whole passages.
    excerpts: tuple[str, ...] | None = None
    #: The passages' sentences, embedded once for this answer (shared with the citation check).
    evidence: Evidence | None = field(default=None, compare=False)
    #: A timeline or change question: the passages are in date order (see rag.retrieve.timeline).
    timeline: TimelineIntent | None = None

    def source_text(self, n: int) -> str:
        """What the generator is shown of passage ``n``."""
        return self.excerpts[n - 1] if self.excerpts is not None else self.passages[n - 1].text


class Generator(Protocol):
    #: Shown in answers ("openai:gpt-4o-mini", "extractive").
    name: str

    def generate(self, request: GenerationRequest, stream: bool = False) -> Iterator[str]:
        """Pieces of answer text; with stream=False usually a single piece.
        Raises GenerationError with a message fit for users."""
        ...


#: What every generator says when the passages do not answer the question.
REFUSAL = {
    "en": "The indexed articles do not contain an answer to this question.",
    "de": "Die indexierten Artikel enthalten keine Antwort auf diese Frage.",
}


def history_turns(history: Sequence[object] | None) -> tuple[Turn, ...]:
    """Accept [(role, text)], [{"role":..., "content":...}] or Turn objects."""
    turns: list[Turn] = []
    for item in history or ():
        if isinstance(item, Turn):
            turns.append(item)
        elif isinstance(item, dict) and "role" in item:
            content = item.get("content")
            if isinstance(content, str):
                turns.append(Turn(str(item["role"]), content))
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            role, content = item
            if isinstance(content, str):
                turns.append(Turn(str(role), content))
    return tuple(t for t in turns if t.role in ("user", "assistant") and t.content.strip())
