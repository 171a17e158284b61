"""``answer()``: a question in, a grounded answer with checked citations out.

follow-up rewriting -> retrieval -> relevance gate (refuse rather than guess)
-> generation (streamed or not) -> citation check."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, overload

from rag.cite import check, is_refusal
from rag.errors import ConfigError, GenerationError, RagError
from rag.evidence import Evidence
from rag.followup import is_follow_up
from rag.generate import (REFUSAL, GenerationRequest, Generator, Turn, choose_generator,
                          history_turns, resolve)
from rag.generate.extractive import ExtractiveGenerator, is_note
from rag.generate.openai_chat import validate_base_url
from rag.index import NewsIndex, open_index
from rag.ingest.articles import detect_query_language
from rag.news import Answer, Hit
from rag.redact import register_secret, register_url_secrets
from rag.retrieve import Retrieval
from rag.retrieve.timeline import TIMELINE, TimelineIntent, day, split
from rag.settings import DEFAULT_EMBED_MODEL, Settings

log = logging.getLogger(__name__)

#: Below this cosine (best query-passage similarity) nothing retrieved is about
#: the question: refuse. Calibrated for the default embedder by
#: benchmarks/refusal.py (figures in BENCHMARKS.md). Same language, MultiHop-RAG:
#: 0.72 refuses 6% of answerable and lets 17% of "null" questions through.
#: Cross-lingual pairs score lower (at 0.72, 31% of XQuAD's English questions
#: over German paragraphs were refused), so they get 0.67: 7% refused, 15% of
#: questions whose article is missing let through.
#: Other models: set RAG_MIN_SIMILARITY (one threshold; default off).
DEFAULT_MIN_SIMILARITY = 0.72
DEFAULT_MIN_SIMILARITY_CROSS = 0.67
#: ``Answer.generator`` names what wrote the text shown: this when no generator wrote any of
#: it (refused for lack of relevant passages, or the generator failed before writing a word:
#: then ``error`` says why and a note names the generator that failed).
NO_GENERATOR = "none"
FAILED = {
    "en": "Could not write an answer: {error} The most relevant passages are listed below.",
    "de": "Es konnte keine Antwort geschrieben werden: {error} Die relevantesten Passagen stehen unten.",
}


@dataclass(frozen=True)
class AnswerOptions:
    k: int = 5
    mode: str = "hybrid"
    filters: Any = None
    generator: str | None = None
    model: str | None = None  # LLM model name; default settings.llm_model
    #: An OpenAI-compatible server for this call only (the UI's per-browser LLM settings);
    #: with it, the key is ``api_key`` alone: the configured key never goes to a server a caller chose.
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    min_similarity: float | None = None
    retrieval: dict[str, Any] | None = None  # extra RetrievalOptions (max_per_article, now, reranker, ...)


@overload
def answer(question: str, index: str | os.PathLike[str] | NewsIndex = ..., k: int = ...,
           history: Sequence[object] | None = ..., stream: Literal[False] = ..., *,
           settings: Settings | None = ..., **options: Any) -> Answer: ...


@overload
def answer(question: str, index: str | os.PathLike[str] | NewsIndex = ..., k: int = ...,
           history: Sequence[object] | None = ..., *, stream: Literal[True],
           settings: Settings | None = ..., **options: Any) -> Iterator[str | Answer]: ...


def answer(question: str, index: str | os.PathLike[str] | NewsIndex = "index", k: int = 5,
           history: Sequence[object] | None = None, stream: bool = False, *,
           settings: Settings | None = None, **options: Any) -> Answer | Iterator[str | Answer]:
    """Answer ``question`` from the articles in ``index``.

    Options: ``mode`` ("hybrid" | "dense" | "sparse"), ``filters`` (dict: source,
    language, since, until, article_ids), ``generator`` ("openai" | "extractive"
    | "local"), ``model`` (the LLM model name for this call), ``base_url`` and
    ``api_key`` (an OpenAI-compatible server for this call; with ``generator`` unset
    or "auto" it answers), ``min_similarity``, and any retrieval option (``max_per_article``,
    ``merge_neighbours``, ``now``, ``reranker``, ``sparse_weight``).

    With ``stream=True`` returns an iterator of text pieces whose last item is
    the complete ``Answer``."""
    idx = index if isinstance(index, NewsIndex) else open_index(index, settings, create=False)
    opts = _options(k, options)
    events = _answer(idx, question, history_turns(history), opts, stream)
    if stream:
        return events
    result = None
    for event in events:
        if isinstance(event, Answer):
            result = event
    assert result is not None
    return result


def answer_stream(question: str, index: str | os.PathLike[str] | NewsIndex = "index", k: int = 5,
                  history: Sequence[object] | None = None, *, settings: Settings | None = None,
                  **options: Any) -> Iterator[str | Answer]:
    """``answer(..., stream=True)``: the answer's text pieces as they are written, then the
    checked ``Answer`` (its text may differ: unsupported markers removed, sources added)."""
    return answer(question, index, k, history, stream=True, settings=settings, **options)


def _options(k: int, options: dict[str, Any]) -> AnswerOptions:
    known = {"mode", "filters", "generator", "model", "min_similarity", "base_url", "api_key"}
    retrieval = {key: value for key, value in options.items() if key not in known}
    given = {key: options[key] for key in known if key in options}
    for key in ("model", "base_url", "api_key"):  # an empty text box means "not given"
        if isinstance(given.get(key), str):
            given[key] = given[key].strip() or None
    if given.get("base_url"):
        given["base_url"] = validate_base_url(given["base_url"])
    return AnswerOptions(k=k, retrieval=retrieval, **given)


def _call_settings(settings: Settings, opts: AnswerOptions) -> Settings:
    """``settings`` with this call's LLM server, key and model (the index's stay as they are)."""
    changes: dict[str, Any] = {"llm_model": opts.model} if opts.model else {}
    if opts.base_url:
        changes.update(openai_base_url=opts.base_url, openai_api_key=opts.api_key)
    elif opts.api_key:
        changes["openai_api_key"] = opts.api_key
    # Keys typed into the UI: out of every log record (openai's and httpx's too) from now on.
    register_secret(opts.api_key)
    register_url_secrets(opts.base_url)
    return settings.replace(**changes) if changes else settings


def _generator_name(opts: AnswerOptions) -> str | None:
    """A per-call server answers unless another generator was asked for by name."""
    if (opts.base_url or opts.api_key) and opts.generator in (None, "auto"):
        return "openai"
    return opts.generator


def _answer(idx: NewsIndex, question: str, history: tuple[Turn, ...], opts: AnswerOptions,
            stream: bool) -> Iterator[str | Answer]:
    if not isinstance(question, str) or not question.strip():
        raise RagError("the question is empty")
    question = question.strip().encode("utf-8", "replace").decode("utf-8")  # no lone surrogates downstream
    settings = _call_settings(idx.settings, opts)
    language = detect_query_language(question, settings.languages) or "en"
    backend, skipped = resolve(settings, _generator_name(opts))
    notes: list[str] = [f"no local model: {skipped}"] if skipped else []
    generator: Generator | None = None
    failure_reason = None
    try:
        generator = choose_generator(settings, idx.embedder, backend)
    except (GenerationError, ConfigError) as exc:  # e.g. "openai" asked for with no server set:
        failure_reason = str(exc)  # say so, and still show the passages it would have used
    query, rewrite_notes = standalone_query(question, history, generator)
    notes += rewrite_notes
    retrieval: Retrieval = idx.retrieve(query, opts.k, opts.filters, mode=opts.mode, **(opts.retrieval or {}))
    if retrieval.time_intent and (retrieval.time_intent.since or retrieval.time_intent.until):
        notes.append(f"searched articles from {retrieval.time_intent.since or 'the start'} to "
                     f"{retrieval.time_intent.until or 'now'} ('{retrieval.time_intent.phrase}')")
    hits = retrieval.hits
    timeline = retrieval.timeline
    mode = timeline.kind if timeline else ""
    if timeline and hits:
        notes.append(timeline_note(timeline, hits))
    name = generator.name if generator else backend
    cross = bool(retrieval.best_language and language and retrieval.best_language != language)
    if not hits or retrieval.best_similarity < _min_similarity(opts, settings, cross):
        text = REFUSAL.get(language, REFUSAL["en"])
        if stream:
            yield text
        yield Answer(question, text, (), hits, NO_GENERATOR, query, refused=True, notes=tuple(notes), mode=mode)
        return
    if generator is None:
        text = FAILED.get(language, FAILED["en"]).format(error=failure_reason)
        if stream:
            yield text
        notes.append(f"{name} failed before writing anything")
        yield Answer(question, text, (), hits, NO_GENERATOR, query, error=failure_reason, notes=tuple(notes),
                     mode=mode)
        return

    evidence = Evidence(hits, idx.embedder)
    extractive = isinstance(generator, ExtractiveGenerator)
    # Quotes are chosen for what was asked; the words of an earlier question that a
    # follow-up was searched with (no LLM to rewrite it) would pull in other names.
    request = _request(question if extractive else query, hits, history, language, evidence,
                       compact=0 if extractive else settings.context_tokens, timeline=timeline)
    shown = request.passages + tuple(h for h in hits if h not in request.passages)
    pieces: list[str] = []
    error, failure = None, ""
    try:
        for piece in generator.generate(request, stream=stream):
            pieces.append(piece)
            if stream:
                yield piece
    except GenerationError as exc:
        log.warning("generation failed: %s", exc)
        if backend == "local" and (opts.generator or settings.generator) == "auto" and not pieces:
            # The local model was only the automatic choice: quote the sources instead of failing.
            notes.append(f"the local model failed ({exc}); the sources are quoted instead")
            generator = ExtractiveGenerator(idx.embedder)
            request = _request(question, hits, history, language, Evidence(hits, idx.embedder), compact=0,
                               timeline=timeline)
            shown = hits
            pieces = list(generator.generate(request, stream=stream))
            if stream:
                yield from pieces
        else:
            error = str(exc)
            notes.append(f"{generator.name} failed " + ("after writing part of the answer" if pieces
                                                        else "before writing anything"))
            failure = ("\n\n" if pieces else "") + FAILED.get(language, FAILED["en"]).format(error=error)
            if stream:
                yield failure
    text = "".join(pieces)
    assert request.evidence is not None
    checked = check(text, request.evidence, fixed=[line for line in text.splitlines() if is_note(line)])
    # A generator that says the sources lack the answer (and cites nothing) refused too.
    refused = error is None and not checked.citations and is_refusal(checked.text)
    wrote = generator.name if error is None or pieces else NO_GENERATOR
    yield Answer(question, checked.text + failure, checked.citations, shown, wrote, query,
                 unsupported=checked.unsupported, refused=refused, error=error,
                 notes=tuple(notes) + checked.notes, draft=text, mode=mode)


def _request(question: str, hits: tuple[Hit, ...], history: tuple[Turn, ...], language: str,
             evidence: Evidence, compact: int, timeline: TimelineIntent | None = None) -> GenerationRequest:
    """What the generator is given: with ``compact`` > 0 tokens, only the passages
    that have sentences matching the question, shown as those sentences and their
    neighbours (renumbered 1..); else every passage, whole. A timeline keeps as many
    events as fit: each passage's sentences about the topic, without neighbours."""
    if compact > 0:
        excerpts = (evidence.excerpts(timeline.topic, compact, neighbours=0, margin=1.0) if timeline
                    else evidence.excerpts(question, compact))
        if excerpts:
            order = [e.n for e in excerpts]  # passage order: a timeline stays in date order
            return GenerationRequest(question, tuple(hits[n - 1] for n in order), history, language,
                                     tuple(e.text for e in excerpts), evidence.subset(order), timeline)
    return GenerationRequest(question, hits, history, language, evidence=evidence, timeline=timeline)


