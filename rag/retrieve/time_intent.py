"""Dates in questions: "last week", "in March 2023", "latest", "letzte Woche".

Relative expressions are resolved against ``now``: a given date, else the
newest article in the index, so questions over an archive behave as if asked
when the archive was current."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta

MONTHS = {
    **{m.lower(): i for i, m in enumerate(calendar.month_name) if m},
    **{m.lower(): i for i, m in enumerate(calendar.month_abbr) if m},
    "januar": 1, "jänner": 1, "februar": 2, "märz": 3, "maerz": 3, "mai": 5, "juni": 6, "juli": 7,
    "oktober": 10, "dezember": 12, "sept": 9,
}
_MONTH = "|".join(sorted((re.escape(m) for m in MONTHS), key=len, reverse=True))


@dataclass(frozen=True)
class TimeIntent:
    since: str | None = None  # inclusive ISO dates
    until: str | None = None
    recent: bool = False  # "latest", "newest": prefer recent articles
    phrase: str = ""


def _month_range(year: int, month: int) -> tuple[date, date]:
    return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])


def parse_time_intent(question: str, now: date) -> TimeIntent | None:
    q = question.lower()
    rules: list[tuple[str, object]] = [
        (r"\b(today|heute)\b", lambda m: (now, now)),
        (r"\b(yesterday|gestern)\b", lambda m: (now - timedelta(days=1), now - timedelta(days=1))),
        (r"\b(this|diese[rn]?) (week|woche)\b", lambda m: (now - timedelta(days=now.weekday()), now)),
        (r"\b(last|past|previous|letzte[nr]?|vergangene[nr]?) (week|woche)\b",
         lambda m: (now - timedelta(days=7), now)),
        (r"\b(this|diese[nr]?) (month|monat)\b", lambda m: (now.replace(day=1), now)),
        (r"\b(last|past|previous|letzte[nr]?|vergangene[nr]?) (month|monat)\b",
         lambda m: (now - timedelta(days=31), now)),
        (r"\b(this|diese[sn]?) (year|jahr)\b", lambda m: (date(now.year, 1, 1), now)),
        (r"\b(last|past|previous|letzte[sn]?|vergangene[sn]?) (year|jahr)\b",
         lambda m: (date(now.year - 1, 1, 1), date(now.year - 1, 12, 31))),
        (rf"\b(?:on |am )?(\d{{1,2}})\.? ({_MONTH})\.?,? (\d{{4}})\b",
         lambda m: (_day(m.group(3), m.group(2), m.group(1)),) * 2),
        (rf"\b({_MONTH})\.? (\d{{1,2}}),? (\d{{4}})\b", lambda m: (_day(m.group(3), m.group(1), m.group(2)),) * 2),
        (rf"\b({_MONTH})\.?,? (\d{{4}})\b", lambda m: _month_range(int(m.group(2)), MONTHS[m.group(1)])),
        (r"\b(?:since|after|seit|nach) (\d{4})\b", lambda m: (date(int(m.group(1)), 1, 1), None)),
        (r"\b(?:before|vor) (\d{4})\b", lambda m: (None, date(int(m.group(1)) - 1, 12, 31))),
        (r"\b(?:in|im jahr|im|during) (\d{4})\b", lambda m: (date(int(m.group(1)), 1, 1),
                                                               date(int(m.group(1)), 12, 31))),
    ]
    for pattern, resolve in rules:
        m = re.search(pattern, q)
        if m:
            try:
                since, until = resolve(m)  # type: ignore[operator]
            except (ValueError, KeyError):
                continue
            return TimeIntent(since.isoformat() if since else None, until.isoformat() if until else None,
                              phrase=m.group(0))
    if re.search(r"\b(latest|newest|most recent|recent(ly)?|current(ly)?|neueste[nrs]?|aktuell(e[nrs]?)?|"
                 r"jüngste[nrs]?|zuletzt)\b", q):
        return TimeIntent(recent=True, phrase="latest")
    return None


def _day(year: str, month: str, day: str) -> date:
    return date(int(year), MONTHS[month.lower().rstrip(".")], int(day))


def recency_weight(published_at: str | None, now: date, half_life_days: float = 30.0) -> float:
    """1 for an article from ``now``, halving every ``half_life_days``; 0 if undated."""
    if not published_at:
        return 0.0
    try:
        published = date.fromisoformat(published_at[:10])
    except ValueError:
        return 0.0
    age = max(0, (now - published).days)
    return 0.5 ** (age / half_life_days)
