"""IngestJob: an upload's ingest in a child process at lower priority, with progress, ETA
and a cancel that leaves the index as it was. Real index copies, real files, real children
(each loads the embedding model: a few seconds)."""

from __future__ import annotations

import csv
import hashlib
import os
import signal
from pathlib import Path

import pytest
from conftest import ROOT, make_settings

import rag
from rag.store.lock import WriteLock
from rag.ui.ingest_job import IngestJob, JobDone, JobProgress, Tracker

pytestmark = pytest.mark.timeout(300)
EVENT_TIMEOUT = 0.5
MARKER = "Quarzlilie"


def upload_files(folder: Path, n: int = 40) -> list[Path]:
    """``n`` German news articles from the bundled sample, each made new (a numbered first
    line) so none is a duplicate of the indexed originals; about five chunks each."""
    folder.mkdir(parents=True, exist_ok=True)
    with (ROOT / "rag" / "sample" / "derstandard-10kgnad.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))[:n]
    paths = []
    for i, row in enumerate(rows):
        extra = f" Das Projekt heißt {MARKER}." if i == 7 else ""
        path = folder / f"meldung-{i:02d}.txt"
        path.write_text(f"Upload-Meldung {i}: {row['title']}\n\n{row['text']}{extra}\n", encoding="utf-8")
        paths.append(path)
    return paths


def upload_names(paths: list[Path]) -> dict[str, str]:
    return {str(p): f"upload/{p.name}" for p in paths}


def folder_state(folder: Path) -> dict[str, str]:
    """Every file of the folder (lock file and manifest included) by content hash."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def index_view(folder: Path) -> tuple:
    idx = rag.open_index(folder, make_settings(folder), create=False)
    try:
        stats = idx.stats()
        hits = idx.search("Facebook Banken Kundendaten", k=5)
        return (stats.articles, stats.chunks, stats.generation, [a.id for a in idx.articles()],
                [(h.chunk_id, round(h.score, 6)) for h in hits])
    finally:
        idx.close()


def test_progress_eta_priority_report_and_the_parents_index(sample_copy: Path, tmp_path: Path) -> None:
    settings = make_settings(sample_copy)
    parent = rag.open_index(sample_copy, settings, create=False)
    before = parent.stats()
    assert not parent.search(MARKER, k=3, mode="sparse")
    paths = upload_files(tmp_path / "upload")
    events: list[JobProgress | JobDone] = []
    priority = None
    with IngestJob(settings, paths, upload_names(paths), nice=10) as job:
        job.start()
        for event in job.events(timeout=EVENT_TIMEOUT):
            if priority is None and isinstance(event, JobProgress) and event.stage == "reading":
                priority = os.getpriority(os.PRIO_PROCESS, job.pid)  # set before the child reads anything
            events.append(event)
    done = events[-1]
    assert isinstance(done, JobDone) and done.error is None and not done.cancelled
    assert all(isinstance(e, JobProgress) for e in events[:-1])
    assert priority == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)

    progress = [e for e in events[:-1] if isinstance(e, JobProgress)]
    stages = [e.stage for e in progress if e.stage != "starting"]
    order = {"reading": 0, "embedding": 1, "writing": 2}
    assert [order[s] for s in stages] == sorted(order[s] for s in stages), stages
    fractions = [e.fraction for e in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and fractions[0] < 0.2
    assert [e.elapsed_s for e in progress] == sorted(e.elapsed_s for e in progress)
    embedding = [e for e in progress if e.stage == "embedding"]
    distinct = sorted({e.done for e in embedding})
    assert len(distinct) >= 3 and embedding[-1].done == embedding[-1].total, distinct
    assert embedding[0].eta_s is None  # one event is no rate
    mid = [e for e in embedding if e.done > distinct[0] and e.done < e.total]
    assert mid and all(e.eta_s is not None for e in mid)
    first_of_each = {e.done: e for e in reversed(mid)}.values()  # the events, not the heartbeats after them
    assert all(e.eta_s > 0 for e in first_of_each)
    assert all(e.eta_s is None for e in progress if e.stage == "writing")

    report = done.report
    assert report is not None and len(report.added) == 40 and not report.failed and report.chunks_added > 100
    # The UI's own NewsIndex, opened before the job, sees the new generation by itself.
    after = parent.stats()
    assert after.articles == before.articles + 40 and after.generation == before.generation + 1
    hit = parent.search(MARKER, k=1, mode="sparse")[0]
    assert hit.article_id in report.added
    assert parent.article(hit.article_id).origin == "upload/meldung-07.txt"
    assert not [p for p in sample_copy.iterdir() if p.name.startswith(".manifest")]


def test_cancel_mid_embedding_leaves_the_index_as_it_was(sample_copy: Path, tmp_path: Path) -> None:
    settings = make_settings(sample_copy)
    state, view = folder_state(sample_copy), index_view(sample_copy)
    paths = upload_files(tmp_path / "upload")
    with IngestJob(settings, paths, upload_names(paths)) as job:
        job.start()
        for event in job.events(timeout=EVENT_TIMEOUT):
            assert isinstance(event, JobProgress), event
            if event.stage == "embedding" and 0 < event.done < event.total:
                job.cancel()
                pid = job.pid
                break
        assert job.result == JobDone(None, None, True)
        assert list(job.events()) == [job.result]  # the end is reported once more, not waited for
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert folder_state(sample_copy) == state  # byte for byte, the lock file included
    assert index_view(sample_copy) == view

    with IngestJob(settings, paths, upload_names(paths)) as again:  # the lock is free, the same files go in
        again.start()
        done = list(again.events(timeout=EVENT_TIMEOUT))[-1]
    assert isinstance(done, JobDone) and done.report is not None and len(done.report.added) == 40, done


def test_sigkill_while_writing_is_an_error_and_the_index_stays(sample_copy: Path, tmp_path: Path) -> None:
    settings = make_settings(sample_copy)
    state, view = folder_state(sample_copy), index_view(sample_copy)
    paths = upload_files(tmp_path / "upload", 12)
    published = {p.name for p in sample_copy.iterdir() if p.name.startswith("gen-")}
    unpublished: set[str] = set()
    with IngestJob(settings, paths, upload_names(paths)) as job:
        job.start()
        for event in job.events(timeout=EVENT_TIMEOUT):
            if isinstance(event, JobProgress) and event.stage == "writing" and event.done == 0:
                os.kill(job.pid, signal.SIGKILL)  # the new generation is on disk, not yet published
                unpublished = {p.name for p in sample_copy.iterdir() if p.name.startswith("gen-")} - published
        done = job.result
    assert isinstance(done, JobDone) and not done.cancelled and done.report is None
    assert done.error is not None and "SIGKILL" in done.error and "the index is as it was" in done.error
    assert len(unpublished) == 1  # the killed writer's generation folder, removed afterwards
    assert folder_state(sample_copy) == state and index_view(sample_copy) == view


def test_a_locked_index_is_an_error_naming_the_holder(sample_copy: Path, tmp_path: Path) -> None:
    paths = upload_files(tmp_path / "upload", 2)
    with WriteLock(sample_copy), IngestJob(make_settings(sample_copy), paths, upload_names(paths)) as job:
        job.start()
        done = list(job.events(timeout=EVENT_TIMEOUT))[-1]
    assert isinstance(done, JobDone) and done.report is None and not done.cancelled
    assert done.error is not None and f"locked by PID {os.getpid()}" in done.error, done


def test_an_undecodable_file_is_reported_not_hung_on(sample_copy: Path, tmp_path: Path) -> None:
    bad = tmp_path / "kaputt.txt"
    bad.write_bytes(b"Schlagzeile \xc3\x28 und \x81\x8d\x8f\x90\x9d")  # neither UTF-8 nor Windows-1252
    state = folder_state(sample_copy)
    with IngestJob(make_settings(sample_copy), [bad], {str(bad): "upload/kaputt.txt"}) as job:
        job.start()
        done = list(job.events(timeout=EVENT_TIMEOUT))[-1]
    assert isinstance(done, JobDone) and done.error is None and done.report is not None
    assert not done.report.added and [f.path for f in done.report.failed] == ["upload/kaputt.txt"]
    assert "neither UTF-8" in done.report.failed[0].reason
    assert folder_state(sample_copy) == state


def test_tracker_over_two_batches_rises_to_one_with_an_eta() -> None:
    tracker = Tracker(started=100.0)
    feed = [("reading", 1, 4, 100.1), ("reading", 2, 4, 100.2), ("embedding", 64, 200, 102.0),
            ("embedding", 128, 200, 104.0), ("embedding", 200, 200, 106.25), ("writing", 0, 1, 106.3),
            ("writing", 1, 1, 107.0), ("reading", 3, 4, 107.1), ("reading", 4, 4, 107.2),
            ("embedding", 64, 100, 109.0), ("embedding", 100, 100, 110.0), ("writing", 0, 1, 110.1),
            ("writing", 1, 1, 110.5)]
    out = [tracker.update(*event) for event in feed]
    fractions = [p.fraction for p in out]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert out[1].fraction == pytest.approx(0.05)  # half the files read, nothing embedded
    # 64 chunks in 2 s: 72 left in this batch, and the other half of the files about as many again.
    assert out[3].eta_s == pytest.approx((72 + 200) / 32)
    assert out[2].eta_s is None and out[5].eta_s is None
    assert out[10].eta_s == pytest.approx(0.0)
    aged = tracker.heartbeat(112.0)
    assert aged.elapsed_s == pytest.approx(12.0) and aged.fraction == 1.0
