"""Web pages and RSS/Atom feeds: 'rag ingest URL' and 'rag watch', against a real HTTP server
on 127.0.0.1 (tests/fake_web.py) serving tests/data/feeds. Every fetch is bounded by small
limits, and every test by a timeout."""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import rag
from conftest import RAG, make_settings, run_cli
from fake_web import FakeWeb
from rag.errors import ConfigError, FetchError
from rag.feeds import STATE_FILE, FeedStore, parse_interval, poll, watch
from rag.ingest.fetch import FetchLimits, canonical_url, fetch

pytestmark = pytest.mark.timeout(300)

LIMITS = FetchLimits(connect_s=2, read_s=1, total_s=5, max_bytes=200_000)
RSS = "application/rss+xml"


@pytest.fixture
def web() -> Iterator[FakeWeb]:
    server = FakeWeb()
    yield server
    server.close()


def serve_harbour(web: FakeWeb, **feed: object) -> str:
    """The RSS feed and its pages (the third entry's page is missing: a 404)."""
    web.serve("/articles/ferry.html", "ferry.html")
    web.serve("/articles/market.html", "market.html")
    return web.serve("/feed.xml", "rss.xml", content_type=RSS, **feed)


def by_title(index: rag.NewsIndex) -> dict[str, rag.Article]:
    return {a.title: index.article(a.id) for a in index.articles()}


def generation(index: rag.NewsIndex) -> int:
    snap = index.snapshot()
    return snap.manifest.generation if snap else 0


# ---- pages
def test_a_page_is_one_article_dated_by_its_metadata(web: FakeWeb, index: rag.NewsIndex) -> None:
    url = web.serve("/articles/ferry.html", "ferry.html")
    report = index.ingest([url + "#comments"])
    assert report.ok and len(report.added) == 1, report.to_dict()
    article = index.article(report.added[0])
    assert article.title.startswith("Ferry service resumes after storm")
    assert "Lene Dahl" in article.text and "Sport" not in article.text  # the article, not the menu
    assert article.source == "Harbour Gazette" and article.author == "Mara Olsen"
    assert article.published_at == "2024-03-05"  # article:published_time
    assert article.url == url  # the canonical URL, fragment dropped
    again = index.ingest([url + "?utm_source=newsletter"])  # the same article by another link
    assert again.unchanged == report.added and not again.added


def test_a_page_without_a_date_gets_none_not_a_guess(web: FakeWeb, index: rag.NewsIndex, tmp_path: Path) -> None:
    """market.html has no date in its metadata; its footer says "Copyright 2021" and "updated
    March 3, 2020". Neither is its publication date, and neither is "now"."""
    url = web.serve("/articles/market.html", "market.html")
    report = index.ingest([url])
    assert len(report.added) == 1
    assert index.article(report.added[0]).published_at is None
    # The same page as a file: the file reader used to date it 2021-01-01 from the copyright line.
    page = tmp_path / "market.html"
    page.write_bytes(web.fixture("market.html"))
    files = rag.open_index(tmp_path / "files", make_settings(tmp_path / "files"))
    report = files.ingest([page])
    assert len(report.added) == 1
    assert files.article(report.added[0]).published_at is None


def test_dates_of_text_exports_come_from_their_fields_only(index: rag.NewsIndex, tmp_path: Path) -> None:
    """Files, JSONL and CSV rows without a date stay undated (no mtime, no "now")."""
    (tmp_path / "a.txt").write_text("The tram line to the harbour opens in May after two years of work.",
                                    encoding="utf-8")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "The library extends its opening hours to Sundays."})
                                      + "\n", encoding="utf-8")
    (tmp_path / "c.csv").write_text("title,text,date\nRoads,The bypass is finished two months early.,\n"
                                    "Bins,Bins will be emptied on Tuesdays.,2024-02-01\n", encoding="utf-8")
    report = index.ingest([tmp_path])
    assert len(report.added) == 4, report.to_dict()
    dates = sorted((a.published_at or "-") for a in index.articles())
    assert dates == ["-", "-", "-", "2024-02-01"]


