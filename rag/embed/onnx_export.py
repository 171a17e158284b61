"""One-time export of a sentence-transformers folder's transformer to ONNX, for the
``onnx`` embedding backend (rag/embed/onnx_runtime.py).

This is the only place the onnx backend touches torch and transformers, and only
when no current export exists. Each model file has a JSON stamp beside it
(``model.onnx`` + ``model.json``, ``model_int8.onnx`` + ``model_int8.json``) that
records the export version, the precision, the library versions, the source it was
made from and the file's size. A file without a matching stamp (an older export, a
partial copy, a changed source) is exported again. Files are written under a
temporary name and renamed, so a crash never leaves a half-written model that
looks finished; the stamp is written last.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import inspect
import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import EmbeddingModelError

log = logging.getLogger(__name__)

#: Bumped whenever the exported graph changes, so older exports are redone.
EXPORT_VERSION = 1
OPSET = 17
FILES = {"fp32": "model.onnx", "int8": "model_int8.onnx"}
#: Weight files whose change means the export is stale.
_SOURCE_FILES = ("model.safetensors", "pytorch_model.bin", "config.json")
# protobuf's limit for one file; larger models would need external data files.
_MAX_SINGLE_FILE = 2 * 1024**3 - 64 * 1024**2


def export_dir(folder: Path, model_dir: Path) -> Path:
    """Where the exports of ``folder`` live: inside it when it is one of our own converted
    models (under RAG_MODEL_DIR), else under RAG_MODEL_DIR (never inside site-packages or
    a user's model folder)."""
    folder = folder.resolve()
    try:
        folder.relative_to(model_dir.resolve())
        return folder / "onnx"
    except ValueError:
        digest = hashlib.sha1(str(folder).encode("utf-8", "surrogateescape")).hexdigest()[:12]
        return model_dir / "onnx" / f"{folder.name}-{digest}"


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _fingerprint(paths: list[Path]) -> list[list[Any]]:
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in paths if p.is_file()]


def _source(folder: Path, precision: str, target_dir: Path) -> list[list[Any]]:
    """What an export of ``precision`` is made from: the folder's weights (fp32) or the fp32 file (int8)."""
    if precision == "fp32":
        return _fingerprint([folder / name for name in _SOURCE_FILES])
    return _fingerprint([target_dir / FILES["fp32"]])


def stamp_path(model_file: Path) -> Path:
    return model_file.with_suffix(".json")


def is_current(model_file: Path, folder: Path, precision: str) -> bool:
    """True when ``model_file`` is a complete export of ``folder`` by this exporter."""
    try:
        stamp = json.loads(stamp_path(model_file).read_text(encoding="utf-8"))
        size = model_file.stat().st_size
    except (OSError, ValueError):
        return False
    return (isinstance(stamp, dict) and stamp.get("export_version") == EXPORT_VERSION
            and stamp.get("precision") == precision and stamp.get("bytes") == size
            and stamp.get("source") == _source(folder, precision, model_file.parent))


def ensure_exported(folder: Path, target_dir: Path, precision: str,
                    announce: Callable[[str], None] = log.info) -> Path:
    """The ONNX file of ``precision`` for ``folder``, exported (and quantised) first if needed."""
    fp32 = target_dir / FILES["fp32"]
    if not is_current(fp32, folder, "fp32"):
        announce(f"exporting embedding model {folder} to ONNX (once; about 10 s)")
        started = time.perf_counter()
        export_fp32(folder, fp32)
        log.info("exported %s in %.1f s", fp32, time.perf_counter() - started)
    if precision == "fp32":
        return fp32
    int8 = target_dir / FILES["int8"]
    if not is_current(int8, folder, "int8"):
        announce(f"quantising {fp32} to int8 (once; about 10 s)")
        quantize_int8(folder, fp32, int8)
    return int8


