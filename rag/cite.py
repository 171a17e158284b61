"""Check an answer's citations against the passages, claim by claim.

Every sentence of the answer that states something is a claim. A source
supports a claim when one of its sentences (or its headline) says the same:
by the embedder's cross-lingual similarity, or by sharing most of the claim's
words, and holding every number the claim gives. Then:

- ``[n]`` that points to no passage is removed (and noted);
- each cited source must support its claim on its own: a marker whose source
  does not is removed (and noted), so ``[1][2]`` becomes ``[1]`` when only 1 says it;
- a claim none of whose cited sources support it, or that cites nothing, gets
  the source that does support it (noted), and is flagged when none does;
- a passage that talks to the assistant ("ignore the previous instructions",
  "SYSTEM: ...") supports nothing, whatever the model copied from it;
- each citation's ``quote`` is the sentence that supports the claims citing it.

Honest limits: a claim that contradicts its source on the same topic ("raised
rates" vs "kept rates") can look supported to an embedding model."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from rag.names import STOPWORDS, Vectors, names_in, spelled_alike, translated, word_stems
from rag.chunk import split_sentences
from rag.evidence import Evidence, Sentence, about
from rag.news import Citation, Unsupported

# The one citation-marker grammar, used by the checker, the evaluation and the UI:
#: the numbers inside a marker: ``1``, ``1, 2``, ``1;3`` (1-3 digits each).
MARKER_NUMBERS = r"\d{1,3}(?:\s*[,;]\s*\d{1,3})*"
#: ``[1]``, ``[1, 2]``, ``[1;3]`` as generators write them (with the space before); group 1: the numbers.
MARKER = re.compile(rf"\s?\[({MARKER_NUMBERS})\]")
#: A marker without the space before it; group 1: the numbers.
BARE_MARKER = re.compile(rf"\[({MARKER_NUMBERS})\]")
#: Markers in a row (``[1][2]``, `` [1] [3]``), each with its optional space before.
MARKER_RUN = re.compile(rf"(?:\s?\[{MARKER_NUMBERS}\])+")
#: Cosine (ensemble embedder, sentence vs sentence) at or above which a claim counts as
#: supported when the sentence also holds every name the claim gives; with one name not
#: found, SEMANTIC_SUPPORT_ONE_NAME_MISSING; claims that name nothing need
#: SEMANTIC_SUPPORT_UNNAMED. Calibrated by benchmarks/support_check.py.
SEMANTIC_SUPPORT = 0.75
SEMANTIC_SUPPORT_ONE_NAME_MISSING = 0.90
SEMANTIC_SUPPORT_UNNAMED = 0.80
#: Share of a claim's words (3+ letters) and numbers that must appear in a source sentence
#: (with the sentence after it: a claim often joins two).
LEXICAL_SUPPORT = 0.6
#: Claims of this many words or more are also split at ", who", ", which", ", and".
LONG_CLAIM_WORDS = 18
#: Claims shorter than this (words) without a citation are not flagged ("Yes.", headings).
MIN_CLAIM_WORDS = 4
#: Sentences that need no citation: saying the sources lack something.
_REFUSAL = re.compile(r"\b(do(?:es)? not (?:contain|mention|say|include|provide|specify)|don't (?:contain|mention)|"
                      r"no information|not (?:mentioned|stated|specified)|enthalten keine|nicht erwähnt|"
                      r"keine (?:Angaben|Informationen))\b", re.I)
_TOKEN = re.compile(r"\w{3,}|\d+", re.UNICODE)
_CLAUSE_BREAK = re.compile(r"(?:,\s*|\s+)(?:while|whereas|whilst|but|während|wohingegen|aber)\s+|;\s+", re.I)
_LONG_CLAUSE_BREAK = re.compile(
    _CLAUSE_BREAK.pattern + r"|,\s+(?:who|which|and|and also|as well as|und|die|der|das)\s+", re.I)
_FRAME = re.compile(
    r"^(?:(?:yes|no|indeed|ja|nein)\b[,.]?\s*)?(?:(?:according to|laut)\s+[^,]{1,80},\s*|"
    r"(?:the\s+|an?\s+|both\s+)?(?:[^,]{0,60}?\s)?(?:article|report|story|piece|review|coverage|artikel|bericht)s?\s+"
    r"(?:from\s+|by\s+|in\s+|of\s+|von\s+)?[^,]{0,60}?\s*(?:also\s+)?(?:suggests?|states?|reports?|indicates?|says?|"
    r"mentions?|notes?|claims?|implies|imply|argues?|describes?|highlights?|discusses?|attributes?|credits?|"
    r"shows?|explains?|berichtet|schreibt|meldet)\s+(?:that\s+|dass\s+)?)?", re.I)
_LEADING_MARKERS = re.compile(rf"(?:\[{MARKER_NUMBERS}\]\s*)+")


@dataclass(frozen=True)
class CheckedAnswer:
    text: str
    citations: tuple[Citation, ...]
    unsupported: tuple[Unsupported, ...]
    notes: tuple[str, ...]


@dataclass
class _Claim:
    start: int  # span in the answer text, markers included
    end: int
    text: str  # the sentence without markers
    cited: tuple[int, ...]
    keep: list[int] = field(default_factory=list)  # markers that stay, in order
    add: list[int] = field(default_factory=list)  # markers appended at the end


@dataclass(frozen=True)
class _Support:
    score: float  # max(cosine, lexical share)
    sentence: Sentence
    ok: bool  # meets a threshold and holds the claim's numbers


def marker_numbers(numbers: str) -> list[int]:
    """The numbers of a marker's group 1: ``"1, 3"`` -> ``[1, 3]``."""
    return [int(x) for x in re.findall(r"\d+", numbers)]


