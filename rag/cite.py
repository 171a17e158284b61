"""Check an answer's citations against the passages it cites.

``[n]`` that points to no passage is removed. Each sentence that cites is
compared with the sentences of its cited passages, by the embedder's
(cross-lingual) similarity and by shared names and numbers; sentences no
cited passage supports are flagged, not silently passed on. The best
matching passage sentence becomes the citation's ``quote``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.chunk import split_sentences
from rag.embed import Embedder
from rag.news import Citation, Hit, Unsupported

MARKER = re.compile(r"\s?\[(\d+(?:\s*[,;]\s*\d+)*)\]")
#: Cosine (ensemble embedder, sentence vs sentence) above which a claim counts as supported.
#: Translations and paraphrases score 0.77-0.9, unrelated sentences 0.55-0.73 (measured).
#: Same-topic contradictions score high: the number check below catches some.
SEMANTIC_SUPPORT = 0.75
#: Share of a claim's names/numbers/words that must appear in the passage sentence.
LEXICAL_SUPPORT = 0.6
#: Sentences that need no citation: saying the sources lack something.
_REFUSAL = re.compile(r"\b(do(?:es)? not (?:contain|mention|say|include)|don't (?:contain|mention)|no information|"
                      r"not (?:mentioned|stated|specified)|enthalten keine|nicht erwähnt|keine (?:Angaben|Informationen))\b",
                      re.I)
_TOKEN = re.compile(r"\w{3,}|\d+", re.UNICODE)


@dataclass(frozen=True)
class CheckedAnswer:
    text: str
    citations: tuple[Citation, ...]
    unsupported: tuple[Unsupported, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class _Claim:
    text: str  # without markers
    raw: str
    cited: tuple[int, ...]


def check(text: str, passages: tuple[Hit, ...], embedder: Embedder,
          uncited_ok: tuple[str, ...] = ()) -> CheckedAnswer:
    notes: list[str] = []
    valid = range(1, len(passages) + 1)

    def keep_valid(m: re.Match[str]) -> str:
        nums = [int(x) for x in re.split(r"\s*[,;]\s*", m.group(1))]
        good = [n for n in nums if n in valid]
        for n in nums:
            if n not in valid:
                notes.append(f"removed citation [{n}]: there is no source {n}")
        return "".join(f"[{n}]" for n in good) if good else ""

    def replace(m: re.Match[str]) -> str:
        kept = keep_valid(m)
        return ((" " if m.group(0).startswith(" ") else "") + kept) if kept else ""

    cleaned = MARKER.sub(replace, text)
    claims = _claims(cleaned)
    cited_claims = [c for c in claims if c.cited]
    unsupported: list[Unsupported] = []
    for claim in claims:
        if (not claim.cited and len(claim.text.split()) >= 4 and not _REFUSAL.search(claim.text)
                and not any(ok in claim.text for ok in uncited_ok)):
            unsupported.append(Unsupported(claim.text, (), "no citation", 0.0))

    # Every sentence of every cited passage, with its offsets in the article.
    cited_ns = sorted({n for c in cited_claims for n in c.cited})
    spans: dict[int, list[tuple[str, int, int]]] = {}
    for n in cited_ns:
        hit = passages[n - 1]
        spans[n] = [(hit.text[s.start:s.end], hit.start + s.start, hit.start + s.end)
                    for s in split_sentences(hit.text)] or [(hit.text, hit.start, hit.end)]
    best_quote: dict[int, tuple[float, str, int, int]] = {}
    if cited_claims:
        flat = [(n, *span) for n in cited_ns for span in spans[n]]
        vectors = embedder.embed_documents([c.text for c in cited_claims] + [t for _, t, _, _ in flat])
        claim_vecs, sent_vecs = vectors[:len(cited_claims)], vectors[len(cited_claims):]
        sims = claim_vecs @ sent_vecs.T
        for i, claim in enumerate(cited_claims):
            best_support = -1.0
            for n in claim.cited:
                for j, (m, sent, start, end) in enumerate(flat):
                    if m != n:
                        continue
                    support = max(float(sims[i, j]), _lexical(claim.text, sent))
                    if support > best_quote.get(n, (-1.0,))[0]:
                        best_quote[n] = (support, sent, start, end)
                    best_support = max(best_support, support)
            lexical = max(_lexical(claim.text, passages[n - 1].text) for n in claim.cited)
            where = "".join(f"[{n}]" for n in claim.cited)
            missing = _numbers(claim.text) - set().union(*(_numbers(passages[n - 1].text) for n in claim.cited))
            if best_support < SEMANTIC_SUPPORT and lexical < LEXICAL_SUPPORT:
                unsupported.append(Unsupported(claim.text, claim.cited, f"not found in source {where}",
                                               round(best_support, 3)))
            elif missing:
                unsupported.append(Unsupported(claim.text, claim.cited, f"number(s) {', '.join(sorted(missing))} "
                                               f"not in source {where}", round(best_support, 3)))
    citations = []
    for n in _order_of_appearance(cleaned, valid):
        hit = passages[n - 1]
        if n in best_quote:
            _, quote, start, end = best_quote[n]
        else:
            quote, start, end = hit.text, hit.start, hit.end
        citations.append(Citation(n, hit.article_id, hit.chunk_id, hit.title, hit.url, hit.source,
                                  hit.published_at, quote, start, end))
    return CheckedAnswer(cleaned, tuple(citations), tuple(unsupported), tuple(dict.fromkeys(notes)))


def is_refusal(text: str) -> bool:
    """Does the text say the sources do not contain the answer?"""
    return bool(_REFUSAL.search(text))


def _claims(text: str) -> list[_Claim]:
    """Sentences of the answer; markers that open a sentence belong to the one before."""
    raw = [text[s.start:s.end] for s in split_sentences(text)]
    merged: list[str] = []
    for sent in raw:
        lead = re.match(r"^((?:\[\d+\]\s*)+)(.*)$", sent, re.S)
        if lead and merged:
            merged[-1] += " " + lead.group(1).strip()
            sent = lead.group(2).strip()
            if not sent:
                continue
        merged.append(sent)
    claims = []
    for sent in merged:
        cited = tuple(dict.fromkeys(int(n) for m in MARKER.finditer(sent) for n in re.findall(r"\d+", m.group(1))))
        plain = " ".join(MARKER.sub("", sent).split())
        if plain.strip(" .«»\"'"):
            claims.append(_Claim(plain, sent, cited))
    return claims


def _order_of_appearance(text: str, valid: range) -> list[int]:
    seen: list[int] = []
    for m in MARKER.finditer(text):
        for n in (int(x) for x in re.findall(r"\d+", m.group(1))):
            if n in valid and n not in seen:
                seen.append(n)
    return seen


def _tokens(text: str) -> set[str]:
    return {t.lower() for t in _TOKEN.findall(text)}


def _numbers(text: str) -> set[str]:
    """Numbers as written without separators ("1,200" and "1.200" -> "1200")."""
    return {re.sub(r"[.,'’\s]", "", m) for m in re.findall(r"\d[\d.,'’]*\d|\d", text)}


def _lexical(claim: str, sentence: str) -> float:
    """Share of the claim's words (3+ letters) and numbers found in the sentence."""
    ct = _tokens(claim)
    return len(ct & _tokens(sentence)) / len(ct) if ct else 0.0
