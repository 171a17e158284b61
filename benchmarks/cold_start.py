"""`rag ask` cold start: wall time of a fresh `rag ask` process, from exec to the printed answer.

Run from the repository root (prints figures; this is not a test):

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/cold_start.py [--runs 5] [--index DIR] [--json out.json]

The index is the bundled sample corpus (built into a temporary folder unless --index is given;
the build is not timed). Each run is a new process: `rag ask --json --generator extractive
QUESTION`, so the time holds interpreter start, imports, loading both embedding models, opening
the index, BM25, retrieval and the extractive answer. The first run also pays a cold OS page
cache for the model files; the others are warm. Also timed: `python -c "import rag"` (the import
alone) and the in-process phases of one answer (models, open, first answer, second answer).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine, machine_line, write_json  # noqa: E402

QUESTION = "Which banks did Facebook contact?"
GOAL_S = 4.0
BANKS = ("JPMorgan", "Wells Fargo", "Citigroup", "Bancorp")


def wall(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return elapsed, proc.stdout


def phases(index: Path) -> dict[str, float]:
    """In-process split of one cold answer (run in a child so nothing is preloaded)."""
    code = f"""
import json, time
t0 = time.perf_counter()
import rag
t1 = time.perf_counter()
settings = rag.Settings.from_env(index_dir={str(index)!r}, progress=False)
idx = rag.open_index(settings.index_dir, settings, create=False)
t2 = time.perf_counter()
idx.embedder.embed_query("warm-up")
t3 = time.perf_counter()
rag.answer({QUESTION!r}, idx, generator="extractive")
t4 = time.perf_counter()
rag.answer("Was wollte Facebook von den Banken?", idx, generator="extractive")
t5 = time.perf_counter()
print(json.dumps({{"import_rag": t1 - t0, "open_index": t2 - t1, "load_models": t3 - t2,
                  "first_answer": t4 - t3, "second_answer": t5 - t4}}))
"""
    _, out = wall([sys.executable, "-c", code], os.environ.copy())
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="fresh `rag ask` processes to time")
    ap.add_argument("--index", type=Path, help="an existing index (default: the sample corpus in a temp folder)")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    facts = machine()
    print(machine_line(facts))
    rag_bin = str(Path(sys.executable).with_name("rag"))
    env = os.environ.copy() | {"HF_HUB_OFFLINE": "1"}
    env.pop("OPENAI_BASE_URL", None), env.pop("OPENAI_API_KEY", None)
    with tempfile.TemporaryDirectory(prefix="rag-cold-") as tmp:
        index = args.index or Path(tmp) / "index"
        if args.index is None:
            wall([rag_bin, "ingest", "--sample", "-q", "--index", str(index)], env)
        env["RAG_INDEX"] = str(index)
        import_s = [wall([sys.executable, "-c", "import rag"], env)[0] for _ in range(3)]
        runs: list[float] = []
        for _ in range(args.runs):
            elapsed, out = wall([rag_bin, "ask", "--json", "--generator", "extractive", QUESTION], env)
            runs.append(elapsed)
            answer = json.loads(out)["answer"]
            if not all(b in answer for b in BANKS):  # a fast wrong answer is not a cold start figure
                raise SystemExit(f"unexpected answer: {answer[:300]}")
        split = phases(index)
    warm = runs[1:] or runs
    print(f"\n`rag ask --generator extractive` cold start over {args.runs} fresh processes "
          f"(sample index, question {QUESTION!r}):")
    print(f"  first run (cold page cache possible): {runs[0]:.2f} s")
    print(f"  later runs: median {statistics.median(warm):.2f} s, min {min(warm):.2f} s, max {max(warm):.2f} s")
    print(f"  `import rag` alone: median {statistics.median(import_s):.2f} s")
    print("  in-process phases (s): " + ", ".join(f"{k} {v:.2f}" for k, v in split.items()))
    verdict = "MET" if statistics.median(warm) <= GOAL_S else "NOT MET"
    print(f"Goal: cold start <= {GOAL_S:.0f} s -> {verdict} (median {statistics.median(warm):.2f} s)")
    write_json(args.json, {"machine": facts, "runs_s": runs, "import_rag_s": import_s, "phases_s": split})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
