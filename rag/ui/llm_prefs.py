"""The LLM server a UI user chose (base URL, model, and the key only if they asked to keep
it), kept in a small JSON file on their machine: written atomically, readable by them alone.
Nothing here runs at import; every function takes the file's path."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rag.errors import ConfigError
from rag.redact import redact_url, register_secret

log = logging.getLogger(__name__)
#: Names the file's layout; a file of another version is ignored, not misread.
VERSION = 1
PREFS_ENV = "RAG_UI_LLM_PREFS"


@dataclass(frozen=True)
class LLMPrefs:
    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)  # never in a repr, a log line or a traceback

    def __repr__(self) -> str:
        # Not the dataclass's own: the URL may carry a credential too.
        return (f"LLMPrefs(base_url={redact_url(self.base_url)!r}, model={self.model!r}, "
                f"api_key={'set' if self.api_key else 'not set'})")


def default_prefs_path(environ: Mapping[str, str]) -> Path:
    """$RAG_UI_LLM_PREFS, else ($XDG_CONFIG_HOME or ~/.config)/rag-news/llm.json."""
    if environ.get(PREFS_ENV):
        return Path(environ[PREFS_ENV]).expanduser()
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "rag-news" / "llm.json"


def load_prefs(path: Path) -> LLMPrefs | None:
    """The saved preferences; None when there are none (no file, or one this version cannot
    read: it is logged, not raised, since the UI then simply starts from the settings)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring the LLM preferences in %s: %s", path, type(exc).__name__)
        return None
    if not (isinstance(data, dict) and data.get("version") == VERSION and isinstance(data.get("base_url"), str)
            and isinstance(data.get("model"), str) and isinstance(data.get("api_key"), (str, type(None)))):
        log.warning("ignoring the LLM preferences in %s: not a version %d file", path, VERSION)
        return None
    register_secret(data.get("api_key"))  # a remembered key is as secret as a typed one
    return LLMPrefs(data["base_url"], data["model"], data.get("api_key") or None)


def save_prefs(path: Path, prefs: LLMPrefs, remember_key: bool) -> None:
    """Write ``prefs`` to ``path`` (mode 0600, its folder created 0700), replacing the file
    atomically; the key is written only with ``remember_key``. An unwritable place is a
    ConfigError naming the path."""
    path = Path(path)
    data = {"version": VERSION, "base_url": prefs.base_url, "model": prefs.model}
    if remember_key and prefs.api_key:
        data["api_key"] = prefs.api_key
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkstemp creates the file 0600 from the start: the key is never readable by others, not
        # even for the moment between writing and a chmod.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ConfigError(f"cannot save the LLM settings to {path} ({exc.strerror or type(exc).__name__}); "
                          f"set {PREFS_ENV} to a writable file") from None
    log.info("saved the LLM settings to %s (key %s)", path, "included" if "api_key" in data else "not saved")


def forget(path: Path) -> bool:
    """Delete the saved preferences (key included); False when there were none."""
    try:
        Path(path).unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise ConfigError(f"cannot delete the LLM settings file {path} ({why})") from None
    log.info("deleted the LLM settings in %s", path)
    return True
