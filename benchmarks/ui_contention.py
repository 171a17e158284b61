"""Does an upload's ingest starve the questions? Time to a question's first streamed text
(``rag.answer_stream``, first str item), median over several questions, on a private index
built from the bundled sample:

  idle             nothing else runs
  thread           a 100-article ingest in a thread of the same process (the UI's old way)
  job              the same ingest as an IngestJob child (spawn, nice 10, one embedding thread)
  job 2 threads    (with --variants) the child at nice 10 but embedding on every core
  job nice 0       (with --variants) the child with one thread at normal priority

Each ingest phase starts from a fresh copy of the index (so the 100 articles are new each
time) and keeps asking questions, round-robin, until the ingest has finished. Goal: job <= 1.5x idle.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/ui_contention.py [--articles 100] [--generator local] [--variants]

The machine has 2 cores: run it twice on a quiet machine; the load average is printed."""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import rag
from rag.settings import Settings
from rag.ui.ingest_job import IngestJob, JobDone

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = (
    "Which banks did Facebook contact?",
    "Welche Banken hat Facebook kontaktiert?",
    "What perks does the Delta SkyMiles Gold Business Card offer?",
    "Was sagt die Studie über die Qualifikationen von Asylberechtigten?",
    "Who won the election?",
    "What did the central bank decide about interest rates?",
    "Wie entwickelt sich der Arbeitsmarkt in Österreich?",
    "Which company announced layoffs?",
)


def settings_for(folder: Path, generator: str, **extra: object) -> Settings:
    return Settings.from_env(environ={}, dotenv=None, index_dir=folder, progress=False, generator=generator,
                             **extra)


