"""``check_connection``: does an OpenAI-compatible server answer with this key and model?
The UI's "test connection" button. GET {base}/models (when the server has it) lists the
models; a one-token chat completion proves the model answers. Every outcome is one
friendly line that names the server by its redacted URL and never contains the key."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx

from rag.errors import ConfigError
from rag.generate.openai_chat import validate_base_url
from rag.redact import Redactor, redact_url, register_secret, register_url_secrets, url_credentials

log = logging.getLogger(__name__)
#: How many of the server's models a detail line names.
SHOWN_MODELS = 5


@dataclass(frozen=True)
class ConnectionCheck:
    ok: bool
    detail: str  # one friendly line, no secret in it
    models: tuple[str, ...] = ()  # what GET /models listed (empty: the server has no list)
    latency_s: float | None = None  # the chat completion's round trip; None: it did not succeed


class _Failed(Exception):
    """A check step failed; the message is the detail line (already redacted)."""

    models: tuple[str, ...] = ()  # what GET /models listed before the failure


@dataclass(frozen=True)
class _Probe:
    """One server, key and model under test, and how to name them in a detail line."""

    client: httpx.Client
    base: httpx.URL
    shown: str  # the base URL, redacted
    model: str
    has_key: bool
    timeout: float
    redact: Redactor

    def url(self, path: str) -> httpx.URL:
        return self.base.copy_with(path=self.base.path.rstrip("/") + path)

    def send(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        try:
            return self.client.request(method, self.url(path), json=body)
        except httpx.TimeoutException:
            raise _Failed(f"timeout: {self.shown} did not answer {method} {path} within {self.timeout:g} s") from None
        except httpx.ConnectError as exc:
            if "refused" in str(exc).lower():
                raise _Failed(f"connection refused: is the server running at {self.shown}?") from None
            raise _Failed(f"cannot reach {self.shown} ({self._short(str(exc))})") from None
        except httpx.HTTPError as exc:
            raise _Failed(f"cannot talk to {self.shown} ({type(exc).__name__}: {self._short(str(exc))})") from None

    def json(self, resp: httpx.Response, what: str) -> Any:
        """The body of a 2xx reply, parsed; a web page or broken JSON is a _Failed."""
        try:
            return json.loads(resp.text)
        except ValueError:
            pass
        if _is_page(resp):
            raise _Failed(f"not an OpenAI-compatible server: {self.shown} answered {what} with a web page "
                          f"({_content_type(resp)}); does the URL point at its API (often ending in /v1)?")
        raise _Failed(f"malformed JSON: {self.shown} answered {what} with a reply that is not valid JSON")

    def status_failure(self, resp: httpx.Response, what: str, models: tuple[str, ...]) -> _Failed:
        """The detail for a reply that is not 2xx."""
        status, said = resp.status_code, self._server_says(resp)
        if status in (401, 403):
            fix = "check the key" if self.has_key else "it needs an API key"
            return _Failed(f"bad key: {self.shown} rejected the API key ({status}{said}); {fix}")
        if status == 429:
            return _Failed(f"rate limited: {self.shown} is rate limiting (429{said}); try again later")
        if status >= 500 and status != 501:
            return _Failed(f"server error: {self.shown} failed with HTTP {status}{said}")
        if status == 404 and models:  # the list came from this path: it is the model
            return _Failed(f"unknown model: {self.shown} does not know model {self.model!r} (404{said}); "
                           f"it offers {_some(models)}")
        if status == 404 and _is_json(resp):
            return _Failed(f"unknown model or path: {self.shown} answered {what} with 404{said}; check the "
                           f"model name {self.model!r} and that the URL ends in the API path (often /v1)")
        if status == 404:
            return _Failed(f"not found: {self.shown} has no {what} (404); is it an OpenAI-compatible server, "
                           f"and does the URL end in its API path (often /v1)?")
        if status in (405, 501) or not _is_json(resp):
            return _Failed(f"not an OpenAI-compatible server: {self.shown} answered {what} with HTTP {status} "
                           f"({_content_type(resp)})")
        return _Failed(f"request refused: {self.shown} answered {what} with HTTP {status}{said}")

    def _server_says(self, resp: httpx.Response) -> str:
        """': the server's own error message', short and redacted ('' when it gives none)."""
        try:
            body = json.loads(resp.text)
        except ValueError:
            return ""
        error = body.get("error", body) if isinstance(body, dict) else None
        message = error.get("message") or error.get("detail") if isinstance(error, dict) else error
        return f": {self._short(str(message))}" if message else ""

    def _short(self, text: str) -> str:
        # Redacted before it is cut: a cut could leave half a secret that no longer matches.
        return " ".join(self.redact(text).split())[:160]