def check(text: str, evidence: Evidence, fixed: Sequence[str] = ()) -> CheckedAnswer:
    """Check ``text`` against ``evidence`` (passage n is evidence.passages[n - 1]).

    ``fixed``: lines the generator always writes (a note), neither claims nor flagged."""
    passages = evidence.passages
    notes: list[str] = []
    text = _drop_unknown(text, len(passages), notes)
    claims = _claims(text)
    fixed_text = " ".join(fixed)
    checked = [c for c in claims
               if c.cited or (len(c.text.split()) >= MIN_CLAIM_WORDS and not _REFUSAL.search(c.text)
                              and c.text not in fixed_text)]
    parts = [_clauses(c.text) for c in checked]
    flat = _supports([part for ps in parts for part in ps], evidence)
    unsupported: list[Unsupported] = []
    used: dict[int, _Support] = {}  # source n -> the sentence that supports its claims best
    for claim, clauses in zip(checked, parts):
        by_clause, flat = flat[:len(clauses)], flat[len(clauses):]
        good = [{n: s for n, s in by_source.items() if s.ok} for by_source in by_clause]
        claim.keep = [n for n in claim.cited if any(n in g for g in good)]
        dropped = [n for n in claim.cited if n not in claim.keep]
        # A clause that no kept source says gets the source that does ("X said A, while Y said B").
        for g in good:
            if g and not any(n in g for n in claim.keep + claim.add):
                claim.add.append(max(g, key=lambda n: g[n].score))
        if claim.add:
            added = _markers(claim.add)
            what = f"cited {added} instead of {_markers(dropped)}" if dropped and not claim.keep else f"added {added}"
            notes.append(f"{what} for “{_short(claim.text)}”: {'it says' if len(claim.add) == 1 else 'they say'} it")
        if dropped and (claim.keep or not claim.add):
            notes.append(f"removed {_markers(dropped)} from “{_short(claim.text)}”: "
                         f"{'that source does' if len(dropped) == 1 else 'those sources do'} not say it")
        missing = [clause for clause, g in zip(clauses, good) if not g]
        if missing:
            by_source = {n: max((b[n] for b in by_clause if n in b), key=lambda s: s.score)
                         for n in set().union(*by_clause)}
            reason = _reason(claim, evidence)
            if len(clauses) > 1 and claim.keep + claim.add:
                reason = f"no source says “{_short(missing[0], 50)}”"
            unsupported.append(Unsupported(claim.text, claim.cited, reason,
                                           round(max((s.score for s in by_source.values()), default=0.0), 3)))
        for n in claim.keep + claim.add:
            best = max((g[n] for g in good if n in g), key=lambda s: s.score)
            if n not in used or best.score > used[n].score:
                used[n] = best
    final = _rewrite(text, claims)
    citations = []
    for n in _order_of_appearance(final, len(passages)):
        hit, support = passages[n - 1], used.get(n)
        if support is None:  # cannot happen: every marker left was checked; keep the passage as its quote
            quote, start, end = hit.text, hit.start, hit.end
        else:
            quote, start, end = support.sentence.text, support.sentence.start, support.sentence.end
        citations.append(Citation(n, hit.article_id, hit.chunk_id, hit.title, hit.url, hit.source,
                                  hit.published_at, quote, start, end, hit.title_derived, hit.story_id,
                                  hit.also_reported_by, hit.copies))
    return CheckedAnswer(final, tuple(citations), tuple(unsupported), tuple(dict.fromkeys(notes)))