def test_pages_that_fail_are_reported_and_nothing_else_changes(web: FakeWeb, index: rag.NewsIndex) -> None:
    web.serve("/boom", body=b"oops", status=500)
    web.serve("/image.png", body=b"\x89PNG\r\n\x1a\n" + b"\x00" * 200, content_type="image/png")
    report = index.ingest([web.base + "/nowhere.html", web.base + "/boom", web.base + "/image.png",
                           "file:///etc/passwd", "ftp://example.com/feed.xml", "http://"])
    reasons = {f.path: f.reason for f in report.failed}
    assert reasons[web.base + "/nowhere.html"] == "HTTP 404 Not Found"
    assert reasons[web.base + "/boom"] == "HTTP 500 Internal Server Error"
    assert "no article text found (image/png)" in reasons[web.base + "/image.png"]
    assert "only http:// and https:// URLs can be fetched, not file://" in reasons["file:///etc/passwd"]
    assert "not ftp://" in reasons["ftp://example.com/feed.xml"]
    assert "no host name" in reasons["http://"]
    assert not report.added and index.stats().articles == 0


def test_fetch_limits_refuse_slow_and_huge_responses(web: FakeWeb) -> None:
    slow = web.serve("/slow", body=b"<html></html>", delay=3)
    huge = web.serve("/huge.xml", content_type=RSS, huge=5_000_000)
    big = web.serve("/big.html", body=b"<p>" + b"a" * 300_000 + b"</p>")
    started = time.monotonic()
    with pytest.raises(FetchError, match="timed out: no response for 1 s"):
        fetch(slow, LIMITS)
    assert time.monotonic() - started < 3
    with pytest.raises(FetchError, match="too large: over the limit of 0.2 MB"):
        fetch(huge, LIMITS)  # streamed with no length: cut off after the limit, not read to the end
    with pytest.raises(FetchError, match="too large: 0.3 MB > limit 0.2 MB"):
        fetch(big, LIMITS)  # its Content-Length says so before any of the body is read
    with pytest.raises(FetchError, match="cannot connect"):
        fetch(f"http://127.0.0.1:{_free_port()}/feed.xml", LIMITS)
    # Bytes that keep coming, each within the read timeout: the total deadline ends it.
    dripping = web.serve("/drip.xml", "rss.xml", content_type=RSS, trickle=0.3)
    started = time.monotonic()
    with pytest.raises(FetchError, match="too slow: not complete after 1.5 s"):
        fetch(dripping, FetchLimits(read_s=1, total_s=1.5))
    assert time.monotonic() - started < 3
    # Headers that drip in forever, each line within the read timeout: the caller still gets its answer.
    endless = web.serve("/endless-headers.xml", drip_headers=0.3)
    started = time.monotonic()
    with pytest.raises(FetchError, match="too slow: not complete after 1.5 s"):
        fetch(endless, FetchLimits(read_s=1, total_s=1.5))
    assert time.monotonic() - started < 3


def test_a_redirect_to_another_scheme_is_refused(web: FakeWeb, index: rag.NewsIndex) -> None:
    moved = web.serve("/moved.xml", status=302, location="file:///etc/passwd")
    with pytest.raises(FetchError, match="refused: only http:// and https:// are fetched"):
        fetch(moved, LIMITS)
    web.serve("/feed.xml", status=301, location="/articles/ferry.html")  # an http redirect is followed
    web.serve("/articles/ferry.html", "ferry.html")
    assert len(index.ingest([web.base + "/feed.xml"]).added) == 1


def test_canonical_urls_drop_tracking_and_fragments() -> None:
    assert canonical_url("HTTPS://News.Example.com:443/a/b?id=3&utm_source=rss&fbclid=x#top") == \
        "https://news.example.com/a/b?id=3"
    assert canonical_url("http://example.com") == "http://example.com/"
    assert canonical_url("http://example.com:99999/a") == "http://example.com:99999/a"  # kept, not a crash


@pytest.mark.parametrize("url", ["http://[::1/feed", "http://example.com:99999/", "https://example.com:rss/"])
def test_a_malformed_url_is_a_fetch_error_naming_it(url: str) -> None:
    with pytest.raises(FetchError, match="the URL is malformed") as caught:
        fetch(url, LIMITS)
    assert url in str(caught.value)


