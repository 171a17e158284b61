"""A real web server on 127.0.0.1 (port 0) for the feed tests: pages and feeds from
tests/data/feeds (``{base}`` in them becomes the server's address), conditional GET
(ETag, Last-Modified), and scripted faults: slow, huge (streamed without a length), 500.
It records every request so tests can count what was fetched."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent / "data" / "feeds"


@dataclass
class Route:
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    etag: str | None = None
    last_modified: str | None = None
    delay: float = 0.0  # seconds before the response starts: a slow server
    huge: int = 0  # stream this many bytes of feed items, with no Content-Length
    location: str | None = None  # a redirect's target (with status 301/302)
    trickle: float = 0.0  # seconds between 100-byte pieces of the body: a server that never finishes
    drip_headers: float = 0.0  # seconds between header lines, endlessly: headers that never end


@dataclass
class FakeWeb:
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        web = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                path = self.path.split("?")[0]
                web.requests.append({"path": path, "if_none_match": self.headers.get("If-None-Match"),
                                     "if_modified_since": self.headers.get("If-Modified-Since"),
                                     "user_agent": self.headers.get("User-Agent")})
                route = web.routes.get(path)
                if route is None:
                    return self._send(404, b"<html><body><h1>Not found</h1></body></html>", "text/html")
                if route.delay:
                    time.sleep(route.delay)
                if (route.etag and self.headers.get("If-None-Match") == route.etag) or \
                        (route.last_modified and self.headers.get("If-Modified-Since") == route.last_modified):
                    return self._send(304, b"", None, route)
                if route.huge:
                    return self._huge(route)
                if route.trickle:
                    return self._trickle(route)
                if route.drip_headers:
                    return self._drip_headers(route)
                return self._send(route.status, route.body, route.content_type, route)

            def _send(self, status: int, body: bytes, ctype: str | None, route: Route | None = None) -> None:
                self.send_response(status)
                if ctype:
                    self.send_header("Content-Type", ctype)
                if route and route.etag:
                    self.send_header("ETag", route.etag)
                if route and route.last_modified:
                    self.send_header("Last-Modified", route.last_modified)
                if route and route.location:
                    self.send_header("Location", route.location)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass  # the client refused a body over its limit

            def _huge(self, route: Route) -> None:
                self.send_response(200)
                self.send_header("Content-Type", route.content_type)
                self.end_headers()  # HTTP/1.0, no length: the body ends when the connection does
                item = b"<item><title>Filler</title><description>" + b"x" * 4000 + b"</description></item>\n"
                sent = 0
                try:
                    self.wfile.write(b'<?xml version="1.0"?><rss version="2.0"><channel><title>Huge</title>\n')
                    while sent < route.huge:
                        self.wfile.write(item)
                        sent += len(item)
                except OSError:
                    pass  # the client stopped reading: that is the point

            def _trickle(self, route: Route) -> None:
                self.send_response(200)
                self.send_header("Content-Type", route.content_type)
                self.end_headers()
                try:
                    for start in range(0, len(route.body), 100):
                        self.wfile.write(route.body[start:start + 100])
                        self.wfile.flush()
                        time.sleep(route.trickle)
                except OSError:
                    pass

            def _drip_headers(self, route: Route) -> None:
                self.send_response(200)
                try:
                    for n in range(200):
                        self.send_header(f"X-Drip-{n}", "x")
                        self.flush_headers()
                        time.sleep(route.drip_headers)
                except OSError:
                    pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def fixture(self, name: str) -> bytes:
        """A file of tests/data/feeds with this server's address filled in."""
        return (FIXTURES / name).read_text(encoding="utf-8").replace("{base}", self.base).encode("utf-8")

    def serve(self, path: str, fixture: str | None = None, **route: Any) -> str:
        """Serve ``fixture`` (or ``body=``) at ``path``; returns its full URL."""
        if fixture is not None:
            route["body"] = self.fixture(fixture)
        self.routes[path] = Route(**route)
        return self.base + path

    def hits(self, path: str) -> int:
        return sum(r["path"] == path for r in self.requests)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
