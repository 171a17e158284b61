"""The chat UI: ask questions about the indexed news articles, read cited
answers beside their sources, add articles, change retrieval settings.

    python app.py [--host H] [--port N]   # http://127.0.0.1:7860 (or RAG_UI_HOST / RAG_UI_PORT)

Structure: ``build_app(settings, index)`` lays out the Gradio Blocks;
``Callbacks`` holds the event handlers as plain methods (tested without a
browser, see tests/test_ui.py); ``serve()`` launches; ``main()`` wires it up.

Everything shown comes from untrusted text (articles, uploads, the LLM), so
every string is escaped here before it becomes HTML or chat markdown, links are
built here and only to http(s), and no handler lets an exception reach Gradio:
each logs it and shows a short message instead of a traceback."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import errno
import html
import logging
import os
import queue
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
import unicodedata
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no telemetry, no version check

import gradio as gr  # noqa: E402

import rag  # noqa: E402
from rag.redact import Redactor, install_redaction  # noqa: E402
from rag.settings import env, load_from_env, public  # noqa: E402
from rag.console import configure_logging  # noqa: E402

log = logging.getLogger(__name__)

TITLE = "News Q&A"
EXAMPLES = [
    "Which banks did Facebook contact?",
    "What did Google and Amazon ask banks for?",
    "Welche Banken hat Facebook kontaktiert?",
    "Who is trying to take over Manchester United?",
]
UPLOAD_TYPES = (".txt", ".md", ".markdown", ".html", ".htm", ".json", ".jsonl", ".ndjson", ".csv", ".tsv")
MAX_UPLOAD_FILES = 100
MAX_QUESTION_CHARS = 2000
HISTORY_MESSAGES = 8  # the last 4 question/answer pairs go to rag.answer
KEPT_TURNS = 6  # sources of this many answers stay in the panel (older ones collapsed)
MODES = rag.RETRIEVAL_MODES
STREAM_EVERY = 0.05  # seconds between chat updates while an answer streams
SOURCES_EMPTY = ('<div class="rag-sources"><p class="rag-muted">Ask a question: the passages that support '
                 'the answer appear here, with the quoted sentence highlighted.</p></div>')

# ---------------------------------------------------------------- escaping
#: Characters that start Markdown or HTML markup anywhere in a line. In chat
#: messages they become numeric character references, so model output and
#: article text are shown as typed: no tags, links, images, emphasis, code or
#: tables. Punctuation that is only markup at the start of a line (lists,
#: headings) or in a URL (autolinks) is handled in ``md_escape``.
_MD_SPECIAL = frozenset("\\`*_{}[]<>&~$|#@")
#: ``[1]``, ``[1, 2]``, ``[1;3]`` as the generator writes them.
_CITE = re.compile(r"\[(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\]")
_MARKER = re.compile(r"\s?\[\d{1,3}(?:\s*[,;]\s*\d{1,3})*\]")
_MARKERS_AFTER = re.compile(r"(?:\s?\[\d{1,3}(?:\s*[,;]\s*\d{1,3})*\])+")


def esc(text: object) -> str:
    """HTML-escape anything (quotes included) for text and attribute values."""
    return html.escape("" if text is None else str(text), quote=True)


def md_escape(text: str) -> str:
    """Text that Markdown and HTML both leave as it is: markup characters as
    ``&#N;``, no list/heading/code-block starts, no autolinked URLs."""
    text = re.sub(r"(?m)^[ \t]+", "", text.replace("\r", ""))  # indentation would make a code block
    out = "".join(f"&#{ord(c)};" if c in _MD_SPECIAL else c for c in text)
    out = re.sub(r"(?m)^(\d+)([.)])", lambda m: f"{m.group(1)}&#{ord(m.group(2))};", out)  # ordered lists
    out = re.sub(r"(?m)^([-+=])", lambda m: f"&#{ord(m.group(1))};", out)  # bullets, setext headings
    out = out.replace("://", "&#58;//")  # bare URLs stay text
    return re.sub(r"(?i)\b(www)\.", r"\1&#46;", out)


def safe_url(url: object) -> str | None:
    """``url`` if it is an absolute http(s) URL without anything odd in it, else None."""
    if not isinstance(url, str):
        return None
    url = url.strip()
    if not url or len(url) > 2000 or any(c.isspace() or ord(c) < 32 or c in '"<>\\`' for c in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return url


def safe_name(name: str) -> str:
    """A file name that is only a name: no folders, no '..', no odd characters."""
    base = re.split(r"[\\/]", str(name or ""))[-1]
    base = unicodedata.normalize("NFKC", base).strip().strip(".")
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    stem = re.sub(r"[^\w\-]+", "_", stem, flags=re.UNICODE).strip("_")[:80] or "upload"
    suffix = re.sub(r"[^A-Za-z0-9]+", "", suffix)[:10].lower()
    return f"{stem}.{suffix}" if suffix else stem


@dataclasses.dataclass(frozen=True)
class UISettings:
    """The chat UI's own settings (the library's are ``rag.Settings``); each field's
    environment variable is declared with it."""

    #: Where the UI listens (loopback unless told otherwise).
    host: str = env("RAG_UI_HOST", "127.0.0.1")
    port: int = env("RAG_UI_PORT", 7860, int)
    #: Both set: the UI asks for them.
    user: str | None = env("RAG_UI_USER", None)
    password: str | None = env("RAG_UI_PASSWORD", None, secret=True)
    #: Largest file the upload accepts.
    upload_max_mb: float = env("RAG_UPLOAD_MAX_MB", 20.0, float)
    #: Questions answered at the same time.
    concurrency: int = env("RAG_UI_CONCURRENCY", 4, int)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, dotenv: str | None = ".env",
                 **overrides: Any) -> UISettings:
        return load_from_env(cls, environ, dotenv, overrides)


