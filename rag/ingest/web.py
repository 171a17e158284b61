"""Articles from the web: an article page, or an RSS/Atom feed whose entries are read.

``read_url`` fetches a URL (``rag.ingest.fetch``, bounded), tells a feed from a page by its
content type and first bytes, and yields ``Record``s (or ``Failure``s) like a file reader,
so URLs go through the same ingest pipeline as files. A feed entry's page is fetched and
extracted with trafilatura; when that fails, the entry's own content or summary is used and a
note says so. Dates come from the entry (published, else updated) or the page's metadata;
an article without one has none (never "now")."""

from __future__ import annotations

import dataclasses
import hashlib
import html
import io
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from rag.errors import FetchError
from rag.ingest.fetch import FetchLimits, Fetched, canonical_url, check_url, fetch, new_client
from rag.ingest.readers import Record, html_fields
from rag.news import Failure

log = logging.getLogger(__name__)

FEED_TYPES = {"application/rss+xml", "application/atom+xml", "application/rdf+xml", "application/feed+xml"}
_FEED_ROOT = re.compile(rb"<(?:rss|feed|rdf:rdf)[\s>]", re.I)
_HTML_ROOT = re.compile(rb"<(?:!doctype\s+html|html)[\s>]", re.I)
_BLOCK_END = re.compile(r"(?i)</(?:p|div|h[1-6]|li|blockquote)>|<br\s*/?>")
_TAG = re.compile(r"<[^>]+>")
_MAIL_NAME = re.compile(r"^\S+@\S+\s*\((.+)\)$")


@dataclass(frozen=True)
class FeedEntry:
    """One entry of a parsed feed: ``key`` identifies it across fetches (guid, else link),
    ``fingerprint`` changes when the entry does (its date, title, link or content)."""

    key: str
    fingerprint: str
    link: str | None
    fields: dict[str, Any]  # from the feed itself: title, author, published_at, summary text...


@dataclass(frozen=True)
class Feed:
    url: str
    title: str | None
    entries: tuple[FeedEntry, ...]
    total: int  # entries in the feed (``entries`` holds at most FetchLimits.max_entries)


def looks_like_feed(fetched: Fetched) -> bool:
    """RSS/Atom by content type, else by the root element in the first bytes."""
    ctype = fetched.content_type.split(";")[0].strip().lower()
    if ctype in FEED_TYPES:
        return True
    head = fetched.body[:4096]
    return bool(_FEED_ROOT.search(head)) and not _HTML_ROOT.search(head)


def read_url(url: str, limits: FetchLimits, client: Any = None) -> Iterator[Record | Failure]:
    """The articles at ``url``: one for a page, one per entry for a feed. Never raises for a
    bad URL or response: that is a Failure naming the URL (KeyboardInterrupt still propagates)."""
    own = client is None
    client = client or new_client(limits)
    try:
        try:
            fetched = fetch(url, limits, client=client)
            if not looks_like_feed(fetched):
                yield page_record(fetched)
                return
            feed = parse_feed(fetched, limits)
        except FetchError as exc:
            yield Failure(exc.url, exc.reason)
            return
        except MemoryError:
            raise
        except Exception as exc:  # last resort: a library's surprise on hostile input fails this URL only
            yield unexpected(url, exc)
            return
        capped = (f"{url}: the feed has {feed.total} entries; only the first {len(feed.entries)} were read",)
        for n, entry in enumerate(feed.entries):
            record = entry_record(feed, entry, limits, client)
            if n == 0 and feed.total > len(feed.entries) and isinstance(record, Record):
                record = dataclasses.replace(record, notes=record.notes + capped)
            yield record
    finally:
        if own:
            client.close()


def unexpected(origin: str, exc: Exception) -> Failure:
    log.debug("unexpected error reading %s", origin, exc_info=True)
    return Failure(origin, f"unexpected error: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}")


def page_record(fetched: Fetched, origin: str | None = None) -> Record | Failure:
    """The article on a fetched HTML page."""
    if not fetched.body.strip():
        return Failure(origin or fetched.url, "empty response")
    fields = html_fields(fetched.body, fetched.url)
    if fields is None:
        ctype = fetched.content_type.split(";")[0].strip() or "no content type"
        return Failure(origin or fetched.url, f"no article text found ({ctype}); not an article page or a feed")
    fields["url"] = article_url(fields.get("url"), fetched.url)
    fields.setdefault("source", urlsplit(fetched.url).hostname)
    return Record(fields, origin or fetched.url, fetched.url, single_file=False)


def article_url(canonical: str | None, fetched_url: str) -> str:
    """The page's own canonical URL when it is on the same site, else the URL fetched: a
    page cannot claim another site's article (and its id)."""
    if canonical and _site(canonical) == _site(fetched_url) and urlsplit(canonical).scheme in ("http", "https"):
        return canonical_url(canonical)
    return canonical_url(fetched_url)


def _site(url: str) -> str:
    host = (urlsplit(url).hostname or "").lower()
    return host[4:] if host.startswith("www.") else host


