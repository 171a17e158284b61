"""Compare embedding models: cross-lingual retrieval quality and ingest speed.

Run from the repository root (prints figures; this is not a test):

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/embedders.py [--models A,B] [--skip-ingest] [--json out.json]

Retrieval: the 120 German XQuAD-dev paragraphs (one document each, no chunking,
passage prompt) are searched with the 632 English questions (query prompt); the
gold document is the paragraph the question id belongs to in the German file.
Reports recall@1, recall@5 and MRR@10 by exact inner product.
Speed: the time to embed those paragraphs after a warm-up (load time is shown
separately), and an end-to-end ingest of the bundled sample corpus into a
temporary index with the default model. Peak RSS is the process high-water
mark, so it only grows from one model to the next.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, load_xquad, machine, peak_rss_mb  # noqa: E402

sys.path.insert(0, str(REPO))

from rag.embed import load_embedder, parse_spec  # noqa: E402
from rag.settings import DEFAULT_EMBED_MODEL, Settings  # noqa: E402

MODELS = [DEFAULT_EMBED_MODEL, "bundled:multilingual-e5-small", "bundled:use-m3", "bundled:all-MiniLM-L6-v2"]


def bench_model(name: str, docs: list[str], questions: list[str], gold: list[int],
                loaded_parts: set[str]) -> dict[str, Any]:
    settings = Settings.from_env(environ={}, dotenv=None, embed_model=name, progress=False)
    parts = {part for part, _ in parse_spec(name)}
    t0 = time.perf_counter()
    emb = load_embedder(settings)
    load_s = time.perf_counter() - t0
    reused = sorted(parts & loaded_parts)  # load_embedder caches per process: these cost ~nothing now
    loaded_parts |= parts
    emb.embed_documents(docs[:8])  # warm-up, excluded from timing
    emb.embed_query(questions[0])

    tokens = sum(emb.count_tokens(docs))
    t0 = time.perf_counter()
    doc_vecs = emb.embed_documents(docs)
    embed_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    q_vecs = np.stack([emb.embed_query(q) for q in questions])
    query_s = time.perf_counter() - t0

    scores = q_vecs @ doc_vecs.T
    gold_arr = np.asarray(gold)
    gold_scores = scores[np.arange(len(gold)), gold_arr]
    ranks = (scores > gold_scores[:, None]).sum(axis=1) + 1  # 1-based rank of the gold paragraph
    return {
        "model": name, "model_id": emb.model_id, "dim": int(emb.dim),
        "recall@1": float(np.mean(ranks <= 1)), "recall@5": float(np.mean(ranks <= 5)),
        "mrr@10": float(np.mean(np.where(ranks <= 10, 1.0 / ranks, 0.0))),
        "load_s": load_s, "load_reused_parts": reused,
        "embed_s": embed_s, "docs_per_s": len(docs) / embed_s, "tokens": tokens, "tokens_per_s": tokens / embed_s,
        "queries_per_s": len(questions) / query_s, "peak_rss_mb": peak_rss_mb(),
    }


def bench_ingest() -> dict[str, Any]:
    import rag

    settings = Settings.from_env(environ={}, dotenv=None, progress=False)
    t0 = time.perf_counter()
    load_embedder(settings).embed_documents(["warm-up"])  # load (or reuse) the model before timing
    load_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp:
        idx = rag.open_index(tmp, settings.replace(index_dir=Path(tmp)))
        t0 = time.perf_counter()
        report = idx.ingest(rag.sample_articles())
        ingest_s = time.perf_counter() - t0
    counts = report.counts()
    return {"model": settings.embed_model, "load_s": load_s, "ingest_s": ingest_s, "counts": counts,
            "articles_per_s": counts["added"] / ingest_s, "chunks_per_s": counts["chunks_added"] / ingest_s,
            "peak_rss_mb": peak_rss_mb()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated embed model names")
    ap.add_argument("--skip-ingest", action="store_true", help="skip the end-to-end sample-corpus ingest")
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared", help="folder holding datasets/")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]

    facts = machine()
    print("Machine: " + ", ".join(f"{k}={v}" for k, v in facts.items()))
    docs, questions, gold = load_xquad(args.shared)
    print(f"XQuAD-dev: {len(docs)} German paragraphs, {len(questions)} English questions\n")

    results: list[dict[str, Any]] = []
    loaded: set[str] = set()
    for name in models:
        print(f"... {name}", file=sys.stderr, flush=True)
        results.append(bench_model(name, docs, questions, gold, loaded))

    w = max(len(r["model"]) for r in results)
    print(f"{'model':<{w}}  {'dim':>4}  {'R@1':>5}  {'R@5':>5}  {'MRR@10':>6}  {'load s':>7}  "
          f"{'docs/s':>6}  {'tok/s':>6}  {'q/s':>6}  {'peak RSS MB':>11}")
    for r in results:
        load = f"{r['load_s']:.2f}" + ("*" if r["load_reused_parts"] else " ")
        print(f"{r['model']:<{w}}  {r['dim']:>4}  {r['recall@1']:>5.3f}  {r['recall@5']:>5.3f}  "
              f"{r['mrr@10']:>6.3f}  {load:>7}  {r['docs_per_s']:>6.1f}  {r['tokens_per_s']:>6.0f}  "
              f"{r['queries_per_s']:>6.1f}  {r['peak_rss_mb']:>11.0f}")
    print("* load time excludes parts already loaded by an earlier row (cached per process).")
    print("tok/s counts document tokens with emb.count_tokens (an ensemble uses its first part's tokenizer).")

    ingest = None
    if not args.skip_ingest:
        print(f"... ingest sample corpus with {DEFAULT_EMBED_MODEL}", file=sys.stderr, flush=True)
        ingest = bench_ingest()
        c = ingest["counts"]
        print(f"\nEnd-to-end ingest of rag/sample ({ingest['model']}, model warm; load/warm-up "
              f"{ingest['load_s']:.2f} s):")
        print(f"  {c['added']} articles, {c['chunks_added']} chunks in {ingest['ingest_s']:.1f} s -> "
              f"{ingest['articles_per_s']:.1f} articles/s, {ingest['chunks_per_s']:.1f} chunks/s; "
              f"peak RSS {ingest['peak_rss_mb']:.0f} MB")
        print("  counts: " + ", ".join(f"{k}={v}" for k, v in c.items()))

    if args.json:
        out = {"machine": facts, "dataset": {"paragraphs": len(docs), "questions": len(questions)},
               "models": results, "ingest": ingest}
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
