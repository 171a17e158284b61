"""What every panel of the UI shares: its own settings, the scrubber for anything shown,
and the index it answers from."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rag
from rag.conversations import ConversationStore, default_path
from rag.redact import Redactor
from rag.settings import env, load_from_env

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UISettings:
    """The chat UI's own settings (the library's are ``rag.Settings``); each field's
    environment variable is declared with it."""

    #: Where the UI listens (loopback unless told otherwise).
    host: str = env("RAG_UI_HOST", "127.0.0.1")
    port: int = env("RAG_UI_PORT", 7860, int)
    #: Both set: the UI asks for them.
    user: str | None = env("RAG_UI_USER", None)
    password: str | None = env("RAG_UI_PASSWORD", None, secret=True)
    #: Largest file the upload accepts.
    upload_max_mb: float = env("RAG_UPLOAD_MAX_MB", 20.0, float)
    #: Questions answered at the same time.
    concurrency: int = env("RAG_UI_CONCURRENCY", 4, int)
    #: The SQLite file of saved conversations and answer feedback ("": the user's data
    #: folder, $XDG_DATA_HOME/rag-news/conversations.sqlite3).
    conversations: str = env("RAG_CONVERSATIONS", "")
    #: Where "Remember on this computer" saves the LLM server chosen in the UI ("": the user's
    #: config folder, $XDG_CONFIG_HOME/rag-news/llm.json).
    llm_prefs: str = env("RAG_UI_LLM_PREFS", "")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, dotenv: str | None = ".env",
                 **overrides: Any) -> UISettings:
        return load_from_env(cls, environ, dotenv, overrides)


class Scrubber:
    """Last line of defence for anything shown: the API key, the UI password
    and credentials inside URLs never leave the server (rag.redact.Redactor,
    the same redaction the server log gets)."""

    def __init__(self, settings: rag.Settings, ui: UISettings) -> None:
        self._redact = Redactor(settings, ui)

    def __call__(self, text: str) -> str:
        return self._redact(text)


@dataclass(frozen=True)
class UIContext:
    """One running UI: the library settings, the UI settings, the index, the scrubber."""

    settings: rag.Settings
    ui: UISettings
    index: rag.NewsIndex
    scrub: Scrubber
    store: ConversationStore

    @classmethod
    def create(cls, settings: rag.Settings, index: rag.NewsIndex, ui: UISettings | None = None) -> UIContext:
        ui = ui or UISettings()
        path = Path(ui.conversations).expanduser() if ui.conversations else default_path(os.environ)
        return cls(settings, ui, index, Scrubber(settings, ui), ConversationStore(path))


def friendly(exc: BaseException) -> str:
    """A short message for the user; details go to the log."""
    if isinstance(exc, rag.IndexLockedError):
        return ("Another upload or 'rag ingest' is writing to the index right now. "
                "Try again when it has finished.")
    if isinstance(exc, (rag.InvalidFilterError, rag.InvalidQueryError)):
        return f"Invalid search setting: {exc}"
    if isinstance(exc, rag.RagError):
        return str(exc)
    return f"Something went wrong ({type(exc).__name__}). The details are in the server log."
