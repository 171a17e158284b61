"""Publication dates as the index stores them: ISO 8601, sortable as text. Used by the
nouns (search filters) and by ingest, so it sits below both."""

from __future__ import annotations

import email.utils
from datetime import datetime, timezone

_DATE_FORMATS = ("%d.%m.%Y %H:%M", "%d.%m.%Y", "%d/%m/%Y", "%B %d, %Y", "%b %d, %Y",
                 "%d %B %Y", "%d %b %Y", "%Y/%m/%d")


def normalize_date(value: str) -> str | None:
    """ISO 8601: a date ("2023-09-28") or a UTC date-time ("2023-09-28T10:00:00Z").
    Naive date-times are kept as they are, without a zone."""
    value = value.strip()
    dt: datetime | None = None
    has_time = True
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        has_time = len(value) > 10
    except ValueError:
        try:
            dt = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            for fmt in _DATE_FORMATS:
                try:
                    dt, has_time = datetime.strptime(value, fmt), "%H" in fmt
                    break
                except ValueError:
                    continue
    if dt is None:
        return None
    if not has_time:
        return dt.date().isoformat()
    if dt.tzinfo is not None:
        return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return dt.strftime("%Y-%m-%dT%H:%M:%S")
