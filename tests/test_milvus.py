"""The Milvus store beside the FAISS one: same answers, `rag migrate` without embedding, readers
keeping their generation, a crashed writer's rows, the network path through `milvus-lite server`,
and secrets. (Every index test also runs on Milvus: tests/conftest.py, index_store.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import rag
from conftest import make_settings, milvus_prefix, run_cli
from rag.retrieve import RetrievalOptions, retrieve

pytest.importorskip("pymilvus", reason="the Milvus store needs pip install 'rag-news[milvus]'")

QUESTIONS = ("Which banks did Facebook contact?", "Welche Banken hat Facebook kontaktiert?",
             "What did Facebook want from the banks?")


def sample_questions(index: rag.NewsIndex, n: int = 6) -> list[str]:
    """Questions from the corpus itself: the headlines of a spread of sample articles."""
    titled = sorted(a.title for a in index.articles() if a.title and not a.title_derived)
    return list(QUESTIONS) + titled[:: max(1, len(titled) // n)][:n]


@pytest.fixture(scope="module")
def migrated(sample_index_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample index copied into Milvus Lite by ``NewsIndex.migrate``, the embedder forbidden."""
    from rag.embed import Embedder

    target = tmp_path_factory.mktemp("migrated") / "index"
    source = rag.open_index(sample_index_dir, make_settings(sample_index_dir), create=False)
    with pytest.MonkeyPatch.context() as mp:
        def forbidden(*args, **kwargs):
            raise AssertionError("migrate must not embed")

        for name in ("embed_documents", "embed_query"):
            mp.setattr(Embedder, name, forbidden, raising=False)
        new = source.migrate("milvus", target)
    assert new.store.name == "milvus" and new.stats().chunks == source.stats().chunks
    return target


def test_migrate_copies_everything_and_searches_alike(sample_index_dir: Path, migrated: Path) -> None:
    faiss_index = rag.open_index(sample_index_dir, make_settings(sample_index_dir), create=False)
    milvus_index = rag.open_index(migrated, make_settings(migrated), create=False)
    manifest = json.loads((migrated / "manifest.json").read_text())
    assert manifest["store"] == "milvus" and manifest["location"]["uri"] == "milvus.db"
    a, b = faiss_index.stats(), milvus_index.stats()
    assert (a.articles, a.chunks, a.sources, a.languages, a.published_from, a.published_to) == \
        (b.articles, b.chunks, b.sources, b.languages, b.published_from, b.published_to)
    assert faiss_index.articles(limit=20, offset=5) == milvus_index.articles(limit=20, offset=5)
    some = faiss_index.articles(limit=3)[0].id
    assert faiss_index.article(some) == milvus_index.article(some)
    for question in sample_questions(faiss_index):
        for mode in ("dense", "sparse", "hybrid"):
            left = [(h.chunk_id, h.story_id) for h in faiss_index.search(question, k=8, mode=mode)]
            right = [(h.chunk_id, h.story_id) for h in milvus_index.search(question, k=8, mode=mode)]
            assert left == right, (question, mode)
        filters = {"language": "de", "since": "2023-10-01"}
        assert [h.chunk_id for h in faiss_index.search(question, k=5, filters=filters)] == \
            [h.chunk_id for h in milvus_index.search(question, k=5, filters=filters)]
        # the answer's passages: merged neighbours, one copy per story naming the others
        left_r, right_r = faiss_index.retrieve(question, k=5), milvus_index.retrieve(question, k=5)
        assert [(h.chunk_id, h.text, h.also_reported_by) for h in left_r.hits] == \
            [(h.chunk_id, h.text, h.also_reported_by) for h in right_r.hits]


def test_answers_cite_the_same_articles(sample_index_dir: Path, migrated: Path) -> None:
    questions = sample_questions(rag.open_index(sample_index_dir, make_settings(sample_index_dir), create=False))
    for question in questions:
        left = rag.answer(question, sample_index_dir, settings=make_settings(sample_index_dir))
        right = rag.answer(question, migrated, settings=make_settings(migrated))
        assert [c.article_id for c in left.citations] == [c.article_id for c in right.citations], question
        assert left.text == right.text
    seed = rag.answer(QUESTIONS[0], migrated, settings=make_settings(migrated))
    assert seed.citations and seed.citations[0].article_id == "facebook-banks-de"


def test_reader_keeps_its_generation_and_old_rows_are_collected(tmp_path: Path, embedder) -> None:
    settings = make_settings(tmp_path / "idx", store="milvus")
    idx = rag.open_index(settings.index_dir, settings)
    idx.add_articles([{"id": "a", "text": "Die Stadtwerke erhöhen den Gaspreis zum Jahresbeginn deutlich."},
                      {"id": "b", "text": "Der Hafen meldet einen Rekord beim Containerumschlag."}])
    old = idx.snapshot()
    before = [h.article_id for h in retrieve(old, idx.embedder, "Gaspreis", RetrievalOptions(k=3)).hits]
    idx.add_articles([{"id": "c", "text": "Die Stadtwerke senken den Gaspreis doch wieder, melden Kunden."}])
    idx.delete("a")
    # the held snapshot (generation 1) is two behind: its rows may be gone; the one before is kept
    prev = idx.store.snapshot()
    assert prev.manifest.generation == 3 and old.manifest.generation == 1
    idx.add_articles([{"id": "d", "text": "Ein neues Museum eröffnet am Hafen."}])
    assert [h.article_id for h in idx.search("Gaspreis", k=1)] == ["c"]
    assert {h.article_id for h in retrieve(prev, idx.embedder, "Gaspreis Hafen",
                                           RetrievalOptions(k=5)).hits} == {"b", "c"}
    assert before and before[0] == "a"
    # after generation 4: a's rows (retired by 3) are seen by neither 3 nor 4, so they are deleted
    client, names = idx.store.client, idx.store.names
    live = client.query(names.articles, filter="gen_from >= 0", output_fields=["id"])
    assert sorted(r["id"] for r in live) == ["b", "c", "d"]
    assert {r["article_id"] for r in client.query(names.chunks, filter="gen_from >= 0", output_fields=["article_id"])} \
        == {"b", "c", "d"}


