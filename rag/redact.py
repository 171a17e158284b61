"""Credentials out of everything printed: answers, errors, logs and the UI. A ``Redactor``
removes the values of settings declared ``secret=True``, credentials inside URLs (userinfo,
credential query parameters) and authorization headers; ``install_redaction`` applies one to
every log record of the process."""

from __future__ import annotations

import base64
import dataclasses
import functools
import html
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

log = logging.getLogger(__name__)

# Anything printed (answers, errors, logs, the UI) goes through a Redactor: the values of
# settings declared ``secret=True``, credentials inside URLs, and credential query parameters.

#: Shorter secrets are not replaced literally: blanking "abc" everywhere would garble ordinary
#: text. (Inside a URL's userinfo or a credential parameter they are still redacted.)
MIN_SECRET_CHARS = 4
MASK = "***"

#: ``scheme://user:password@`` and ``scheme://token@``: everything up to the authority's last "@".
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/?#\"'<>]*@")
#: Query parameters that carry credentials ("?api_key=", "&x-amz-signature=", "&access_token=").
_CREDENTIAL_NAME = (r"(?:api[_-]?key|key|token|access[_-]?token|password|passwd|pwd|secret|sig|signature|"
                    r"auth|credentials?)")
_QUERY_CREDENTIAL = re.compile(rf"(?i)([?&;][\w.\-]*?{_CREDENTIAL_NAME}=)[^&#\s\"'<>]*")
#: "Authorization: Bearer ..." as some libraries print request headers (the scheme word is
#: required: "authorization: the ..." in an article is prose).
_AUTH_HEADER = re.compile(r"(?i)(\bauthorization[\"']?\s*[:=]\s*[\"']?(?:bearer|basic|token)\s+)[^\s\"',}]+")


def url_credentials(url: str) -> set[str]:
    """The credentials inside ``url``: the password (or a lone user name, which is then the
    token), credential query values, and the Basic-auth header httpx builds from userinfo."""
    try:
        parts = urlsplit(url.strip())
        user, password = parts.username, parts.password
    except ValueError:  # not a URL after all (a bad port, a stray bracket)
        return set()
    found: set[str] = set()
    if password:
        found.add(password)
        pair = f"{unquote(user or '')}:{unquote(password)}".encode()
        found.add(base64.b64encode(pair).decode("ascii"))
    elif user:
        found.add(user)
    for name, value in parse_qsl(parts.query, keep_blank_values=False):
        if value and re.fullmatch(rf"(?i)[\w.\-]*?{_CREDENTIAL_NAME}", name):
            found.add(value)
    return found


def secret_values(*sources: Any) -> set[str]:
    """The secret strings in ``sources``: settings objects (fields declared ``secret=True``,
    and credentials inside any URL-valued field) or plain strings (each one a secret)."""
    found: set[str] = set()
    for source in sources:
        if source is None:
            continue
        if isinstance(source, str):
            found.add(source)
            continue
        if not dataclasses.is_dataclass(source):
            raise TypeError(f"not a settings object: {type(source).__name__}")
        for f in dataclasses.fields(source):
            value = getattr(source, f.name)
            if f.metadata.get("secret") and value:
                found.add(str(value))
            elif isinstance(value, str) and "://" in value:
                found |= url_credentials(value)
    return {value for value in found if len(value) >= MIN_SECRET_CHARS}


def _spellings(secret: str) -> Iterable[str]:
    """How ``secret`` may appear in text: as is, URL-decoded or -encoded (either hex case),
    HTML-escaped."""
    plain = unquote(secret)
    for value in {secret, plain}:
        yield value
        yield html.escape(value, quote=True)
        for encoded in {quote(value, safe=""), quote(value), quote_plus(value)}:
            yield encoded
            yield re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), encoded)


@functools.lru_cache(maxsize=64)
def _alternation(secrets: frozenset[str]) -> re.Pattern[str] | None:
    """One pattern matching every spelling of ``secrets`` (None: there is nothing to match).
    Cached: every Redactor of the same settings shares it, and with many run-time secrets
    building it takes milliseconds."""
    spellings = {s for secret in secrets for s in _spellings(secret) if len(s) >= MIN_SECRET_CHARS}
    # Longest first, so a secret is never left half-replaced by a shorter one inside it.
    alternatives = sorted(spellings, key=lambda s: (-len(s), s))
    return re.compile("|".join(map(re.escape, alternatives))) if alternatives else None


