"""Everything the chat UI shows, as HTML/Markdown strings: pure functions, no Gradio.

Everything shown comes from untrusted text (articles, uploads, the LLM), so every string
is escaped here before it becomes HTML or chat markdown, and links are built here and only
to http(s)."""

from __future__ import annotations

import html
import os
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import rag
from rag.answer import NO_GENERATOR
from rag.cite import BARE_MARKER, MARKER, MARKER_RUN, marker_numbers
from rag.ui.session import SourcesTurn

SOURCES_EMPTY = ('<div class="rag-sources"><p class="rag-muted">Ask a question: the passages that support '
                 'the answer appear here, with the quoted sentence highlighted.</p></div>')

# ---------------------------------------------------------------- escaping
#: Characters that start Markdown or HTML markup anywhere in a line. In chat
#: messages they become numeric character references, so model output and
#: article text are shown as typed: no tags, links, images, emphasis, code or
#: tables. Punctuation that is only markup at the start of a line (lists,
#: headings) or in a URL (autolinks) is handled in ``md_escape``.
_MD_SPECIAL = frozenset("\\`*_{}[]<>&~$|#@")


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


# ---------------------------------------------------------------- answers and sources
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
    for m in BARE_MARKER.finditer(text):
        out.append(md_escape(text[pos:m.start()]))
        numbers = marker_numbers(m.group(1))
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
        m = MARKER.match(text, i)
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
        m = MARKER_RUN.match(text, end)
        spans.append((start, m.end() if m else end, u.reason))
    spans.sort()
    kept: list[tuple[int, int, str]] = []
    for span in spans:
        if not kept or span[0] >= kept[-1][1]:
            kept.append(span)
    return kept


def date_only(value: object) -> str:
    return str(value)[:10] if value else ""


def _passage_html(text: str, quotes: Sequence[tuple[str, int | None]]) -> str:
    """The passage, escaped, with every quoted sentence highlighted where it is. ``quotes``:
    (sentence, offset in the passage or None); one that is not in the passage (a headline,
    a neighbouring chunk) is shown under it."""
    spans: list[tuple[int, int]] = []
    alone: list[str] = []
    for quote, offset in quotes:
        if not quote:
            continue
        if offset is not None and 0 <= offset and text[offset:offset + len(quote)] == quote:
            where = offset
        else:
            where = text.find(quote)
        if where >= 0:
            spans.append((where, where + len(quote)))
        elif quote != text:
            label = "Headline" if offset is not None and offset < 0 else "Supporting sentence"
            alone.append(f'<div class="rag-quote-alone">{label}: <mark class="rag-quote">{esc(quote)}</mark></div>')
    out: list[str] = []
    pos = 0
    for start, end in sorted(set(spans)):
        start = max(start, pos)  # two sentences that overlap are highlighted as one run
        if start >= end:
            continue
        out.append(esc(text[pos:start]) + f'<mark class="rag-quote">{esc(text[start:end])}</mark>')
        pos = end
    out.append(esc(text[pos:]))
    return "".join(out) + "".join(dict.fromkeys(alone))


def _card(turn: int, n: int, hit: rag.Hit, citations: Sequence[rag.Citation]) -> str:
    title = hit.title or hit.article_id
    # A title made from the first sentence is shown where a headline would be, but said to be one.
    derived = (' <span class="rag-muted rag-derived">(title from the first sentence)</span>'
               if hit.title and hit.title_derived else "")
    meta = [esc(x) for x in (hit.source, date_only(hit.published_at)) if x]
    url = safe_url(hit.url)
    if url:
        shown = url if len(url) <= 70 else url[:67] + "…"
        meta.append(f'<a href="{esc(url)}" target="_blank" rel="noopener noreferrer nofollow">{esc(shown)}</a>')
    quotes = [(c.quote, c.start - hit.start if c.start >= 0 else -1) for c in citations]
    cited = " rag-cited" if citations else ""
    copies = rag.also_reported(hit.also_reported_by, hit.copies)
    copies_html = f'<div class="rag-meta rag-copies">{esc(copies)}</div>' if copies else ""
    return (f'<div class="rag-src{cited}" id="src-{turn}-{n}">'
            f'<div class="rag-src-title"><span class="rag-badge">{n}</span> {esc(title)}{derived}</div>'
            f'<div class="rag-meta">{" · ".join(meta)}{" · " if meta else ""}'
            f'id <code>{esc(hit.article_id)}</code></div>{copies_html}'
            f'<blockquote class="rag-passage">{_passage_html(hit.text, quotes)}</blockquote></div>')


