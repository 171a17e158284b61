"""Generator backend for when no LLM is configured: quote the sentences of the
retrieved passages that best answer the question, each with its citation.

Sentences are scored with the index's own (cross-lingual) embedder, so an
English question can pick a German sentence, plus a prior for the passage's
retrieval rank. Nothing is paraphrased: the answer says it is a quotation."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from rag.chunk import split_sentences
from rag.embed import Embedder
from rag.generate.base import GenerationRequest

NOTE = {"de": "Kein Sprachmodell konfiguriert. Die passendsten Sätze aus den Quellen:",
        "en": "No LLM is configured, so here are the sentences from the sources that best answer the question:"}
MAX_SENTENCES = 3
#: Sentences scoring this far below the best one are left out.
MARGIN = 0.05
#: Weight of the similarity of the paragraph around a sentence: a sentence
#: alone says little, its paragraph tells what it is about (measured on the
#: seed questions: 3 of 8 answer sentences first without it, 6 of 8 in the top 3 with it).
PARAGRAPH_WEIGHT = 1.0
#: Bonus when a sentence has what the question asks for (names for "which",
#: a number for "how many", a date for "when", a person for "who").
ANSWER_TYPE_BONUS = 0.03

_NAME = r"[A-ZÄÖÜ][\w.&'’-]*(?:\s(?:&\s)?[A-ZÄÖÜ][\w.&'’-]*)*"
_ANSWER_TYPES = (
    (re.compile(r"\b(which|welche[rsnm]?|what (?:companies|banks|countries|firms))\b", re.I),
     re.compile(rf"{_NAME}(?:,\s*{_NAME})+,?\s+(?:and|und|&|or|oder)\s+{_NAME}")),  # a list of names
    (re.compile(r"\b(how (?:much|many|large|big|high)|wie (?:viel|viele|hoch|gross|groß)|what (?:percentage|share))\b",
                re.I), re.compile(r"\d")),
    (re.compile(r"\b(when|wann|what (?:year|date|day)|which (?:year|date|day))\b", re.I),
     re.compile(r"\b(1[89]|20)\d\d\b|\b\d{1,2}\.\s?[A-ZÄÖÜ][a-zä]+|\b(?:January|February|March|April|May|June|"
                r"July|August|September|October|November|December|Januar|Februar|März|Mai|Juni|Juli|Oktober|"
                r"Dezember|Monday|Tuesday|Wednesday|Thursday|Friday|Montag|Dienstag|Mittwoch|Donnerstag|Freitag)\b")),
    (re.compile(r"\b(who|whom|wer|wem)\b", re.I), re.compile(r"\b[A-ZÄÖÜ][a-zäöüß]+\s[A-ZÄÖÜ][a-zäöüß]+\b")),
)


@dataclass(frozen=True)
class Candidate:
    n: int  # passage number
    text: str
    score: float


def answer_type_bonus(question: str, sentence: str) -> float:
    for asks, has in _ANSWER_TYPES:
        if asks.search(question):
            return ANSWER_TYPE_BONUS if has.search(sentence) else 0.0
    return 0.0


class ExtractiveGenerator:
    name = "extractive"

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder

    def rank_sentences(self, request: GenerationRequest) -> list[Candidate]:
        sentences: list[tuple[int, int, str]] = []  # (passage n, paragraph index, text)
        paragraphs: list[str] = []
        for n, hit in enumerate(request.passages, 1):
            for para in re.finditer(r"[^\n]+(?:\n(?!\n)[^\n]+)*", hit.text):
                paragraphs.append(para.group())
                for span in split_sentences(para.group()):
                    text = para.group()[span.start:span.end]
                    if len(text.split()) >= 4:  # headings and fragments do not answer questions
                        sentences.append((n, len(paragraphs) - 1, text))
        if not sentences:
            return []
        query = self._embedder.embed_query(request.question)
        vectors = self._embedder.embed_documents([t for _, _, t in sentences] + paragraphs)
        sims = vectors @ query
        sent_sims, para_sims = sims[:len(sentences)], sims[len(sentences):]
        scored = [Candidate(n, text, float(sim) + PARAGRAPH_WEIGHT * float(para_sims[p])
                            + answer_type_bonus(request.question, text))
                  for (n, p, text), sim in zip(sentences, sent_sims)]
        return sorted(scored, key=lambda c: -c.score)

    def generate(self, request: GenerationRequest, stream: bool = False) -> Iterator[str]:
        ranked = self.rank_sentences(request)
        if not ranked:
            yield "The retrieved passages contain no usable sentences."
            return
        best = ranked[0].score
        chosen = [c for c in ranked[:MAX_SENTENCES] if c.score >= best - MARGIN]
        lines = [NOTE.get(request.language or "", NOTE["en"])]
        lines += [f"«{' '.join(c.text.split())}» [{c.n}]" for c in chosen]
        text = "\n\n".join(lines)
        if not stream:
            yield text
            return
        for word in re.finditer(r"\S+\s*", text):  # word by word, joining back to exactly `text`
            yield word.group()
