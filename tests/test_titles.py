"""Titles for untitled articles: the first sentence, trimmed, marked ``title_derived`` from
ingest through the catalog to hits, citations, JSON and older indexes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import rag
from conftest import SEED, make_settings
from rag.generate.prompt import format_source
from rag.evidence import about
from rag.news import Answer, Article, ArticleSummary, Citation, Hit
from rag.pipeline import embedding_text
from rag.titles import TITLE_CHARS, derive_title, with_derived_title

SEED_LEAD = ("Kaum ist die Aufregung des Facebook-Skandals um Cambridge Analytica abgeflacht, "
             "macht der Social-Media-Riese wieder von sich Reden")
FORMAT_2 = Path(__file__).parent / "data" / "index-format-2"


# ---- derive_title ----
def test_a_long_first_sentence_is_cut_on_a_word_boundary() -> None:
    title = derive_title(SEED.read_text(encoding="utf-8").split("---", 2)[2])
    assert title.endswith("…") and len(title) <= TITLE_CHARS + 1
    assert SEED_LEAD.startswith(title[:-1]) and SEED_LEAD[len(title) - 1] == " ", title  # whole words only
    assert title.startswith("Kaum ist die Aufregung des Facebook-Skandals")


@pytest.mark.parametrize("text, title", [
    ("Der Hafen meldet einen Rekord. Die Bahn fährt wieder.", "Der Hafen meldet einen Rekord."),
    ("  Der   Hafen\n  meldet\teinen  Rekord.  Zweiter Satz.", "Der Hafen meldet einen Rekord."),  # hard-wrapped
    ("Hafen im Wandel\n\nDer Hafen meldet einen Rekord.", "Hafen im Wandel"),  # a heading line is the title
    ("BERLIN (dpa) - Die Regierung hat am Montag beschlossen. Mehr dazu.", "Die Regierung hat am Montag beschlossen."),
    ("Washington, 3. März (Reuters) – Die Zinsen steigen. Mehr.", "Die Zinsen steigen."),
    ("HAMBURG – Der Hafen wächst. Zweiter Satz.", "Der Hafen wächst."),
    ("Von Max Muster\n\nHAMBURG – Der Hafen wächst. Zweiter Satz.", "Der Hafen wächst."),
    ("By Jane Doe and John Roe\nStocks fell on Monday. More later.", "Stocks fell on Monday."),
    ("Von der Leyen reist nach Kiew. Dort trifft sie Selenskyj.", "Von der Leyen reist nach Kiew."),
    ("EU: Neue Regeln für KI. Der Text.", "EU: Neue Regeln für KI."),
    ("Von Max Muster", "Von Max Muster"),  # nothing but a byline: still a title, never empty
    ("BERLIN (dpa) -", "BERLIN (dpa) -"),
    ("ein Satz ohne Punkt", "ein Satz ohne Punkt"),
])
def test_first_sentence_without_dateline_or_byline(text: str, title: str) -> None:
    assert derive_title(text) == title


def test_one_giant_word_is_cut_inside_and_blank_text_has_no_title() -> None:
    assert derive_title("x" * 500) == "x" * TITLE_CHARS + "…"
    assert derive_title(" \n\t ") == ""


def test_a_given_title_is_kept_and_an_untitled_article_gets_the_first_sentence() -> None:
    given = Article("a", "Der Hafen meldet einen Rekord. Mehr.", title="Rekord im Hafen", content_hash="h")
    assert with_derived_title(given) is given
    untitled = Article("b", "Der Hafen meldet einen Rekord. Mehr.", content_hash="h")
    derived = with_derived_title(untitled)
    assert (derived.title, derived.title_derived, derived.content_hash) == ("Der Hafen meldet einen Rekord.", True, "h")
    blank = Article("c", "Text.", title="  ")
    assert with_derived_title(blank).title == "Text." and with_derived_title(blank).title_derived


# ---- what treats a title as a headline skips a derived one ----
def test_a_derived_title_is_not_a_headline_for_prompt_evidence_or_vectors() -> None:
    def hit(title: str, derived: bool) -> Hit:
        return Hit("a", "a#0", title, None, "Nord", "2024-05-01", "Der Hafen meldet einen Rekord.", 0, 29, 1.0,
                   title_derived=derived)

    assert 'title="Rekord im Hafen"' in format_source(1, hit("Rekord im Hafen", False))
    assert "title=" not in format_source(1, hit("Der Hafen meldet…", True))
    assert about(hit("Rekord im Hafen", False)).startswith("Rekord im Hafen Nord")
    assert about(hit("Der Hafen meldet…", True)).startswith("Nord")
    article = with_derived_title(Article("a", "Der Hafen meldet einen Rekord. Mehr dazu morgen."))
    chunk = rag.news.Chunk("a", 1, "Mehr dazu morgen.", 31, 48, 5)
    assert embedding_text(article, chunk) == "Mehr dazu morgen."  # vectors as before titles were derived
    titled = Article("a", article.text, title="Rekord")
    assert embedding_text(titled, chunk) == "Rekord\nMehr dazu morgen."


# ---- round trips ----
def test_the_flag_round_trips_through_dicts_and_json() -> None:
    hit = Hit("a", "a#0", "Der Hafen meldet…", None, None, None, "Der Hafen meldet einen Rekord.", 0, 29, 0.5,
              language="de", similarity=0.8, title_derived=True)
    cit = Citation(1, "a", "a#0", hit.title, None, None, None, hit.text, 0, 29, title_derived=True)
    answer = Answer("Was meldet der Hafen?", "Einen Rekord [1].", (cit,), (hit,), "extractive")
    data = json.loads(json.dumps(answer.to_dict()))
    assert data["citations"][0]["title_derived"] is True and data["passages"][0]["title_derived"] is True
    assert Answer.from_dict(data) == answer
    assert Hit.from_dict(hit.to_dict()) == hit and Citation.from_dict(cit.to_dict()) == cit
    # a record saved before the flag existed reads as a given title
    old = {k: v for k, v in hit.to_dict().items() if k != "title_derived"}
    assert Hit.from_dict(old).title_derived is False
    summary = ArticleSummary("a", "Der Hafen…", None, None, "de", None, None, "2024-05-01T00:00:00Z", 29, 1, True)
    assert summary.to_dict()["title_derived"] is True
    article = Article("a", "Text.", title="Text.", title_derived=True)
    assert Article(**article.to_dict()) == article


# ---- through the index ----
def test_the_seed_gets_a_german_first_sentence_title_and_a_given_title_is_kept(tmp_path: Path, embedder) -> None:
    folder = tmp_path / "index"
    index = rag.open_index(folder, make_settings(folder))
    assert index.ingest([SEED]).ok
    report = index.add_articles([
        {"id": "hafen", "title": "Hafen", "language": "de", "text": "Hafen. Der Hamburger Hafen meldet einen Rekord."},
    ])
    assert report.added == ("hafen",)
    seed = index.article("facebook-banks-de")  # the id does not change
    assert seed.title_derived and seed.title.startswith("Kaum ist die Aufregung des Facebook-Skandals")
    hafen = index.article("hafen")
    assert (hafen.title, hafen.title_derived) == ("Hafen", False)  # an article starting with its title is fine
    rows = {r.id: r for r in index.articles()}
    assert rows["facebook-banks-de"].title == seed.title and rows["facebook-banks-de"].title_derived
    assert rows["hafen"].title_derived is False
    hits = index.search("Welche Banken hat Facebook gefragt?", k=3)
    seed_hits = [h for h in hits if h.article_id == "facebook-banks-de"]
    assert seed_hits and all(h.title == seed.title and h.title_derived for h in seed_hits)
    answer = rag.answer("Welche Banken hat Facebook gefragt?", index, generator="extractive")
    cited = [c for c in answer.citations if c.article_id == "facebook-banks-de"]
    assert cited and all(c.title == seed.title and c.title_derived for c in cited)
    assert all(c.start >= 0 for c in cited)  # never quoted as a headline
    # Deriving the title did not change the content hash: the same file is unchanged.
    assert index.ingest([SEED]).unchanged == ("facebook-banks-de",)


def test_an_index_made_before_titles_were_derived_opens_then_upgrades(tmp_path: Path, embedder) -> None:
    from rag.store.manifest import FORMAT_VERSION

    folder = tmp_path / "old"
    shutil.copytree(FORMAT_2, folder)
    settings = make_settings(folder)
    old = rag.open_index(folder, settings, create=False)
    assert old.stats().format_version == 2 < FORMAT_VERSION
    # Read as it is: the untitled article has no title (the id is shown), nothing is derived.
    rows = {r.id: r for r in old.articles()}
    assert (rows["banken-de"].title, rows["banken-de"].title_derived) == (None, False)
    assert (rows["war-en"].title, rows["war-en"].title_derived) == ("Veterans", False)
    top = old.search("Welche Banken hat Facebook gefragt?", k=1)[0]
    assert (top.article_id, top.title, top.title_derived) == ("banken-de", None, False)
    assert old.article("banken-de").title is None
    hash_before = old.article("banken-de").content_hash

    assert old.upgrade() is True
    after = rag.open_index(folder, settings, create=False)
    assert after.stats().format_version == FORMAT_VERSION and after.stats().articles == 2
    banken = after.article("banken-de")
    # the dateline is not the title; the catalog migration derives like ingest does
    assert banken.title == derive_title(banken.text) and banken.title.startswith("Facebook hat Banken wie JPMorgan")
    assert banken.title_derived and banken.content_hash == hash_before
    assert (after.article("war-en").title, after.article("war-en").title_derived) == ("Veterans", False)
    top = after.search("Welche Banken hat Facebook gefragt?", k=1)[0]
    assert (top.article_id, top.title, top.title_derived) == ("banken-de", banken.title, True)
    assert after.upgrade() is False
