"""rag.conversations: real SQLite files in tmp_path, real answers from the sample index,
real threads and real processes writing at once, and the `rag feedback export` command."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import rag
from rag.conversations import (MAX_COMMENT_CHARS, ConversationInputError, ConversationNotFoundError,
                               ConversationStore, ConversationStoreError, ConversationSummary, MessageNotFoundError,
                               default_path, title_from)
from rag.news import Answer

from conftest import make_settings
from fake_openai import FakeOpenAI

QUESTION = "Which banks did Facebook contact?"
FOLLOW_UP = "And what did they ask the banks for?"
OFF_TOPIC = "What is the recipe for banana bread with walnuts?"
LLM_REPLY = ("Facebook asked JPMorgan Chase and Citigroup for data [1]. Facebook bought Deutsche Bank "
             "in 2019 [1]. Facebook lost 500 billion dollars in a day [1].")
RAG = str(Path(sys.executable).parent / "rag")
ROOT = Path(__file__).resolve().parent.parent


def llm_index(folder: Path, base_url: str) -> rag.NewsIndex:
    settings = make_settings(folder, openai_base_url=base_url, openai_api_key="sk-test-conv", llm_model="test-model",
                             llm_timeout=10.0, llm_max_retries=0)
    return rag.open_index(folder, settings, create=False)


@pytest.fixture(scope="module")
def answers(sample_index_dir: Path) -> dict[str, Answer]:
    """Real answers of every kind: cited, refused, with unsupported sentences, failed."""
    index = rag.open_index(sample_index_dir, make_settings(sample_index_dir), create=False)
    found = {"cited": rag.answer(QUESTION, index, generator="extractive"),
             "refused": rag.answer(OFF_TOPIC, index, generator="extractive")}
    with FakeOpenAI([LLM_REPLY]) as llm:
        found["unsupported"] = rag.answer(QUESTION, llm_index(sample_index_dir, llm.base_url))
    with FakeOpenAI(["401"]) as llm:
        found["failed"] = rag.answer(QUESTION, llm_index(sample_index_dir, llm.base_url))
    assert found["cited"].citations and not found["cited"].refused
    assert found["refused"].refused and found["refused"].hits
    assert found["unsupported"].unsupported and found["unsupported"].notes
    assert found["failed"].error
    return found


@pytest.fixture
def store(tmp_path: Path) -> ConversationStore:
    return ConversationStore(tmp_path / "conversations.sqlite3")


def small_answer(question: str, text: str = "An answer [1].") -> Answer:
    return Answer(question, text, (), (), "extractive", question)


# ---- Answer.from_dict ----
def test_answers_round_trip_through_json_equal(answers: dict[str, Answer]) -> None:
    # the seed article has no headline: its citations carry a derived title, which must come back
    assert any(c.title_derived for c in answers["cited"].citations)
    for kind, answer in answers.items():
        data = json.loads(json.dumps(answer.to_dict()))
        again = Answer.from_dict(data)
        assert again == answer, kind
        assert again.to_dict() == answer.to_dict()
        assert all(isinstance(u.cited, tuple) for u in again.unsupported)  # lists in JSON, tuples again
    with pytest.raises(ValueError, match="'answer'"):
        Answer.from_dict({"question": QUESTION})
    with pytest.raises(ValueError, match="'chunk_id' is missing"):
        rag.Hit.from_dict({"article_id": "a"})


def test_stored_answers_come_back_equal(store: ConversationStore, answers: dict[str, Answer]) -> None:
    convo = store.create("browser-a")
    replies = [store.add_exchange(convo.id, "browser-a", a.question, a) for a in answers.values()]
    messages = store.get(convo.id, "browser-a").messages
    assert [m.role for m in messages] == ["user", "assistant"] * len(answers)
    assert [m.answer for m in messages[1::2]] == list(answers.values())
    assert [m.id for m in messages[1::2]] == [r.id for r in replies]
    assert [m.content for m in messages[1::2]] == [a.text for a in answers.values()]
    assert all(m.answer is None for m in messages[0::2])


# ---- conversations ----
def test_create_list_get_rename_delete(store: ConversationStore, tmp_path: Path) -> None:
    first = store.create("browser-a")
    second = store.create("browser-a", title="Banks")
    assert first.title == "" and first.messages == () and first.owner == "browser-a"
    assert store.get(first.id, "browser-a") == first
    long_question = ("Which of the large American banks did Facebook approach last year about sharing the "
                     "financial data of their customers?")
    store.add_exchange(first.id, "browser-a", long_question, small_answer(long_question))
    store.add_exchange(second.id, "browser-a", "What did they want?", small_answer("What did they want?"))
    got = store.get(first.id, "browser-a")
    assert got.title == title_from(long_question) and got.title.endswith("…") and len(got.title) <= 61
    assert long_question.startswith(got.title[:-1]) and got.updated > got.created
    assert store.get(second.id, "browser-a").title == "Banks"  # a given title is kept

    # Newest first: the first conversation moves up when it gets a new exchange.
    assert [s.id for s in store.list("browser-a")] == [second.id, first.id]
    store.add_exchange(first.id, "browser-a", "And then?", small_answer("And then?"))
    listed = store.list("browser-a")
    assert listed[0] == ConversationSummary(first.id, got.title, store.get(first.id, "browser-a").updated, 4)
    assert [s.id for s in store.list("browser-a", limit=1)] == [first.id]
    assert store.get(first.id, "browser-a").title == got.title  # later questions do not retitle

    store.rename(first.id, "browser-a", "  Facebook   and the banks ")
    assert store.get(first.id, "browser-a").title == "Facebook and the banks"
    with pytest.raises(ConversationInputError, match="empty"):
        store.rename(first.id, "browser-a", "   ")

    store.delete(first.id, "browser-a")
    assert [s.id for s in store.list("browser-a")] == [second.id]
    with pytest.raises(ConversationNotFoundError):
        store.get(first.id, "browser-a")
    with pytest.raises(ConversationNotFoundError):
        store.delete(first.id, "browser-a")
    raw = sqlite3.connect(tmp_path / "conversations.sqlite3")  # the cascade removed the messages too
    assert raw.execute("SELECT count(*) FROM messages WHERE conversation_id = ?", (first.id,)).fetchone() == (0,)
    assert raw.execute("PRAGMA user_version").fetchone() == (1,)
    assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_titles_are_cut_on_a_word_boundary() -> None:
    assert title_from("  Which   banks?\n") == "Which banks?"
    title = title_from("word " * 30)
    assert title == ("word " * 12).strip() + "…"
    assert title_from("x" * 100) == "x" * 60 + "…"


def test_another_browser_sees_and_changes_nothing(store: ConversationStore) -> None:
    mine = store.create("browser-a")
    reply = store.add_exchange(mine.id, "browser-a", QUESTION, small_answer(QUESTION))
    assert store.list("browser-b") == []
    calls = [lambda o, c: store.get(c, o), lambda o, c: store.history(c, o), lambda o, c: store.rename(c, o, "x"),
             lambda o, c: store.delete(c, o), lambda o, c: store.add_exchange(c, o, "q", small_answer("q")),
             lambda o, c: store.replace_last_answer(c, o, small_answer("q"))]
    for call in calls:
        with pytest.raises(ConversationNotFoundError) as wrong_owner:
            call("browser-b", mine.id)
        with pytest.raises(ConversationNotFoundError) as missing:
            call("browser-a", "no-such-id")
        # The same words: a guessed id is never confirmed to exist.
        assert str(wrong_owner.value).replace(mine.id, "X") == str(missing.value).replace("no-such-id", "X")
    with pytest.raises(MessageNotFoundError):
        store.set_feedback(reply.id, "browser-b", 1)
    assert store.export_feedback(io.StringIO(), owner="browser-b") == 0
    with pytest.raises(ConversationInputError, match="owner"):
        store.list("")
    after = store.get(mine.id, "browser-a")  # untouched
    assert after.title == QUESTION and len(after.messages) == 2 and after.messages[1].feedback is None


def test_history_makes_the_follow_up_use_the_previous_question(store: ConversationStore,
                                                              sample_index: rag.NewsIndex) -> None:
    convo = store.create("browser-a")
    first = rag.answer(QUESTION, sample_index, generator="extractive")
    store.add_exchange(convo.id, "browser-a", QUESTION, first)
    history = store.history(convo.id, "browser-a")
    assert history == [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": first.text}]

    follow_up = rag.answer(FOLLOW_UP, sample_index, history=history, generator="extractive")
    assert any(n.startswith("follow-up searched with the previous question") for n in follow_up.notes)
    assert QUESTION in follow_up.query
    alone = rag.answer(FOLLOW_UP, sample_index, generator="extractive")  # without the history: no rewrite
    assert alone.query == FOLLOW_UP and not any("follow-up" in n for n in alone.notes)


def test_replace_last_answer_drops_its_feedback(store: ConversationStore) -> None:
    convo = store.create("browser-a")
    with pytest.raises(ConversationInputError, match="no answer to replace"):
        store.replace_last_answer(convo.id, "browser-a", small_answer("q"))
    kept = store.add_exchange(convo.id, "browser-a", "First?", small_answer("First?", "One."))
    old = store.add_exchange(convo.id, "browser-a", "Second?", small_answer("Second?", "Two."))
    store.set_feedback(kept.id, "browser-a", 1, "good")
    store.set_feedback(old.id, "browser-a", -1, "wrong")

    new = store.replace_last_answer(convo.id, "browser-a", small_answer("Second?", "Two, better."))
    messages = store.get(convo.id, "browser-a").messages
    assert len(messages) == 4 and messages[-1] == new and new.id != old.id
    assert new.content == "Two, better." and new.feedback is None and messages[-2].content == "Second?"
    assert messages[1].feedback is not None and messages[1].feedback.rating == 1  # the earlier rating stays
    assert store.history(convo.id, "browser-a")[-1] == {"role": "assistant", "content": "Two, better."}
    with pytest.raises(MessageNotFoundError):  # a stale click on the replaced answer
        store.set_feedback(old.id, "browser-a", 1)
    out = io.StringIO()
    assert store.export_feedback(out) == 1 and json.loads(out.getvalue())["message_id"] == kept.id


def test_feedback_set_replace_clear_and_export(store: ConversationStore, answers: dict[str, Answer]) -> None:
    convo = store.create("browser-a")
    cited, failed = answers["cited"], answers["failed"]
    first = store.add_exchange(convo.id, "browser-a", QUESTION, cited)
    second = store.add_exchange(convo.id, "browser-a", FOLLOW_UP, failed)
    question = store.get(convo.id, "browser-a").messages[0]

    up = store.set_feedback(first.id, "browser-a", 1, "  cites the right paragraph ")
    assert up is not None and up.rating == 1 and up.comment == "cites the right paragraph"
    down = store.set_feedback(first.id, "browser-a", -1)  # again: replaces
    assert store.get(convo.id, "browser-a").messages[1].feedback == down and down is not None and down.comment == ""
    assert store.set_feedback(first.id, "browser-a", 0) is None  # clears
    assert store.get(convo.id, "browser-a").messages[1].feedback is None
    for bad in (2, -2, True, "1", 0.5):
        with pytest.raises(ConversationInputError, match="rating"):
            store.set_feedback(first.id, "browser-a", bad)  # type: ignore[arg-type]
    with pytest.raises(ConversationInputError, match=str(MAX_COMMENT_CHARS)):
        store.set_feedback(first.id, "browser-a", 1, "x" * (MAX_COMMENT_CHARS + 1))
    with pytest.raises(ConversationInputError, match="only answers"):
        store.set_feedback(question.id, "browser-a", 1)

    store.set_feedback(first.id, "browser-a", 1, "right banks")
    store.set_feedback(second.id, "browser-a", -1, "no answer at all")
    other = store.create("browser-b")
    theirs = store.add_exchange(other.id, "browser-b", OFF_TOPIC, answers["refused"])
    store.set_feedback(theirs.id, "browser-b", -1)

    out = io.StringIO()
    assert store.export_feedback(out, owner="browser-a") == 2
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 2 and "browser-a" not in out.getvalue()  # the owner id is a secret of the browser
    a, b = lines
    assert (a["conversation_id"], a["message_id"], a["question"], a["rating"], a["comment"]) == \
        (convo.id, first.id, QUESTION, 1, "right banks")
    assert a["history"] == [] and b["history"] == [{"role": "user", "content": QUESTION},
                                                   {"role": "assistant", "content": cited.text}]
    assert a["answer"] == cited.text and a["query"] == cited.query and a["generator"] == "extractive"
    assert a["citations"] == json.loads(json.dumps([c.to_dict() for c in cited.citations]))  # as JSON: lists
    assert [p["article_id"] for p in a["passages"]] == [h.article_id for h in cited.hits]
    assert all({"n", "title", "text", "chunk_id"} <= p.keys() for p in a["passages"])
    assert a["asked_at"] <= a["answered_at"] <= a["rated_at"]
    assert b["question"] == FOLLOW_UP and b["error"] == failed.error and b["rating"] == -1
    assert Answer.from_dict({**b, "question": failed.question}) == failed  # everything of the answer is there

    everyone = io.StringIO()
    assert store.export_feedback(everyone) == 3
    assert {json.loads(line)["message_id"] for line in everyone.getvalue().splitlines()} == \
        {first.id, second.id, theirs.id}


# ---- concurrency ----
def test_threads_writing_at_once_lose_nothing(store: ConversationStore) -> None:
    shared = store.create("browser-a")
    n_threads, n_each = 4, 15
    barrier = threading.Barrier(n_threads)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            own = store.create("browser-a", title=f"thread {t}")
            barrier.wait(timeout=30)
            for i in range(n_each):
                q = f"thread {t} question {i}"
                store.add_exchange(shared.id, "browser-a", q, small_answer(q))
                store.add_exchange(own.id, "browser-a", q, small_answer(q))
                store.list("browser-a")
        except BaseException as exc:  # reported below: a thread's exception would vanish
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors and not any(thread.is_alive() for thread in threads)
    assert_complete(store, shared.id, {f"thread {t} question {i}" for t in range(n_threads) for i in range(n_each)})
    assert len(store.list("browser-a")) == n_threads + 1


def test_processes_writing_at_once_lose_nothing(store: ConversationStore) -> None:
    shared = store.create("browser-a")
    script = textwrap.dedent("""
        import sys
        from rag.conversations import ConversationStore
        from rag.news import Answer
        path, conversation, name = sys.argv[1:4]
        store = ConversationStore(path)
        own = store.create("browser-a", title=name)
        for i in range(40):
            q = f"{name} question {i}"
            answer = Answer(q, "An answer [1].", (), (), "extractive", q)
            store.add_exchange(conversation, "browser-a", q, answer)
            reply = store.add_exchange(own.id, "browser-a", q, answer)
            store.set_feedback(reply.id, "browser-a", 1 if i % 2 else -1, name)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(store.path), shared.id, f"p{n}"], env=env,
                              stderr=subprocess.PIPE, text=True) for n in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
    assert_complete(store, shared.id, {f"p{n} question {i}" for n in range(2) for i in range(40)})
    assert store.export_feedback(io.StringIO()) == 80


