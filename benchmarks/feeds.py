"""What a round of 'rag watch' costs, in requests and pages fetched, and the memory a huge
response can take.

A real HTTP server on 127.0.0.1 (tests/fake_web.py) serves an RSS feed of N articles of the
bundled sample corpus, each on its own HTML page. Rounds of ``rag.feeds.watch(once=True)``:

  1. first round (every entry new: feed + N pages, N articles written)
  2. unchanged feed that sends an ETag: a 304
  3. unchanged feed without ETag/Last-Modified: a 200, every entry already seen
  4. two entries changed upstream (page text and entry): feed + 2 pages, 2 updated

Timing: rounds 2 and 3 repeated alternately (--repeat times), medians and their ratio.
Memory: a child process fetches an endless response with the default 10 MB-per-response limit
(FetchLimits) and reports its peak (VmHWM) and how it ended.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/feeds.py [--entries 30] [--repeat 7]
"""

from __future__ import annotations

import argparse
import html
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

MEMORY_CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from fake_web import FakeWeb
from rag.errors import FetchError
from rag.ingest.fetch import FetchLimits, fetch
def hwm_mb():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024
web = FakeWeb()
url = web.serve("/endless.xml", content_type="application/rss+xml", huge=1_000_000_000)
before, t0 = hwm_mb(), time.perf_counter()
try:
    fetch(url, FetchLimits())
    outcome = "read in full (!)"
except FetchError as exc:
    outcome = exc.reason
print(json.dumps({"peak_before_mb": before, "peak_after_mb": hwm_mb(), "seconds": time.perf_counter() - t0,
                  "outcome": outcome}))
"""


def page(title: str, text: str) -> bytes:
    paragraphs = "".join(f"<p>{html.escape(p)}</p>" for p in text.split("\n") if p.strip())
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
            f"<body><article><h1>{html.escape(title)}</h1>{paragraphs}</article></body></html>").encode()


def feed_xml(base: str, items: list[tuple[str, str, str]]) -> bytes:
    entries = "".join(f"<item><title>{html.escape(t)}</title><link>{base}/a/{slug}.html</link><guid>{slug}</guid>"
                      f"<pubDate>Mon, 04 Mar 2024 10:00:00 GMT</pubDate><description>{html.escape(d)}</description>"
                      f"</item>" for slug, t, d in items)
    return (f'<?xml version="1.0"?><rss version="2.0"><channel><title>Sample Wire</title>{entries}'
            f"</channel></rss>").encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    import rag
    from conftest import make_settings
    from fake_web import FakeWeb
    from rag.feeds import watch
    from rag.ingest.readers import read_file

    articles = []
    for path in rag.sample_articles():
        for record in read_file(path, 20_000_000):
            fields = getattr(record, "fields", {})
            text, title = fields.get("text"), fields.get("title")
            if isinstance(text, str) and len(text) > 400 and title:
                articles.append((title, text[:3000]))
    articles = articles[:args.entries]
    web = FakeWeb()
    items = []
    for n, (title, text) in enumerate(articles):
        web.serve(f"/a/{n}.html", body=page(title, text))
        items.append((str(n), title, text[:160]))
    web.serve("/feed.xml", body=feed_xml(web.base, items), content_type="application/rss+xml", etag='"v1"')
    web.serve("/plain.xml", body=feed_xml(web.base, items), content_type="application/rss+xml")  # no validators

    folder = Path(tempfile.mkdtemp(prefix="rag-feeds-bench-")) / "index"
    index = rag.open_index(folder, make_settings(folder))

    def round_(url: str) -> tuple[dict[str, float], float]:
        before, t0 = len(web.requests), time.perf_counter()
        [r] = watch(index, [url], 60, once=True)
        seconds = time.perf_counter() - t0
        new = web.requests[before:]
        pages = sum(q["path"].startswith("/a/") for q in new)
        return {"requests": len(new), "pages": pages, "added": r.added, "updated": r.updated,
                "unchanged": r.unchanged, "status": r.status}, seconds

    print(f"feed of {len(articles)} sample articles, each on its own page")
    print("| round | status | requests | pages fetched | added | updated | unchanged | seconds |")
    print("|---|---|---|---|---|---|---|---|")

    def show(name: str, result: tuple[dict, float]) -> None:
        r, s = result
        print(f"| {name} | {r['status']} | {r['requests']} | {r['pages']} | {r['added']} | {r['updated']} | "
              f"{r['unchanged']} | {s:.2f} |")

    show("1. first round", round_(web.base + "/feed.xml"))
    show("2. unchanged, ETag", round_(web.base + "/feed.xml"))
    round_(web.base + "/plain.xml")  # its first round: every entry is already indexed, unchanged
    show("3. unchanged, no validators", round_(web.base + "/plain.xml"))
    changed = [(slug, t, d + " (corrected)") if slug in ("0", "1") else (slug, t, d) for slug, t, d in items]
    for n in (0, 1):
        web.serve(f"/a/{n}.html", body=page(articles[n][0], articles[n][1] + "\nCorrection: a figure was wrong."))
    web.serve("/feed.xml", body=feed_xml(web.base, changed), content_type="application/rss+xml", etag='"v2"')
    show("4. two entries changed", round_(web.base + "/feed.xml"))

    etag_s, plain_s = [], []
    for _ in range(args.repeat):  # alternate, so load on the shared machine hits both alike
        etag_s.append(round_(web.base + "/feed.xml")[1])
        plain_s.append(round_(web.base + "/plain.xml")[1])
    e, p = statistics.median(etag_s), statistics.median(plain_s)
    print(f"\nunchanged round, median of {args.repeat} alternating: 304 {1000 * e:.1f} ms, "
          f"200 with all entries seen {1000 * p:.1f} ms (ratio {p / e:.1f}x)")
    web.close()

    out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(REPO / "tests")], capture_output=True, text=True,
                         timeout=600, cwd=REPO)
    print(f"\nendless response, default limit: {out.stdout.strip() or out.stderr[-500:]}")


if __name__ == "__main__":
    main()