# ---- feeds
def test_an_rss_feed_ingests_its_entries_dated_by_the_feed(web: FakeWeb, index: rag.NewsIndex) -> None:
    feed = serve_harbour(web)
    report = index.ingest([feed])
    assert len(report.added) == 3 and not report.failed, report.to_dict()
    articles = by_title(index)
    ferry = articles["Ferry service resumes after storm"]
    assert "Lene Dahl" in ferry.text  # from the page, not the one-line description
    assert ferry.published_at == "2024-03-05T07:30:00Z"  # the entry's pubDate (+0100), in UTC
    assert ferry.source == "Harbour Gazette" and ferry.author == "Mara Olsen" and ferry.language == "en"
    market = articles["Council approves new fish market"]
    assert market.url == web.base + "/articles/market.html"  # no utm_ parameters
    assert market.published_at == "2024-03-04T17:00:00Z"  # the page has no date; the entry has
    lighthouse = articles["Lighthouse keeper retires after forty years"]  # its page is a 404
    assert lighthouse.text.startswith("Jonas Berg kept the north lighthouse") and "\n" in lighthouse.text
    assert any("missing-lighthouse.html: page not read (HTTP 404 Not Found); indexed the feed's content/summary"
               in note for note in report.notes)
    # The page of an entry and the page on its own are one article (one id, from the canonical URL).
    assert index.ingest([web.base + "/articles/ferry.html"]).added == ()


def test_an_atom_feed_with_an_entry_without_a_link(web: FakeWeb, index: rag.NewsIndex) -> None:
    web.serve("/articles/orchard.html", "orchard.html")
    feed = web.serve("/atom.xml", "atom.xml", content_type="application/atom+xml")
    report = index.ingest([feed])
    assert len(report.added) == 2 and report.ok, report.to_dict()
    articles = by_title(index)
    orchard = articles["Orchard harvest breaks record"]
    assert orchard.published_at == "2024-06-01T07:15:00Z"  # the entry's, not the page's 2024-05-31
    assert orchard.source == "Valley Observer" and orchard.author == "Tomas Reyes"
    assert "cannery in the lower valley" in orchard.text
    bridge = articles["Bridge repairs close the river road"]  # no link: its content, its guid for an id
    assert bridge.text.startswith("The river road will be closed") and bridge.published_at == "2024-05-30T16:45:00Z"
    assert index.ingest([feed]).unchanged and set(index.ingest([feed]).unchanged) == set(report.added)


def test_a_feed_is_read_up_to_its_entry_limit_and_says_so(web: FakeWeb) -> None:
    from rag.ingest.readers import Record
    from rag.ingest.web import read_url

    feed = serve_harbour(web)
    records = list(read_url(feed, FetchLimits(max_entries=2)))
    assert len(records) == 2 and all(isinstance(r, Record) for r in records)
    assert f"{feed}: the feed has 3 entries; only the first 2 were read" in records[0].notes
    assert web.hits("/articles/missing-lighthouse.html") == 0


def test_feed_is_told_from_page_by_its_content_not_its_type(web: FakeWeb, index: rag.NewsIndex) -> None:
    serve_harbour(web)
    feed = web.serve("/feed", "rss.xml", content_type="text/plain")  # mislabelled: sniffed
    assert len(index.ingest([feed]).added) == 3


def test_a_malformed_feed_fails_with_its_reason(web: FakeWeb, index: rag.NewsIndex) -> None:
    feed = web.serve("/broken.xml", "malformed.xml", content_type=RSS)
    report = index.ingest([feed])
    assert [f.path for f in report.failed] == [feed]
    assert report.failed[0].reason.startswith("malformed feed: ")
    assert index.stats().articles == 0


# ---- watch
def test_watch_twice_the_second_round_is_a_304_that_costs_one_request(web: FakeWeb, index: rag.NewsIndex) -> None:
    feed = serve_harbour(web, etag='"v1"')
    first = watch(index, [feed], 60, once=True, limits=LIMITS)
    assert [(r.status, r.added, r.failed) for r in first] == [("changed", 3, 0)]
    gen, fetched = generation(index), len(web.requests)
    assert web.hits("/articles/ferry.html") == 1
    second = watch(index, [feed], 60, once=True, limits=LIMITS)
    assert [r.status for r in second] == ["not modified"] and second[0].line().endswith("not modified (304)")
    assert web.requests[fetched:] == [{"path": "/feed.xml", "if_none_match": '"v1"', "if_modified_since": None,
                                       "user_agent": web.requests[0]["user_agent"]}]
    assert generation(index) == gen  # nothing parsed, nothing written
    assert web.requests[0]["user_agent"].startswith("rag-news/")
    state = FeedStore(index.folder / STATE_FILE).get(feed)
    assert state.etag == '"v1"' and state.last_error is None and state.entries_seen == 2  # the fallback retries


