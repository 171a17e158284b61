"""Syndicated copies of one story (issue #16): grouped at ingest, regrouped on delete and update,
migrated into older indexes, and shown once at retrieval with the other copies' outlets."""

from __future__ import annotations

import csv
import json
import re
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from conftest import skip_on_milvus, ROOT, make_settings

import rag
from rag import stories
from rag.ui.render import plain_answer, render_sources

#: Every test here runs on each store (tests/conftest.py: index_store).
pytestmark = pytest.mark.usefixtures("each_store")

SAMPLE = ROOT / "rag" / "sample" / "derstandard-10kgnad.csv"


def _sample() -> dict[str, dict[str, str]]:
    with SAMPLE.open(encoding="utf-8", newline="") as fh:
        return {row["id"]: row for row in csv.DictReader(fh)}


ARTICLES = _sample()
#: Real derStandard texts: an agency story (Puerto Rico's debt, "Wirtschaft") and other
#: Wirtschaft articles (the same section, some about debts, companies and money: not copies).
STORY = ARTICLES["10kgnad-test-38"]["text"]
SAME_TOPIC = [ARTICLES[i]["text"] for i in ("10kgnad-test-39", "10kgnad-test-72", "10kgnad-test-1004",
                                             "10kgnad-test-40", "10kgnad-test-1002")]
#: Two articles about refugees in the same section, days apart: one topic, two stories.
REFUGEES = [ARTICLES["10kgnad-test-20"]["text"], ARTICLES["10kgnad-test-1017"]["text"]]


def _sentences(text: str) -> list[str]:
    return re.split(r"(?<=[.!?])\s+", text.strip())


def bylined(text: str) -> str:
    return "Von Maria Berger (APA) — " + text


def trimmed(text: str) -> str:
    return " ".join(_sentences(text)[:-1])  # the last paragraph (here: sentence) cut


def edited(text: str) -> str:
    return (text.replace("Gerichtshof", "Höchstgericht").replace("Gouverneur", "Regierungschef")
            .replace("schrumpft", "sinkt").replace("Umschuldung", "Restrukturierung"))


def everything(text: str) -> str:
    return bylined(edited(trimmed(text)))


def test_copies_group_and_same_topic_articles_do_not() -> None:
    variants = [STORY, bylined(STORY), trimmed(STORY), edited(STORY), everything(STORY)]
    assert len(set(variants)) == 5
    texts = variants + SAME_TOPIC + REFUGEES
    groups = stories.group_texts(texts)
    assert groups[:5] == [0] * 5
    assert len(set(groups[5:])) == len(texts) - 5 and 0 not in groups[5:]
    sig = stories.signature(STORY)
    assert all(stories.similarity(sig, stories.signature(v)) >= stories.SAME_STORY for v in variants)
    assert all(stories.similarity(sig, stories.signature(t)) < 0.2 for t in SAME_TOPIC)


def test_a_short_article_quoting_a_long_one_is_not_its_copy() -> None:
    long = REFUGEES[0]
    quote = " ".join(_sentences(long)[2:5])  # three sentences of a long story inside a short one
    short = "Die Debatte über Bildung geht weiter. Eine Studie sagt: " + quote + " Das Ministerium schweigt."
    assert stories.group_texts([long, short]) == [0, 1]


def test_signatures_round_trip_as_uint32_blobs_and_rebuild_the_lsh() -> None:
    sig = stories.signature(STORY)
    blob = stories.to_blob(sig)
    assert sig.dtype == np.uint32 and len(blob) == 4 * stories.NUM_PERM
    assert np.array_equal(stories.from_blob(blob), sig)
    lsh = stories.StoryLSH.build([("a", blob), ("b", stories.to_blob(stories.signature(SAME_TOPIC[0])))])
    assert lsh.copies_of(stories.signature(trimmed(STORY))) == ["a"]
    with pytest.raises(ValueError):
        stories.from_blob(blob[:-4])


def story_docs() -> list[dict[str, str]]:
    base = {"published_at": "2015-09-01", "language": "de"}
    return [
        {"id": "pr-reuters", "title": "Puerto Rico vor dem Höchstgericht", "text": STORY, "source": "Reuters"} | base,
        {"id": "pr-ap", "title": "Puerto Rico will Staatsfirmen umschulden", "text": bylined(STORY),
         "source": "AP <b>&</b>"} | base,
        {"id": "pr-kurier", "title": "Schuldeninsel", "text": everything(STORY), "source": "Kurier"} | base,
        {"id": "henkel", "title": "Henkel-Chef geht", "text": SAME_TOPIC[0], "source": "derStandard"} | base,
        {"id": "maut", "title": "Pkw-Maut", "text": SAME_TOPIC[1], "source": "derStandard"} | base,
    ]