def test_crashed_writer_is_invisible_and_cleaned_by_the_next(tmp_path: Path, embedder) -> None:
    settings = make_settings(tmp_path / "idx", store="milvus")
    idx = rag.open_index(settings.index_dir, settings)
    idx.add_articles([{"id": "a", "text": "Die Bahn streicht im Winter mehrere Fernverbindungen."}])
    store = idx.store
    writer = store.writer(idx.snapshot(), idx.snapshot().manifest.embed_model, 896, 200, 40, 50_000)
    writer.remove(["a"])
    chunk = rag.Chunk("z", 0, "Zombie-Text eines abgestürzten Schreibers.", 0, 41, 8)
    writer.add(rag.Article(id="z", text=chunk.text), [chunk], idx.embedder.embed_documents([chunk.text]))
    writer._flush()  # written, never published: the process "dies" here (no abort)
    assert [h.article_id for h in idx.search("Bahn Fernverbindungen", k=2)] == ["a"]
    assert idx.stats().articles == 1 and "z" not in {a.id for a in idx.articles()}
    idx.add_articles([{"id": "b", "text": "Ein Orkan legt den Bahnverkehr im Norden lahm."}])
    rows = store.client.query(store.names.articles, filter="gen_from >= 0", output_fields=["id", "gen_to"])
    assert sorted(r["id"] for r in rows) == ["a", "b"] and all(r["gen_to"] > 2 for r in rows)
    assert sorted(h.article_id for h in idx.search("Bahn", k=5)) == ["a", "b"]


def test_network_path_ingest_search_delete_answer_and_cli(milvus_server: str, tmp_path: Path, embedder,
                                                          sample_index_dir: Path) -> None:
    folder = tmp_path / "net"
    settings = make_settings(folder, store="milvus", milvus_uri=milvus_server, milvus_token="root:Milvus",
                             milvus_collection=milvus_prefix(folder))
    idx = rag.open_index(folder, settings)
    report = idx.add_articles([
        {"id": "ecb", "title": "EZB erhöht Leitzins", "text": "Die Europäische Zentralbank erhöht den Leitzins.",
         "language": "de"},
        {"id": "fed", "title": "Fed holds rates", "text": "The Federal Reserve kept interest rates unchanged.",
         "language": "en", "source": "Wire EN"}])
    assert report.ok and sorted(report.added) == ["ecb", "fed"]
    assert idx.search("Did the ECB raise rates?", k=1)[0].article_id == "ecb"
    assert idx.search("rates", k=2, filters={"source": "Wire EN"})[0].article_id == "fed"
    answer = rag.answer("What did the Federal Reserve do with interest rates?", idx, settings=settings)
    assert answer.citations and answer.citations[0].article_id == "fed"
    assert idx.delete(["ecb", "nope"]).deleted == ("ecb",)
    assert [h.article_id for h in idx.search("Zentralbank Leitzins", k=2)] == ["fed"]
    manifest = (folder / "manifest.json").read_text()
    assert json.loads(manifest)["location"]["uri"] == milvus_server and "root:Milvus" not in manifest
    # rag migrate --to milvus://HOST:PORT through the command line, then search there
    target = tmp_path / "moved"
    run_cli("migrate", "--to", milvus_server.replace("http://", "milvus://"), "--into", str(target),
            index=sample_index_dir)
    proc = run_cli("search", "Which banks did Facebook contact?", "--json", index=target)
    hits = json.loads(proc.stdout)["hits"]
    assert hits and hits[0]["article_id"] == "facebook-banks-de"


def test_missing_pymilvus_is_named_and_token_is_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rag.store.milvus import connect, public_uri

    token = "s3cret-milvus-token-value"
    settings = make_settings(tmp_path / "x", store="milvus", milvus_token=token)
    assert token not in repr(settings) and settings.public()["milvus_token"] == "set"
    assert public_uri("http://user:pw@host:19530") == "http://host:19530"
    monkeypatch.setitem(sys.modules, "pymilvus", None)
    with pytest.raises(rag.ConfigError, match=r"pip install 'rag-news\[milvus\]'"):
        connect(str(tmp_path / "m.db"), None, None)
    with pytest.raises(rag.ConfigError, match="RAG_STORE must be one of faiss, milvus"):
        make_settings(tmp_path / "y", store="elastic")


def test_milvus_lite_writes_log_no_grpc_errors(tmp_path: Path, embedder, caplog: pytest.LogCaptureFixture) -> None:
    """pymilvus asks Milvus Lite's in-process gRPC server for a method it lacks; grpc logs each refusal as an
    ERROR with a traceback, which a user of 'rag ingest' or 'rag migrate' would take for a failure."""
    import logging

    with caplog.at_level(logging.INFO):
        index = rag.open_index(tmp_path / "lite", make_settings(tmp_path / "lite", store="milvus"))
        index.add_articles([{"id": "a", "text": "Facebook fragte Banken nach Kundendaten. " * 5}])
        assert index.search("Facebook Banken", k=1)[0].article_id == "a"
        index.delete("a")
        index.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