class Scrubber:
    """Last line of defence for anything shown: the API key, the UI password
    and credentials inside URLs never leave the server (rag.settings.Redactor,
    the same redaction the server log gets)."""

    def __init__(self, settings: rag.Settings, ui: UISettings) -> None:
        self._redact = Redactor(settings, ui)

    def __call__(self, text: str) -> str:
        return self._redact(text)


# ---------------------------------------------------------------- rendering
def render_answer(text: str, turn: int, n_passages: int, unsupported: Sequence[rag.Unsupported] = ()) -> str:
    """Chat markdown for an answer: escaped text, ``[n]`` as links to source n
    in the panel, sentences the citation check could not support marked."""
    out: list[str] = []
    pos = 0
    for start, end, reason in _flag_spans(text, unsupported):
        out.append(_render_plain(text[pos:start], turn, n_passages))
        out.append(f'<span class="rag-flag" title="{esc("Not supported by the sources: " + reason)}">'
                   f"⚠ {_render_plain(text[start:end], turn, n_passages)}</span>")
        pos = end
    out.append(_render_plain(text[pos:], turn, n_passages))
    rendered = "".join(out)
    if unsupported:
        items = "".join(f"\n- {md_escape(u.sentence)} &#40;{md_escape(u.reason)}&#41;" for u in unsupported)
        rendered += f"\n\n**⚠ Not supported by the cited sources:**\n{items}"
    return rendered


def _render_plain(text: str, turn: int, n_passages: int) -> str:
    out: list[str] = []
    pos = 0
    for m in _CITE.finditer(text):
        out.append(md_escape(text[pos:m.start()]))
        numbers = [int(x) for x in re.split(r"\s*[,;]\s*", m.group(1))]
        if all(1 <= n <= n_passages for n in numbers):
            out.append("".join(f'<a class="rag-cite" href="#src-{turn}-{n}" title="Show source {n}">'
                               f"&#91;{n}&#93;</a>" for n in numbers))
        else:
            out.append(md_escape(m.group(0)))
        pos = m.end()
    out.append(md_escape(text[pos:]))
    return "".join(out)


def _flag_spans(text: str, unsupported: Sequence[rag.Unsupported]) -> list[tuple[int, int, str]]:
    """Where each flagged sentence is in ``text``. The checker reports them
    without their [n] markers and with whitespace collapsed, so search a
    normalised copy that remembers each character's offset."""
    if not unsupported:
        return []
    chars: list[str] = []
    offsets: list[int] = []
    i = 0
    while i < len(text):
        m = _MARKER.match(text, i)
        if m:
            i = m.end()
            continue
        c = " " if text[i].isspace() else text[i]
        if not (c == " " and chars and chars[-1] == " "):
            chars.append(c)
            offsets.append(i)
        i += 1
    norm = "".join(chars)
    spans: list[tuple[int, int, str]] = []
    for u in unsupported:
        sentence = " ".join(u.sentence.split())
        k = norm.find(sentence) if sentence else -1
        if k < 0:
            continue
        start, end = offsets[k], offsets[k + len(sentence) - 1] + 1
        m = _MARKERS_AFTER.match(text, end)
        spans.append((start, m.end() if m else end, u.reason))
    spans.sort()
    kept: list[tuple[int, int, str]] = []
    for span in spans:
        if not kept or span[0] >= kept[-1][1]:
            kept.append(span)
    return kept


def _date(value: object) -> str:
    return str(value)[:10] if value else ""


def _passage_html(text: str, quote: str | None, offset: int | None) -> str:
    """The passage, escaped, with ``quote`` highlighted where it is."""
    where = -1
    if quote:
        if offset is not None and 0 <= offset and text[offset:offset + len(quote)] == quote:
            where = offset
        else:
            where = text.find(quote)
    if where < 0 or not quote:
        body = esc(text)
        if quote and quote != text:
            label = "Headline" if offset is not None and offset < 0 else "Supporting sentence"
            body += (f'<div class="rag-quote-alone">{label}: '
                     f'<mark class="rag-quote">{esc(quote)}</mark></div>')
        return body
    return (esc(text[:where]) + f'<mark class="rag-quote">{esc(quote)}</mark>'
            + esc(text[where + len(quote):]))


def _card(turn: int, n: int, hit: rag.Hit, citation: rag.Citation | None) -> str:
    title = hit.title or hit.article_id
    meta = [esc(x) for x in (hit.source, _date(hit.published_at)) if x]
    url = safe_url(hit.url)
    if url:
        shown = url if len(url) <= 70 else url[:67] + "…"
        meta.append(f'<a href="{esc(url)}" target="_blank" rel="noopener noreferrer nofollow">{esc(shown)}</a>')
    quote = citation.quote if citation else None
    offset = (citation.start - hit.start if citation.start >= 0 else -1) if citation else None
    cited = " rag-cited" if citation else ""
    return (f'<div class="rag-src{cited}" id="src-{turn}-{n}">'
            f'<div class="rag-src-title"><span class="rag-badge">{n}</span> {esc(title)}</div>'
            f'<div class="rag-meta">{" · ".join(meta)}{" · " if meta else ""}'
            f'id <code>{esc(hit.article_id)}</code></div>'
            f'<blockquote class="rag-passage">{_passage_html(hit.text, quote, offset)}</blockquote></div>')


