"""Helpers shared by the benchmark scripts (not a benchmark itself).

Nothing here imports ``rag`` or torch at import time, so a child process that
measures a competitor (benchmarks/peer.py --side peer) does not pay for them."""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def peak_rss_mb() -> float:
    """This process's resident-memory high-water mark."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def rss_mb() -> float:
    """Current resident memory (psutil)."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def machine() -> dict[str, Any]:
    """The machine line: other work on the box skews speed figures, so the load average is part of it."""
    import torch

    return {"date": datetime.datetime.now().isoformat(timespec="seconds"), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "loadavg_1m": round(os.getloadavg()[0], 2)}


def machine_line(facts: dict[str, Any]) -> str:
    return "Machine: " + ", ".join(f"{k}={v}" for k, v in facts.items())


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    """p50/p95/mean in milliseconds (p95 by the nearest-rank method)."""
    if not seconds:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "mean_ms": float("nan"), "n": 0}
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, max(0, int(round(0.95 * len(ordered))) - 1))]
    return {"p50_ms": 1000 * statistics.median(ordered), "p95_ms": 1000 * p95,
            "mean_ms": 1000 * statistics.fmean(ordered), "n": len(ordered)}


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def load_xquad(shared: Path = SHARED) -> tuple[list[str], list[str], list[int]]:
    """German XQuAD-dev paragraphs, English questions, each question's gold paragraph index
    (as in benchmarks/embedders.py)."""
    folder = shared / "datasets" / "xquad-dev"
    de = json.loads((folder / "xquad.de.json").read_text(encoding="utf-8"))
    en = json.loads((folder / "xquad.en.json").read_text(encoding="utf-8"))
    docs: list[str] = []
    gold_of: dict[str, int] = {}
    for article in de["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                gold_of[qa["id"]] = len(docs)
            docs.append(para["context"])
    questions: list[str] = []
    gold: list[int] = []
    for article in en["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                questions.append(qa["question"])
                gold.append(gold_of[qa["id"]])  # KeyError = the two files do not match
    return docs, questions, gold


def rank_metrics(ranked_ids: list[list[str]], gold_ids: list[str]) -> dict[str, float]:
    """recall@1, recall@5 and MRR@10 of the gold id in each de-duplicated ranking."""
    r1 = r5 = mrr = 0.0
    for ranking, gold in zip(ranked_ids, gold_ids):
        distinct = list(dict.fromkeys(ranking))[:10]
        if gold in distinct:
            rank = distinct.index(gold) + 1
            r1 += rank == 1
            r5 += rank <= 5
            mrr += 1.0 / rank
    n = max(1, len(gold_ids))
    return {"recall@1": r1 / n, "recall@5": r5 / n, "mrr@10": mrr / n}


def write_json(path: Path | None, data: dict[str, Any]) -> None:
    if path is not None:
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {path}")
