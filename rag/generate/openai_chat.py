"""Generator backend: any OpenAI-compatible chat server (OpenAI, Ollama, vLLM,
llama.cpp's server) through the official ``openai`` client.

Retries with back-off on 429/5xx/connection errors are the client's own
(``max_retries``, honouring Retry-After). Every failure becomes a
GenerationError whose message names the server (its URL redacted: no userinfo, no
key in the query) and the cause, never the key."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

from rag.errors import ConfigError
from rag.errors import GenerationError
from rag.generate.base import GenerationRequest, Turn
from rag.generate.prompt import build_messages, build_rewrite_messages
from rag.redact import Redactor, redact_url
from rag.settings import Settings

log = logging.getLogger(__name__)
DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: Generators (each with its own HTTP client and connection pool) kept for reuse: one per
#: server, key and model in use. The UI lets each browser choose a server, so it is bounded.
MAX_CACHED_GENERATORS = 8


def validate_base_url(url: str) -> str:
    """``url`` without surrounding blanks, if it is an http(s) URL with a host; else a
    ConfigError naming it (redacted: it may carry a credential)."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        ok = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:  # a bad port or bracket
        ok = False
    if not ok:
        raise ConfigError(f"the LLM server URL {redact_url(url)!r} is not an http(s) URL; "
                          f"give one like http://localhost:11434/v1 or {DEFAULT_BASE_URL}")
    return url


class OpenAIGenerator:
    def __init__(self, settings: Settings, max_tokens: int | None = None) -> None:
        import openai

        url = validate_base_url(settings.openai_base_url) if settings.openai_base_url else DEFAULT_BASE_URL
        if not settings.openai_api_key and url == DEFAULT_BASE_URL:
            raise ConfigError("the openai generator needs OPENAI_API_KEY (or OPENAI_BASE_URL for a local server)")
        # The client gets the real URL (some proxies authenticate by its userinfo); every
        # message and log line gets ``base_url``, the redacted form.
        self._redact = Redactor(settings)
        self.base_url = self._redact(url)
        self.model = settings.llm_model
        self.name = f"openai:{self.model}"
        self._temperature = settings.llm_temperature
        self._timeout = settings.llm_timeout
        self._retries = settings.llm_max_retries
        self._max_tokens = max_tokens or openai.omit  # a cap for small local models; none for others
        # Local servers (Ollama, llama.cpp) accept any key; the client insists on one.
        self._client = openai.OpenAI(base_url=url, api_key=settings.openai_api_key or "no-key",
                                     timeout=settings.llm_timeout, max_retries=settings.llm_max_retries)

    def generate(self, request: GenerationRequest, stream: bool = False) -> Iterator[str]:
        return self._chat(build_messages(request), stream)

    def rewrite(self, history: tuple[Turn, ...], question: str) -> str:
        """A standalone version of a follow-up question."""
        messages = build_rewrite_messages([{"role": t.role, "content": t.content} for t in history], question)
        text = "".join(self._chat(messages, stream=False)).strip().strip('"')
        return text.splitlines()[0] if text else question

    def _chat(self, messages: list[dict[str, str]], stream: bool) -> Iterator[str]:
        import openai

        try:
            if not stream:
                resp = self._client.chat.completions.create(
                    model=self.model, messages=messages,  # type: ignore[arg-type]
                    temperature=self._temperature, max_tokens=self._max_tokens)
                content = _content(resp)
                yield content
                return
            # `with`: a reader that stops early (the UI's stop button) closes the HTTP stream,
            # so the server stops writing instead of finishing an answer nobody reads.
            with self._client.chat.completions.create(
                    model=self.model, messages=messages,  # type: ignore[arg-type]
                    temperature=self._temperature, stream=True, max_tokens=self._max_tokens) as events:
                for event in events:
                    choices = getattr(event, "choices", None)
                    if choices is None:
                        raise GenerationError(self._where("sent a malformed stream event (no choices)"))
                    for choice in choices:
                        piece = getattr(choice.delta, "content", None) if choice.delta is not None else None
                        if piece:
                            yield piece
        except GenerationError:
            raise
        except openai.APITimeoutError:
            raise GenerationError(self._where(f"did not answer within {self._timeout:g} s")) from None
        except openai.APIConnectionError as exc:
            raise GenerationError(self._where(f"cannot be reached ({_cause(exc, self._redact)})")) from None
        except openai.AuthenticationError:
            raise GenerationError(self._where("rejected the API key (401); check OPENAI_API_KEY")) from None
        except openai.RateLimitError:
            raise GenerationError(self._where(f"is rate limiting (429), still after {self._retries} retries; "
                                              f"try again later")) from None
        except openai.NotFoundError:
            raise GenerationError(
                self._where(f"does not know model {self.model!r} (404); check RAG_LLM_MODEL")) from None
        except openai.APIStatusError as exc:
            raise GenerationError(self._where(f"failed with HTTP {exc.status_code}")) from None
        except (openai.APIResponseValidationError, ValueError, KeyError, AttributeError, TypeError,
                IndexError) as exc:
            raise GenerationError(self._where(f"sent a malformed response ({type(exc).__name__})")) from None

    def _where(self, what: str) -> str:
        return f"The LLM server at {self.base_url} {what}."


_cache: OrderedDict[tuple[object, ...], OpenAIGenerator] = OrderedDict()
_cache_lock = threading.Lock()


def _cache_key(settings: Settings) -> tuple[object, ...]:
    # The key's digest, not the key: the cache's keys are never a place to find one.
    key = hashlib.sha256(settings.openai_api_key.encode()).hexdigest() if settings.openai_api_key else None
    return (settings.openai_base_url, key, settings.llm_model, settings.llm_temperature, settings.llm_timeout,
            settings.llm_max_retries)


def openai_generator(settings: Settings) -> OpenAIGenerator:
    """The OpenAIGenerator for ``settings``' server, key and model, reused across calls (its
    client keeps connections open); distinct servers, keys or models never share one. At most
    MAX_CACHED_GENERATORS are kept, the least recently used dropped first."""
    key = _cache_key(settings)
    with _cache_lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
            return found
    made = OpenAIGenerator(settings)  # outside the lock: building a client takes a while
    with _cache_lock:
        found = _cache.setdefault(key, made)
        _cache.move_to_end(key)
        while len(_cache) > MAX_CACHED_GENERATORS:
            _cache.popitem(last=False)  # its client closes when the last answer using it ends
    return found


def cached_generator_count() -> int:
    """How many generators ``openai_generator`` keeps now."""
    with _cache_lock:
        return len(_cache)


def _content(resp: object) -> str:
    choices = getattr(resp, "choices", None)
    if not choices:
        raise ValueError("no choices")
    content = choices[0].message.content
    if not isinstance(content, str):
        raise ValueError("no message content")
    return content


def _cause(exc: BaseException, redact: Callable[[str], str]) -> str:
    """The root cause's text, short. It is the HTTP library's and may quote the URL, so it is
    redacted before it is cut (a cut could leave half a secret that no longer matches)."""
    inner = exc.__cause__ or exc.__context__
    while inner is not None and (inner.__cause__ or inner.__context__) is not None:
        inner = inner.__cause__ or inner.__context__
    text = redact(str(inner) if inner is not None else str(exc))
    return "connection refused" if "refused" in text.lower() else text.split("\n")[0][:120] or "no response"
