"""The bundled multilingual-e5-small on torch (sentence-transformers) and on ONNX Runtime
(fp32, int8 per-channel; 1 and 2 intra-op threads): quality, speed, load and cold start.

Run from the repository root (prints figures; this is not a test):

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/onnx_embed.py [--shared ../shared] [--threads 1,2] \
        [--workers 2] [--json out.json]

Each configuration runs in its own process (so one cannot warm the next, and the ONNX ones
show whether torch was imported). Per configuration:

* XQuAD-dev cross-lingual retrieval: 632 English questions (query prompt) over the 120
  German paragraphs (passage prompt), exact inner product; recall@1/@5 and MRR@10 with
  ``common.rank_metrics``, as in benchmarks/embedders.py.
* passages/s: one ``embed_documents`` call on 1000 German news passages (120-word windows
  of the 10kGNAD test set, about 200 tokens each), after a warm-up.
* query p50: the median ``embed_query`` time over the 632 questions.
* load: ``load_embedder`` in a process that has imported rag (the ONNX export exists by then:
  a preparation process makes it first and its time is printed separately).
* cold start: wall time of a fresh ``python -c`` that imports rag, loads the model and embeds
  one query (median of --cold-runs; the page cache is warm after the first run).
* worker processes (--workers N, ORT int8 and fp32): N processes with 1 intra-op thread each,
  every one embedding its share of the same passages, all started at one agreed instant after
  loading; passages/s = all passages / (last finish - start). Compare with one process of N
  threads above.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (REPO, SHARED, load_xquad, machine, machine_line, peak_rss_mb, percentiles_ms,  # noqa: E402
                    rank_metrics, write_json)

E5 = "bundled:multilingual-e5-small"
HEAVY = ("torch", "transformers", "sentence_transformers")

COLD = """if True:
    import json, sys
    import rag
    from rag.embed import load_embedder
    from rag.settings import Settings
    e = load_embedder(Settings.from_env(environ={{}}, dotenv=None, progress=False, embed_model={model!r},
                                        embed_backend={backend!r}, onnx_precision={precision!r},
                                        onnx_threads={threads!r}))
    e.embed_query("Wer streikt bei der Bahn?")
    print(json.dumps([m for m in {heavy!r} if m in sys.modules]))
