"""Credentials out of everything printed: answers, errors, logs and the UI. A ``Redactor``
removes the values of settings declared ``secret=True``, credentials inside URLs (userinfo,
credential query parameters) and authorization headers; ``install_redaction`` applies one to
every log record of the process."""

from __future__ import annotations

import base64
import dataclasses
import html
import logging
import re
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


def _url_credentials(url: str) -> set[str]:
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
                found |= _url_credentials(value)
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


class Redactor:
    """``redactor(text)``: ``text`` without credentials. Built once from the settings
    objects whose secrets it removes (see ``secret_values``)."""

    def __init__(self, *sources: Any) -> None:
        spellings = {s for secret in secret_values(*sources) for s in _spellings(secret)
                     if len(s) >= MIN_SECRET_CHARS}
        # Longest first, so a secret is never left half-replaced by a shorter one inside it.
        alternatives = sorted(spellings, key=lambda s: (-len(s), s))
        self._literal = re.compile("|".join(map(re.escape, alternatives))) if alternatives else None

    def __call__(self, text: str) -> str:
        if not text:
            return text
        if self._literal is not None:
            text = self._literal.sub(MASK, text)
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