def test_watch_uses_last_modified_when_there_is_no_etag(web: FakeWeb, index: rag.NewsIndex) -> None:
    stamp = "Tue, 05 Mar 2024 09:00:00 GMT"
    feed = serve_harbour(web, last_modified=stamp)
    watch(index, [feed], 60, once=True, limits=LIMITS)
    assert [r.status for r in watch(index, [feed], 60, once=True, limits=LIMITS)] == ["not modified"]
    assert web.requests[-1]["if_modified_since"] == stamp


def test_watch_adds_new_entries_and_updates_changed_ones(web: FakeWeb, index: rag.NewsIndex) -> None:
    feed = serve_harbour(web, etag='"v1"')
    watch(index, [feed], 60, once=True, limits=LIMITS)
    ferry_id = next(a.id for a in index.articles() if a.title.startswith("Ferry"))
    # Upstream: the ferry story is corrected (new text, new <description>), an orchard story is added.
    page = web.fixture("ferry.html").replace(b"twelve tonnes", b"eight tonnes")
    web.serve("/articles/ferry.html", body=page)
    web.serve("/articles/orchard.html", "orchard.html")
    xml = web.fixture("rss.xml").replace(b"The ferry to the islands runs again.",
                                         b"The ferry to the islands runs again, with a weight limit.")
    new_item = (f"<item><title>Orchard harvest breaks record</title><link>{web.base}/articles/orchard.html</link>"
                "<guid>orchard-1</guid><pubDate>Sat, 01 Jun 2024 07:15:00 GMT</pubDate></item>").encode()
    web.serve("/feed.xml", body=xml.replace(b"<item>", new_item + b"<item>", 1), content_type=RSS, etag='"v2"')
    before = web.hits("/articles/market.html")
    [round_] = watch(index, [feed], 60, once=True, limits=LIMITS)
    assert (round_.status, round_.added, round_.updated, round_.unchanged, round_.failed) == ("changed", 1, 1, 2, 0)
    assert web.hits("/articles/market.html") == before  # an entry seen unchanged is not fetched again
    assert "eight tonnes" in index.article(ferry_id).text and index.stats().articles == 4
    assert by_title(index)["Orchard harvest breaks record"].published_at == "2024-06-01T07:15:00Z"


def test_an_entry_that_failed_is_retried_next_round(web: FakeWeb, index: rag.NewsIndex) -> None:
    """No page and no summary: nothing indexed for it, so the feed's ETag is not kept and the
    next round fetches the feed again (not a 304) and tries that entry's page once more."""
    web.serve("/articles/ferry.html", "ferry.html")
    xml = web.fixture("rss.xml").replace(b"<description>The council voted for a covered fish market.</description>",
                                         b"")
    feed = web.serve("/feed.xml", body=xml, content_type=RSS, etag='"v1"')
    [first] = watch(index, [feed], 60, once=True, limits=LIMITS)
    assert (first.added, first.failed) == (2, 1)  # the market page is missing (404) and has no summary
    [failure] = first.report.failed
    assert failure.path.startswith(web.base + "/articles/market.html")
    assert failure.reason == "page not read (HTTP 404 Not Found) and the entry has no content or summary"
    assert FeedStore(index.folder / STATE_FILE).get(feed).etag is None
    web.serve("/articles/market.html", "market.html")  # the page is back
    [second] = watch(index, [feed], 60, once=True, limits=LIMITS)
    assert (second.status, second.added, second.failed) == ("changed", 1, 0)
    assert web.hits("/articles/ferry.html") == 1  # the entry already indexed was not fetched again
    [third] = watch(index, [feed], 60, once=True, limits=LIMITS)
    assert third.status == "not modified"


