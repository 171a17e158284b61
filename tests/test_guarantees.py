"""The promises in README "What we guarantee", each proven by doing the bad thing:
killing ingests, racing readers and writers, feeding hostile files, leaking keys."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings as hsettings, strategies as st

import rag
from rag.ingest.readers import Record, read_file
from rag.store.lock import WriteLock

from conftest import BANKS, ROOT, STORE, dataset, make_settings
from fake_openai import FakeOpenAI

#: Every test here runs on each store (tests/conftest.py: index_store).
pytestmark = pytest.mark.usefixtures("each_store")
STORES = ("faiss", "milvus-server")  # they start rag processes: Milvus through a server

RAG = str(Path(sys.executable).parent / "rag")


def german_news(n: int) -> list[str]:
    rows = []
    with dataset("10kgnad", "test.csv").open(encoding="utf-8") as fh:
        for _, text in csv.reader(fh, delimiter=";", quotechar="'"):
            rows.append(text)
            if len(rows) == n:
                break
    return rows


def env_for(index: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAG_INDEX": str(index), **extra}
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "RAG_EMBED_MODEL"):
        if name not in extra:
            env.pop(name, None)
    return env


def assert_consistent(index_dir: Path) -> int:
    """Opening checks manifest, catalog and FAISS agree; search must work.
    No manifest yet means nothing was published: the previous (empty) state."""
    if not (index_dir / "manifest.json").exists():
        return 0
    idx = rag.open_index(index_dir, make_settings(index_dir), create=False)
    stats = idx.stats()
    snap = idx.snapshot()
    if idx.store.name == "milvus":  # the rows visible in the published generation, counted again
        from rag.store.milvus_read import MilvusCatalog

        catalog = MilvusCatalog(idx.store, idx.store.names, snap.manifest.generation)
        assert catalog.counts() == (stats.articles, stats.chunks) and len(catalog.unsigned()) == 0
    else:
        assert snap.catalog.counts() == (stats.articles, stats.chunks) and snap.index.ntotal == stats.chunks
    if stats.chunks:
        assert idx.search("Regierung Wien", k=3)
    gens = sorted(p.name for p in index_dir.iterdir() if p.name.startswith("gen-"))
    assert len(gens) <= 3  # current, previous, and at most one unpublished leftover
    return stats.articles


# ---- crash safety ----
@pytest.mark.timeout(1200)
def milvus_rows_unpublished(index: Path) -> bool:
    """Whether a writer has rows in Milvus that no published generation holds yet (it is writing one)."""
    if not (index / "manifest.json").exists():
        return False
    idx = rag.open_index(index, make_settings(index))
    if idx.store.name != "milvus":
        return False
    published = idx.stats().generation
    return bool(idx.store.client.query(idx.store.names.chunks, filter=f"gen_from > {published}",
                                       output_fields=["row"], limit=1))


def test_sigkill_during_ingest_never_corrupts(tmp_path: Path, embedder) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    texts = german_news(120)
    for i, text in enumerate(texts):
        (corpus / f"artikel-{i:04d}.txt").write_text(text, encoding="utf-8")
    index = tmp_path / "index"
    env = env_for(index, RAG_COMMIT_EVERY="30", RAG_PROGRESS="1")

    def run_until(trigger, label: str) -> None:
        proc = subprocess.Popen([RAG, "ingest", str(corpus)], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        seen = io.StringIO()

        def pump() -> None:
            for line in iter(lambda: proc.stderr.read(64), ""):
                seen.write(line)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        known = {p.name for p in index.iterdir()} if index.exists() else set()
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            if trigger(seen.getvalue(), known):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.01)
        proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL, f"{label}: ingest ended before the kill ({seen.getvalue()[-500:]})"

    run_until(lambda err, _: "Reading" in err, "parsing")
    assert_consistent(index)
    run_until(lambda err, _: "Embedding" in err, "embedding")
    assert_consistent(index)
    run_until(lambda _, known: any(p.name.startswith("gen-") and p.name not in known for p in index.iterdir())
              if index.exists() else False, "writing") if STORE.get("store") != "milvus" else \
        run_until(lambda _, known: milvus_rows_unpublished(index), "writing")
    partial = assert_consistent(index)
    assert 0 <= partial <= len(texts)

    done = subprocess.run([RAG, "ingest", str(corpus), "--json"], env=env_for(index), capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout)["counts"]
    assert counts["failed"] == 0 and counts["duplicates"] == 0
    assert counts["added"] + counts["unchanged"] == len(texts)
    assert assert_consistent(index) == len(texts)
    assert not milvus_rows_unpublished(index)  # the killed writer's rows were removed by the next one
    stats = json.loads(subprocess.run([RAG, "stats", "--json"], env=env_for(index), capture_output=True,
                                      text=True, timeout=300).stdout)
    assert stats["articles"] == len(texts)


# ---- concurrency ----
def test_twenty_readers_and_a_writer(sample_copy: Path) -> None:
    settings = make_settings(sample_copy)
    shared = rag.open_index(sample_copy, settings)
    writer = rag.open_index(sample_copy, settings)
    before = shared.stats().articles
    late = german_news(25)  # here, not in the thread: a missing dataset must skip, not fail
    errors: list[BaseException] = []
    answers: list[rag.Answer] = []
    reports: list[rag.IngestReport] = []
    start = threading.Barrier(21)

    def ask(i: int) -> None:
        try:
            start.wait()
            answers.append(rag.answer("Which banks did Facebook contact?" if i % 2 else
                                      "Was verlor Facebook an einem Tag?", shared))
        except BaseException as exc:  # noqa: BLE001 - any failure fails the test below
            errors.append(exc)

    def ingest() -> None:
        try:
            start.wait()
            reports.append(writer.add_articles([{"id": f"late-{i}", "text": text}
                                                for i, text in enumerate(late)]))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(20)] + [threading.Thread(target=ingest)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=900)
    assert not errors, errors
    assert len(answers) == 20 and all(a.hits and not a.error for a in answers)
    assert all(any(b in a.text for b in BANKS) for a in answers if a.question.startswith("Which"))
    (report,) = reports
    # Some of these rows are in the sample corpus already: reported as duplicates, not added twice.
    assert len(report.added) + len(report.duplicates) == 25 and len(report.added) >= 20
    assert shared.stats().articles == before + len(report.added)


def test_second_writer_process_is_refused(sample_copy: Path) -> None:
    with WriteLock(sample_copy):
        proc = subprocess.run([RAG, "delete", "facebook-banks-de"], env=env_for(sample_copy), capture_output=True,
                              text=True, timeout=300)
    assert proc.returncode == 1 and f"is locked by PID {os.getpid()}" in proc.stderr
    assert rag.open_index(sample_copy, make_settings(sample_copy)).article("facebook-banks-de")


# ---- hostile input at scale ----
def test_thousand_files_five_percent_broken(tmp_path: Path, embedder) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    good, bad = {}, {}
    for i in range(955):
        name = f"good-{i:04d}.txt"
        text = f"Meldung {i}: Der Gemeinderat von Ort {i} beschließt den Haushalt für das Jahr {2000 + i % 25}."
        if i % 100 == 1:
            (folder / name).write_bytes(text.encode("cp1252"))  # Windows-1252: read, with a note
        elif i % 100 == 2:
            (folder / name).write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))  # BOM
        else:
            (folder / name).write_text(text, encoding="utf-8")
        good[name] = text
    kinds = {"empty": (b"", "empty file"), "whitespace": (b"  \n\t\n", "only whitespace"),
             "binary": (bytes(range(256)) * 4, "binary file"), "nul": (b"Text mit \x00 NUL", "binary file"),
             "undecodable": (b"\x81\x8d\x8f\x90 \x9d", "undecodable")}
    for kind, (payload, reason) in kinds.items():
        for j in range(7):
            (folder / f"bad-{kind}-{j}.txt").write_bytes(payload)
            bad[f"bad-{kind}-{j}.txt"] = reason
    for j in range(7):
        (folder / f"bad-truncated-{j}.json").write_text('{"title": "Abgeschnitten", "text": "Der Te', encoding="utf-8")
        bad[f"bad-truncated-{j}.json"] = "malformed JSON"
    (folder / "bad-huge.txt").write_bytes(b"a" * 50_000_001)
    bad["bad-huge.txt"] = "too large"
    lines = [json.dumps({"id": f"jl-{k}", "text": f"Zeile {k} berichtet über den Verkehr in Graz."}) for k in range(5)]
    lines.insert(2, '{"id": "jl-x", "text": "kaputt"')
    (folder / "mixed.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "mixed.csv").write_text("id,text\nc1,Der Nationalrat tagt am Montag.\nc2,zu,viele,Felder\n"
                                      "c3,Die Inflation sinkt leicht.\n", encoding="utf-8")
    assert len(list(folder.iterdir())) == 1000 and len(bad) + 2 >= 0.045 * 1000

    idx = rag.open_index(tmp_path / "index", make_settings(tmp_path / "index"))
    report = idx.ingest([folder])
    failed = {Path(f.path.split(":line")[0]).name: f for f in report.failed}
    assert set(failed) == set(bad) | {"mixed.jsonl", "mixed.csv"}
    for name, reason in bad.items():
        assert reason in failed[name].reason, (name, failed[name].reason)
    assert failed["mixed.jsonl"].path.endswith("mixed.jsonl:line 3")
    assert failed["mixed.csv"].path.endswith("mixed.csv:line 3")
    assert len(report.added) == len(good) + 5 + 2  # every good file, jsonl line and csv row
    assert idx.stats().articles == len(good) + 7
    assert sum("Windows-1252" in note for note in report.notes) == 10


_field = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from(list(',;"\'\n\t|')),
                 min_size=1, max_size=60).filter(lambda s: s.strip())


@given(st.lists(st.tuples(_field, _field), min_size=1, max_size=8))
@hsettings(max_examples=150, deadline=None)
def test_jsonl_and_csv_round_trip(tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[str, str]]) -> None:
    folder = tmp_path_factory.mktemp("rt")
    (folder / "a.jsonl").write_text("".join(json.dumps({"title": t, "text": x}) + "\n" for t, x in rows),
                                    encoding="utf-8")
    with (folder / "a.csv").open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["title", "text"])
        w.writerows(rows)
    for name in ("a.jsonl", "a.csv"):
        got = list(read_file(folder / name, 10**7))
        assert all(isinstance(r, Record) for r in got), got
        assert [(r.fields["title"], r.fields["text"]) for r in got] == rows


# ---- index files are data ----
def test_no_pickle_in_the_code() -> None:
    for path in (ROOT / "rag").rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        assert "import pickle" not in source and "allow_pickle=True" not in source, path


# ---- secrets ----
def test_api_key_never_printed(sample_index_dir: Path) -> None:
    key = "sk-live-SECRET-4242-never-print"
    with FakeOpenAI(["401"]) as llm:
        env = env_for(sample_index_dir, OPENAI_API_KEY=key, OPENAI_BASE_URL=llm.base_url, RAG_LLM_MAX_RETRIES="0")
        outputs = []
        for args in (["ask", "Which banks did Facebook contact?", "-vv"], ["ask", "--json", "Wer ist Diana?"],
                     ["stats", "--json"], ["search", "Facebook", "-vv"]):
            proc = subprocess.run([RAG, *args], env=env, capture_output=True, text=True, timeout=300)
            outputs.append(proc.stdout + proc.stderr)
    everything = "\n".join(outputs)
    assert "rejected the API key (401)" in everything
    assert key not in everything and "SECRET-4242" not in everything
    assert llm.requests and llm.requests[0]["authorization"] == f"Bearer {key}"  # it was really used
    assert key not in repr(make_settings(sample_index_dir, openai_api_key=key))
    assert make_settings(sample_index_dir, openai_api_key=key).public()["openai_api_key"] == "set"
