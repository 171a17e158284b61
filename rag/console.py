"""What the CLI and the UI print: untrusted text made safe for a terminal, and the log
levels of the libraries we use kept quiet unless asked for (``-vv``)."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Callable

#: Loggers of libraries that log at INFO/DEBUG (or set their own level: bm25s sets DEBUG at import).
NOISY_LOGGERS = ("bm25s", "transformers", "sentence_transformers", "httpx", "httpx2", "httpcore", "openai", "faiss",
                 "urllib3", "huggingface_hub", "filelock", "trafilatura", "htmldate", "courlan", "asyncio",
                 "gradio", "uvicorn.access", "matplotlib", "PIL")

# C0 and C1 control characters except tab, DEL, the Unicode line/paragraph separators and the
# bidirectional overrides that can visually reorder a line (a file name must not forge output).
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def safe(text: object, multiline: bool = False) -> str:
    """``text`` as one printable line: control characters (newline, ESC, ...) shown as
    escapes, bytes that were not UTF-8 (surrogate-escaped file names) as ``\\xNN``.
    ``multiline`` keeps newlines (an answer's paragraphs) and escapes the rest."""
    s = str(text)
    if any("\udc80" <= ch <= "\udcff" for ch in s):
        s = s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    s = s.encode("utf-8", "backslashreplace").decode("utf-8")  # any other lone surrogate
    return _UNSAFE.sub(lambda m: m.group() if multiline and m.group() == "\n"
                       else m.group().encode("unicode_escape").decode("ascii"), s)


def clean_argument(text: str) -> str:
    """A command-line argument as text: bytes that are not UTF-8 (the OS hands them to
    Python as surrogates, which no encoder accepts) become U+FFFD."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate that is not an escaped byte
        return text.encode("utf-8", "replace").decode("utf-8")


class _TerminalSafe(logging.Filter):
    """Log messages quote file names and article text: escaped like everything else printed."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = safe(message)  # one line: a newline in a name must not forge a log line
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class _QuietLibraries(logging.Filter):
    """Drops library records below WARNING at the handler: setting a library logger's level
    is not enough, bm25s sets its own to DEBUG whenever it is first imported."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name.split(".")[0] not in NOISY_LOGGERS


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number of at least ``minimum`` (a bad value is shown made
    safe for the terminal, as every echoed input is)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {safe(text)!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, got {value}")
        return value
    return parse


def configure_logging(verbosity: int = 0, fmt: str = "%(levelname)s %(name)s: %(message)s") -> None:
    """Root logging to stderr at WARNING (INFO with 1 / -v, DEBUG with 2 / -vv), lines
    terminal-safe, libraries quiet unless -vv. Like ``logging.basicConfig``, it leaves alone a
    process whose logging is already set up (an application embedding rag, a test runner)."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    handler.addFilter(_TerminalSafe())
    root.addHandler(handler)
    root.setLevel(logging.WARNING - 10 * min(max(verbosity, 0), 2))
    if verbosity < 2:
        handler.addFilter(_QuietLibraries())
        quiet_libraries()


def quiet_libraries() -> None:
    """Libraries log at WARNING and up only, and Hugging Face libraries draw no
    model-loading progress bars ("Loading weights")."""
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # Read when transformers/huggingface_hub are first imported (lazily, later).
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if "transformers" in sys.modules:  # already imported: tell it directly
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
