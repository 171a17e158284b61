"""A compact stand-in for a Unigram ``tokenizer.json`` (XLM-R / multilingual-e5): the same
vocabulary as a SentencePiece model, run by the ``sentencepiece`` library.

Why: the ``tokenizers`` library keeps a 250,000-piece Unigram vocabulary in a trie of hash
maps, ~280 MB of RAM and ~0.7 s to parse, more than the int8 ONNX model itself. SentencePiece
holds the same pieces in a double-array trie (~60 MB, ~0.3 s) and encodes ~3x faster.

It is made once, next to the ONNX export, and only kept when it gives exactly the ids of
``tokenizers`` on a probe set (many languages, odd whitespace and control characters, and a
sample of the vocabulary's own pieces). Anything it does not reproduce (another model type,
pre-tokenizer or normalizer) is refused when it is made, and the ONNX backend keeps using
``tokenizers``: this is a speed and memory shortcut, never a second opinion on the ids."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rag.embed.onnx_export import replace_atomically

log = logging.getLogger(__name__)

#: Bump when the conversion changes: older files are made again.
FORMAT_VERSION = 1
MODEL_FILE = "tokenizer.spm"
PROBES = [
    "Which banks did Facebook contact?", "query: Wer streikt bei der Bahn?",
    "passage: Konkrete Anfragen gingen an JPMorgan Chase, Wells Fargo & Co, Citigroup und U.S. Bancorp.",
    "  Ünïcödé   straße\tﬁ Ⅳ 東京 ", " leading space", "trailing  ", " ", "", "a\u00a0b\u2009c",
    "tab\tnew\nline\r\nend", "\x00\x01ctrl\x7f\x8f", "zero\u200bwidth\ufeffbom", "▁already▁marked▁", "a  b   c",
    "emoji 😀🤖 and 👍🏽 flags 🇩🇪", "Ελληνικά κείμενα, русский текст, українська мова, polski tekst.",
    "中文新闻报道。日本語のニュース。한국어 뉴스 기사.", "العربية نص إخباري", "עברית טקסט", "हिन्दी समाचार",
    "ไทย ข่าว", "Tiếng Việt có dấu", "Türkçe İstanbul ıİ", "1.234,56 € | $5.00 | 3/4 | ½ | 10⁵ | ①",
    "URL https://example.com/a?b=c&d=e#f user@mail.de", "<b>html</b> &amp; \"quotes\" 'single' «guillemets»",
    "literal <s> and </s> and <mask> tokens", "<unk><pad>", "x<mask>y",
]


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _rust_regex(pattern: str) -> re.Pattern[str]:
    """A ``tokenizers`` Replace pattern (Rust syntax: ``\\x{1f}``) as a Python regex."""
    return re.compile(re.sub(r"\\x\{([0-9a-fA-F]+)\}", lambda m: f"\\U{int(m.group(1), 16):08x}", pattern))


def _normalizer(spec: dict[str, Any] | None) -> Callable[[str], str] | None:
    """The tokenizer.json normalizer as a function, if it is made of steps reproduced here."""
    steps: list[Callable[[str], str]] = []
    for step in ([] if spec is None else spec.get("normalizers", [spec]) if spec.get("type") == "Sequence" else [spec]):
        kind = step.get("type")
        if kind in {"NFC", "NFD", "NFKC", "NFKD"}:
            steps.append(lambda t, form=kind: unicodedata.normalize(form, t))
        elif kind == "Replace" and isinstance(step.get("content"), str):
            pattern, content = step.get("pattern", {}), step["content"]
            if "Regex" in pattern:
                regex = _rust_regex(pattern["Regex"])
                steps.append(lambda t, r=regex, c=content: r.sub(c, t))
            elif "String" in pattern:
                steps.append(lambda t, s=pattern["String"], c=content: t.replace(s, c))
            else:
                return None
        else:
            return None

    def normalize(text: str) -> str:
        for fn in steps:
            text = fn(text)
        return text
    return normalize


class CompactUnigram:
    """Encodes like the tokenizer.json it was made from: ids with or without the special
    tokens around them, truncated like ``tokenizers`` (the specials stay)."""

    def __init__(self, model: Path | bytes, tokenizer_json: dict[str, Any]) -> None:
        """``model``: the SentencePiece model file, or its bytes."""
        import sentencepiece as spm

        normalize = _normalizer(tokenizer_json.get("normalizer"))
        post = tokenizer_json.get("post_processor") or {}
        template = post.get("single") or []
        if normalize is None:
            raise ValueError("unsupported normalizer")
        specials = {k: v["ids"] for k, v in post.get("special_tokens", {}).items()}
        kinds = ["A" if "Sequence" in t else "S" for t in template]
        if kinds.count("A") != 1 or any("SpecialToken" not in t and "Sequence" not in t for t in template):
            raise ValueError("unsupported post-processor")
        cut = kinds.index("A")
        self._before = [i for t in template[:cut] for i in specials[t["SpecialToken"]["id"]]]
        self._after = [i for t in template[cut + 1:] for i in specials[t["SpecialToken"]["id"]]]
        self._normalize = normalize
        self._sp = (spm.SentencePieceProcessor(model_proto=model) if isinstance(model, bytes)
                    else spm.SentencePieceProcessor(model_file=str(model)))
        # Added tokens ("<s>", "<mask>") written in the text itself are matched before
        # normalisation, as tokenizers does; the text between them is encoded piece by piece.
        added = {t["content"]: t["id"] for t in tokenizer_json.get("added_tokens", [])
                 if not t.get("normalized") and not t.get("lstrip") and not t.get("rstrip")}
        if len(added) != len(tokenizer_json.get("added_tokens", [])):
            raise ValueError("unsupported added tokens")
        self._added = added
        self._added_re = re.compile("|".join(re.escape(c) for c in sorted(added, key=len, reverse=True))) \
            if added else None

    def _prepare(self, text: str) -> str:
        # Metaspace with prepend_scheme "always" adds "▁" unless the text already starts with one.
        text = self._normalize(text)
        return text if not text or text.startswith(" ") else " " + text

    def _encode_one(self, text: str) -> list[int]:
        assert self._added_re is not None
        ids: list[int] = []
        last = 0
        for m in self._added_re.finditer(text):
            if m.start() > last:
                ids += self._sp.encode(self._prepare(text[last:m.start()]))
            ids.append(self._added[m.group()])
            last = m.end()
        if last < len(text):
            ids += self._sp.encode(self._prepare(text[last:]))
        return ids

    def encode(self, texts: Sequence[str], *, special: bool, max_length: int | None = None) -> list[list[int]]:
        if self._added_re is not None and any(self._added_re.search(t) for t in texts):
            pieces = [self._encode_one(t) if self._added_re.search(t) else self._sp.encode(self._prepare(t))
                      for t in texts]
        else:
            pieces = self._sp.encode([self._prepare(t) for t in texts])
        if not special:
            return pieces
        room = None if max_length is None else max(0, max_length - len(self._before) - len(self._after))
        return [self._before + (ids if room is None else ids[:room]) + self._after for ids in pieces]


def _model_proto(tokenizer_json: dict[str, Any]) -> bytes | None:
    """The SentencePiece model for a Unigram + Metaspace tokenizer.json, or None."""
    model, pre = tokenizer_json.get("model") or {}, tokenizer_json.get("pre_tokenizer") or {}
    if model.get("type") != "Unigram" or model.get("byte_fallback") or not isinstance(model.get("vocab"), list):
        return None
    if pre.get("type") != "Metaspace" or pre.get("replacement") != "▁" or pre.get("prepend_scheme") != "always" \
            or pre.get("split") is not True:
        return None
    from sentencepiece import sentencepiece_model_pb2 as pb

    piece_type = pb.ModelProto.SentencePiece
    added = {t["id"]: t for t in tokenizer_json.get("added_tokens", [])}
    unk_id = model.get("unk_id")
    proto = pb.ModelProto()
    for i, (text, score) in enumerate(model["vocab"]):
        piece = proto.pieces.add()
        piece.piece, piece.score = text, score
        if i == unk_id:
            piece.type = piece_type.UNKNOWN
        elif i in added and added[i].get("special"):
            piece.type = piece_type.CONTROL  # never produced from text, as in tokenizers
        else:
            piece.type = piece_type.NORMAL
    proto.trainer_spec.model_type = pb.TrainerSpec.UNIGRAM
    proto.trainer_spec.unk_id = unk_id if unk_id is not None else -1
    proto.trainer_spec.bos_id = proto.trainer_spec.eos_id = proto.trainer_spec.pad_id = -1
    proto.trainer_spec.split_by_whitespace = True
    proto.normalizer_spec.name = "identity"  # normalised in Python first, as the tokenizer.json says
    proto.normalizer_spec.add_dummy_prefix = False  # ditto ("always" prepend, see _prepare)
    proto.normalizer_spec.remove_extra_whitespaces = False
    proto.normalizer_spec.escape_whitespaces = True
    return proto.SerializeToString()


def ensure_compact(tokenizer_path: Path, target_dir: Path) -> CompactUnigram | None:
    """The compact tokenizer for ``tokenizer_path``, made (and verified) once in ``target_dir``;
    None when sentencepiece is missing or the tokenizer is not one it reproduces exactly."""
    try:
        import sentencepiece  # noqa: F401
    except ImportError:
        return None
    model_file = target_dir / MODEL_FILE
    stamp_file = target_dir / (MODEL_FILE + ".json")
    source = {"format_version": FORMAT_VERSION, "tokenizer_json_sha256": _digest(tokenizer_path)}
    try:
        stamp = json.loads(stamp_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        stamp = None
    if isinstance(stamp, dict) and {k: stamp.get(k) for k in source} == source:
        if not stamp.get("exact"):
            return None  # checked before: it does not reproduce this tokenizer
        try:  # the stamp keeps the small parts of tokenizer.json: no 15 MB parse at load
            return CompactUnigram(model_file, stamp["config"])
        except (OSError, RuntimeError, ValueError, KeyError, TypeError):
            pass  # damaged: make it again below
    try:
        data = json.loads(tokenizer_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return _make(tokenizer_path, data, model_file, stamp_file, source)


def _make(tokenizer_path: Path, data: dict[str, Any], model_file: Path, stamp_file: Path,
          source: dict[str, Any]) -> CompactUnigram | None:
    """Convert, check against tokenizers, and keep the model only if it is exact; the stamp
    records the verdict either way, so a refusal is not re-checked at every load."""
    proto = _model_proto(data)
    compact = None
    if proto is not None:
        try:
            compact = CompactUnigram(proto, data)
            if _mismatch(tokenizer_path, data, compact):
                compact = None
            else:
                with replace_atomically(model_file) as tmp:
                    tmp.write_bytes(proto)
        except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
            log.info("no compact tokenizer for %s: %s", tokenizer_path, exc)
            compact = None
    try:
        config = {k: data.get(k) for k in ("normalizer", "post_processor", "added_tokens")}
        with replace_atomically(stamp_file) as tmp:
            tmp.write_text(json.dumps(source | {"exact": compact is not None, "config": config}), encoding="utf-8")
    except OSError as exc:
        log.info("cannot record the compact tokenizer check in %s: %s", stamp_file, exc)
    return compact


def _mismatch(tokenizer_path: Path, data: dict[str, Any], compact: CompactUnigram) -> str | None:
    """The first probe on which the compact tokenizer's ids differ from ``tokenizers``'."""
    from tokenizers import Tokenizer

    reference = Tokenizer.from_file(str(tokenizer_path))
    reference.no_padding()
    reference.no_truncation()
    vocab = [piece for piece, _ in data["model"]["vocab"]]
    step = max(1, len(vocab) // 20_000)
    sample = [" ".join(vocab[i:i + 3]).replace("▁", " ") for i in range(0, len(vocab), step)]
    probes = PROBES + [p + " " + q for p, q in zip(PROBES, reversed(PROBES))] + sample
    for special in (False, True):
        want = [e.ids for e in reference.encode_batch(probes, add_special_tokens=special)]
        got = compact.encode(probes, special=special)
        for text, a, b in zip(probes, want, got):
            if a != b:
                log.info("compact tokenizer differs from %s on %r; keeping tokenizers", tokenizer_path, text[:80])
                return text
    return None


__all__ = ["CompactUnigram", "ensure_compact"]
