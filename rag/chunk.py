"""Split an article into overlapping, sentence-aligned chunks.

Sizes are measured in the embedding model's own tokens, and every chunk keeps
its character span in the article text (``text[start:end] == chunk.text``),
so a citation can point at the exact passage."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rag.news import Article, Chunk

#: Counts tokens for many texts at once (the embedder's tokenizer).
TokenCounter = Callable[[Sequence[str]], list[int]]

# Words after which a period does not end a sentence (German and English).
_ABBREVIATIONS = frozenset("""
    abs abt art bd bspw bzgl bzw ca chr co corp dipl dr ebd engl etc evtl exkl gebr gegr gem ggf
    hr hrn hrsg inc inkl insb jh jr jun kap lt ltd max mio min mr mrd mrs ms mt nr o.ä od prof
    rd resp sen sog sr st str tel tsd u.a u.ä u.s u.s.a usw v.a v.chr vgl vs z.b z.t zb zzgl
    d.h i.e e.g a.m p.m jan feb mar apr jun jul aug sep sept okt oct nov dez dec fig gov
    """.split()) - {"etc", "usw"}
# Before a number only: "No. 5" is an abbreviation, "Mr. Smith said no. It cost" ends a sentence.
_NUMBER_ABBREVIATIONS = frozenset({"no", "nos"})
# A sentence ends at . ! ? or … (plus closing quotes/brackets), before whitespace.
_END = re.compile(r"[.!?…]+[\"'»«“”’)\]]*(?=\s)")
_THOUSANDS = re.compile(r"\d{1,3}(?:\.\d{3})+")
_WORD_BEFORE = re.compile(r"([\w.]+)$")
_NEXT_START = re.compile(r"\s+([\"'»«„“(\[#@]?\w)")


@dataclass(frozen=True)
class Span:
    start: int
    end: int


#: A sentence (or a piece of an over-long one) and its token count.
Unit = tuple[Span, int]
SOFT_RATIO = 0.5


def split_sentences(text: str) -> list[Span]:
    """Sentence spans covering every non-space character of ``text``."""
    spans: list[Span] = []
    for block in _blocks(text):
        start = block.start
        for m in _END.finditer(text, block.start, block.end):
            if _is_boundary(text, m.start(), m.end(), block.end):
                spans.append(Span(start, m.end()))
                start = _skip_space(text, m.end(), block.end)
        if start < block.end:
            spans.append(Span(start, block.end))
    return spans


def _blocks(text: str) -> list[Span]:
    """Lines, merged where a line was hard-wrapped in the middle of a sentence."""
    blocks: list[Span] = []
    pos = 0
    for line in text.split("\n"):
        s, e = pos, pos + len(line)
        pos = e + 1
        stripped = line.strip()
        if not stripped:
            continue
        s += len(line) - len(line.lstrip())
        e -= len(line) - len(line.rstrip())
        prev = blocks[-1] if blocks else None
        if (prev is not None and text[prev.end:s].count("\n") == 1
                and not re.search(r"[.!?…:;\"'»«“”’)\]]$", text[prev.start:prev.end])
                and stripped[0].islower()):
            blocks[-1] = Span(prev.start, e)
        else:
            blocks.append(Span(s, e))
    return blocks


def _is_boundary(text: str, dot: int, end: int, limit: int) -> bool:
    nxt = _NEXT_START.match(text, end, limit)
    if nxt is None:
        return False
    first = nxt.group(1)[-1]
    if text[dot] != ".":
        return True
    word = _WORD_BEFORE.search(text, 0, dot)
    token = word.group(1).lower() if word else ""
    if token in _ABBREVIATIONS or token.rstrip(".") in _ABBREVIATIONS:
        return False
    if token in _NUMBER_ABBREVIATIONS and first.isdigit():
        return False
    if len(token) == 1 and token.isalpha():
        return False  # an initial: "J. Smith", "U. S."
    before = text[word.start() - 1] if word and word.start() > 0 else " "
    if token.isdigit() and len(token) <= 3 and before not in "/:-–,$€£":
        return False  # German ordinals and dates: "am 3. März", "der 2. Weltkrieg"; not "9/11." or "2:0."
    if _THOUSANDS.fullmatch(token.rstrip(".")):
        return first.isupper()  # "mehr als 165.000. Normalerweise"
    if "." in token.strip("."):
        return False  # dotted abbreviations: "z.B.", "U.S."
    return first.isupper() or first.isdigit() or not first.isalpha()


def _skip_space(text: str, i: int, limit: int) -> int:
    while i < limit and text[i].isspace():
        i += 1
    return i


def chunk_article(article: Article, count_tokens: TokenCounter, target: int, overlap: int) -> list[Chunk]:
    """Chunks that follow the article's paragraphs.

    Short paragraphs are merged up to half the target (a heading always joins
    the paragraph after it); a paragraph longer than ``target`` tokens is cut
    between sentences into near-equal parts, each starting with up to
    ``overlap`` tokens of the part before. A single sentence longer than the
    target is cut at word boundaries."""
    text = article.text
    units = _fit(text, split_sentences(text), count_tokens, target)
    chunks: list[Chunk] = []
    for group in _paragraph_groups(text, units, target):
        for start, end, size in _split_group(group, target, overlap):
            chunks.append(Chunk(article.id, len(chunks), text[start:end], start, end, size))
    return chunks



def _paragraph_groups(text: str, units: list[Unit], target: int) -> list[list[Unit]]:
    paragraphs: list[list[Unit]] = []
    for unit in units:
        if paragraphs and "\n" not in text[paragraphs[-1][-1][0].end:unit[0].start]:
            paragraphs[-1].append(unit)
        else:
            paragraphs.append([unit])
    soft, small = int(target * SOFT_RATIO), max(8, target // 8)
    groups: list[list[Unit]] = []
    size = 0
    heading_open = False
    for para in paragraphs:
        p_size = sum(n for _, n in para)
        last = text[para[-1][0].end - 1]
        is_heading = p_size < small and last not in ".!?…:;\"'»«“”’)"
        if groups and not is_heading and (heading_open or size + p_size <= soft):
            groups[-1].extend(para)
            size += p_size
        else:
            groups.append(list(para))
            size = p_size
        heading_open = is_heading
    return groups


def _split_group(group: list[Unit], target: int, overlap: int) -> list[tuple[int, int, int]]:
    total = sum(n for _, n in group)
    if total <= target:
        return [(group[0][0].start, group[-1][0].end, total)]
    parts = -(-total // target)
    budget = min(target, -(-total // parts) + overlap // 2)
    out: list[tuple[int, int, int]] = []
    i = 0
    while i < len(group):
        j, size = i, group[i][1]
        while j + 1 < len(group) and size + group[j + 1][1] <= budget:
            j += 1
            size += group[j][1]
        out.append((group[i][0].start, group[j][0].end, size))
        if j + 1 >= len(group):
            break
        k, back = j + 1, 0
        while k - 1 > i and back + group[k - 1][1] <= overlap:
            k -= 1
            back += group[k][1]
        i = k
    return out


def _fit(text: str, spans: list[Span], count_tokens: TokenCounter, target: int) -> list[Unit]:
    counts = count_tokens([text[s.start:s.end] for s in spans]) if spans else []
    units: list[Unit] = []
    for span, n in zip(spans, counts):
        if n <= target:
            units.append((span, n))
        else:
            units.extend(_cut_long(text, span, count_tokens, target))
    return units


def _cut_long(text: str, span: Span, count_tokens: TokenCounter, target: int) -> list[Unit]:
    words = [Span(m.start(), m.end()) for m in re.finditer(r"\S+", text[span.start:span.end])]
    words = [Span(span.start + w.start, span.start + w.end) for w in words]
    counts = count_tokens([text[w.start:w.end] for w in words])
    pieces: list[Unit] = []
    cur_start, cur_end, size = words[0].start, words[0].end, 0
    for w, n in zip(words, counts):
        if size and size + n > target:
            pieces.append((Span(cur_start, cur_end), size))
            cur_start, size = w.start, 0
        if n > target:  # one giant "word" (a URL, a table row): cut by characters
            step = max(1, (w.end - w.start) * target // n)
            for s in range(w.start, w.end, step):
                e = min(w.end, s + step)
                pieces.append((Span(s, e), min(target, count_tokens([text[s:e]])[0])))
            cur_start, cur_end, size = w.end, w.end, 0
            continue
        cur_end = w.end
        size += n
    if size:
        pieces.append((Span(cur_start, cur_end), size))
    return pieces
