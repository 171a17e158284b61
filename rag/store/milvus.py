"""The Milvus store: articles, their texts, chunks (vector + BM25 over the same stems as the FAISS
store) and stories in Milvus collections, so several machines can share one index.

Generations as in the FAISS store, but per row (rag.store.milvus_read): a writer of generation G
inserts rows with ``gen_from = G`` and retires rows by setting ``gen_to = G``; publishing is one
upsert of the meta row naming G. Aborting deletes the writer's rows and un-retires the others;
the next writer does the same for a writer that died. After publishing, rows no reader of G or
G - 1 can see are deleted. The index folder keeps the write lock, feeds and a readable
manifest.json (store "milvus", the URI without its token, the collections)."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from rag.errors import ConfigError, IndexCorruptError, IndexWriteError
from rag.news import Article, Chunk
from rag.settings import Settings
from rag.store.generation import build_info, gen_dir_name, _version
from rag.store.grouping import regroup
from rag.store.lock import WriteLock
from rag.store.manifest import MANIFEST, Manifest, now_iso, write_manifest
from rag.store.milvus_read import LIVE, Collections, MilvusCatalog, MilvusSnapshot, batches
from rag.store.sparse import tokenize
from rag.stories import StoryLSH

log = logging.getLogger(__name__)

LITE_FILE = "milvus.db"
#: Characters per stored piece of an article's text (a VARCHAR holds at most 65,535 bytes).
TEXT_PIECE = 16_000
_PARTS = 4096  # texts' primary key: article row * _PARTS + piece
_META_KEY = 0
#: Milvus Lite files kept open at once in a process (each runs a server process of its own).
LITE_OPEN = 4
_clients: OrderedDict[tuple[str, str, str], Any] = OrderedDict()
_clients_lock = threading.Lock()
#: (client, collection prefix) whose collections are loaded (searchable).
_loaded: set[tuple[int, str]] = set()


class _LiteNoise(logging.Filter):
    """Milvus Lite serves gRPC in this process; pymilvus 3 asks it for AllocTimestamp, which it does not
    implement, and grpc logs each refusal as an ERROR with a traceback (harmless: the client falls back)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Method not implemented" not in record.getMessage()


def connect(uri: str, token: str | None, db: str | None) -> Any:
    """A MilvusClient (one per server and database in a process: Milvus Lite allows one per file)."""
    try:
        from pymilvus import MilvusClient
    except ImportError:
        raise ConfigError("the Milvus store needs pymilvus and milvus-lite: pip install 'rag-news[milvus]'") from None
    key = (uri, token or "", db or "")
    with _clients_lock:
        if key in _clients:
            _clients.move_to_end(key)
        else:
            lite = [k for k in _clients if "://" not in k[0]]
            for old in lite[:max(0, len(lite) - LITE_OPEN + 1)] if "://" not in uri else []:
                evicted = _clients.pop(old)  # the least recently used Lite file: reopened when asked again
                _loaded.difference_update({k for k in _loaded if k[0] == id(evicted)})
                evicted.close()
            grpc_log = logging.getLogger("grpc._server")
            if "://" not in uri and not any(isinstance(f, _LiteNoise) for f in grpc_log.filters):
                grpc_log.addFilter(_LiteNoise())
            kwargs: dict[str, Any] = {"uri": uri, "token": token or ""}
            if db:
                kwargs["db_name"] = db
            if "://" not in uri:
                # Milvus Lite's in-process gRPC server does not permit keepalive pings on idle
                # connections: after a few it answers GOAWAY "too_many_pings", and the reconnect
                # that follows failed a test's next client to the same file. A local server needs none.
                kwargs["grpc_options"] = {"grpc.keepalive_time_ms": 2**31 - 1, "grpc.keepalive_permit_without_calls": 0}
            for attempt in range(3):
                try:
                    _clients[key] = MilvusClient(**kwargs)
                    break
                except Exception as exc:  # pymilvus raises MilvusException, grpc or OSError alike
                    if attempt == 2:
                        raise IndexWriteError(f"cannot reach Milvus at {public_uri(uri)}: {exc}") from exc
                    log.info("connecting to Milvus at %s failed (%s); retrying", public_uri(uri), exc)
                    time.sleep(1.0 + attempt)  # a channel that just got GOAWAY is in reconnect backoff
        return _clients[key]


