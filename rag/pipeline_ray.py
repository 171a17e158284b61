"""Ingest on Ray (``rag ingest --ray [ADDRESS]``): files are read and cleaned in Ray tasks, chunked
and embedded in a pool of actors that each load the embedding model once, and written here, on
the driver, batch by batch through ``Ingest.plan``/``Ingest.write``: the same dedup and update
rules, the same generations and write lock, so a killed run leaves the last published generation
and a re-run adds the rest.

Ray is imported only when this runs (``pip install 'rag-news[ray]'``). The dataset keeps the
input order, so batches, duplicates and the report are those of the local path; the actors skip
articles the index already holds (its id -> content hash map is broadcast), so a re-run embeds
nothing; an article they skipped that still needs vectors (another writer changed the index
meanwhile) is embedded here."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.embed import Embedder, load_embedder
from rag.errors import ClusterError, ModelMismatchError
from rag.ingest.articles import to_article
from rag.ingest.fetch import FetchLimits
from rag.ingest.readers import Record, read_file, renamed
from rag.ingest.web import read_url
from rag.news import Article, Chunk, Failure
from rag.pipeline import Ingest, ReportBuilder, chunk_articles, embed_chunks, progress_bar
from rag.settings import Settings
from rag.titles import with_derived_title

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'rag-news[ray]'"
#: CPUs each embedding actor reserves: fractional, so the actors never hold every CPU and starve
#: the read tasks (two actors at 1 CPU each deadlocked a 2-core machine).
ACTOR_CPUS = 0.5
#: Articles per actor call.
ACTOR_BATCH = 16
#: Read tasks at most: a folder of 100,000 small files need not be 100,000 tasks.
MAX_READ_TASKS = 1024


def import_ray() -> Any:
    """The ``ray`` module, or ClusterError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ClusterError(f"Ray ingest needs Ray Data ({exc}); install it with {INSTALL_HINT}") from None
    return ray


@contextmanager
def connected(address: str | None) -> Iterator[Any]:
    """Ray, connected: an existing connection of this process as it is; else ``address``
    ("auto", "host:6379"); None: $RAY_ADDRESS if set, else a local Ray with this machine's
    CPUs (shut down afterwards)."""
    if address and address.startswith("ray://"):
        # Ray Data's streaming executor fails through Ray Client ("'Worker' object has no attribute
        # 'core_worker'", Ray 2.60): the driver must run on a node of the cluster.
        raise ClusterError(f"Ray Data cannot run through Ray Client ({address}): run rag on a node of the "
                           f"cluster with --ray auto, or submit it there: ray job submit --address "
                           f"http://HEAD:8265 -- rag ingest PATHS --ray auto --index DIR")
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        ray.init(address=address or None, log_to_driver=False, logging_level=logging.WARNING,
                 configure_logging=True)
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError... from ray.init
        raise ClusterError(f"cannot start or reach Ray at {address or 'a local Ray'}: {exc}") from exc
    try:
        yield ray
    finally:
        ray.shutdown()


def ingest_on_ray(ingest: Ingest, files: Sequence[Path], urls: Sequence[str], report: ReportBuilder,
                  address: str | None = None, names: Mapping[str, str] | None = None,
                  actors: int | None = None, progress: Callable[[str, int, int], None] | None = None) -> None:
    """Ingest ``files`` and ``urls`` into ``ingest``'s folder on Ray (see the module).
    ``actors``: embedding actors (default: one per CPU of the cluster but one)."""
    with connected(address) as ray:
        ingest.locked(lambda: _run(ray, ingest, files, urls, report, names or {}, actors, progress))


def _run(ray: Any, ingest: Ingest, files: Sequence[Path], urls: Sequence[str], report: ReportBuilder,
         names: Mapping[str, str], actors: int | None, progress: Callable[[str, int, int], None] | None) -> None:
    from ray.data import ActorPoolStrategy, DataContext

    settings = ingest.settings
    base = ingest.current()
    hashes = ray.put(base.catalog.hash_map() if base else ({}, {}))
    items = [{"path": os.fsencode(p), "name": names.get(str(p), ""), "url": ""} for p in files]
    items += [{"path": b"", "name": "", "url": u} for u in urls]
    if not items:
        ingest.last([], report)
        return
    if actors is None:
        actors = max(1, int(ray.cluster_resources().get("CPU", 2)) - 1)
    context = DataContext.get_current()
    saved = (context.execution_options.preserve_order, context.enable_progress_bars)
    # In order: the same batches as the local path, so the same article wins a duplicate.
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False  # the driver shows its own bar
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its INFO plan lines and "progress bars disabled"
    try:
        # A read task per file (up to MAX_READ_TASKS; then each reads several): exports are big.
        ds = ray.data.from_items(items, override_num_blocks=min(len(items), MAX_READ_TASKS))
        ds = ds.flat_map(_read, fn_kwargs={"max_bytes": int(settings.max_file_mb * 1_000_000),
                                           "languages": settings.languages})
        ds = ds.map_batches(_Prepare, compute=ActorPoolStrategy(size=actors), num_cpus=ACTOR_CPUS,
                            batch_size=ACTOR_BATCH, batch_format="pandas",
                            fn_constructor_kwargs={"settings": settings, "hashes": [hashes]})
        _consume(ds, ingest, report, len(items), progress)
    except ray.exceptions.RayError as exc:
        raise ClusterError(f"Ray ingest failed: {str(exc).strip().splitlines()[-1][:300]}") from exc
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = saved


