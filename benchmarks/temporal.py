"""Story timelines and "what changed" on MultiHop-RAG's temporal questions, before and after.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/temporal.py [--answers 30] [--generator local] [--shared ../shared]

The temporal questions of the 500-query sample (question_type temporal_query) over the
evaluation corpus `rag eval` builds (one document per evidence url, its gold facts as text;
built once into ~/.cache/rag/eval). Each question is retrieved as ``answer()`` retrieves it
(k=10: per-article cap, neighbours merged, dates in the question applied):

- before: ``timeline=False``, the behaviour before timelines (a date named in the question
  becomes a filter to that day or month);
- after: the default, timeline and change questions get dated passages in date order
  (a change question comparing named dates is not filtered to one of them).

Figures: Hits@10 and MRR@10 as the evaluator scores them (a passage is a hit when it holds a
gold fact), and evidence recall@10 (the share of a question's gold facts found in the 10),
since a temporal question needs every dated report it compares. The raw ``index.search``
(what `rag eval` scores) is printed for reference. Then answer accuracy (the gold answer in
the answer, as MultiHop-RAG's QA script scores it) on ``--answers`` evenly spread questions,
before and after alternately, with the bundled local LLM (``--generator local``) or the
extractive generator. Last, hand-written timeline questions over the bundled sample."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SHARED, machine, machine_line, write_json  # noqa: E402

K = 10
SAMPLE_QUESTIONS = (
    "How did the Sam Bankman-Fried trial develop?",
    "What happened with the Google antitrust case over time?",
    "What changed in the FTX trial since October 15, 2023?",
    "Wie hat sich der Facebook-Skandal entwickelt?",
)


def evidence_recall(texts: list[str], facts: tuple[str, ...]) -> float:
    from rag.evaluate.metrics import squash

    gold = [squash(f) for f in facts]
    joined = [squash(t) for t in texts[:K]]
    return sum(any(g in t for t in joined) for g in gold) / len(gold)


def retrieval(idx: Any, questions: list[Any]) -> dict[str, Any]:
    from rag.evaluate.metrics import mean
    from rag.evaluate.multihop import score_retrieval

    runs: dict[str, dict[str, list[float]]] = {name: {"hits@10": [], "mrr@10": [], "recall@10": []}
                                               for name in ("raw search", "before", "after")}
    counts = {"story": 0, "timeline": 0, "change": 0, "filtered before": 0, "filtered after": 0}
    for q in questions:
        for name in runs:
            if name == "raw search":
                hits = idx.search(q.text, k=K)
            else:
                got = idx.retrieve(q.text, k=K, timeline=name == "after")
                hits = list(got.hits)
                if got.time_intent and (got.time_intent.since or got.time_intent.until):
                    counts[f"filtered {name}"] += 1
                if got.timeline:
                    counts["story"] += 1
                    counts[got.timeline.kind] += 1
            texts = [h.text for h in hits]
            scores = score_retrieval(texts, q.facts, K)
            runs[name]["hits@10"].append(scores["hits@10"])
            runs[name]["mrr@10"].append(scores["mrr@10"])
            runs[name]["recall@10"].append(evidence_recall(texts, q.facts))
    return {"figures": {name: {m: mean(v) for m, v in run.items()} for name, run in runs.items()},
            "counts": counts}


def answers(idx: Any, questions: list[Any], generator: str, verbose: bool) -> dict[str, Any]:
    import rag
    from rag.evaluate.multihop import judge

    rows: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    for i, q in enumerate(questions):
        # alternate which runs first, so a slower moment of the shared machine hits both alike
        for name in (("before", "after") if i % 2 == 0 else ("after", "before")):
            start = time.perf_counter()
            a = rag.answer(q.text, idx, k=5, generator=generator, timeline=name == "after")
            refused, correct = judge(a, q)
            seconds = time.perf_counter() - start
            rows[name].append({"id": q.id, "correct": correct, "refused": refused, "seconds": seconds,
                               "cited": bool(a.citations), "mode": a.mode, "text": a.text, "gold": q.answer})
            if verbose:
                print(f"  [{name} {a.mode or '-'}] {q.text[:90]}\n    gold {q.answer!r}: "
                      f"{' '.join(a.text.split())[:240]} -> {'ok' if correct else 'wrong'}", flush=True)
    out: dict[str, Any] = {}
    for name, rs in rows.items():
        n = max(1, len(rs))
        out[name] = {"n": len(rs), "accuracy": sum(r["correct"] for r in rs) / n,
                     "refused": sum(r["refused"] for r in rs) / n, "cited": sum(r["cited"] for r in rs) / n,
                     "seconds_total": sum(r["seconds"] for r in rs), "rows": rs}
    return out


def sample_timelines(settings: Any, generator: str) -> list[dict[str, Any]]:
    import rag
    from rag.evaluate.cache import default_cache_dir

    folder = default_cache_dir() / "bench-sample"
    idx = rag.open_index(folder, settings)
    if idx.stats().articles == 0:
        idx.ingest(rag.sample_articles())
    out = []
    for question in SAMPLE_QUESTIONS:
        a = rag.answer(question, idx, k=6, generator=generator)
        out.append({"question": question, "mode": a.mode, "generator": a.generator, "text": a.text,
                    "notes": list(a.notes), "dates": [(h.published_at or "undated")[:10] for h in a.hits]})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=int, default=30, help="questions answered before and after (0: none)")
    parser.add_argument("--generator", default="local", help="local (the bundled LLM) or extractive")
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("RAG_SHARED", SHARED)))
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every answer")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import rag
    from rag.evaluate.base import EvalOptions, spread
    from rag.evaluate.cache import default_cache_dir, open_eval_index
    from rag.evaluate.multihop import MultiHopRAG

    settings = rag.Settings.from_env(progress=False)
    print(machine_line(machine()), flush=True)
    adapter = MultiHopRAG(args.shared / "datasets", settings, EvalOptions())
    temporal = [q for q in adapter.questions if q.type == "temporal_query" and q.answerable]
    idx = open_eval_index(adapter.name, adapter.articles(), settings, default_cache_dir(), memo={}).index
    results: dict[str, Any] = {"machine": machine(), "questions": len(temporal)}

    start = time.perf_counter()
    results["retrieval"] = got = retrieval(idx, temporal)
    print(f"\nMultiHop-RAG temporal questions: {len(temporal)} ({time.perf_counter() - start:.0f} s); "
          f"intents after: {got['counts']}")
    print("| retrieval (k=10) | Hits@10 | MRR@10 | evidence recall@10 |\n|---|---|---|---|")
    for name, f in got["figures"].items():
        print(f"| {name} | {f['hits@10']:.3f} | {f['mrr@10']:.3f} | {f['recall@10']:.3f} |")

    if args.answers:
        if args.generator == "local":
            from rag.generate.local import runtime

            runtime(settings).wait()
        asked = spread(temporal, args.answers)
        start = time.perf_counter()
        results["answers"] = res = answers(idx, asked, args.generator, args.verbose)
        print(f"\nanswers by {args.generator}, {len(asked)} questions ({time.perf_counter() - start:.0f} s)")
        print("| answers | accuracy | refused | cited | seconds per answer |\n|---|---|---|---|---|")
        for name in ("before", "after"):
            r = res[name]
            print(f"| {name} | {r['accuracy']:.3f} | {r['refused']:.3f} | {r['cited']:.3f} | "
                  f"{r['seconds_total'] / max(1, r['n']):.1f} |")

    results["sample"] = sample_timelines(settings, args.generator)
    for row in results["sample"]:
        print(f"\nQ: {row['question']} [{row['mode'] or 'plain'}; {row['generator']}; passages {row['dates']}]")
        print(row["text"])
        for note in row["notes"]:
            print(f"  note: {note}")
    if args.generator == "local":
        from rag.generate.local import runtime

        runtime(settings).stop()
    results["machine_after"] = machine()
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
