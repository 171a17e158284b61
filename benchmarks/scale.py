"""Stores at 10k, 100k and 1M chunks: ingest rate, search latency, recall vs exact, RAM and disk.

Run from the repository root (prints figures; this is not a test):

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/scale.py [--stores faiss[,faiss-hnsw,faiss-ivfpq,milvus-lite,
        langchain-faiss]] [--sizes 10000,100000,1000000] [--max-size milvus-lite=100000] [--rounds 1] \
        [--queries 200] [--real 2000] [--words 30] [--workdir DIR] \
        [--stores-png benchmarks/stores_vs_size.png] [--json out.json] [--detail] [--faiss-sizes 1000000]

The store table (the default) prints one row per (store, size), all stores given the same data
(ScaleData): 896-d vectors drawn around --real embedded 10kGNAD passages (benchmarks/scale_data.py;
real-like, not isotropic), --words-word texts, 8 chunks per article, and real questions (XQuAD, in
English). A store is a class with build(data, folder) and open(folder, dim) in STORES: "faiss" is
the shipped store with the vector index kind chosen by size (flat / HNSW / IVF-PQ), "faiss-hnsw" and
"faiss-ivfpq" force a kind; "milvus-lite" is the shipped Milvus store (RAG_STORE=milvus) on a Milvus
Lite file in the index folder, written through its MilvusWriter; "langchain-faiss" is the peer,
LangChain's FAISS vector store (from_embeddings / save_local / load_local, searched with
similarity_search_with_score_by_vector after embed_query through the same embedder), and every
other store gets ratios against it per size. --max-size caps a store's sizes (Milvus Lite searches
exactly: ~1 s per query at 100k). Each build and each measurement runs in its own child process,
all builds of a size first, then --rounds measurements per store in alternate order: ingest rate =
chunks / wall time of writing them (embedding excluded: the vectors are given) with CPU time beside
it; search = index.search(question, k=10, mode="dense"), i.e. the query embedding + vector search +
passages from SQLite (Milvus: from its collections); recall@10 = overlap of the store's dense top 10
with the exact top 10 over the same vectors; RAM = RSS growth of a fresh process tree (milvus-lite 3
serves its file from threads of the process itself; a child server would be counted) from opening
the store to its first search, split
into anonymous and file-backed (mmapped) pages from /proc/PID/status, and again after all searches;
CPU likewise includes the children; disk = the index folder's bytes.

--detail adds the older report on rank-64 synthetic vectors (hybrid search, extractive answers,
flat vs HNSW dense() timings) for --dims; --faiss-sizes measures FAISS alone (flat vs HNSW).

--detail, in full: each index folder is a real one, written through rag.store.generation.GenerationWriter: the
bundled sample corpus ingested for real (real text and vectors, so answers quote real
sentences), plus synthetic articles of 8 chunks each up to the size: texts of --words words
drawn (Zipf) from the sample corpus vocabulary, vectors from a rank-64 Gaussian plus noise,
normalised (random full-rank vectors would make HNSW look worse than on real embeddings).
896-d is the default e5+USE model, 384-d e5-small alone. The store picks flat FAISS up to
RAG_EXACT_LIMIT=50,000 chunks and HNSW above; Snapshot.dense() is timed with both kinds (the
other built in memory) on synthetic queries, with HNSW recall@10 against exact search. The full
index.search(q, k=5) (hybrid: query embedding + FAISS + BM25 + SQLite) and rag.answer(...,
generator="extractive") use real question text; the query embedding alone is timed too.
Memory per chunk = RSS growth from opening the index and running its first search (BM25 loaded)
in a fresh process, divided by the chunks. Building and measuring run in separate children.
--faiss-sizes measures the FAISS part alone (no SQLite/BM25) on synthetic vectors: build time,
index bytes per vector, top-10 latency and HNSW recall@10 against exact search.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    REPO, SHARED, folder_bytes, machine, machine_line, percentiles_ms, rss_mb, write_json)

MODELS = {896: "bundled:multilingual-e5-small+use-m3", 384: "bundled:multilingual-e5-small"}
CHUNKS_PER_ARTICLE, RANK, SEED, BLOCK = 8, 64, 7, 8192
GOAL_MS, GOAL_SIZE = 30.0, 100_000
BUDGET_S = 30.0  # at most this long per timed loop (at least 10 calls)


def settings_for(dim: int, folder: Path, **overrides: Any) -> Any:
    from rag.settings import Settings

    return Settings.from_env(environ={}, dotenv=None, embed_model=MODELS[dim], index_dir=folder, progress=False,
                             **overrides)


@functools.cache
def basis(dim: int) -> np.ndarray:
    return np.random.default_rng(SEED).standard_normal((RANK, dim), dtype=np.float32) / np.sqrt(RANK)


def synthetic_vectors(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal((n, RANK), dtype=np.float32) @ basis(dim)
    v += 0.5 * rng.standard_normal((n, dim), dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def build(size: int, dim: int, folder: Path, words: int) -> dict[str, Any]:
    import rag
    from rag.embed import index_model_id
    from rag.store.generation import GenerationWriter
    from rag.store.lock import WriteLock
    from rag.store.manifest import read_manifest

    base = folder.parent / f"base-{dim}"
    if read_manifest(base) is None:  # the real sample corpus, ingested once per dimension
        rag.open_index(base, settings_for(dim, base)).ingest(rag.sample_articles())
    shutil.copytree(base, folder)
    idx = rag.open_index(folder, settings_for(dim, folder))
    snap = idx.snapshot()
    assert snap is not None
    counts = Counter(w.lower() for a in snap.catalog.articles() for w in re.findall(r"\w{3,}", a.title or ""))
    for row in snap.catalog.chunk_texts():
        counts.update(w.lower() for w in re.findall(r"\w{3,}", row[1]))
    vocab = np.array([w for w, _ in counts.most_common()])
    zipf = 1.0 / np.arange(1, len(vocab) + 1)
    n_syn = max(0, size - snap.manifest.chunks)
    rng = np.random.default_rng(SEED + size)
    s = idx.settings
    t0 = time.perf_counter()
    with WriteLock(folder, 0):
        writer = GenerationWriter(folder, snap, index_model_id(s), dim, s.chunk_tokens, s.chunk_overlap,
                                  s.exact_search_limit)
        gen_s = 0.0  # making the synthetic data is not the store's cost
        for block in range(0, n_syn, BLOCK):
            t1 = time.perf_counter()
            m = min(BLOCK, n_syn - block)
            picks = vocab[rng.choice(len(vocab), size=(m, words), p=zipf / zipf.sum())]
            block_texts = [" ".join(p) + "." for p in picks]
            block_vectors = synthetic_vectors(m, dim, rng)
            gen_s += time.perf_counter() - t1
            for first in range(0, m, CHUNKS_PER_ARTICLE):
                add_article(writer, (block + first) // CHUNKS_PER_ARTICLE,
                            block_texts[first:first + CHUNKS_PER_ARTICLE],
                            block_vectors[first:first + CHUNKS_PER_ARTICLE], words)
        manifest = writer.publish()
    return {"build_s": time.perf_counter() - t0 - gen_s, "generate_s": gen_s, "chunks": manifest.chunks,
            "real_chunks": snap.manifest.chunks,
            "kind": manifest.vector_index, "disk_bytes": folder_bytes(folder / manifest.data_dir),
            "faiss_bytes": manifest.file_sizes["chunks.faiss"]}


def add_article(writer: Any, number: int, texts: list[str], vectors: np.ndarray, words: int) -> None:
    from rag.news import Article, Chunk

    aid = f"syn-{number}"
    article = Article(id=aid, text="\n\n".join(texts), title=f"Synthetic {aid}", source="synthetic",
                      published_at="2020-01-01", language=("de", "en")[number % 2], content_hash=aid, text_hash=aid)
    chunks, start = [], 0
    for i, text in enumerate(texts):
        chunks.append(Chunk(aid, i, text, start, start + len(text), words))
        start += len(text) + 2
    writer.add(article, chunks, vectors)


def loop(fn: Callable[[Any], Any], items: list[Any]) -> tuple[dict[str, float], list[Any]]:
    times, results, t_end = [], [], time.perf_counter() + BUDGET_S
    for i, item in enumerate(items):
        if i >= 10 and time.perf_counter() > t_end:
            break
        t0 = time.perf_counter()
        results.append(fn(item))
        times.append(time.perf_counter() - t0)
    return percentiles_ms(times), results


def measure(dim: int, folder: Path, n_queries: int, n_answers: int) -> dict[str, Any]:
    import rag
    from rag.embed import load_embedder
    from rag.store import vectors as vec

    settings = settings_for(dim, folder)
    emb = load_embedder(settings)
    emb.embed_query("warm-up")
    rss0 = rss_mb()
    t0 = time.perf_counter()
    idx = rag.open_index(folder, settings, create=False)
    snap = idx.snapshot()
    assert snap is not None
    out: dict[str, Any] = {"open_s": time.perf_counter() - t0, "rss_open_mb": rss_mb() - rss0}
    titles = [a.title for a in snap.catalog.articles() if a.title and a.source != "synthetic"]
    questions = (["Which banks did Facebook contact?"] + titles) * (1 + n_queries // (1 + len(titles)))
    idx.search(questions[0], k=5)  # loads BM25
    n = snap.manifest.chunks
    out["rss_search_mb"] = rss_mb() - rss0
    out["rss_per_chunk_kb"] = 1024 * out["rss_search_mb"] / n
    out["embed"], _ = loop(emb.embed_query, questions[:n_queries])
    out["search"], _ = loop(lambda q: idx.search(q, k=5), questions[:n_queries])
    out["search_dense"], _ = loop(lambda q: idx.search(q, k=5, mode="dense"), questions[:n_queries])
    out["answer"], _ = loop(lambda q: rag.answer(q, idx, generator="extractive"), questions[:n_answers])
    out["rss_after_mb"] = rss_mb() - rss0

    queries = list(synthetic_vectors(n_queries, dim, np.random.default_rng(SEED - 1)))
    kind = snap.manifest.vector_index
    indexes = {kind: snap.index}
    other = "hnsw" if kind == "flat" else "flat"
    t0 = time.perf_counter()
    indexes[other] = vec.build_index(vec.VectorSet(np.asarray(snap.vectors.vectors), snap.vectors.ids), other)
    out[f"{other}_build_in_memory_s"] = time.perf_counter() - t0
    found = {}
    for name, index in indexes.items():
        snap.index = index
        out[f"dense_{name}"], found[name] = loop(lambda q: snap.dense(q, 10), queries)
    m = min(len(found["flat"]), len(found["hnsw"]))
    out["hnsw_recall@10"] = float(np.mean([len({r for r, _ in found["hnsw"][i]} & {r for r, _ in found["flat"][i]})
                                           / max(1, len(found["flat"][i])) for i in range(m)]))
    snap.index = indexes[kind]
    return out


def faiss_only(size: int, dim: int, n_queries: int) -> dict[str, Any]:
    """The FAISS part alone at ``size`` synthetic vectors (no SQLite, no BM25): what the store's
    flat and HNSW indexes cost in build time, memory and latency, and HNSW's recall@10 vs flat."""
    import faiss

    from rag.store import vectors as vec

    rng = np.random.default_rng(SEED + size)
    data = np.concatenate([synthetic_vectors(min(BLOCK * 8, size - i), dim, rng)
                           for i in range(0, size, BLOCK * 8)])
    vset = vec.VectorSet(data, np.arange(size, dtype=np.int64))
    queries = synthetic_vectors(n_queries, dim, np.random.default_rng(SEED - 1))
    out: dict[str, Any] = {"chunks": size}
    found = {}
    for kind in ("flat", "hnsw"):
        t0 = time.perf_counter()
        index = vec.build_index(vset, kind)
        out[f"{kind}_build_s"] = time.perf_counter() - t0
        # the serialised size: what the index file and its in-memory copy hold (RSS deltas are
        # blurred by the allocator reusing freed pages); the id map adds 8-16 bytes per vector
        out[f"{kind}_bytes_per_chunk"] = len(faiss.serialize_index(index)) / size
        out[f"dense_{kind}"], found[kind] = loop(lambda q, index=index: index.search(q[None, :], 10)[1][0],
                                                 list(queries))
        del index
    m = min(len(found["flat"]), len(found["hnsw"]))
    out["hnsw_recall@10"] = float(np.mean([len(set(found["hnsw"][i]) & set(found["flat"][i])) / 10
                                           for i in range(m)]))
    return out


