"""One passage per story: syndicated copies of one agency text (rag.stories) would otherwise
fill every passage slot. The best-ranked copy stays; it carries the other copies' outlets.

A lower-ranked copy that disagrees with the one shown on a fact stays too: when its passage names
a number or a capitalised name the shown copy's text lacks, while the shown copy's text at the
same place (the span sharing the passage's word triples) names one the copy lacks (a name or
figure replaced, not a byline added or a last paragraph cut; each copy's own byline and dateline
are left out), the generator sees both versions rather than whichever ranked first. German
capitalises every noun, so there only numbers count (a changed name in a German copy is not noticed)."""

from __future__ import annotations

import dataclasses
import re

from rag.news import Hit
from rag.store.base import Reader as Snapshot
from rag.titles import lead_end

#: Numbers ("1.39", "2017") and capitalised words ("Glendale", "Kerber"): what a changed fact changes.
_FACT = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_][\w'’-]*")
#: Languages that capitalise common nouns: only numbers are facts there.
_NOUNS_CAPITALISED = {"de", "lb"}


def facts(text: str, language: str | None = None) -> set[str]:
    names = language not in _NOUNS_CAPITALISED
    return {t for t in _FACT.findall(text) if t[0].isdigit() or (names and t[0].isupper())}


def one_copy_per_story(snapshot: Snapshot, hits: list[Hit]) -> list[Hit]:
    """Drop passages of an article whose story an earlier (better ranked) article already stands
    for, unless it disagrees with every such article on a fact; passages of a shown article stay
    (the per-article cap applies to them)."""
    shown: dict[str, list[str]] = {}
    texts: dict[str, str] = {}

    def text_of(article_id: str) -> str:
        if article_id not in texts:
            texts[article_id] = snapshot.catalog.texts([article_id]).get(article_id, "")
        return texts[article_id]

    def contradicts(hit: Hit, kept: str) -> bool:
        # Each outlet's byline and dateline ("By Jane Doe (AP) —", "NEW YORK —") are its own, not facts.
        lang, own, other = hit.language, text_of(hit.article_id), text_of(kept)
        passage = hit.text[max(0, lead_end(own) - hit.start):]
        said = facts(passage, lang) - facts(other, lang)
        return bool(said and facts(same_place(other[lead_end(other):], passage), lang) - facts(own, lang))

    out = []
    for hit in hits:
        kept = shown.setdefault(hit.story_id or hit.article_id, [hit.article_id])
        if hit.article_id not in kept:
            if not all(contradicts(hit, k) for k in kept):
                continue
            kept.append(hit.article_id)
        out.append(hit)
    return out


def same_place(text: str, passage: str) -> str:
    """The span of ``text`` from the first to the last word triple it shares with ``passage``, and
    three words either side (a word replaced at the edge of the passage breaks the triples there)."""
    def triples(words: list[str]) -> list[str]:
        return [" ".join(words[i:i + 3]) for i in range(len(words) - 2)]

    wanted = set(triples(re.findall(r"\w+", passage.lower())))
    spans = list(re.finditer(r"\w+", text))
    found = [i for i, t in enumerate(triples([m.group().lower() for m in spans])) if t in wanted]
    if not found:
        return ""
    return text[spans[max(0, found[0] - 3)].start():spans[min(len(spans) - 1, found[-1] + 5)].end()]


def with_copies(snapshot: Snapshot, hits: list[Hit]) -> list[Hit]:
    """Each hit with the number of copies of its story and the outlets (else titles) of the
    other copies, earliest first, its own outlet left out."""
    copies = snapshot.catalog.story_copies({h.story_id for h in hits if h.story_id})
    out = []
    for hit in hits:
        members = copies.get(hit.story_id or "", [])
        if len(members) < 2:
            out.append(hit)
            continue
        others = [m.name for m in members if m.id != hit.article_id and m.name != hit.source]
        out.append(dataclasses.replace(hit, copies=len(members), also_reported_by=tuple(dict.fromkeys(others))))
    return out