def check_connection(base_url: str, api_key: str | None, model: str, timeout: float = 10) -> ConnectionCheck:
    """Whether the OpenAI-compatible server at ``base_url`` answers ``model`` with ``api_key``.
    A ``base_url`` that is not http(s) or an empty ``model`` is a ConfigError; everything the
    server does (refused, timeout, 401, 404, 429, 5xx, malformed or not OpenAI at all) is a
    ConnectionCheck with ``ok=False`` and a one-line ``detail``."""
    base_url = validate_base_url(base_url)
    model = model.strip()
    if not model:
        raise ConfigError("no model name given; enter the model the server should use, like gpt-4o-mini")
    api_key = (api_key or "").strip() or None
    register_secret(api_key)  # the key typed into the UI: out of every log line from now on
    register_url_secrets(base_url)
    shown = redact_url(base_url) or ""
    base = _parse_url(base_url)
    if base is None:
        raise ConfigError(f"the LLM server URL {shown!r} is not a valid URL")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    redact = Redactor(*(v for v in (api_key, *url_credentials(base_url)) if v))
    with httpx.Client(timeout=timeout, headers=headers, follow_redirects=True) as client:
        probe = _Probe(client, base, shown, model, bool(api_key or base.userinfo), timeout, redact)
        try:
            result = _check(probe)
        except _Failed as failed:
            result = ConnectionCheck(False, str(failed), failed.models)
    detail = " ".join(redact(result.detail).split())  # one line, and no secret whatever a server echoed
    result = ConnectionCheck(result.ok, detail, result.models, result.latency_s)
    log.info("LLM connection check %s: %s", "passed" if result.ok else "failed", result.detail)
    return result


def _check(probe: _Probe) -> ConnectionCheck:
    models = _models(probe)
    try:
        return _chat(probe, models)
    except _Failed as failed:
        failed.models = models  # a list is worth showing even when the model failed
        raise


def _chat(probe: _Probe, models: tuple[str, ...]) -> ConnectionCheck:
    """The one-token chat completion."""
    started = time.perf_counter()
    resp = probe.send("POST", "/chat/completions", {
        "model": probe.model, "messages": [{"role": "user", "content": "Say OK."}], "max_tokens": 1})
    latency = time.perf_counter() - started
    if not resp.is_success:
        raise probe.status_failure(resp, "POST /chat/completions", models)
    body = probe.json(resp, "POST /chat/completions")
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _Failed(f"not an OpenAI-compatible reply: {probe.shown} answered the chat completion "
                      f"without any choices")
    detail = f"connected: model {probe.model!r} at {probe.shown} answered in {latency:.2f} s"
    if models and probe.model not in models:
        detail += f"; note: {probe.model!r} is not in its model list ({_some(models)})"
    elif models:
        detail += f"; {len(models)} model(s) offered"
    return ConnectionCheck(True, detail, models, latency)


def _models(probe: _Probe) -> tuple[str, ...]:
    """The ids GET /models lists; () when the server has no such list (404, 405, 501)."""
    resp = probe.send("GET", "/models")
    if resp.status_code in (404, 405, 501):
        return ()  # many local servers have no list; the chat completion decides
    if not resp.is_success:
        raise probe.status_failure(resp, "GET /models", ())
    body = probe.json(resp, "GET /models")
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise _Failed(f"not an OpenAI-compatible server: {probe.shown} answered GET /models without a "
                      f"'data' list")
    return tuple(str(m["id"]) for m in data if isinstance(m, dict) and m.get("id"))


def _parse_url(url: str) -> httpx.URL | None:
    try:
        return httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        return None


def _content_type(resp: httpx.Response) -> str:
    return resp.headers.get("content-type", "no content type").split(";")[0].strip() or "no content type"


def _is_json(resp: httpx.Response) -> bool:
    return "json" in _content_type(resp)


def _is_page(resp: httpx.Response) -> bool:
    return "html" in _content_type(resp) or resp.text.lstrip()[:1] == "<"


def _some(models: tuple[str, ...]) -> str:
    more = f" and {len(models) - SHOWN_MODELS} more" if len(models) > SHOWN_MODELS else ""
    return ", ".join(models[:SHOWN_MODELS]) + more
