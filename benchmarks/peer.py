"""Ours vs the peer: LangChain (langchain-community FAISS + langchain-huggingface embeddings).

Run from the repository root (prints figures; this is not a test):

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/peer.py [--limit N] [--corpora 10kgnad,sample,xquad] \
        [--sides ours,peer,ours-default,ours-torch,ours-onnx-fp32] [--queries 200] [--json out.json]

Both sides use the same converted multilingual-e5-small model ("query: "/"passage: " prompts,
normalised, batch 16) and 200-token chunks with 40 overlap in that model's tokens: ours with its
sentence-aware chunker, the peer with RecursiveCharacterTextSplitter.from_huggingface_tokenizer.
The peer stores vectors in FAISS.from_documents (MAX_INNER_PRODUCT = cosine) and save_local().
"ours" runs e5 the way our defaults do (ONNX Runtime, int8 per-channel weights); "ours-default" is
the product's default e5+USE ensemble on the default runtime (not like-for-like: two models, better
recall). "ours-torch" (sentence-transformers, fp32) and "ours-onnx-fp32" are ours with e5 on the
other runtimes (RAG_EMBED_BACKEND / RAG_ONNX_PRECISION).
Each (side, corpus) runs in a fresh child process, so peak RSS is per side. Model load is
excluded from ingest time (reported as load s). Ingest = parse/clean + split + embed + index +
save to disk; the sample corpus is read from its files by ours, the peer gets the already
parsed texts (a small head start). Latency: the first --queries English XQuAD questions,
k=5, after 3 warm-up queries. Quality: 120 German XQuAD paragraphs as articles, 632 English
questions, gold = the question's paragraph; R@1/R@5/MRR@10 by article over the top-10 chunks.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (REPO, SHARED, folder_bytes, load_xquad, machine, machine_line, peak_rss_mb,  # noqa: E402
                    percentiles_ms, rank_metrics, rss_mb, write_json)

E5 = "bundled:multilingual-e5-small"
SIDES = {"ours": E5, "peer": E5, "ours-default": "bundled:multilingual-e5-small+use-m3",
         "ours-torch": E5, "ours-onnx-fp32": E5}
#: Sides that do not run on the default runtime (RAG_EMBED_BACKEND=auto, RAG_ONNX_PRECISION=auto):
#: (backend, precision).
SIDE_BACKENDS = {"ours-torch": ("sentence-transformers", "fp32"), "ours-onnx-fp32": ("onnx", "fp32")}
#: Sides whose ratios to the peer decide the goal: like-for-like, and the product's default.
JUDGED = ("ours", "ours-default")
GOAL_SPEEDUP = 2.0
Job = dict[str, Any]


def timed(fn: Callable[..., Any], timers: dict[str, float], key: str) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            timers[key] += time.perf_counter() - t0
    return wrapper


def timed_iter(fn: Callable[..., Any], timers: dict[str, float], key: str) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        it = fn(*args, **kwargs)
        while True:
            t0 = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                return
            finally:
                timers[key] += time.perf_counter() - t0
            yield item
    return wrapper


def latency(search: Callable[[str], Any], queries: list[str]) -> dict[str, float]:
    for q in queries[:3]:
        search(q)  # warm-up (lazy loads: BM25, language detector)
    times = []
    for q in queries:
        t0 = time.perf_counter()
        search(q)
        times.append(time.perf_counter() - t0)
    return percentiles_ms(times)


def run_ours(job: Job, folder: Path) -> dict[str, Any]:
    import rag
    import rag.index as ri
    import rag.pipeline as rp
    from rag.embed import load_embedder
    from rag.settings import Settings

    backend, precision = job.get("backend") or ("auto", "auto")
    settings = Settings.from_env(environ={}, dotenv=None, embed_model=job["model"], index_dir=folder, progress=False,
                                 embed_backend=backend, onnx_precision=precision)
    out_runtime = {"backend": backend, "precision": precision}
    t0 = time.perf_counter()
    emb = load_embedder(settings)
    emb.embed_documents(["warm-up"]), emb.embed_query("warm-up")
    out: dict[str, Any] = {"load_s": time.perf_counter() - t0, "rss_loaded_mb": rss_mb(), **out_runtime,
                           "model_id": emb.model_id}
    timers: dict[str, float] = defaultdict(float)
    tokens: list[int] = []
    chunk = timed(rp.chunk_article, timers, "chunk")

    def chunk_and_count(*args: Any, **kwargs: Any) -> Any:
        chunks = chunk(*args, **kwargs)
        tokens.extend(c.n_tokens for c in chunks)
        return chunks
    rp.chunk_article = chunk_and_count  # the ingest's halves: reading in rag.index, the rest in rag.pipeline
    ri.read_file = timed_iter(ri.read_file, timers, "parse")
    rp.to_article = timed(rp.to_article, timers, "clean")
    emb.embed_documents = timed(emb.embed_documents, timers, "embed")  # type: ignore[method-assign]
    for name in ("__init__", "add", "remove", "publish"):
        setattr(rp.GenerationWriter, name, timed(getattr(rp.GenerationWriter, name), timers, "write"))

    idx = rag.open_index(folder, settings)
    t0 = time.perf_counter()
    report = idx.ingest(job["files"]) if job["files"] else idx.add_articles(job["articles"])
    out["ingest_s"] = time.perf_counter() - t0
    counts = report.counts()
    out.update(articles=counts["added"], chunks=counts["chunks_added"], failed=counts["failed"],
               mean_chunk_tokens=sum(tokens) / max(1, len(tokens)), disk_bytes=folder_bytes(folder))
    out["breakdown_s"] = {k: timers[k] for k in ("parse", "clean", "chunk", "embed", "write")}
    out["breakdown_s"]["other"] = out["ingest_s"] - sum(out["breakdown_s"].values())
    for mode in ("dense", "hybrid"):
        out[f"latency_{mode}"] = latency(lambda q: idx.search(q, k=5, mode=mode), job["queries"])
    out["peak_rss_mb"] = peak_rss_mb()
    if job.get("gold"):
        for mode in ("dense", "hybrid"):
            ranked = [[h.article_id for h in idx.search(q, k=10, mode=mode)] for q in job["questions"]]
            out[f"quality_{mode}"] = rank_metrics(ranked, job["gold"])
    return out


def run_peer(job: Job, folder: Path) -> dict[str, Any]:
    import transformers
    from langchain_community.vectorstores import FAISS
    from langchain_community.vectorstores.utils import DistanceStrategy
    from langchain_core.documents import Document
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    transformers.logging.set_verbosity_error()  # "sequence longer than 512" is the splitter counting, not a bug
    t0 = time.perf_counter()
    emb = HuggingFaceEmbeddings(
        model_name=job["model_path"], model_kwargs={"device": "cpu"},
        encode_kwargs={"normalize_embeddings": True, "batch_size": 16, "prompt": "passage: "},
        query_encode_kwargs={"normalize_embeddings": True, "prompt": "query: "})
    tokenizer = transformers.AutoTokenizer.from_pretrained(job["model_path"])
    splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(tokenizer, chunk_size=200, chunk_overlap=40)
    emb.embed_documents(["warm-up"]), emb.embed_query("warm-up")
    out: dict[str, Any] = {"load_s": time.perf_counter() - t0, "rss_loaded_mb": rss_mb()}
    timers: dict[str, float] = defaultdict(float)
    emb._client.encode = timed(emb._client.encode, timers, "embed")  # the sentence-transformers model

    t0 = time.perf_counter()
    docs = [Document(page_content=f"{a['title']}\n{a['text']}" if a.get("title") else a["text"],
                     metadata={"id": a["id"]}) for a in job["articles"]]
    chunks = splitter.split_documents(docs)
    t1 = time.perf_counter()
    store = FAISS.from_documents(chunks, emb, distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT)
    t2 = time.perf_counter()
    store.save_local(str(folder))
    t3 = time.perf_counter()
    out.update(ingest_s=t3 - t0, articles=len(docs), chunks=len(chunks), failed=0, disk_bytes=folder_bytes(folder))
    out["breakdown_s"] = {"split": t1 - t0, "embed": timers["embed"], "index": t2 - t1 - timers["embed"],
                          "save": t3 - t2}
    out["mean_chunk_tokens"] = sum(len(tokenizer.tokenize(c.page_content)) for c in chunks) / max(1, len(chunks))
    out["latency_dense"] = latency(lambda q: store.similarity_search(q, k=5), job["queries"])
    out["peak_rss_mb"] = peak_rss_mb()
    if job.get("gold"):
        ranked = [[d.metadata["id"] for d in store.similarity_search(q, k=10)] for q in job["questions"]]
        out["quality_dense"] = rank_metrics(ranked, job["gold"])
    return out


def prepare(corpus: str, limit: int | None, shared: Path) -> Job:
    """The articles (as dicts) of one corpus; the sample corpus also keeps its files for ours."""
    if corpus == "10kgnad":
        with (shared / "datasets" / "10kgnad" / "test.csv").open(encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh, delimiter=";", quotechar="'"))
        articles = [{"id": f"10kgnad-{i}", "text": text, "category": cat} for i, (cat, text) in enumerate(rows)]
        return {"articles": articles[:limit], "files": None}
    if corpus == "xquad":
        docs, questions, gold = load_xquad(shared)
        return {"articles": [{"id": f"xquad-{i}", "text": d} for i, d in enumerate(docs)], "files": None,
                "questions": questions, "gold": [f"xquad-{g}" for g in gold]}
    import rag
    from rag.ingest.articles import to_article
    from rag.ingest.readers import Record, read_file
    from rag.settings import Settings

    languages = Settings.from_env(environ={}, dotenv=None).languages
    articles = []
    for path in rag.sample_articles():
        for record in read_file(path, 20_000_000):
            article = to_article(record, languages)[0] if isinstance(record, Record) else None
            if article is not None:
                articles.append({"id": article.id, "title": article.title, "text": article.text})
    return {"articles": articles, "files": [str(p) for p in rag.sample_articles()]}


def child(args: argparse.Namespace) -> int:
    job = json.loads(Path(args.job).read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="rag-peer-") as tmp:
        result = (run_peer if args.side == "peer" else run_ours)(job, Path(tmp) / "index")
    print(json.dumps(result))
    return 0


def row(side: str, r: dict[str, Any]) -> str:
    hybrid = r.get("latency_hybrid", {}).get("p50_ms")
    q = r.get("quality_dense")
    quality = f"{q['recall@1']:>5.3f} {q['recall@5']:>5.3f} {q['mrr@10']:>6.3f}" if q else f"{'':>5} {'':>5} {'':>6}"
    return (f"{side:<13} {r['articles']:>5} {r['chunks']:>6} {r['mean_chunk_tokens']:>5.0f} {r['load_s']:>6.1f} "
            f"{r['ingest_s']:>7.1f} {r['articles'] / r['ingest_s']:>6.1f} {r['chunks'] / r['ingest_s']:>6.1f} "
            f"{r['peak_rss_mb']:>6.0f} {r['disk_bytes'] / 2**20:>6.1f} {r['latency_dense']['p50_ms']:>6.1f} "
            f"{r['latency_dense']['p95_ms']:>6.1f} {'-' if hybrid is None else f'{hybrid:.1f}':>6} {quality}")


def report(results: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, dict[str, float]]]:
    ratios: dict[str, dict[str, dict[str, float]]] = {}
    for corpus, sides in results.items():
        print(f"\n== {corpus} ==")
        print(f"{'side':<13} {'art.':>5} {'chunks':>6} {'tok/c':>5} {'load s':>6} {'ingest':>7} {'art/s':>6} "
              f"{'chk/s':>6} {'peakMB':>6} {'diskMB':>6} {'p50 ms':>6} {'p95 ms':>6} {'hyb50':>6} "
              f"{'R@1':>5} {'R@5':>5} {'MRR@10':>6}")
        for side, r in sides.items():
            print(row(side, r))
        for side, r in sides.items():
            parts = ", ".join(f"{k} {v:.2f}" for k, v in r["breakdown_s"].items())
            print(f"  {side} ingest breakdown (s): {parts}")
        peer = sides.get("peer")
        if not peer:
            continue
        for side, r in sides.items():
            if side == "peer":
                continue
            ratio = {
                "ingest_time": r["ingest_s"] / peer["ingest_s"],
                "articles_per_s": (r["articles"] / r["ingest_s"]) / (peer["articles"] / peer["ingest_s"]),
                "chunks_per_s": (r["chunks"] / r["ingest_s"]) / (peer["chunks"] / peer["ingest_s"]),
                "peak_rss": r["peak_rss_mb"] / peer["peak_rss_mb"],
                "query_p50_dense": r["latency_dense"]["p50_ms"] / peer["latency_dense"]["p50_ms"],
                "query_p50_hybrid": r["latency_hybrid"]["p50_ms"] / peer["latency_dense"]["p50_ms"]}
            if "quality_dense" in r and "quality_dense" in peer:
                ratio["recall@5"] = r["quality_dense"]["recall@5"] / peer["quality_dense"]["recall@5"]
            ratios.setdefault(side, {})[corpus] = ratio
    for side, by_corpus in ratios.items():
        keys = list(dict.fromkeys(k for r in by_corpus.values() for k in r))
        print(f"\nRatios {side} / peer (hybrid latency vs the peer's only mode):")
        print(f"{'':<18}" + "".join(f"{c:>10}" for c in by_corpus))
        for k in keys:
            print(f"{k:<18}" + "".join(f"{r[k]:>10.2f}" if k in r else f"{'-':>10}" for r in by_corpus.values()))
    return ratios


def verdict(results: dict[str, dict[str, dict[str, Any]]], ratios: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = []
    xq = results.get("xquad", {})
    for side in JUDGED:
        by_corpus = ratios.get(side, {})
        speed = {c: r["articles_per_s"] for c, r in by_corpus.items() if c != "xquad"} or \
            {c: r["articles_per_s"] for c, r in by_corpus.items()}
        if not speed or side not in xq or "peer" not in xq:
            lines.append(f"Goal for {side}: not judged (needs {side}, peer and the xquad corpus).")
            continue
        r_ours, r_peer = xq[side]["quality_dense"]["recall@5"], xq["peer"]["quality_dense"]["recall@5"]
        met = all(v >= GOAL_SPEEDUP for v in speed.values()) and r_ours >= r_peer
        figures = ", ".join(f"{c} {v:.2f}x" for c, v in speed.items())
        lines.append(f"Goal for {side}: ingest >= {GOAL_SPEEDUP:.0f}x the peer (articles/s) at equal or better "
                     f"recall@5 -> {'MET' if met else 'NOT MET'} (ingest speed-up: {figures}; recall@5 "
                     f"{r_ours:.3f} vs peer {r_peer:.3f})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, help="take only the first N 10kGNAD articles (default: all 1,028)")
    ap.add_argument("--corpora", default="10kgnad,sample,xquad")
    ap.add_argument("--sides", default=",".join(SIDES), help=f"comma-separated, of {', '.join(SIDES)}")
    ap.add_argument("--queries", type=int, default=200, help="questions timed per side (latency)")
    ap.add_argument("--shared", type=Path, default=SHARED, help="folder holding datasets/")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    ap.add_argument("--side", choices=list(SIDES), help=argparse.SUPPRESS)  # child mode
    ap.add_argument("--job", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.side:
        return child(args)

    from rag.embed.sentence_transformers import BUNDLED
    from rag.settings import Settings

    facts = machine()
    print(machine_line(facts))
    model_path = str(BUNDLED[E5](Settings.from_env(environ={}, dotenv=None, embed_model=E5)))
    print(f"Peer: LangChain FAISS + HuggingFaceEmbeddings on {model_path}; ours-default (e5+USE) is not like-for-like.")
    _, questions, _ = load_xquad(args.shared)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="rag-peer-jobs-") as tmp:
        for corpus in args.corpora.split(","):
            job = prepare(corpus, args.limit, args.shared) | {"queries": questions[:args.queries],
                                                               "model_path": model_path}
            results[corpus] = {}
            for side in args.sides.split(","):
                print(f"... {corpus}: {side}", file=sys.stderr, flush=True)
                path = Path(tmp) / f"{corpus}-{side}.json"
                path.write_text(json.dumps(job | {"model": SIDES[side], "backend": SIDE_BACKENDS.get(side)}),
                                encoding="utf-8")
                proc = subprocess.run([sys.executable, __file__, "--side", side, "--job", str(path)],
                                      cwd=REPO, stdout=subprocess.PIPE, text=True, check=True)
                results[corpus][side] = json.loads(proc.stdout.strip().splitlines()[-1])
    ratios = report(results)
    print("\n" + verdict(results, ratios))
    print("Breakdown: ours parse = reading files, clean = cleaning + language detection + hashing, chunk includes "
          "token counting, write = SQLite + BM25 + FAISS + fsync; peer index = FAISS build + docstore.")
    write_json(args.json, {"machine": facts, "model_path": model_path, "limit": args.limit, "results": results,
                           "ratios": ratios})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
