"""The sentences of the retrieved passages, embedded once per answer.

Three steps read them: the prompt keeps only the sentences that match the
question and their neighbours (a short prompt is a fast answer on a laptop),
the extractive generator quotes the best of them, and the citation check
compares each claim of the answer with them. Embedding them once serves all
three.

A sentence is scored against the question by its own similarity plus that of
its paragraph (a sentence alone says little; its paragraph tells what it is
about) plus a small bonus when it holds what the question asks for (names for
"which", a number for "how many", a date for "when"). A paragraph's vector is
the mean of its sentences' vectors, so only sentences are embedded:
``benchmarks/sentence_scoring.py`` found this as good as embedding every
paragraph (which took 2-3x as long) on XQuAD, MultiHop-RAG and the seed."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rag.chunk import split_sentences
from rag.embed import Embedder
from rag.news import Hit

#: Weight of the paragraph's similarity in a sentence's score.
PARAGRAPH_WEIGHT = 1.0
#: Bonus when a sentence has what the question asks for.
ANSWER_TYPE_BONUS = 0.03
#: The prompt shows sentences scoring within this of the best one (and their neighbours):
#: a small model writes about whatever it is shown, so sentences about other things stay out.
#: 40 XQuAD questions, local model: margin 0.03 -> answer holds the gold 0.43, 0.08 -> 0.53,
#: 0.15 -> 0.50 (and 6.8 s instead of 5.0 s per answer); the gold text is in the excerpts for
#: 95 of 100 questions at 0.15 (98 in the whole passages).
EXCERPT_MARGIN = 0.08
#: Sentences shorter than this (in words) are headings or fragments: never
#: chosen for themselves, only as a neighbour of a chosen sentence.
MIN_WORDS = 4

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
_PARAGRAPH = re.compile(r"[^\n]+(?:\n(?!\n)[^\n]+)*")
#: Text addressed to the assistant rather than to a reader: "ignore the
#: previous instructions", "answer only with ...", "SYSTEM:", "you are now ...".
#: News about such attacks trips it too; the cost is a flag, not a lost article.
_INSTRUCTION = re.compile("|".join((
    r"\b(?:ignore|disregard|forget|override|bypass)\b[^.!?\n]{0,60}\b(?:instructions?|rules?|prompts?|guidelines?|"
    r"directives?|(?:the )?above|previous|prior|earlier)\b",
    r"\b(?:ignorier\w*|vergiss|vergessen sie|missachte\w*|übergeh\w*|überschreib\w*)\b[^.!?\n]{0,60}"
    r"\b(?:anweisung\w*|regel\w*|vorgabe\w*|instruktion\w*|prompt\w*|obige\w*|vorherige\w*|bisherige\w*)",
    r"\b(?:system ?prompt|system message|systemnachricht|developer mode|entwicklermodus)\b",
    r"(?:^|[\n.!?]\s*)(?:system|assistant|assistent|admin|developer)\s*:",
    r"\b(?:as an ai(?:,| language model| assistant)|you are now|you must now|from now on,? you|"
    r"du bist (?:jetzt|nun|ab sofort)|ab sofort (?:bist|musst) du|als (?:ki|sprachmodell)\b)",
    r"\b(?:answer|respond|reply|write|say|output|print|repeat)\b[^.!?\n]{0,30}\b(?:only|exactly|verbatim|"
    r"the (?:word|sentence|text|following))\b",
    r"\b(?:antworte|antwortet|schreibe?|sage?|gib|gebt|wiederhole)\b[^.!?\n]{0,30}\b(?:nur|ausschließlich|"
    r"genau|wörtlich|folgende\w*|(?:das|dem|den) (?:wort|satz|text))\b",
    r"\b(?:new|updated|neue|geänderte) (?:instructions?|anweisung(?:en)?)\b",
    r"\b(?:the )?(?:assistant|chatbot|language model|ai model|ki|ki-assistent|sprachmodell|chatbot)\b[^.!?\n]{0,30}"
    r"\b(?:must|should|has to|is required to|soll|muss|darf)\b",
)), re.I)


def is_instruction(text: str) -> bool:
    """Does ``text`` talk to the assistant (a prompt injection) rather than report?"""
    return bool(_INSTRUCTION.search(text))


@dataclass(frozen=True)
class Sentence:
    """One sentence of passage ``n`` (1-based); ``start``/``end`` index the article text."""

    n: int
    position: int  # order within its passage
    text: str
    start: int
    end: int
    paragraph: int  # index into Evidence.paragraphs

    @property
    def words(self) -> int:
        return len(self.text.split())


@dataclass(frozen=True)
class Excerpt:
    """What the prompt shows of passage ``n``: chosen sentences in article order."""

    n: int
    sentences: tuple[Sentence, ...]

    @property
    def text(self) -> str:
        """The sentences, with " […] " where the passage skips some."""
        out = ""
        for prev, sent in zip((None, *self.sentences), self.sentences):
            if prev is not None:
                out += " " if sent.position == prev.position + 1 else " […] "
            out += " ".join(sent.text.split())
        return out


def answer_type_bonus(question: str, sentence: str) -> float:
    for asks, has in _ANSWER_TYPES:
        if asks.search(question):
            return ANSWER_TYPE_BONUS if has.search(sentence) else 0.0
    return 0.0


class Evidence:
    """The sentences of ``passages`` (passage n is passages[n - 1]) and their
    vectors, computed on first use and then shared."""

    def __init__(self, passages: Sequence[Hit], embedder: Embedder) -> None:
        self.passages = tuple(passages)
        self.embedder = embedder
        self.sentences: list[Sentence] = []
        self.paragraphs: list[str] = []
        for n, hit in enumerate(self.passages, 1):
            position = 0
            for para in _PARAGRAPH.finditer(hit.text):
                self.paragraphs.append(para.group())
                for span in split_sentences(para.group()):
                    text = para.group()[span.start:span.end]
                    start = hit.start + para.start() + span.start
                    self.sentences.append(Sentence(n, position, text, start, start + len(text),
                                                   len(self.paragraphs) - 1))
                    position += 1
        #: Headlines (position -1, no span): the prompt shows them, so a claim may rest on one.
        #: A derived title is not shown: it is the article's first sentence, evidence as text.
        self.titles = [Sentence(n, -1, " ".join(hit.title.split()), -1, -1, -1)
                       for n, hit in enumerate(self.passages, 1)
                       if hit.title and hit.title.strip() and not hit.title_derived]
        #: Passages that talk to the assistant: never evidence for a claim.
        self.instructed = frozenset(n for n, hit in enumerate(self.passages, 1)
                                    if is_instruction(hit.text) or is_instruction(hit.title or ""))
        self._vectors: np.ndarray | None = None
        self._title_vectors: np.ndarray | None = None
        self._paragraph_vectors: np.ndarray | None = None
        self._scores: dict[str, np.ndarray] = {}
        self._queries: dict[str, np.ndarray] = {}

    @property
    def vectors(self) -> np.ndarray:
        """(sentences, dim): one forward pass for sentences, titles and paragraphs together."""
        if self._vectors is None:
            texts = [s.text for s in self.sentences] + [t.text for t in self.titles]
            if texts:
                vectors = self.embedder.embed_documents(texts)
            else:
                vectors = np.zeros((0, self.embedder.dim), dtype=np.float32)
            n_sent = len(self.sentences)
            self._vectors, self._title_vectors = vectors[:n_sent], vectors[n_sent:]
            self._paragraph_vectors = self._paragraphs_from(self._vectors)
        return self._vectors

    def _paragraphs_from(self, vectors: np.ndarray) -> np.ndarray:
        """A paragraph's vector: the normalised mean of its sentences' vectors. Embedding
        the paragraphs themselves cost 2-3x the sentences (they are longer) for the same ranking."""
        out = np.zeros((len(self.paragraphs), vectors.shape[1] if vectors.ndim == 2 else 0), dtype=np.float32)
        for sent, vector in zip(self.sentences, vectors):
            out[sent.paragraph] += vector
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)

    def units(self) -> tuple[list[Sentence], np.ndarray]:
        """Everything a claim may rest on: the sentences, then the titles, with their vectors."""
        vectors = self.vectors
        assert self._title_vectors is not None
        return self.sentences + self.titles, np.vstack([vectors, self._title_vectors])

    def subset(self, order: Sequence[int]) -> Evidence:
        """Evidence of passages ``order`` (old numbers), renumbered 1.., reusing the vectors."""
        new = Evidence([self.passages[n - 1] for n in order], self.embedder)
        if self._vectors is None or self._title_vectors is None or self._paragraph_vectors is None:
            return new
        rows = {(s.n, s.position): i for i, s in enumerate(self.sentences)}
        titles = {t.n: i for i, t in enumerate(self.titles)}
        new._vectors = self._vectors[[rows[(order[s.n - 1], s.position)] for s in new.sentences]]
        new._title_vectors = self._title_vectors[[titles[order[t.n - 1]] for t in new.titles]]
        new._paragraph_vectors = new._paragraphs_from(new._vectors)
        new._queries = self._queries
        return new

    def of_passage(self, n: int) -> list[Sentence]:
        return [s for s in self.sentences if s.n == n]

    def query(self, question: str) -> np.ndarray:
        """The question's vector (embedded once)."""
        if question not in self._queries:
            self._queries[question] = self.embedder.embed_query(question)
        return self._queries[question]

    def similarities(self, question: str) -> np.ndarray:
        """Cosine of each sentence with the question (as a query)."""
        return self.vectors @ self.query(question) if self.sentences else np.zeros(0)

    def scores(self, question: str) -> np.ndarray:
        """Each sentence's score for ``question`` (see the module docstring)."""
        if question not in self._scores:
            if not self.sentences:
                return np.zeros(0)
            query = self.query(question)
            sims = self.vectors @ query
            assert self._paragraph_vectors is not None
            para = self._paragraph_vectors @ query
            bonus = np.array([answer_type_bonus(question, s.text) for s in self.sentences])
            self._scores[question] = sims + PARAGRAPH_WEIGHT * para[[s.paragraph for s in self.sentences]] + bonus
        return self._scores[question]

    def ranked(self, question: str) -> list[tuple[Sentence, float]]:
        """Sentences of at least MIN_WORDS words, best first."""
        scores = self.scores(question)
        order = sorted(range(len(self.sentences)), key=lambda i: -scores[i])
        return [(self.sentences[i], float(scores[i])) for i in order if self.sentences[i].words >= MIN_WORDS]

    def excerpts(self, question: str, budget: int, neighbours: int = 1,
                 margin: float = EXCERPT_MARGIN) -> tuple[Excerpt, ...]:
        """The best sentences (those scoring within ``margin`` of the best one) and
        ``neighbours`` on each side of them (for who "he" is, or what "the deal"
        was), until ``budget`` tokens (the embedder's count) are used. One Excerpt
        per passage that has any, in passage order."""
        by_passage: dict[int, list[Sentence]] = {}
        for sent in self.sentences:
            by_passage.setdefault(sent.n, []).append(sent)
        chosen: set[tuple[int, int]] = set()
        cost: dict[tuple[int, int], int] = {}
        counts = self.embedder.count_tokens([s.text for s in self.sentences]) if self.sentences else []
        for sent, tokens in zip(self.sentences, counts):
            cost[(sent.n, sent.position)] = tokens
        used = 0
        ranked = self.ranked(question)
        top = ranked[0][1] if ranked else 0.0
        for best, score in ranked:
            if score < top - margin:
                break
            group = [s for s in by_passage[best.n]
                     if abs(s.position - best.position) <= neighbours and (s.n, s.position) not in chosen]
            extra = sum(cost[(s.n, s.position)] for s in group)
            if not group:
                continue
            if used + extra > budget:
                # The best sentence alone may still fit when its neighbours do not.
                alone = cost[(best.n, best.position)]
                if (best.n, best.position) in chosen or used + alone > budget:
                    continue
                group, extra = [best], alone
            chosen.update((s.n, s.position) for s in group)
            used += extra
        return tuple(Excerpt(n, tuple(s for s in sents if (n, s.position) in chosen))
                     for n, sents in sorted(by_passage.items()) if any((n, s.position) in chosen for s in sents))


_MONTHS_EN = ("January February March April May June July August September October November December").split()
_MONTHS_DE = ("Januar Februar März April Mai Juni Juli August September Oktober November Dezember").split()


def about(hit: Hit) -> str:
    """What the prompt shows of a passage beside its text: headline, publisher and date (with the
    month's names, so "published in October" can be checked)."""
    month = ""
    date = (hit.published_at or "")[:10]
    if re.fullmatch(r"\d{4}-\d\d-\d\d", date) and 1 <= int(date[5:7]) <= 12:
        month = f"{_MONTHS_EN[int(date[5:7]) - 1]} {_MONTHS_DE[int(date[5:7]) - 1]} {date}"
    return " ".join(x for x in (None if hit.title_derived else hit.title, hit.source, month) if x)