def test_failing_feeds_fail_alone_and_leave_the_index_intact(web: FakeWeb, index: rag.NewsIndex) -> None:
    good = serve_harbour(web, etag='"v1"')
    watch(index, [good], 60, once=True, limits=LIMITS)
    gen, count = generation(index), index.stats().articles
    down = f"http://127.0.0.1:{_free_port()}/feed.xml"
    slow = web.serve("/slow.xml", "rss.xml", content_type=RSS, delay=3)
    broken = web.serve("/broken.xml", "malformed.xml", content_type=RSS)
    huge = web.serve("/huge.xml", content_type=RSS, huge=5_000_000)
    error = web.serve("/error.xml", body=b"boom", status=500)
    page = web.serve("/articles/market.html", "market.html")
    started = time.monotonic()
    rounds = watch(index, [down, slow, broken, huge, error, page, good], 60, once=True, limits=LIMITS)
    assert time.monotonic() - started < 20
    lines = [r.line() for r in rounds]
    assert lines[0].startswith(f"FAILED  {down}: cannot connect")
    assert lines[1] == f"FAILED  {slow}: timed out: no response for 1 s"
    assert lines[2].startswith(f"FAILED  {broken}: malformed feed: ")
    assert lines[3] == f"FAILED  {huge}: too large: over the limit of 0.2 MB; not read further"
    assert lines[4] == f"FAILED  {error}: HTTP 500 Internal Server Error"
    assert lines[5].startswith(f"FAILED  {page}: not an RSS or Atom feed")
    assert lines[6] == f"{good}: not modified (304)"  # the good feed is polled as usual
    assert generation(index) == gen and index.stats().articles == count
    store = FeedStore(index.folder / STATE_FILE)
    assert store.get(error).last_error == "HTTP 500 Internal Server Error"
    # The state is SQLite rows, not pickles, in its own file beside the index.
    with sqlite3.connect(index.folder / STATE_FILE) as db:
        assert {r[0] for r in db.execute("SELECT url FROM feeds")} >= {good, error, huge}


def test_an_interrupted_round_is_redone(web: FakeWeb, settings, embedder) -> None:
    """The feed's ETag is stored only after its articles are written: a round whose write
    failed (here: the index is locked by another writer) is done in full next time."""
    from rag.store.lock import WriteLock

    index = rag.open_index(settings.index_dir, settings.replace(lock_timeout=0.2))
    feed = serve_harbour(web, etag='"v1"')
    settings.index_dir.mkdir(parents=True)
    with WriteLock(settings.index_dir, 1):
        [locked] = watch(index, [feed], 60, once=True, limits=LIMITS)
    assert locked.status == "failed" and "is locked by PID" in locked.error, locked.error
    assert FeedStore(index.folder / STATE_FILE).get(feed).etag is None
    [again] = watch(index, [feed], 60, once=True, limits=LIMITS)
    assert (again.status, again.added) == ("changed", 3)


def test_poll_reuses_nothing_but_the_state(web: FakeWeb, index: rag.NewsIndex) -> None:
    feed = serve_harbour(web)  # no validators: every round is a full fetch, entries seen are skipped
    store = FeedStore(index.folder / STATE_FILE)
    assert poll(index, feed, store, LIMITS).added == 3
    pages = web.hits("/articles/ferry.html")
    again = poll(index, feed, store, LIMITS)
    assert (again.status, again.added, again.updated, again.unchanged) == ("changed", 0, 0, 3)
    assert web.hits("/articles/ferry.html") == pages


def test_intervals() -> None:
    assert [parse_interval(t) for t in ("30s", "15m", "1h", "90", "1.5h")] == [30, 900, 3600, 90, 5400]
    for bad in ("", "0s", "15 minutes", "-1m", "h"):
        with pytest.raises(ConfigError):
            parse_interval(bad)


def test_watch_refuses_a_file_url_before_polling(index: rag.NewsIndex) -> None:
    with pytest.raises(FetchError, match="only http:// and https://"):
        watch(index, ["file:///etc/hosts"], 60, once=True, limits=LIMITS)