def _consume(ds: Any, ingest: Ingest, report: ReportBuilder, total: int,
             progress: Callable[[str, int, int], None] | None) -> None:
    """Driver side: batches of ``commit_every`` articles, each planned and written here."""
    bar = progress_bar(ingest.settings, "Ingesting on Ray", total, "file")
    batch: list[Article] = []
    ready: dict[tuple[str, str], tuple[list[Chunk], Any]] = {}
    embedded = driver_embedded = files_done = 0
    for frame in ds.iter_batches(batch_size=None, batch_format="pandas"):
        for item in frame["item"]:
            kind, *rest = item.row
            if kind == "eof":
                files_done += 1
                bar(files_done)
                if progress:
                    progress("reading", files_done, total)
                continue
            if kind == "failed":
                report.failed.append(rest[0])
                continue
            article, failure, notes, chunks, vectors = rest
            if failure is not None:
                report.failed.append(failure)
            report.note(*notes)
            if article is None:
                continue
            batch.append(article)
            if chunks is not None:
                ready[(article.id, article.content_hash)] = (chunks, vectors)
                embedded += len(chunks)
            if len(batch) >= ingest.settings.commit_every:
                driver_embedded += _commit(ingest, batch, ready, report)
                batch, ready = [], {}
    bar(None)
    if batch:
        driver_embedded += _commit(ingest, batch, ready, report)
    else:
        ingest.last([], report)
    log.info("ray ingest: %d chunks embedded by the actor pool, %d on the driver", embedded, driver_embedded)


def _commit(ingest: Ingest, batch: list[Article], ready: Mapping[tuple[str, str], tuple[list[Chunk], Any]],
            report: ReportBuilder) -> int:
    """Plan ``batch`` against the current generation and write it with the actors' vectors;
    returns how many chunks had to be embedded here instead."""
    import numpy as np

    base = ingest.current()
    todo = ingest.plan(batch, base)
    if not todo.todo and base is not None:
        report.planned(todo, 0)
        return 0
    missing = [a for a in todo.todo if (a.id, a.content_hash) not in ready]
    local: dict[str, tuple[list[Chunk], Any]] = {}
    if missing or not ready:
        embedder = ingest.embedder()  # loaded here only when the actors left something to do
        chunks = ingest.chunk(missing, embedder)
        vectors = ingest.embed(missing, chunks, embedder)
        offset = 0
        for article, cs in zip(missing, chunks):
            local[article.id] = (cs, vectors[offset:offset + len(cs)])
            offset += len(cs)
        dim = embedder.dim
    else:
        dim = next(iter(ready.values()))[1].shape[1]
    if base is not None and base.manifest.dim != dim:
        raise ModelMismatchError(f"index {ingest.folder} holds {base.manifest.dim}-d vectors but the Ray "
                                 f"workers' model makes {dim}-d ones")
    parts = [local[a.id] if a.id in local else ready[(a.id, a.content_hash)] for a in todo.todo]
    vectors = np.concatenate([v for _, v in parts]) if parts else np.zeros((0, dim), np.float32)
    ingest.write(base, todo, [c for c, _ in parts], vectors, dim, report)
    return sum(len(c) for c, _ in local.values())


# ---- run by Ray workers ----
def _read(item: dict[str, Any], max_bytes: int, languages: tuple[str, ...]) -> list[dict[str, bytes]]:
    """One file or URL -> its records, cleaned into articles (or failures), then an end marker."""
    out: list[Any] = []
    if item["url"]:
        records: Iterator[Record | Failure] = read_url(item["url"], FetchLimits(max_bytes=max_bytes))
    else:
        path = os.fsdecode(item["path"])
        records = read_file(path, max_bytes)
        if item["name"]:
            records = (renamed(r, path, item["name"]) for r in records)
    for record in records:
        if isinstance(record, Failure):
            out.append(("failed", record))
            continue
        article, failure, notes = to_article(record, languages)
        out.append(("article", with_derived_title(article) if article else None, failure, tuple(notes), None, None))
    out.append(("eof",))
    return [{"item": _Item(row)} for row in out]


@dataclass(frozen=True)
class _Item:
    """One row in flight: ("article", article, failure, notes, chunks, vectors), ("failed", failure)
    or ("eof",). Wrapped so Ray Data keeps it a Python object (it serialises it) rather than
    guessing an Arrow type from the tuple."""

    row: tuple[Any, ...]


class _Prepare:
    """An actor of the pool: loads the embedder once, chunks and embeds the articles the index
    does not already hold (unchanged, or a duplicate of an indexed text)."""

    def __init__(self, settings: Settings, hashes: list[Any]) -> None:
        import ray

        self.settings = settings
        self.known, self.owners = ray.get(hashes[0])
        self.embedder: Embedder = load_embedder(settings)

    def _needed(self, article: Article) -> bool:
        if self.known.get(article.id) == article.content_hash:
            return False
        owner = self.owners.get(article.text_hash)
        return owner is None or owner == article.id

    def __call__(self, frame: Any) -> Any:
        rows = [item.row for item in frame["item"]]
        todo = [n for n, row in enumerate(rows) if row[0] == "article" and row[1] is not None
                and self._needed(row[1])]
        articles = [rows[n][1] for n in todo]
        chunks = chunk_articles(articles, self.embedder, self.settings)
        vectors = embed_chunks(articles, chunks, self.embedder)
        offset = 0
        for n, cs in zip(todo, chunks):
            rows[n] = rows[n][:4] + (cs, vectors[offset:offset + len(cs)].copy())
            offset += len(cs)
        frame = frame.copy()
        frame["item"] = [_Item(row) for row in rows]
        return frame
