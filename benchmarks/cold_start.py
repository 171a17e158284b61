"""`rag ask` cold start: wall time of a fresh `rag ask` process, from exec to the printed answer.

Run from the repository root (prints figures; this is not a test):

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/cold_start.py [--runs 5] [--index DIR] [--no-torch-row] \
        [--json out.json]

The index is the bundled sample corpus (built into a temporary folder unless --index is given;
the build is not timed). Each run is a new process: `rag ask --json --generator extractive
QUESTION`, so the time holds interpreter start, imports, loading both embedding models, opening
the index, BM25, retrieval and the extractive answer. The first run also pays a cold OS page
cache for the model files; the others are warm. Also timed: `python -c "import rag"` (the import
alone) and the in-process phases of one answer (models, open, first answer, second answer).
Peak RSS is each `rag ask` process's own maximum resident set (wait4's ru_maxrss).

Two configurations in the same run: the defaults (e5 on ONNX Runtime int8 + USE) and, as the
"before" row, RAG_EMBED_BACKEND=sentence-transformers (e5 on torch, as before issue #14), each
with the sample index built by that configuration (unless --no-torch-row).
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
GOAL_S = 3.0
GOAL_RSS = 0.60  # of the torch configuration's peak RSS
CONFIGS = {"default (ORT int8 + USE)": {}, "before: e5 on torch (sentence-transformers)":
           {"RAG_EMBED_BACKEND": "sentence-transformers", "RAG_ONNX_PRECISION": "fp32"}}
BANKS = ("JPMorgan", "Wells Fargo", "Citigroup", "Bancorp")


def wall(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    elapsed, out, _ = run_measured(cmd, env)
    return elapsed, out


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[float, str, float]:
    """Wall seconds, stdout and peak RSS (MB) of one process, reaped with os.wait4 to read
    its own ru_maxrss."""
    with tempfile.TemporaryFile() as err:  # a file, so a chatty stderr cannot block the pipe read
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err)
        out = proc.stdout.read() if proc.stdout else b""
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.read().decode()[-2000:]}")
    return elapsed, out.decode(), usage.ru_maxrss / 1024


def phases(index: Path, env: dict[str, str]) -> dict[str, float]:
    """In-process split of one cold answer (run in a child so nothing is preloaded)."""
    code = f"""
import json, time
t0 = time.perf_counter()
import rag
t1 = time.perf_counter()
settings = rag.Settings.from_env(index_dir={str(index)!r}, progress=False)  # RAG_EMBED_BACKEND etc. from env
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
    _, out = wall([sys.executable, "-c", code], env)
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="fresh `rag ask` processes to time")
    ap.add_argument("--index", type=Path, help="an existing index (default: the sample corpus in a temp folder)")
    ap.add_argument("--no-torch-row", action="store_true", help="skip the e5-on-torch configuration")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    facts = machine()
    print(machine_line(facts))
    rag_bin = str(Path(sys.executable).with_name("rag"))
    base_env = os.environ.copy() | {"HF_HUB_OFFLINE": "1"}
    base_env.pop("OPENAI_BASE_URL", None), base_env.pop("OPENAI_API_KEY", None)
    for name in ("RAG_EMBED_BACKEND", "RAG_ONNX_PRECISION", "RAG_EMBED_MODEL"):
        base_env.pop(name, None)
    configs = dict(list(CONFIGS.items())[:1]) if args.no_torch_row or args.index else CONFIGS
    figures: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="rag-cold-") as tmp:
        for n, (label, extra) in enumerate(configs.items()):
            env = base_env | extra
            index = args.index or Path(tmp) / f"index-{n}"
            if args.index is None:
                wall([rag_bin, "ingest", "--sample", "-q", "--index", str(index)], env)
            env["RAG_INDEX"] = str(index)
            import_s = [wall([sys.executable, "-c", "import rag"], env)[0] for _ in range(3)]
            runs: list[float] = []
            rss: list[float] = []
            for _ in range(args.runs):
                ask = [rag_bin, "ask", "--json", "--generator", "extractive", QUESTION]
                elapsed, out, peak = run_measured(ask, env)
                runs.append(elapsed)
                rss.append(peak)
                answer = json.loads(out)["answer"]
                if not all(b in answer for b in BANKS):  # a fast wrong answer is not a cold start figure
                    raise SystemExit(f"unexpected answer: {answer[:300]}")
            figures[label] = {"runs_s": runs, "peak_rss_mb": rss, "import_rag_s": import_s,
                              "phases_s": phases(index, env)}
    print(f"\n`rag ask --generator extractive` cold start over {args.runs} fresh processes "
          f"(sample index, question {QUESTION!r}):")
    for label, f in figures.items():
        runs = f["runs_s"]
        warm = runs[1:] or runs
        print(f"- {label}:")
        print(f"  first run (cold page cache possible): {runs[0]:.2f} s")
        print(f"  later runs: median {statistics.median(warm):.2f} s, min {min(warm):.2f} s, max {max(warm):.2f} s")
        print(f"  peak RSS of rag ask: median {statistics.median(f['peak_rss_mb']):.0f} MB")
        print(f"  `import rag` alone: median {statistics.median(f['import_rag_s']):.2f} s")
        print("  in-process phases (s): " + ", ".join(f"{k} {v:.2f}" for k, v in f["phases_s"].items()))
    default = figures[next(iter(figures))]
    median = statistics.median(default["runs_s"][1:] or default["runs_s"])
    print(f"Goal: cold start <= {GOAL_S:.0f} s -> {'MET' if median <= GOAL_S else 'NOT MET'} (median {median:.2f} s)")
    if len(figures) > 1:
        before = figures[list(figures)[1]]
        ratio = statistics.median(default["peak_rss_mb"]) / statistics.median(before["peak_rss_mb"])
        speed = median / statistics.median(before["runs_s"][1:] or before["runs_s"])
        print(f"Goal: peak RSS <= {GOAL_RSS:.0%} of the torch configuration's -> "
              f"{'MET' if ratio <= GOAL_RSS else 'NOT MET'} ({ratio:.2f}x; cold start {speed:.2f}x)")
    write_json(args.json, {"machine": facts, "configurations": figures})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
