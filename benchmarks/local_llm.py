"""How fast the bundled local LLM answers, warm, on this machine.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/local_llm.py [--questions 30] [--budgets 300,0] [--peer]

Questions: the seed question over the sample index, then N/2 XQuAD-dev
(English questions, German paragraphs) and N/2 answerable MultiHop-RAG
questions, evenly spread, over their evaluation indexes (built once into
~/.cache/rag/eval, as `rag eval` does). One llama.cpp server is started and
warmed up first; every answer is then ``rag.answer(..., stream=True,
generator="local")``, k=5, timed from the call (retrieval, sentence scoring
and citation check included):

- first token: seconds until the first text piece;
- total: seconds until the checked Answer;
- prompt tokens (counted by the server's tokenizer on the messages sent) and
  answer tokens; answer tokens/s after the first token.

``--budgets``: RAG_CONTEXT_TOKENS values to compare (0: whole passages, as
before this benchmark). ``--peer``: LangChain's standard RAG prompt ("stuff"
the 5 passages into one message, rlm/rag-prompt) through langchain-openai's
ChatOpenAI on the same server and the same passages, in the same run; its
figures are given as a ratio. ``--threads 1,2`` repeats the run per thread
count (a new server each). Run it on a quiet machine: the load average is printed."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SHARED, machine, machine_line, write_json  # noqa: E402

SEED_QUESTION = "Which banks did Facebook contact?"
PEER_PROMPT = ("You are an assistant for question-answering tasks. Use the following pieces of retrieved context "
               "to answer the question. If you don't know the answer, just say that you don't know. Use three "
               "sentences maximum and keep the answer concise.\nQuestion: {question} \nContext: {context} \nAnswer:")


def questions(n: int, shared: Path) -> list[tuple[str, str, Any]]:
    """(dataset, question, gold answers) for the seed, XQuAD and MultiHop-RAG."""
    import rag
    from rag.evaluate.base import EvalOptions, spread
    from rag.evaluate.multihop import MultiHopRAG
    from rag.evaluate.xquad import XQuAD

    settings = rag.Settings.from_env(progress=False)
    out: list[tuple[str, str, Any]] = [("seed", SEED_QUESTION, ["JPMorgan", "Wells Fargo", "Citigroup", "Bancorp"])]
    xquad = XQuAD(shared / "datasets", settings, EvalOptions())
    multihop = MultiHopRAG(shared / "datasets", settings, EvalOptions())
    out += [("xquad", q.text, [q.answer_de, q.answer_en]) for q in spread(xquad.questions, n // 2)]
    answerable = [q for q in multihop.questions if q.answerable]
    out += [("multihop", q.text, [q.answer]) for q in spread(answerable, n - n // 2)]
    return out


def indexes(shared: Path, settings: Any) -> dict[str, Any]:
    import rag
    from rag.evaluate.base import EvalOptions
    from rag.evaluate.cache import default_cache_dir, open_eval_index
    from rag.evaluate.multihop import MultiHopRAG
    from rag.evaluate.xquad import XQuAD

    out: dict[str, Any] = {}
    sample = default_cache_dir() / "bench-sample"
    idx = rag.open_index(sample, settings)
    if idx.stats().articles == 0:
        idx.ingest(rag.sample_articles())
    out["seed"] = idx
    for name, adapter in (("xquad", XQuAD), ("multihop", MultiHopRAG)):
        a = adapter(shared / "datasets", settings, EvalOptions())
        out[name] = open_eval_index(a.name, a.articles(), settings, default_cache_dir(), memo={}).index
    return out


def count_tokens(base_url: str, text: str) -> int:
    req = urllib.request.Request(base_url.removesuffix("/v1") + "/extras/tokenize/count",
                                 data=json.dumps({"input": text}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return int(json.loads(resp.read())["count"])


def run_ours(idx: Any, question: str, base_url: str, settings: Any) -> dict[str, Any]:
    import rag
    from rag.generate import prompt

    sent: list[list[dict[str, str]]] = []
    original = prompt.build_messages

    def spy(request: Any) -> list[dict[str, str]]:
        messages = original(request)
        sent.append(messages)
        return messages

    import rag.generate.openai_chat as chat
    chat.build_messages = spy  # type: ignore[assignment]
    try:
        start = time.perf_counter()
        first = None
        final = None
        for event in rag.answer(question, idx, k=5, stream=True, generator="local", settings=settings):
            if isinstance(event, rag.Answer):
                final = event
            elif first is None and event.strip():
                first = time.perf_counter() - start
        total = time.perf_counter() - start
    finally:
        chat.build_messages = original  # type: ignore[assignment]
    assert final is not None
    prompt_tokens = count_tokens(base_url, "\n".join(m["content"] for m in sent[-1])) if sent else 0
    answer_tokens = count_tokens(base_url, final.text) if final.text else 0
    return {"first": first if first is not None else total, "total": total, "prompt_tokens": prompt_tokens,
            "answer_tokens": answer_tokens, "text": final.text, "refused": final.refused,
            "citations": len(final.citations), "unsupported": len(final.unsupported), "error": final.error}


def run_peer(idx: Any, question: str, base_url: str) -> dict[str, Any]:
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_openai import ChatOpenAI

    start = time.perf_counter()
    hits = idx.search(question, k=5)
    context = "\n\n".join(h.text for h in hits)
    llm = ChatOpenAI(base_url=base_url, api_key="local", model="local", temperature=0.1, max_tokens=320,
                     timeout=600, max_retries=0)
    chain = ChatPromptTemplate.from_messages([("human", PEER_PROMPT)]) | llm
    first, text = None, ""
    for chunk in chain.stream({"question": question, "context": context}):
        piece = chunk.content if isinstance(chunk.content, str) else ""
        if piece and first is None:
            first = time.perf_counter() - start
        text += piece
    total = time.perf_counter() - start
    prompt_tokens = count_tokens(base_url, PEER_PROMPT.format(question=question, context=context))
    return {"first": first if first is not None else total, "total": total, "prompt_tokens": prompt_tokens,
            "answer_tokens": count_tokens(base_url, text) if text else 0, "text": text}


def contains(text: str, gold: list[str]) -> bool:
    low = text.lower()
    return any(g and g.lower() in low for g in gold)


def summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    def p(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered))) - 1))]

    firsts = [r["first"] for r in rows]
    totals = [r["total"] for r in rows]
    rates = [r["answer_tokens"] / (r["total"] - r["first"]) for r in rows
             if r["answer_tokens"] > 1 and r["total"] - r["first"] > 0.05]
    return {"n": len(rows), "first_p50": statistics.median(firsts), "first_p90": p(firsts, 0.9),
            "total_p50": statistics.median(totals), "total_p90": p(totals, 0.9),
            "prompt_tokens_p50": statistics.median(r["prompt_tokens"] for r in rows),
            "answer_tokens_p50": statistics.median(r["answer_tokens"] for r in rows),
            "tokens_per_s_p50": statistics.median(rates) if rates else float("nan"),
            "contains_gold": statistics.fmean(float(r["contains"]) for r in rows),
            # the peer's prompt asks for no citations: it has none to count
            "cited": (statistics.fmean(float(r["citations"] > 0) for r in rows)
                      if all("citations" in r for r in rows) else float("nan"))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=30, help="XQuAD + MultiHop questions (plus the seed)")
    parser.add_argument("--budgets", default="300,0", help="RAG_CONTEXT_TOKENS values to compare")
    parser.add_argument("--threads", default="0", help="llama.cpp thread counts to compare (0: every core)")
    parser.add_argument("--peer", action="store_true", help="also run LangChain's standard RAG prompt")
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every answer")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import rag
    from rag.generate.local import runtime

    base = rag.Settings.from_env(progress=False)
    print(machine_line(machine()), flush=True)
    asked = questions(args.questions, args.shared)
    idx = indexes(args.shared, base)
    results: dict[str, Any] = {"machine": machine(), "questions": len(asked), "runs": {}}
    for threads in [int(t) for t in args.threads.split(",")]:
        settings = base.replace(local_threads=threads)
        rt = runtime(settings)
        start = time.perf_counter()
        base_url = rt.wait()
        print(f"\nthreads={threads or os.cpu_count()}: server up in {time.perf_counter() - start:.1f} s "
              f"({rt.status().model})", flush=True)
        run_ours(idx["seed"], SEED_QUESTION, base_url, settings)  # warm-up: page in the model, fill the cache
        for budget in [int(b) for b in args.budgets.split(",")]:
            rows = []
            s = settings.replace(context_tokens=budget)
            for dataset, question, gold in asked:
                for target in (idx[dataset],):
                    target.settings = s  # the index's settings decide the context budget
                row = run_ours(idx[dataset], question, base_url, s) | {"dataset": dataset, "question": question}
                row["contains"] = contains(row["text"], gold)
                rows.append(row)
                if args.verbose:
                    print(f"  [{dataset}] {question}\n    {row['first']:.1f}s/{row['total']:.1f}s "
                          f"{row['prompt_tokens']} tok: {' '.join(row['text'].split())[:300]}", flush=True)
            label = f"ours context_tokens={budget or 'whole passages'} threads={threads or os.cpu_count()}"
            results["runs"][label] = {"summary": summary(rows), "rows": rows}
            print_summary(label, summary(rows), rows[0])
        if args.peer:
            rows = []
            for dataset, question, gold in asked:
                row = run_peer(idx[dataset], question, base_url) | {"dataset": dataset, "question": question}
                row["contains"] = contains(row["text"], gold)
                rows.append(row)
            label = f"peer LangChain rag-prompt threads={threads or os.cpu_count()}"
            results["runs"][label] = {"summary": summary(rows), "rows": rows}
            print_summary(label, summary(rows), rows[0])
        rt.stop()
    ratios(results["runs"])
    results["machine_after"] = machine()
    print(f"\nload average at the end: {results['machine_after']['loadavg_1m']}")
    write_json(args.json, results)
    return 0


def print_summary(label: str, s: dict[str, float], seed: dict[str, Any]) -> None:
    print(f"\n{label} ({s['n']} questions)")
    print(f"  first token p50 {s['first_p50']:.2f} s (p90 {s['first_p90']:.2f}), complete answer p50 "
          f"{s['total_p50']:.2f} s (p90 {s['total_p90']:.2f})")
    print(f"  prompt tokens p50 {s['prompt_tokens_p50']:.0f}, answer tokens p50 {s['answer_tokens_p50']:.0f}, "
          f"{s['tokens_per_s_p50']:.1f} tokens/s; answer contains gold {s['contains_gold']:.2f}, "
          f"cited {s['cited']:.2f}")
    print(f"  seed: first {seed['first']:.2f} s, total {seed['total']:.2f} s, {seed['prompt_tokens']} prompt tokens: "
          f"{' '.join(seed['text'].split())[:200]}")


def ratios(runs: dict[str, Any]) -> None:
    peers = {k: v for k, v in runs.items() if k.startswith("peer")}
    for label, run in runs.items():
        if label.startswith("peer"):
            continue
        threads = label.rsplit("threads=", 1)[1]
        peer = peers.get(f"peer LangChain rag-prompt threads={threads}")
        if peer:
            o, p = run["summary"], peer["summary"]
            print(f"\n{label} / peer: first token p50 {o['first_p50'] / p['first_p50']:.2f}x, complete p50 "
                  f"{o['total_p50'] / p['total_p50']:.2f}x, prompt tokens "
                  f"{o['prompt_tokens_p50'] / p['prompt_tokens_p50']:.2f}x, "
                  f"contains gold {o['contains_gold']:.2f} vs {p['contains_gold']:.2f}")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
