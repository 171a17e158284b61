"""How long a new user waits: `make run` on a fresh clone until the first
LLM-written answer in the browser.

    .venv/bin/python benchmarks/first_run.py [--keep]

Clones this repository (HEAD) into a temporary folder, with empty caches
(XDG_CACHE_HOME points into it, so pip downloads everything and the embedding
model and the LLM are converted/assembled afresh; torch comes from the local
wheel as always), runs `make run` there, and times every step the set-up
prints. When the UI is up, headless Chromium (Playwright, Debian's
/usr/bin/chromium) asks "Which banks did Facebook contact?" and waits for
the answer whose sources say "answered by local:". Prints the timeline and
the total. Needs network access to PyPI and ~6 GB of disk; run it on a quiet
machine (it compiles llama-cpp-python)."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine_line  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
QUESTION = "Which banks did Facebook contact?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="keep the clone (prints its path)")
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    facts = {"cpu_count": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2),
             "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
    print(machine_line(facts), flush=True)
    work = Path(tempfile.mkdtemp(prefix="rag-first-run-"))
    clone = work / "repo"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAG_", "OPENAI_", "VIRTUAL_ENV"))}
    env.update({"XDG_CACHE_HOME": str(work / "cache"), "RAG_UI_PORT": str(port), "PYTHONUNBUFFERED": "1",
                "PATH": ":".join(p for p in env.get("PATH", "").split(":") if ".venv" not in p)})
    start = time.monotonic()
    timeline: list[tuple[float, str]] = []
    proc = subprocess.Popen(["make", "run"], cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    ui_up = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n").split("\r")[-1]
            elapsed = time.monotonic() - start
            if line.startswith(("==>", "    done", "    llama", "warning", "error", "News Q&A on", "answers:")):
                timeline.append((elapsed, line.strip()))
                print(f"{elapsed:7.1f} s  {line.strip()}", flush=True)
            if line.startswith("News Q&A on"):
                ui_up.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not ui_up.wait(args.timeout):
            print("the UI did not come up in time", file=sys.stderr)
            return 1
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                              "--disable-component-update", "--disable-sync", "--no-first-run"])
            page = browser.new_page()
            deadline = time.monotonic() + 120
            while True:
                try:
                    page.goto(f"http://127.0.0.1:{port}/")
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(1)
            page.wait_for_selector("#question textarea", timeout=120_000)
            loaded = time.monotonic() - start
            print(f"{loaded:7.1f} s  page loaded; status: {page.inner_text('#generator-status')}", flush=True)
            page.wait_for_function(
                "() => { const e = document.querySelector('#rag-generator'); "
                "return e && e.dataset.state !== 'loading' && e.dataset.state !== 'idle'; }", timeout=600_000)
            ready = time.monotonic() - start
            print(f"{ready:7.1f} s  model state: {page.inner_text('#generator-status')}", flush=True)
            page.fill("#question textarea", QUESTION)
            asked = time.monotonic()
            page.click("#ask")
            page.wait_for_selector("#sources #turn-1", timeout=900_000)
            done = time.monotonic() - start
            answer = page.locator("#chat [data-testid='bot']").last.inner_text()
            footer = page.inner_text("#sources #turn-1 .rag-footer")
            browser.close()
        print(f"{done:7.1f} s  first answer ({done - (asked - start):.1f} s after asking): "
              f"{' '.join(answer.split())[:300]}")
        print(f"           {footer}")
        llm = "answered by local:" in footer
        banks = all(b in re.sub(r"U\.\s+S\.", "U.S.", answer)
                    for b in ("JPMorgan Chase", "Wells Fargo", "Citigroup", "U.S. Bancorp"))
        print(f"\ntime to the first LLM-written answer: {done / 60:.1f} min ({'LLM' if llm else 'NOT the LLM'}, "
              f"{'all four banks' if banks else 'banks missing'}); load average now {os.getloadavg()[0]:.2f}")
        return 0 if llm else 1
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        if args.keep:
            print(f"clone kept in {clone}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
