"""Peak memory reading hostile exports: files with one enormous line.

Cases: a sparse 1 GB JSONL (an 8 KB first line, then no newline), a sparse 1 GB CSV (header,
one good row, then no newline), and a JSONL whose second line is 200 MB of text. Each reader
runs in a fresh process and reports its own peak (VmHWM, reset by exec). Sides: ours
(rag.ingest.readers.read_file, RAG_MAX_FILE_MB=20 as a line limit), optionally ours at
another checkout (--before PATH: that folder first on PYTHONPATH), and the peer for the CSV
cases (LangChain CSVLoader.load(), what a LangChain script would call).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/hostile_memory.py [--before /tmp/old-checkout]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MB = 1 << 20
LIMIT = 20_000_000

# Each reader reports its own VmHWM (reset by exec, so it is this process's peak alone), also
# when reading fails.
HWM = """
def hwm_kb():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
"""
OURS = HWM + """
import json, sys, time
from pathlib import Path
import rag
from rag.ingest.readers import read_file
print(rag.__file__, file=sys.stderr)
t0 = time.perf_counter()
items = [type(x).__name__ for x in read_file(Path(sys.argv[1]), int(sys.argv[2]))]
print(json.dumps({"records": items.count("Record"), "failures": items.count("Failure"), "peak_kb": hwm_kb(),
                  "seconds": time.perf_counter() - t0}))
"""
PEER = HWM + """
import json, sys, time, warnings
warnings.filterwarnings("ignore")
from langchain_community.document_loaders import CSVLoader
t0 = time.perf_counter()
try:
    out = {"records": len(CSVLoader(sys.argv[1], encoding="utf-8").load()), "failures": 0}
except Exception as exc:
    out = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:60]}"}
print(json.dumps({**out, "peak_kb": hwm_kb(), "seconds": time.perf_counter() - t0}))
"""


def sparse_jsonl(path: Path) -> None:
    with path.open("wb") as fh:
        first = json.dumps({"id": "h", "text": "x" * 8000}).encode()
        fh.write(first + b" " * (8191 - len(first)) + b"\n")
        fh.truncate(10**9)


def sparse_csv(path: Path) -> None:
    with path.open("wb") as fh:  # good rows fill the first 8 KB (else it is refused as binary)
        rows = b"id,text\n" + b"".join(b"%d,Ein guter Artikel Nummer %d.\n" % (i, i) for i in range(400))
        fh.write(rows[:rows.rindex(b"\n", 0, 8192) + 1].ljust(8192, b" "))
        fh.truncate(10**9)


def long_line(path: Path) -> None:
    with path.open("wb") as fh:
        fh.write(json.dumps({"id": "a", "text": "Ein guter Artikel."}).encode() + b"\n")
        fh.write(b'{"id": "b", "text": "' + b"y" * (200 * MB) + b'"}\n')
        fh.write(json.dumps({"id": "c", "text": "Noch ein guter Artikel."}).encode() + b"\n")


CASES = {"1 GB JSONL, no newline": (sparse_jsonl, ".jsonl"), "1 GB CSV, no newline": (sparse_csv, ".csv"),
         "200 MB line in a JSONL": (long_line, ".jsonl")}


def measure(script: str, path: Path, pythonpath: str | None) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    # cwd: not the repository, whose rag would come before PYTHONPATH's for "python -c"
    proc = subprocess.run([sys.executable, "-c", script, str(path), str(LIMIT)], env=env, cwd=path.parent,
                          capture_output=True, text=True, timeout=1800)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"peak_kb": 0, "seconds": 0, "error": (proc.stderr.strip().splitlines() or ["?"])[-1][:100]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", help="another checkout of rag, measured as 'before'")
    args = parser.parse_args()
    print(f"load {os.getloadavg()[0]:.1f}; {time.strftime('%Y-%m-%d %H:%M')}; limit per record {LIMIT / 1e6:.0f} MB\n")
    print("case | side | peak RSS MB | seconds | records | failures | note")
    print("--- | --- | --: | --: | --: | --: | ---")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (make, suffix) in CASES.items():
            path = Path(tmp) / f"hostile{suffix}"
            make(path)
            sides = [("ours", OURS, None)]
            if args.before:
                sides.append(("ours before", OURS, args.before))
            if suffix == ".csv":
                sides.append(("peer CSVLoader", PEER, None))
            for side, script, pythonpath in sides:
                r = measure(script, path, pythonpath)
                print(f"{name} | {side} | {r['peak_kb'] / 1024:.0f} | {r['seconds']:.1f} | {r.get('records', '-')} | "
                      f"{r.get('failures', '-')} | {r.get('error', '')}", flush=True)
            path.unlink()


if __name__ == "__main__":
    main()