def assert_complete(store: ConversationStore, conversation_id: str, questions: set[str]) -> None:
    """Every exchange is there, whole: each question directly followed by its own answer."""
    messages = store.get(conversation_id, "browser-a").messages
    assert len(messages) == 2 * len(questions)
    for asked, reply in zip(messages[0::2], messages[1::2]):
        assert asked.role == "user" and reply.role == "assistant"
        assert reply.answer is not None and reply.answer.question == asked.content
    assert {m.content for m in messages[0::2]} == questions


# ---- files ----
def test_files_that_are_not_conversation_databases_are_named(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a database at all, just some notes\n" * 50, encoding="utf-8")
    with pytest.raises(ConversationStoreError, match="notes.txt is not a readable conversations database"):
        ConversationStore(text)
    assert text.read_text(encoding="utf-8").startswith("not a database")

    foreign = tmp_path / "other.sqlite3"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE t (x)")
    with pytest.raises(ConversationStoreError, match="other.sqlite3 is an SQLite database but not a conversations"):
        ConversationStore(foreign)
    assert sqlite3.connect(foreign).execute("PRAGMA journal_mode").fetchone() == ("delete",)  # left as it was

    newer = tmp_path / "newer.sqlite3"
    ConversationStore(newer)
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(ConversationStoreError, match="newer rag"):
        ConversationStore(newer)

    corrupt = tmp_path / "corrupt.sqlite3"
    store = ConversationStore(corrupt)
    convo = store.create("browser-a")
    for i in range(30):
        store.add_exchange(convo.id, "browser-a", f"question {i}", small_answer(f"question {i}", "text " * 200))
    sqlite3.connect(corrupt).execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    data = bytearray(corrupt.read_bytes())
    data[4096:len(data)] = b"\xff" * (len(data) - 4096)  # every page after the first overwritten
    corrupt.write_bytes(bytes(data))
    with pytest.raises(ConversationStoreError, match="corrupt.sqlite3"):
        ConversationStore(corrupt).get(convo.id, "browser-a")

    with pytest.raises(ConversationStoreError, match="no conversations database at .*missing.sqlite3"):
        ConversationStore(tmp_path / "missing.sqlite3", create=False)
    assert not (tmp_path / "missing.sqlite3").exists()


def test_default_path_and_creation_on_open(tmp_path: Path) -> None:
    assert default_path({"RAG_CONVERSATIONS": str(tmp_path / "c.db"), "XDG_DATA_HOME": "/x"}) == tmp_path / "c.db"
    assert default_path({"XDG_DATA_HOME": "/data"}) == Path("/data/rag-news/conversations.sqlite3")
    assert default_path({"HOME": "/home/u"}) == Path("/home/u/.local/share/rag-news/conversations.sqlite3")
    assert default_path({"HOME": "/home/u", "XDG_DATA_HOME": "relative"}) == \
        Path("/home/u/.local/share/rag-news/conversations.sqlite3")
    path = default_path({"XDG_DATA_HOME": str(tmp_path / "data")})
    assert not path.parent.exists()  # nothing before the store is opened
    ConversationStore(path)
    assert path.is_file()


# ---- rag feedback export ----
def test_cli_exports_feedback_as_json_lines(tmp_path: Path) -> None:
    db = tmp_path / "conversations.sqlite3"
    store = ConversationStore(db)
    convo = store.create("browser-a")
    for i, rating in enumerate((1, -1, 0)):
        reply = store.add_exchange(convo.id, "browser-a", f"Frage {i}: Übernahme?", small_answer(f"Frage {i}"))
        store.set_feedback(reply.id, "browser-a", rating, f"Kommentar {i}")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("RAG_CONVERSATIONS", None)

    def run(*args: str, env: dict[str, str] = env) -> subprocess.CompletedProcess[str]:
        return subprocess.run([RAG, "feedback", "export", *args], capture_output=True, text=True, env=env,
                              timeout=120)

    out = tmp_path / "feedback.jsonl"
    proc = run("--db", str(db), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(x["question"], x["rating"], x["comment"]) for x in lines] == \
        [("Frage 0: Übernahme?", 1, "Kommentar 0"), ("Frage 1: Übernahme?", -1, "Kommentar 1")]
    assert proc.stdout == "" and "exported 2 rated answers" in proc.stderr

    by_env = run(env={**env, "RAG_CONVERSATIONS": str(db)})  # stdout by default, the db from the environment
    assert by_env.returncode == 0 and [json.loads(x) for x in by_env.stdout.splitlines()] == lines

    missing = run("--db", str(tmp_path / "nope.sqlite3"))
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.strip().count("\n") == 0 and "no conversations database at" in missing.stderr
    assert "Traceback" not in missing.stderr and not (tmp_path / "nope.sqlite3").exists()
