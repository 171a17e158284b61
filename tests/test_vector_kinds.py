"""The IVF-PQ vector index kind on a real index (the sample corpus, the real embedder): chosen by
size, searches that agree with exact search, filters, deletes, updates and reopening."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import rag
from rag.store import generation
from rag.store import vectors as vec
from tests.conftest import make_settings

QUESTIONS = ["Which banks did Facebook contact?", "European Central Bank interest rates", "Wetter in Wien",
             "Fußball Bundesliga Ergebnis", "elections and the government", "stock market prices fall",
             "Klimawandel und Energie", "technology companies and smartphones"]


def _ivfpq_index(folder: Path) -> rag.NewsIndex:
    """The sample copy with a low IVF-PQ threshold: the next write rebuilds it as IVF-PQ."""
    settings = make_settings(folder, exact_search_limit=5, hnsw_limit=10)
    idx = rag.open_index(folder, settings, create=False)
    idx.add_articles([{"id": "late", "text": "Späte Meldung: Der Hafen von Hamburg meldet Rekordumschlag."}])
    return idx


def _kind(folder: Path) -> str:
    return json.loads((folder / "manifest.json").read_text())["vector_index"]["kind"]


def _recall(snap: generation.Snapshot, embedder, allowed: np.ndarray | None = None) -> float:
    found = []
    for q in QUESTIONS:
        qv = embedder.embed_query(q)
        exact = {r for r, _ in vec.exact_search(snap.vectors, qv, 10, allowed)}
        got = vec.search(snap.index, qv, 10, allowed, snap.vectors)
        assert len(got) == len(exact)
        exact_scores = dict(vec.exact_search(snap.vectors, qv, len(snap.vectors.ids)))
        for rowid, score in got:  # re-scored exactly from the raw vectors, not PQ estimates
            assert score == pytest.approx(exact_scores[rowid], abs=1e-5)
        found.append(len({r for r, _ in got} & exact) / len(exact))
    return float(np.mean(found))


def test_ivfpq_is_chosen_by_size_and_matches_exact_search(sample_copy: Path, embedder) -> None:
    assert vec.choose_kind(5, 5, 10) == "flat" and vec.choose_kind(10, 5, 10) == "hnsw"
    assert vec.choose_kind(11, 5, 10) == "ivfpq" and vec.choose_kind(10**7, 5, None) == "hnsw"
    idx = _ivfpq_index(sample_copy)
    assert _kind(sample_copy) == "ivfpq" and idx.stats().vector_index == "ivfpq"
    snap = idx.snapshot()
    assert snap is not None and vec.ivf_of(snap.index) is not None
    n, dim = snap.vectors.vectors.shape
    # the FAISS file holds codes and ids, not the float vectors (those stay memory-mapped on disk)
    assert (snap.data / vec.FAISS_FILE).stat().st_size < n * dim * 4 / 4
    assert isinstance(snap.vectors.vectors, np.memmap)
    assert _recall(snap, embedder) >= 0.95
    hits = idx.search("Which banks did Facebook contact?", k=3)
    assert hits[0].article_id == "facebook-banks-de"
    # similarities() (fusion of sparse-only hits) reads the raw vectors by rowid
    qv = embedder.embed_query(QUESTIONS[0])
    some = snap.vectors.ids[::7][:20]
    sims = snap.similarities(qv, [int(i) for i in some] + [10**9])
    assert set(sims) == {int(i) for i in some}
    for rowid, score in sims.items():
        row = int(np.flatnonzero(snap.vectors.ids == rowid)[0])
        assert score == pytest.approx(float(snap.vectors.vectors[row] @ qv), abs=1e-5)


def test_ivfpq_filters_deletes_updates_and_reopening(sample_copy: Path, embedder, monkeypatch) -> None:
    idx = _ivfpq_index(sample_copy)
    snap = idx.snapshot()
    assert snap is not None
    sources = [a.source for a in snap.catalog.articles()]
    source = max(set(sources), key=sources.count)
    allowed = snap.allowed(rag.news.Filters(source=(source,)))
    assert allowed is not None and 10 < len(allowed) < len(snap.vectors.ids)
    # the IVF selector path, not the exact path for small filtered sets
    monkeypatch.setattr(generation, "EXACT_FILTER_LIMIT", 0)
    assert _recall(snap, embedder, allowed) >= 0.95
    hits = idx.search("news", k=5, filters={"source": source})
    assert hits and {h.source for h in hits} == {source}

    def centroids(snap: generation.Snapshot) -> np.ndarray:
        ivf = vec.ivf_of(snap.index)
        assert ivf is not None
        return ivf.quantizer.reconstruct_n(0, ivf.nlist)

    trained = centroids(snap)
    gone = "facebook-banks-de"
    assert idx.delete([gone]).deleted == (gone,)
    assert _kind(sample_copy) == "ivfpq"
    # a small change updates the previous generation's index (same lists), no retraining
    after = idx.snapshot()
    assert after is not None and np.array_equal(centroids(after), trained)
    assert gone not in {h.article_id for h in idx.search("Which banks did Facebook contact?", k=10, mode="dense")}
    idx.add_articles([{"id": "late", "text": "Neue Fassung: Der Flughafen Zürich meldet einen Passagierrekord."}])
    top = idx.search("Zurich airport passenger record", k=1, mode="dense")[0]
    assert top.article_id == "late" and "Zürich" in top.text

    fresh = rag.open_index(sample_copy, make_settings(sample_copy, exact_search_limit=5, hnsw_limit=10), create=False)
    snap = fresh.snapshot()
    assert snap is not None and snap.manifest.vector_index == "ivfpq"
    assert snap.index.ntotal == len(snap.vectors.ids) == snap.manifest.chunks
    assert _recall(snap, embedder) >= 0.95
    assert fresh.search("Zurich airport passenger record", k=1, mode="dense")[0].article_id == "late"
