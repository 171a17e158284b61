"""Reliability under an unlucky operator and a hostile one (issue 13), each done for real:
readers racing a writer that publishes as fast as it can, a full disk (a real tmpfs in a
user namespace, else an injected ENOSPC), a killed delete re-run, file names that carry
terminal escapes, bad options, and what reaches stdout under --json."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import rag
from rag.store import generation

from conftest import BANKS, ROOT, make_settings, skip_on_milvus
from test_guarantees import RAG, assert_consistent, env_for, german_news

#: Every test here runs on each store (tests/conftest.py: index_store).
pytestmark = pytest.mark.usefixtures("each_store")
STORES = ("faiss", "milvus-server")  # they start rag processes: Milvus through a server


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _gens(index_dir: Path) -> list[str]:
    return sorted(p.name for p in index_dir.iterdir() if p.name.startswith("gen-"))


# ---- readers while generations are published quickly ----
@pytest.mark.timeout(900)
def test_readers_never_fail_while_a_writer_publishes_a_hundred_generations(tmp_path: Path, embedder) -> None:
    index_dir = tmp_path / "index"
    texts = german_news(140)
    base = rag.open_index(index_dir, make_settings(index_dir))
    seed = (ROOT / "rag" / "sample" / "facebook-banks-de.txt").read_text(encoding="utf-8")
    base.add_articles([{"id": "facebook-banks-de", "text": seed, "source": "seed"}]
                      + [{"id": f"base-{i}", "text": t} for i, t in enumerate(texts[:20])])
    start_generation = base.stats().generation
    # Another process publishes one generation per article (RAG_COMMIT_EVERY=1), 120 in all.
    corpus = _jsonl(tmp_path / "late.jsonl", [{"id": f"late-{i}", "text": t} for i, t in enumerate(texts[20:])])
    writer = subprocess.Popen([RAG, "ingest", str(corpus), "--json"], env=env_for(index_dir, RAG_COMMIT_EVERY="1"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    shared = rag.open_index(index_dir, make_settings(index_dir))
    failures: list[str] = []
    done: list[int] = []
    lock = threading.Lock()

    def read(i: int) -> None:
        own = rag.open_index(index_dir, make_settings(index_dir)) if i % 4 == 0 else shared
        n = 0
        while writer.poll() is None:
            try:
                if i % 2:
                    answer = rag.answer("Which banks did Facebook contact?", own, generator="extractive")
                    if answer.error or not any(b in answer.text for b in BANKS):
                        failures.append(f"answer without the banks: {answer.text[:200]}")
                else:
                    mode = ("hybrid", "sparse", "dense")[n % 3]
                    if not own.search("Regierung Wien Bank", k=5, mode=mode):
                        failures.append(f"{mode} search found nothing")
                n += 1
                time.sleep(0.02)  # 16 threads, not a busy loop starving the writer of both cores
            except Exception as exc:  # noqa: BLE001 - every failed request counts
                with lock:
                    failures.append(f"{type(exc).__name__}: {exc}")
        with lock:
            done.append(n)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    out, err = writer.communicate(timeout=800)
    for t in threads:
        t.join(timeout=120)
    assert writer.returncode == 0, err[-2000:]
    assert json.loads(out)["counts"]["added"] == 120
    published = rag.open_index(index_dir, make_settings(index_dir)).stats().generation - start_generation
    assert published >= 100, published
    assert sum(done) >= 100, done  # the readers really ran during the churn
    assert failures == [], f"{len(failures)} of {sum(done) + len(failures)} requests failed: {failures[:5]}"
    assert len(_gens(index_dir)) <= 2


# ---- a full disk ----
_TMPFS_SCRIPT = textwrap.dedent("""
    import json, os, subprocess, sys
    from pathlib import Path
    mount, rag_bin, small, big = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    index = mount / "index"
    env = {**os.environ, "RAG_INDEX": str(index), "HF_HUB_OFFLINE": "1"}

    def run(*args):
        p = subprocess.run([rag_bin, *args], env=env, capture_output=True, text=True, timeout=600)
        return {"code": p.returncode, "stdout": p.stdout, "stderr": p.stderr,
                "entries": sorted(x.name for x in index.iterdir()) if index.exists() else []}

    out = {"small": run("ingest", small, "--json"), "big": run("ingest", big)}
    out["stats_after_big"] = run("stats", "--json")
    out["search_after_big"] = run("search", "Bank", "--json")
    # Fill the disk so that not even a copy of the catalog fits: the delete fails at its first write.
    st = os.statvfs(mount)
    filler = mount / "filler"
    with filler.open("wb") as fh:
        try:
            fh.write(b"x" * (st.f_bavail * st.f_frsize - 4096))
        except OSError:
            pass
    out["delete_full"] = run("delete", "small-0")
    filler.unlink()
    subprocess.run(["mount", "-o", "remount,size=64m", str(mount)], check=True)  # space again
    out["big_again"] = run("ingest", big, "--json")
    out["stats_final"] = run("stats", "--json")
    print(json.dumps(out))