QUESTION = "Warum will Puerto Rico seine Staatsunternehmen in ein Insolvenzverfahren schicken?"


@pytest.fixture(scope="module")
def story_index_dir(tmp_path_factory: pytest.TempPathFactory, embedder, index_store: dict[str, str]) -> Path:
    folder = tmp_path_factory.mktemp("stories") / "index"
    # copies arrive in different batches; module-scoped, so made before each_store names the store
    idx = rag.open_index(folder, make_settings(folder, commit_every=2, **index_store))
    report = idx.add_articles(story_docs())
    assert report.ok and len(report.added) == 5, report.counts()
    return folder


def _stories(index: rag.NewsIndex) -> dict[str, str | None]:
    snap = index.snapshot()
    assert snap is not None
    if index.store.name == "milvus":  # the stories collection's rows of this generation
        rows = snap.catalog.query(index.store.names.stories, "", ["article_id", "story_id"])
        return {a.id: None for a in index.articles()} | {r["article_id"]: r["story_id"] for r in rows}
    return {r[0]: r[1] for r in sqlite3.connect(snap.catalog.path).execute("SELECT id, story_id FROM articles")}


def test_ingest_groups_copies_and_retrieval_shows_one_per_story(story_index_dir: Path) -> None:
    index = rag.open_index(story_index_dir, make_settings(story_index_dir), create=False)
    assert _stories(index) == {"pr-reuters": "pr-reuters", "pr-ap": "pr-reuters", "pr-kurier": "pr-reuters",
                               "henkel": "henkel", "maut": "maut"}
    hits = index.search(QUESTION, k=5)  # raw chunks: one article may give several
    story = [h for h in hits if h.story_id == "pr-reuters"]
    assert len({h.article_id for h in story}) == 1 and {h.article_id for h in hits} >= {"henkel", "maut"}
    top = story[0]
    others = {"pr-reuters": "Reuters", "pr-ap": "AP <b>&</b>", "pr-kurier": "Kurier"}
    assert all(h.copies == 3 for h in story)
    assert set(top.also_reported_by) == set(others.values()) - {others[top.article_id]}
    assert all(h.copies == 1 and h.also_reported_by == () for h in hits if h.story_id != "pr-reuters")
    # The answer's passages (2 per article at most, neighbours merged): the story once.
    passages = index.retrieve(QUESTION, k=5).hits
    assert sum(h.story_id == "pr-reuters" for h in passages) == 1
    # Collapsing off (RAG_GROUP_STORIES=false): every copy competes for a slot again.
    raw = index.retrieve(QUESTION, k=5, group_stories=False).hits
    assert len({h.article_id for h in raw if h.story_id == "pr-reuters"}) >= 2
    off = rag.open_index(story_index_dir, make_settings(story_index_dir, group_stories=False), create=False)
    assert len({h.article_id for h in off.retrieve(QUESTION, k=5).hits if h.story_id == "pr-reuters"}) >= 2


def test_answers_carry_the_other_copies_through_dicts_json_and_the_ui(story_index_dir: Path) -> None:
    index = rag.open_index(story_index_dir, make_settings(story_index_dir), create=False)
    answer = rag.answer(QUESTION, index, k=3)
    cited = [c for c in answer.citations if c.story_id == "pr-reuters"]
    assert cited and cited[0].copies == 3 and len(cited[0].also_reported_by) == 2
    assert _round_trip(answer) == answer
    html = render_sources(answer, 1)
    assert "also reported by:" in html and "(3 copies)" in html
    assert "AP &lt;b&gt;&amp;&lt;/b&gt;" in html and "AP <b>" not in html  # escaped
    assert answer.hits[cited[0].n - 1].also_reported_by == cited[0].also_reported_by
    copied = plain_answer(answer)  # the clipboard text lists the cited sources, this one with its copies
    assert "also reported by:" in copied and "AP <b>&</b>" in copied


def _round_trip(answer: rag.Answer) -> rag.Answer:
    return rag.Answer.from_dict(json.loads(json.dumps(answer.to_dict())))