# ---- the UI's library panel
def test_the_ui_adds_a_feed_by_url_in_its_ingest_job(web: FakeWeb, tmp_path: Path) -> None:
    from rag.ui.app import Panels
    from rag.ui.base import UISettings

    folder = tmp_path / "idx"
    settings = make_settings(folder)
    panels = Panels.create(settings, rag.open_index(folder, settings), ui=UISettings(host="127.0.0.1"))
    feed = serve_harbour(web)
    assert panels.library.urls_allowed
    outputs = list(panels.library.add_url(f"  {feed} "))
    status, stats, _, box = outputs[-1]
    assert "Indexed 3 new articles" in status and box == ""  # the box is emptied for the next address
    assert "missing-lighthouse.html: page not read (HTTP 404 Not Found)" in html_text(status)
    assert "<b>3</b> articles" in stats
    for bad, said in (("/etc/passwd", "only http:// and https://"), ("file:///etc/passwd", "not file://"),
                      ("", "Type the address")):
        status = list(panels.library.add_url(bad))[-1][0]
        assert said in html_text(status) and "rag-error" in status
    assert panels.library.ctx.index.stats().articles == 3


def test_a_public_ui_without_a_login_fetches_no_url(web: FakeWeb, tmp_path: Path) -> None:
    from rag.ui.app import Panels
    from rag.ui.base import UISettings

    folder = tmp_path / "idx"
    settings = make_settings(folder)
    public = Panels.create(settings, rag.open_index(folder, settings), ui=UISettings(host="0.0.0.0"))
    feed = serve_harbour(web)
    assert not public.library.urls_allowed
    status = list(public.library.add_url(feed))[-1][0]
    assert "Adding from a web address is off" in status and web.requests == []
    behind_login = Panels.create(settings, rag.open_index(folder, settings),
                                 ui=UISettings(host="0.0.0.0", user="u", password="p"))
    assert behind_login.library.urls_allowed


def html_text(markup: str) -> str:
    import html

    return html.unescape(re.sub(r"<[^>]+>", "", markup))


# ---- the command line
run = functools.partial(run_cli, timeout=240)


def test_cli_ingest_a_feed_then_watch_it(web: FakeWeb, tmp_path: Path) -> None:
    folder = tmp_path / "idx"
    feed = serve_harbour(web, etag='"v1"')
    atom = web.serve("/atom.xml", "atom.xml", content_type="application/atom+xml")
    web.serve("/articles/orchard.html", "orchard.html")
    proc = run("ingest", "-q", feed, index=folder)
    assert "added 3, updated 0" in proc.stdout
    assert "missing-lighthouse.html: page not read (HTTP 404 Not Found)" in proc.stderr
    proc = run("watch", feed, atom, "--once", "-q", index=folder)
    out = proc.stdout.splitlines()
    assert out[0].endswith(f"{feed}: new 0, updated 0, unchanged 3, failed 0")  # known from the ingest
    assert out[1].endswith(f"{atom}: new 2, updated 0, unchanged 0, failed 0")
    proc = run("watch", feed, atom, "--once", "--json", index=folder)
    assert [r["status"] for r in json.loads(proc.stdout)] == ["not modified", "changed"]  # atom has no ETag
    proc = run("watch", web.base + "/nowhere.xml", "--once", "--every", "30s", index=folder, check=3)
    assert f"FAILED  {web.base}/nowhere.xml: HTTP 404 Not Found" in proc.stderr
    proc = run("watch", "file:///etc/hosts", "--once", index=folder, check=1)
    assert proc.stderr.strip() == "error: file:///etc/hosts: only http:// and https:// URLs can be fetched, not file://"
    proc = run("watch", feed, "--every", "soon", index=folder, check=1)
    assert "cannot read the interval 'soon'" in proc.stderr
    assert json.loads(run("stats", "--json", index=folder).stdout)["articles"] == 5


def test_ctrl_c_stops_watch_cleanly(web: FakeWeb, tmp_path: Path) -> None:
    folder = tmp_path / "idx"
    feed = serve_harbour(web, etag='"v1"')
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAG_INDEX": str(folder)}
    proc = subprocess.Popen([RAG, "watch", feed, "--every", "1h", "-q"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()  # the first round, logged when it is done
        assert line.rstrip().endswith(f"{feed}: new 3, updated 0, unchanged 0, failed 0"), line
        proc.send_signal(signal.SIGINT)  # while it waits for the next round
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "watch stopped" in err and "Traceback" not in err
    assert FeedStore(folder / STATE_FILE).get(feed).etag == '"v1"'
    assert json.loads(run("stats", "--json", index=folder).stdout)["articles"] == 3
    run("watch", feed, "--once", index=folder)  # the lock was released


def _free_port() -> int:
    """A port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
