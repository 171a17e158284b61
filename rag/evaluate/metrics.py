"""Evaluation metrics as pure functions (no model, no I/O).

Ranking metrics take the ranking already judged: ``relevant[i]`` says whether
the item at rank i+1 is relevant, ``ranked`` holds the ids in rank order.
Answer metrics follow the SQuAD evaluation script (normalisation, token F1),
with articles removed per language as MLQA's script does."""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Collection, Hashable, Iterable, Sequence

from rag.ingest.clean import INVISIBLE

#: Articles dropped by ``normalize_answer`` (SQuAD: English; German as in MLQA).
ARTICLES = {
    "en": re.compile(r"\b(a|an|the)\b"),
    "de": re.compile(r"\b(der|die|das|des|dem|den|ein|eine|einer|eines|einem|einen)\b"),
}
_ASCII_PUNCTUATION = frozenset(string.punctuation)
_QUOTED = re.compile(r"«[^»]*»")
#: Phrases with which an answer says the sources do not answer the question.
_NO_ANSWER = re.compile(
    r"\b(?:do(?:es)?\s+not|don['’]t|doesn['’]t)\s+(?:contain|include|provide|mention|say|state)\b"
    r"|\binsufficient\s+information\b|\bnot\s+enough\s+information\b|\bno\s+information\s+(?:about|on)\b"
    r"|\bcannot\s+(?:be\s+)?(?:answer|determin)|\bunable\s+to\s+(?:answer|determine|find)\b"
    r"|\benthalten\s+keine\b|\bkeine\s+(?:antwort|informationen?)\b",
    re.IGNORECASE)


# ---- rankings ----
def hits_at_k(relevant: Sequence[bool], k: int) -> float:
    """1.0 when any of the first k items is relevant, else 0.0."""
    _check_k(k)
    return 1.0 if any(relevant[:k]) else 0.0


def mrr_at_k(relevant: Sequence[bool], k: int) -> float:
    """Reciprocal rank of the first relevant item among the first k (0.0 if none)."""
    _check_k(k)
    for rank, rel in enumerate(relevant[:k], 1):
        if rel:
            return 1.0 / rank
    return 0.0


def recall_at_k(ranked: Sequence[Hashable], gold: Collection[Hashable], k: int) -> float:
    """Share of the gold items that appear among the first k ranked ids."""
    _check_k(k)
    wanted = set(gold)
    if not wanted:
        raise ValueError("recall needs at least one gold item")
    return len(wanted.intersection(ranked[:k])) / len(wanted)


def average_precision_at_k(found: Sequence[Collection[Hashable]], n_gold: int, k: int, *,
                           cumulative: bool = False) -> float:
    """AP@k where ``found[i]`` holds the gold items that the item at rank i+1 contains.

    Each gold item counts once, at the first rank that contains it. By default
    this is MultiHop-RAG's ``retrieval_evaluate.py``: the sum over ranks r of
    (gold items first found at r) / r, divided by min(n_gold, k). With
    ``cumulative=True`` it is the textbook AP: precision@r counts every rank
    up to r that contributed a new gold item."""
    _check_k(k)
    if n_gold < 1:
        raise ValueError("average precision needs at least one gold item")
    seen: set[Hashable] = set()
    total, useful = 0.0, 0
    for rank, items in enumerate(found[:k], 1):
        new = set(items) - seen
        if not new:
            continue
        seen |= new
        useful += 1
        total += (useful if cumulative else len(new)) / rank
    return total / min(n_gold, k)


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")


# ---- answers ----
def normalize_answer(text: str, language: str = "en") -> str:
    """SQuAD normalisation: lowercase, drop punctuation, drop articles, collapse spaces."""
    text = "".join(ch for ch in text.lower() if not _is_punctuation(ch))
    text = ARTICLES.get(language, ARTICLES["en"]).sub(" ", text)
    return " ".join(text.split())


def token_f1(prediction: str, gold: str, language: str = "en") -> float:
    """SQuAD token F1 after ``normalize_answer``; two empty texts score 1.0."""
    pred = normalize_answer(prediction, language).split()
    ref = normalize_answer(gold, language).split()
    if not pred or not ref:
        return float(pred == ref)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def contains_answer(prediction: str, golds: str | Iterable[str]) -> bool:
    """Whether any non-empty gold text occurs in the prediction (case and spacing ignored)."""
    text = _fold(prediction)
    for gold in ([golds] if isinstance(golds, str) else golds):
        g = _fold(gold)
        if g and g in text:
            return True
    return False


def contains_all(prediction: str, required: Sequence[str | Sequence[str]]) -> bool:
    """RGB's check: every element of ``required`` is found; an element that is
    a list is a set of alternatives, any one of which will do."""
    if not required:
        return False
    return all(contains_answer(prediction, item) for item in required)


def says_no_answer(text: str) -> bool:
    """Whether an answer says that its sources do not answer the question
    (quotations «...» are ignored: a quoted sentence is not the answer's voice)."""
    return bool(_NO_ANSWER.search(_QUOTED.sub(" ", text)))


def squash(text: str) -> str:
    """Text with every whitespace (and invisible) character removed, as
    MultiHop-RAG compares retrieved chunks with gold facts."""
    return "".join(INVISIBLE.sub("", text).split())


def mean(values: Iterable[float]) -> float | None:
    """Arithmetic mean; None for no values (a metric that could not be computed)."""
    items = list(values)
    return sum(items) / len(items) if items else None


def _is_punctuation(ch: str) -> bool:
    # SQuAD drops ASCII string.punctuation; Unicode punctuation (« » „ “ …) goes too.
    return ch in _ASCII_PUNCTUATION or unicodedata.category(ch).startswith("P")


def _fold(text: str) -> str:
    return " ".join(INVISIBLE.sub("", text).casefold().split())
