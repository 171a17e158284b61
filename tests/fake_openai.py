"""A real OpenAI-compatible HTTP server on 127.0.0.1 (port 0) for tests:
chat completions, plain and streamed (SSE), GET /models, plus scripted faults: 429,
500, 401 (also one quoting the key back), timeouts, malformed JSON, broken streams, a web page. It records every
request so tests can inspect the prompt that was sent."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: A reply: text for the assistant, or a fault name.
Reply = str | Callable[[dict[str, Any]], str]
FAULTS = {"429", "500", "401", "404", "timeout", "malformed", "empty_choices", "broken_stream", "html",
          "401_echo"}


@dataclass
class FakeOpenAI:
    replies: list[Reply] = field(default_factory=list)  # consumed in order; the last one repeats
    requests: list[dict[str, Any]] = field(default_factory=list)
    delay: float = 0.0
    timeout_sleep: float = 5.0
    word_delay: float = 0.0  # between streamed words: a slow model
    streams_cut: int = 0  # streams the client closed before the end (e.g. a stop button)
    #: What GET /models lists; None: the server has no such endpoint (404, like many local servers).
    models: list[str] | None = field(default_factory=lambda: ["test-model"])
    #: A fault (a FAULTS name) GET /models answers with instead of the list.
    models_fault: str | None = None

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                fake.requests.append({"method": "GET", "path": self.path, "body": None,
                                      "authorization": self.headers.get("Authorization")})
                if not self.path.split("?")[0].endswith("/models") or fake.models is None:
                    return self._json(404, {"error": {"message": "not found"}})
                if fake.models_fault is not None and self._fault(fake.models_fault, {}):
                    return None
                return self._json(200, {"object": "list", "data": [
                    {"id": m, "object": "model", "created": 0, "owned_by": "test"} for m in fake.models]})

            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append({"method": "POST", "path": self.path, "body": body,
                                      "authorization": self.headers.get("Authorization")})
                if not self.path.split("?")[0].endswith("/chat/completions"):
                    return self._json(404, {"error": {"message": "not found"}})
                reply = fake.replies[0] if len(fake.replies) == 1 else fake.replies.pop(0)
                reply = reply(body) if callable(reply) else reply
                if fake.delay:
                    time.sleep(fake.delay)
                if self._fault(reply, body):
                    return None
                if body.get("stream"):
                    return self._stream(reply, broken=False)
                if reply == "broken_stream":
                    return self._json(200, _completion("unused"))
                return self._json(200, _completion(reply, body.get("model")))

            def _fault(self, reply: str, body: dict[str, Any]) -> bool:
                """Answer with the fault ``reply`` names; False: it names none."""
                if reply == "429":
                    self._json(429, {"error": {"message": "rate limited", "type": "rate_limit"}},
                               {"Retry-After": "0"})
                elif reply == "500":
                    self._json(500, {"error": {"message": "boom"}})
                elif reply == "401":
                    self._json(401, {"error": {"message": "bad key", "type": "invalid_api_key"}})
                elif reply == "404":
                    self._json(404, {"error": {"message": "no such model"}})
                elif reply == "timeout":
                    time.sleep(fake.timeout_sleep)
                    self._json(200, _completion("too late"))
                elif reply == "malformed":
                    self._raw(200, b'{"id": "x", "choices": [ this is not json')
                elif reply == "empty_choices":
                    self._json(200, {"id": "x", "object": "chat.completion", "created": 0,
                                     "model": body.get("model"), "choices": []})
                elif reply == "401_echo":  # as some servers do: the rejected credentials quoted back
                    self._json(401, {"error": {"message": f"Incorrect API key: {self.headers.get('Authorization')}"}})
                elif reply == "html":
                    self._raw(200, b"<!doctype html><html><body>Welcome to the router</body></html>",
                              content_type="text/html; charset=utf-8")
                else:
                    return False
                return True

            def _stream(self, text: str, broken: bool) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                if text == "broken_stream":
                    self.wfile.write(b'data: {"id":"x","object":"chat.completion.chunk","created":0,"model":"m",'
                                     b'"choices":[{"index":0,"delta":{"content":"Partial answer"}}]}\n\n')
                    self.wfile.write(b"data: {not json at all\n\n")
                    self.wfile.flush()
                    return
                try:
                    for word in text.split(" "):
                        piece = json.dumps({"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
                                            "choices": [{"index": 0, "delta": {"content": word + " "},
                                                         "finish_reason": None}]})
                        self.wfile.write(f"data: {piece}\n\n".encode())
                        self.wfile.flush()
                        if fake.word_delay:
                            time.sleep(fake.word_delay)
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    fake.streams_cut += 1

            def _json(self, status: int, data: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                self._raw(status, json.dumps(data).encode(), headers)

            def _raw(self, status: int, payload: bytes, headers: dict[str, str] | None = None,
                     content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def user_prompt(self, i: int = -1) -> str:
        return self.requests[i]["body"]["messages"][-1]["content"]

    def system_prompt(self, i: int = -1) -> str:
        return self.requests[i]["body"]["messages"][0]["content"]


def _completion(text: str, model: str | None = "m") -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": model or "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