def render_sources(answer: rag.Answer, turn: int) -> str:
    """The sources of one answer: cited passages first (quote highlighted),
    then the other passages the generator saw."""
    parts = [f'<div class="rag-turn" id="turn-{turn}">',
             f'<div class="rag-question">Sources for: <b>{esc(answer.question)}</b></div>']
    if answer.error:
        parts.append(f'<div class="rag-alert">⚠ The language model failed: {esc(answer.error)} '
                     f'The passages below are the ones it would have used.</div>')
    if answer.refused:
        parts.append('<div class="rag-note">No indexed passage was relevant enough to answer this question.</div>')
    if answer.unsupported:
        items = "".join(f"<li>{esc(u.sentence)} <span class=\"rag-muted\">({esc(u.reason)})</span></li>"
                        for u in answer.unsupported)
        parts.append(f'<div class="rag-flags">⚠ <b>Not supported by the cited sources:</b><ul>{items}</ul></div>')
    cited: dict[int, rag.Citation] = {}
    for c in answer.citations:
        if 1 <= c.n <= len(answer.hits):
            cited.setdefault(c.n, c)
    for n, c in cited.items():
        parts.append(_card(turn, n, answer.hits[n - 1], c))
    others = [(n, h) for n, h in enumerate(answer.hits, 1) if n not in cited]
    if others:
        cards = "".join(_card(turn, n, h, None) for n, h in others)
        if cited or answer.refused:
            label = "Closest passages found" if answer.refused else "Other passages the answer was based on"
            parts.append(f"<details><summary>{label} ({len(others)})</summary>{cards}</details>")
        else:
            parts.append(f'<div class="rag-subhead">Most relevant passages</div>{cards}')
    if not answer.hits:
        parts.append('<div class="rag-note">No passages were found.</div>')
    footer = [f"answered by {esc(answer.generator)}"]
    if answer.query and answer.query != answer.question:
        footer.append(f"searched for: {esc(answer.query)}")
    footer += [esc(note) for note in answer.notes]
    parts.append(f'<div class="rag-muted rag-footer">{" · ".join(footer)}</div></div>')
    return "".join(parts)


def sources_panel(turns: Sequence[dict[str, str]]) -> str:
    """Latest answer's sources open, earlier ones collapsed (their [n] links still work)."""
    if not turns:
        return SOURCES_EMPTY
    latest, *older = list(reversed(turns))
    earlier = "".join(f'<details class="rag-older"><summary>Earlier: {esc(t["question"])}</summary>'
                      f'{t["html"]}</details>' for t in older)
    return f'<div class="rag-sources">{latest["html"]}{earlier}</div>'


def message_html(kind: str, text: str) -> str:
    icon = {"error": "⚠", "ok": "✓", "busy": "…"}.get(kind, "")
    return f'<div class="rag-status rag-{kind}">{icon} {esc(text)}</div>'


def friendly(exc: BaseException) -> str:
    """A short message for the user; details go to the log."""
    if isinstance(exc, rag.IndexLockedError):
        return ("Another upload or 'rag ingest' is writing to the index right now. "
                "Try again when it has finished.")
    if isinstance(exc, (rag.InvalidFilterError, rag.InvalidQueryError)):
        return f"Invalid search setting: {exc}"
    if isinstance(exc, rag.RagError):
        return str(exc)
    return f"Something went wrong ({type(exc).__name__}). The details are in the server log."


def _valid_date(value: str | None, name: str) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise rag.InvalidFilterError(f"'{name}' must be a date like 2023-10-31, got {value!r}") from None
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise rag.InvalidFilterError(f"'{name}' must be a date like 2023-10-31, got {value!r}")
    return value


def new_session() -> dict[str, Any]:
    """Per-browser-tab state: what the model is told (raw text), what the
    chat shows (rendered), and the sources panel of each answer."""
    return {"history": [], "chat": [], "turns": [], "turn": 0}


