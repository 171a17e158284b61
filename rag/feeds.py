"""Watching feeds: poll RSS/Atom feeds, add what is new, update what changed.

Each feed's state lives in ``feeds.sqlite3`` in the index folder (not the catalog): its
ETag / Last-Modified for conditional GETs, when it was last checked, its last error, and a
fingerprint per entry seen. A 304 costs one request and nothing else; a changed feed costs
one fetch per new or changed entry (its page), the rest are counted unchanged.

Nothing is lost: the state of a round is saved only after its articles are written, so a
round cut short (Ctrl-C, a crash, a locked index) is done again by the next one; an entry
that failed (no page and no summary) makes the next round fetch the feed in full (no
conditional GET) and try it again; an entry whose page could not be read (its summary
indexed instead) is tried again when the feed next changes. A feed that is down, slow,
malformed or huge fails alone, with one line that names it, and leaves the index as it was."""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rag.errors import ConfigError, FetchError, RagError
from rag.index import NewsIndex
from rag.ingest.fetch import FetchLimits, check_url, fetch, new_client
from rag.ingest.readers import Record
from rag.ingest.web import entry_record, looks_like_feed, parse_feed
from rag.news import Failure, IngestReport

log = logging.getLogger(__name__)

STATE_FILE = "feeds.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS feeds (
    url TEXT PRIMARY KEY, etag TEXT, last_modified TEXT, last_checked TEXT, last_error TEXT,
    entries_seen INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS entries (
    feed_url TEXT NOT NULL, entry_key TEXT NOT NULL, fingerprint TEXT NOT NULL, seen TEXT NOT NULL,
    PRIMARY KEY (feed_url, entry_key));
"""
_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$", re.I)


def parse_interval(text: str) -> float:
    """Seconds in "30s", "15m", "1h" (a bare number is seconds); ConfigError otherwise."""
    match = _INTERVAL.match(text or "")
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(f"cannot read the interval {text!r}; write it like 30s, 15m or 1h")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2).lower()]


@dataclass(frozen=True)
class FeedState:
    url: str
    etag: str | None = None
    last_modified: str | None = None
    last_checked: str | None = None
    last_error: str | None = None
    entries_seen: int = 0


class FeedStore:
    """The feed state file (SQLite, one short transaction per call)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def get(self, url: str) -> FeedState:
        with closing(self._connect()) as db:
            row = db.execute("SELECT url, etag, last_modified, last_checked, last_error, entries_seen FROM feeds "
                             "WHERE url = ?", (url,)).fetchone()
        return FeedState(*row) if row else FeedState(url)

    def all(self) -> list[FeedState]:
        with closing(self._connect()) as db:
            rows = db.execute("SELECT url, etag, last_modified, last_checked, last_error, entries_seen FROM feeds "
                              "ORDER BY url").fetchall()
        return [FeedState(*r) for r in rows]

    def fingerprints(self, url: str) -> dict[str, str]:
        with closing(self._connect()) as db:
            return dict(db.execute("SELECT entry_key, fingerprint FROM entries WHERE feed_url = ?", (url,)))

    def checked(self, url: str, error: str | None) -> None:
        """A round that changed nothing (a 304, or a failure): when, and the error if any."""
        with closing(self._connect()) as db, db:
            db.execute("INSERT INTO feeds (url, last_checked, last_error) VALUES (?, ?, ?) ON CONFLICT(url) DO "
                       "UPDATE SET last_checked = excluded.last_checked, last_error = excluded.last_error",
                       (url, _now(), error))

    def saved(self, url: str, etag: str | None, last_modified: str | None, seen: dict[str, str]) -> None:
        """A round whose articles are written: the validators for the next GET, the entries seen."""
        now = _now()
        with closing(self._connect()) as db, db:
            db.executemany("INSERT OR REPLACE INTO entries (feed_url, entry_key, fingerprint, seen) "
                           "VALUES (?, ?, ?, ?)", [(url, k, f, now) for k, f in seen.items()])
            count = db.execute("SELECT COUNT(*) FROM entries WHERE feed_url = ?", (url,)).fetchone()[0]
            db.execute("INSERT INTO feeds (url, etag, last_modified, last_checked, last_error, entries_seen) "
                       "VALUES (?, ?, ?, ?, NULL, ?) ON CONFLICT(url) DO UPDATE SET etag = excluded.etag, "
                       "last_modified = excluded.last_modified, last_checked = excluded.last_checked, "
                       "last_error = NULL, entries_seen = excluded.entries_seen",
                       (url, etag, last_modified, now, count))


