"""``rag ingest --ray``: the same index as the local path, on an in-process Ray and on a
``ray start --head`` cluster on 127.0.0.1 (real model, real FAISS/SQLite, real Ray)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

import rag
from rag.errors import ClusterError
from conftest import ROOT, make_settings, run_cli

ray = pytest.importorskip("ray")

COMMIT_EVERY = 25
QUERIES = ("Which banks did Facebook contact?", "election results", "climate change policy")
RAY_BIN = str(Path(sys.executable).parent / "ray")
RAG_CMD = str(Path(sys.executable).parent / "rag")


def _settings(folder: Path) -> rag.Settings:
    """fp32 embeddings: int8's dynamic quantisation scales each batch by its own range, so a chunk's
    vector moves a little (cosine ~0.995) with the texts it is embedded with, on either path."""
    return make_settings(folder, commit_every=COMMIT_EVERY, onnx_precision="fp32")


def _corpus(folder: Path) -> Path:
    """60 articles in a JSONL, a text file, an HTML page, a broken export and a copy of an article."""
    folder.mkdir()
    jsonl = ROOT / "rag" / "sample" / "multihop-news-en.jsonl"
    shutil.copy(jsonl, folder / "a.jsonl")
    shutil.copy(ROOT / "rag" / "sample" / "facebook-banks-de.txt", folder / "b.txt")
    (folder / "c.html").write_text("<html><head><title>Harbour reopens</title></head><body><article><p>"
                                   + "The harbour reopened on Monday after repairs to the northern pier. " * 8
                                   + "</p></article></body></html>", encoding="utf-8")
    (folder / "d-broken.json").write_text("{not json", encoding="utf-8")
    first = json.loads(jsonl.read_text(encoding="utf-8").splitlines()[0])
    (folder / "e-copy.txt").write_text(first["text"], encoding="utf-8")
    return folder


def _vectors(index: rag.NewsIndex) -> dict[str, np.ndarray]:
    snap = index.snapshot()
    hits = snap.catalog.hits([(int(i), 0.0) for i in snap.vectors.ids])
    return {h.chunk_id: v for h, v in zip(hits, snap.vectors.vectors)}


def _ids(index: rag.NewsIndex) -> list[str]:
    return sorted(a.id for a in index.articles())


def _embedded(caplog: pytest.LogCaptureFixture) -> tuple[int, int]:
    """Chunks embedded by the actor pool and on the driver, from the ingest's log line."""
    lines = [r.getMessage() for r in caplog.records if r.name == "rag.pipeline_ray"]
    assert lines, "no ray ingest summary logged"
    words = lines[-1].split()
    return int(words[2]), int(words[-4])


@pytest.fixture(scope="module")
def local_ray():
    """An in-process Ray with 2 CPUs, its temp dir a short private path (unix sockets)."""
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    ray.init(num_cpus=2, log_to_driver=False, include_dashboard=False, logging_level=logging.WARNING,
             _temp_dir=temp)
    yield
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _corpus(tmp_path_factory.mktemp("ray") / "corpus")


@pytest.fixture(scope="module")
def local(corpus: Path) -> tuple[Path, rag.IngestReport]:
    """The corpus ingested by the local path: the reference."""
    folder = corpus.parent / "local"
    report = rag.open_index(folder, _settings(folder)).ingest([corpus])
    assert len(report.added) > 2 * COMMIT_EVERY and len(report.failed) == 1 and len(report.duplicates) == 1
    return folder, report


@pytest.fixture(scope="module")
def on_ray(corpus: Path, local_ray) -> tuple[Path, rag.IngestReport]:
    folder = corpus.parent / "on-ray"
    report = rag.open_index(folder, _settings(folder)).ingest([corpus], ray=True)
    return folder, report


def _open(folder: Path) -> rag.NewsIndex:
    return rag.open_index(folder, _settings(folder), create=False)