# ---------------------------------------------------------------- callbacks
class Callbacks:
    """The UI's event handlers, as plain methods over one index."""

    def __init__(self, settings: rag.Settings, index: rag.NewsIndex, warm_up: bool = False,
                 ui: UISettings | None = None) -> None:
        self.settings = settings
        self.ui = ui or UISettings()
        self.index = index
        self.scrub = Scrubber(settings, self.ui)
        if warm_up:
            self.warm_up()

    def warm_up(self) -> None:
        """Load the models at launch, in the background, not at the first question: the
        local LLM (its state is shown, see generator_html) and the embedding model."""
        try:
            rag.generator_status(self.settings, start=True)
        except Exception:  # shown by generator_html; the UI starts regardless
            log.exception("starting the answer generator failed")

        def embed() -> None:
            try:
                self.index.embedder.embed_query("warm-up")
            except Exception:
                log.exception("loading the embedding model failed")

        threading.Thread(target=embed, name="rag-warm-up", daemon=True).start()

    def generator_status(self) -> rag.GeneratorStatus:
        try:
            return rag.generator_status(self.settings)
        except Exception as exc:
            log.exception("generator status failed")
            return rag.GeneratorStatus("extractive", "unavailable", friendly(exc))

    def generator_html(self) -> str:
        """One line on who writes the answers: the local model loading / ready / unavailable
        and why, an LLM server, or quotes without an LLM."""
        st = self.generator_status()
        if st.backend == "local":
            label = {"ready": ("ok", "✓ Answers are written by the local model"),
                     "loading": ("busy", "… Loading the local model"),
                     "idle": ("busy", "… The local model starts with the first question"),
                     "unavailable": ("error", "⚠ The local model is unavailable; answers quote the sources")}
            kind, text = label.get(st.state, ("busy", st.state))
        elif st.backend == "openai":
            kind, text = "ok", "✓ Answers are written by an LLM server"
        elif "no local model" in st.detail:
            kind, text = "warn", "⚠ No language model: answers quote the sources"
        else:
            kind, text = "ok", "Answers quote the sources (no language model)"
        return self.scrub(f'<div class="rag-status rag-{kind} rag-generator" data-state="{esc(st.state)}" '
                          f'id="rag-generator">{esc(text)} <span class="rag-muted">({esc(st.detail)})</span></div>')

    def poll_generator(self) -> tuple[str, Any]:
        """The status line, and the timer kept running only while something is loading."""
        html_line = self.generator_html()
        loading = 'data-state="loading"' in html_line
        return html_line, gr.Timer(active=loading)

    # ---- asking
    def ask(self, question: str | None, state: dict[str, Any] | None, k: float = 5, mode: str = "hybrid",
            sources: Sequence[str] | None = None, since: str | None = None, until: str | None = None,
            generator: str | None = None, model: str | None = None,
            ) -> Iterator[tuple[list[dict[str, str]], str, dict[str, Any], str]]:
        """Stream an answer: yields (chat messages, sources panel HTML, state, question box)."""
        state = dict(state or new_session())
        chat = list(state["chat"])
        turns = list(state["turns"])
        question = (question or "").strip()
        if not question:
            yield list(chat), sources_panel(turns), state, ""
            return
        question = question[:MAX_QUESTION_CHARS]
        turn = state["turn"] + 1
        chat.append({"role": "user", "content": md_escape(self.scrub(question))})
        waiting = self.generator_status()
        loading = waiting.backend == "local" and waiting.state == "loading" and generator in (None, "auto", "local")
        placeholder = "Waiting for the local model to finish loading…" if loading else "Searching the articles…"
        chat.append({"role": "assistant", "content": placeholder})
        busy = ('<div class="rag-sources"><p class="rag-muted">Searching…</p></div>' if not turns
                else sources_panel(turns))
        yield list(chat), busy, state, ""
        final: rag.Answer | None = None
        text = ""
        try:
            options = self._options(k, mode, sources, since, until, generator)
            model = (model or "").strip()[:200]
            if model and generator != "extractive":
                options["model"] = model
            events = rag.answer_stream(question, self.index, options.pop("k"),
                                       history=state["history"][-HISTORY_MESSAGES:], **options)
            last = 0.0
            for event in events:
                if isinstance(event, rag.Answer):
                    final = event
                    break
                text += event
                now = time.monotonic()
                if now - last >= STREAM_EVERY:
                    last = now
                    chat[-1] = {"role": "assistant", "content": self._render(text, turn) + " ▌"}
                    yield list(chat), busy, state, ""
            if final is None:
                raise RuntimeError("the answer stream ended without an answer")
        except Exception as exc:  # the callback edge: log it, show a short message, never a traceback
            if isinstance(exc, rag.RagError):
                log.warning("question failed: %s", exc)
            else:
                log.exception("question failed")
            note = md_escape(self.scrub(friendly(exc)))
            partial = (self._render(text, turn) + "\n\n") if text else ""
            chat[-1] = {"role": "assistant", "content": f"{partial}⚠ {note}"}
            state = {**state, "chat": chat}  # the message stays; the model's history does not get it
            yield list(chat), sources_panel(turns), state, ""
            return
        chat[-1] = {"role": "assistant", "content": self._render(final.text, turn, len(final.hits), final.unsupported)}
        turns = (turns + [{"question": self.scrub(question), "html": self.scrub(render_sources(final, turn))}])
        turns = turns[-KEPT_TURNS:]
        history = state["history"] + [{"role": "user", "content": question},
                                      {"role": "assistant", "content": self.scrub(final.text)}]
        state = {"history": history[-HISTORY_MESSAGES * 2:], "chat": chat, "turns": turns, "turn": turn}
        yield chat, sources_panel(turns), state, ""

    def _render(self, text: str, turn: int, n_passages: int = 0,
                unsupported: Sequence[rag.Unsupported] = ()) -> str:
        """Chat markdown with secrets scrubbed before escaping (escaping changes
        how a key is spelled) and after (belt and braces)."""
        flagged = [dataclasses.replace(u, sentence=self.scrub(u.sentence)) for u in unsupported]
        return self.scrub(render_answer(self.scrub(text), turn, n_passages, flagged))

    def clear(self) -> tuple[list[dict[str, str]], str, dict[str, Any], str]:
        return [], SOURCES_EMPTY, new_session(), ""

    def _options(self, k: float, mode: str, sources: Sequence[str] | None, since: str | None,
                 until: str | None, generator: str | None) -> dict[str, Any]:
        try:
            n = int(k)
        except (TypeError, ValueError):
            n = 5
        if mode not in MODES:
            raise rag.InvalidQueryError(f"retrieval mode must be one of {', '.join(MODES)}")
        filters: dict[str, Any] = {}
        chosen = [s for s in (sources or []) if isinstance(s, str) and s]
        if chosen:
            filters["source"] = chosen
        if (start := _valid_date(since, "from")) is not None:
            filters["since"] = start
        if (end := _valid_date(until, "until")) is not None:
            filters["until"] = end
        if "since" in filters and "until" in filters and filters["since"] > filters["until"]:
            raise rag.InvalidFilterError("the 'from' date is after the 'until' date")
        options: dict[str, Any] = {"k": max(1, min(n, 20)), "mode": mode, "filters": filters or None}
        if generator:
            options["generator"] = generator
        return options

    # ---- uploading
    def upload(self, files: Sequence[Any] | None) -> Iterator[tuple[str, str, Any, Any]]:
        """Index uploaded files: yields (status HTML, stats HTML, source filter update, file box update)."""
        keep = gr.skip()
        try:
            paths = [Path(str(getattr(f, "name", f))) for f in (files or []) if f]
            if not paths:
                yield message_html("error", "Choose one or more files first."), keep, keep, keep
                return
            yield message_html("busy", f"Checking {len(paths)} file(s)…"), keep, keep, keep
            folder = Path(tempfile.mkdtemp(prefix="rag-upload-"))
            rejected, names = self._stage(paths, folder)
            if not names:
                shutil.rmtree(folder, ignore_errors=True)
                yield (self.scrub(report_html(None, rejected, names, folder)), self.stats_html(),
                       self.source_update(), keep)
                return
            events: queue.Queue[tuple[str, Any]] = queue.Queue()
            worker = threading.Thread(target=self._ingest_worker, args=(names, folder, events),
                                      name="rag-upload", daemon=True)
            worker.start()
            while True:
                kind, value = events.get()
                if kind == "progress":
                    stage, done, total = value
                    yield message_html("busy", progress_text(stage, done, total)), keep, keep, keep
                    continue
                if kind == "error":
                    yield message_html("error", self.scrub(friendly(value))), self.stats_html(), keep, keep
                    return
                yield (self.scrub(report_html(value, rejected, names, folder)), self.stats_html(),
                       self.source_update(), None)
                return
        except Exception as exc:  # the callback edge
            log.exception("upload failed")
            yield message_html("error", self.scrub(friendly(exc))), keep, keep, keep

    def _stage(self, paths: list[Path], folder: Path) -> tuple[list[tuple[str, str]], dict[Path, str]]:
        """Copy acceptable uploads into ``folder`` under sanitised names.
        Returns (rejected (name, reason), {copied path: name shown})."""
        limit = self.ui.upload_max_mb * 1_000_000
        rejected: list[tuple[str, str]] = []
        names: dict[Path, str] = {}
        used: set[str] = set()
        for n, src in enumerate(paths):
            shown = safe_name(src.name)
            if n >= MAX_UPLOAD_FILES:
                rejected.append((shown, f"more than {MAX_UPLOAD_FILES} files in one upload"))
                continue
            suffix = Path(shown).suffix.lower()
            if suffix not in UPLOAD_TYPES:
                reason = f"not an accepted file type ({suffix or 'no extension'}); accepted: {', '.join(UPLOAD_TYPES)}"
                rejected.append((shown, reason))
                continue
            try:
                size = src.stat().st_size
                if not src.is_file():
                    raise OSError("not a regular file")
            except OSError:
                rejected.append((shown, "the uploaded file could not be read"))
                continue
            if size > limit:
                rejected.append((shown, f"too large: {size / 1e6:.1f} MB > limit {self.ui.upload_max_mb:g} MB"))
                continue
            name, i = shown, 1
            while name.lower() in used:
                i += 1
                name = f"{Path(shown).stem}-{i}{Path(shown).suffix}"
            used.add(name.lower())
            target = folder / name
            shutil.copyfile(src, target)
            names[target] = name
        return rejected, names

    def _ingest_worker(self, names: dict[Path, str], folder: Path, events: queue.Queue[tuple[str, Any]]) -> None:
        """Runs in a thread so the handler can stream progress. Removes the
        temporary folder whatever happens (also when the browser went away),
        before it reports the result."""
        result: tuple[str, Any]
        try:
            # Articles are recorded under "upload/<name>", not the temporary path, so
            # uploading an edited file again updates its article.
            report = self.index.ingest(list(names), progress=lambda s, d, t: events.put(("progress", (s, d, t))),
                                       names={str(path): f"upload/{name}" for path, name in names.items()})
            result = ("done", report)
        except Exception as exc:
            if isinstance(exc, rag.RagError):
                log.warning("upload ingest failed: %s", exc)
            else:
                log.exception("upload ingest failed")
            result = ("error", exc)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        events.put(result)

    # ---- index statistics
    def stats_html(self) -> str:
        try:
            s = self.index.stats().to_dict()
        except Exception as exc:
            log.exception("index stats failed")
            return message_html("error", f"Index statistics are unavailable: {friendly(exc)}")
        parts = [f"<b>{s.get('articles', 0):,}</b> articles", f"<b>{s.get('chunks', 0):,}</b> chunks",
                 f"embedding model <code>{esc(s.get('embedding_model', '?'))}</code>"]
        if s.get("updated"):
            parts.append(f"last update {esc(str(s['updated'])[:19].replace('T', ' '))}")
        if s.get("published_from") or s.get("published_to"):
            first, last = _date(s.get("published_from")), _date(s.get("published_to"))
            parts.append(f"articles dated {esc(first)} – {esc(last)}")
        if s.get("sources"):
            parts.append(f"{len(s['sources'])} sources")
        return self.scrub(f'<div class="rag-stats" id="rag-stats">{" · ".join(parts)}</div>')

    def source_choices(self) -> list[str]:
        try:
            return sorted((s for s in self.index.stats().sources if s), key=str.lower)
        except Exception:
            log.exception("index stats failed")
            return []

    def source_update(self) -> Any:
        return gr.Dropdown(choices=self.source_choices())

    def refresh(self) -> tuple[str, Any]:
        return self.stats_html(), self.source_update()

    def config_html(self) -> str:
        """What is configured, from Settings.public() (never the key itself; the LLM
        server's URL without its userinfo or a key in its query)."""
        shown, ui = self.settings.public(), public(self.ui)
        rows = [("Index folder", shown.get("index_dir")), ("Embedding model", shown.get("embed_model")),
                ("Generator", shown.get("generator")), ("LLM server", shown.get("openai_base_url") or "not set"),
                ("API key", shown.get("openai_api_key")), ("Upload limit", f"{ui.get('upload_max_mb')} MB"),
                ("Concurrent questions", ui.get("concurrency"))]
        body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
        return self.scrub(f'<div class="rag-muted">Configuration (set in the environment or .env)</div>'
                          f'<table class="rag-config">{body}</table>')