def parse_feed(fetched: Fetched, limits: FetchLimits) -> Feed:
    """The entries of an RSS/Atom document; FetchError when it is malformed or no feed."""
    import feedparser

    # A file object, not bytes: feedparser opens a string or bytes that name a local path.
    parsed = feedparser.parse(io.BytesIO(fetched.body), response_headers={
        "content-type": fetched.content_type or "application/xml", "content-location": fetched.url})
    if not parsed.entries and (parsed.get("bozo") or not parsed.get("version")):
        problem = parsed.get("bozo_exception")
        raise FetchError(fetched.url, "malformed feed" + (f": {_one_line(problem)}" if problem else
                                                          ": no RSS or Atom content"))
    if parsed.get("bozo") and parsed.entries:
        log.info("%s: feed is not well-formed (%s); read leniently", fetched.url, parsed.get("bozo_exception"))
    title = _text(parsed.feed.get("title"))
    language = parsed.feed.get("language")
    entries = [_entry(e, fetched.url, title, language) for e in parsed.entries[:limits.max_entries]]
    found = tuple(e for e in entries if e is not None)
    if parsed.get("bozo") and not any(e.link or not e.key.startswith("content:") for e in found):
        # Read leniently, a broken document still gave "entries": none with a link or guid is no feed.
        raise FetchError(fetched.url, f"malformed feed: {_one_line(parsed.get('bozo_exception'))}")
    return Feed(fetched.url, title, found, len(parsed.entries))


def _entry(entry: Any, feed_url: str, feed_title: str | None, language: str | None) -> FeedEntry | None:
    link = entry.get("link")
    try:
        link = check_url(link) if link else None
    except FetchError:
        link = None  # a mailto: or relative link that could not be resolved: use the guid
    guid = _text(entry.get("id"))
    key = guid or link
    content = entry.get("content") or []
    body = content[0].get("value") if content else entry.get("summary")
    date = _struct_date(entry.get("published_parsed") or entry.get("updated_parsed"))
    title = _text(entry.get("title"))
    if key is None:
        if not body and not title:
            return None
        key = "content:" + hashlib.sha256(f"{title}\n{body}".encode()).hexdigest()
    author = entry.get("author")
    if isinstance(author, str) and (named := _MAIL_NAME.match(author.strip())):
        author = named.group(1)  # RSS: "desk@example.com (Name)"
    fields = {"title": title, "author": _text(author), "published_at": date,
              "source": feed_title or urlsplit(feed_url).hostname, "language": language,
              "summary": html_to_text(body) if body else None}
    fields = {k: v for k, v in fields.items() if v}
    stamp = _struct_date(entry.get("updated_parsed")) or date
    fingerprint = hashlib.sha256("\n".join(str(x) for x in (stamp, title, link, body)).encode()).hexdigest()[:16]
    return FeedEntry(key, fingerprint, link, fields)


def entry_record(feed: Feed, entry: FeedEntry, limits: FetchLimits, client: Any) -> Record | Failure:
    """The article of one entry: its page, extracted; else the entry's content or summary."""
    origin = entry.link or f"{feed.url} entry {entry.key}"
    fields = {k: v for k, v in entry.fields.items() if k != "summary"}
    reason = "the entry has no link"
    if entry.link:
        try:
            page = page_record(fetch(entry.link, limits, client=client), origin)
        except FetchError as exc:
            page = Failure(origin, exc.reason)
        except MemoryError:
            raise
        except Exception as exc:  # last resort, as above: the entry's summary may still do
            page = unexpected(origin, exc)
        if isinstance(page, Record):
            # The feed knows the entry's title, date and outlet best; the page its text.
            merged = {**page.fields, **fields}
            return Record(merged, origin, origin, single_file=False)
        reason = page.reason
    summary = entry.fields.get("summary")
    if not summary:
        return Failure(origin, f"page not read ({reason}) and the entry has no content or summary")
    fields["text"] = summary
    if entry.link:
        fields["url"] = canonical_url(entry.link)
    else:
        fields["id"] = _guid_id(entry.key, entry.fields.get("title"))
    note = f"{origin}: page not read ({reason}); indexed the feed's content/summary instead"
    return Record(fields, origin, origin, single_file=False, notes=(note,) if entry.link else ())


def _guid_id(key: str, title: str | None) -> str:
    """A stable article id for an entry without a link, from its guid."""
    slug = re.sub(r"[^a-z0-9]+", "-", (title or "entry").lower()).strip("-")[:40].strip("-") or "entry"
    return f"{slug}-{hashlib.sha256(('guid:' + key).encode()).hexdigest()[:10]}"


def html_to_text(value: str) -> str:
    """Plain text of an entry's (feedparser-sanitised) HTML content, paragraphs kept."""
    return html.unescape(_TAG.sub("", _BLOCK_END.sub("\n\n", value)))


def _struct_date(value: time.struct_time | None) -> str | None:
    """feedparser's UTC struct_time as the index's ISO form."""
    if not value:
        return None
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", value)
    except (TypeError, ValueError):
        return None


def _text(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    value = " ".join(html.unescape(_TAG.sub("", value)).split())
    return value or None


def _one_line(value: object) -> str:
    return " ".join(str(value).split())[:200]

