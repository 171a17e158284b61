"""Questions about how a story went: timelines ("How did X develop?", "Chronologie
von X") and changes ("What changed since Monday?", "Was hat sich seit Oktober
geändert?"), and the passages for them in date order.

A timeline searches the topic (the question without the timeline words) and
shows relevant dated passages oldest first. A change question splits them at
its pivot date: what came before, then the coverage since, each in date order.
Relative dates resolve against ``now`` as in ``rag.retrieve.time_intent``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from rag.news import Hit
from rag.retrieve.time_intent import _MONTH, parse_time_intent

TIMELINE, CHANGE = "timeline", "change"
#: Candidates whose similarity is this far below the best one are not about the story.
STORY_MARGIN = 0.1

_WEEKDAYS = {name: i for i, names in enumerate((
    ("monday", "montag"), ("tuesday", "dienstag"), ("wednesday", "mittwoch"), ("thursday", "donnerstag"),
    ("friday", "freitag"), ("saturday", "samstag", "sonnabend"), ("sunday", "sonntag"))) for name in names}

#: What may follow the timeline words: "over time", or a period the time filter reads ("in 2023").
_END = (r"(?:\s+(?:over time|so far|until now|recently|im laufe der zeit|bisher|zuletzt))?"
        r"(?:\s+(?:in|since|during|after|before|im|seit|nach|vor|letzte\w*|last|this|diese\w*) [^?.!]+)?\s*[?.!]*\s*$")
#: (pattern, group holding the topic); tried in order, first match wins.
_TIMELINE: tuple[str, ...] = (
    r"^\s*how (?:did|has|have|had) (?P<topic>.+?) (?:develop|evolve|unfold|progress|play out|played out|developed"
    r"|evolved|unfolded|progressed)(?:ed)?" + _END,
    r"^\s*how (?:is|are) (?P<topic>.+?) (?:developing|evolving|unfolding|progressing)" + _END,
    r"^\s*what (?:has )?happened (?:with|to|in) (?P<topic>.+?) over time\s*[?.!]*\s*$",
    r"^\s*(?:(?:give|show|make|write) me |what is |what's )?(?:an? |the )?(?:timeline|chronology|history) "
    r"(?:of|for) (?P<topic>.+?)\s*[?.!]*\s*$",
    r"^\s*(?P<topic>.+?)[:,]? (?:a |the )?timeline\s*[?.!]*\s*$",
    r"^\s*wie (?:hat|haben) sich (?P<topic>.+?) (?:entwickelt|verändert)" + _END,
    r"^\s*wie (?:entwickelte|entwickelten|entwickelt) sich (?P<topic>.+?)" + _END,
    r"^\s*was (?:ist|geschah) (?:mit|bei|im fall) (?P<topic>.+?) im laufe der zeit (?:passiert|geschehen)?"
    r"\s*[?.!]*\s*$",
    r"^\s*(?:(?:zeig|gib) mir )?(?:die |eine |den )?(?:chronologie|verlauf|zeitleiste|zeitstrahl|chronik)"
    r" (?:von |vom |des |der |zu |zum |zur |im fall |bei )?(?P<topic>.+?)\s*[?.!]*\s*$",
)
_CHANGE: tuple[str, ...] = (
    r"^\s*what(?:'s| has| have)? (?:changed|happened|been new|new) (?:with |in |about |for )?(?P<topic>.*?)"
    r"\s*\bsince (?P<when>.+?)\s*[?.!]*\s*$",
    r"^\s*what(?:'s| is) new (?:with |in |about |for )?(?P<topic>.*?)\s*\bsince (?P<when>.+?)\s*[?.!]*\s*$",
    r"^\s*since (?P<when>.+?), what (?:has )?changed (?:with |in |about |for )?(?P<topic>.*?)\s*[?.!]*\s*$",
    r"^\s*was hat sich (?:bei |mit |an |in )?(?P<topic>.*?)\s*\bseit (?P<when>.+?) (?:geändert|verändert|getan)"
    r"\s*[?.!]*\s*$",
    r"^\s*was ist (?:bei |mit |in )?(?P<topic>.*?)\s*\bseit (?P<when>.+?) (?:neu|passiert|geschehen)\s*[?.!]*\s*$",
)
#: A question comparing reports of named dates ("Between the report on 1 October 2023 and the one
#: on 6 November 2023, was there a change ...?"): a change question pivoting on its latest date.
_COMPARES = re.compile(r"\b(chang\w*|consisten\w*|inconsisten\w*|differ\w*|shift\w*|same|agree\w*|before|after|"
                       r"between|later|earlier|ändert\w*|geändert|unterschied\w*|vorher|nachher|später)\b")
_EXPLICIT_DATE = re.compile(rf"\b(?:\d{{1,2}}\.? (?:{_MONTH})\.?,? \d{{4}}|(?:{_MONTH})\.? \d{{1,2}}(?:st|nd|rd|th)?,? "
                            rf"\d{{4}}|\d{{4}}-\d{{2}}-\d{{2}})\b")


@dataclass(frozen=True)
class TimelineIntent:
    kind: str  # TIMELINE | CHANGE
    #: What to search: the question without the timeline words (the question itself when
    #: nothing is left, or for a comparison of named dates).
    topic: str
    #: CHANGE: the ISO date that splits "before" from "since" (always set for CHANGE).
    pivot: str | None = None
    phrase: str = ""  # the words that made it one
    #: Days the question names ("the report of 2023-10-22"): their passages are chosen first.
    named: tuple[str, ...] = ()


def parse_timeline_intent(question: str, now: date | None) -> TimelineIntent | None:
    """The timeline or change intent of ``question``, or None for any other question."""
    q = " ".join(question.split())
    low = q.lower()
    for pattern in _CHANGE:
        m = re.match(pattern, low)
        if m:
            pivot = _pivot(m.group("when"), now)
            if pivot is not None:
                said = re.search(r"\b(?:since|seit) " + re.escape(m.group("when")), low)
                return TimelineIntent(CHANGE, _topic(q, m.start("topic"), m.end("topic")) or q, pivot,
                                   said.group(0) if said else m.group("when"))
    for pattern in _TIMELINE:
        m = re.match(pattern, low)
        if m:
            topic = _topic(q, m.start("topic"), m.end("topic"))
            if topic and len(topic.split()) <= 12:
                return TimelineIntent(TIMELINE, topic, phrase=low[:m.start("topic")].strip() or "timeline")
    dates = sorted({d for d in (_explicit(x) for x in _EXPLICIT_DATE.findall(low)) if d})
    if len(dates) >= 2 and _COMPARES.search(low):
        named = tuple(d.isoformat() for d in dates)
        return TimelineIntent(CHANGE, q, named[-1], "reports of " + ", ".join(named), named)
    return None


def _topic(question: str, start: int, end: int) -> str:
    """The topic as the question wrote it (case kept), without a leading article."""
    return re.sub(r"^(?:the|der|die|das|den|dem) (?=\S)", "", question[start:end].strip(" ,:;?"), flags=re.I).strip()


def _explicit(text: str) -> date | None:
    text = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", text)
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    intent = parse_time_intent(text, date(2000, 1, 1))
    return date.fromisoformat(intent.since) if intent and intent.since and intent.since == intent.until else None


def _pivot(when: str, now: date | None) -> str | None:
    """The first day of ``when`` ("Monday", "last week", "October 2023", "5 May 2024")."""
    when = when.strip().lower()
    word = re.sub(r"^(?:last |letzte[nm]? |vergangene[nm]? |dem |den )", "", when)
    if word in _WEEKDAYS and now is not None:
        back = (now.weekday() - _WEEKDAYS[word]) % 7 or 7
        return (now - timedelta(days=back)).isoformat()
    explicit = _explicit(when)
    if explicit:
        return explicit.isoformat()
    if now is None:
        return None
    intent = parse_time_intent(f"since {when}" if re.fullmatch(r"\d{4}", when) else when, now)
    return intent.since if intent and intent.since else None


def day(hit: Hit) -> str | None:
    """The hit's ISO date, or None when it has no (valid) date."""
    text = (hit.published_at or "")[:10]
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        return None