def progress_text(stage: str, done: int, total: int) -> str:
    what = {"reading": ("Reading files", "file"), "embedding": ("Embedding", "chunk"),
            "writing": ("Writing the index", "")}.get(stage, (stage.capitalize(), ""))
    if stage == "writing":
        return "Writing the index…" if done < total else "Index written."
    return f"{what[0]}… {done}/{total} {what[1]}{'s' if total != 1 else ''}"


def report_html(report: rag.IngestReport | None, rejected: Sequence[tuple[str, str]], names: dict[Path, str],
                folder: Path) -> str:
    """What an upload did, per file, in words."""
    def shown(path: str) -> str:
        path = path.removeprefix("upload/")
        for p, name in names.items():
            path = path.replace(str(p), name)
        return path.replace(str(folder) + os.sep, "").replace(str(folder), "upload")

    lines: list[str] = []
    failed: list[tuple[str, str]] = list(rejected)
    counts = report.counts() if report else {"added": 0, "updated": 0, "unchanged": 0, "chunks_added": 0}
    if report:
        failed += [(shown(f.path), shown(f.reason)) for f in report.failed]
    ok = counts["added"] or counts["updated"]
    if ok:
        done = [f"{counts['added']} new article{'s' if counts['added'] != 1 else ''}"] if counts["added"] else []
        if counts["updated"]:
            done.append(f"{counts['updated']} updated article{'s' if counts['updated'] != 1 else ''}")
        summary = f"Indexed {' and '.join(done)} ({counts['chunks_added']} passages)"
    else:
        summary = "No new articles were indexed"
    if counts["unchanged"]:
        summary += f"; {counts['unchanged']} already indexed unchanged"
    kind = "ok" if ok and not failed else ("error" if not ok else "warn")
    icon = {"ok": "✓", "warn": "⚠", "error": "⚠"}[kind]
    lines.append(f'<div class="rag-status rag-{kind}">{icon} {esc(summary)}.</div>')
    if report and (report.added or report.updated):
        ids = list(report.added) + list(report.updated)
        more = f" and {len(ids) - 10} more" if len(ids) > 10 else ""
        lines.append(f'<div class="rag-muted">Article ids: {", ".join(f"<code>{esc(i)}</code>" for i in ids[:10])}'
                     f"{more}</div>")
    if failed:
        items = "".join(f"<li><b>{esc(name)}</b>: {esc(reason)}</li>" for name, reason in failed[:50])
        lines.append(f'<div class="rag-flags">Not indexed ({len(failed)}):<ul>{items}</ul></div>')
    if report and report.duplicates:
        items = "".join(f"<li><b>{esc(shown(d.origin))}</b>: same text as article "
                        f"<code>{esc(d.existing_id)}</code></li>" for d in report.duplicates[:50])
        lines.append(f'<div class="rag-note">Duplicates skipped ({len(report.duplicates)}):<ul>{items}</ul></div>')
    if report and report.notes:
        items = "".join(f"<li>{esc(shown(n))}</li>" for n in report.notes[:20])
        lines.append(f'<div class="rag-muted">Notes:<ul>{items}</ul></div>')
    return "".join(lines)