def upload_files(folder: Path, n: int) -> list[Path]:
    """``n`` German news articles from the bundled sample, each made new by a numbered first
    line (so none is a duplicate of the indexed originals)."""
    folder.mkdir(parents=True)
    with (ROOT / "rag" / "sample" / "derstandard-10kgnad.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    paths = []
    for i in range(n):
        row = rows[i % len(rows)]
        path = folder / f"meldung-{i:03d}.txt"
        path.write_text(f"Upload-Meldung {i}: {row['title']}\n\n{row['text']}\n", encoding="utf-8")
        paths.append(path)
    return paths


def first_text_s(index: rag.NewsIndex, question: str, generator: str) -> float:
    started = time.perf_counter()
    stream = rag.answer_stream(question, index, generator=generator)
    try:
        for item in stream:
            if isinstance(item, str) and item:
                return time.perf_counter() - started
        raise RuntimeError(f"no streamed text for {question!r}")
    finally:
        stream.close()


class Phase:
    def __init__(self, name: str) -> None:
        self.name = name
        self.times: list[float] = []
        self.ingest_s = float("nan")
        self.added = 0

    def ask_until(self, index: rag.NewsIndex, generator: str, running: Callable[[], bool]) -> None:
        i = 0
        while running():
            self.times.append(first_text_s(index, QUESTIONS[i % len(QUESTIONS)], generator))
            i += 1

    def done(self) -> Phase:
        print(f"  {self.name}: {len(self.times)} questions, p50 {statistics.median(self.times) * 1000:.0f} ms, "
              f"ingest {self.ingest_s:.1f} s, load {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)
        return self

    def row(self, idle: float) -> str:
        med = statistics.median(self.times) * 1000
        p90 = sorted(self.times)[int(0.9 * (len(self.times) - 1))] * 1000
        ingest = f"{self.ingest_s:.1f} s ({self.added / self.ingest_s:.1f} art/s)" if self.added else "-"
        return f"| {self.name} | {len(self.times)} | {med:.0f} | {p90:.0f} | {med / idle:.2f}x | {ingest} |"


def fresh_copy(base: Path, tmp: Path, name: str, generator: str) -> rag.NewsIndex:
    folder = tmp / name
    shutil.copytree(base, folder)
    index = rag.open_index(folder, settings_for(folder, generator), create=False)
    first_text_s(index, QUESTIONS[0], generator)  # this generation's files opened before timing
    return index


def thread_phase(index: rag.NewsIndex, files: list[Path], generator: str) -> Phase:
    phase = Phase("ingest in a thread (old)")
    result: list[rag.IngestReport] = []
    worker = threading.Thread(target=lambda: result.append(index.ingest(files)), name="ingest")
    started = time.perf_counter()
    worker.start()
    phase.ask_until(index, generator, worker.is_alive)
    worker.join()
    phase.ingest_s, phase.added = time.perf_counter() - started, len(result[0].added)
    return phase.done()


def job_phase(name: str, index: rag.NewsIndex, files: list[Path], generator: str, nice: int,
              threads: int) -> Phase:
    phase = Phase(name)
    settings = index.settings.replace(onnx_threads=threads)
    done: list[JobDone] = []
    with IngestJob(settings, files, None, nice=nice) as job:
        started = time.perf_counter()
        job.start()

        def consume() -> None:
            done.extend(e for e in job.events(timeout=1.0) if isinstance(e, JobDone))
        consumer = threading.Thread(target=consume, name="job-events")  # as the UI's upload handler does
        consumer.start()
        phase.ask_until(index, generator, consumer.is_alive)
        consumer.join()
        phase.ingest_s = time.perf_counter() - started
    report = done[0].report
    if report is None:
        sys.exit(f"the ingest job failed: {done[0].error}")
    phase.added = len(report.added)
    return phase.done()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--articles", type=int, default=100)
    parser.add_argument("--generator", choices=("extractive", "local"), default="extractive")
    parser.add_argument("--idle-rounds", type=int, default=3, help="times each question is asked while idle")
    parser.add_argument("--variants", action="store_true", help="also the child on 2 threads, and at nice 0")
    args = parser.parse_args()

    if args.generator == "local":
        status = rag.generator_status(settings_for(Path("unused"), "local"), start=True)
        if status.state == "unavailable":
            print(f"the local generator is unavailable here: {status.detail}")
            return
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="ui-contention-") as tmp_name:
        tmp = Path(tmp_name)
        base = tmp / "base"
        report = rag.open_index(base, settings_for(base, args.generator)).ingest(rag.sample_articles())
        files = upload_files(tmp / "upload", args.articles)

        index = fresh_copy(base, tmp, "idle", args.generator)
        idle = Phase("idle")
        for _ in range(args.idle_rounds):
            idle.times += [first_text_s(index, q, args.generator) for q in QUESTIONS]
        idle.done()
        phases = [idle, thread_phase(fresh_copy(base, tmp, "thread", args.generator), files, args.generator),
                  job_phase("IngestJob, nice 10, 1 thread", fresh_copy(base, tmp, "job", args.generator), files,
                            args.generator, nice=10, threads=0)]
        if args.variants:
            phases.append(job_phase("IngestJob, nice 10, 2 threads", fresh_copy(base, tmp, "job2", args.generator),
                                    files, args.generator, nice=10, threads=2))
            phases.append(job_phase("IngestJob, nice 0, 1 thread", fresh_copy(base, tmp, "job0", args.generator),
                                    files, args.generator, nice=0, threads=1))
    load_end = os.getloadavg()

    print(f"rag {rag.__file__}; {time.strftime('%Y-%m-%d %H:%M')}; {os.cpu_count()} cores; "
          f"load average (1/5/15 min) {' '.join(f'{x:.2f}' for x in load_start)} at the start, "
          f"{' '.join(f'{x:.2f}' for x in load_end)} at the end")
    print(f"index: the bundled sample ({len(report.added)} articles, {report.chunks_added} chunks); "
          f"ingest: {args.articles} articles; generator: {args.generator}; {len(QUESTIONS)} questions\n")
    print("| phase | questions | first text p50 ms | p90 ms | p50 vs idle | ingest took |")
    print("|---|--:|--:|--:|--:|--:|")
    median_idle = statistics.median(idle.times) * 1000
    for phase in phases:
        print(phase.row(median_idle))


if __name__ == "__main__":
    main()
