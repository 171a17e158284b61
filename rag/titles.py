"""A display title for an article that came without a headline: its first sentence, trimmed.

The title is derived, not written by anyone, so articles carry ``title_derived=True`` and
what treats a title as a headline (the prompt, the citation check, the embedded text) skips it."""

from __future__ import annotations

import dataclasses
import logging
import re

from rag.chunk import split_sentences
from rag.news import Article

log = logging.getLogger(__name__)

#: A derived title is cut on a word boundary at about this many characters (plus "…").
TITLE_CHARS = 90

# "BERLIN (dpa) - ", "Washington, 3. März (Reuters) – ", "HAMBURG – ": a dateline before the lead.
_DATELINE = re.compile(r"^(?:[^()\s][^()]{0,60}?\s*\([^()]{1,30}\)\s*[-–—:]|[A-ZÄÖÜ][A-ZÄÖÜ .,'/]{2,40}?\s*[-–—])\s+")
# A line that is only a byline: "Von Max Muster", "By Jane Doe and John Roe".
_NAME = r"[A-ZÄÖÜ][\w'’.-]*"
# Names must be capitalised: "Von der Leyen reist nach Kiew" is no byline.
_BYLINE = re.compile(rf"^(?:[Vv]on|[Bb]y|VON|BY)\s+{_NAME}(?:\s+{_NAME}){{0,3}}"
                     rf"(?:\s+(?:und|and|&)\s+{_NAME}(?:\s+{_NAME}){{0,3}})?$")


# Where a copy's own furniture ends: a byline line, then "By Jane Doe (AP) —", "(AP) —",
# "Von Anna Huber — ", "NEW YORK — ": what outlets add in front of the same agency text.
_LEAD = re.compile(rf"^(?:(?:[^()\s][^()]{{0,60}}?\s*)?\([^()]{{1,30}}\)\s*[-–—:]"
                   rf"|[A-ZÄÖÜ][A-ZÄÖÜ .,'/]{{2,40}}?\s*[-–—]"
                   rf"|(?:[Vv]on|[Bb]y)\s+{_NAME}(?:\s+{_NAME}){{0,3}}\s*[-–—:])\s+")


def lead_end(text: str) -> int:
    """Where the story itself starts: after the byline lines and datelines at the very start (0: none)."""
    pos = 0
    for _ in range(3):  # "(Reuters) — By Staff Writer\n\nNEW YORK — ...": a republished republication
        start = pos
        first, newline, _rest = text[pos:].partition("\n")
        if newline and _BYLINE.match(first.strip()):
            pos += len(first) + 1
            pos += len(text[pos:]) - len(text[pos:].lstrip())
        found = _LEAD.match(text[pos:])
        pos += found.end() if found else 0
        if pos == start:
            break
    return pos


def derive_title(text: str) -> str:
    """The first sentence of ``text`` that is more than a byline, without a dateline, whitespace
    collapsed and cut on a word boundary near ``TITLE_CHARS`` with "…". Never empty for a text
    with any non-space character; "" for a blank one."""
    sentences = [" ".join(text[s.start:s.end].split()) for s in split_sentences(text)]
    sentences = [s for s in sentences if s]
    if not sentences:
        return ""
    for sentence in sentences:
        if _BYLINE.match(sentence):
            continue
        lead = _DATELINE.sub("", sentence, count=1)
        if lead.strip(" -–—:"):
            return shorten(lead)
    return shorten(sentences[0])  # only bylines and datelines: better one of them than nothing


def with_derived_title(article: Article) -> Article:
    """``article`` itself when it has a title, else a copy titled by its first sentence and
    marked ``title_derived``. The content hash is left alone: it is of what was given."""
    if article.title and article.title.strip():
        return article
    title = derive_title(article.text)
    if not title:
        return article
    return dataclasses.replace(article, title=title, title_derived=True)


def shorten(text: str, limit: int = TITLE_CHARS) -> str:
    """``text`` cut on a word boundary to at most ``limit`` characters (and "…"), without the
    punctuation the cut left dangling; unchanged when it fits."""
    if len(text) <= limit:
        return text
    head = text[:limit + 1]
    cut = head.rsplit(" ", 1)[0] if " " in head else ""
    if len(cut) < limit // 2:  # one very long word: cut inside it
        cut = text[:limit]
    return cut.rstrip(" ,;:.-–—") + "…"
