"""Embedder backend: a sentence-transformers model (BERT / XLM-R style, mean or CLS
pooling) run on ONNX Runtime, with no torch in the query path.

The first use exports the model once (rag/embed/onnx_export.py, the only part that
imports torch); after that, loading and embedding need only onnxruntime, numpy and
a tokenizer: a SentencePiece copy of a Unigram vocabulary where it gives the same
ids (rag/embed/unigram.py), else the ``tokenizers`` library on the folder's
tokenizer.json. Vectors in fp32
match the sentence-transformers backend's (same prompts, truncation, pooling,
normalisation), so its model_id is the configured name and an index built with
either backend opens with the other. int8 vectors differ slightly: they carry
another model_id (``name@onnx-int8``), so an index is never searched with the
wrong precision."""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.embed import INT8_SUFFIX
from rag.embed.onnx_export import ensure_exported, export_dir
from rag.embed.unigram import ensure_compact
from rag.embed.base import PromptedEmbedder
from rag.errors import EmbeddingModelError
from rag.settings import Settings

log = logging.getLogger(__name__)



def _read_json(path: Path, kind: type[dict[str, Any]] | type[list[Any]] = dict) -> Any:
    """The JSON object (or, with kind=list, array) in ``path``; empty when the file is missing
    or holds another kind."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return kind()
    except (OSError, ValueError) as exc:
        raise EmbeddingModelError(f"cannot read {path}: {exc}") from exc
    return data if isinstance(data, kind) else kind()


def _folder(settings: Settings) -> Path:
    from rag.embed.sentence_transformers import resolve_folder  # no torch: that module imports it lazily

    folder = resolve_folder(settings, settings.embed_model)
    if folder is None:
        raise EmbeddingModelError(f"the onnx backend needs a local model folder or a bundled: model, not "
                                  f"{settings.embed_model!r}; download it into a folder and name that")
    return folder


def _pooling(folder: Path) -> str:
    """"mean" or "cls": the pooling of a Transformer -> Pooling (-> Normalize) pipeline. Other
    pipelines are refused (a Dense layer, say, would be silently skipped)."""
    modules = [m for m in _read_json(folder / "modules.json", list) if isinstance(m, dict)]
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    if (kinds and kinds[0] != "Transformer") or any(k not in {"Transformer", "Pooling", "Normalize"} for k in kinds):
        raise EmbeddingModelError(f"the onnx backend runs Transformer -> Pooling -> Normalize models; "
                                  f"{folder} has {' -> '.join(kinds)}")
    paths = [m.get("path", "") for m, kind in zip(modules, kinds) if kind == "Pooling"]
    config = _read_json(folder / (paths[0] if paths else "1_Pooling") / "config.json")
    enabled = sorted(k for k, v in config.items() if k.startswith("pooling_mode_") and v is True)
    if config.get("include_prompt") is False:
        raise EmbeddingModelError(f"{folder}: pooling that leaves out the prompt is not supported by the onnx backend")
    if enabled in ([], ["pooling_mode_mean_tokens"]):  # no config: sentence-transformers' default, mean
        return "mean"
    if enabled == ["pooling_mode_cls_token"]:
        return "cls"
    raise EmbeddingModelError(f"the onnx backend supports mean or CLS pooling; {folder} uses {', '.join(enabled)}")


def _supported(folder: Path) -> str:
    """The pooling ("mean" or "cls") of a folder this backend runs; EmbeddingModelError naming
    what it cannot run (another pipeline or pooling, no tokenizer.json, lower-casing)."""
    pooling = _pooling(folder)
    if not (folder / "tokenizer.json").is_file():
        raise EmbeddingModelError(f"{folder}: the onnx backend needs a tokenizer.json")
    if _read_json(folder / "sentence_bert_config.json").get("do_lower_case"):
        # sentence-transformers lower-cases before its tokenizer
        raise EmbeddingModelError(f"{folder}: do_lower_case models are not supported by the onnx backend")
    return pooling


def runs_on_onnx(folder: Path) -> bool:
    """Whether this backend can run the sentence-transformers folder (RAG_EMBED_BACKEND=auto
    asks): a Transformer -> Pooling (mean/CLS) -> Normalize pipeline (modules.json) with a
    tokenizer.json and no lower-casing."""
    if not (folder / "modules.json").is_file():
        return False
    try:
        _supported(folder)
    except EmbeddingModelError:
        return False
    return True


def _announcer(settings: Settings) -> Callable[[str], None]:
    """A one-time export takes seconds: say so on stderr when progress is shown, else log it."""
    show = settings.progress if settings.progress is not None else sys.stderr.isatty()

    def announce(message: str) -> None:
        log.info("%s", message)
        if show:
            print(f"rag: {message}", file=sys.stderr, flush=True)
    return announce


class OnnxEmbedder(PromptedEmbedder):
    """Embeds with onnxruntime on the CPU; RAG_ONNX_PRECISION picks fp32 or int8 weights."""

    def __init__(self, settings: Settings) -> None:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EmbeddingModelError(f"RAG_EMBED_BACKEND=onnx needs onnxruntime and tokenizers: {exc}") from None
        from rag.embed.sentence_transformers import resolve_prompts

        name = settings.embed_model
        folder = _folder(settings)
        self._pooling = _supported(folder)
        config = _read_json(folder / "config.json")
        self.max_tokens = int(_read_json(folder / "sentence_bert_config.json").get("max_seq_length") or 512)

        model_file = ensure_exported(folder, export_dir(folder, settings.model_dir), settings.onnx_precision,
                                     _announcer(settings))
        options = ort.SessionOptions()
        options.intra_op_num_threads = settings.onnx_threads
        options.inter_op_num_threads = 1  # a single chain of ops: more threads only contend
        try:
            self._session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/RuntimeException kinds
            raise EmbeddingModelError(f"cannot load the ONNX model {model_file}: {exc}; delete it (and its "
                                      f".json stamp) to export it again") from exc
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._output = self._session.get_outputs()[0].name
        if not {"input_ids", "attention_mask"} <= self._inputs:
            raise EmbeddingModelError(f"{model_file} takes {sorted(self._inputs)}, not input_ids/attention_mask")

        # The same ids from a SentencePiece copy of a Unigram vocabulary where one reproduces
        # them exactly (rag/embed/unigram.py: 60 MB instead of 280 MB for e5's); else tokenizers.
        self._compact = ensure_compact(folder / "tokenizer.json", model_file.parent)
        self._tokenizer: Any = None
        pad_id = config.get("pad_token_id")
        if self._compact is None or pad_id is None:
            try:  # a 15 MB tokenizer.json parses in ~0.7 s: one instance, its truncation set per call
                self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
            except Exception as exc:  # tokenizers raises a plain Exception for bad files
                raise EmbeddingModelError(f"cannot load {folder / 'tokenizer.json'}: {exc}") from exc
            self._tokenizer.no_padding()
            if pad_id is None:
                pad_id = (self._tokenizer.token_to_id("<pad>") or self._tokenizer.token_to_id("[PAD]") or 0)
            if self._compact is not None:
                self._tokenizer = None  # it was only needed for the pad id
        self._pad_id = int(pad_id)
        self.tokenizer_kind = "sentencepiece" if self._compact is not None else "tokenizers"
        self.dim = int(config.get("hidden_size") or self._session.get_outputs()[0].shape[-1])
        prompts = _read_json(folder / "config_sentence_transformers.json").get("prompts") or {}
        self._query_prefix, self._passage_prefix = resolve_prompts(settings, name, prompts)
        self._batch_size = settings.embed_batch_size
        self.model_id = name if settings.onnx_precision == "fp32" else name + INT8_SUFFIX
        self.precision = settings.onnx_precision
        self.folder, self.model_file = folder, model_file
        # Fast tokenizers are not re-entrant, and truncation is set per call; SentencePiece's
        # encode and the session are (onnxruntime allows concurrent run()).
        self._lock = threading.Lock()
        log.info("loaded embedding model %s on onnxruntime (%s, %s; dim %d, max %d tokens, %s threads, %s)",
                 name, settings.onnx_precision, model_file.name, self.dim, self.max_tokens,
                 settings.onnx_threads or "default", self.tokenizer_kind)

    def _ids(self, texts: list[str], special: bool) -> list[list[int]]:
        """Token ids of each text: with the special tokens and truncated to the model's window,
        or (for counting) without either."""
        if self._compact is not None:
            return self._compact.encode(texts, special=special, max_length=self.max_tokens if special else None)
        with self._lock:
            if special:
                self._tokenizer.enable_truncation(self.max_tokens)
            else:
                self._tokenizer.no_truncation()
            return [e.ids for e in self._tokenizer.encode_batch(texts, add_special_tokens=special)]

    def _encode(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        # As sentence-transformers 6 does: the prompt glued before the text, nothing stripped.
        ids = self._ids([prefix + t for t in texts], special=True)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for rows in self._batches([len(i) for i in ids]):
            out[rows] = self._run([ids[i] for i in rows])
        return out

    def _batches(self, lengths: list[int]) -> list[list[int]]:
        """Row numbers, longest first, in batches of at most RAG_EMBED_BATCH padded to their
        own longest row. A batch also ends where a row is under half its longest: one
        512-token outlier must not pad fifteen short texts to 512 (attention is quadratic)."""
        batches: list[list[int]] = []
        for i in sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True):
            if batches and len(batches[-1]) < self._batch_size and 2 * lengths[i] >= lengths[batches[-1][0]]:
                batches[-1].append(i)
            else:
                batches.append([i])
        return batches

    def _run(self, rows: list[list[int]]) -> np.ndarray:
        """Pooled, normalised vectors of one batch of token id lists (one segment each, so
        every token type id is 0)."""
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        types = np.zeros((len(rows), width), dtype=np.int64)
        for r, row in enumerate(rows):
            ids[r, :len(row)] = row
            mask[r, :len(row)] = 1
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = types
        hidden = self._session.run([self._output], feed)[0]
        if self._pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        return [len(i) for i in self._ids(list(texts), special=False)]


__all__ = ["OnnxEmbedder", "runs_on_onnx"]
