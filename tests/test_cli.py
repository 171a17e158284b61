"""The `rag` console script, run as a real subprocess."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import BANKS, run_cli

run = run_cli


def test_seed_question_finds_the_banks_paragraph_first(sample_index_dir: Path) -> None:
    proc = run("search", "--json", "Which banks did Facebook contact?", index=sample_index_dir)
    data = json.loads(proc.stdout)  # stdout is JSON and nothing else
    top = data["hits"][0]
    assert top["article_id"] == "facebook-banks-de"
    assert all(bank in top["text"] for bank in BANKS)
    assert len(data["hits"]) == 5


def test_ingest_list_stats_delete_round_trip(tmp_path: Path) -> None:
    index = tmp_path / "idx"
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.jsonl").write_text(json.dumps({"id": "a1", "title": "Hafen", "source": "Nord",
                                             "text": "Der Hamburger Hafen meldet einen Rekord."}) + "\n"
                                 + "{broken\n", encoding="utf-8")
    (src / "b.txt").write_text("Die Bahn fährt wieder nach dem Streik.", encoding="utf-8")
    proc = run("ingest", str(src), "--json", index=index, check=3)  # 3: some inputs failed
    report = json.loads(proc.stdout)
    assert report["counts"]["added"] == 2 and report["counts"]["failed"] == 1
    assert report["failed"][0]["path"].endswith("a.jsonl:line 2")

    human = run("ingest", str(src), index=index, check=3)
    assert "unchanged 2" in human.stdout and "FAILED" in human.stderr and "a.jsonl:line 2" in human.stderr

    listed = json.loads(run("list", "--json", index=index).stdout)
    assert {row["id"] for row in listed} >= {"a1"} and len(listed) == 2
    stats = json.loads(run("stats", "--json", index=index).stdout)
    assert stats["articles"] == 2 and stats["embedding_model"] == "bundled:multilingual-e5-small+use-m3@onnx-int8"
    assert "OPENAI" not in json.dumps(stats)

    run("delete", "a1", index=index)
    missing = run("delete", "a1", index=index)  # idempotent: a re-run finishes, saying what was gone
    assert "not in the index (already deleted?): a1" in missing.stderr and "Traceback" not in missing.stderr
    assert json.loads(run("stats", "--json", index=index).stdout)["articles"] == 1


def test_list_and_search_show_a_title_from_the_first_sentence(tmp_path: Path) -> None:
    index = tmp_path / "idx"
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.jsonl").write_text(json.dumps({"id": "a1", "title": "Hafen", "text": "Der Hamburger Hafen meldet einen "
                                             "Rekord."}) + "\n", encoding="utf-8")
    (src / "bahn.txt").write_text("BERLIN (dpa) - Die Bahn fährt wieder nach dem Streik. Die Züge sind voll.",
                                  encoding="utf-8")
    run("ingest", str(src), index=index)
    listed = {row["id"]: row for row in json.loads(run("list", "--json", index=index).stdout)}
    bahn = next(row for article_id, row in listed.items() if article_id.startswith("bahn-"))
    assert (bahn["title"], bahn["title_derived"]) == ("Die Bahn fährt wieder nach dem Streik.", True)
    assert (listed["a1"]["title"], listed["a1"]["title_derived"]) == ("Hafen", False)
    human = run("list", index=index).stdout
    assert "Die Bahn fährt wieder nach dem Streik. *" in human and "Hafen *" not in human
    assert human.rstrip().endswith("* title from the first sentence") and bahn["id"] in human
    hits = json.loads(run("search", "--json", "Streik der Bahn", "--k", "1", index=index).stdout)["hits"]
    assert hits[0]["article_id"] == bahn["id"] and hits[0]["title_derived"] is True
    shown = run("search", "Streik der Bahn", "--k", "1", index=index).stdout
    assert "Die Bahn fährt wieder nach dem Streik. (title from the first sentence)" in shown


def test_friendly_errors(tmp_path: Path) -> None:
    proc = run("search", "anything", index=tmp_path / "none", check=1)
    assert proc.stderr.startswith("error: no index in") and "Traceback" not in proc.stderr
    proc = run("ingest", index=tmp_path / "none", check=2)
    assert "give at least one PATH" in proc.stderr