def is_refusal(text: str) -> bool:
    """Does the text say the sources do not contain the answer?"""
    return bool(_REFUSAL.search(text))


# ---- claims and markers
def _drop_unknown(text: str, count: int, notes: list[str]) -> str:
    """Remove numbers in markers that point to no passage."""
    def replace(m: re.Match[str]) -> str:
        nums = marker_numbers(m.group(1))
        for n in nums:
            if not 1 <= n <= count:
                notes.append(f"removed citation [{n}]: there is no source {n}")
        good = [n for n in nums if 1 <= n <= count]
        if not good:
            return ""
        return (" " if m.group(0).startswith(" ") else "") + "".join(f"[{n}]" for n in good)

    return MARKER.sub(replace, text)


def _claims(text: str) -> list[_Claim]:
    """The sentences of ``text`` with their spans; markers that open a sentence
    ("... Bancorp. [1] Google ...") belong to the sentence before."""
    spans = [(s.start, s.end) for s in split_sentences(text)]
    fixed: list[list[int]] = []
    for start, end in spans:
        lead = _LEADING_MARKERS.match(text, start, end)
        if lead and lead.end() > start and fixed:
            fixed[-1][1] = lead.end()
            start = lead.end()
            while start < end and text[start].isspace():
                start += 1
            if start >= end:
                continue
        fixed.append([start, end])
    claims = []
    for start, end in fixed:
        raw = text[start:end]
        cited = tuple(dict.fromkeys(n for m in MARKER.finditer(raw) for n in marker_numbers(m.group(1))))
        plain = " ".join(MARKER.sub("", raw).split())
        if plain.strip(" .«»\"'*-"):
            claims.append(_Claim(start, end, plain, cited))
    return claims


def _rewrite(text: str, claims: list[_Claim]) -> str:
    """``text`` with each claim's markers reduced to ``keep`` and ``add`` appended."""
    out, pos = [], 0
    for claim in claims:
        out.append(text[pos:claim.start])
        raw = text[claim.start:claim.end]
        if claim.cited or claim.add:
            keep = set(claim.keep)

            def only_kept(m: re.Match[str]) -> str:
                nums = [n for n in marker_numbers(m.group(1)) if n in keep]
                return (" " if m.group(0).startswith(" ") else "") + "".join(f"[{n}]" for n in nums) if nums else ""

            raw = MARKER.sub(only_kept, raw)
            if claim.add:
                body = raw.rstrip()
                raw = body + " " + "".join(f"[{n}]" for n in claim.add) + raw[len(body):]
        out.append(raw)
        pos = claim.end
    out.append(text[pos:])
    return "".join(out)


def _order_of_appearance(text: str, count: int) -> list[int]:
    seen: list[int] = []
    for m in MARKER.finditer(text):
        for n in marker_numbers(m.group(1)):
            if 1 <= n <= count and n not in seen:
                seen.append(n)
    return seen


def _markers(ns: Sequence[int]) -> str:
    return "".join(f"[{n}]" for n in ns)


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


