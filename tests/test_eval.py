"""`rag eval`: metric functions against hand-computed cases, the dataset
adapters on tiny hand-made files, and one end-to-end run through the real
model on a few XQuAD questions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from conftest import dataset

import rag
from rag.answer import REFUSAL
from rag.evaluate.base import EvalOptions, RunResult, RunSpec, answer_body, spread
from rag.evaluate.cache import MARKER, _prune, corpus_key, variant_key
from rag.evaluate.cli import register
from rag.evaluate.metrics import (average_precision_at_k, contains_all, contains_answer, hits_at_k, mean,
                                  mrr_at_k, normalize_answer, recall_at_k, says_no_answer, squash, token_f1)
from rag.evaluate import multihop, rgb, xquad
from rag.evaluate.multihop import MultiHopRAG, score_retrieval
from rag.evaluate.report import render, table
from rag.evaluate.rgb import RGB, parse_answer
from rag.evaluate.runner import Report, datasets_dir, plan
from rag.evaluate.xquad import XQuAD
from rag.generate.extractive import NOTE


def plain_settings(**overrides) -> rag.Settings:
    return rag.Settings.from_env(environ={}, dotenv=None, progress=False, **overrides)


# ---- ranking metrics ----
def test_hits_at_k() -> None:
    assert hits_at_k([False, False, True], 2) == 0.0
    assert hits_at_k([False, False, True], 3) == 1.0
    assert hits_at_k([], 4) == 0.0
    with pytest.raises(ValueError):
        hits_at_k([True], 0)


def test_mrr_at_k() -> None:
    assert mrr_at_k([False, False, True, True], 10) == pytest.approx(1 / 3)
    assert mrr_at_k([False, False, True], 2) == 0.0
    assert mrr_at_k([True, True], 10) == 1.0
    assert mrr_at_k([], 10) == 0.0


def test_recall_at_k() -> None:
    ranked = ["a", "b", "c", "d"]
    assert recall_at_k(ranked, {"c", "x"}, 3) == 0.5  # one of two gold items in the top 3
    assert recall_at_k(ranked, {"c", "x"}, 2) == 0.0
    assert recall_at_k(ranked, {"a"}, 1) == 1.0
    assert recall_at_k(ranked, {"a", "d"}, 10) == 1.0  # k beyond the ranking
    with pytest.raises(ValueError):
        recall_at_k(ranked, set(), 5)


def test_average_precision_at_k_as_multihop_rag_and_textbook() -> None:
    found = [set(), {"g1"}, {"g1"}, {"g2"}]  # g1 first at rank 2, again at 3 (counts once), g2 at 4
    # MultiHop-RAG: (1/2 + 1/4) / min(2, 10)
    assert average_precision_at_k(found, 2, 10) == pytest.approx(0.375)
    # textbook AP: precision at the ranks that add a gold item: (1/2 + 2/4) / 2
    assert average_precision_at_k(found, 2, 10, cumulative=True) == pytest.approx(0.5)
    assert average_precision_at_k(found, 3, 10) == pytest.approx(0.25)  # a third gold fact never found
    assert average_precision_at_k([{"a", "b"}], 2, 10) == 1.0  # two facts in the first chunk: 2/1 / 2
    assert average_precision_at_k([{"a"}, {"b"}], 5, 2) == pytest.approx(0.75)  # divided by min(5, k=2)
    assert average_precision_at_k([set(), {"a"}], 1, 1) == 0.0  # beyond k
    with pytest.raises(ValueError):
        average_precision_at_k([], 0, 10)


def test_multihop_score_retrieval_matches_facts_without_whitespace() -> None:
    facts = ("Apple  defends the deal.", "Google pays\nbillions.")
    chunks = ["unrelated text", "Intro. Apple defends the deal. More.", "x", "y",
              "Google pays billions. And Apple defends the deal."]
    scores = score_retrieval(chunks, facts)
    assert scores == {"hits@4": 1.0, "hits@10": 1.0, "mrr@10": 0.5,
                      "map@10": pytest.approx((1 / 2 + 1 / 5) / 2)}
    assert score_retrieval(["nothing"] * 12, facts)["hits@10"] == 0.0
    assert squash(" a\u00a0b\n\u200bc ") == "abc"


# ---- answer metrics ----
def test_normalize_answer() -> None:
    assert normalize_answer("The Quick, brown fox!") == "quick brown fox"
    assert normalize_answer("  an   apple a day ") == "apple day"
    assert normalize_answer("„Die Panthers“ schlugen den Gegner.", "de") == "panthers schlugen gegner"
    assert normalize_answer("Die Panthers", "en") == "die panthers"  # English rules keep German articles
    assert normalize_answer("1.000 $") == "1000"


def test_token_f1() -> None:
    # pred tokens: cat sat on mat; gold: cat on mat -> P 3/4, R 1
    assert token_f1("The cat sat on the mat.", "a cat on a mat") == pytest.approx(2 * 0.75 / 1.75)
    assert token_f1("Denver Broncos", "denver broncos") == 1.0
    assert token_f1("Carolina", "Denver Broncos") == 0.0
    assert token_f1("", "") == 1.0 and token_f1("the", "Denver") == 0.0  # "the" normalises to nothing
    assert token_f1("den Broncos aus Denver", "Die Broncos", "de") == pytest.approx(2 * (1 / 3) / (1 / 3 + 1))
    assert token_f1("a a b", "a b b") == pytest.approx(2 / 3)  # counts, not sets


def test_contains_answer_and_contains_all() -> None:
    assert contains_answer("Won by the DENVER   Broncos.", "denver broncos")
    assert contains_answer("Das Spiel gewannen die Broncos", ["Denver Broncos", "die Broncos"])
    assert not contains_answer("Carolina Panthers", ["Denver Broncos", ""])
    assert not contains_answer("anything", [])
    assert contains_all("It happened in Jun 2020.", [("June 2020", "Jun 2020")])
    assert not contains_all("It happened in June 2010.", [("June 2020", "Jun 2020")])
    assert contains_all("Paris and Rome", ["Paris", "Rome"]) and not contains_all("Paris", ["Paris", "Rome"])
    assert not contains_all("text", [])


def test_says_no_answer() -> None:
    assert says_no_answer(REFUSAL["en"]) and says_no_answer(REFUSAL["de"])
    assert says_no_answer("Insufficient information.")
    assert says_no_answer("The sources don't mention who won.")
    assert not says_no_answer("The Broncos won 24-10 [1].")
    # words inside a quotation are the source's, not the answer's
    assert not says_no_answer("«The report does not contain any figures for 2022.» [2]")


def test_mean() -> None:
    assert mean([1.0, 0.0, 0.5]) == 0.5
    assert mean([]) is None


# ---- helpers ----
def test_spread_is_even_and_deterministic() -> None:
    assert spread(list(range(10)), 3) == [0, 3, 6]
    assert spread(list(range(4)), None) == [0, 1, 2, 3]
    assert spread(list(range(4)), 9) == [0, 1, 2, 3]


def test_answer_body_of_extractive_llm_and_refused_answers() -> None:
    text = f"{NOTE['en']}\n\n«Die Broncos gewannen.» [1]\n\n«Das Spiel fand in Santa Clara statt.» [2]"
    extractive = rag.Answer("q", text, (), (), "extractive")
    assert answer_body(extractive) == "Die Broncos gewannen.\n\nDas Spiel fand in Santa Clara statt."
    llm = rag.Answer("q", "The Broncos won [1], in Santa Clara [1, 2].", (), (), "openai")
    assert answer_body(llm) == "The Broncos won, in Santa Clara."
    refused = rag.Answer("q", REFUSAL["en"], (), (), "extractive", refused=True)
    assert answer_body(refused) == ""


def test_judging_answers_of_each_dataset() -> None:
    def llm(text: str) -> rag.Answer:
        return rag.Answer("q", text, (), (), "openai")

    q = xquad.Question("id", "Who won?", "SB-0", "die Denver Broncos", "Denver Broncos")
    # German rules: "denver broncos gewannen" vs "denver broncos": P 2/3, R 1, F1 0.8 (English rules: F1 2/3)
    assert xquad.judge(llm("Die Denver Broncos gewannen [1]."), q) == (True, pytest.approx(0.8))
    assert xquad.judge(llm("Carolina"), q) == (False, 0.0)

    answerable = multihop.Question("1", "Q?", "inference_query", "Apple", ("F.",))
    null = multihop.Question("2", "Q?", "null_query", "Insufficient information.", ())
    refusal = rag.Answer("q", REFUSAL["en"], (), (), "openai", refused=True)
    assert multihop.judge(llm("It was apple [1]."), answerable) == (False, True)
    assert multihop.judge(refusal, answerable) == (True, False)
    assert multihop.judge(refusal, null) == (True, True)
    assert multihop.judge(llm("Insufficient information."), null) == (True, True)
    assert multihop.judge(llm("Google did [2]."), null) == (False, False)

    fact = rgb.Question(0, "Super Bowl 2021 location", ("Tampa, Florida",), "Glendale, Arizona")
    assert rgb.judge(llm("In Tampa, Florida [1]."), fact) == (True, False)
    assert rgb.judge(llm("In Glendale, Arizona [2]."), fact) == (False, True)


def test_parse_rgb_answer() -> None:
    assert parse_answer("Tampa, Florida") == ("Tampa, Florida",)
    assert parse_answer([["June 2020", "Jun 2020"]]) == (("June 2020", "Jun 2020"),)
    assert parse_answer(["a", ["b", "c"]]) == ("a", ("b", "c"))
    with pytest.raises(ValueError):
        parse_answer([])


def test_plan_rows_per_chunk_size_mode_and_reranker() -> None:
    options = EvalOptions(modes=("dense", "hybrid"), rerankers=("my/reranker",), chunk_tokens=(120, 300))
    indexes = plan(options, plain_settings())
    assert [(s.chunk_tokens, s.chunk_overlap) for s, _ in indexes] == [(120, 30), (300, 40)]
    assert [(r.mode, r.reranker) for r in indexes[0][1]] == [
        ("dense", None), ("hybrid", None), ("dense", "my/reranker"), ("hybrid", "my/reranker")]
    (default, specs), = plan(EvalOptions(), plain_settings())
    assert default.chunk_tokens == 200 and [s.mode for s in specs] == ["hybrid"]


def test_corpus_key_depends_on_corpus_model_and_chunking() -> None:
    articles = [{"id": "a", "text": "x"}]
    key = corpus_key(articles, plain_settings())
    assert key == corpus_key([{"text": "x", "id": "a"}], plain_settings())
    assert key != corpus_key([{"id": "a", "text": "y"}], plain_settings())
    assert key != corpus_key(articles, plain_settings(chunk_tokens=120, chunk_overlap=30))
    assert key != corpus_key(articles, plain_settings(embed_model="bundled:all-MiniLM-L6-v2"))
    assert key == corpus_key(articles, plain_settings(index_dir=Path("elsewhere"), llm_model="x"))


def test_prune_removes_only_stale_builds_of_the_same_variant(tmp_path: Path) -> None:
    ours, other = variant_key(plain_settings()), variant_key(plain_settings(chunk_tokens=120, chunk_overlap=30))
    for name, variant in (("xquad-new", ours), ("xquad-old", ours), ("xquad-c120", other), ("rgb-old", ours)):
        (tmp_path / name).mkdir()
        (tmp_path / name / MARKER).write_text(json.dumps({"variant": variant}))
    (tmp_path / "xquad-half.tmp-99").mkdir()  # another run's build in progress
    _prune(tmp_path / "xquad-new", ours)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rgb-old", "xquad-c120", "xquad-half.tmp-99", "xquad-new"]


def test_datasets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "datasets").mkdir()
    assert datasets_dir(tmp_path) == tmp_path / "datasets"  # the parent of datasets/ is accepted too
    assert datasets_dir(tmp_path / "datasets") == tmp_path / "datasets"
    monkeypatch.setenv("RAG_SHARED", str(tmp_path))
    assert datasets_dir() == tmp_path / "datasets"


def test_table_aligns_columns() -> None:
    lines = table(["mode", "R@1"], [["dense", "0.900"], ["hybrid", "1.000"]])
    assert lines == ["mode      R@1", "------  -----", "dense   0.900", "hybrid  1.000"]


def test_render_report() -> None:
    spec = RunSpec("dense", 200, 40)
    run = RunResult(spec, {"hits@4": 0.5, "accuracy": None}, {"questions": 2}, {"total_seconds": 1.0},
                    by_type={"inference_query": {"n": 2, "hits@4": 0.5}},
                    index={"folder": "/c/x", "reused": True, "articles": 3, "chunks": 4})
    report = Report("multihop-rag", "T", Path("/d"), {"embed_model": "m", "answers": False}, {"questions": 2},
                    (("hits@4", "Hits@4"), ("accuracy", "acc")), (("n", "n"), ("hits@4", "Hits@4")), [run],
                    ["answer accuracy: skipped (no LLM configured)"], 2.0)
    text = render(report)
    assert "200/40  dense  -        0.500    -      1.0" in text  # numbers right-aligned under their header
    assert "inference_query  2   0.500" in text
    assert "note: answer accuracy: skipped (no LLM configured)" in text
    assert json.loads(json.dumps(report.to_dict()))["runs"][0]["metrics"]["accuracy"] is None


# ---- adapters on tiny hand-made datasets ----
def squad(questions: list[tuple[str, str, str]]) -> dict:
    return {"data": [{"title": "Super_Bowl_50", "paragraphs": [
        {"context": f"Absatz {i}.", "qas": [{"id": qid, "question": q, "answers": [{"text": a, "answer_start": 0}]}]}
        for i, (qid, q, a) in enumerate(questions)]}]}


def test_xquad_adapter_builds_paragraph_articles_and_gold(tmp_path: Path) -> None:
    folder = tmp_path / "xquad-dev"
    folder.mkdir()
    (folder / "xquad.de.json").write_text(json.dumps(squad([("q1", "Wer?", "die Broncos"), ("q2", "Wo?", "Kalifornien")])))
    (folder / "xquad.en.json").write_text(json.dumps(squad([("q1", "Who?", "Broncos"), ("q2", "Where?", "California")])))
    adapter = XQuAD(tmp_path, plain_settings(), EvalOptions(limit=1))
    assert adapter.articles()[1] == {"id": "Super_Bowl_50-1", "title": "Super Bowl 50", "text": "Absatz 1.",
                                     "language": "de", "source": "XQuAD"}
    q = adapter.questions[1]
    assert (q.text, q.gold, q.answer_de, q.answer_en) == ("Where?", "Super_Bowl_50-1", "Kalifornien", "California")
    assert adapter.counts() == {"articles": 2, "questions": 2, "evaluated": 1}
    assert adapter.queries() == ["Who?"]


def test_multihop_adapter_makes_one_document_per_url(tmp_path: Path) -> None:
    folder = tmp_path / "multihop-rag-500"
    folder.mkdir()
    ev = {"author": "A", "category": "tech", "published_at": "2023-09-26T17:01:22+00:00", "source": "The Verge",
          "title": "T1", "url": "https://x/1"}
    queries = {"queries": [{"id": "0", "question": "Q0?", "question_type": "comparison_query"},
                           {"id": "1", "question": "Q1?", "question_type": "inference_query"},
                           {"id": "2", "question": "Q2?", "question_type": "null_query"}]}
    truth = {"0": {"answer": "yes", "evidence_list": [dict(ev, fact="F1."), dict(ev, fact="F2.", url="https://x/2")]},
             "1": {"answer": "Apple", "evidence_list": [dict(ev, fact="F3."), dict(ev, fact="F1.")]},
             "2": {"answer": "Insufficient information.", "evidence_list": []}}
    (folder / "queries.json").write_text(json.dumps(queries))
    (folder / "ground_truth.json").write_text(json.dumps(truth))
    adapter = MultiHopRAG(tmp_path, plain_settings(), EvalOptions())
    docs = adapter.articles()
    assert len(docs) == 2 and docs[0]["text"] == "F1.\n\nF3." and docs[1]["text"] == "F2."
    assert docs[0]["url"] == "https://x/1" and docs[0]["source"] == "The Verge" and docs[0]["language"] == "en"
    assert docs[0]["published_at"] == "2023-09-26T17:01:22+00:00" and "category" not in docs[0]
    assert [q.facts for q in adapter.questions] == [("F1.", "F2."), ("F3.", "F1."), ()]
    assert adapter.counts() == {"articles": 2, "questions": 3, "evaluated": 3, "answerable": 2, "null": 1}


def test_rgb_adapter_dedupes_passages_and_remembers_their_queries(tmp_path: Path) -> None:
    (tmp_path / "rgb").mkdir()
    rows = [{"id": 0, "query": "Q0", "answer": "Tampa", "fakeanswer": "Glendale",
             "positive": ["P0 Tampa"], "negative": ["N shared"], "positive_wrong": ["P0 Glendale"]},
            {"id": 1, "query": "Q1", "answer": [["June 2020", "Jun 2020"]], "fakeanswer": "June 2010",
             "positive": ["P1", "N shared"], "negative": ["N  shared"], "positive_wrong": []}]
    (tmp_path / "rgb" / "en_fact.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    adapter = RGB(tmp_path, plain_settings(), EvalOptions())
    ids = [a["id"] for a in adapter.articles()]
    assert ids == ["rgb-0-positive-0", "rgb-0-negative-0", "rgb-0-positive_wrong-0", "rgb-1-positive-0"]
    assert adapter.occurrences["rgb-0-negative-0"] == {(0, "negative"), (1, "positive"), (1, "negative")}
    assert adapter.has("rgb-0-negative-0", 1, "positive") and not adapter.has("rgb-0-negative-0", 0, "positive")
    assert adapter.questions[1].answer == (("June 2020", "Jun 2020"),)


# ---- the CLI handler ----
def eval_parser() -> argparse.ArgumentParser:
    """The parser as rag.cli builds it, with only the eval subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--index")
    common.add_argument("--json", action="store_true")
    common.add_argument("-q", "--quiet", action="store_true")
    common.add_argument("-v", "--verbose", action="count", default=0)
    parser = argparse.ArgumentParser(prog="rag")
    register(parser.add_subparsers(dest="command", required=True), common)
    return parser


