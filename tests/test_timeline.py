"""Story timelines and "what changed since": the intents (English and German), the passages
in date order on a real small index, the extractive timeline, the prompt an LLM gets."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest

import rag
from rag.generate.base import GenerationRequest
from rag.generate.prompt import build_messages
from rag.retrieve.timeline import CHANGE, TIMELINE, TimelineIntent, parse_timeline_intent

from conftest import make_settings
from fake_openai import FakeOpenAI

NOW = date(2024, 4, 17)  # a Wednesday

#: One developing story (dated), an undated piece about it, and two other stories.
BRIDGE = [
    ("bridge-2", "2024-03-11", "Harbor Bridge closed to trucks",
     "The city of Lindenport closed the Harbor Bridge to trucks on Monday. Engineers said the cracks found last week "
     "could grow under heavy loads. Cars and buses may still cross the Harbor Bridge."),
    ("bridge-5", "2024-04-15", "Harbor Bridge reopens to cars",
     "The Harbor Bridge in Lindenport reopened to cars after the emergency repairs were finished. Trucks remain banned "
     "until the new steel beams are installed in the summer."),
    ("bridge-1", "2024-03-04", "Cracks found in Lindenport's Harbor Bridge",
     "Inspectors found cracks in two steel beams of the Harbor Bridge in Lindenport. The city said the Harbor Bridge "
     "stays open while engineers examine the damage."),
    ("bridge-undated", None, "Living beside the Harbor Bridge",
     "Residents near the Harbor Bridge in Lindenport say the traffic jams around the closed bridge have changed their "
     "daily lives. Many now cycle to work across the old ferry pier."),
    ("bridge-4", "2024-04-02", "Harbor Bridge fully closed",
     "Lindenport closed the Harbor Bridge to all traffic after inspectors found new cracks in a third beam. The mayor "
     "called the full closure of the Harbor Bridge unavoidable."),
    ("bridge-3", "2024-03-20", "Repair contract for the Harbor Bridge",
     "The Lindenport council awarded the repair contract for the Harbor Bridge to Meridian Steel. The repairs of the "
     "Harbor Bridge will cost 12 million euros."),
    ("football", "2024-03-25", "Lindenport United wins the cup",
     "Lindenport United beat Rovers 2-1 in the cup final. The winning goal came in the last minute of extra time."),
    ("bakery", "2024-04-10", "A new sourdough bakery opens",
     "A bakery selling sourdough bread and cinnamon rolls opened in the old town. The owner trained in Copenhagen."),
]
DATED = ["bridge-1", "bridge-2", "bridge-3", "bridge-4", "bridge-5"]
TIMELINE_Q = "How did the Harbor Bridge closure develop?"
CHANGE_Q = "What changed with the Harbor Bridge since March 15, 2024?"


@pytest.fixture(scope="module")
def bridge_dir(tmp_path_factory: pytest.TempPathFactory, embedder) -> Path:
    folder = tmp_path_factory.mktemp("bridge")
    source = folder / "bridge.jsonl"
    source.write_text("\n".join(json.dumps({"id": i, "title": t, "text": x, "source": "Lindenport Post",
                                            "published_at": d, "language": "en"})
                                for i, d, t, x in BRIDGE), encoding="utf-8")
    index = folder / "index"
    report = rag.open_index(index, make_settings(index)).ingest([source])
    assert report.ok and len(report.added) == len(BRIDGE), report.counts()
    return index


@pytest.fixture
def bridge(bridge_dir: Path) -> rag.NewsIndex:
    return rag.open_index(bridge_dir, make_settings(bridge_dir), create=False)


def ids(hits) -> list[str]:
    return [h.article_id for h in hits]


# ---- intents


@pytest.mark.parametrize("question, topic", [
    ("How did the FTX trial develop?", "FTX trial"),
    ("How has the Wells Fargo scandal evolved over time?", "Wells Fargo scandal"),
    ("how did the OpenAI board crisis unfold", "OpenAI board crisis"),
    ("Timeline of the Sam Bankman-Fried trial", "Sam Bankman-Fried trial"),
    ("Give me a timeline of the Gaza war.", "Gaza war"),
    ("What happened with Sam Altman over time?", "Sam Altman"),
    ("How did the Harbor Bridge closure develop in 2024?", "Harbor Bridge closure"),
    ("Wie hat sich der Streit um Facebook entwickelt?", "Streit um Facebook"),
    ("Wie entwickelte sich die Bankenkrise?", "Bankenkrise"),
    ("Chronologie des Facebook-Skandals", "Facebook-Skandals"),
    ("Verlauf der Koalitionsverhandlungen", "Koalitionsverhandlungen"),
])
def test_timeline_questions_and_their_topic(question: str, topic: str) -> None:
    intent = parse_timeline_intent(question, NOW)
    assert intent is not None and intent.kind == TIMELINE and intent.topic == topic


@pytest.mark.parametrize("question, topic, pivot", [
    ("What changed since Monday?", None, "2024-04-15"),
    ("What has changed with FTX since last week?", "FTX", "2024-04-10"),
    ("What's new about the Harbor Bridge since March 15, 2024?", "Harbor Bridge", "2024-03-15"),
    ("What changed since October 2023?", None, "2023-10-01"),
    ("Was hat sich seit letzter Woche geändert?", None, "2024-04-10"),
    ("Was hat sich bei Facebook seit Montag geändert?", "Facebook", "2024-04-15"),
])
def test_change_questions_and_their_pivot(question: str, topic: str | None, pivot: str) -> None:
    intent = parse_timeline_intent(question, NOW)
    assert intent is not None and intent.kind == CHANGE and intent.pivot == pivot
    assert intent.topic == (topic or question)  # nothing left to search: the question itself


def test_a_comparison_of_named_dates_is_a_change_question() -> None:
    q = ("Did the Sporting News change its explanation of the 'over' after November 6, 2023, as compared to its "
         "earlier report on November 1, 2023?")
    intent = parse_timeline_intent(q, NOW)
    assert intent == TimelineIntent(CHANGE, q, "2023-11-06", intent.phrase, ("2023-11-01", "2023-11-06"))


@pytest.mark.parametrize("question", [
    "How did the banks react?",  # how something went, not how it developed over time
    "How did Google develop Bard?",  # "develop" with an object: making something
    "Which banks did Facebook contact?",
    "What happened on 1 October 2023?",  # one day: the time filter's job
    "What is the latest on FTX?",
    "Wie haben die Banken reagiert?",
    "Was hat Facebook die Banken gefragt?",
    "Did The Verge report on the trial on October 5, 2023?",  # one date, nothing compared
])
def test_other_questions_are_no_story(question: str) -> None:
    assert parse_timeline_intent(question, NOW) is None


# ---- retrieval on a real index


def test_timeline_returns_the_story_in_date_order_undated_last(bridge: rag.NewsIndex) -> None:
    got = bridge.retrieve(TIMELINE_Q, k=8)
    assert got.timeline is not None and got.timeline.kind == TIMELINE and got.timeline.topic == "Harbor Bridge closure"
    assert ids(got.hits)[:5] == DATED  # every event, oldest first, one passage each
    assert ids(got.hits)[5:] == ["bridge-undated"]  # relevant but undated: last
    assert "football" not in ids(got.hits) and "bakery" not in ids(got.hits)
    plain = bridge.retrieve(TIMELINE_Q, k=8, timeline=False)
    assert plain.timeline is None and ids(plain.hits) != ids(got.hits)  # by relevance, not by date


def test_change_question_splits_before_and_since(bridge: rag.NewsIndex) -> None:
    got = bridge.retrieve(CHANGE_Q, k=6)
    assert got.timeline is not None and got.timeline.kind == CHANGE and got.timeline.pivot == "2024-03-15"
    assert got.time_intent is None  # not filtered to "March 15": both sides of it are shown
    dated = [h for h in got.hits if h.published_at]
    before = [h.article_id for h in dated if h.published_at[:10] < "2024-03-15"]
    since = [h.article_id for h in dated if h.published_at[:10] >= "2024-03-15"]
    assert before == ["bridge-1", "bridge-2"] and since == ["bridge-3", "bridge-4", "bridge-5"]
    assert ids(got.hits)[:5] == before + since  # before first, then since, each in date order


# ---- answers


def test_extractive_timeline_lists_dated_events_in_order_with_citations(bridge: rag.NewsIndex) -> None:
    ans = rag.answer(TIMELINE_Q, bridge, k=8)
    assert ans.mode == "timeline" and not ans.refused and ans.generator == "extractive"
    assert any(n.startswith("Timeline of 5 dated passages in date order (1 undated") for n in ans.notes)
    events = [line for line in ans.text.splitlines() if line.startswith("- ")]
    dates = [line[2:12] for line in events]
    assert dates[:5] == ["2024-03-04", "2024-03-11", "2024-03-20", "2024-04-02", "2024-04-15"]
    assert all(re.search(r"» \[\d\]$", line) for line in events)
    assert events[-1].startswith("- undated, Lindenport Post: «")  # never given a date
    cited = {c.n: c for c in ans.citations}
    assert len(cited) == len(events) and ans.unsupported == ()
    for line in events:
        c = cited[int(re.search(r"\[(\d)\]$", line).group(1))]
        assert c.quote in line and (c.published_at or "undated")[:10] in line
    assert ans == rag.Answer.from_dict(json.loads(json.dumps(ans.to_dict())))


def test_extractive_change_answer_groups_before_and_since(bridge: rag.NewsIndex) -> None:
    ans = rag.answer(CHANGE_Q, bridge, k=6)
    assert ans.mode == "change" and not ans.refused
    lines = [line for line in ans.text.splitlines() if line.strip()]
    b, s = lines.index("Before 2024-03-15:"), lines.index("Since 2024-03-15:")
    assert b < s
    assert [line[2:12] for line in lines[b + 1:s]] == ["2024-03-04", "2024-03-11"]
    assert [line[2:12] for line in lines[s + 1:s + 4]] == ["2024-03-20", "2024-04-02", "2024-04-15"]
    assert ans.unsupported == ()
    assert any("What changed since 2024-03-15: 2 passages from before, 3 since" in n for n in ans.notes)


def test_openai_path_sends_the_timeline_instruction(bridge_dir: Path) -> None:
    reply = ("2024-03-04: inspectors found cracks in the Harbor Bridge [1].\n"
             "2024-03-11: Lindenport closed the Harbor Bridge to trucks [2].")
    with FakeOpenAI([reply]) as llm:
        settings = make_settings(bridge_dir, openai_base_url=llm.base_url, openai_api_key="sk-test",
                                 llm_model="test-model", llm_timeout=10.0)
        ans = rag.answer(TIMELINE_Q, rag.open_index(bridge_dir, settings, create=False), k=8)
        plain = rag.answer("Who won the cup final in Lindenport?", rag.open_index(bridge_dir, settings, create=False))
    assert ans.mode == "timeline" and ans.generator == "openai:test-model" and plain.mode == ""
    user = llm.user_prompt(0)
    assert "The sources are in date order, oldest first. Tell how the story developed, in date order." in user
    assert "one per event, each with its date and source number, like:\n- YYYY-MM-DD: what the source" in user
    shown = re.findall(r'<source id="(\d+)"[^>]*? date="([^"]+)"', user)
    dates = [d for _, d in shown]
    assert dates[:5] == ["2024-03-04", "2024-03-11", "2024-03-20", "2024-04-02", "2024-04-15"]
    assert dates[5:] == ["undated"]  # the undated article is not given a date
    assert "date order" not in llm.user_prompt(1)  # other questions: the prompt as before
    assert [c.n for c in ans.citations] == [1, 2] and ans.unsupported == ()


def test_change_prompt_names_the_groups(bridge: rag.NewsIndex) -> None:
    got = bridge.retrieve(CHANGE_Q, k=6)
    user = build_messages(GenerationRequest(CHANGE_Q, got.hits, language="en", timeline=got.timeline))[-1]["content"]
    assert ("Sources 1-2 are from before 2024-03-15, sources 3-5 from 2024-03-15 on. Say what is new since "
            "2024-03-15 compared with what came before.") in user
    only_since = tuple(h for h in got.hits if (h.published_at or "") >= "2024-03-15")
    user = build_messages(GenerationRequest(CHANGE_Q, only_since, language="en", timeline=got.timeline))[-1]["content"]
    assert "No source is from before 2024-03-15" in user