# ---- support
@dataclass(frozen=True)
class Match:
    """How well one source sentence (or it and the next) says what a claim says."""

    semantic: float  # cosine of the two (cross-lingual)
    lexical: float  # share of the claim's words found in it (and the next sentence)
    names: float  # share of the claim's names found in it (and the next); 1.0 when the claim names none
    missing: int = 0  # how many of the claim's names it lacks

    @property
    def score(self) -> float:
        return max(self.semantic, self.lexical)

    @property
    def supports(self) -> bool:
        """Calibrated by benchmarks/support_check.py: similar meaning alone also matches a
        sentence on the same topic ("Facebook bought Deutsche Bank" vs "Facebook talked to banks"),
        so it counts only together with the names the claim gives."""
        if self.lexical >= LEXICAL_SUPPORT:
            return True
        if not self.named:
            return self.semantic >= SEMANTIC_SUPPORT_UNNAMED
        if self.missing == 0:
            return self.semantic >= SEMANTIC_SUPPORT
        # One name not found (a translation the check does not know) needs a closer match.
        return self.missing == 1 and self.names >= 0.5 and self.semantic >= SEMANTIC_SUPPORT_ONE_NAME_MISSING

    @property
    def named(self) -> bool:
        return self.names < 1.0 or self.missing > 0 or self._named

    _named: bool = True  # does the claim name anything?


def match_matrix(claims: Sequence[str], sentences: Sequence[str], sims: np.ndarray,
                 following: Sequence[int | None], sources: Sequence[int],
                 embed: Callable[[list[str]], np.ndarray] | None = None,
                 about: dict[int, str] | None = None, named: Sequence[str] | None = None) -> list[list[Match]]:
    """``Match`` of every claim with every sentence. ``sims``: their cosines; ``following[j]``:
    the index of the sentence after sentence j in its source (None: none); ``sources[j]``: which
    source sentence j belongs to. Names are looked for in the whole source (a sentence may say
    "the company" for the Facebook of the sentence before); with ``embed``, a name not spelled
    alike is also looked for as a translation ("German" / "deutschen", "Emperor" / "Kaiser").
    ``about[source]``: what the prompt says of a source beside its text (headline, publisher,
    month): names found there count too ("The Verge reports ..."). ``named``: the texts to take each
    claim's names from, when they are not the claims themselves."""
    tokens = [_tokens(s) for s in sentences]
    words: dict[int, dict[str, str]] = {g: word_stems(text) for g, text in (about or {}).items()}
    for sentence, source in zip(sentences, sources):
        words.setdefault(source, {}).update(word_stems(sentence))
    claim_names = [names_in(c) for c in (named if named is not None else claims)]
    found = [{g: spelled_alike(set(names), set(w)) for g, w in words.items()} for names in claim_names]
    if embed is not None:
        close = [{g: max((float(sims[i, j]) for j, s in enumerate(sources) if s == g), default=0.0) for g in words}
                 for i in range(len(claims))]
        _translated(claim_names, words, close, found, embed)
    out = []
    for i, claim in enumerate(claims):
        claim_tokens, names = _tokens(claim), claim_names[i]
        shared = [len(claim_tokens & t) / len(claim_tokens) if claim_tokens else 0.0 for t in tokens]
        lexical = list(shared)
        for j, nxt in enumerate(following):
            if nxt is not None and claim_tokens:
                # A claim often joins two sentences: the pair counts for the one that says more.
                stronger = j if shared[j] >= shared[nxt] else nxt
                pair = len(claim_tokens & (tokens[j] | tokens[nxt])) / len(claim_tokens)
                lexical[stronger] = max(lexical[stronger], pair)
        row = []
        for j, source in enumerate(sources):
            have = len(found[i][source])
            row.append(Match(float(sims[i, j]), lexical[j], have / len(names) if names else 1.0,
                             len(names) - have, bool(names)))
        out.append(row)
    return out


