"""Fetch one http(s) URL, bounded: connect and read timeouts, a total deadline, and a size
limit enforced while the body streams in (a huge or endless response is refused, never held).

Only http and https are fetched (file://, ftp:// ... are refused with a clear error, also
as a redirect target). Conditional GET: give the ETag / Last-Modified of the last fetch and
a 304 comes back as ``Fetched(status=304)`` with no body."""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from rag.errors import FetchError

log = logging.getLogger(__name__)

USER_AGENT = "rag-news/0.1 (news article and feed reader; python-httpx)"
ACCEPT = ("application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, "
          "text/html;q=0.8, application/xhtml+xml;q=0.8, */*;q=0.1")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
#: Query parameters that only track a click; dropped from canonical URLs (article ids).
_TRACKING = re.compile(r"^(utm_\w+|fbclid|gclid|mc_cid|mc_eid|ocid|cmpid)$", re.I)


@dataclass(frozen=True)
class FetchLimits:
    """Bounds of one fetch, and of how many entries of one feed are read."""

    connect_s: float = 10.0
    read_s: float = 20.0  # longest wait for the next bytes
    total_s: float = 60.0  # the whole response, from request to last byte (see ``fetch``)
    max_bytes: int = 10_000_000
    max_redirects: int = 5
    max_entries: int = 100  # entries read from one feed (the newest come first in feeds)


@dataclass(frozen=True)
class Fetched:
    """A response: ``url`` is the final one (after redirects); ``status`` 200 or 304."""

    url: str
    status: int
    content_type: str
    body: bytes
    etag: str | None = None
    last_modified: str | None = None


def looks_like_url(value: object) -> bool:
    """Whether an ingest argument is a URL (any scheme; ``fetch`` refuses all but http/https)."""
    return isinstance(value, str) and bool(_SCHEME.match(value.strip()))


def check_url(url: str) -> str:
    """``url`` stripped, or FetchError when it is not an http(s) URL with a host."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- parsed lazily: "Port out of range", "could not be cast" surface here
    except ValueError as exc:  # "http://[::1", "http://host:99999/"
        raise FetchError(url, f"the URL is malformed ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise FetchError(url, f"only http:// and https:// URLs can be fetched, not {parts.scheme or 'this'}://")
    if not parts.hostname:
        raise FetchError(url, "the URL has no host name")
    return url


def canonical_url(url: str) -> str:
    """The URL an article is known by: no fragment, no tracking parameters, lower-case
    scheme and host, no default port. Two links to one article give one id (a malformed
    link, say a feed entry's, is kept as written rather than failing its article)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port if parts.port not in (None, 80, 443) else None
    except ValueError:
        return url.strip()
    host = (parts.hostname or "").lower()
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _TRACKING.match(k)])
    return urlunsplit((parts.scheme.lower(), host + (f":{port}" if port else ""), parts.path or "/", query, ""))


def new_client(limits: FetchLimits) -> Any:
    """An httpx.Client with the limits' timeouts and our User-Agent (reuse it for many fetches)."""
    import httpx

    timeout = httpx.Timeout(connect=limits.connect_s, read=limits.read_s, write=limits.read_s, pool=limits.connect_s)
    return httpx.Client(timeout=timeout, follow_redirects=True, max_redirects=limits.max_redirects,
                        headers={"User-Agent": USER_AGENT, "Accept": ACCEPT})


def fetch(url: str, limits: FetchLimits, *, etag: str | None = None, last_modified: str | None = None,
          client: Any = None) -> Fetched:
    """GET ``url`` within ``limits``; FetchError (naming the URL) for anything but a 200 or 304.

    The request runs on a worker thread so the caller waits at most ``total_s`` (plus a
    second) even for a server that drips its headers, each byte inside the read timeout:
    then the caller gets its FetchError and the worker is left to fail on its own."""
    url = check_url(url)
    own = client is None
    client = client or new_client(limits)
    outcome: list[Any] = []
    done = threading.Event()

    def work() -> None:
        try:
            outcome.append(_get(client, url, limits, etag, last_modified))
        except BaseException as exc:  # handed to the caller's thread
            outcome.append(exc)
        finally:
            done.set()

    try:
        threading.Thread(target=work, name="rag-fetch", daemon=True).start()
        if not done.wait(limits.total_s + 1.0):
            raise FetchError(url, f"too slow: not complete after {limits.total_s:g} s")
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]
    finally:
        if own:
            client.close()


def _get(client: Any, url: str, limits: FetchLimits, etag: str | None, last_modified: str | None) -> Fetched:
    import httpx

    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    deadline = time.monotonic() + limits.total_s
    try:
        with client.stream("GET", url, headers=headers) as response:
            if response.status_code == 304:
                return Fetched(str(response.url), 304, "", b"", etag, last_modified)
            if response.status_code != 200:
                raise FetchError(url, f"HTTP {response.status_code} {response.reason_phrase}".strip())
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limits.max_bytes:
                raise FetchError(url, f"too large: {int(declared) / 1e6:.1f} MB > limit {_mb(limits.max_bytes)}")
            body = bytearray()
            for chunk in response.iter_bytes():  # decoded (gzip): the limit bounds what we hold
                body += chunk
                if len(body) > limits.max_bytes:
                    raise FetchError(url, f"too large: over the limit of {_mb(limits.max_bytes)}; not read further")
                if time.monotonic() > deadline:
                    raise FetchError(url, f"too slow: not complete after {limits.total_s:g} s")
            return Fetched(str(response.url), 200, response.headers.get("content-type", ""), bytes(body),
                           response.headers.get("etag"), response.headers.get("last-modified"))
    except httpx.ConnectTimeout:
        raise FetchError(url, f"no connection within {limits.connect_s:g} s") from None
    except httpx.TimeoutException:
        raise FetchError(url, f"timed out: no response for {limits.read_s:g} s") from None
    except httpx.TooManyRedirects:
        raise FetchError(url, f"more than {limits.max_redirects} redirects") from None
    except httpx.UnsupportedProtocol as exc:  # a redirect to file:// or ftp://
        raise FetchError(url, f"refused: only http:// and https:// are fetched ({exc})") from None
    except httpx.ConnectError as exc:
        raise FetchError(url, f"cannot connect: {_short(exc)}") from None
    except httpx.HTTPError as exc:
        raise FetchError(url, f"{type(exc).__name__}: {_short(exc)}") from None
    except httpx.InvalidURL as exc:
        raise FetchError(url, f"invalid URL: {exc}") from None


def _mb(n: int) -> str:
    return f"{n / 1e6:g} MB"


def _short(exc: Exception) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0][:200]
