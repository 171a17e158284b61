"""An upload's ingest as a job in a child process, so indexing never starves questions.

The UI process answers questions; an ingest in one of its threads competed with them for the
GIL, for the embedder (one model object, one lock) and for both cores at the same priority.
``IngestJob`` runs ``NewsIndex.ingest`` in a "spawn" child (no inherited threads or models)
that lowers its own priority and embeds on one thread, and streams progress back over a pipe:

    with IngestJob(settings, paths, names) as job:   # leaving the block early cancels it
        job.start()
        for event in job.events(timeout=0.5):      # JobProgress ..., then one JobDone
            ...

Crash guarantees come from the store: a generation is published by replacing manifest.json
atomically, and the write lock is released by the OS when its holder dies. So killing the
child leaves the index as it was; ``cancel`` then removes the unpublished generation folder
it leaves behind, so the folder is byte-for-byte what it was. The UI's own ``NewsIndex`` sees
a published generation by itself: its ``snapshot()`` reopens when manifest.json changes."""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import shutil
import signal
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from pathlib import Path
from types import TracebackType
from typing import Any

from rag.errors import IndexLockedError, RagError
from rag.news import IngestReport
from rag.settings import Settings
from rag.store.lock import WriteLock, remove_if_only_lock
from rag.store.manifest import read_manifest

log = logging.getLogger(__name__)

#: Share of the whole job given to reading the files; the rest is embedding and writing,
#: of which writing (BM25, FAISS, fsync) is WRITE_SHARE. Measured on the sample index:
#: reading is a few percent, writing about a tenth.
READ_SHARE = 0.1
WRITE_SHARE = 0.1
#: The child sends at most one progress event per this many seconds (plus every stage
#: change and stage end), so a folder of thousands of small files cannot fill the pipe.
SEND_EVERY_S = 0.1
#: Embedding threads in the child when the settings leave it to onnxruntime (0). In
#: benchmarks/ui_contention.py two threads did not help the questions and finished the ingest
#: later (215 vs 181 s for 100 articles at nice +10): see BENCHMARKS.md.
CHILD_THREADS = 1
#: Seconds a child that has sent its result (or was sent SIGTERM) gets to exit before SIGKILL.
REAP_TIMEOUT_S = 10.0
_GEN_DIR = re.compile(r"^gen-(\d{6,})$")


@dataclass(frozen=True)
class JobProgress:
    """Where a running job is. ``stage``: "starting" (the child is loading), then the
    pipeline's "reading", "embedding", "writing"; ``done``/``total`` count files, chunks or
    the one publish of that stage; ``fraction`` (0..1) is over the whole job and never goes
    back; ``eta_s`` comes from the measured embedding rate, None until two embedding
    events have been seen and while writing."""

    stage: str
    done: int
    total: int
    fraction: float
    elapsed_s: float
    eta_s: float | None


@dataclass(frozen=True)
class JobDone:
    """How a job ended: a report (it ran; bad files are listed in ``report.failed``), or an
    error message (the RagError's own text when it was one), or ``cancelled``. A cancelled
    job left the index as it was unless ``error`` says otherwise."""

    report: IngestReport | None
    error: str | None
    cancelled: bool


