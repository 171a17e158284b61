"""Reading one generation of a Milvus index (rag.store.milvus writes them).

Every row carries ``gen_from``/``gen_to``: it belongs to generations ``gen_from <= G < gen_to``.
A reader holds the published generation's number and adds that condition to every query, so a
writer's unpublished rows (and rows it retires) stay invisible until the meta row names the
next generation. Rows are removed only once no generation a reader may hold still needs them."""

from __future__ import annotations

import base64
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from rag.news import Article, ArticleRef, ArticleSummary, Filters, Hit, chunk_id
from rag.store.manifest import Manifest
from rag.store.sparse import tokenize

log = logging.getLogger(__name__)

#: ``gen_to`` of a row no generation has removed yet.
LIVE = 1 << 62
#: Ids per ``in`` query, and rows per page when scanning.
BATCH = 1000
#: Rows one query returns at most (Milvus' result window); more are read with an iterator.
WINDOW = 16_384
_ARTICLE = ["row", "id", "title", "title_derived", "url", "source", "author", "published", "language", "origin",
            "content_hash", "text_hash", "ingested_at", "chars", "n_chunks"]


class Collections:
    """The names of one index's collections (prefix from RAG_MILVUS_COLLECTION)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.articles, self.texts, self.chunks = f"{prefix}_articles", f"{prefix}_texts", f"{prefix}_chunks"
        self.stories, self.meta = f"{prefix}_stories", f"{prefix}_meta"

    def all(self) -> list[str]:
        return [self.articles, self.texts, self.chunks, self.stories, self.meta]


def literal(value: Any) -> str:
    """A value in a Milvus expression (the query iterator takes no parameters)."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"cannot put {value!r} into a Milvus expression")
    if isinstance(value, int):
        return str(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def inline(expr: str, params: dict[str, Any]) -> str:
    for name, value in params.items():
        expr = expr.replace("{" + name + "}", literal(value))
    return expr


def batches(values: Iterable[Any], size: int = BATCH) -> Iterator[list[Any]]:
    values = list(values)
    for start in range(0, len(values), size):
        yield values[start:start + size]


class MilvusCatalog:
    """The articles, chunks and stories of generation ``gen`` (a writer's is its own, unpublished)."""

    def __init__(self, connection: Any, names: Collections, gen: int, info: dict[str, Any] | None = None) -> None:
        self.connection = connection  # .client: a MilvusClient (reconnected if the process closed it)
        self.names = names
        self.gen = gen
        #: The published meta (counts, date range, languages); None in a writer's view: computed.
        self.info = info

    @property
    def client(self) -> Any:
        return self.connection.client

    @property
    def visible(self) -> str:
        return f"gen_from <= {self.gen} and gen_to > {self.gen}"

    def query(self, collection: str, expr: str, fields: list[str], **params: Any) -> list[dict[str, Any]]:
        """Every row of ``collection`` visible in this generation and matching ``expr``."""
        expr = inline(expr, params)
        where = f"{self.visible} and ({expr})" if expr else self.visible
        if collection in (self.names.texts, self.names.meta):
            where = expr
        rows: list[dict[str, Any]] = list(self.client.query(collection, filter=where, output_fields=fields,
                                                            limit=WINDOW))
        if len(rows) < WINDOW:
            return rows
        it = self.client.query_iterator(collection, batch_size=BATCH, filter=where, output_fields=fields)
        rows = []
        try:
            while page := it.next():
                rows += page
        finally:
            it.close()
        return rows

    def _by_ids(self, collection: str, field: str, ids: Iterable[Any], fields: list[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for part in batches(dict.fromkeys(ids)):
            out += self.query(collection, f"{field} in {{ids}}", fields, ids=part)
        return out

    # ---- CatalogReader ----
    def counts(self) -> tuple[int, int]:
        if self.info is not None:
            return self.info["articles"], self.info["chunks"]
        return self._count(self.names.articles), self._count(self.names.chunks)

    def _count(self, collection: str) -> int:
        rows = self.client.query(collection, filter=self.visible, output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def hashes(self, ids: Sequence[str]) -> dict[str, str]:
        rows = self._by_ids(self.names.articles, "id", ids, ["id", "content_hash"])
        return {r["id"]: r["content_hash"] for r in rows}

    def ids_by_text_hash(self, hashes: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        rows = self._by_ids(self.names.articles, "text_hash", hashes, ["id", "text_hash", "row"])
        for r in sorted(rows, key=lambda r: r["row"]):
            out.setdefault(r["text_hash"], r["id"])
        return out

    def hash_map(self) -> tuple[dict[str, str], dict[str, str]]:
        """Every article's content hash by id, and the first id holding each text hash (what
        Ray workers get to skip unchanged and duplicate articles before embedding)."""
        known: dict[str, str] = {}
        owners: dict[str, str] = {}
        for r in sorted(self.query(self.names.articles, "", ["id", "content_hash", "text_hash", "row"]),
                        key=lambda r: r["row"]):
            known[r["id"]] = r["content_hash"]
            owners.setdefault(r["text_hash"], r["id"])
        return known, owners

    def _articles(self, ids: Iterable[str], fields: list[str] = _ARTICLE) -> dict[str, dict[str, Any]]:
        return {r["id"]: r for r in self._by_ids(self.names.articles, "id", ids, fields)}

    def hits(self, scored: Sequence[tuple[int, float]]) -> list[Hit]:
        """Hits for (rowid, score) pairs, in the given order."""
        chunks = {r["row"]: r for r in self._by_ids(self.names.chunks, "row", [int(r) for r, _ in scored],
                                                    ["row", "article_id", "ordinal", "start", "end", "text"])}
        ids = {c["article_id"] for c in chunks.values()}
        articles = self._articles(ids, ["id", "title", "title_derived", "url", "source", "published", "language"])
        stories = self.stories_of(ids)
        out = []
        for rowid, score in scored:
            c = chunks.get(int(rowid))
            a = articles.get(c["article_id"]) if c else None
            if c is None or a is None:
                continue
            out.append(Hit(article_id=c["article_id"], chunk_id=chunk_id(c["article_id"], c["ordinal"]),
                           title=a["title"], url=a["url"], source=a["source"], published_at=a["published"],
                           text=c["text"], start=c["start"], end=c["end"], score=float(score),
                           language=a["language"], title_derived=bool(a["title_derived"]),
                           story_id=stories.get(c["article_id"])))
        return out

    def spans(self, spans: Sequence[tuple[str, int, int]]) -> list[str]:
        texts = self.texts([a for a, _, _ in spans])
        return [texts.get(a, "")[start:end] for a, start, end in spans]

    def articles(self, limit: int | None = None, offset: int = 0) -> list[ArticleSummary]:
        order = self.query(self.names.articles, "", ["id", "published"])
        order.sort(key=lambda r: r["id"])
        order.sort(key=lambda r: r["published"] or "", reverse=True)
        page = [r["id"] for r in order[offset:None if limit is None else offset + max(limit, 0)]]
        rows = self._articles(page)
        return [ArticleSummary(id=r["id"], title=r["title"], source=r["source"], published_at=r["published"],
                               language=r["language"], url=r["url"], origin=r["origin"], ingested_at=r["ingested_at"],
                               chars=r["chars"], chunks=r["n_chunks"], title_derived=bool(r["title_derived"]))
                for i in page if (r := rows.get(i)) is not None]

    def article(self, article_id: str) -> Article | None:
        r = self._articles([article_id]).get(article_id)
        if r is None:
            return None
        return Article(id=r["id"], text=self.texts([article_id]).get(article_id, ""), title=r["title"],
                       title_derived=bool(r["title_derived"]), url=r["url"], source=r["source"], author=r["author"],
                       published_at=r["published"], language=r["language"], origin=r["origin"],
                       content_hash=r["content_hash"], text_hash=r["text_hash"])

    def _tally(self, field: str) -> list[tuple[str, int]]:
        counts = Counter(r[field] for r in self.query(self.names.articles, f"{field} is not null", [field]))
        return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))

    def sources(self) -> list[tuple[str, int]]:
        return self._tally("source")

    def languages(self) -> list[tuple[str, int]]:
        return self._tally("language")

    def date_range(self) -> tuple[str | None, str | None]:
        if self.info is not None:
            first, last = self.info["date_range"]
            return first, last
        dates = [r["published"] for r in self.query(self.names.articles, "published is not null", ["published"])]
        return (min(dates), max(dates)) if dates else (None, None)

    def story_copies(self, story_ids: Iterable[str]) -> dict[str, list[ArticleRef]]:
        members = self.story_members(story_ids, fields=["id", "row", "title", "source", "url", "published"])
        return {story: [ArticleRef(r["id"], r["title"], r["source"], r["url"], r["published"]) for r in rows]
                for story, rows in members.items()}

    def texts(self, ids: Sequence[str]) -> dict[str, str]:
        rows = {r["row"]: r["id"] for r in self._by_ids(self.names.articles, "id", ids, ["row", "id"])}
        parts: dict[int, list[tuple[int, str]]] = {}
        for r in self._by_ids(self.names.texts, "art_row", rows, ["art_row", "part", "text"]):
            parts.setdefault(r["art_row"], []).append((r["part"], r["text"]))
        return {rows[row]: "".join(t for _, t in sorted(p)) for row, p in parts.items()}

    # ---- stories (StoryCatalog; the writer adds put_signatures and set_story) ----
    def _story_rows(self, expr: str, fields: list[str], **params: Any) -> list[dict[str, Any]]:
        return self.query(self.names.stories, expr, fields, **params)

    def stories_of(self, ids: Iterable[str]) -> dict[str, str]:
        rows: list[dict[str, Any]] = []
        for part in batches(dict.fromkeys(ids)):
            rows += self._story_rows("article_id in {ids} and story_id is not null", ["article_id", "story_id"],
                                     ids=part)
        return {r["article_id"]: r["story_id"] for r in rows}

    def story_members(self, story_ids: Iterable[str], fields: list[str] | None = None) -> dict[str, list[Any]]:
        """The articles of each story, earliest first (ids, or article rows with ``fields``)."""
        rows: list[dict[str, Any]] = []
        for part in batches(dict.fromkeys(story_ids)):
            rows += self._story_rows("story_id in {ids}", ["article_id", "story_id"], ids=part)
        articles = self._articles({r["article_id"] for r in rows}, fields or ["id", "row"])
        out: dict[str, list[Any]] = {}
        rows = sorted((r for r in rows if r["article_id"] in articles), key=lambda r: articles[r["article_id"]]["row"])
        for r in rows:
            out.setdefault(r["story_id"], []).append(articles[r["article_id"]] if fields else r["article_id"])
        return out

    def rowids(self, ids: Iterable[str]) -> dict[str, int]:
        return {i: r["row"] for i, r in self._articles(ids, ["id", "row"]).items()}

    def unsigned(self) -> list[str]:
        signed = {r["article_id"] for r in self._story_rows("", ["article_id"])}
        rows = sorted(self.query(self.names.articles, "", ["id", "row"]), key=lambda r: r["row"])
        return [r["id"] for r in rows if r["id"] not in signed]

    def signatures(self, ids: Iterable[str] | None = None) -> list[tuple[str, bytes]]:
        if ids is None:
            rows = self._story_rows("", ["article_id", "sig"])
        else:
            rows = []
            for part in batches(dict.fromkeys(ids)):
                rows += self._story_rows("article_id in {ids}", ["article_id", "sig"], ids=part)
        return [(r["article_id"], base64.b64decode(r["sig"])) for r in rows]


class MilvusSparse:
    """BM25 in Milvus over the chunks' ``terms``: the same stems and stop words as the FAISS store's
    bm25s (rag.store.sparse.tokenize, joined by spaces), so both rank alike."""

    def __init__(self, catalog: MilvusCatalog, languages: Sequence[str]) -> None:
        self.catalog = catalog
        self.languages = tuple(languages)

    def search(self, query: str, k: int, query_language: str | None = None,
               allowed: tuple[str, dict[str, Any]] | None = None) -> list[tuple[int, float]]:
        langs = list(self.languages) + ([query_language] if query_language else [])
        tokens = list(dict.fromkeys(tokenize(query, langs, query_language)))
        if not tokens or k <= 0 or not self.languages:
            return []
        expr, params = _restricted(self.catalog.visible, allowed)
        found = self.catalog.client.search(self.catalog.names.chunks, data=[" ".join(tokens)], anns_field="sparse",
                                           limit=min(k, 16_384), filter=expr, filter_params=params or None,
                                           search_params={"metric_type": "BM25"}, output_fields=["row"])
        # Milvus Lite reports BM25 scores negated (best first all the same): the score is its size.
        return [(int(h["row"]), abs(float(h["distance"]))) for h in found[0]]

    def language_of(self, rowids: list[int]) -> dict[int, str]:
        rows = self.catalog._by_ids(self.catalog.names.chunks, "row", [int(r) for r in rowids], ["row", "language"])
        return {r["row"]: r["language"] or "en" for r in rows}


def _restricted(visible: str, allowed: tuple[str, dict[str, Any]] | None) -> tuple[str, dict[str, Any]]:
    if allowed is None:
        return visible, {}
    return f"{visible} and ({inline(*allowed)})", {}


def filter_expr(filters: Filters | None) -> tuple[str, dict[str, Any]] | None:
    """A Milvus boolean expression over the chunk rows' article fields (values passed as parameters)."""
    if filters is None:
        return None
    clauses, params = ["true"], {}
    for field, name, values in (("source", "f_source", filters.source), ("language", "f_language", filters.language),
                                ("article_id", "f_ids", filters.article_ids)):
        if values:
            clauses.append(f"{field} in {{{name}}}")
            params[name] = list(values)
    if filters.since:
        clauses.append("published >= {f_since}")
        params["f_since"] = filters.since
    if filters.until:  # an inclusive day: everything that starts with that date sorts below "date~"
        clauses.append("published <= {f_until}")
        params["f_until"] = filters.until + "~" if len(filters.until) == 10 else filters.until
    return " and ".join(clauses), params


class MilvusSnapshot:
    """A Reader of one published generation of a Milvus index."""

    sparse_is_current = True

    def __init__(self, connection: Any, names: Collections, manifest: Manifest, info: dict[str, Any]) -> None:
        self.manifest = manifest
        self.catalog = MilvusCatalog(connection, names, manifest.generation, info)
        self._sparse = MilvusSparse(self.catalog, info.get("languages", []))

    @property
    def sparse(self) -> MilvusSparse:
        return self._sparse

    def allowed(self, filters: Filters | None) -> tuple[str, dict[str, Any]] | None:
        return filter_expr(filters)

    def dense(self, query: np.ndarray, k: int, allowed: tuple[str, dict[str, Any]] | None = None
              ) -> list[tuple[int, float]]:
        if k <= 0 or self.manifest.chunks == 0:
            return []
        expr, params = _restricted(self.catalog.visible, allowed)
        found = self.catalog.client.search(self.catalog.names.chunks, data=[query.astype(np.float32).tolist()],
                                           anns_field="vector", limit=min(k, 16_384), filter=expr,
                                           filter_params=params or None, search_params={"metric_type": "IP"},
                                           output_fields=["row"])
        return [(int(h["row"]), float(h["distance"])) for h in found[0]]

    def similarities(self, query: np.ndarray, rowids: Sequence[int]) -> dict[int, float]:
        if not len(rowids):
            return {}
        rows = self.catalog._by_ids(self.catalog.names.chunks, "row", [int(r) for r in rowids], ["row", "vector"])
        if not rows:
            return {}
        matrix = np.asarray([r["vector"] for r in rows], dtype=np.float32)
        scores = matrix @ query.astype(np.float32)
        return {int(r["row"]): float(s) for r, s in zip(rows, scores)}

    def close(self) -> None:
        pass
