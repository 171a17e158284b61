"""Generator backend for when no LLM is available: quote the sentences of the
retrieved passages that best answer the question, each with its citation.

Sentences are scored by ``rag.evidence`` with the index's own (cross-lingual)
embedder, so an English question can pick a German sentence. Nothing is
paraphrased: the answer says it is a quotation, and in which language. It
refuses rather than quote a sentence that is not about the question: one that
is too far from it, or that lacks the names the question asks about."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass

from rag.embed import Embedder
from rag.evidence import Evidence, about
from rag.generate.base import REFUSAL, GenerationRequest
from rag.generate.prompt import language_name
from rag.names import Vectors, names_in, spelled_alike, translated, word_stems
from rag.retrieve.timeline import TIMELINE, day

MAX_SENTENCES = 3
#: Sentences scoring this far below the best one are left out.
MARGIN = 0.05
#: A question naming at most this many things (publishers aside) asks about one story.
ONE_STORY_NAMES = 2

NOTE = {"de": "Kein Sprachmodell verfügbar. Die passendsten Sätze aus den Quellen",
        "en": "No language model is available, so here are the sentences from the sources that best answer "
              "the question"}
_IN_LANGUAGE = {"de": " (auf {language}, der Sprache der Artikel)", "en": " (in {language}, the articles' language)"}
_SOME_IN_LANGUAGE = {"de": " (teils auf {language})", "en": " (some in {language})"}
#: A timeline quotes at most this many passages, one sentence each.
MAX_EVENTS = 8
TIMELINE_NOTE = {"de": "Kein Sprachmodell verfügbar. Der Verlauf in Sätzen aus den Quellen, ältester zuerst",
                 "en": "No language model is available, so here is the story in sentences from the sources, "
                       "oldest first"}
#: Headings of a change answer; {date} is the pivot.
BEFORE = {"de": "Vor dem {date}:", "en": "Before {date}:"}
SINCE = {"de": "Seit dem {date}:", "en": "Since {date}:"}
UNDATED = {"de": "ohne Datum", "en": "undated"}
UNDATED_HEADING = {"de": "Ohne Datum:", "en": "Undated:"}
_GERMAN_NAMES = {"en": "Englisch", "de": "Deutsch", "fr": "Französisch", "es": "Spanisch", "it": "Italienisch"}
@dataclass(frozen=True)
class Candidate:
    n: int  # passage number
    text: str
    score: float
    language: str | None


def note(language: str | None, quoted: set[str]) -> str:
    """The first line of an extractive answer; names the quotes' language when
    it is not the question's."""
    lang = language if language in NOTE else "en"
    text = NOTE[lang]
    other = sorted(q for q in quoted if q and q != language)
    if other:
        names = [(_GERMAN_NAMES.get(q, q) if lang == "de" else language_name(q)) for q in other]
        template = _IN_LANGUAGE if quoted <= set(other) else _SOME_IN_LANGUAGE
        text += template[lang].format(language=" / ".join(names))
    return text + ":"


def is_note(line: str) -> bool:
    """Is ``line`` the note an extractive answer starts with (or a timeline's heading)?"""
    line = line.strip()
    return (any(line.startswith(start) for start in (*NOTE.values(), *TIMELINE_NOTE.values()))
            or line in UNDATED_HEADING.values()
            or any(re.fullmatch(re.escape(h).replace(r"\{date\}", r"\d{4}-\d\d-\d\d"), line)
                   for h in (*BEFORE.values(), *SINCE.values())))