class Tracker:
    """Turns the pipeline's timed (stage, done, total) callbacks into ``JobProgress``: the
    fraction over the whole job and an ETA from the embedding rate. With more than
    ``commit_every`` articles there are several batches, each reading some files, then
    embedding and writing them; later batches are assumed to have as many chunks per file."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.last = JobProgress("starting", 0, 0, 0.0, 0.0, None)
        self._last_at = started
        self._read = 0.0  # fraction of the files read
        self._batch: tuple[float, float] | None = None  # files fraction the current batch covers
        self._from = 0.0  # files fraction covered by finished batches
        self._first: tuple[float, int] | None = None  # (time, done) of this batch's first embedding event
        self._embedded: tuple[float, int, int] | None = None  # (time, done, total) of its latest one
        self._chunks_before = 0  # chunks of finished batches
        self._rate_chunks = 0  # measured embedding work of finished batches
        self._rate_s = 0.0

    def update(self, stage: str, done: int, total: int, at: float) -> JobProgress:
        share = done / total if total else 1.0
        eta: float | None = None
        batch_share = 0.0
        if stage == "reading":
            self._read = share
        elif stage in ("embedding", "writing"):
            if self._batch is None:
                self._batch = (self._from, max(self._from, self._read))
            if stage == "embedding":
                if self._first is None:
                    self._first = (at, done)
                self._embedded = (at, done, total)
                eta = self._eta()
                batch_share = (1 - WRITE_SHARE) * share
            else:
                batch_share = 1 - WRITE_SHARE + WRITE_SHARE * share
        covered = self._from
        if self._batch is not None:
            lo, hi = self._batch
            covered = lo + (hi - lo) * batch_share
        fraction = READ_SHARE * self._read + (1 - READ_SHARE) * covered
        self.last = JobProgress(stage, done, total, min(1.0, max(self.last.fraction, fraction)),
                                max(0.0, at - self.started), eta)
        self._last_at = at
        if stage == "writing" and done >= total:
            self._end_batch()
        return self.last

    def _eta(self) -> float | None:
        if self._first is None or self._embedded is None or self._batch is None:
            return None
        (t0, d0), (t1, d1, total) = self._first, self._embedded
        chunks, seconds = self._rate_chunks + d1 - d0, self._rate_s + t1 - t0
        if chunks <= 0 or seconds <= 0:
            return None  # one event is no rate
        hi = self._batch[1]
        seen = self._chunks_before + total
        later = seen / hi * (1 - hi) if hi > 0 else 0.0
        return (total - d1 + later) * seconds / chunks

    def _end_batch(self) -> None:
        if self._first is not None and self._embedded is not None:
            (t0, d0), (t1, d1, total) = self._first, self._embedded
            self._rate_chunks += d1 - d0
            self._rate_s += t1 - t0
            self._chunks_before += total
        if self._batch is not None:
            self._from = self._batch[1]
        self._batch, self._first, self._embedded = None, None, None

    def heartbeat(self, now: float) -> JobProgress:
        """The last progress, aged to ``now`` (elapsed grows, the ETA counts down)."""
        eta = self.last.eta_s
        if eta is not None:
            eta = max(0.0, eta - (now - self._last_at))
        return replace(self.last, elapsed_s=max(0.0, now - self.started), eta_s=eta)


class IngestJob:
    """``NewsIndex.ingest(paths, names=names)`` into ``settings.index_dir``, in a child
    process at ``nice`` steps below this one (paths are files, or http(s) URLs as strings:
    pages and feeds). One job runs once: ``start``, consume ``events`` (or ``cancel``),
    ``close``; as a context manager it cancels on exit."""

    def __init__(self, settings: Settings, paths: Sequence[Path | str], names: Mapping[str, str] | None = None,
                 nice: int = 10) -> None:
        self.settings = settings
        self.paths = [str(p) for p in paths]
        self.names = dict(names or {})
        self.nice = nice
        self._process: Any = None  # multiprocessing.context.SpawnProcess
        self._conn: Connection | None = None
        self._tracker: Tracker | None = None
        self._result: JobDone | None = None
        self._generation_before = 0
        self._folder_existed = False

    @property
    def pid(self) -> int | None:
        """The child's process id (None before ``start``)."""
        return self._process.pid if self._process is not None else None

    @property
    def result(self) -> JobDone | None:
        """How the job ended; None while it runs (``events`` fills it in)."""
        return self._result

    def start(self) -> None:
        if self._process is not None:
            raise RuntimeError("this IngestJob was already started; make a new one")
        folder = self.settings.index_dir
        self._folder_existed = folder.exists()
        manifest = read_manifest(folder) if folder.is_dir() else None
        self._generation_before = manifest.generation if manifest else 0
        started = time.time()
        self._tracker = Tracker(started)
        context = multiprocessing.get_context("spawn")  # no inherited threads, models or locks
        parent_end, child_end = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_child_main, name="rag-ingest-job", daemon=True,
            args=(self.settings, self.paths, self.names, self.nice, child_end))
        self._process.start()
        child_end.close()  # else the parent never sees end-of-file when the child dies
        self._conn = parent_end
        log.info("ingest job started: pid %d, %d path(s), nice +%d", self._process.pid, len(self.paths), self.nice)

    def events(self, timeout: float | None = None) -> Iterator[JobProgress | JobDone]:
        """Progress as it comes, then one ``JobDone``. With ``timeout``, a quiet spell that
        long yields the last progress again, aged (so a UI loop can refresh the ETA and
        notice a closed tab). Never hangs on a dead child: its death ends the job."""
        if self._process is None or self._conn is None or self._tracker is None:
            raise RuntimeError("start the IngestJob before reading its events")
        while self._result is None:
            ready = wait([self._conn, self._process.sentinel], timeout)
            if not ready:
                yield self._tracker.heartbeat(time.time())
                continue
            if self._conn in ready:
                try:
                    message = self._conn.recv()
                except (EOFError, OSError):
                    self._finish(None)  # the child's end closed without a result
                    break
                if message[0] == "progress":
                    yield self._tracker.update(*message[1:])
                    continue
                self._finish(message)
            else:  # exited: read what it sent before dying
                self._finish(self._drain())
        assert self._result is not None
        yield self._result

    def cancel(self) -> None:
        """Stop the child now. When this returns the index is as it was (the unpublished
        generation removed, the lock free) unless the child had already published."""
        if self._process is None or self._result is not None:
            return
        self._process.terminate()  # SIGTERM: Python's default is to die at once, mid-write or not
        self._reap()
        message = self._drain()
        self._finish(message, cancelled=message is None or message[0] != "done")

    def close(self) -> None:
        """Cancel if still running, and release the pipe and the process."""
        self.cancel()
        if self._conn is not None:
            self._conn.close()
        if self._process is not None:
            self._process.join()
            self._process.close()
            self._process = None

    def __enter__(self) -> IngestJob:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ---- the end
    def _drain(self) -> tuple[Any, ...] | None:
        """The child's result message, if it sent one (progress left in the pipe is dropped)."""
        assert self._conn is not None and self._tracker is not None
        result = None
        try:
            while self._conn.poll(0):
                message = self._conn.recv()
                if message[0] == "progress":
                    self._tracker.update(*message[1:])
                else:
                    result = message
        except (EOFError, OSError):
            pass
        return result

    def _reap(self) -> None:
        """Wait for the child to exit; one stuck after sending its result is killed."""
        self._process.join(REAP_TIMEOUT_S)
        if self._process.is_alive():
            log.warning("ingest job %d did not exit; killing it", self._process.pid)
            self._process.kill()
            self._process.join()

    def _finish(self, message: tuple[Any, ...] | None, cancelled: bool = False) -> None:
        self._reap()
        if message is not None and message[0] == "done":
            self._result = JobDone(message[1], None, False)
            return
        if message is not None and not cancelled:
            self._result = JobDone(None, message[1], False)
            log.warning("ingest job failed: %s", message[1])
            return
        published = self._restore()
        if cancelled:
            error = (f"cancelled after part of the upload was written: {published}; the rest was not added"
                     if published else None)
            self._result = JobDone(None, error, True)
            log.info("ingest job cancelled%s", f" ({published})" if published else "")
            return
        code = self._process.exitcode
        how = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
        state = f"part of it was written: {published}" if published else "the index is as it was"
        self._result = JobDone(None, f"the indexing process died ({how}) before it finished; {state}. "
                                     f"Try the upload again.", False)
        log.warning("ingest job died: %s", self._result.error)

    def _restore(self) -> str:
        """After the child died: remove the generation it did not publish (under the write
        lock, so never another writer's), and say what it did publish ("" if nothing)."""
        folder = self.settings.index_dir
        if not folder.is_dir():
            return ""
        try:
            with WriteLock(folder, 1.0):
                manifest = read_manifest(folder)
                current = manifest.generation if manifest else 0
                for child in folder.iterdir():
                    match = _GEN_DIR.match(child.name)
                    if match and child.is_dir() and int(match.group(1)) > current:
                        shutil.rmtree(child, ignore_errors=True)
        except IndexLockedError:
            log.info("another writer holds %s; it removes the unpublished generation itself", folder)
            return ""
        except RagError as exc:
            log.warning("could not tidy %s after the ingest job: %s", folder, exc)
            return ""
        if not self._folder_existed and manifest is None:
            remove_if_only_lock(folder)  # it made the folder: leave none behind
        if current != self._generation_before:
            return f"the index moved from generation {self._generation_before} to {current}"
        return ""


def _child_main(settings: Settings, paths: list[str], names: dict[str, str], nice: int, conn: Connection) -> None:
    """The child: lower its priority, open the index itself, ingest, send the result."""
    from rag.index import open_index

    try:
        if nice > 0 and hasattr(os, "nice"):
            os.nice(nice)
        # One embedding thread unless the settings name a number (see CHILD_THREADS).
        if settings.onnx_threads == 0:
            settings = settings.replace(onnx_threads=CHILD_THREADS)
        last_sent = [0.0, ""]

        def progress(stage: str, done: int, total: int) -> None:
            now = time.time()
            if stage != last_sent[1] or done >= total or now - float(last_sent[0]) >= SEND_EVERY_S:
                last_sent[:] = [now, stage]
                conn.send(("progress", stage, done, total, now))

        index = open_index(settings.index_dir, settings)
        report = index.ingest(paths, progress=progress, names=names)
        conn.send(("done", report))
    except RagError as exc:
        conn.send(("error", str(exc)))
    except Exception as exc:  # the process edge: the parent shows the message, the log has the trace
        log.exception("ingest job failed")
        conn.send(("error", f"indexing failed ({type(exc).__name__}: {exc})"))
    finally:
        conn.close()
