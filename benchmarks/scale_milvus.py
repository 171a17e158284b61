"""The Milvus store (Milvus Lite, in-process) at 10k and 100k chunks, on SYNTHETIC data.

Run from the repository root (prints figures; this is not a test):

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/scale_milvus.py [--sizes 10000,100000] [--dim 896] \
        [--queries 100] [--json out.json]

``measure_milvus(size, vectors, texts)`` is what benchmarks/scale.py can call: it writes ``size``
chunks (8 per article; texts and vectors given, e.g. scale.py's Zipf texts and rank-64 vectors)
through rag.store.milvus.MilvusWriter into a fresh Milvus Lite file, then times
MilvusSnapshot.dense (top 10) and the BM25 search on held-out query vectors / chunk words, and
compares dense results with exact numpy search (recall@10). Stories are given (add_stories, one
per article) so the figure is the store's, not the MinHash signing's. Disk = the Lite folder.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import folder_bytes, machine, machine_line, percentiles_ms, write_json  # noqa: E402
from scale import CHUNKS_PER_ARTICLE, SEED, synthetic_vectors  # noqa: E402

WORDS = ("bank", "zins", "wahl", "regierung", "markt", "sport", "wetter", "hafen", "bahn", "preis", "stadt",
         "schule", "klima", "energie", "facebook", "google", "amazon", "apple", "fussball", "museum")


def synthetic_texts(n: int, rng: np.random.Generator, words: int = 40) -> list[str]:
    zipf = 1.0 / np.arange(1, len(WORDS) + 1)
    picks = np.asarray(WORDS)[rng.choice(len(WORDS), size=(n, words), p=zipf / zipf.sum())]
    return [" ".join(p) + f" nummer{i}." for i, p in enumerate(picks)]


def measure_milvus(size: int, vectors: np.ndarray, texts: list[str], n_queries: int = 100,
                   folder: Path | None = None) -> dict[str, Any]:
    """Ingest rate, dense/BM25 search p50/p95, recall@10 of dense vs exact, disk bytes per chunk."""
    from rag.news import Article, Chunk
    from rag.settings import Settings
    from rag.store.milvus import MilvusStore

    folder = folder or Path(tempfile.mkdtemp(prefix="scale-milvus-")) / "index"
    folder.mkdir(parents=True)
    dim = vectors.shape[1]
    settings = Settings.from_env(environ={}, dotenv=None, index_dir=folder, store="milvus", progress=False)
    store = MilvusStore(folder, settings)
    t0 = time.perf_counter()
    with store.lock(0), store.writer(None, f"synthetic-{dim}", dim, 200, 40, 50_000) as writer:
        for first in range(0, size, CHUNKS_PER_ARTICLE):
            aid = f"syn-{first // CHUNKS_PER_ARTICLE}"
            part = texts[first:first + CHUNKS_PER_ARTICLE]
            chunks, start = [], 0
            for i, text in enumerate(part):
                chunks.append(Chunk(aid, i, text, start, start + len(text), 40))
                start += len(text) + 2
            article = Article(id=aid, text="\n\n".join(part), title=aid, source="synthetic",
                              published_at="2020-01-01", language="de", content_hash=aid, text_hash=aid)
            writer.add(article, chunks, vectors[first:first + len(part)])
            writer.add_stories([(aid, aid, np.full(128, first, np.uint32).tobytes())])
        writer.publish()
    ingest_s = time.perf_counter() - t0
    snap = store.snapshot()
    assert snap is not None and snap.manifest.chunks == size
    rng = np.random.default_rng(SEED + 1)
    queries = synthetic_vectors(n_queries, dim, rng)
    rowids = np.asarray(sorted(r["row"] for r in snap.catalog.query(store.names.chunks, "", ["row"])))
    dense_s, recalls = [], []
    for q in queries:
        t1 = time.perf_counter()
        got = [r for r, _ in snap.dense(q, 10)]
        dense_s.append(time.perf_counter() - t1)
        exact = rowids[np.argsort(-(vectors @ q), kind="stable")[:10]]  # rows are given in insertion order
        recalls.append(len(set(got) & set(exact.tolist())) / 10)
    sparse_s = []
    for words in synthetic_texts(n_queries, rng, words=3):
        t1 = time.perf_counter()
        snap.sparse.search(words, 10, "de")
        sparse_s.append(time.perf_counter() - t1)
    return {"store": "milvus-lite", "size": size, "dim": dim, "ingest_s": ingest_s,
            "ingest_chunks_per_s": size / ingest_s, "dense_ms": percentiles_ms(dense_s),
            "bm25_ms": percentiles_ms(sparse_s), "recall_at_10": float(np.mean(recalls)),
            "disk_bytes_per_chunk": folder_bytes(folder) / size}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--dim", type=int, default=896)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    facts = machine()
    print(machine_line(facts))
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        rng = np.random.default_rng(SEED + size)
        row = measure_milvus(size, synthetic_vectors(size, args.dim, rng), synthetic_texts(size, rng), args.queries)
        rows.append(row)
        print(f"{size:>8,} chunks x {args.dim}-d: ingest {row['ingest_chunks_per_s']:,.0f} chunks/s "
              f"({row['ingest_s']:.0f} s); dense top-10 p50 {row['dense_ms']['p50_ms']:.1f} ms p95 "
              f"{row['dense_ms']['p95_ms']:.1f} ms, recall@10 {row['recall_at_10']:.3f}; BM25 p50 "
              f"{row['bm25_ms']['p50_ms']:.1f} ms p95 {row['bm25_ms']['p95_ms']:.1f} ms; disk "
              f"{row['disk_bytes_per_chunk'] / 1024:.1f} KB/chunk", flush=True)
    write_json(args.json, {"machine": facts, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
