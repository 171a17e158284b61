"""The index stores by name (RAG_STORE), and which one an index folder uses.

A new store is one module with a class like rag.store.faiss_store.FaissStore (see
rag.store.base.Store) and one line here."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from rag.errors import ConfigError
from rag.settings import Settings
from rag.store.base import Store
from rag.store.faiss_store import FaissStore
from rag.store.manifest import read_manifest
from rag.store.milvus import MilvusStore

log = logging.getLogger(__name__)

STORES: dict[str, Callable[[Path, Settings], Store]] = {"faiss": FaissStore, "milvus": MilvusStore}


def open_store(folder: Path, settings: Settings) -> Store:
    """The store of the index in ``folder``: the one its manifest names, else RAG_STORE (a new index)."""
    manifest = read_manifest(folder) if folder.is_dir() else None
    name = manifest.store if manifest is not None else settings.store
    if manifest is not None and name != settings.store and settings.store != "faiss":
        log.warning("%s holds a %s index; RAG_STORE=%s applies to new indexes ('rag migrate' copies one)",
                    folder, name, settings.store)
    if name not in STORES:
        raise ConfigError(f"{folder} uses the index store {name!r}, which this rag does not know; upgrade rag")
    return STORES[name](folder, settings)


def milvus_target(to: str, settings: Settings) -> Settings:
    """Settings for a Milvus store named like ``rag migrate --to``: ``milvus://HOST:PORT[/DB]`` (a server;
    ``milvus+https://`` for TLS), ``milvus:PATH`` (a Milvus Lite file) or ``milvus`` (Lite, in the index folder)."""
    from urllib.parse import urlsplit

    if to in ("milvus", "milvus:"):
        return settings.replace(store="milvus", milvus_uri=None, milvus_db=None)
    parts = urlsplit(to)
    if parts.scheme in ("milvus", "milvus+http", "milvus+https") and parts.netloc:
        if "@" in parts.netloc:
            raise ConfigError("put Milvus credentials in RAG_MILVUS_TOKEN, not in the --to address")
        scheme = "https" if parts.scheme == "milvus+https" else "http"
        db = parts.path.strip("/") or None
        return settings.replace(store="milvus", milvus_uri=f"{scheme}://{parts.netloc}", milvus_db=db)
    if to.startswith("milvus:") and not to.startswith("milvus://"):
        return settings.replace(store="milvus", milvus_uri=str(Path(to[len("milvus:"):]).expanduser().resolve()),
                                milvus_db=None)
    raise ConfigError(f"--to {to!r}: expected milvus://HOST:PORT[/DB], milvus:PATH or milvus")