"""


def news_passages(shared: Path, n: int, words: int = 120) -> list[str]:
    """``n`` passages of ``words`` words from the 10kGNAD test articles (label;'text' lines)."""
    out: list[str] = []
    with open(shared / "datasets" / "10kgnad" / "test.csv", encoding="utf-8", newline="") as f:
        for row in csv.reader(f, delimiter=";", quotechar="'"):
            tokens = row[-1].split()
            out += [" ".join(tokens[i:i + words]) for i in range(0, len(tokens) - words // 2, words)]
            if len(out) >= n:
                return out[:n]
    raise SystemExit(f"10kGNAD gave only {len(out)} passages")


def settings_for(config: dict[str, Any]):  # -> rag.settings.Settings
    from rag.settings import Settings

    return Settings.from_env(environ={}, dotenv=None, progress=False, embed_model=E5,
                             embed_backend=config["backend"], onnx_precision=config["precision"],
                             onnx_threads=config["threads"])


def child(config: dict[str, Any], shared: Path, n_passages: int) -> dict[str, Any]:
    """One configuration, measured in this (fresh) process."""
    import numpy as np

    sys.path.insert(0, str(REPO))
    import rag  # noqa: F401  (imported before timing the load, as a program would)
    from rag.embed import load_embedder

    settings = settings_for(config)
    t0 = time.perf_counter()
    emb = load_embedder(settings)
    load_s = time.perf_counter() - t0

    docs, questions, gold = load_xquad(shared)
    passages = news_passages(shared, n_passages)
    emb.embed_documents(passages[:32])  # warm-up, excluded from timing
    emb.embed_query(questions[0])

    doc_vecs = emb.embed_documents(docs)
    times, q_vecs = [], []
    for q in questions:
        t0 = time.perf_counter()
        q_vecs.append(emb.embed_query(q))
        times.append(time.perf_counter() - t0)
    top = np.argsort(-(np.stack(q_vecs) @ doc_vecs.T), axis=1)[:, :10]
    quality = rank_metrics([[str(i) for i in row] for row in top], [str(g) for g in gold])

    t0 = time.perf_counter()
    emb.embed_documents(passages)
    passages_s = time.perf_counter() - t0
    threads = config["threads"]
    if config["backend"] == "sentence-transformers":
        import torch

        threads = torch.get_num_threads()
    return {**config, "threads_used": threads, **quality, "load_s": load_s,
            "passages_per_s": len(passages) / passages_s, "query_p50_ms": percentiles_ms(times)["p50_ms"],
            "passage_tokens_mean": float(np.mean(emb.count_tokens(passages))), "peak_rss_mb": peak_rss_mb(),
            "heavy_imports": [m for m in HEAVY if m in sys.modules], "model_id": emb.model_id}


def worker(config: dict[str, Any], shared: Path, n_passages: int, part: int, parts: int,
           start_at: float) -> dict[str, Any]:
    """One of ``parts`` processes: load, warm up, wait for ``start_at`` (wall clock), embed a share."""
    sys.path.insert(0, str(REPO))
    from rag.embed import load_embedder

    emb = load_embedder(settings_for(config))
    passages = news_passages(shared, n_passages)
    emb.embed_documents(passages[:16])
    if time.time() > start_at:
        raise SystemExit("worker loaded after the agreed start; raise the start delay")
    time.sleep(start_at - time.time())
    emb.embed_documents(passages[part::parts])
    return {"finished_at": time.time(), "passages": len(passages[part::parts])}


def workers(config: dict[str, Any], env: dict[str, str], shared: Path, n_passages: int, parts: int) -> float:
    """passages/s of ``parts`` single-threaded processes embedding one set together."""
    start_at = time.time() + 25.0
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(config), "--part", str(i),
                               "--parts", str(parts), "--start-at", str(start_at), "--shared", str(shared),
                               "--passages", str(n_passages)], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
             for i in range(parts)]
    results = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"worker of {config} failed")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return sum(r["passages"] for r in results) / (max(r["finished_at"] for r in results) - start_at)


def run_child(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, *args], cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cold_start(config: dict[str, Any], env: dict[str, str], runs: int) -> tuple[float, list[str]]:
    code = COLD.format(model=E5, backend=config["backend"], precision=config["precision"],
                       threads=config["threads"], heavy=HEAVY)
    walls, heavy = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
        walls.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise SystemExit(f"cold start of {config} failed:\n{proc.stderr[-3000:]}")
        heavy = json.loads(proc.stdout.strip().splitlines()[-1])
    return statistics.median(walls), heavy


def prepare(env: dict[str, str]) -> dict[str, Any]:
    """Make the fp32 and int8 exports (if missing) in a process of their own, timed."""
    code = """if True:
        import json, time
        from rag.embed.onnx_runtime import OnnxEmbedder
        from rag.settings import Settings
        out = {}
        for precision in ("fp32", "int8"):
            t0 = time.perf_counter()
            e = OnnxEmbedder(Settings.from_env(environ={}, dotenv=None, progress=False, embed_backend="onnx",
                                               embed_model=%r, onnx_precision=precision))
            out[precision] = {"seconds": time.perf_counter() - t0, "file": str(e.model_file),
                              "mb": e.model_file.stat().st_size / 2**20}
        print(json.dumps(out))
    """ % E5
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"export failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=Path(os.environ.get("RAG_SHARED", SHARED)),
                    help="folder holding datasets/ (xquad-dev, 10kgnad)")
    ap.add_argument("--threads", default="1,2", help="ORT intra-op thread counts to compare")
    ap.add_argument("--passages", type=int, default=1000)
    ap.add_argument("--cold-runs", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    ap.add_argument("--workers", type=int, default=2, help="processes of 1 thread each (0: skip)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--part", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--parts", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker), args.shared, args.passages, args.part, args.parts,
                                args.start_at)))
        return 0
    if args.child:
        print(json.dumps(child(json.loads(args.child), args.shared, args.passages)))
        return 0

    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    facts = machine()
    import onnxruntime

    facts["onnxruntime"] = onnxruntime.__version__
    print(machine_line(facts))
    exports = prepare(env)
    for precision, e in exports.items():
        print(f"ONNX {precision}: {e['file']} ({e['mb']:.0f} MB); "
              f"export (if missing) + first load {e['seconds']:.1f} s")

    configs = [{"name": "torch fp32 (sentence-transformers)", "backend": "sentence-transformers",
                "precision": "fp32", "threads": 0}]
    configs += [{"name": f"ORT {p}{' per-channel' if p == 'int8' else ''}, {t} thread{'s' * (t > 1)}",
                 "backend": "onnx", "precision": p, "threads": t}
                for p in ("fp32", "int8") for t in (int(x) for x in args.threads.split(","))]
    rows = []
    for config in configs:
        print(f"... {config['name']}", file=sys.stderr, flush=True)
        row = run_child(["--child", json.dumps(config), "--shared", str(args.shared),
                         "--passages", str(args.passages)], env)
        row["cold_start_s"], row["cold_heavy_imports"] = cold_start(config, env, args.cold_runs)
        rows.append(row)

    w = max(len(r["name"]) for r in rows)
    print(f"\nbundled:multilingual-e5-small; XQuAD-dev en->de (632 questions, 120 paragraphs); "
          f"{args.passages} passages of ~{rows[0]['passage_tokens_mean']:.0f} tokens")
    print(f"{'configuration':<{w}}  {'R@1':>5}  {'R@5':>5}  {'MRR@10':>6}  {'pass/s':>6}  {'q p50 ms':>8}  "
          f"{'load s':>6}  {'cold s':>6}  {'RSS MB':>6}  torch imported")
    for r in rows:
        print(f"{r['name']:<{w}}  {r['recall@1']:>5.3f}  {r['recall@5']:>5.3f}  {r['mrr@10']:>6.3f}  "
              f"{r['passages_per_s']:>6.1f}  {r['query_p50_ms']:>8.1f}  {r['load_s']:>6.2f}  "
              f"{r['cold_start_s']:>6.2f}  {r['peak_rss_mb']:>6.0f}  {'yes' if r['heavy_imports'] else 'no'}")
    print(f"torch threads: {rows[0]['threads_used']}; cold = fresh process: import rag + load + one query "
          f"(median of {args.cold_runs}); RSS = peak of the measuring process.")
    pools = {}
    if args.workers > 1:
        for precision in ("fp32", "int8"):
            config = {"name": f"ORT {precision}", "backend": "onnx", "precision": precision, "threads": 1}
            print(f"... {args.workers} workers, {config['name']}", file=sys.stderr, flush=True)
            pools[precision] = workers(config, env, args.shared, args.passages, args.workers)
            print(f"ORT {precision}, {args.workers} processes x 1 thread: {pools[precision]:.1f} passages/s")
    write_json(args.json, {"machine": facts, "exports": exports, "rows": rows, "worker_processes": pools})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
