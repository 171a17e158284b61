"""The SQLite catalog of one index generation: articles and their chunks.

A chunk's SQLite rowid is also its id in the FAISS index. A published
generation is never modified again, so readers open it immutable (no locks)."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rag.errors import IndexCorruptError
from rag.news import Article, ArticleRef, ArticleSummary, Chunk, Filters, Hit, chunk_id
from rag.titles import derive_title

log = logging.getLogger(__name__)

#: 2: articles.title_derived (an untitled article is titled by its first sentence). A version 1
#: catalog is read as it is (no derived titles: the id is shown) and migrated when a writer copies it.
#: 3: articles.story_id and the signatures table (syndicated copies of one story, rag.stories). An
#: older catalog is read without stories (every article its own) and grouped when a writer copies it.
SCHEMA_VERSION = 3
_SCHEMA = """
CREATE TABLE IF NOT EXISTS articles (
    id TEXT PRIMARY KEY,
    title TEXT, url TEXT, source TEXT, author TEXT,
    published_at TEXT,            -- ISO 8601, sortable as text
    language TEXT,
    text TEXT NOT NULL,
    origin TEXT,
    content_hash TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    ingested_at TEXT NOT NULL,
    title_derived INTEGER NOT NULL DEFAULT 0,
    story_id TEXT                 -- the id of the story's earliest copy (rag.stories)
);
CREATE INDEX IF NOT EXISTS articles_text_hash ON articles(text_hash);
CREATE INDEX IF NOT EXISTS articles_source ON articles(source);
CREATE INDEX IF NOT EXISTS articles_published ON articles(published_at);
CREATE TABLE IF NOT EXISTS chunks (
    rowid INTEGER PRIMARY KEY,    -- the vector id in FAISS
    article_id TEXT NOT NULL REFERENCES articles(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    n_tokens INTEGER NOT NULL,
    text TEXT NOT NULL,
    UNIQUE (article_id, ordinal)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS signatures (  -- MinHash of the text's shingles: NUM_PERM little-endian uint32
    article_id TEXT PRIMARY KEY REFERENCES articles(id) ON DELETE CASCADE,
    minhash BLOB NOT NULL
);
"""

class Catalog:
    """One SQLite file. Writable while a generation is built, read-only after."""

    def __init__(self, path: Path, writable: bool) -> None:
        self.path = path
        self._lock = threading.Lock()
        if writable:  # errors here are the writer's (disk full, read-only): see store.generation
            self._db = sqlite3.connect(path, check_same_thread=False)
            self._db.executescript(_SCHEMA)
            self._db.execute("PRAGMA foreign_keys = ON")
            row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is not None and int(row[0]) < 2:
                _derive_titles(self._db, path)
            if row is not None and int(row[0]) < 3:
                # Grouped by the writer before it publishes (every article lacks a signature).
                self._db.execute("ALTER TABLE articles ADD COLUMN story_id TEXT")
                log.info("%s: catalog schema %s -> 3, articles are grouped into stories", path, row[0])
            self._db.execute("CREATE INDEX IF NOT EXISTS articles_story ON articles(story_id)")
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            self._db.row_factory = sqlite3.Row
            self._derived = "a.title_derived"
            self._story = "a.story_id"
            return
        try:
            self._db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None or int(row[0]) > SCHEMA_VERSION:
                raise IndexCorruptError(f"{path}: unknown catalog schema version {row and row[0]}")
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(articles)")}
        except sqlite3.DatabaseError as exc:
            raise IndexCorruptError(f"{path} is not a readable SQLite catalog: {exc}") from exc
        self._db.row_factory = sqlite3.Row
        #: A version 1 catalog has no derived titles (its untitled articles show their id).
        self._derived = "a.title_derived" if "title_derived" in columns else "0"
        #: Before schema 3 no article has a story (each is shown as its own).
        self._story = "a.story_id" if "story_id" in columns else "NULL"

    def close(self) -> None:
        self._db.close()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            with self._lock:
                return self._db.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise IndexCorruptError(f"{self.path}: {exc}") from exc

    # ---- reading ----
    def counts(self) -> tuple[int, int]:
        a = self._query("SELECT count(*) FROM articles")[0][0]
        c = self._query("SELECT count(*) FROM chunks")[0][0]
        return a, c

    def hashes(self, ids: Sequence[str]) -> dict[str, str]:
        rows = self._query(f"SELECT id, content_hash FROM articles WHERE id IN {_EACH}", _json(ids))
        return {row["id"]: row["content_hash"] for row in rows}

    def ids_by_text_hash(self, hashes: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for row in self._query(f"SELECT id, text_hash FROM articles WHERE text_hash IN {_EACH} ORDER BY rowid",
                               _json(hashes)):
            out.setdefault(row["text_hash"], row["id"])
        return out

    def hash_map(self) -> tuple[dict[str, str], dict[str, str]]:
        """Every article's content hash by id, and the first id holding each text hash: what
        a remote worker needs to skip unchanged and duplicate articles before embedding them."""
        known: dict[str, str] = {}
        owners: dict[str, str] = {}
        for row in self._query("SELECT id, content_hash, text_hash FROM articles ORDER BY rowid"):
            known[row["id"]] = row["content_hash"]
            owners.setdefault(row["text_hash"], row["id"])
        return known, owners

    def chunk_rowids(self, article_ids: Iterable[str]) -> list[int]:
        return [r[0] for r in self._query(f"SELECT rowid FROM chunks WHERE article_id IN {_EACH}",
                                          _json(article_ids))]

    def allowed_rowids(self, filters: Filters) -> list[int]:
        where, params = _where(filters)
        sql = f"SELECT c.rowid FROM chunks c JOIN articles a ON a.id = c.article_id WHERE {where}"
        return [r[0] for r in self._query(sql, params)]

    def hits(self, scored: Sequence[tuple[int, float]]) -> list[Hit]:
        """Hits for (rowid, score) pairs, in the given order."""
        rows: dict[int, sqlite3.Row] = {row["rowid"]: row for row in self._query(
            f"SELECT c.rowid AS rowid, c.article_id, c.ordinal, c.start, c.end, c.text, "
            f"a.title, {self._derived} AS title_derived, {self._story} AS story_id, a.url, a.source, "
            f"a.published_at, a.language FROM chunks c "
            f"JOIN articles a ON a.id = c.article_id WHERE c.rowid IN {_EACH}", _json(r for r, _ in scored))}
        return [Hit(article_id=r["article_id"], chunk_id=chunk_id(r["article_id"], r["ordinal"]),
                    title=r["title"], url=r["url"], source=r["source"], published_at=r["published_at"],
                    text=r["text"], start=r["start"], end=r["end"], score=float(score),
                    language=r["language"], title_derived=bool(r["title_derived"]), story_id=r["story_id"])
                for rowid, score in scored if (r := rows.get(rowid)) is not None]

    def chunk_texts(self) -> Iterable[tuple[int, str, str | None]]:
        """(rowid, text, language) of every chunk, for building the BM25 index."""
        for row in self._query("SELECT c.rowid, c.text, a.language FROM chunks c "
                               "JOIN articles a ON a.id = c.article_id ORDER BY c.rowid"):
            yield row[0], row[1], row[2]

    def article_ids(self) -> list[str]:
        """Every article, in insertion order (``rag migrate`` copies them in it)."""
        return [r[0] for r in self._query("SELECT id FROM articles ORDER BY rowid")]

    def ingested(self, article_ids: Sequence[str]) -> dict[str, str]:
        """When each article was ingested."""
        return {r[0]: r[1] for r in self._query(f"SELECT id, ingested_at FROM articles WHERE id IN {_EACH}",
                                                _json(article_ids))}

    def chunks_of(self, article_ids: Sequence[str]) -> dict[str, list[tuple[int, Chunk]]]:
        """(rowid, chunk) of each article's chunks, in order."""
        out: dict[str, list[tuple[int, Chunk]]] = {}
        for r in self._query(f"SELECT rowid, article_id, ordinal, start, end, n_tokens, text FROM chunks "
                             f"WHERE article_id IN {_EACH} ORDER BY article_id, ordinal", _json(article_ids)):
            out.setdefault(r[1], []).append((r[0], Chunk(article_id=r[1], ordinal=r[2], start=r[3], end=r[4],
                                                         n_tokens=r[5], text=r[6])))
        return out

    def spans(self, spans: Sequence[tuple[str, int, int]]) -> list[str]:
        """Text of (article_id, start, end) spans of article texts."""
        out = []
        for article_id, start, end in spans:
            rows = self._query("SELECT substr(text, ?, ?) FROM articles WHERE id = ?",
                               (start + 1, end - start, article_id))
            out.append(rows[0][0] if rows else "")
        return out

    def neighbours(self, rowids: Sequence[int]) -> dict[int, tuple[int | None, int | None]]:
        """For each chunk rowid: the rowids of the previous and next chunk of its article."""
        return {row[0]: (row[1], row[2]) for row in self._query(
            f"SELECT c.rowid, (SELECT p.rowid FROM chunks p WHERE p.article_id = c.article_id "
            f"AND p.ordinal = c.ordinal - 1), (SELECT n.rowid FROM chunks n WHERE "
            f"n.article_id = c.article_id AND n.ordinal = c.ordinal + 1) FROM chunks c "
            f"WHERE c.rowid IN {_EACH}", _json(rowids))}

    def articles(self, limit: int | None = None, offset: int = 0) -> list[ArticleSummary]:
        sql = (f"SELECT a.id, a.title, {self._derived} AS title_derived, a.source, a.published_at, a.language, "
               "a.url, a.origin, a.ingested_at, length(a.text) AS chars, "
               "(SELECT count(*) FROM chunks c WHERE c.article_id = a.id) AS chunks "
               "FROM articles a ORDER BY coalesce(a.published_at, '') DESC, a.id LIMIT ? OFFSET ?")
        return [ArticleSummary(**dict(r) | {"title_derived": bool(r["title_derived"])})
                for r in self._query(sql, (-1 if limit is None else limit, offset))]

    def article(self, article_id: str) -> Article | None:
        rows = self._query(f"SELECT id, text, title, {self._derived} AS title_derived, url, source, author, "
                           "published_at, language, origin, content_hash, text_hash FROM articles a WHERE id = ?",
                           (article_id,))
        return Article(**dict(rows[0]) | {"title_derived": bool(rows[0]["title_derived"])}) if rows else None

    def sources(self) -> list[tuple[str, int]]:
        return [(r[0], r[1]) for r in self._query(
            "SELECT source, count(*) FROM articles WHERE source IS NOT NULL GROUP BY source ORDER BY 2 DESC")]

    def languages(self) -> list[tuple[str, int]]:
        return [(r[0], r[1]) for r in self._query(
            "SELECT language, count(*) FROM articles WHERE language IS NOT NULL GROUP BY language ORDER BY 2 DESC")]

    def date_range(self) -> tuple[str | None, str | None]:
        row = self._query("SELECT min(published_at), max(published_at) FROM articles")[0]
        return row[0], row[1]

    def story_copies(self, story_ids: Iterable[str]) -> dict[str, list[ArticleRef]]:
        """Every article of each of these stories, earliest first (none before schema 3)."""
        if self._story == "NULL":
            return {}
        out: dict[str, list[ArticleRef]] = {}
        for r in self._query(f"SELECT story_id, id, title, source, url, published_at FROM articles "
                             f"WHERE story_id IN {_EACH} ORDER BY rowid", _json(story_ids)):
            out.setdefault(r[0], []).append(ArticleRef(r[1], r[2], r[3], r[4], r[5]))
        return out

    # ---- stories (only while the generation is private to its writer) ----
    def stories_of(self, ids: Iterable[str]) -> dict[str, str]:
        """The story id of each of these articles that has one."""
        return {r[0]: r[1] for r in self._query(f"SELECT id, story_id FROM articles WHERE id IN {_EACH} "
                                                f"AND story_id IS NOT NULL", _json(ids))}

    def story_members(self, story_ids: Iterable[str]) -> dict[str, list[str]]:
        """The articles of each story, earliest first."""
        out: dict[str, list[str]] = {}
        for r in self._query(f"SELECT story_id, id FROM articles WHERE story_id IN {_EACH} ORDER BY rowid",
                             _json(story_ids)):
            out.setdefault(r[0], []).append(r[1])
        return out

    def rowids(self, ids: Iterable[str]) -> dict[str, int]:
        """Insertion order of articles (a story is named after its earliest copy)."""
        return {r[0]: r[1] for r in self._query(f"SELECT id, rowid FROM articles WHERE id IN {_EACH}", _json(ids))}

    def unsigned(self) -> list[str]:
        """The articles without a story signature (new, or from an older schema), in insertion order."""
        return [r[0] for r in self._query("SELECT a.id FROM articles a WHERE NOT EXISTS "
                                          "(SELECT 1 FROM signatures s WHERE s.article_id = a.id) ORDER BY a.rowid")]

    def texts(self, ids: Sequence[str]) -> dict[str, str]:
        return {r[0]: r[1] for r in self._query(f"SELECT id, text FROM articles WHERE id IN {_EACH}", _json(ids))}

    def signatures(self, ids: Iterable[str] | None = None) -> list[tuple[str, bytes]]:
        if ids is None:
            return [(r[0], r[1]) for r in self._query("SELECT article_id, minhash FROM signatures")]
        return [(r[0], r[1]) for r in self._query(
            f"SELECT article_id, minhash FROM signatures WHERE article_id IN {_EACH}", _json(ids))]

    def put_signatures(self, rows: Sequence[tuple[str, bytes]]) -> None:
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO signatures (article_id, minhash) VALUES (?, ?)", rows)

    def set_story(self, story_id: str, ids: Iterable[str] = (), stories: Iterable[str] = ()) -> None:
        """Put the articles ``ids`` and every article of the stories ``stories`` in story ``story_id``."""
        stories = list(stories)
        with self._lock:  # two statements: "id IN ... OR story_id IN ..." would scan the whole table
            self._db.execute(f"UPDATE articles SET story_id = ? WHERE id IN {_EACH}", (story_id, *_json(ids)))
            if stories:
                self._db.execute(f"UPDATE articles SET story_id = ? WHERE story_id IN {_EACH}",
                                 (story_id, *_json(stories)))

    # ---- writing (only while the generation is private to its writer) ----
    def delete_articles(self, ids: Sequence[str]) -> None:
        with self._lock:
            self._db.execute(f"DELETE FROM signatures WHERE article_id IN {_EACH}", _json(ids))
            self._db.execute(f"DELETE FROM chunks WHERE article_id IN {_EACH}", _json(ids))
            self._db.execute(f"DELETE FROM articles WHERE id IN {_EACH}", _json(ids))

    def insert(self, article: Article, chunks: Sequence[Chunk], now: str) -> list[int]:
        """Insert an article and its chunks; returns the chunks' rowids."""
        with self._lock:
            self._db.execute(
                "INSERT INTO articles (id, title, url, source, author, published_at, language, text, origin, "
                "content_hash, text_hash, ingested_at, title_derived) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (article.id, article.title, article.url, article.source, article.author, article.published_at,
                 article.language, article.text, article.origin, article.content_hash, article.text_hash, now,
                 int(article.title_derived)))
            rowids = []
            for c in chunks:
                cur = self._db.execute(
                    "INSERT INTO chunks (article_id, ordinal, start, end, n_tokens, text) VALUES (?,?,?,?,?,?)",
                    (c.article_id, c.ordinal, c.start, c.end, c.n_tokens, c.text))
                rowids.append(int(cur.lastrowid))
            return rowids

    def commit(self) -> None:
        with self._lock:
            self._db.commit()


def _derive_titles(db: sqlite3.Connection, path: Path) -> None:
    """Schema 1 -> 2, on a writer's private copy: add ``title_derived`` and title every untitled
    article by its first sentence, as ingest does now (content hashes stay: they are of what was given)."""
    db.execute("ALTER TABLE articles ADD COLUMN title_derived INTEGER NOT NULL DEFAULT 0")
    rows = db.execute("SELECT id, text FROM articles WHERE title IS NULL OR trim(title) = ''").fetchall()
    titled = [(title, article_id) for article_id, text in rows if (title := derive_title(text))]
    db.executemany("UPDATE articles SET title = ?, title_derived = 1 WHERE id = ?", titled)
    log.info("%s: catalog schema 1 -> 2, %d untitled articles titled by their first sentence", path, len(titled))


def _where(filters: Filters) -> tuple[str, list[Any]]:
    clauses, params = ["1"], []
    for column, values in (("a.source", filters.source), ("a.language", filters.language),
                           ("a.id", filters.article_ids)):
        if values:
            clauses.append(f"{column} IN ({','.join('?' * len(values))})")
            params += list(values)
    if filters.since:
        clauses.append("a.published_at >= ?")
        params.append(filters.since[:10] if len(filters.since) == 10 else filters.since)
    if filters.until:
        # An inclusive day: everything that starts with that date sorts below "date~".
        clauses.append("a.published_at <= ?")
        params.append(filters.until + "~" if len(filters.until) == 10 else filters.until)
    return " AND ".join(clauses), params


#: Many ids as one parameter (a JSON array), instead of batches under SQLite's 999-parameter limit.
_EACH = "(SELECT value FROM json_each(?))"


def _json(values: Iterable[Any]) -> tuple[str]:
    return (json.dumps(list(values), default=lambda v: v.item()),)  # numpy ints from FAISS