# ---------------------------------------------------------------- layout
CSS = """
.rag-sources { font-size: 0.92rem; line-height: 1.45; }
.rag-question { margin: 0 0 .5rem; }
.rag-src { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: .55rem .7rem; margin: .5rem 0;
  background: var(--background-fill-secondary); transition: box-shadow .3s; }
.rag-src.rag-cited { border-left: 4px solid var(--color-accent); }
.rag-src.rag-flash { box-shadow: 0 0 0 3px var(--color-accent); }
.rag-src-title { font-weight: 600; }
.rag-badge { display: inline-block; min-width: 1.5em; text-align: center; border-radius: 999px; padding: 0 .4em;
  background: var(--color-accent); color: white; font-size: .8em; margin-right: .25em; }
.rag-meta { color: var(--body-text-color-subdued); font-size: .85em; margin: .15rem 0 .3rem; word-break: break-all; }
.rag-passage { margin: .2rem 0 0; padding-left: .6rem; border-left: 2px solid var(--border-color-primary);
  white-space: pre-line; max-height: 16rem; overflow-y: auto; }
mark.rag-quote { background: #fde68a; color: #111; padding: 0 .1em; border-radius: 3px; }
.rag-alert { background: #fee2e2; color: #7f1d1d; border-radius: 6px; padding: .45rem .6rem; margin: .4rem 0; }
.rag-flags { background: #fef3c7; color: #78350f; border-radius: 6px; padding: .45rem .6rem; margin: .4rem 0; }
.rag-note { background: var(--background-fill-secondary); border-radius: 6px; padding: .45rem .6rem; margin: .4rem 0; }
.rag-muted { color: var(--body-text-color-subdued); font-size: .85em; }
.rag-footer { margin-top: .4rem; }
.rag-subhead { font-weight: 600; margin-top: .5rem; }
.rag-flag { background: #fef3c7; color: #78350f; border-bottom: 2px dotted #d97706; }
a.rag-cite { display: inline-block; font-size: .78em; font-weight: 600; text-decoration: none; border-radius: 999px;
  padding: 0 .35em; margin: 0 .1em; background: var(--color-accent-soft); color: var(--color-accent);
  vertical-align: super; line-height: 1.2; }
.rag-status { padding: .35rem .5rem; border-radius: 6px; }
.rag-ok { background: #dcfce7; color: #14532d; } .rag-warn { background: #fef3c7; color: #78350f; }
.rag-error { background: #fee2e2; color: #7f1d1d; } .rag-busy { background: var(--background-fill-secondary); }
.rag-stats { font-size: .9rem; color: var(--body-text-color-subdued); }
.rag-generator { font-size: .9rem; margin-top: .2rem; }
.rag-config { font-size: .85em; border-collapse: collapse; margin-top: .3rem; }
.rag-config, .rag-config tr, .rag-config th, .rag-config td { border: 0 !important; background: none !important; }
.rag-config th, .rag-config td { padding: .1rem .8rem .1rem 0 !important; text-align: left; vertical-align: top; }
.rag-config th { font-weight: 600; white-space: nowrap; }
"""