""")


def _unshare_works() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            "mount -t tmpfs -o size=1m tmpfs /mnt && df /mnt"], capture_output=True, timeout=30)
    return probe.returncode == 0


@pytest.mark.timeout(900)
def test_full_disk_on_a_real_tmpfs_is_a_clear_error_and_loses_nothing(tmp_path: Path) -> None:
    skip_on_milvus("the index's data is on the Milvus server, not on this disk")
    if not _unshare_works():
        pytest.skip("cannot mount a tmpfs here (no user namespaces); see the injected-ENOSPC test")
    texts = german_news(50)
    small = _jsonl(tmp_path / "small.jsonl", [{"id": f"small-{i}", "text": t} for i, t in enumerate(texts[:10])])
    big = _jsonl(tmp_path / "big.jsonl", [{"id": f"big-{i}", "text": t} for i, t in enumerate(texts[10:])])
    mount = tmp_path / "disk"
    mount.mkdir()
    script = tmp_path / "scenario.py"
    script.write_text(_TMPFS_SCRIPT, encoding="utf-8")
    # 2 MB: room for the small index (~0.5 MB), not for a generation with 40 more articles (~2.5 MB).
    shell = (f"mount -t tmpfs -o size=2m tmpfs {mount} && "
             f"exec {sys.executable} {script} {mount} {RAG} {small} {big}")
    proc = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", shell],
                          capture_output=True, text=True, timeout=850)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)

    assert out["small"]["code"] == 0, out["small"]["stderr"]
    kept = json.loads(out["small"]["stdout"])["counts"]["added"]
    assert kept == 10
    for step in ("big", "delete_full"):
        result = out[step]
        assert result["code"] == 1, (step, result)
        assert "Traceback" not in result["stderr"], (step, result["stderr"][-2000:])
        assert "not enough disk space" in result["stderr"] and "index is as it was" in result["stderr"], step
        # Nothing half-written is left: only published generations and the manifest.
        gens = [e for e in result["entries"] if e.startswith("gen-")]
        assert len(gens) <= 2 and not any(e.endswith(".tmp") for e in result["entries"]), (step, result["entries"])
    stats = json.loads(out["stats_after_big"]["stdout"])
    assert stats["articles"] >= kept  # batches published before the disk filled are kept
    assert json.loads(out["search_after_big"]["stdout"])["hits"]
    # With space again the same command adds what is missing, each article once.
    assert out["big_again"]["code"] == 0, out["big_again"]["stderr"][-2000:]
    again = json.loads(out["big_again"]["stdout"])["counts"]
    assert again["failed"] == 0 and again["duplicates"] == 0
    assert json.loads(out["stats_final"]["stdout"])["articles"] == 50


def test_injected_enospc_while_copying_the_catalog_leaves_no_generation(tmp_path: Path, embedder,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    skip_on_milvus("the SQLite catalog copied into a generation folder")
    index_dir = tmp_path / "index"
    idx = rag.open_index(index_dir, make_settings(index_dir))
    idx.add_articles([{"id": "a", "text": "Die Stadt baut eine neue Straßenbahn."},
                      {"id": "b", "text": "Der Landtag beschließt den Haushalt."}])
    before = _gens(index_dir)

    def full(source: Path, target: Path) -> None:
        target.write_bytes(b"x" * 100)  # a partial copy, as a full disk leaves it
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(generation, "_copy_catalog", full)
    with pytest.raises(rag.IndexWriteError, match="not enough disk space.*index is as it was"):
        idx.delete("a")
    with pytest.raises(rag.IndexWriteError):
        idx.add_articles([{"id": "c", "text": "Die Bahn streikt am Montag."}])
    assert _gens(index_dir) == before
    assert idx.stats().articles == 2 and assert_consistent(index_dir) == 2


# ---- deletes ----
@pytest.mark.timeout(600)
def test_killed_delete_resumes_and_publishes_one_generation(sample_copy: Path) -> None:
    idx = rag.open_index(sample_copy, make_settings(sample_copy))
    ids = [a.id for a in idx.articles(limit=40)]
    generation_before = idx.stats().generation
    env = env_for(sample_copy)
    proc = subprocess.Popen([RAG, "delete", *ids], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if len(_gens(sample_copy)) > 1 or (sample_copy / generation.gen_dir_name(generation_before + 1)).exists():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait(timeout=60)
    assert_consistent(sample_copy)
    again = subprocess.run([RAG, "delete", *ids, "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert sorted(report["deleted"] + report["missing"]) == sorted(ids)
    idx = rag.open_index(sample_copy, make_settings(sample_copy))
    assert not {a.id for a in idx.articles()} & set(ids)
    # One generation for the whole command (at most two: killed after publishing, then nothing to do).
    assert idx.stats().generation - generation_before == 1
    third = subprocess.run([RAG, "delete", ids[0]], env=env, capture_output=True, text=True, timeout=300)
    assert third.returncode == 0 and "already deleted" in third.stderr


# ---- what reaches the terminal ----
def test_file_names_cannot_forge_output_lines(tmp_path: Path, embedder) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.txt").write_text("Der Gemeinderat beschließt den Bau einer Brücke.", encoding="utf-8")
    evil = "evil\nFAILED  forged.txt: \x1b[31mred\x1b[0m.txt"
    (folder / evil).write_text("", encoding="utf-8")  # an empty file: reported as FAILED with its name
    (folder / os.fsdecode(b"latin1_\xe9.txt")).write_bytes(b"Text.")
    proc = subprocess.run([RAG, "ingest", str(folder), "--index", str(tmp_path / "index")], env=env_for(tmp_path),
                          capture_output=True, text=True, errors="surrogateescape", timeout=600)
    assert proc.returncode == 3, proc.stderr
    assert "\x1b" not in proc.stderr and "\x1b" not in proc.stdout
    failed = [line for line in proc.stderr.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and "evil\\nFAILED  forged.txt: \\x1b[31mred" in failed[0]
    assert "added 2," in proc.stdout  # the Latin-1 name is indexed, not fatal


def test_json_output_is_only_json_and_library_logs_are_quiet(sample_index_dir: Path) -> None:
    env = env_for(sample_index_dir)
    for args in (["search", "Bank", "--json"], ["ask", "Which banks did Facebook contact?", "--json",
                                                 "--generator", "extractive"],
                 ["list", "--limit", "3", "--json"], ["stats", "--json"]):
        proc = subprocess.run([RAG, *args], env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        json.loads(proc.stdout)
        assert "DEBUG" not in proc.stderr and "Loading weights" not in proc.stderr, (args, proc.stderr)
    query = subprocess.run([RAG, "search", os.fsdecode(b"Bank \xff")], env=env, capture_output=True, timeout=600)
    assert query.returncode == 0 and b"Traceback" not in query.stderr, query.stderr


# ---- options and paths that were accepted silently or crashed ----
def test_bad_options_are_named(sample_index: rag.NewsIndex) -> None:
    cases = [({"filters": {"source": 5}}, "filter source must be a string or a list of strings, not int"),
             ({"filters": {"since": "2024-05-01", "until": "2024-01-01"}}, "is after until"),
             ({"max_per_article": 0}, "max_per_article must be 1 or more"),
             ({"now": "x"}, "now must be a datetime.date"),
             ({"reranker": "/etc/passwd"}, "cannot load the reranker '/etc/passwd'"),
             ({"sparse_weight": -1}, "sparse_weight must be a number >= 0")]
    for options, message in cases:
        with pytest.raises(rag.RagError, match=message):
            sample_index.retrieve("Which banks did Facebook contact?", **options)
    with pytest.raises(rag.InvalidQueryError, match="unknown search option"):
        sample_index.search("Bank", colour="red")


def test_bad_paths_and_numbers_on_the_command_line(tmp_path: Path, sample_index_dir: Path) -> None:
    env = env_for(sample_index_dir)
    proc = subprocess.run([RAG, "list", "--limit", "-5"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "must be 0 or more" in proc.stderr
    some = tmp_path / "a.txt"
    some.write_text("Die Stadt baut.", encoding="utf-8")
    proc = subprocess.run([RAG, "ingest", str(some), "--index", "/etc/passwd"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1 and "/etc/passwd is a file, not an index folder" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_ingest_where_every_file_fails_creates_no_index(tmp_path: Path, embedder) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "empty.txt").write_text("", encoding="utf-8")
    (folder / "broken.json").write_text("{", encoding="utf-8")
    index_dir = tmp_path / "index"
    report = rag.open_index(index_dir, make_settings(index_dir)).ingest([folder])
    assert len(report.failed) == 2 and not report.added
    assert not index_dir.exists()
    with pytest.raises(rag.IndexNotFoundError):
        rag.open_index(index_dir, make_settings(index_dir), create=False)


def test_log_lines_are_terminal_safe_and_libraries_quiet() -> None:
    script = ("import logging; from rag.console import configure_logging; configure_logging(0); "
              "import bm25s; logging.getLogger('bm25s').debug('Building index from tokens'); "
              "logging.getLogger('rag.ingest').warning('cannot read %s', 'evil\\nERROR forged\\x1b[31m.txt')")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["WARNING rag.ingest: cannot read evil\\nERROR forged\\x1b[31m.txt"]


def test_a_missing_current_generation_is_a_clear_error(tmp_path: Path, embedder) -> None:
    skip_on_milvus("generation folders (test_milvus: collections that hold no index)")
    index_dir = tmp_path / "index"
    rag.open_index(index_dir, make_settings(index_dir)).add_articles([{"id": "a", "text": "Die Stadt baut."}])
    (current,) = _gens(index_dir)
    shutil.rmtree(index_dir / current)  # not a writer's clean-up: the manifest still names it
    with pytest.raises(rag.IndexCorruptError, match=f"{current}.*missing; the index is damaged"):
        rag.open_index(index_dir, make_settings(index_dir)).stats()


def test_number_options_share_one_parser_and_show_bad_values_safely() -> None:
    import argparse

    from rag.console import whole_number

    assert whole_number(0)("0") == 0 and whole_number(1)("12") == 12
    with pytest.raises(argparse.ArgumentTypeError, match="must be 1 or more, got 0"):
        whole_number(1)("0")
    with pytest.raises(argparse.ArgumentTypeError) as err:
        whole_number(0)("5\x1b[31m")
    assert "\x1b" not in str(err.value) and "expected a whole number" in str(err.value)
    for cli in ("rag.cli", "rag.evaluate.cli"):  # no private copies left
        module = __import__(cli, fromlist=["_"])
        assert not hasattr(module, "_positive") and not hasattr(module, "_count")