@contextlib.contextmanager
def replace_atomically(target: Path) -> Iterator[Path]:
    """A temporary file beside ``target``, renamed onto it when the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        tmp.chmod(0o644)  # mkstemp's 0600 would hide the model from other users of a shared cache
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _write_stamp(model_file: Path, folder: Path, precision: str, **extra: Any) -> None:
    stamp = {"export_version": EXPORT_VERSION, "precision": precision, "opset": OPSET,
             "bytes": model_file.stat().st_size, "source_folder": str(folder),
             "source": _source(folder, precision, model_file.parent),
             "onnxruntime": _version("onnxruntime"), "onnx": _version("onnx"), **extra}
    with replace_atomically(stamp_path(model_file)) as tmp:
        tmp.write_text(json.dumps(stamp, indent=2), encoding="utf-8")


def _sample_inputs(config: dict[str, Any], batch: int, length: int, types: bool) -> dict[str, np.ndarray]:
    """Token ids of ``batch`` rows, the second padded to half length (pads only at the end)."""
    pad = int(config.get("pad_token_id") or 0)
    rng = np.random.default_rng(batch * 1000 + length)
    ids = rng.integers(pad + 3, min(int(config.get("vocab_size", 1000)), 30000), size=(batch, length))
    mask = np.ones_like(ids)
    if batch > 1:
        ids[1, length // 2:], mask[1, length // 2:] = pad, 0
    out = {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64)}
    if types:
        out["token_type_ids"] = np.zeros_like(out["input_ids"])
    return out


def export_fp32(folder: Path, target: Path) -> None:
    """Export the transformer of ``folder`` (its last_hidden_state) with dynamic batch and
    sequence axes, check it against torch on other shapes, and publish it at ``target``."""
    try:
        with replace_atomically(target) as tmp:
            versions = _export(folder, tmp)
        _write_stamp(target, folder, "fp32", **versions)
    except EmbeddingModelError:
        raise
    except Exception as exc:  # torch and transformers raise many kinds
        raise EmbeddingModelError(f"cannot export embedding model {folder} to ONNX: {exc}") from exc


def _export(folder: Path, tmp: Path) -> dict[str, Any]:
    try:
        import torch
        from transformers import AutoModel
    except ImportError as exc:
        raise EmbeddingModelError(f"exporting {folder} to ONNX needs torch and transformers: {exc}") from exc

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    # Eager attention: the plainest graph to trace; the same maths as sdpa.
    model = AutoModel.from_pretrained(str(folder), local_files_only=True, attn_implementation="eager").eval()
    if sum(p.numel() * p.element_size() for p in model.parameters()) > _MAX_SINGLE_FILE:
        raise EmbeddingModelError(f"{folder} is too large for a single-file ONNX export (over 2 GB)")
    types = "token_type_ids" in inspect.signature(model.forward).parameters
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if types else [])

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.inner(**dict(zip(names, inputs))).last_hidden_state

    wrapper = LastHiddenState().eval()
    # The reference is computed before exporting: tracing leaves state behind in the model.
    check = _sample_inputs(config, 3, 11, types)
    with torch.no_grad():
        want = wrapper(*(torch.from_numpy(check[n]) for n in names)).numpy()
        trace = _sample_inputs(config, 2, 6, types)
        with warnings.catch_warnings():  # the TorchScript exporter's deprecation and tracer warnings
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper, tuple(torch.from_numpy(trace[n]) for n in names), str(tmp), dynamo=False,
                opset_version=OPSET, input_names=names, output_names=["last_hidden_state"],
                dynamic_axes={n: {0: "batch", 1: "sequence"} for n in names + ["last_hidden_state"]})

    import onnxruntime as ort

    got = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"]).run(None, check)[0]
    mask = check["attention_mask"].astype(bool)
    error = float(np.abs(got - want)[mask].max())
    if error > 1e-3:  # a trace that baked in the sample's shape
        raise EmbeddingModelError(f"the ONNX export of {folder} does not reproduce torch (max error {error:.3g})")
    return {"torch": torch.__version__, "transformers": _version("transformers"), "check_max_error": error}


class _QuietQuantizer(logging.Filter):
    """quantize_dynamic logs on the root logger: a line per skipped tensor (INFO) and an
    advice to pre-process the model (WARNING). Both are noise here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "root" and (record.levelno < logging.WARNING or
                                               record.getMessage().startswith("Please consider")))


def quantize_int8(folder: Path, fp32: Path, target: Path) -> None:
    """Dynamic int8 quantisation (weights per channel, activations at run time) of ``fp32``."""
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise EmbeddingModelError(f"RAG_ONNX_PRECISION=int8 needs the 'onnx' package: {exc}") from exc
    root, drop = logging.getLogger(), _QuietQuantizer()
    root.addFilter(drop)
    try:
        with replace_atomically(target) as tmp:
            quantize_dynamic(str(fp32), str(tmp), per_channel=True, weight_type=QuantType.QInt8)
        _write_stamp(target, folder, "int8", per_channel=True, weight_type="QInt8")
    except EmbeddingModelError:
        raise
    except Exception as exc:
        raise EmbeddingModelError(f"cannot quantise {fp32} (from {folder}) to int8: {exc}") from exc
    finally:
        root.removeFilter(drop)
