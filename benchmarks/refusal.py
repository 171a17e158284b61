"""Where to put the relevance gate: best query-passage similarity of answerable vs unanswerable
questions, same-language and cross-lingual, for the default embedder.

Run from the repository root after `rag eval xquad` and `rag eval multihop-rag` have built their
cached indexes (prints figures; this is not a test):

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/refusal.py [--cache ~/.cache/rag/eval]

Same language (English): MultiHop-RAG, answerable questions vs its "null" questions, over the
whole corpus. Cross-lingual (English question, German passages): XQuAD, each question over the
whole corpus (answerable) and over the corpus without any paragraph of its Wikipedia article
(unanswerable: the nearest passage is about something else). For each threshold the share of
answerable questions refused and of unanswerable ones let through.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, machine, machine_line  # noqa: E402


def best(idx, question: str, filters: dict | None = None) -> float:  # type: ignore[no-untyped-def]
    return idx.retrieve(question, 5, filters, mode="dense").best_similarity


def cached(cache: Path, prefix: str) -> Path:
    found = sorted(p for p in cache.glob(f"{prefix}-*") if p.is_dir())
    if not found:
        raise SystemExit(f"no cached {prefix} index in {cache}: run `rag eval {prefix}` first")
    return found[-1]


def table(name: str, pos: np.ndarray, neg: np.ndarray) -> None:
    q = [5, 25, 50, 75, 95]
    print(f"\n{name}: answerable n={len(pos)}, unanswerable n={len(neg)}")
    print("  percentiles 5/25/50/75/95  answerable: " + " ".join(f"{v:.3f}" for v in np.percentile(pos, q)))
    print("                           unanswerable: " + " ".join(f"{v:.3f}" for v in np.percentile(neg, q)))
    print(f"  {'threshold':>9} {'refuses answerable':>19} {'lets through unanswerable':>26}")
    for t in np.arange(0.60, 0.771, 0.01):
        print(f"  {t:>9.2f} {np.mean(pos < t):>19.3f} {np.mean(neg >= t):>26.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=Path("~/.cache/rag/eval").expanduser())
    args = ap.parse_args()
    import rag
    from rag.settings import Settings

    print(machine_line(machine()))
    settings = Settings.from_env(environ={}, dotenv=None, progress=False)

    # same language: MultiHop-RAG
    idx = rag.open_index(cached(args.cache, "multihop-rag"), settings, create=False)
    queries = json.loads((SHARED / "datasets" / "multihop-rag-500" / "queries.json").read_text(encoding="utf-8"))
    pos, neg = [], []
    for item in queries["queries"]:
        (neg if item["question_type"] == "null_query" else pos).append(best(idx, item["question"]))
    table("Same language (MultiHop-RAG, English)", np.array(pos), np.array(neg))
    idx.close()

    # cross-lingual: XQuAD
    idx = rag.open_index(cached(args.cache, "xquad"), settings, create=False)
    ids = [a.id for a in idx.articles()]
    en = json.loads((SHARED / "datasets" / "xquad-dev" / "xquad.en.json").read_text(encoding="utf-8"))
    pos, neg = [], []
    for article in en["data"]:
        others = [i for i in ids if not i.startswith(article["title"] + "-")]
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                pos.append(best(idx, qa["question"]))
                neg.append(best(idx, qa["question"], {"article_ids": others}))
    table("Cross-lingual (XQuAD, English questions, German paragraphs)", np.array(pos), np.array(neg))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
