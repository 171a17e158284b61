"""``manifest.json``: the human-readable head of an index folder.

It names the embedding model, the counts and the current generation folder.
Replacing it (atomically) is what publishes a new generation."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rag.errors import IndexCorruptError

FORMAT = "rag-news-index"
#: 2: BM25 stop words per language (bm25/tokenizer.json), "rag_version" and "build" recorded.
#: Version 1 indexes open read-only as before (their BM25 is re-tokenised in memory) and are
#: rewritten as version 2 by the next ingest or by ``rag upgrade``.
#: 3: catalog schema 2, untitled articles titled by their first sentence (``title_derived``). Older
#: indexes open as before (an untitled article shows its id); ``rag upgrade`` or the next ingest derives titles.
#: 4: catalog schema 3, syndicated copies grouped into stories (``story_id``, MinHash signatures).
#: Older indexes open as before (each article its own story); ``rag upgrade`` or the next ingest groups them.
FORMAT_VERSION = 4
MANIFEST = "manifest.json"
_GEN_DIR = re.compile(r"^gen-\d{6,}$")


@dataclass(frozen=True)
class Manifest:
    embed_model: str
    dim: int
    generation: int
    data_dir: str  # "gen-000007", relative to the index folder
    articles: int
    chunks: int
    vector_index: str  # "flat" | "hnsw" | "ivfpq"
    created: str
    updated: str
    chunk_tokens: int
    chunk_overlap: int
    file_sizes: dict[str, int] = field(default_factory=dict)
    #: The format the folder was written in (older ones are read, and upgraded when written).
    format_version: int = FORMAT_VERSION
    #: The rag that wrote it, and what it was built with (Python, FAISS, bm25s, tokenizer).
    rag_version: str | None = None
    build: dict[str, str] = field(default_factory=dict)
    #: Which store holds the chunks (rag.store.stores.STORES); "faiss" is not written (the files beside).
    store: str = "faiss"
    #: Where another store keeps them (Milvus: the URI without token, database, collections).
    location: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        where = {"store": self.store, "location": self.location} if self.store != "faiss" else {}
        return where | {
            "format": FORMAT, "format_version": self.format_version,
            "rag_version": self.rag_version, "build": self.build,
            "embedding": {"model": self.embed_model, "dim": self.dim},
            "generation": self.generation, "data_dir": self.data_dir,
            "counts": {"articles": self.articles, "chunks": self.chunks},
            "vector_index": {"kind": self.vector_index, "metric": "inner_product", "normalized": True},
            "chunking": {"target_tokens": self.chunk_tokens, "overlap_tokens": self.chunk_overlap},
            "created": self.created, "updated": self.updated,
            "files": self.file_sizes,
        }

    @classmethod
    def from_json(cls, data: Any, where: Path) -> Manifest:
        def bad(why: str) -> IndexCorruptError:
            return IndexCorruptError(f"{where}: {why}")

        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise bad(f"not a {FORMAT} manifest")
        version = data.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
            raise bad(f"format version {version!r} is newer than this program understands "
                      f"({FORMAT_VERSION}); upgrade rag")
        try:
            m = cls(
                embed_model=_typed(data["embedding"]["model"], str),
                dim=_typed(data["embedding"]["dim"], int),
                generation=_typed(data["generation"], int),
                data_dir=_typed(data["data_dir"], str),
                articles=_typed(data["counts"]["articles"], int),
                chunks=_typed(data["counts"]["chunks"], int),
                vector_index=_typed(data["vector_index"]["kind"], str),
                created=_typed(data["created"], str),
                updated=_typed(data["updated"], str),
                chunk_tokens=_typed(data["chunking"]["target_tokens"], int),
                chunk_overlap=_typed(data["chunking"]["overlap_tokens"], int),
                file_sizes={str(k): _typed(v, int) for k, v in _typed(data.get("files", {}), dict).items()},
                format_version=version,
                rag_version=data.get("rag_version") if isinstance(data.get("rag_version"), str) else None,
                build={str(k): str(v) for k, v in _typed(data.get("build", {}), dict).items()},
                store=_typed(data.get("store", "faiss"), str),
                location=_typed(data.get("location", {}), dict),
            )
        except (KeyError, TypeError) as exc:
            raise bad(f"missing or mistyped field ({exc})") from None
        if not _GEN_DIR.match(m.data_dir):
            raise bad(f"data_dir {m.data_dir!r} is not a generation folder name")
        if m.dim <= 0 or m.articles < 0 or m.chunks < 0 or m.vector_index not in ("flat", "hnsw", "ivfpq"):
            raise bad("impossible values (dim, counts or vector index kind)")
        if any(name.startswith(("/", ".")) or ".." in name.split("/") for name in m.file_sizes):
            raise bad("file names must be relative paths inside the generation folder")
        return m


def _typed(value: Any, kind: type) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"expected {kind.__name__}, got {value!r}")
    return value


def read_manifest(folder: Path) -> Manifest | None:
    """The manifest of an index folder, or None if the folder holds no index."""
    path = folder / MANIFEST
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise IndexCorruptError(f"cannot read {path}: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise IndexCorruptError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    return Manifest.from_json(data, path)


def write_manifest(folder: Path, manifest: Manifest) -> None:
    """Atomically replace the manifest: readers see the old or the new one."""
    tmp = folder / f".{MANIFEST}.{os.getpid()}.tmp"
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump(manifest.to_json(), fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, folder / MANIFEST)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not leave a half manifest beside the real one
        raise
    fsync_dir(folder)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

