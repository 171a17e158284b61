"""Shared fixtures: the real default embedding model (loaded once per
session), the real sample index, and helpers to build small indexes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
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


def make_settings(index_dir: Path, **overrides) -> Settings:
    """Settings from nothing but these arguments. The generator is extractive unless a
    test asks for another: "auto" would pick the local LLM wherever it is installed."""
    configured = overrides.get("openai_base_url") or overrides.get("openai_api_key")
    overrides.setdefault("generator", "auto" if configured else "extractive")
    return Settings.from_env(environ={}, dotenv=None, index_dir=index_dir, progress=False, **overrides)


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


@pytest.fixture
def sample_index(sample_index_dir: Path) -> rag.NewsIndex:
    return rag.open_index(sample_index_dir, make_settings(sample_index_dir), create=False)


@pytest.fixture
def sample_copy(sample_index_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the sample index that a test may change."""
    target = tmp_path / "sample-copy"
    shutil.copytree(sample_index_dir, target)
    return target