def _translated(claim_names: list[dict[str, str]], words: dict[int, dict[str, str]], close: list[dict[int, float]],
                found: list[dict[int, set[str]]], embed: Callable[[list[str]], np.ndarray]) -> None:
    """Add to ``found`` the names a close source (a sentence within SEMANTIC_SUPPORT) holds in
    translation (see ``rag.names.translated``)."""
    todo = [(i, g) for i, names in enumerate(claim_names) for g in words
            if names and close[i][g] >= SEMANTIC_SUPPORT and len(found[i][g]) < len(names)]
    if not todo:
        return
    vectors = Vectors(embed)
    vectors.add({claim_names[i][n] for i, g in todo for n in claim_names[i] if n not in found[i][g]}
                | {w for _, g in todo for w in words[g].values()})
    for i, g in todo:
        missing = {stem: word for stem, word in claim_names[i].items() if stem not in found[i][g]}
        found[i][g] |= translated(missing, words[g], vectors)


def _clauses(text: str) -> list[str]:
    """A claim's parts that different sources may say: "The Verge reports A, while TechCrunch
    reports B" has two. Clear clause breaks split ("while", "whereas", "but", ";"); a long
    claim also splits at ", who", ", which" and ", and", as multi-source answers join facts so."""
    pattern = _CLAUSE_BREAK if len(text.split()) < LONG_CLAIM_WORDS else _LONG_CLAUSE_BREAK
    parts = [p.strip(" ,;.") for p in pattern.split(text)]
    parts = [p for p in parts if len(p.split()) >= 3]
    return parts if len(parts) > 1 else [text]


def _core(claim: str) -> str:
    """What a claim says, without "Yes," or the attribution around it ("The Verge article
    suggests that ..."): the attribution's names are still checked, its words would only
    dilute the comparison with the source sentence."""
    core = _FRAME.sub("", claim, count=1)
    return core if len(core.split()) >= 3 else claim


def _supports(claims: list[str], evidence: Evidence) -> list[dict[int, _Support]]:
    """For each claim, each source's best supporting sentence."""
    if not claims:
        return []
    units, unit_vectors = evidence.units()
    if not units:
        return [{} for _ in claims]
    cores = [_core(c) for c in claims]
    claim_vectors = evidence.embedder.embed_documents(cores)
    index = {(u.n, u.position): j for j, u in enumerate(units) if u.position >= 0}
    following = [index.get((u.n, u.position + 1)) if u.position >= 0 else None for u in units]
    sources = [u.n for u in units]
    abouts = {n: about(hit) for n, hit in enumerate(evidence.passages, 1)}
    matrix = match_matrix(cores, [u.text for u in units], claim_vectors @ unit_vectors.T,
                          following, sources, evidence.embedder.embed_documents, abouts, named=claims)
    numbers = {n: _numbers(hit.text + " " + abouts[n]) for n, hit in enumerate(evidence.passages, 1)}
    out = []
    for claim, matches in zip(claims, matrix):
        claim_numbers = _numbers(claim)
        best: dict[int, _Support] = {}
        for unit, match in zip(units, matches):
            if unit.n in evidence.instructed:
                continue
            ok = match.supports and claim_numbers <= numbers[unit.n]
            current = best.get(unit.n)
            if current is None or (ok, match.score) > (current.ok, current.score):
                best[unit.n] = _Support(match.score, unit, ok)
        out.append(best)
    return out


def _reason(claim: _Claim, evidence: Evidence) -> str:
    where = _markers(claim.cited)
    tricked = [n for n in claim.cited if n in evidence.instructed]
    if tricked:
        return f"source {_markers(tricked)} gives instructions to the assistant; it is not evidence"
    held = [_numbers(evidence.passages[n - 1].text + " " + about(evidence.passages[n - 1])) for n in claim.cited]
    missing = _numbers(claim.text) - set().union(*held) if claim.cited else set()
    if claim.cited and missing:
        return f"number(s) {', '.join(sorted(missing))} not in source {where}"
    if claim.cited:
        return f"not found in source {where}"
    return "no citation, and no source says it"


def _tokens(text: str) -> set[str]:
    return {t for t in (m.lower() for m in _TOKEN.findall(text)) if t not in STOPWORDS}


def _numbers(text: str) -> set[str]:
    """Numbers as written without separators ("1,200" and "1.200" -> "1200")."""
    return {re.sub(r"[.,'’\s]", "", m) for m in re.findall(r"\d[\d.,'’]*\d|\d", text)}