def public_uri(uri: str) -> str:
    """The URI without credentials (user:password@ is not written to manifest.json or logs)."""
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https", "tcp", "grpc") and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return uri


class MilvusStore:
    name = "milvus"

    def __init__(self, folder: Path, settings: Settings) -> None:
        self.folder = folder
        self.settings = settings
        on_disk = _read_location(folder)
        configured = settings.milvus_uri
        self.uri = configured or on_disk.get("uri") or LITE_FILE
        self.db = settings.milvus_db or on_disk.get("db")
        self.names = Collections(on_disk.get("prefix") or settings.milvus_collection)

    @property
    def is_local(self) -> bool:
        return "://" not in self.uri

    @property
    def client(self) -> Any:
        uri = str(self.folder / self.uri) if self.is_local else self.uri  # a Lite file: beside the manifest
        client = connect(uri, self.settings.milvus_token, self.db)
        if (id(client), self.names.prefix) not in _loaded:
            # A reopened Milvus Lite file (or a restarted server) has its collections released.
            for name in self.names.all():
                if client.has_collection(name):
                    client.load_collection(name)
            _loaded.add((id(client), self.names.prefix))
        return client

    def location(self) -> dict[str, Any]:
        return {"uri": public_uri(self.uri), "db": self.db, "prefix": self.names.prefix,
                "collections": self.names.all()}

    def _info(self) -> dict[str, Any] | None:
        if not self.client.has_collection(self.names.meta):
            return None
        rows = self.client.query(self.names.meta, filter=f"key == {_META_KEY}", output_fields=["info"])
        return json.loads(rows[0]["info"]) if rows else None

    def manifest(self) -> Manifest | None:
        if not (self.folder / MANIFEST).exists():
            return None
        info = self._info()
        if info is None:
            raise IndexCorruptError(f"{self.folder / MANIFEST} names Milvus collections {self.names.prefix}_* at "
                                    f"{public_uri(self.uri)}, which hold no index (dropped, or another server?)")
        return self._manifest(info)

    def _manifest(self, info: dict[str, Any]) -> Manifest:
        m = info["manifest"]
        return Manifest(embed_model=m["embed_model"], dim=m["dim"], generation=info["generation"],
                        data_dir=gen_dir_name(info["generation"]), articles=info["articles"], chunks=info["chunks"],
                        vector_index="flat", created=m["created"], updated=m["updated"],
                        chunk_tokens=m["chunk_tokens"], chunk_overlap=m["chunk_overlap"],
                        rag_version=m.get("rag_version"), build=m.get("build", {}), store=self.name,
                        location=self.location())

    def stamp(self) -> int | None:
        if not (self.folder / MANIFEST).exists():
            return None
        info = self._info()
        return info["generation"] if info else None

    def snapshot(self) -> MilvusSnapshot | None:
        if not (self.folder / MANIFEST).exists():
            return None
        info = self._info()
        return MilvusSnapshot(self, self.names, self._manifest(info), info) if info else None

    def writer(self, base: MilvusSnapshot | None, embed_model: str, dim: int, chunk_tokens: int, chunk_overlap: int,
               exact_limit: int, stories: StoryLSH | None = None) -> MilvusWriter:
        return MilvusWriter(self, base, {"embed_model": embed_model, "dim": dim, "chunk_tokens": chunk_tokens,
                                         "chunk_overlap": chunk_overlap}, stories)

    def lock(self, timeout: float) -> WriteLock:
        return WriteLock(self.folder, timeout)

    def close(self) -> None:
        pass  # the process keeps the connection for the next NewsIndex (see LITE_OPEN)

    # ---- schema ----
    def create(self, dim: int) -> None:
        """Create the collections (a new index)."""
        from pymilvus import DataType, Function, FunctionType

        c, local = self.client, self.is_local
        kind = "FLAT" if local else "AUTOINDEX"  # exact in Milvus Lite; the server's choice on a cluster

        def collection(name: str, fields: list[tuple[str, Any, dict[str, Any]]], vectors: dict[str, str],
                       functions: Sequence[Any] = ()) -> None:
            if c.has_collection(name):
                return
            schema = c.create_schema(auto_id=False)
            for field, dtype, kwargs in fields:
                schema.add_field(field, dtype, **kwargs)
            for f in functions:
                schema.add_function(f)
            params = c.prepare_index_params()
            for field, metric in vectors.items():
                if metric == "BM25":
                    params.add_index(field, index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                                     params={"bm25_k1": 1.5, "bm25_b": 0.75})  # bm25s' defaults
                else:
                    params.add_index(field, index_type=kind, metric_type=metric)
            c.create_collection(name, schema=schema, index_params=params, consistency_level="Strong")

        text = {"max_length": 65_535}
        opt = {"max_length": 65_535, "nullable": True}
        pk = ("row", DataType.INT64, {"is_primary": True})
        gens = [("gen_from", DataType.INT64, {}), ("gen_to", DataType.INT64, {})]
        dummy = ("_v", DataType.FLOAT_VECTOR, {"dim": 2})  # Milvus wants a vector field in every collection
        collection(self.names.articles, [pk, ("id", DataType.VARCHAR, text), *gens] + [
            (f, DataType.VARCHAR, opt) for f in ("title", "url", "source", "author", "published", "language", "origin")
        ] + [(f, DataType.VARCHAR, text) for f in ("content_hash", "text_hash", "ingested_at")] + [
            ("title_derived", DataType.BOOL, {}), ("chars", DataType.INT64, {}), ("n_chunks", DataType.INT64, {}),
            dummy], {"_v": "L2"})
        collection(self.names.texts, [pk, ("art_row", DataType.INT64, {}), ("part", DataType.INT64, {}),
                                      ("text", DataType.VARCHAR, text), dummy], {"_v": "L2"})
        collection(self.names.chunks, [pk, ("article_id", DataType.VARCHAR, text), *gens] + [
            (f, DataType.INT64, {}) for f in ("ordinal", "start", "end", "n_tokens")] + [
            ("text", DataType.VARCHAR, text),
            ("terms", DataType.VARCHAR, text | {"enable_analyzer": True, "analyzer_params": {"tokenizer": "standard"}}),
            ("sparse", DataType.SPARSE_FLOAT_VECTOR, {}), ("vector", DataType.FLOAT_VECTOR, {"dim": dim})] + [
            (f, DataType.VARCHAR, opt) for f in ("published", "source", "language")],
            {"vector": "IP", "sparse": "BM25"},
            [Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["terms"],
                      output_field_names=["sparse"])])
        collection(self.names.stories, [pk, ("article_id", DataType.VARCHAR, text), *gens,
                                        ("story_id", DataType.VARCHAR, opt), ("sig", DataType.VARCHAR, text), dummy],
                   {"_v": "L2"})
        collection(self.names.meta, [("key", DataType.INT64, {"is_primary": True}), ("info", DataType.VARCHAR, text),
                                     dummy], {"_v": "L2"})