def footer_items(answer: rag.Answer) -> list[str]:
    """The line under an answer's sources, each fact once: who wrote the answer (or that
    nobody did), what was searched when it differs from the question, the notes."""
    if answer.generator == NO_GENERATOR:  # refused, or the generator failed first (a note names it)
        items = ["no answer was written" if answer.error else "nothing was generated"]
    else:
        items = [f"answered by {answer.generator}"]
    notes = list(dict.fromkeys(answer.notes))
    if answer.query and answer.query != answer.question and not any(answer.query in note for note in notes):
        items.append(f"searched for: {answer.query}")
    return items + notes


def render_sources(answer: rag.Answer, turn: int) -> str:
    """The sources of one answer: cited passages first (every quoted sentence
    highlighted), then the other passages the generator saw."""
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
    cited: dict[int, list[rag.Citation]] = {}
    for c in answer.citations:
        if 1 <= c.n <= len(answer.hits):
            cited.setdefault(c.n, []).append(c)
    for n, cs in cited.items():
        parts.append(_card(turn, n, answer.hits[n - 1], cs))
    others = [(n, h) for n, h in enumerate(answer.hits, 1) if n not in cited]
    if others:
        cards = "".join(_card(turn, n, h, ()) for n, h in others)
        if cited or answer.refused:
            label = "Closest passages found" if answer.refused else "Other passages the answer was based on"
            parts.append(f"<details><summary>{label} ({len(others)})</summary>{cards}</details>")
        else:
            parts.append(f'<div class="rag-subhead">Most relevant passages</div>{cards}')
    if not answer.hits:
        parts.append('<div class="rag-note">No passages were found.</div>')
    footer = " · ".join(esc(item) for item in footer_items(answer))
    parts.append(f'<div class="rag-muted rag-footer">{footer}</div></div>')
    return "".join(parts)


def plain_answer(answer: rag.Answer) -> str:
    """The answer as plain text for the clipboard: its text with the ``[n]`` markers as
    written, then the sources it cites (title, outlet, date, link)."""
    cited = sorted({c.n for c in answer.citations if 1 <= c.n <= len(answer.hits)})
    lines = [answer.text.strip()]
    if cited:
        lines.append("")
        lines.append("Sources:")
        for n in cited:
            hit = answer.hits[n - 1]
            meta = ", ".join(x for x in (hit.source, date_only(hit.published_at), safe_url(hit.url) or "") if x)
            lines.append(f"[{n}] {hit.title or hit.article_id}" + (f" ({meta})" if meta else ""))
            if copies := rag.also_reported(hit.also_reported_by, hit.copies):
                lines.append(f"    {copies}")
    return "\n".join(lines)


def sources_panel(turns: Sequence[SourcesTurn]) -> str:
    """Latest answer's sources open, earlier ones collapsed (their [n] links still work)."""
    if not turns:
        return SOURCES_EMPTY
    latest, *older = list(reversed(turns))
    earlier = "".join(f'<details class="rag-older"><summary>Earlier: {esc(t.question)}</summary>'
                      f'{t.html}</details>' for t in older)
    return f'<div class="rag-sources">{latest.html}{earlier}</div>'


def message_html(kind: str, text: str) -> str:
    icon = {"error": "⚠", "ok": "✓", "busy": "…"}.get(kind, "")
    return f'<div class="rag-status rag-{kind}">{icon} {esc(text)}</div>'


def progress_text(stage: str, done: int, total: int) -> str:
    if stage == "starting":
        return "Starting (loading the embedding model)…"
    what = {"reading": ("Reading files", "file"), "embedding": ("Embedding", "passage"),
            "writing": ("Writing the index", "")}.get(stage, (stage.capitalize(), ""))
    if stage == "writing":
        return "Writing the index…" if done < total else "Index written."
    return f"{what[0]}… {done}/{total} {what[1]}{'s' if total != 1 else ''}"


def duration(seconds: float) -> str:
    """``about 2 min``, ``about 40 s``: an estimate, said as one."""
    if seconds >= 90:
        return f"about {round(seconds / 60)} min"
    return f"about {max(5, round(seconds / 5) * 5)} s"


def progress_html(stage: str, done: int, total: int, fraction: float, eta_s: float | None) -> str:
    """A progress bar over the whole upload, the current step and the time left."""
    percent = max(0, min(100, round(fraction * 100)))
    left = ""
    if percent < 100 and eta_s is not None:
        left = f" · {duration(eta_s)} left"
    elif stage == "embedding":
        left = " · estimating the time left"
    return (f'<div class="rag-status rag-busy rag-progress">'
            f'<progress max="100" value="{percent}" aria-label="Upload progress">{percent}%</progress> '
            f'<span class="rag-progress-text">{percent}% · {esc(progress_text(stage, done, total))}{esc(left)}'
            f"</span></div>")


def report_html(report: rag.IngestReport | None, rejected: Sequence[tuple[str, str]], names: dict[Path, str],
                folder: Path | None) -> str:
    """What an upload (or a URL: no ``folder``) did, per file, in words."""
    def shown(path: str) -> str:
        if folder is None:
            return path
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