#: [n] in an answer scrolls the sources panel to passage n and flashes it
#: (and opens the collapsed block that holds it), instead of navigating.
HEAD = """<script>
document.addEventListener("click", function (ev) {
  var a = ev.target && ev.target.closest ? ev.target.closest("a[href^='#src-']") : null;
  if (!a) return;
  var id = (a.getAttribute("href") || "").slice(1);
  if (!/^src-[0-9]+-[0-9]+$/.test(id)) return;
  ev.preventDefault(); ev.stopPropagation();
  var el = document.getElementById(id);
  if (!el) return;
  for (var p = el.parentElement; p; p = p.parentElement) { if (p.tagName === "DETAILS") p.open = true; }
  el.scrollIntoView({behavior: "smooth", block: "center"});
  el.classList.remove("rag-flash"); void el.offsetWidth; el.classList.add("rag-flash");
  setTimeout(function () { el.classList.remove("rag-flash"); }, 1800);
}, true);
</script>"""


def build_app(settings: rag.Settings, index: rag.NewsIndex, warm_up: bool = True,
              ui: UISettings | None = None) -> gr.Blocks:
    """The Gradio app over ``index``. Launch it with ``serve()``. ``warm_up``: start loading
    the models now, in the background (tests of the layout pass False)."""
    ui = ui or UISettings()
    cb = Callbacks(settings, index, warm_up=warm_up, ui=ui)
    generators = [("Automatic (LLM server if configured, else the local model, else quotes)", "auto"),
                  ("Local model (bundled, offline)", "local"),
                  ("LLM (OpenAI-compatible server)", "openai"),
                  ("Extractive (no LLM: quotes the sources)", "extractive")]
    if settings.generator not in {v for _, v in generators}:
        generators.append((settings.generator, settings.generator))
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        state = gr.State(new_session())
        gr.Markdown(f"## {TITLE}\nAsk about the indexed news articles. Answers cite their sources: "
                    "click a number like [1] to see the passage it comes from.")
        stats = gr.HTML(cb.stats_html(), elem_id="stats")
        generator_line = gr.HTML(cb.generator_html(), elem_id="generator-status")
        generator_timer = gr.Timer(1.0, active='data-state="loading"' in cb.generator_html())
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=360):
                chatbot = gr.Chatbot(label="Conversation", elem_id="chat", height=520, latex_delimiters=[],
                                     feedback_options=None, buttons=["copy"], sanitize_html=True,
                                     placeholder="Ask a question about the news articles, or pick an example below.")
                with gr.Row():
                    question = gr.Textbox(show_label=False, placeholder="Ask a question…", elem_id="question",
                                          scale=5, lines=1, max_lines=4, max_length=MAX_QUESTION_CHARS,
                                          autofocus=True)
                    ask = gr.Button("Ask", variant="primary", scale=1, min_width=80, elem_id="ask")
                gr.Examples(EXAMPLES, inputs=[question], label="Example questions")
                clear = gr.Button("New conversation", size="sm", elem_id="clear")
            with gr.Column(scale=2, min_width=320):
                gr.Markdown("### Sources")
                sources = gr.HTML(SOURCES_EMPTY, elem_id="sources", max_height=700)
        with gr.Row(equal_height=False):
            with gr.Column():
                with gr.Accordion("Search and answer settings", open=False, elem_id="settings"):
                    k = gr.Slider(1, 20, value=5, step=1, label="Passages given to the answer", elem_id="k")
                    mode = gr.Radio(list(MODES), value="hybrid", label="Retrieval",
                                    info="hybrid = meaning + keywords; dense = meaning only; sparse = keywords only")
                    source_filter = gr.Dropdown(cb.source_choices(), value=[], multiselect=True,
                                                label="Only these sources (none = all)", elem_id="source-filter")
                    with gr.Row():
                        since = gr.Textbox(label="Published from", placeholder="YYYY-MM-DD", elem_id="since")
                        until = gr.Textbox(label="Published until", placeholder="YYYY-MM-DD", elem_id="until")
                    generator = gr.Radio(generators, value=settings.generator, label="Answer generator",
                                         elem_id="generator")
                    model = gr.Textbox(value=settings.llm_model, label="LLM model name", elem_id="model",
                                       max_length=200)
                    gr.HTML(cb.config_html())
            with gr.Column():
                with gr.Accordion("Add articles", open=False, elem_id="upload-box"):
                    gr.Markdown(f"Files: {', '.join(UPLOAD_TYPES)} — at most {ui.upload_max_mb:g} MB each. "
                                "A .txt/.md/.html file is one article; .json/.jsonl/.csv hold many "
                                "(fields: text, title, url, source, published_at, …).")
                    files = gr.File(file_count="multiple", label="Article files", elem_id="upload")
                    add = gr.Button("Add to index", variant="primary", elem_id="add")
                    upload_status = gr.HTML("", elem_id="upload-status")

        ask_inputs = [question, state, k, mode, source_filter, since, until, generator, model]
        ask_outputs = [chatbot, sources, state, question]
        for trigger in (question.submit, ask.click):
            trigger(cb.ask, ask_inputs, ask_outputs, concurrency_limit=ui.concurrency,
                    concurrency_id="answer", show_progress="hidden", api_visibility="private")
        clear.click(cb.clear, None, ask_outputs, queue=False, api_visibility="private")
        chatbot.clear(cb.clear, None, ask_outputs, queue=False, api_visibility="private")
        # Uploads go one at a time, in their own group: they never hold up questions.
        add.click(cb.upload, [files], [upload_status, stats, source_filter, files], concurrency_limit=1,
                  concurrency_id="ingest", show_progress="minimal", api_visibility="private")
        demo.load(cb.refresh, None, [stats, source_filter], api_visibility="private")
        demo.load(cb.poll_generator, None, [generator_line, generator_timer], api_visibility="private")
        generator_timer.tick(cb.poll_generator, None, [generator_line, generator_timer], api_visibility="private",
                             show_progress="hidden")
    demo.queue(default_concurrency_limit=ui.concurrency)
    return demo