def run_child(role: str, args: argparse.Namespace, size: int, dim: int, folder: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--role", role, "--size", str(size), "--dim", str(dim), "--folder", str(folder),
           "--words", str(args.words), "--queries", str(args.queries), "--answers", str(args.answers)]
    proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for dim, style in ((896, "-"), (384, "--")):
        mine = sorted((r for r in rows if r["dim"] == dim), key=lambda r: r["chunks"])
        if not mine:
            continue
        x = [r["chunks"] for r in mine]
        for key, label in (("dense_flat", "FAISS flat"), ("dense_hnsw", "FAISS HNSW"),
                           ("search", "index.search hybrid"), ("answer", "answer extractive")):
            ax.plot(x, [r[key]["p50_ms"] for r in mine], style, marker="o", label=f"{label} ({dim}-d)")
    ax.axhline(GOAL_MS, color="grey", linewidth=0.8, label=f"goal: search p50 {GOAL_MS:.0f} ms")
    ax.set(xscale="log", yscale="log", xlabel="chunks (synthetic)", ylabel="p50 latency (ms)",
           title="Latency vs index size (synthetic vectors and texts)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def report(rows: list[dict[str, Any]], sizes: list[int]) -> None:
    print(f"\n{'dim':>4} {'chunks':>8} {'kind':>5} {'build s':>8} {'disk MB':>8} {'open s':>6} {'RSS MB':>7} "
          f"{'KB/chunk':>8} {'faiss B/chunk':>13}")
    for r in rows:
        print(f"{r['dim']:>4} {r['chunks']:>8} {r['kind']:>5} {r['build_s']:>8.1f} {r['disk_bytes'] / 2**20:>8.1f} "
              f"{r['open_s']:>6.2f} {r['rss_search_mb']:>7.0f} {r['rss_per_chunk_kb']:>8.2f} "
              f"{r['faiss_bytes'] / r['chunks']:>13.0f}")
    print(f"\nlatency p50 / p95 ms{'':<7}{'flat dense()':>16} {'HNSW dense()':>16} {'R@10':>5} {'embed q':>14} "
          f"{'search hybrid':>16} {'search dense':>16} {'answer':>16}")
    for r in rows:
        cells = [f"{r[k]['p50_ms']:.1f} / {r[k]['p95_ms']:.1f}" for k in
                 ("dense_flat", "dense_hnsw", "embed", "search", "search_dense", "answer")]
        print(f"{r['dim']:>4}-d {r['chunks']:>8} chunks {cells[0]:>16} {cells[1]:>16} {r['hnsw_recall@10']:>5.3f} "
              f"{cells[2]:>14} {cells[3]:>16} {cells[4]:>16} {cells[5]:>16}")
    for r in rows:
        if r["chunks"] >= GOAL_SIZE and r["chunks"] < 2 * GOAL_SIZE:
            p50 = r["search"]["p50_ms"]
            print(f"Goal: search p50 <= {GOAL_MS:.0f} ms at {GOAL_SIZE:,} chunks ({r['dim']}-d, hybrid incl. query "
                  f"embedding): {p50:.1f} ms -> {'MET' if p50 <= GOAL_MS else 'NOT MET'} "
                  f"(without the embedding ~{p50 - r['embed']['p50_ms']:.1f} ms)")
    if not any(s >= 1_000_000 for s in sizes):
        est = [r["build_s"] * 12 / 60 for r in rows if r["chunks"] >= GOAL_SIZE and r["dim"] == 896]
        print("1M chunks: not run (optional: add 1000000 to --sizes; needs ~15 GB RAM and ~9 GB disk at 896-d"
              + (f"; build estimated ~{est[0]:.0f} min here from the 100k build, HNSW dominates)" if est else ")"))


def report_faiss(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    print("\nFAISS alone (synthetic vectors, no text store): build s, memory, dense top-10 p50 / p95 ms")
    print(f"{'dim':>4} {'vectors':>8} {'flat build':>10} {'flat B/vec':>10} {'flat p50/p95':>14} "
          f"{'HNSW build':>10} {'HNSW B/vec':>10} {'HNSW p50/p95':>14} {'R@10':>5}")
    for r in rows:
        print(f"{r['dim']:>4} {r['chunks']:>8} {r['flat_build_s']:>10.1f} {r['flat_bytes_per_chunk']:>10.0f} "
              f"{r['dense_flat']['p50_ms']:>6.1f} / {r['dense_flat']['p95_ms']:<5.1f} {r['hnsw_build_s']:>10.1f} "
              f"{r['hnsw_bytes_per_chunk']:>10.0f} {r['dense_hnsw']['p50_ms']:>6.2f} / "
              f"{r['dense_hnsw']['p95_ms']:<5.2f} "
              f"{r['hnsw_recall@10']:>5.3f}")


# ---- one table for every store: rows per (store, size) ----
# A store is a class with build(data, folder) and open(folder) (see FaissStore); STORES maps the
# --stores names to them, so another backend (e.g. a Milvus one) adds a class and a line here.


class ScaleData:
    """The same chunks for every store: ``vectors`` (n, dim) real-like (scale_data.RealLike,
    memory-mapped from the work folder), texts of ``words`` words (Zipf over the 10kGNAD
    vocabulary), 8 chunks per article; and real questions with their exact top 10."""

    def __init__(self, folder: Path, size: int, dim: int, words: int) -> None:
        self.folder, self.size, self.dim, self.words = folder, size, dim, words
        self.vectors = np.load(folder / f"vectors-{dim}-{size}.npy", mmap_mode="r")
        self.questions: list[str] = json.loads((folder / "questions.json").read_text())
        self.query_vectors = np.load(folder / f"queries-{dim}.npy")
        self.exact = np.load(folder / f"exact-{dim}-{size}.npy")  # (queries, 10) chunk positions
        self.vocab = json.loads((folder / "vocab.json").read_text())

    def articles(self, block: int = BLOCK) -> Any:
        """(number, texts, vectors) per synthetic article, in position order (chunk i of article a
        is position 8a + i)."""
        rng = np.random.default_rng(SEED + self.size)
        vocab = np.array(self.vocab)
        zipf = 1.0 / np.arange(1, len(vocab) + 1)
        for start in range(0, self.size, block):
            m = min(block, self.size - start)
            picks = vocab[rng.choice(len(vocab), size=(m, self.words), p=zipf / zipf.sum())]
            texts = [" ".join(p) + "." for p in picks]
            vectors = np.asarray(self.vectors[start:start + m])
            for first in range(0, m, CHUNKS_PER_ARTICLE):
                yield (start + first) // CHUNKS_PER_ARTICLE, texts[first:first + CHUNKS_PER_ARTICLE], \
                    vectors[first:first + CHUNKS_PER_ARTICLE]


def prepare_data(work: Path, sizes: list[int], dim: int, n_real: int, shared: Path, n_queries: int) -> None:
    """Writes what ScaleData reads: embeds --real passages and the questions once (cached)."""
    import scale_data

    from rag.embed import index_model_id, load_embedder

    settings = settings_for(dim, work)
    emb = load_embedder(settings)
    from rag.settings import cache_home

    real = scale_data.real_vectors(emb, index_model_id(settings), shared, n_real, cache_home() / "bench-scale")
    questions = scale_data.questions(shared)[:n_queries]
    (work / "questions.json").write_text(json.dumps(questions))
    queries = np.stack([emb.embed_query(q) for q in questions]).astype(np.float32)
    np.save(work / f"queries-{dim}.npy", queries)
    counts = Counter(w.lower() for t in scale_data.passages(shared, n_real) for w in re.findall(r"\w{3,}", t))
    (work / "vocab.json").write_text(json.dumps([w for w, _ in counts.most_common()]))
    gen = scale_data.RealLike(real)
    for size in sizes:
        path = work / f"vectors-{dim}-{size}.npy"
        if not path.exists():
            out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(size, dim))
            rng = np.random.default_rng(SEED + size)
            for start in range(0, size, 65_536):
                out[start:start + 65_536] = gen.draw(min(65_536, size - start), rng)
            out.flush()
            del out
        vectors = np.load(path, mmap_mode="r")
        scores = np.concatenate([np.asarray(vectors[s:s + 65_536]) @ queries.T for s in range(0, size, 65_536)])
        top = np.argpartition(-scores, 10, axis=0)[:10].T if size > 10 else np.argsort(-scores, axis=0).T
        np.save(work / f"exact-{dim}-{size}.npy", top.astype(np.int64))


class FaissStore:
    """The default store (FAISS + SQLite + BM25), written through GenerationWriter like an ingest
    of pre-embedded articles; the vector index kind is the one the settings choose by size."""

    def __init__(self, **overrides: Any) -> None:
        self.overrides = overrides  # settings: the default size thresholds, or a forced kind

    def build(self, data: ScaleData, folder: Path) -> dict[str, Any]:
        from rag.embed import index_model_id
        from rag.store.stores import open_store

        s = settings_for(data.dim, folder, **self.overrides)
        folder.mkdir(parents=True, exist_ok=True)
        store = open_store(folder, s)  # the settings' store: FAISS (GenerationWriter) or Milvus (MilvusWriter)
        with store.lock(0):
            with store.writer(None, index_model_id(s), data.dim, s.chunk_tokens, s.chunk_overlap,
                              s.exact_search_limit) as writer:
                for number, texts, vectors in data.articles():
                    add_article(writer, number, texts, vectors, data.words)
                manifest = writer.publish()
        store.close()
        out: dict[str, Any] = {"kind": manifest.vector_index}
        if (folder / manifest.data_dir).is_dir():  # FAISS: the generation's files (Milvus: the whole folder)
            out["disk_bytes"] = folder_bytes(folder / manifest.data_dir)
        if "chunks.faiss" in manifest.file_sizes:
            out["faiss_bytes"] = manifest.file_sizes["chunks.faiss"]
        return out

    def open(self, folder: Path, dim: int) -> tuple[Callable[[str], Any], Callable[[np.ndarray], list[int]]]:
        """(search a question: embed + dense search + passages, the timed call;
        dense top 10 of a query vector as chunk positions, for recall)."""
        import rag

        idx = rag.open_index(folder, settings_for(dim, folder, **self.overrides), create=False)
        snap = idx.snapshot()
        assert snap is not None

        def positions(vector: np.ndarray) -> list[int]:
            out = []
            for hit in snap.catalog.hits(snap.dense(vector, 10)):
                article, ordinal = hit.chunk_id.split("#")
                out.append(CHUNKS_PER_ARTICLE * int(article.removeprefix("syn-")) + int(ordinal))
            return out

        return (lambda q: idx.search(q, k=10, mode="dense")), positions


class MilvusLiteStore(FaissStore):
    """The product's Milvus store on a Milvus Lite file in the index folder (RAG_STORE=milvus without
    RAG_MILVUS_URI): written through MilvusWriter and searched through NewsIndex like the FAISS rows.
    milvus-lite 3.x serves the file from a gRPC server in threads of this process (no child process:
    checked, the process has none), so its memory and CPU are the process's; milvus-lite 1.x ran a
    C++ child process, which memory_kb / children_cpu_s would add (they sum the process tree)."""

    def __init__(self) -> None:
        super().__init__(store="milvus")

    def build(self, data: ScaleData, folder: Path) -> dict[str, Any]:
        return super().build(data, folder) | {"kind": "lite-flat"}  # Lite searches exactly (FLAT)


def langchain_embeddings(dim: int, folder: Path) -> Any:
    """LangChain's Embeddings interface around rag's embedder (the same model and query prefix)."""
    from langchain_core.embeddings import Embeddings

    from rag.embed import load_embedder

    embedder = load_embedder(settings_for(dim, folder))  # cached per process

    class RagEmbeddings(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [v.tolist() for v in embedder.embed_documents(texts)]

        def embed_query(self, text: str) -> list[float]:
            return embedder.embed_query(text).tolist()

    return RagEmbeddings()


class LangChainFaissStore:
    """The peer: LangChain's FAISS vector store (langchain_community.vectorstores.FAISS, its defaults:
    IndexFlatL2, an InMemoryDocstore of Documents pickled beside it), built from the same vectors and
    texts with from_embeddings / add_embeddings, saved with save_local and loaded with load_local as
    its users do. Metadata per chunk: what a Hit names (article id, ordinal, title, source, date)."""

    def build(self, data: ScaleData, folder: Path) -> dict[str, Any]:
        from langchain_community.vectorstores import FAISS

        emb = langchain_embeddings(data.dim, folder)  # only used for queries: the vectors are given
        store = None
        pairs: list[tuple[str, np.ndarray]] = []  # numpy rows: lists of Python floats would cost ~30x the RAM
        metas: list[dict[str, Any]] = []
        ids: list[str] = []

        def flush() -> None:  # in blocks: each InMemoryDocstore.add copies the whole dict (quadratic per article)
            nonlocal store
            if store is None:
                store = FAISS.from_embeddings(pairs, emb, metadatas=metas, ids=ids)
            else:
                store.add_embeddings(pairs, metadatas=metas, ids=ids)
            pairs.clear(), metas.clear(), ids.clear()

        for number, texts, vectors in data.articles():
            aid = f"syn-{number}"
            pairs += zip(texts, vectors)
            metas += [{"article_id": aid, "ordinal": i, "title": f"Synthetic {aid}", "source": "synthetic",
                       "published_at": "2020-01-01", "position": CHUNKS_PER_ARTICLE * number + i}
                      for i in range(len(texts))]
            ids += [f"{aid}#{i}" for i in range(len(texts))]
            if len(ids) >= BLOCK:
                flush()
        if ids:
            flush()
        assert store is not None
        store.save_local(str(folder))
        return {"kind": type(store.index).__name__, "faiss_bytes": (folder / "index.faiss").stat().st_size}

    def open(self, folder: Path, dim: int) -> tuple[Callable[[str], Any], Callable[[np.ndarray], list[int]]]:
        from langchain_community.vectorstores import FAISS

        emb = langchain_embeddings(dim, folder)
        store = FAISS.load_local(str(folder), emb, allow_dangerous_deserialization=True)

        def search(question: str) -> Any:
            return store.similarity_search_with_score_by_vector(emb.embed_query(question), k=10)

        def positions(vector: np.ndarray) -> list[int]:
            found = store.similarity_search_with_score_by_vector(vector.tolist(), k=10)
            return [doc.metadata["position"] for doc, _ in found]

        return search, positions


STORES: dict[str, Callable[[], Any]] = {
    "faiss": FaissStore,  # the kind chosen by size, as shipped
    "faiss-hnsw": functools.partial(FaissStore, exact_search_limit=0, hnsw_limit=10**12),
    "faiss-ivfpq": functools.partial(FaissStore, exact_search_limit=0, hnsw_limit=0),
    "milvus-lite": MilvusLiteStore,
    "langchain-faiss": LangChainFaissStore,  # the peer
}
PEER = "langchain-faiss"


def descendants(pid: int) -> list[int]:
    """Child processes of ``pid``, recursively (Milvus Lite's server is one)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def children_cpu_s(pids: list[int] | None = None) -> float:
    """CPU seconds (user + system) used so far by this process's live children (none for the stores here)."""
    total = 0
    for pid in descendants(os.getpid()) if pids is None else pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def memory_kb() -> dict[str, float]:
    """Resident memory split (KiB): anonymous (heap: cannot be dropped) and file-backed
    (mmapped files: the kernel may evict them under pressure and re-read on use), summed over this
    process and its children (none for the stores here; a server a store spawned would count)."""
    fields: dict[str, float] = {}
    for pid in [os.getpid(), *descendants(os.getpid())]:
        try:
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                fields[key] = fields.get(key, 0.0) + float(value.split()[0])
    return fields


def store_child(role: str, store_name: str, size: int, dim: int, work: Path, words: int) -> dict[str, Any]:
    import resource

    store = STORES[store_name]()
    data = ScaleData(work, size, dim, words)
    folder = work / f"{store_name}-{dim}-{size}"
    if role == "build":
        shutil.rmtree(folder, ignore_errors=True)
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        out = store.build(data, folder)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        out["build_children_cpu_s"] = children_cpu_s()
        out["build_s"] = time.perf_counter() - t0
        out["build_cpu_s"] = ((usage.ru_utime - usage0.ru_utime) + (usage.ru_stime - usage0.ru_stime)
                              + out["build_children_cpu_s"])
        out.setdefault("disk_bytes", folder_bytes(folder))
        return out
    from rag.embed import load_embedder

    load_embedder(settings_for(dim, folder)).embed_query("warm-up")  # cached: the store's search reuses it
    before = memory_kb()
    cpu0 = time.process_time() + children_cpu_s()
    search, positions = store.open(folder, dim)
    search(data.questions[0])
    after = memory_kb()
    kids = descendants(os.getpid())  # read per search below: scanning /proc each time would add CPU
    out: dict[str, Any] = {f"{k}_delta_kb": after[k] - before[k] for k in before}
    times, cpu_times = [], []
    for q in data.questions[1:]:
        c0 = children_cpu_s(kids) + time.process_time()
        t0 = time.perf_counter()
        search(q)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() + children_cpu_s(kids) - c0)
    out["search"] = percentiles_ms(times)
    out["search_times_s"], out["search_cpu_times_s"] = times, cpu_times  # pooled over --rounds
    out["search_cpu_ms_mean"] = 1000 * float(np.mean(cpu_times))
    found = [positions(v) for v in data.query_vectors]
    out["recall@10"] = float(np.mean([len(set(f) & set(e.tolist())) / len(e) for f, e in zip(found, data.exact)]))
    out["measure_cpu_s"] = time.process_time() + children_cpu_s() - cpu0
    end = memory_kb()  # after every search: re-scoring has paged in parts of the vector matrix
    out |= {f"{k}_end_delta_kb": end[k] - before[k] for k in before}
    return out


def run_store_child(role: str, args: argparse.Namespace, store: str, size: int, dim: int, work: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--role", f"store-{role}", "--store", store, "--size", str(size),
           "--dim", str(dim), "--folder", str(work), "--words", str(args.words)]
    proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def store_table(rows: list[dict[str, Any]]) -> None:
    print("\nRAM = growth of a fresh process's RSS from opening the store to its first search, per chunk: anonymous "
          "(heap) + file-backed (mmapped pages, evictable); in brackets after all searches. Ingest excludes "
          "embedding (vectors given). CPU = CPU time of the process and its children, the machine may be shared; "
          "RAM likewise sums the process tree (Milvus Lite 3 serves from threads in the process: no child).")
    print("\n| store | kind | chunks | ingest chunks/s (CPU s) | search p50 / p95 ms (CPU ms) | recall@10 vs exact "
          "| RAM KB/chunk: anon + file [after searches] | disk KB/chunk | FAISS B/chunk |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        n = r["size"]
        anon, file_ = r["RssAnon_delta_kb"] / n, r["RssFile_delta_kb"] / n
        anon_end, file_end = r["RssAnon_end_delta_kb"] / n, r["RssFile_end_delta_kb"] / n
        faiss_b = f"{r['faiss_bytes'] / n:.0f}" if "faiss_bytes" in r else "-"
        print(f"| {r['store']} | {r.get('kind', '')} | {n:,} | {n / r['build_s']:,.0f} ({r['build_cpu_s']:.0f}) "
              f"| {r['search']['p50_ms']:.1f} / {r['search']['p95_ms']:.1f} ({r['search_cpu_ms_mean']:.1f}) "
              f"| {r['recall@10']:.3f} | {anon:.2f} + {file_:.2f} [{anon_end:.2f} + {file_end:.2f}] "
              f"| {r['disk_bytes'] / n / 1024:.2f} | {faiss_b} |")


def ram_kb(r: dict[str, Any]) -> float:
    return (r["RssAnon_delta_kb"] + r["RssFile_delta_kb"]) / r["size"]


def peer_ratios(rows: list[dict[str, Any]]) -> None:
    """Each store vs the peer (LangChain FAISS) at the same size, from the same run."""
    peers = {r["size"]: r for r in rows if r["store"] == PEER}
    lines = []
    for r in rows:
        peer = peers.get(r["size"])
        if peer is None or r["store"] == PEER:
            continue
        lines.append(f"| {r['store']} | {r['size']:,} | {r['search']['p50_ms'] / peer['search']['p50_ms']:.2f}x "
                     f"| {ram_kb(r) / max(ram_kb(peer), 1e-9):.2f}x "
                     f"| {r['disk_bytes'] / peer['disk_bytes']:.2f}x | {r['build_s'] / peer['build_s']:.2f}x |")
    if lines:
        print(f"\nRatios vs the peer ({PEER}) at the same size, same run (below 1: smaller / faster than the peer; "
              f"searches pooled over {rows[0].get('rounds', 1)} alternate round(s)):")
        print("\n| store | chunks | search p50 | RAM/chunk (anon + file) | disk/chunk | ingest time |")
        print("|---|---|---|---|---|---|")
        print("\n".join(lines))


def plot_stores(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for store in dict.fromkeys(r["store"] for r in rows):
        mine = sorted((r for r in rows if r["store"] == store), key=lambda r: r["size"])
        x = [r["size"] for r in mine]
        axes[0].plot(x, [r["search"]["p50_ms"] for r in mine], marker="o", label=f"{store} p50")
        axes[0].plot(x, [r["search"]["p95_ms"] for r in mine], "--", marker="o", label=f"{store} p95")
        axes[1].plot(x, [r["recall@10"] for r in mine], marker="o", label=store)
        axes[2].plot(x, [ram_kb(r) for r in mine], marker="o",
                     label=f"{store} RAM")
        axes[2].plot(x, [r["disk_bytes"] / r["size"] / 1024 for r in mine], "--", marker="o", label=f"{store} disk")
    axes[0].axhline(50, color="grey", linewidth=0.8)
    axes[1].axhline(0.95, color="grey", linewidth=0.8)
    axes[2].axhline(0.6, color="grey", linewidth=0.8)
    for ax, ylabel in zip(axes, ("search incl. query embedding (ms)", "recall@10 vs exact", "KB per chunk")):
        ax.set(xscale="log", xlabel="chunks", ylabel=ylabel)
        ax.legend(fontsize=7)
    axes[2].set_yscale("log")
    fig.suptitle("Stores vs size (real-like 896-d vectors, real questions)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated chunk counts")
    ap.add_argument("--dims", default="896", help="896 (default model) and/or 384 (e5-small), comma-separated")
    ap.add_argument("--words", type=int, default=30, help="words per synthetic chunk")
    ap.add_argument("--queries", type=int, default=200, help="timed searches per measurement (budget 30 s each)")
    ap.add_argument("--answers", type=int, default=20, help="timed answers per size")
    ap.add_argument("--workdir", type=Path, help="where index folders are built (default: a temp dir, removed)")
    ap.add_argument("--png", type=Path, default=REPO / "benchmarks" / "latency_vs_size.png")
    ap.add_argument("--stores-png", type=Path, default=REPO / "benchmarks" / "stores_vs_size.png")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    ap.add_argument("--faiss-sizes", default="",
                    help="sizes measured for the FAISS part alone (synthetic vectors; '' for none)")
    ap.add_argument("--faiss-dims", default="384",
                    help="dimensions for --faiss-sizes (HNSW at 1M x 896-d takes ~30 min to build here)")
    ap.add_argument("--stores", default="faiss",
                    help="the store table (default): stores compared at --sizes on real-like vectors ('' for none)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="measure every store this many times per size, in alternate order (timings pooled)")
    ap.add_argument("--max-size", default="",
                    help="largest size per store, e.g. milvus-lite=100000,langchain-faiss=1000000 (Milvus Lite "
                         "searches exactly: ~1 s per query at 100k here)")
    ap.add_argument("--detail", action="store_true",
                    help="also the older detailed report (hybrid search, answers, flat vs HNSW) on rank-64 vectors")
    ap.add_argument("--real", type=int, default=2000, help="real 10kGNAD passages embedded to draw vectors around")
    ap.add_argument("--shared", type=Path, default=Path(os.environ.get("RAG_SHARED", SHARED)),
                    help="folder holding datasets/ (10kgnad, xquad-dev)")
    ap.add_argument("--role", choices=["build", "measure", "faiss", "store-build", "store-measure"],
                    help=argparse.SUPPRESS)  # child mode
    ap.add_argument("--store", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--dim", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.role == "build":
        print(json.dumps(build(args.size, args.dim, args.folder, args.words)))
        return 0
    if args.role == "faiss":
        print(json.dumps(faiss_only(args.size, args.dim, args.queries)))
        return 0
    if args.role == "measure":
        print(json.dumps(measure(args.dim, args.folder, args.queries, args.answers)))
        return 0
    if args.role in ("store-build", "store-measure"):
        print(json.dumps(store_child(args.role.removeprefix("store-"), args.store, args.size, args.dim, args.folder,
                                     args.words)))
        return 0

    facts = machine()
    print(machine_line(facts))
    sizes = [int(s) for s in args.sizes.split(",")]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="rag-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    store_rows: list[dict[str, Any]] = []
    faiss_rows: list[dict[str, Any]] = []
    try:
        stores = [name.strip() for name in args.stores.split(",") if name.strip()]
        unknown = [name for name in stores if name not in STORES]
        if unknown:
            ap.error(f"--stores: unknown {unknown}; known: {', '.join(STORES)}")
        caps = {name.strip(): int(n) for name, _, n in (c.partition("=") for c in args.max_size.split(",") if c)}
        dim = int(args.dims.split(",")[0])
        if stores:
            print(f"REAL-LIKE data: {dim}-d vectors drawn around {args.real} embedded 10kGNAD passages "
                  f"(benchmarks/scale_data.py), {args.words}-word texts, {args.queries} real XQuAD questions; "
                  f"search = index.search(question, k=10, mode='dense') incl. the query embedding")
            print("... preparing vectors", file=sys.stderr, flush=True)
            prepare_data(work, sizes, dim, args.real, args.shared, args.queries)
            for size in sizes:
                here = [store for store in stores if size <= caps.get(store, size)]
                for store in sorted(set(stores) - set(here), key=stores.index):
                    print(f"... {store}, {size} chunks: skipped (--max-size {store}={caps[store]})",
                          file=sys.stderr, flush=True)
                built = {}
                for store in here:
                    print(f"... {store}, {size} chunks: build", file=sys.stderr, flush=True)
                    built[store] = {"store": store, "dim": dim, "size": size} | run_store_child("build", args, store,
                                                                                               size, dim, work)
                # Measured in alternate rounds (A B C, C B A, ...) so load changes hit every store alike;
                # memory and recall come from the first round, the search times are pooled.
                rounds: dict[str, list[dict[str, Any]]] = {store: [] for store in here}
                for n in range(args.rounds):
                    for store in here if n % 2 == 0 else here[::-1]:
                        print(f"... {store}, {size} chunks: measure (round {n + 1})", file=sys.stderr, flush=True)
                        rounds[store].append(run_store_child("measure", args, store, size, dim, work))
                for store in here:
                    first = rounds[store][0]
                    times = [t for r in rounds[store] for t in r["search_times_s"]]
                    cpu = [t for r in rounds[store] for t in r["search_cpu_times_s"]]
                    store_rows.append(built[store] | first | {
                        "search": percentiles_ms(times), "search_cpu_ms_mean": 1000 * float(np.mean(cpu)),
                        "rounds": args.rounds})
                    shutil.rmtree(work / f"{store}-{dim}-{size}", ignore_errors=True)
        for dim in (int(d) for d in args.dims.split(",")) if args.detail else ():
            for size in sizes:
                folder = work / f"index-{dim}-{size}"
                shutil.rmtree(folder, ignore_errors=True)
                print(f"... {dim}-d, {size} chunks: build", file=sys.stderr, flush=True)
                row = {"dim": dim, "size": size} | run_child("build", args, size, dim, folder)
                print(f"... {dim}-d, {size} chunks: measure", file=sys.stderr, flush=True)
                rows.append(row | run_child("measure", args, size, dim, folder))
                shutil.rmtree(folder, ignore_errors=True)
        for dim in (int(d) for d in args.faiss_dims.split(",")):
            for size in (int(s) for s in args.faiss_sizes.split(",") if s.strip()):
                print(f"... {dim}-d, {size} vectors: FAISS only", file=sys.stderr, flush=True)
                faiss_rows.append({"dim": dim} | run_child("faiss", args, size, dim, work))
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    if store_rows:
        store_table(store_rows)
        peer_ratios(store_rows)
        plot_stores(store_rows, args.stores_png)
        print(f"\nwrote {args.stores_png}")
    if rows:
        print(f"\nDetail, SYNTHETIC data: rank-{RANK} Gaussian vectors + noise and {args.words}-word texts from the "
              f"sample corpus vocabulary, plus the real sample corpus")
        report(rows, sizes)
        plot(rows, args.png)
        print(f"\nwrote {args.png}")
    report_faiss(faiss_rows)
    write_json(args.json, {"machine": facts, "words_per_chunk": args.words, "stores": store_rows, "rows": rows,
                           "faiss_only": faiss_rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
