"""Local ingest vs ``rag ingest --ray`` (a local Ray started by the command) on the same input:
articles per second and the peak resident memory of the whole process tree (the driver plus,
for Ray, its GCS, raylet, read workers and embedding actors), sampled every 0.2 s with psutil.

Each round is a fresh ``rag ingest`` of the same files into a new index, in a child process;
the two sides alternate (local, ray, local, ray...) so a busy machine hurts both alike, and
the ratio is taken from the medians.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/ray_ingest.py [--rounds 2] [--limit 200] [--files 4]

Input: the first --limit German news articles of ../shared/datasets/10kgnad/test.csv (a header-less
``category;'text'`` CSV), written as --files JSONL exports (one read task each).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from common import SHARED, machine, machine_line  # noqa: E402  (benchmarks/ is the script folder)

RAG = str(Path(sys.executable).parent / "rag")


def tree_usage(pid: int, cpu: dict[int, float]) -> float:
    """Resident MB of the process tree now; ``cpu`` keeps each process's latest CPU seconds."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
            times = p.cpu_times()
            cpu[p.pid] = times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def one_round(inputs: list[str], ray: bool, temp: Path) -> dict[str, float]:
    index = Path(tempfile.mkdtemp(prefix="idx", dir=temp))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAG_INDEX": str(index), "RAY_TMPDIR": str(temp)}
    cmd = [RAG, "ingest", *inputs, "--json", *(["--ray"] if ray else [])]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = 0.0
    cpu: dict[int, float] = {}
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_usage(proc.pid, cpu))
            time.sleep(0.2)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate(timeout=1800)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    assert proc.returncode in (0, 3), err[-2000:]
    report = json.loads(out)
    return {"seconds": seconds, "added": len(report["added"]), "chunks": report["counts"]["chunks_added"],
            "peak_mb": peak, "cpu_s": sum(cpu.values())}


def export(source: Path, folder: Path, limit: int, files: int) -> list[str]:
    with source.open(encoding="utf-8", newline="") as fh:
        rows = [{"text": text, "source": "derStandard", "id": f"gnad-{n}"}
                for n, (_, text) in zip(range(limit), csv.reader(fh, delimiter=";", quotechar="'"))]
    paths = []
    for k in range(files):
        path = folder / f"part{k}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[k::files]), encoding="utf-8")
        paths.append(str(path))
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2, help="rounds per side (alternating)")
    ap.add_argument("--limit", type=int, default=200, help="articles")
    ap.add_argument("--files", type=int, default=4, help="JSONL files they are split into")
    ap.add_argument("--shared", type=Path, default=Path(os.environ.get("RAG_SHARED", SHARED)))
    args = ap.parse_args()
    print(machine_line(machine()))
    results: dict[str, list[dict[str, float]]] = {"local": [], "ray": []}
    with tempfile.TemporaryDirectory(prefix="rb", dir="/tmp") as temp:
        inputs = export(args.shared / "datasets" / "10kgnad" / "test.csv", Path(temp), args.limit, args.files)
        for n in range(args.rounds):
            for side in ("local", "ray") if n % 2 == 0 else ("ray", "local"):
                r = one_round(inputs, side == "ray", Path(temp))
                results[side].append(r)
                print(f"round {n + 1} {side:5s}: {r['added']} articles, {r['chunks']} chunks in {r['seconds']:.1f} s "
                      f"({r['added'] / r['seconds']:.1f} articles/s), peak RSS of the process tree "
                      f"{r['peak_mb']:.0f} MB, CPU {r['cpu_s']:.0f} s (to the last 0.2 s sample)", flush=True)
    print("\n| side | articles | chunks | median seconds | articles/s | peak RSS (MB, process tree) | CPU s |")
    print("|---|---|---|---|---|---|---|")
    med = {}
    for side, rs in results.items():
        med[side] = statistics.median(r["seconds"] for r in rs)
        print(f"| {side} | {rs[0]['added']} | {rs[0]['chunks']} | {med[side]:.1f} | "
              f"{rs[0]['added'] / med[side]:.1f} | {max(r['peak_mb'] for r in rs):.0f} | "
              f"{statistics.median(r['cpu_s'] for r in rs):.0f} |")
    print(f"\nray / local time: {med['ray'] / med['local']:.2f}x")


if __name__ == "__main__":
    main()
