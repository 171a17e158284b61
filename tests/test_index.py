"""The index store with the real model, real FAISS and real SQLite."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

import rag
from rag.store.lock import WriteLock

from conftest import BANKS, make_settings, skip_on_milvus

#: Every test here runs on each store (tests/conftest.py: index_store).
pytestmark = pytest.mark.usefixtures("each_store")

ARTICLES = [
    {"id": "ecb", "title": "EZB erhöht Leitzins", "source": "Wire DE", "language": "de", "published_at": "2023-03-16",
     "text": "Die Europäische Zentralbank hat den Leitzins um einen halben Prozentpunkt angehoben. "
             "Die Inflation im Euroraum bleibt hoch."},
    {"id": "fed", "title": "Fed pauses rate hikes", "source": "Wire EN", "language": "en", "published_at": "2023-06-14",
     "text": "The Federal Reserve kept interest rates unchanged in June after ten consecutive increases."},
    {"id": "apple", "title": "Apple unveils headset", "source": "Wire EN", "published_at": "2023-06-05T17:00:00Z",
     "text": "Apple introduced the Vision Pro mixed reality headset at its developer conference."},
    {"id": "fussball", "title": "Bayern gewinnt", "source": "Sport", "published_at": "2023-05-27",
     "text": "Der FC Bayern München hat am letzten Spieltag die deutsche Meisterschaft gewonnen."},
]


def test_add_search_and_manifest(index: rag.NewsIndex) -> None:
    report = index.add_articles(ARTICLES)
    assert sorted(report.added) == ["apple", "ecb", "fed", "fussball"] and report.ok
    hits = index.search("Did the European Central Bank raise interest rates?", k=2)
    assert hits[0].article_id == "ecb" and hits[0].score > hits[1].score
    assert isinstance(hits[0], rag.Hit) and hits[0].title == "EZB erhöht Leitzins"
    manifest = json.loads((index.folder / "manifest.json").read_text())
    assert manifest["embedding"] == {"model": index.settings.embed_model + "@onnx-int8", "dim": 896}  # int8 ONNX
    assert manifest["counts"] == {"articles": 4, "chunks": 4}
    assert manifest["vector_index"]["kind"] == "flat"
    if index.store.name == "milvus":  # no generation folder: the manifest names the collections, not the token
        assert manifest["store"] == "milvus" and not (index.folder / manifest["data_dir"]).exists()
        assert set(manifest["location"]) == {"uri", "db", "prefix", "collections"}
        assert manifest["location"]["uri"] == (index.settings.milvus_uri or "milvus.db")
        assert len(manifest["location"]["collections"]) == 5 and not manifest["files"]
    else:
        assert "store" not in manifest  # the FAISS manifest is as it always was
        data = index.folder / manifest["data_dir"]
        assert sorted(p.name for p in data.iterdir()) == ["bm25", "chunks.faiss", "news.sqlite", "vector_ids.npy",
                                                          "vectors.npy"]
        assert set(manifest["files"]) >= {"news.sqlite", "chunks.faiss", "bm25/bm25_ids.npy"}
    stats = index.stats()
    assert stats.articles == 4 and stats.sources["Wire EN"] == 2 and stats.languages["de"] == 2


def test_offsets_slice_back_into_article_text(sample_index: rag.NewsIndex) -> None:
    hits = sample_index.search("Google Amazon Finanzdienste", k=10)
    for hit in hits:
        article = sample_index.article(hit.article_id)
        assert article.text[hit.start:hit.end] == hit.text


def test_reingest_unchanged_updated_and_delete(index: rag.NewsIndex, tmp_path: Path) -> None:
    folder = tmp_path / "news"
    folder.mkdir()
    story = folder / "story.md"
    story.write_text("# Streik bei der Bahn\n\nDie Lokführer streiken ab Montag für mehr Lohn.\n", encoding="utf-8")
    (folder / "other.txt").write_text("Der Bundestag debattiert über den Haushalt 2024.", encoding="utf-8")
    first = index.ingest([folder])
    assert len(first.added) == 2 and first.counts()["chunks_added"] == 2
    again = index.ingest([folder])
    assert again.counts() | {"unchanged": 0} == {"added": 0, "updated": 0, "unchanged": 0, "failed": 0,
                                                  "duplicates": 0, "skipped": 0, "chunks_added": 0}
    assert len(again.unchanged) == 2
    story.write_text("# Streik bei der Bahn\n\nDer Streik der Lokführer ist beendet, die Züge fahren wieder.\n",
                     encoding="utf-8")
    changed = index.ingest([folder])
    (story_id,) = changed.updated
    assert index.stats().articles == 2 and index.stats().chunks == 2
    hits = index.search("Are the trains running again?", k=5)
    assert [h.text for h in hits if h.article_id == story_id] == [
        "Der Streik der Lokführer ist beendet, die Züge fahren wieder."]
    generation = index.stats().generation
    assert index.delete([story_id, "no-such-article"]) == rag.DeleteReport((story_id,), ("no-such-article",))
    assert index.stats().articles == 1 and index.stats().generation == generation + 1
    assert all(h.article_id != story_id for h in index.search("Streik Bahn", k=5))
    # Idempotent: deleting it again changes nothing and publishes nothing.
    assert index.delete(story_id) == rag.DeleteReport((), (story_id,))
    assert index.stats().generation == generation + 1


def test_exact_duplicates_are_reported_not_indexed(index: rag.NewsIndex, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Identischer Artikeltext über die Wahl in Berlin.", encoding="utf-8")
    (tmp_path / "copy of a.txt").write_text("Identischer Artikeltext über die Wahl in Berlin.", encoding="utf-8")
    report = index.ingest([tmp_path / "a.txt", tmp_path / "copy of a.txt"])
    assert len(report.added) == 1 and len(report.duplicates) == 1
    assert report.duplicates[0].existing_id == report.added[0]
    later = index.add_articles([{"id": "other-name", "text": "Identischer Artikeltext über die Wahl in Berlin."}])
    assert later.duplicates[0].existing_id == report.added[0] and not later.added
    assert index.stats().articles == 1


def test_bad_files_do_not_stop_the_rest(index: rag.NewsIndex, tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("Ein guter Artikel über Windkraft in Norddeutschland.", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    (tmp_path / "binary.html").write_bytes(b"\x00\x01\x02" * 100)
    (tmp_path / "lines.jsonl").write_text('{"text": "Solarstrom erreicht einen Rekord."}\n{oops\n', encoding="utf-8")
    report = index.ingest([tmp_path, tmp_path / "missing.txt"])
    assert len(report.added) == 2
    reasons = {Path(f.path.split(":line")[0]).name: f.reason for f in report.failed}
    assert reasons == {"binary.html": "binary file, not text", "empty.txt": "empty file",
                       "lines.jsonl": "malformed JSON on line 2: Expecting property name enclosed in double quotes",
                       "missing.txt": "no such file or folder"}


def test_filters(index: rag.NewsIndex) -> None:
    index.add_articles(ARTICLES)
    q = "news"
    assert {h.article_id for h in index.search(q, k=10, filters={"source": "Wire EN"})} == {"fed", "apple"}
    assert {h.article_id for h in index.search(q, k=10, filters={"language": ["de"]})} == {"ecb", "fussball"}
    assert {h.article_id for h in index.search(q, k=10, filters={"since": "2023-06-01"})} == {"fed", "apple"}
    assert {h.article_id for h in index.search(q, k=10, filters={"until": "2023-06-05"})} == {"ecb", "apple",
                                                                                            "fussball"}
    assert {h.article_id for h in index.search(q, k=10, filters={"article_ids": ["fed"]})} == {"fed"}
    assert index.search(q, k=10, filters={"source": "nobody"}) == []
    with pytest.raises(rag.InvalidFilterError, match="unknown filter 'colour'"):
        index.search(q, filters={"colour": "red"})
    with pytest.raises(rag.InvalidFilterError, match="not a date"):
        index.search(q, filters={"since": "last tuesday"})


def test_model_mismatch_is_a_clear_error(index: rag.NewsIndex) -> None:
    index.add_articles(ARTICLES[:1])
    other = make_settings(index.folder, embed_model="bundled:all-MiniLM-L6-v2")
    with pytest.raises(rag.ModelMismatchError) as err:
        rag.open_index(index.folder, other)
    assert "bundled:multilingual-e5-small+use-m3" in str(err.value)
    assert "bundled:all-MiniLM-L6-v2" in str(err.value)


def test_missing_index_without_create(tmp_path: Path) -> None:
    with pytest.raises(rag.IndexNotFoundError, match="no index in"):
        rag.open_index(tmp_path / "nothing", make_settings(tmp_path), create=False)


def test_tampered_manifest_and_truncated_files(sample_copy: Path) -> None:
    skip_on_milvus("damaged FAISS, SQLite and manifest files")
    settings = make_settings(sample_copy)
    manifest_path = sample_copy / "manifest.json"
    good = manifest_path.read_text()
    manifest = json.loads(good)
    data = sample_copy / manifest["data_dir"]

    manifest_path.write_text(good[: len(good) // 2])
    with pytest.raises(rag.IndexCorruptError, match="not valid JSON"):
        rag.open_index(sample_copy, settings)
    for change, message in (({"data_dir": "../../etc"}, "not a generation folder"),
                            ({"format_version": 99}, "newer than this program"),
                            ({"counts": {"articles": "many", "chunks": 1}}, "mistyped")):
        manifest_path.write_text(json.dumps(manifest | change))
        with pytest.raises(rag.IndexCorruptError, match=message):
            rag.open_index(sample_copy, settings).stats()
    manifest_path.write_text(json.dumps(manifest | {"counts": {"articles": 3, "chunks": manifest["counts"]["chunks"]}}))
    with pytest.raises(rag.IndexCorruptError, match="inconsistent"):
        rag.open_index(sample_copy, settings).stats()
    manifest_path.write_text(good)

    for name in ("chunks.faiss", "news.sqlite", "vectors.npy"):
        path = data / name
        original = path.read_bytes()
        path.write_bytes(original[: len(original) // 3])
        with pytest.raises(rag.IndexCorruptError, match="damaged"):
            rag.open_index(sample_copy, settings).stats()
        # Same size but garbage inside: caught by the readers themselves.
        path.write_bytes(b"\x07" * len(original))
        with pytest.raises(rag.IndexCorruptError):
            rag.open_index(sample_copy, settings).search("Facebook")
        path.write_bytes(original)
    assert rag.open_index(sample_copy, settings).search("Facebook", k=1)


def test_second_writer_is_refused_with_pid(index: rag.NewsIndex) -> None:
    index.add_articles(ARTICLES[:1])
    with WriteLock(index.folder):
        with pytest.raises(rag.IndexLockedError, match=f"locked by PID {os.getpid()}"):
            index.add_articles(ARTICLES[1:2])
    assert index.add_articles(ARTICLES[1:2]).added == ("fed",)


def test_failed_write_leaves_previous_generation(index: rag.NewsIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    index.add_articles(ARTICLES[:2])
    before = (index.folder / "manifest.json").read_text()
    import rag.store.generation as generation
    import rag.store.milvus as milvus

    def boom(*args, **kwargs):
        raise OSError("disk full")

    if index.store.name == "milvus":  # fails after the rows are written, before the meta row names them
        monkeypatch.setattr(milvus, "regroup", boom)
    monkeypatch.setattr(generation.vec, "save_index", boom)
    with pytest.raises(OSError, match="disk full"):
        index.add_articles(ARTICLES[2:])
    assert (index.folder / "manifest.json").read_text() == before
    if index.store.name == "milvus":  # the aborted writer's rows are gone, the retired ones back
        client, names = index.store.client, index.store.names
        for name in (names.articles, names.chunks, names.stories):
            rows = client.query(name, filter="gen_from >= 0", output_fields=["gen_from", "gen_to"])
            assert rows and all(r["gen_from"] == 1 and r["gen_to"] > 1 for r in rows)
    else:
        assert sorted(p.name for p in index.folder.iterdir() if p.name.startswith("gen-")) == ["gen-000001"]
    fresh = rag.open_index(index.folder, index.settings)
    assert fresh.stats().articles == 2


def test_reader_sees_new_generation_from_other_writer(sample_copy: Path) -> None:
    reader = rag.open_index(sample_copy, make_settings(sample_copy))
    n = reader.stats().articles
    writer = rag.open_index(sample_copy, make_settings(sample_copy))
    writer.add_articles([{"id": "late", "text": "Späte Meldung: Der Hafen von Hamburg meldet Rekordumschlag."}])
    assert reader.stats().articles == n + 1
    assert reader.search("Hamburg port record", k=1)[0].article_id == "late"


def test_large_index_switches_to_hnsw(tmp_path: Path, embedder) -> None:
    settings = make_settings(tmp_path / "idx", exact_search_limit=5)
    idx = rag.open_index(settings.index_dir, settings)
    idx.add_articles(ARTICLES + [{"text": f"Kurzmeldung Nummer {i}: Wetter in Stadt {i} sonnig."} for i in range(6)])
    if idx.store.name == "faiss":  # Milvus picks its own index (FLAT in Milvus Lite)
        assert json.loads((settings.index_dir / "manifest.json").read_text())["vector_index"]["kind"] == "hnsw"
    assert idx.search("European Central Bank interest rate", k=1)[0].article_id == "ecb"
    assert {h.article_id for h in idx.search("rates", k=5, filters={"source": "Wire EN"})} == {"fed", "apple"}


def test_catalog_is_plain_sqlite_and_no_pickle(sample_index_dir: Path) -> None:
    skip_on_milvus("the FAISS store's files")
    manifest = json.loads((sample_index_dir / "manifest.json").read_text())
    data = sample_index_dir / manifest["data_dir"]
    db = sqlite3.connect(data / "news.sqlite")
    (n,) = db.execute("SELECT count(*) FROM chunks WHERE article_id = 'facebook-banks-de'").fetchone()
    assert n >= 5
    (text,) = db.execute("SELECT text FROM chunks WHERE text LIKE '%JPMorgan%'").fetchone()
    assert all(b in text for b in BANKS)
    vectors = np.load(data / "vectors.npy", allow_pickle=False)
    assert vectors.shape == (manifest["counts"]["chunks"], manifest["embedding"]["dim"])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    for path in sample_index_dir.rglob("*"):
        assert path.suffix not in {".pkl", ".pickle"}


# ---- the ingest plan and report ----
def test_plan_sorts_a_batch_against_the_index() -> None:
    from rag.pipeline import plan

    def art(id_: str, text: str, title: str = "") -> rag.Article:
        from rag.ingest.articles import to_article
        from rag.ingest.readers import Record

        return to_article(Record({"id": id_, "text": text, "title": title}, id_, id_, False), ("en",))[0]

    old, same, edited = art("old", "Old text."), art("same", "Same text."), art("edited", "New text.")
    known = {"same": same.content_hash, "edited": art("edited", "Edited before.").content_hash}
    owners = {art("x", "Held elsewhere.").text_hash: "holder"}
    batch = [old, same, edited, art("copy", "Held elsewhere."), art("twin", "Old text."),
             art("old", "Old text, second version.")]  # the same id twice: the last wins
    done = plan(batch, known, owners)
    # "twin" repeats the first "old" text, which the second "old" replaced: not a duplicate
    assert [a.id for a in done.added] == ["old", "twin"] and done.added[0].text == "Old text, second version."
    assert [a.id for a in done.updated] == ["edited"] and done.unchanged == ("same",)
    assert [(d.article_id, d.existing_id) for d in done.duplicates] == [("copy", "holder")]
    assert done.todo == done.added + done.updated


def test_report_builder_keeps_a_repeated_note_once() -> None:
    from rag.pipeline import ReportBuilder

    builder = ReportBuilder()
    for n in range(40_000):
        builder.failed.append(rag.Failure(f"rows.csv:{n}", "no text"))
        builder.note("rows.csv: decoded as Windows-1252")
    report = builder.build()
    assert len(report.failed) == 40_000 and report.notes == ("rows.csv: decoded as Windows-1252",)


# ---- index format versions ----
FORMAT_1 = Path(__file__).parent / "data" / "index-format-1"


def test_index_of_the_previous_format_opens_and_upgrades(tmp_path: Path, embedder, caplog) -> None:
    import shutil

    from rag.store.manifest import FORMAT_VERSION

    folder = tmp_path / "old"
    shutil.copytree(FORMAT_1, folder)
    settings = make_settings(folder)
    old = rag.open_index(folder, settings, create=False)
    assert json.loads((folder / "manifest.json").read_text())["format_version"] == 1 < FORMAT_VERSION
    with caplog.at_level("WARNING"):
        # its BM25 dropped "war" (a German stop word) from every text; re-tokenised in memory it is found
        assert [h.article_id for h in old.search("Who won the war?", k=1, mode="sparse")] == ["war-en"]
    assert "older version" in caplog.text
    before = old.stats()
    assert old.upgrade() is True
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION and manifest["rag_version"] and manifest["build"]["faiss"]
    assert (folder / manifest["data_dir"] / "bm25" / "tokenizer.json").exists()
    after = rag.open_index(folder, settings, create=False)
    assert (after.stats().articles, after.stats().chunks) == (before.articles, before.chunks) == (2, 2)
    assert [h.article_id for h in after.search("Which banks did Facebook ask?", k=1)] == ["banken-de"]
    assert after.upgrade() is False  # already current


# ---- chunks and their vectors ----
CITIES = ["Hamburg", "München", "Köln", "Leipzig", "Dresden", "Bremen", "Kiel", "Mainz", "Erfurt", "Potsdam"]
TOPICS = ["Die Stadtwerke erhöhen die Wasserpreise um {n} Prozent.",
          "Der Stadtrat beschließt {n} neue Kitas bis zum Jahr 2030.",
          "Die Feuerwehr rückte am Wochenende zu {n} Einsätzen aus.",
          "Im Zoo kamen in diesem Frühjahr {n} Jungtiere zur Welt.",
          "Die Straßenbahnlinie {n} fährt ab Montag im Zehnminutentakt.",
          "Das Theater zeigt ab Herbst {n} Premieren in der neuen Spielzeit."]


def test_chunks_and_vectors_stay_aligned_across_embedding_slices(tmp_path: Path) -> None:
    """Chunks are embedded sorted by length, EMBED_SLICE at a time, and put back in order:
    every stored vector must belong to its own chunk, and progress must end at the exact
    chunk count. e5 in fp32: int8 vectors move by ~0.003 with their batch companions (the
    activations' scale is dynamic), fp32 ones do not, so the check can be exact."""
    from rag.embed import load_embedder
    from rag.pipeline import EMBED_SLICE

    settings = make_settings(tmp_path / "index", chunk_tokens=24, chunk_overlap=0,
                             embed_model="bundled:multilingual-e5-small", onnx_precision="fp32")
    embedder = load_embedder(settings)
    articles = [{"id": f"{city}-{i}", "text": " ".join(t.format(n=3 + i * 7 + k) + f" Das meldet {city}."
                                                     for k, t in enumerate(TOPICS))}
                for i, city in enumerate(CITIES * 10)]
    events: list[tuple[str, int, int]] = []
    idx = rag.open_index(settings.index_dir, settings)
    report = idx.add_articles(articles, progress=lambda stage, done, total: events.append((stage, done, total)))
    assert report.ok and len(report.added) == len(articles)
    assert report.chunks_added > 4 * EMBED_SLICE  # several slices, reordered by length
    embedding = [(done, total) for stage, done, total in events if stage == "embedding"]
    assert [d for d, _ in embedding] == sorted(d for d, _ in embedding)
    assert embedding[-1] == (report.chunks_added, report.chunks_added)

    for question in ("Wie viele Premieren zeigt das Theater in Kiel?", "Wasserpreise in Dresden",
                     "Feuerwehr Einsätze Bremen am Wochenende"):
        hits = idx.search(question, k=5, mode="dense")
        recomputed = embedder.embed_documents([h.text for h in hits]) @ embedder.embed_query(question)
        assert [h.similarity for h in hits] == pytest.approx(recomputed.tolist(), abs=1e-4)


def test_a_chunking_failure_fails_the_ingest_and_writes_nothing(index: rag.NewsIndex,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import rag.pipeline as rp

    real = rp.chunk_article

    def chunk_article(article, *args, **kwargs):
        if article.id == "b":
            raise RuntimeError("chunker broke on b")
        return real(article, *args, **kwargs)

    monkeypatch.setattr(rp, "chunk_article", chunk_article)
    with pytest.raises(RuntimeError, match="chunker broke on b"):
        index.add_articles([{"id": x, "text": f"Artikel {x}: Die Bahn streikt am Montag im Fernverkehr."}
                            for x in "abc"])
    assert index.snapshot() is None or index.stats().articles == 0