class ExtractiveGenerator:
    name = "extractive"

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder

    def rank_sentences(self, request: GenerationRequest) -> list[Candidate]:
        evidence = request.evidence or Evidence(request.passages, self._embedder)
        return [Candidate(s.n, s.text, score, request.passages[s.n - 1].language)
                for s, score in evidence.ranked(request.question)]

    def choose(self, request: GenerationRequest) -> list[Candidate]:
        """The sentences to quote; empty when none is about the question."""
        ranked = self.rank_sentences(request)
        about = self.about_the_question(request)
        ranked = [c for c in ranked if request.passages[c.n - 1].article_id in about]
        if not ranked:
            return []
        best = ranked[0].score
        return [c for c in ranked[:MAX_SENTENCES] if c.score >= best - MARGIN]

    def about_the_question(self, request: GenerationRequest) -> set[str]:
        """Ids of the articles about the question, by the names it gives (found by spelling or
        in translation, in an article's text, headline or month; its passages count together).
        Publishers the question names ("according to The Verge") say where, not what, and are
        set aside. A question with one or two other names and at most one publisher asks about
        one story: an article must hold them all ("Manchester United" is not answered from a
        Chelsea story). One that names more, or two publishers, joins several reports: an
        article must hold one of them (two, from four names on) and together they must hold at
        least half (a capitalised word is not always a name, and each report holds its own).
        German capitalises every noun, so there capitals do not mark names and every article
        counts."""
        ids = {hit.article_id for hit in request.passages}
        names = names_in(request.question) if request.language != "de" else {}
        publishers: set[str] = set()
        for hit in request.passages:
            publishers |= spelled_alike(names, set(word_stems(hit.source or "")))
        subjects = {s: w for s, w in names.items() if s not in publishers}
        if not subjects:
            return ids
        words: dict[str, dict[str, str]] = {}
        for hit in request.passages:
            words.setdefault(hit.article_id, {}).update(word_stems(f"{about(hit)} {hit.text}"))
        vectors = Vectors(self._embedder.embed_documents)
        held: dict[str, set[str]] = {}
        for article, stems in words.items():
            missing = {s: w for s, w in subjects.items() if s not in spelled_alike(subjects, set(stems))}
            held[article] = (set(subjects) - set(missing)) | translated(missing, stems, vectors)
        if len(subjects) <= ONE_STORY_NAMES and len(publishers) < 2:
            return {a for a, h in held.items() if h >= set(subjects)}
        joined = {a for a, h in held.items() if len(h) >= (1 if len(subjects) <= 3 else 2)}
        covered = set().union(*(held[a] for a in joined))
        return joined if 2 * len(covered) >= len(subjects) else set()

    def timeline(self, request: GenerationRequest) -> str | None:
        """For a timeline or change question: each passage about its topic (in the date order
        retrieval gave) as its date, publisher and best sentence; a change question's passages
        under "Before <date>:" and "Since <date>:". None when no passage is about the topic."""
        assert request.timeline is not None
        topic = dataclasses.replace(request, question=request.timeline.topic)
        about = self.about_the_question(topic)
        best: dict[int, Candidate] = {}
        for c in self.rank_sentences(topic):
            if c.n not in best and request.passages[c.n - 1].article_id in about:
                best[c.n] = c
        if not best:
            return None
        lang = request.language if request.language in TIMELINE_NOTE else "en"
        # the best-matching passages, shown in the passages' (date) order
        shown = sorted(sorted(best, key=lambda n: -best[n].score)[:MAX_EVENTS])
        lines = [note(request.language, {best[n].language or "" for n in shown}).replace(
            NOTE[lang], TIMELINE_NOTE[lang])]
        pivot = request.timeline.pivot if request.timeline.kind != TIMELINE else None
        heading = None
        for n in shown:
            hit = request.passages[n - 1]
            when = day(hit)
            if pivot:
                group = (BEFORE if when < pivot else SINCE)[lang].format(date=pivot) if when else UNDATED_HEADING[lang]
                if group != heading:
                    lines.append(group)
                    heading = group
            meta = ", ".join(x for x in (when or UNDATED[lang], hit.source) if x)
            lines.append(f"- {meta}: «{' '.join(best[n].text.split())}» [{n}]")
        return "\n\n".join(lines)

    def generate(self, request: GenerationRequest, stream: bool = False) -> Iterator[str]:
        story = self.timeline(request) if request.timeline else None
        chosen = self.choose(request) if story is None else []
        if story is not None:
            text = story
        elif not chosen:
            text = REFUSAL.get(request.language or "", REFUSAL["en"])
        else:
            lines = [note(request.language, {c.language or "" for c in chosen})]
            lines += [f"«{' '.join(c.text.split())}» [{c.n}]" for c in chosen]
            text = "\n\n".join(lines)
        if not stream:
            yield text
            return
        for word in re.finditer(r"\S+\s*", text):  # word by word, joining back to exactly `text`
            yield word.group()