def _read_location(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    where = data.get("location") if isinstance(data, dict) and data.get("store") == "milvus" else None
    return where if isinstance(where, dict) else {}


class MilvusWriter:
    """Builds generation G = published + 1 in the collections (see the module's docstring)."""

    def __init__(self, store: MilvusStore, base: MilvusSnapshot | None, meta: dict[str, Any],
                 stories: StoryLSH | None) -> None:
        self.store = store
        self.names = store.names
        self.base = base
        self.stories = stories
        self._meta = meta
        self._published = False
        info = store._info() if base is not None else None
        if base is None:
            store.create(meta["dim"])
            info = store._info()
            if info is not None and info["articles"]:
                raise IndexWriteError(f"the Milvus collections {self.names.prefix}_* at {public_uri(store.uri)} "
                                      f"already hold an index that {store.folder} does not name; choose other names "
                                      f"(RAG_MILVUS_COLLECTION) or drop them")
        self.published = info["generation"] if info else 0
        self.generation = self.published + 1
        self._next_row = info["next_row"] if info else 1
        self.catalog = MilvusCatalog(store, self.names, self.generation)
        self._removed: list[str] = []
        self._touched: set[str] = set()
        self._pending: dict[str, list[dict[str, Any]]] = {}
        self._undo(self.published)  # rows of a writer that died before publishing
        self.catalog.put_signatures = self._put_signatures  # type: ignore[method-assign]
        self.catalog.set_story = self._set_story  # type: ignore[method-assign]

    @property
    def client(self) -> Any:
        return self.store.client

    def __enter__(self) -> MilvusWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._published:
            self.abort()

    def _rows(self, n: int) -> list[int]:
        first = self._next_row
        self._next_row += n
        return list(range(first, first + n))

    def _insert(self, collection: str, rows: list[dict[str, Any]]) -> None:
        self._pending.setdefault(collection, []).extend(rows)
        if sum(len(r) for r in self._pending.values()) >= 2000:
            self._flush()

    def _flush(self) -> None:
        for collection, rows in self._pending.items():
            for part in batches(rows, 500):
                self.client.insert(collection, part)
        self._pending = {}

    def _retire(self, collection: str, rows: list[int]) -> None:
        for part in batches(rows, 500):
            self.client.upsert(collection, [{"row": r, "gen_to": self.generation} for r in part], partial_update=True)

    def remove(self, article_ids: Sequence[str]) -> None:
        self._flush()
        self._touched.update(self.catalog.stories_of(article_ids).values())
        self._removed += article_ids
        for collection, field in ((self.names.articles, "id"), (self.names.chunks, "article_id"),
                                  (self.names.stories, "article_id")):
            self._retire(collection, [r["row"] for r in self.catalog._by_ids(collection, field, article_ids, ["row"])])

    def add(self, article: Article, chunks: Sequence[Chunk], vectors: np.ndarray, ingested_at: str | None = None
            ) -> None:
        """``ingested_at``: when it first was (``rag migrate``), else now."""
        (row,) = self._rows(1)
        g, now = self.generation, ingested_at or now_iso()
        self._insert(self.names.articles, [{
            "row": row, "id": article.id, "gen_from": g, "gen_to": LIVE, "title": article.title, "url": article.url,
            "source": article.source, "author": article.author, "published": article.published_at,
            "language": article.language, "origin": article.origin, "content_hash": article.content_hash,
            "text_hash": article.text_hash, "ingested_at": now, "title_derived": bool(article.title_derived),
            "chars": len(article.text), "n_chunks": len(chunks), "_v": [0.0, 0.0]}])
        self._insert(self.names.texts, [
            {"row": row * _PARTS + n, "art_row": row, "part": n, "text": article.text[start:start + TEXT_PIECE],
             "_v": [0.0, 0.0]} for n, start in enumerate(range(0, max(len(article.text), 1), TEXT_PIECE))])
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(chunks), -1)
        lang = article.language or "en"
        self._insert(self.names.chunks, [
            {"row": r, "article_id": article.id, "gen_from": g, "gen_to": LIVE, "ordinal": c.ordinal,
             "start": c.start, "end": c.end, "n_tokens": c.n_tokens, "text": c.text,
             "terms": " ".join(tokenize(c.text, [lang])) or "\u2205", "vector": v.tolist(),
             "published": article.published_at, "source": article.source, "language": article.language}
            for r, c, v in zip(self._rows(len(chunks)), chunks, vectors)])

    def add_stories(self, rows: Sequence[tuple[str, str | None, bytes]]) -> None:
        """Story id and signature of added articles, already grouped (``rag migrate``: nothing to re-sign)."""
        self._insert(self.names.stories, [
            {"row": r, "article_id": a, "gen_from": self.generation, "gen_to": LIVE, "story_id": story,
             "sig": base64.b64encode(blob).decode("ascii"), "_v": [0.0, 0.0]}
            for r, (a, story, blob) in zip(self._rows(len(rows)), rows)])

    # ---- stories: the catalog's writing half, for rag.store.grouping ----
    def _put_signatures(self, rows: Sequence[tuple[str, bytes]]) -> None:
        self._flush()
        ids = [a for a, _ in rows]
        self._retire(self.names.stories, [r["row"] for r in self.catalog._by_ids(self.names.stories, "article_id",
                                                                                   ids, ["row"])])
        self._insert(self.names.stories, [
            {"row": r, "article_id": a, "gen_from": self.generation, "gen_to": LIVE, "story_id": None,
             "sig": base64.b64encode(blob).decode("ascii"), "_v": [0.0, 0.0]}
            for r, (a, blob) in zip(self._rows(len(rows)), rows)])
        self._flush()

    def _set_story(self, story_id: str, ids: Sequence[str] = (), stories: Sequence[str] = ()) -> None:
        fields = ["row", "article_id", "sig", "gen_from"]
        rows = self.catalog._by_ids(self.names.stories, "article_id", ids, fields)
        rows += self.catalog._by_ids(self.names.stories, "story_id", stories, fields)
        rows = list({r["row"]: r for r in rows}.values())
        own = [r for r in rows if r["gen_from"] == self.generation]
        old = [r for r in rows if r["gen_from"] != self.generation]
        for part in batches(own, 500):  # this generation's own rows: changed in place
            self.client.upsert(self.names.stories, [{"row": r["row"], "story_id": story_id} for r in part],
                               partial_update=True)
        self._retire(self.names.stories, [r["row"] for r in old])  # published ones: a new version
        self._insert(self.names.stories, [
            {"row": n, "article_id": r["article_id"], "gen_from": self.generation, "gen_to": LIVE,
             "story_id": story_id, "sig": r["sig"], "_v": [0.0, 0.0]} for n, r in zip(self._rows(len(old)), old)])
        self._flush()

    def publish(self) -> Manifest:
        self._flush()
        self.stories = regroup(self.catalog, self.stories, self.published or None, self._removed,  # type: ignore
                               self._touched)
        self._flush()
        cat, g = self.catalog, self.generation
        articles, chunks = cat.counts()
        langs = {r["language"] or "en" for r in cat.query(self.names.articles, "", ["language"])}
        now = now_iso()
        base = self.base.manifest if self.base is not None else None
        manifest = self._meta | {"created": base.created if base else now, "updated": now,
                                 "rag_version": _version("rag-news"),
                                 "build": build_info() | {"pymilvus": _version("pymilvus")}}
        info = {"generation": g, "articles": articles, "chunks": chunks, "date_range": list(cat.date_range()),
                "languages": sorted(langs), "next_row": self._next_row, "manifest": manifest}
        # Sealed segments: Milvus Lite searches rows still in a growing segment ~10x slower (1 s vs 0.1 s
        # at 4,000 chunks), and a server persists them.
        for name in (self.names.chunks, self.names.articles, self.names.stories):
            self.client.flush(name)
        self.client.upsert(self.names.meta, [{"key": _META_KEY, "info": json.dumps(info), "_v": [0.0, 0.0]}])
        self._published = True
        published = self.store._manifest(info)
        write_manifest(self.store.folder, published)
        if self.stories is not None:
            self.stories.generation = g
        log.info("published generation %d: %d articles, %d chunks (Milvus %s)", g, articles, chunks,
                 public_uri(self.store.uri))
        self._collect_garbage()
        return published

    def abort(self) -> None:
        self._pending = {}
        try:
            self._undo(self.published)
        except Exception as exc:  # the connection may be what failed: the next writer cleans up
            log.warning("could not remove the unpublished generation %d from Milvus (%s); the next writer "
                        "will", self.generation, exc)

    def _undo(self, published: int) -> None:
        """Remove rows of unpublished generations and un-retire rows they retired."""
        c = self.client
        for name in (self.names.articles, self.names.chunks, self.names.stories):
            if not c.has_collection(name):
                return
            dead = [r["row"] for r in c.query(name, filter=f"gen_from > {published}", output_fields=["row"])]
            if name == self.names.articles and dead:
                c.delete(self.names.texts, filter=f"art_row in {dead}")
            if dead:
                c.delete(name, filter=f"gen_from > {published}")
            back = [r["row"] for r in c.query(name, filter=f"gen_to > {published} and gen_to < {LIVE}",
                                              output_fields=["row"])]
            for part in batches(back, 500):
                c.upsert(name, [{"row": r, "gen_to": LIVE} for r in part], partial_update=True)

    def _collect_garbage(self) -> None:
        """Delete rows neither this generation nor the one before shows (a reader may still hold it)."""
        expr = f"gen_to <= {self.generation - 1}"
        try:
            gone = [r["row"] for r in self.client.query(self.names.articles, filter=expr, output_fields=["row"])]
            for part in batches(gone):
                self.client.delete(self.names.texts, filter=f"art_row in {part}")
            for name in (self.names.articles, self.names.chunks, self.names.stories):
                self.client.delete(name, filter=expr)
        except Exception as exc:  # published already: old rows only cost space until the next writer
            log.warning("Milvus garbage collection after generation %d failed: %s", self.generation, exc)