def arrange(hits: list[Hit], intent: TimelineIntent, k: int, per_article: int | None) -> list[Hit]:
    """The passages of a story: the relevant ones (within STORY_MARGIN of the best similarity),
    at most ``per_article`` per article (1 for a timeline: one event each), dated before
    undated (and those of the days the question names first), the ``k`` most relevant, then
    in date order (undated last). For a change question the passages before the pivot come
    first, then those since, each group in date order; both groups get up to half of ``k``
    when they can fill it."""
    best = max((h.similarity or 0.0 for h in hits), default=0.0)
    relevant = [h for h in hits if (h.similarity or 0.0) >= best - STORY_MARGIN]
    cap = 1 if intent.kind == TIMELINE else (per_article or 2)
    kept: list[Hit] = []
    per: dict[str, int] = {}
    # dated first, those of the days the question names before them; stable: by relevance within each
    for hit in sorted(relevant, key=lambda h: (day(h) is None, day(h) not in intent.named)):
        if per.get(hit.article_id, 0) < cap:
            per[hit.article_id] = per.get(hit.article_id, 0) + 1
            kept.append(hit)
    if intent.kind == CHANGE and intent.pivot:
        pivot = intent.pivot
        since = [h for h in kept if day(h) is not None and day(h) >= pivot]  # type: ignore[operator]
        before = [h for h in kept if day(h) is not None and day(h) < pivot]  # type: ignore[operator]
        undated = [h for h in kept if day(h) is None]
        take_since = min(len(since), max(k // 2, k - len(before)))
        take_before = min(len(before), k - take_since)
        return (sorted(before[:take_before], key=_order) + sorted(since[:take_since], key=_order)
                + undated[:k - take_since - take_before])
    return sorted(kept[:k], key=_order)


def _order(hit: Hit) -> tuple[bool, str]:
    d = day(hit)
    return d is None, d or ""


def split(hits: tuple[Hit, ...] | list[Hit], pivot: str | None) -> int:
    """How many of ``hits`` (as ``arrange`` ordered them) come before ``pivot``."""
    if not pivot:
        return 0
    return sum(1 for h in hits if day(h) is not None and day(h) < pivot)  # type: ignore[operator]