def test_ray_builds_the_same_index_as_the_local_path(local, on_ray) -> None:
    assert on_ray[1] == local[1]  # same added/updated/unchanged/duplicates/failed, same order and notes
    a, b = _open(local[0]), _open(on_ray[0])
    assert _ids(b) == _ids(a)
    assert b.stats().generation == a.stats().generation == 3  # batches of COMMIT_EVERY, as locally
    va, vb = _vectors(a), _vectors(b)
    assert sorted(vb) == sorted(va)
    assert all(np.allclose(va[k], vb[k], atol=1e-5) for k in va)
    for query in QUERIES:
        assert [h.chunk_id for h in b.search(query, k=5)] == [h.chunk_id for h in a.search(query, k=5)]


def test_a_rerun_embeds_nothing_and_an_edit_updates_one_article(on_ray, local, corpus: Path, tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "index"
    shutil.copytree(on_ray[0], folder)
    index = _open(folder)
    caplog.set_level(logging.INFO, logger="rag.pipeline_ray")
    again = index.ingest([corpus], ray=True)
    assert (len(again.added), len(again.updated), again.chunks_added) == (0, 0, 0)
    assert len(again.unchanged) == len(on_ray[1].added) and len(again.duplicates) == 1
    assert _embedded(caplog) == (0, 0)

    edited = tmp_path / "corpus"
    shutil.copytree(corpus, edited)
    lines = (edited / "a.jsonl").read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[7])
    row["text"] += " A correction was appended to this story on Tuesday."
    lines[7] = json.dumps(row)
    (edited / "a.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    caplog.clear()
    update = index.ingest([edited], ray=True)
    assert len(update.updated) == 1 and not update.added
    shutil.copytree(local[0], tmp_path / "local")
    assert update == _open(tmp_path / "local").ingest([edited])  # the other copies in the new folder included
    assert index.article(update.updated[0]).text.endswith("appended to this story on Tuesday.")
    assert _embedded(caplog) == (update.chunks_added, 0) and update.chunks_added >= 1


def test_a_write_that_fails_mid_run_leaves_the_last_generation_and_a_rerun_adds_the_rest(
        local, corpus: Path, local_ray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rag.store.faiss_store
    from rag.store.generation import GenerationWriter

    order = list(local[1].added)
    victim = order[COMMIT_EVERY + 3]  # in the second batch

    class Failing(GenerationWriter):
        def add(self, article, chunks, vectors):
            if article.id == victim:
                raise OSError("disk went away")
            super().add(article, chunks, vectors)

    folder = tmp_path / "index"
    monkeypatch.setattr(rag.store.faiss_store, "GenerationWriter", Failing)  # the writer FaissStore.writer makes
    with pytest.raises(OSError, match="disk went away"):
        rag.open_index(folder, _settings(folder)).ingest([corpus], ray=True)
    monkeypatch.undo()
    index = _open(folder)
    assert index.stats().articles == COMMIT_EVERY and index.stats().generation == 1
    assert sorted(a.id for a in index.articles()) == sorted(order[:COMMIT_EVERY])
    assert [p.name for p in folder.iterdir() if p.name.startswith("gen-")] == ["gen-000001"]
    assert index.search(QUERIES[0], k=3)

    rest = index.ingest([corpus], ray=True)
    assert sorted(rest.added) == sorted(order[COMMIT_EVERY:])
    assert sorted(rest.unchanged) == sorted(order[:COMMIT_EVERY])
    assert _ids(index) == _ids(_open(local[0]))


def test_ray_is_imported_only_for_a_ray_ingest_and_its_absence_is_explained(monkeypatch: pytest.MonkeyPatch,
                                                                           tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = "import sys, rag, rag.cli; assert 'ray' not in sys.modules, 'ray imported by import rag'"
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    folder = tmp_path / "index"
    with pytest.raises(ClusterError, match=r"pip install 'rag-news\[ray\]'"):
        rag.open_index(folder, make_settings(folder)).ingest([ROOT / "rag" / "sample" / "facebook-banks-de.txt"],
                                                             ray=True)
    assert not folder.exists()
    with pytest.raises(ClusterError, match="Ray Client.*ray job submit"):
        rag.open_index(folder, make_settings(folder)).ingest([ROOT / "rag" / "sample"], ray="ray://127.0.0.1:10001")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster():
    """A real head node (`ray start --head --block`) on 127.0.0.1 with 2 CPUs; its whole process
    group is killed at the end (never `ray stop`: that would stop every Ray on the machine)."""
    temp = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
    port = _free_port()
    # Token auth (Ray's default) would need the token shared with the driver: off on this loopback-only cluster.
    saved_auth = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    cmd = [RAY_BIN, "start", "--head", "--block", "--port", str(port), "--num-cpus", "2",
           "--node-ip-address", "127.0.0.1", "--temp-dir", str(temp), "--disable-usage-stats",
           "--include-dashboard", "false", "--min-worker-port", "0", "--max-worker-port", "0"]
    for flag in ("--ray-client-server-port", "--node-manager-port", "--object-manager-port",
                 "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--metrics-export-port",
                 "--runtime-env-agent-port"):
        cmd += [flag, str(_free_port())]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(temp / "head.log", "w") as log:
        head = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert head.poll() is None, (temp / "head.log").read_text()
            status = subprocess.run([RAY_BIN, "status", "--address", address], capture_output=True, text=True,
                                    env=env, timeout=60)
            if status.returncode == 0:
                break
            assert time.monotonic() < deadline, status.stderr[-2000:]
            time.sleep(1)
        yield address
    finally:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait(30)
        if saved_auth is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved_auth
        shutil.rmtree(temp, ignore_errors=True)


def test_rag_ingest_on_a_ray_head_node_through_the_cli(ray_cluster: str, local, corpus: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_COMMIT_EVERY", str(COMMIT_EVERY))
    monkeypatch.setenv("RAG_ONNX_PRECISION", "fp32")
    folder = tmp_path / "index"
    proc = run_cli("ingest", str(corpus), "--ray", ray_cluster, "--json", index=folder, check=3, timeout=300)
    assert json.loads(proc.stdout) == json.loads(json.dumps(local[1].to_dict()))  # partial: the broken file
    assert _ids(_open(folder)) == _ids(_open(local[0]))
    again = json.loads(run_cli("ingest", "--ray", ray_cluster, str(corpus), "--json", index=folder, check=3,
                               timeout=300).stdout)
    assert (len(again["added"]), len(again["unchanged"])) == (0, len(local[1].added))


def test_a_killed_ray_driver_leaves_a_whole_index_and_a_rerun_adds_the_rest(ray_cluster: str, local, corpus: Path,
                                                                            tmp_path: Path) -> None:
    folder = tmp_path / "index"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAG_INDEX": str(folder), "RAG_COMMIT_EVERY": "10",
           "RAG_ONNX_PRECISION": "fp32"}
    driver = subprocess.Popen([RAG_CMD, "ingest", str(corpus), "--ray", ray_cluster, "--json"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (folder / "manifest.json").exists() and driver.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    driver.kill()  # SIGKILL as soon as the first batch is published: no cleanup of any kind
    driver.wait(30)
    index = _open(folder)
    kept = index.stats()
    assert kept.articles == 10 * kept.generation < len(local[1].added), kept  # whole batches only
    assert index.search(QUERIES[0], k=3)
    rest = json.loads(run_cli("ingest", str(corpus), "--ray", ray_cluster, "--json", index=folder, check=3,
                              timeout=300).stdout)
    assert len(rest["unchanged"]) == kept.articles and len(rest["added"]) == len(local[1].added) - kept.articles
    assert _ids(_open(folder)) == _ids(_open(local[0]))
