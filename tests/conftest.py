"""Shared fixtures: the real default embedding model (loaded once per
session), the real sample index, and helpers to build small indexes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The UI keeps conversations and LLM preferences in the user's data/config folders: tests
# (and the servers they start) use private ones, never the real home.
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="rag-test-data-")
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="rag-test-config-")
os.environ.pop("RAG_CONVERSATIONS", None)

import rag  # noqa: E402
from rag.embed import load_embedder  # noqa: E402
from rag.settings import Settings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("RAG_SHARED", ROOT.parent / "shared"))
DATASETS = SHARED / "datasets"
SEED = ROOT / "rag" / "sample" / "facebook-banks-de.txt"
BANKS = ("JPMorgan Chase", "Wells Fargo", "Citigroup", "U.S. Bancorp")


#: The installed ``rag`` command of this interpreter's environment.
RAG = str(Path(sys.executable).parent / "rag")


def run_cli(*args: str, index: Path, check: int = 0, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """The real ``rag`` command on ``index``; its exit code must be ``check``."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAG_INDEX": str(index)}
    env.pop("RAG_EMBED_MODEL", None)
    proc = subprocess.run([RAG, *args], capture_output=True, text=True, env=env, timeout=timeout)
    assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def dataset(*parts: str) -> Path:
    """A file of the shared evaluation data (../shared/datasets), or a visible skip."""
    path = DATASETS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared dataset {path} is not present (set RAG_SHARED)")
    return path


#: The store a new test index is made in: "faiss", or a Milvus one while a test of a module marked
#: with ``pytest.mark.usefixtures("each_store")`` runs (see ``index_store``).
STORE: dict[str, str] = {}


def make_settings(index_dir: Path, **overrides) -> Settings:
    """Settings from nothing but these arguments. The generator is extractive unless a
    test asks for another: "auto" would pick the local LLM wherever it is installed."""
    configured = overrides.get("openai_base_url") or overrides.get("openai_api_key")
    overrides.setdefault("generator", "auto" if configured else "extractive")
    for key, value in STORE.items():
        overrides.setdefault(key, value)
    if STORE.get("milvus_uri"):  # one server for every test index: each its own collections
        overrides.setdefault("milvus_collection", milvus_prefix(index_dir))
    return Settings.from_env(environ={}, dotenv=None, index_dir=index_dir, progress=False, **overrides)


def milvus_prefix(folder: Path) -> str:
    import hashlib

    return "t" + hashlib.sha1(str(Path(folder).resolve()).encode()).hexdigest()[:16]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory):
    """A real ``milvus-lite server`` on 127.0.0.1 (the network path to a Milvus cluster): its URI."""
    pytest.importorskip("pymilvus", reason="the Milvus store needs pip install 'rag-news[milvus]'")
    import time

    exe = Path(sys.executable).parent / "milvus-lite"
    port = free_port()
    data = tmp_path_factory.mktemp("milvus-server")
    proc = subprocess.Popen([str(exe), "server", "--data-dir", str(data), "--host", "127.0.0.1", "--port",
                             str(port)], stdout=subprocess.DEVNULL, stderr=(data / "server.log").open("w"))
    uri = f"http://127.0.0.1:{port}"
    from pymilvus import MilvusClient

    deadline = time.monotonic() + 60
    while True:
        try:
            MilvusClient(uri=uri, token="root:Milvus", timeout=2).list_collections()
            break
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"milvus-lite server did not start: {(data / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield uri
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module runs on the stores its ``STORES`` names (default: FAISS and Milvus Lite in-process;
    tests that start ``rag`` processes use the Milvus server, as a Milvus Lite file is one process's)."""
    if "index_store" in metafunc.fixturenames:
        wanted = getattr(metafunc.module, "STORES", ("faiss", "milvus-lite"))
        metafunc.parametrize("index_store", wanted, indirect=True, scope="session")


@pytest.fixture(scope="session")
def index_store(request: pytest.FixtureRequest) -> dict[str, str]:
    """The settings of one store: "faiss", "milvus-lite" (a Milvus Lite file in the index folder) or
    "milvus-server" (a ``milvus-lite server`` on 127.0.0.1)."""
    if request.param == "faiss":
        return {}
    pytest.importorskip("pymilvus", reason="the Milvus store needs pip install 'rag-news[milvus]'")
    if request.param == "milvus-server":
        return {"store": "milvus", "milvus_uri": request.getfixturevalue("milvus_server"),
                "milvus_token": "root:Milvus"}
    return {"store": "milvus"}


@pytest.fixture
def each_store(index_store: dict[str, str], monkeypatch: pytest.MonkeyPatch,
               request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a test on every store its module names: ``make_settings`` and the ``rag`` processes it
    starts (through the environment) make new indexes in it."""
    STORE.clear()
    STORE.update(index_store)
    env = {"store": "RAG_STORE", "milvus_uri": "RAG_MILVUS_URI", "milvus_token": "RAG_MILVUS_TOKEN"}
    for key, value in index_store.items():
        monkeypatch.setenv(env[key], value)
    if index_store.get("milvus_uri"):  # a new index a rag process makes: collections of this test's own
        monkeypatch.setenv("RAG_MILVUS_COLLECTION", milvus_prefix(Path(request.node.nodeid)))
    yield index_store.get("store", "faiss")
    STORE.clear()


def skip_on_milvus(reason: str) -> None:
    if STORE.get("store") == "milvus":
        pytest.skip(f"FAISS store only: {reason}")


@pytest.fixture(scope="session")
def embedder():
    """The real default embedder (e5 + USE ensemble), loaded once."""
    return load_embedder(make_settings(Path("unused")))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "index")


@pytest.fixture
def index(settings: Settings, embedder) -> rag.NewsIndex:
    return rag.open_index(settings.index_dir, settings)


@pytest.fixture(scope="session")
def sample_index_dir(tmp_path_factory: pytest.TempPathFactory, embedder) -> Path:
    """The bundled sample corpus, indexed once per session with the default model."""
    folder = tmp_path_factory.mktemp("sample") / "index"
    idx = rag.open_index(folder, make_settings(folder))
    report = idx.ingest(rag.sample_articles())
    assert report.ok and len(report.added) > 100, report.counts()
    return folder


def copy_sample(source: Path, target: Path) -> Path:
    """The FAISS sample index copied into ``target`` in the current test's store (``rag migrate``)."""
    if STORE.get("store") != "milvus":
        shutil.copytree(source, target)
        return target
    from rag.store.generation import Snapshot
    from rag.store.manifest import read_manifest
    from rag.store.migrate import copy_index
    from rag.store.stores import open_store

    settings = make_settings(target)
    target.mkdir(parents=True)
    snap = Snapshot(source, read_manifest(source))
    try:
        copy_index(snap, open_store(target, settings), settings.exact_search_limit)
    finally:
        snap.close()
    return target


_SAMPLES: dict[tuple[str, ...], Path] = {}


@pytest.fixture
def sample_index(sample_index_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> rag.NewsIndex:
    """The sample index in the current test's store (read-only)."""
    key = tuple(sorted(STORE.values()))
    if key not in _SAMPLES:
        _SAMPLES[key] = sample_index_dir if not STORE else copy_sample(
            sample_index_dir, tmp_path_factory.mktemp("sample-milvus") / "index")
    return rag.open_index(_SAMPLES[key], make_settings(_SAMPLES[key]), create=False)


@pytest.fixture
def sample_copy(sample_index_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the sample index that a test may change (in the current test's store)."""
    return copy_sample(sample_index_dir, tmp_path / "sample-copy")