def timeline_note(timeline: TimelineIntent, hits: tuple[Hit, ...]) -> str:
    """What the CLI and UI say about a timeline or change answer's passages."""
    undated = sum(1 for h in hits if day(h) is None)
    tail = f" ({undated} undated, listed last)" if undated else ""
    if timeline.kind == TIMELINE:
        return f"Timeline of {len(hits) - undated} dated passages in date order{tail}"
    before = split(hits, timeline.pivot)
    return (f"What changed since {timeline.pivot}: {before} passages from before, {len(hits) - undated - before} "
            f"since, each in date order{tail}")


def _min_similarity(opts: AnswerOptions, settings: Settings, cross_lingual: bool) -> float:
    if opts.min_similarity is not None:
        return opts.min_similarity
    if settings.min_similarity is not None:
        return settings.min_similarity
    if settings.embed_model != DEFAULT_EMBED_MODEL:
        return 0.0
    return DEFAULT_MIN_SIMILARITY_CROSS if cross_lingual else DEFAULT_MIN_SIMILARITY


def standalone_query(question: str, history: tuple[Turn, ...],
                     generator: Generator | None) -> tuple[str, list[str]]:
    """Rewrite a follow-up ("and what did Google want?") into a question that
    stands alone, using the conversation: by the LLM when there is one, else by
    adding the previous question's words. What is a follow-up: rag.followup."""
    previous = [t.content for t in history if t.role == "user"]
    verdict = is_follow_up(question, previous[-1] if previous else None)
    log.debug("follow-up: %s (%s)", verdict.follow_up, verdict.reason)
    if not verdict.follow_up:
        return question, []
    rewrite = getattr(generator, "rewrite", None)
    if rewrite is not None:
        try:
            rewritten = rewrite(history, question)
            if rewritten and rewritten != question:
                return rewritten, [f"follow-up rewritten as: {rewritten}"]
        except GenerationError as exc:
            log.info("follow-up rewrite failed (%s); using the previous question's words", exc)
    rewritten = f"{question} ({previous[-1]})"
    return rewritten, [f"follow-up searched with the previous question: {rewritten}"]