def test_hit_and_citation_round_trip_and_old_dicts_load_with_defaults() -> None:
    hit = rag.Hit("a", "a#0", "T", None, "Reuters", None, "text", 0, 4, 0.5, story_id="s",
                  also_reported_by=("AP", "Kurier"), copies=3)
    assert rag.Hit.from_dict(json.loads(json.dumps(hit.to_dict()))) == hit
    cit = rag.Citation(1, "a", "a#0", "T", None, "Reuters", None, "q", 0, 1, story_id="s",
                       also_reported_by=("AP",), copies=2)
    assert rag.Citation.from_dict(json.loads(json.dumps(cit.to_dict()))) == cit
    old = {k: v for k, v in hit.to_dict().items() if k not in ("story_id", "also_reported_by", "copies")}
    assert rag.Hit.from_dict(old) == rag.Hit("a", "a#0", "T", None, "Reuters", None, "text", 0, 4, 0.5)
    assert rag.also_reported(("AP", "Kurier"), 3) == "also reported by: AP, Kurier (3 copies)"
    assert rag.also_reported((), 1) == ""
    assert rag.also_reported(tuple("ABCDEFG"), 8, most=2) == "also reported by: A, B and 5 more (8 copies)"


def test_deleting_and_updating_articles_regroups(story_index_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "index"
    shutil.copytree(story_index_dir, folder)
    index = rag.open_index(folder, make_settings(folder))
    # The story's earliest copy (its id) goes: the others stay one story, named after the next one.
    assert index.delete("pr-reuters").deleted == ("pr-reuters",)
    assert _stories(index) == {"pr-ap": "pr-ap", "pr-kurier": "pr-ap", "henkel": "henkel", "maut": "maut"}
    # A copy rewritten as another article leaves the story; rewritten back, it joins again.
    index.add_articles([{"id": "pr-ap", "text": REFUGEES[1], "source": "AP"}])
    assert _stories(index) == {"pr-ap": "pr-ap", "pr-kurier": "pr-kurier", "henkel": "henkel", "maut": "maut"}
    index.add_articles([{"id": "pr-ap", "text": trimmed(STORY), "source": "AP"}])
    assert _stories(index)["pr-ap"] == "pr-kurier"
    hits = index.retrieve(QUESTION, k=5).hits
    assert sum(h.story_id == "pr-kurier" for h in hits) == 1
    # A new copy arriving later joins (and a copy of nothing is its own story).
    index.add_articles([{"id": "pr-late", "text": edited(STORY), "source": "Tribune"},
                        {"id": "refugees", "text": REFUGEES[0]}])
    assert _stories(index)["pr-late"] == "pr-kurier" and _stories(index)["refugees"] == "refugees"


def _downgrade(folder: Path) -> None:
    """Make ``folder`` what the previous rag wrote: catalog schema 2 (no story_id, no signatures), format 3."""
    manifest = json.loads((folder / "manifest.json").read_text())
    db_path = folder / manifest["data_dir"] / "news.sqlite"
    db = sqlite3.connect(db_path)
    db.executescript("DROP INDEX articles_story; ALTER TABLE articles DROP COLUMN story_id; DROP TABLE signatures;"
                     "UPDATE meta SET value = '2' WHERE key = 'schema_version'; VACUUM;")
    db.close()
    manifest["format_version"] = 3
    manifest["files"]["news.sqlite"] = db_path.stat().st_size
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_an_index_from_before_stories_opens_then_groups_when_upgraded(story_index_dir: Path,
                                                                       tmp_path: Path) -> None:
    skip_on_milvus("a catalog of an older SQLite schema")
    from rag.store.manifest import FORMAT_VERSION

    folder = tmp_path / "old"
    shutil.copytree(story_index_dir, folder)
    _downgrade(folder)
    settings = make_settings(folder)
    old = rag.open_index(folder, settings, create=False)
    assert old.stats().format_version == 3 < FORMAT_VERSION
    # Read as it is: no stories, so every copy is its own and nothing is collapsed.
    hits = old.retrieve(QUESTION, k=5).hits
    assert all(h.story_id is None and h.copies == 1 for h in hits)
    assert len({h.article_id for h in hits if h.article_id.startswith("pr-")}) >= 2
    assert old.upgrade() is True
    new = rag.open_index(folder, settings, create=False)
    assert new.stats().format_version == FORMAT_VERSION
    assert _stories(new) == {"pr-reuters": "pr-reuters", "pr-ap": "pr-reuters", "pr-kurier": "pr-reuters",
                             "henkel": "henkel", "maut": "maut"}
    assert sum(h.story_id == "pr-reuters" for h in new.retrieve(QUESTION, k=5).hits) == 1
    assert new.upgrade() is False


def test_an_index_from_before_stories_is_upgraded_then_migrated_to_milvus(story_index_dir: Path,
                                                                          tmp_path: Path) -> None:
    skip_on_milvus("the source of 'rag migrate' is a FAISS index")
    pytest.importorskip("pymilvus", reason="the Milvus store needs pip install 'rag-news[milvus]'")
    from rag.store.manifest import FORMAT_VERSION

    folder = tmp_path / "old"
    shutil.copytree(story_index_dir, folder)
    _downgrade(folder)
    old = rag.open_index(folder, make_settings(folder), create=False)
    new = old.migrate("milvus", tmp_path / "old-milvus")  # the copy reads stories: the source is upgraded first
    assert old.stats().format_version == FORMAT_VERSION
    assert new.store.name == "milvus" and new.stats().articles == old.stats().articles
    assert _stories(new) == _stories(old) and _stories(new)["pr-ap"] == "pr-reuters"
    new.close()


def test_cli_search_and_json_show_the_other_copies(story_index_dir: Path) -> None:
    skip_on_milvus("a Milvus Lite file is one process's (the CLI on Milvus: test_milvus, through a server)")
    from test_cli import run

    text = run("search", "--k", "3", QUESTION, index=story_index_dir).stdout
    assert "also reported by:" in text and "(3 copies)" in text
    asked = run("ask", "--json", "--generator", "extractive", "--k", "3", QUESTION, index=story_index_dir)
    data = json.loads(asked.stdout)
    passage = next(p for p in data["passages"] if p["story_id"] == "pr-reuters")
    assert passage["copies"] == 3 and len(passage["also_reported_by"]) == 2


def test_a_copy_that_changes_a_name_is_shown_beside_the_one_it_contradicts(tmp_path: Path, embedder) -> None:
    rows = [json.loads(line) for line in (ROOT / "rag" / "sample" / "multihop-news-en.jsonl").open(encoding="utf-8")]
    text = next(r["text"] for r in rows if r["title"].startswith("One year later, ChatGPT"))
    fake = text.replace("DeepMind", "Anthropic").replace("Gemini", "Claude")  # RGB-style counterfactual
    assert fake != text
    folder = tmp_path / "index"
    index = rag.open_index(folder, make_settings(folder))
    index.add_articles([{"id": "orig", "text": text, "source": "TechCrunch", "language": "en"},
                        {"id": "wire", "text": "By Kyle Wiggers (AP) — " + text, "source": "AP", "language": "en"},
                        {"id": "fake", "text": fake, "source": "Hoax", "language": "en"}])
    assert set(_stories(index).values()) == {"orig"}  # one story: the same text with two words changed
    hits = index.retrieve("Which AI lab is expected to debut a next-gen chatbot before the end of the year?", k=5).hits
    shown = {h.article_id for h in hits}
    # The byline copy adds nothing and is folded into the other; the changed names are not hidden.
    assert "fake" in shown and len(shown & {"orig", "wire"}) == 1
    assert all(h.copies == 3 for h in hits)


def test_facts_are_numbers_and_names_and_only_numbers_in_german() -> None:
    from rag.retrieve.stories import facts

    assert facts("Glendale, Arizona will host it for $1.39 billion in 2007.") >= {"Glendale", "Arizona", "1.39", "2007"}
    assert "will" not in facts("Glendale will host it.")
    assert facts("Der Gouverneur sprach von 72 Milliarden Dollar.", "de") == {"72"}


def test_the_same_place_in_another_copy_is_found_by_shared_word_triples() -> None:
    from rag.retrieve.stories import same_place

    text = "Opening words here. DeepMind, Google's premier lab, will debut a chatbot, Gemini, soon. Last words."
    assert same_place(text, "Anthropic, Google's premier lab, will debut") == \
        "words here. DeepMind, Google's premier lab, will debut a chatbot, Gemini"
    assert same_place(text, "nothing in common at all") == ""


@pytest.mark.parametrize("text", ["By Jane Miller (AP) — Facebook has", "(AP) — Facebook has",
                                  "WASHINGTON (Reuters) - Facebook has", "By Staff Writer\n\nFacebook has",
                                  "Von Anna Huber — Facebook has", "(Presse) — NEW YORK — Facebook has"])
def test_a_copys_own_byline_and_dateline_are_not_its_story(text: str) -> None:
    from rag.titles import lead_end

    assert text[lead_end(text):] == "Facebook has"


def test_a_leading_name_is_part_of_the_story() -> None:
    from rag.titles import lead_end

    for text in ("Glendale, Arizona will host it.", "Von der Leyen reist nach Kiew.", "Tampa (Florida) will host"):
        assert lead_end(text) == 0
