"""Search latency and memory at 10k, 100k (and optionally 1M) chunks, on SYNTHETIC data.

Run from the repository root (prints figures; this is not a test):

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/scale.py [--sizes 10000,100000[,1000000]] [--dims 896[,384]] \
        [--faiss-sizes 1000000] [--faiss-dims 384] [--queries 200] [--answers 20] \
        [--png benchmarks/latency_vs_size.png] [--json out.json]

Each index folder is a real one, written through rag.store.generation.GenerationWriter: the
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
from common import REPO, folder_bytes, machine, machine_line, percentiles_ms, rss_mb, write_json  # noqa: E402

MODELS = {896: "bundled:multilingual-e5-small+use-m3", 384: "bundled:multilingual-e5-small"}
CHUNKS_PER_ARTICLE, RANK, SEED, BLOCK = 8, 64, 7, 8192
GOAL_MS, GOAL_SIZE = 30.0, 100_000
BUDGET_S = 30.0  # at most this long per timed loop (at least 10 calls)


def settings_for(dim: int, folder: Path) -> Any:
    from rag.settings import Settings

    return Settings.from_env(environ={}, dotenv=None, embed_model=MODELS[dim], index_dir=folder, progress=False)


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
    return {"build_s": time.perf_counter() - t0 - gen_s, "generate_s": gen_s, "chunks": manifest.chunks, "real_chunks": snap.manifest.chunks,
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
              f"{r['hnsw_bytes_per_chunk']:>10.0f} {r['dense_hnsw']['p50_ms']:>6.2f} / {r['dense_hnsw']['p95_ms']:<5.2f} "
              f"{r['hnsw_recall@10']:>5.3f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000", help="comma-separated chunk counts (1000000 is optional)")
    ap.add_argument("--dims", default="896", help="896 (default model) and/or 384 (e5-small), comma-separated")
    ap.add_argument("--words", type=int, default=60, help="words per synthetic chunk")
    ap.add_argument("--queries", type=int, default=200, help="timed searches per measurement (budget 30 s each)")
    ap.add_argument("--answers", type=int, default=20, help="timed answers per size")
    ap.add_argument("--workdir", type=Path, help="where index folders are built (default: a temp dir, removed)")
    ap.add_argument("--png", type=Path, default=REPO / "benchmarks" / "latency_vs_size.png")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    ap.add_argument("--faiss-sizes", default="1000000",
                    help="sizes measured for the FAISS part alone (synthetic vectors; '' for none)")
    ap.add_argument("--faiss-dims", default="384",
                    help="dimensions for --faiss-sizes (HNSW at 1M x 896-d takes ~30 min to build here)")
    ap.add_argument("--role", choices=["build", "measure", "faiss"], help=argparse.SUPPRESS)  # child mode
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

    facts = machine()
    print(machine_line(facts))
    print(f"SYNTHETIC data: rank-{RANK} Gaussian vectors + noise and {args.words}-word texts from the sample "
          f"corpus vocabulary, plus the real sample corpus; latency of real embeddings/texts may differ.")
    sizes = [int(s) for s in args.sizes.split(",")]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="rag-scale-"))
    rows: list[dict[str, Any]] = []
    faiss_rows: list[dict[str, Any]] = []
    try:
        for dim in (int(d) for d in args.dims.split(",")):
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
    report(rows, sizes)
    report_faiss(faiss_rows)
    plot(rows, args.png)
    print(f"\nwrote {args.png}")
    write_json(args.json, {"machine": facts, "synthetic": True, "words_per_chunk": args.words, "rows": rows,
                           "faiss_only": faiss_rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