#: Secrets registered while running (keys typed into the UI) kept at most: a long-running
#: server must not grow without bound; the least recently registered one is dropped first.
MAX_RUNTIME_SECRETS = 256


class _RuntimeSecrets:
    """The process's run-time secrets, applied by every ``Redactor``. Writers take the lock and
    publish a new (generation, secrets) pair; readers take the pair in one read, never locking."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: OrderedDict[str, None] = OrderedDict()
        self.state: tuple[int, frozenset[str]] = (0, frozenset())

    def add(self, values: Iterable[str]) -> None:
        dropped = 0
        with self._lock:
            for value in values:
                self._secrets[value] = None
                self._secrets.move_to_end(value)  # registered again: the newest
            while len(self._secrets) > MAX_RUNTIME_SECRETS:
                self._secrets.popitem(last=False)
                dropped += 1
            self._publish()
        if dropped:
            log.warning("forgot the %d oldest run-time secret(s): at most %d are redacted", dropped,
                        MAX_RUNTIME_SECRETS)

    def remove(self, values: Iterable[str]) -> None:
        with self._lock:
            for value in values:
                self._secrets.pop(value, None)
            self._publish()

    def _publish(self) -> None:
        current = frozenset(self._secrets)
        if current != self.state[1]:
            self.state = (self.state[0] + 1, current)


_runtime = _RuntimeSecrets()


def register_secret(*values: str | None) -> None:
    """Redact ``values`` from now on, everywhere a ``Redactor`` is used (shown text and, once
    ``install_redaction`` ran, every log record): for secrets that arrive at run time, such
    as an API key typed into the UI. Thread-safe; None and secrets shorter than
    MIN_SECRET_CHARS are ignored; at most MAX_RUNTIME_SECRETS are kept (the least recently
    registered is dropped first: register a key again each time it is used)."""
    _runtime.add(v for v in values if v and len(v) >= MIN_SECRET_CHARS)


def register_url_secrets(url: str | None) -> None:
    """``register_secret`` for the credentials inside ``url`` (its password, a token as user
    name, credential query values, and the Basic-auth header built from them)."""
    if url:
        register_secret(*url_credentials(url))


def forget_secret(*values: str | None) -> None:
    """Stop redacting run-time secrets registered with ``register_secret`` (e.g. a key the user
    removed; tests use it to leave the process as they found it)."""
    _runtime.remove(v for v in values if v)


def runtime_secret_count() -> int:
    """How many run-time secrets are redacted now (at most MAX_RUNTIME_SECRETS)."""
    return len(_runtime.state[1])


class Redactor:
    """``redactor(text)``: ``text`` without credentials. Built once from the settings
    objects whose secrets it removes (see ``secret_values``); it also removes the
    run-time secrets of ``register_secret``, as registered at the time of each call."""

    def __init__(self, *sources: Any) -> None:
        self._secrets = frozenset(secret_values(*sources))
        self._compiled: tuple[int, re.Pattern[str] | None] = (0, _alternation(self._secrets))

    def _pattern(self) -> re.Pattern[str] | None:
        """One pattern for this redactor's secrets and the run-time ones (one pattern, so that
        neither kind can leave the other half-replaced), recompiled when those change."""
        generation, runtime = _runtime.state
        compiled = self._compiled
        if compiled[0] != generation:
            compiled = self._compiled = (generation, _alternation(self._secrets | runtime))
        return compiled[1]

    def __call__(self, text: str) -> str:
        if not text:
            return text
        pattern = self._pattern()
        if pattern is not None:
            text = pattern.sub(MASK, text)
        text = _USERINFO.sub(rf"\1{MASK}@", text)
        text = _QUERY_CREDENTIAL.sub(rf"\1{MASK}", text)
        return _AUTH_HEADER.sub(rf"\1{MASK}", text)


def redact(text: str, *sources: Any) -> str:
    """``text`` with every credential removed: the literal (and URL-encoded) values of the
    ``secret=True`` settings in ``sources``, userinfo in URLs (``user:pass@`` -> ``***@``)
    and credential query parameters (``?api_key=...`` -> ``?api_key=***``). Build a
    ``Redactor`` instead when redacting many texts with the same settings."""
    return Redactor(*sources)(text)


def redact_url(url: str | None, *sources: Any) -> str | None:
    """The form of ``url`` fit to show: no userinfo, no credential in the query, no secret
    of ``sources`` anywhere in it (None stays None)."""
    return None if url is None else Redactor(*sources)(url)


def safe_repr(settings: Any) -> str:
    """A settings object's repr without secrets: fields declared ``secret=True`` are left
    out (``repr=False``), other text is redacted (a URL's userinfo)."""
    redactor = Redactor(settings)
    shown = ", ".join(f"{f.name}={redactor(repr(getattr(settings, f.name)))}"
                      for f in dataclasses.fields(settings) if f.repr)
    return f"{type(settings).__name__}({shown})"


# ---- logging
def _redact_record(record: logging.LogRecord, redactor: Redactor) -> None:
    """Redact a record in place: its message with the arguments merged in, its exception
    and stack text. A record without a secret is left as it is (``args`` intact, for
    formatters that read them). Redacting twice changes nothing, so the factory, the root
    logger's filter and a handler's may all see the same record."""
    try:
        message = record.getMessage()
    except Exception:  # a broken format: keep what there is, redacted, instead of the raw args
        try:
            message = f"{record.msg} (arguments: {record.args!r})"
        except Exception:
            message = str(record.msg)
        record.args = None
    clean = redactor(message)
    if clean != message or record.args is None:
        record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redactor(record.exc_text)
    if record.stack_info:
        record.stack_info = redactor(record.stack_info)


class RedactingFilter(logging.Filter):
    """A logging filter that removes credentials from every record it sees (it never
    drops one). Attach it to handlers: a logger's own filters miss records that
    propagate up from other loggers."""

    def __init__(self, *sources: Any) -> None:
        super().__init__()
        self.redactor = sources[0] if len(sources) == 1 and isinstance(sources[0], Redactor) else Redactor(*sources)

    def filter(self, record: logging.LogRecord) -> bool:
        _redact_record(record, self.redactor)
        return True


_installed: RedactingFilter | None = None
_attached: list[logging.Handler] = []  # the handlers install_redaction gave its filter
_previous_factory: Callable[..., logging.LogRecord] | None = None


def _redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """The record factory while redaction is installed: records are redacted when created,
    so handlers added later (and loggers that do not propagate to the root) see no secret."""
    record = (_previous_factory or logging.LogRecord)(*args, **kwargs)
    active = _installed
    if active is not None:
        _redact_record(record, active.redactor)
    return record


def install_redaction(*sources: Any) -> RedactingFilter:
    """Keep secrets out of every log record of this process: a ``RedactingFilter`` on the
    root logger and its handlers, and a log-record factory that redacts each record as it
    is made (covering handlers added later and library loggers such as openai's and
    httpx's, which log request URLs). ``sources``: the settings objects whose secrets to
    remove (e.g. ``Settings`` and the UI's settings). Call it after logging is configured;
    calling it again replaces the previous installation."""
    global _installed, _previous_factory
    uninstall_redaction()
    flt = RedactingFilter(*sources)
    root = logging.getLogger()
    root.addFilter(flt)
    for handler in root.handlers:
        handler.addFilter(flt)
        _attached.append(handler)
    if _previous_factory is None:  # else our factory is still in the chain (see uninstall_redaction)
        _previous_factory = logging.getLogRecordFactory()
        logging.setLogRecordFactory(_redacting_factory)
    _installed = flt
    log.debug("log redaction installed")
    return flt


def uninstall_redaction() -> None:
    """Undo ``install_redaction`` (tests use it to leave logging as they found it)."""
    global _installed, _previous_factory
    flt, _installed = _installed, None
    if flt is None:
        return
    logging.getLogger().removeFilter(flt)
    for handler in _attached:  # also those removed from the root since
        handler.removeFilter(flt)
    _attached.clear()
    if logging.getLogRecordFactory() is _redacting_factory and _previous_factory is not None:
        logging.setLogRecordFactory(_previous_factory)
        _previous_factory = None
    # Else another factory was installed on top of ours: ours stays in that chain, inactive
    # until the next install_redaction (which then does not install it a second time).