@dataclass(frozen=True)
class FeedRound:
    """What one poll of one feed did. ``status``: "changed", "not modified" (304) or "failed"."""

    url: str
    status: str
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    duplicates: int = 0
    error: str | None = None
    report: IngestReport | None = None

    def line(self) -> str:
        if self.status == "failed":
            return f"FAILED  {self.url}: {self.error}"
        if self.status == "not modified":
            return f"{self.url}: not modified (304)"
        return (f"{self.url}: new {self.added}, updated {self.updated}, unchanged {self.unchanged}, "
                f"failed {self.failed}" + (f", duplicates {self.duplicates}" if self.duplicates else ""))

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "status": self.status, "added": self.added, "updated": self.updated,
                "unchanged": self.unchanged, "failed": self.failed, "duplicates": self.duplicates, "error": self.error,
                "report": self.report.to_dict() if self.report else None}


def poll(index: NewsIndex, url: str, store: FeedStore, limits: FetchLimits, client: Any = None) -> FeedRound:
    """One conditional GET of ``url``; its new and changed entries ingested. Never raises for
    a feed that fails: that is a failed round (KeyboardInterrupt and MemoryError propagate)."""
    state = store.get(url)
    own = client is None
    client = client or new_client(limits)
    try:
        fetched = fetch(url, limits, etag=state.etag, last_modified=state.last_modified, client=client)
        if fetched.status == 304:
            store.checked(url, None)
            return FeedRound(url, "not modified")
        if not looks_like_feed(fetched):
            raise FetchError(url, "not an RSS or Atom feed (to add a single page, use 'rag ingest URL')")
        feed = parse_feed(fetched, limits)
        seen = store.fingerprints(url)
        todo = [e for e in feed.entries if seen.get(e.key) != e.fingerprint]
        origins: dict[str, tuple[str, str]] = {}  # entries read from their page: seen once written

        def records() -> Iterator[Record | Failure]:
            for entry in todo:
                record = entry_record(feed, entry, limits, client)
                if isinstance(record, Record) and not record.notes:  # a summary fallback is tried again
                    origins[record.origin] = (entry.key, entry.fingerprint)
                yield record

        report = index.add_records(records())
        failed = {f.path for f in report.failed}
        done = {key: fp for origin, (key, fp) in origins.items() if origin not in failed}
        if report.failed:  # no validators: the next round GETs the feed in full and retries those entries
            store.saved(url, None, None, done)
        else:
            store.saved(url, fetched.etag, fetched.last_modified, done)
        return FeedRound(url, "changed", len(report.added), len(report.updated),
                         len(feed.entries) - len(todo) + len(report.unchanged), len(report.failed),
                         len(report.duplicates), report=report)
    except MemoryError:
        raise
    except Exception as exc:  # a watch outlives any one feed's failure
        if isinstance(exc, RagError):  # FetchError names the URL already
            message = exc.reason if isinstance(exc, FetchError) and exc.url == url else str(exc)
        else:
            log.debug("feed %s failed", url, exc_info=True)
            message = f"unexpected error: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        log.warning("feed %s: %s", url, message)
        store.checked(url, message)
        return FeedRound(url, "failed", error=message)
    finally:
        if own:
            client.close()


def watch(index: NewsIndex, urls: Sequence[str], every_s: float, *, once: bool = False,
          limits: FetchLimits | None = None, on_round: Callable[[list[FeedRound]], None] | None = None,
          stop: threading.Event | None = None) -> list[FeedRound]:
    """Poll every feed now and then every ``every_s`` seconds until ``stop`` is set (or after
    one round with ``once``). Returns the last round. Ctrl-C between or inside rounds raises
    KeyboardInterrupt: the round cut short is redone next time (see the module doc)."""
    urls = [check_url(u) for u in urls]  # a file:// or ftp:// feed is refused before any polling
    limits = limits or FetchLimits(max_bytes=int(index.settings.max_file_mb * 1_000_000))
    store = FeedStore(index.folder / STATE_FILE)
    stop = stop or threading.Event()
    with closing(new_client(limits)) as client:
        while True:
            started = time.monotonic()
            rounds = [poll(index, url, store, limits, client) for url in urls]
            for r in rounds:
                log.info("%s", r.line())
            if on_round:
                on_round(rounds)
            if once or stop.wait(max(0.0, every_s - (time.monotonic() - started))):
                return rounds


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