def run_eval_cli(*argv: str) -> int:
    args = eval_parser().parse_args(["eval", *argv])
    return args.func(args)


def test_cli_reports_a_missing_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rag.cli import main  # the real `rag` command, as installed

    assert main(["eval", "rgb", "--data", str(tmp_path), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: dataset folder") and "--data" in err and "Traceback" not in err


def test_cli_rejects_bad_lists() -> None:
    for bad in (["--modes", "dense,fuzzy"], ["--chunk-tokens", "8"], ["--chunk-tokens", "a,b"], ["--limit", "0"]):
        with pytest.raises(SystemExit) as exc:
            eval_parser().parse_args(["eval", "xquad", *bad])
        assert exc.value.code == 2


@pytest.mark.slow
def test_eval_xquad_end_to_end(embedder, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    data = dataset("xquad-dev").parent
    for name in ("RAG_CHUNK_TOKENS", "RAG_CHUNK_OVERLAP", "RAG_EMBED_MODEL", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    cache = tmp_path / "cache"
    common = ["xquad", "--data", str(data), "--index", str(cache), "-q"]

    assert run_eval_cli(*common, "--limit", "10", "--no-answers", "--modes", "dense,sparse", "--json") == 0
    out = json.loads(capsys.readouterr().out)  # stdout is JSON only
    assert out["dataset"] == "xquad" and out["counts"] == {"articles": 120, "questions": 632, "evaluated": 10}
    assert [r["mode"] for r in out["runs"]] == ["dense", "sparse"]
    dense = out["runs"][0]
    assert dense["index"]["articles"] == 120 and not dense["index"]["reused"]
    assert dense["counts"] == {"questions": 10} and dense["metrics"]["answer_f1"] is None
    assert dense["metrics"]["recall@10"] >= 0.8  # the model finds most paragraphs across languages
    for run in out["runs"]:
        m = run["metrics"]
        assert 0 <= m["recall@1"] <= m["recall@5"] <= m["recall@10"] <= 1 and m["recall@1"] <= m["mrr@10"] <= 1

    # again, as a table and with a few extractive answers: the index is reused
    log = tmp_path / "answers.jsonl"
    assert run_eval_cli(*common, "--limit", "3", "--modes", "hybrid", "--generator", "extractive",
                        "--save-answers", str(log)) == 0
    text = capsys.readouterr().out
    assert "(reused; 120 articles" in text and "R@1" in text and "MRR@10" in text and "cite-prec" in text
    row = next(line for line in text.splitlines() if line.startswith("200/40  hybrid"))
    assert len(row.split()) == 14 and "-" not in row.split()[3:13]  # every metric, answers and citations included
    answers = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(answers) == 3 and {"question", "answer", "citations", "gold", "seconds"} <= set(answers[0])
    assert answers[0]["gold"]["article"] and answers[0]["generator"] == "extractive"
    assert len(list(cache.iterdir())) == 1

    # a reranker that cannot be loaded is a message, not a traceback
    missing = str(tmp_path / "no-such-reranker")
    assert run_eval_cli(*common, "--limit", "1", "--no-answers", "--modes", "dense", "--rerank", missing) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot load the reranker '{missing}'") and "Traceback" not in err


def test_citation_tally_counts_precise_citations_per_answer() -> None:
    from rag.evaluate.base import CitationTally

    def hit(text: str) -> rag.Hit:
        return rag.Hit("a", "a#0", None, None, None, None, text, 0, len(text), 1.0)

    def cite(n: int) -> rag.Citation:
        return rag.Citation(n, "a", "a#0", None, None, None, None, "q", 0, 1)

    hits = (hit("Die Broncos gewannen 24:10."), hit("Santa Clara liegt in Kalifornien."))
    tally = CitationTally()
    supports = lambda h: "24:10" in h.text  # noqa: E731
    tally.add(rag.Answer("q", "x [1][2]", (cite(1), cite(2)), hits, "local"), supports)
    tally.add(rag.Answer("q", "y", (), hits, "local",
                         unsupported=(rag.Unsupported("y", (), "no citation", 0.0),)), supports)
    tally.add(rag.Answer("q", "refused", (), hits, "local", refused=True), supports)  # not counted
    assert tally.metrics() == {"citation_precision": 0.5, "cited": 0.5, "flagged": 0.5}
    assert CitationTally().metrics() == {"citation_precision": None, "cited": None, "flagged": None}