def serve(demo: gr.Blocks, ui: UISettings, *, port: int | None = None, block: bool = True,
          quiet: bool = False) -> Any:
    """Launch ``demo`` on ui.host:ui.port (loopback by default)."""
    auth = None
    if ui.user and ui.password:
        auth = (ui.user, ui.password)
    elif ui.user or ui.password:
        log.warning("set both RAG_UI_USER and RAG_UI_PASSWORD to require a login; the UI is open")
    if auth is None and ui.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("the UI listens on %s without a login; set RAG_UI_USER and RAG_UI_PASSWORD", ui.host)
    return demo.launch(server_name=ui.host, server_port=port or ui.port, auth=auth,
                       max_file_size=int(ui.upload_max_mb * 1_000_000), share=False, show_error=False,
                       prevent_thread_lock=not block, quiet=quiet, ssr_mode=False, css=CSS, head=HEAD,
                       footer_links=["settings"])


def port_problem(host: str, port: int) -> str | None:
    """Why the UI cannot listen on host:port (taken, or not an address here), or None.
    Checked before the models load, so the answer is one line instead of a traceback."""
    if not 0 < port < 65536:
        return f"port {port} is not a TCP port (1-65535); set --port N or RAG_UI_PORT=N"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"cannot listen on {host}:{port}: {exc.strerror}; set --host or RAG_UI_HOST"
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (f"port {port} on {host} is already in use (another 'python app.py'?); "
                        f"pick another with --port N or RAG_UI_PORT=N")
            return f"cannot listen on {host}:{port}: {exc.strerror}; pick another with --port N or --host H"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The news Q&A chat UI.")
    parser.add_argument("--host", help="address to listen on (default: RAG_UI_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default: RAG_UI_PORT or 7860)")
    args = parser.parse_args(argv)
    # INFO, lines terminal-safe; libraries quiet (no DEBUG from bm25s, no "Loading weights" bars).
    configure_logging(1, "%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = rag.Settings.from_env()
        ui = UISettings.from_env()
        ui = dataclasses.replace(ui, host=args.host or ui.host, port=ui.port if args.port is None else args.port)
        # Before anything can log: the server log never shows the key, the UI password or
        # credentials inside the LLM server's URL (openai and httpx log request URLs).
        install_redaction(settings, ui)
        index = rag.open_index(settings.index_dir, settings)
    except rag.RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    problem = port_problem(ui.host, ui.port)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    demo = build_app(settings, index, ui=ui)  # starts loading the models in the background
    status = rag.generator_status(settings)
    print(f"News Q&A on http://{ui.host}:{ui.port} (index {settings.index_dir})\n"
          f"answers: {status.backend} ({status.state}: {status.detail})", flush=True)
    try:
        serve(demo, ui)
    except OSError as exc:  # taken between the check and the launch
        print(f"error: cannot listen on {ui.host}:{ui.port} ({exc}); pick another with --port N or RAG_UI_PORT=N",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
