"""Which sentence of the retrieved passages answers the question? Compares ways
of scoring sentences (rag/evidence.py) by the rank of the gold sentence.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/sentence_scoring.py [--questions 150]

Gold: XQuAD-dev, the sentence holding the German answer span; MultiHop-RAG, a
sentence that is one of the gold facts; the seed article, hand-picked answer
sentences for 11 questions. Top-5 passages per question (hybrid retrieval on
the evaluation indexes `rag eval` builds); questions whose gold sentence was
not retrieved are left out. Variants: the sentence's own similarity, plus its
paragraph's (embedded, or the mean of its sentences' vectors), plus its
passage's (from retrieval)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SHARED, machine, machine_line  # noqa: E402

SEED = [("Which banks did Facebook contact?", "JPMorgan"),
        ("What did Google and Amazon ask banks for?", "Google Assistent"),
        ("How much market value did Facebook lose?", "120 Milliarden"),
        ("Who is the Facebook spokeswoman?", "Elisabeth Diana"),
        ("What feature is Facebook planning for users?", "Kontostände zeigen"),
        ("Why are banks hesitant to work with Facebook?", "Kontrolle an Dritte"),
        ("What happened to Facebook's user numbers in Europe?", "Nutzerzahl"),
        ("What new privacy features did Facebook introduce?", "clear history"),
        ("Welche Banken hat Facebook kontaktiert?", "JPMorgan"),
        ("Was wollte Facebook von den Banken?", "Finanzinformationen"),
        ("Which newspaper reported on Facebook's request to banks?", "Wall Street Journal")]


def variants(ev: Any, question: str, hits: Any, embedder: Any) -> dict[str, np.ndarray]:
    from rag.evidence import answer_type_bonus

    v, qv = ev.vectors, ev.query(question)
    para_of = [s.paragraph for s in ev.sentences]
    embedded = embedder.embed_documents(ev.paragraphs) if ev.paragraphs else v[:0]
    mean = ev._paragraph_vectors
    passage = np.array([hits[s.n - 1].similarity or 0.0 for s in ev.sentences])
    bonus = np.array([answer_type_bonus(question, s.text) for s in ev.sentences])
    return {"sentence only": v @ qv + bonus,
            "+ embedded paragraph": v @ qv + (embedded @ qv)[para_of] + bonus,
            "+ mean paragraph (used)": v @ qv + (mean @ qv)[para_of] + bonus,
            "+ passage": v @ qv + passage + bonus,
            "+ 0.5 mean paragraph + 0.5 passage": v @ qv + 0.5 * passage + 0.5 * (mean @ qv)[para_of] + bonus}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=150)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(REPO))
    import rag
    from rag.evaluate.base import EvalOptions, spread
    from rag.evaluate.cache import default_cache_dir, open_eval_index
    from rag.evaluate.multihop import MultiHopRAG
    from rag.evaluate.xquad import XQuAD
    from rag.evidence import Evidence

    print(machine_line(machine()))
    settings = rag.Settings.from_env(progress=False)
    sets: list[tuple[str, Any, list[tuple[str, Any]]]] = []
    for adapter in (XQuAD, MultiHopRAG):
        a = adapter(SHARED / "datasets", settings, EvalOptions())
        idx = open_eval_index(a.name, a.articles(), settings, default_cache_dir(), memo={}).index
        qs = spread([q for q in a.questions if getattr(q, "answerable", True)], args.questions)
        gold = [(q.text, (q.answer_de,) if adapter is XQuAD else q.facts) for q in qs]
        sets.append((a.name, idx, gold))
    sample = default_cache_dir() / "bench-sample"
    idx = rag.open_index(sample, settings)
    if idx.stats().articles == 0:
        idx.ingest(rag.sample_articles())
    sets.append(("seed", idx, [(q, (g,)) for q, g in SEED]))
    for name, idx, gold in sets:
        ranks: dict[str, list[int]] = {}
        for question, answers in gold:
            hits = idx.retrieve(question, 5, None).hits
            ev = Evidence(hits, idx.embedder)

            def is_gold(text: str) -> bool:
                return any(g and (g in text or (name == "multihop-rag" and text.strip() in g)) for g in answers)

            if not any(is_gold(s.text) for s in ev.sentences):
                continue
            for label, scores in variants(ev, question, hits, idx.embedder).items():
                order = [ev.sentences[i] for i in np.argsort(-scores) if ev.sentences[i].words >= 4]
                ranks.setdefault(label, []).append(next((i + 1 for i, s in enumerate(order) if is_gold(s.text)), 99))
        for label, values in ranks.items():
            r = np.array(values)
            print(f"{name:13} {label:44} n={len(r):3}  top1 {np.mean(r == 1):.3f}  top3 {np.mean(r <= 3):.3f}  "
                  f"MRR {np.mean(1 / r):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
