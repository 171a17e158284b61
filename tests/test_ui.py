"""The chat UI's panels (rag/ui/), their handlers called directly: no browser, no server.
The real sample index and embedder; the LLM is tests/fake_openai.py."""

from __future__ import annotations

import html
import re
import sys
import tempfile
import time
from pathlib import Path

import pytest

import rag

from conftest import BANKS, ROOT, make_settings
from fake_openai import FakeOpenAI
from rag.ui import app
from rag.ui.app import Panels
from rag.ui.base import UISettings
from rag.ui.render import esc, md_escape
from rag.store.lock import WriteLock
from rag.ui import render

KEY = "sk-test_DO-NOT-LEAK_ui-5b21"  # "_" is escaped in chat Markdown
QUESTION = "Which banks did Facebook contact?"
HOSTILE = ('Facebook Bankdaten Anfrage: Facebook bat JPMorgan Chase und Citigroup um Kundendaten. '
           '<img src=x onerror="window.__xss=1"> <script>window.__xss=2</script> '
           '[click me](javascript:window.__xss=3) <a href="javascript:alert(4)">link</a>')


def callbacks(folder: Path, ui: UISettings | None = None, **overrides) -> Panels:
    settings = make_settings(folder, **overrides)
    return Panels.create(settings, rag.open_index(folder, settings, create=False), ui=ui)


def run_ask(cb: Panels, question: str, state=None, **options):
    outputs = list(cb.chat.ask(question, state, **options))
    assert outputs, "the callback yielded nothing"
    return outputs


def shown(markup: str) -> str:
    """Roughly what a reader sees: tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


def assert_only_safe_markup(markup: str, chat: bool = False) -> None:
    """Every tag in UI output is one app.py made on purpose, every link safe;
    chat messages (Markdown) also hold no Markdown link."""
    tags = set(re.findall(r"<\s*([a-zA-Z][\w-]*)", markup))
    assert tags <= {"a", "span", "div", "b", "code", "blockquote", "mark", "details", "summary", "ul", "li",
                    "p", "table", "tr", "th", "td"}, tags
    assert not re.search(r"<[^>]*\son\w+\s*=", markup), "event handler attribute in output"
    for href in re.findall(r'href="([^"]*)"', markup):
        assert href.startswith(("#src-", "http://", "https://")), href
    if chat:
        assert "](" not in markup and not re.search(r"(?m)^\s*(\d+[.)]|[-+*>#]) ", markup.split("**⚠")[0])


# ---------------------------------------------------------------- pure helpers
def test_escaping_helpers() -> None:
    assert render.safe_url("https://example.com/a?b=1&c=2") == "https://example.com/a?b=1&c=2"
    for bad in ("javascript:alert(1)", "JaVaScRiPt:alert(1)", " javascript:x", "data:text/html,x", "//evil.com",
                "ftp://x.org/", "http://", 'https://x.org/"onmouseover="a', "https://x.org/ a", None, 42):
        assert render.safe_url(bad) is None, bad
    assert render.safe_name("../../etc/passwd.txt") == "passwd.txt"
    assert render.safe_name("..\\..\\win.ini") == "win.ini"
    assert render.safe_name("..") == "upload" and render.safe_name("") == "upload"
    assert render.safe_name("my report (final); rm -rf.MD") == "my_report_final_rm_-rf.md"
    md = md_escape("<b>x</b> [a](javascript:x) **bold** `code` 1. item https://x.org www.y.com")
    assert "<" not in md and "[" not in md and "*" not in md and "`" not in md and "://" not in md
    assert html.unescape(md) == "<b>x</b> [a](javascript:x) **bold** `code` 1. item https://x.org www.y.com"


def test_a_card_marks_a_derived_title_and_keeps_the_id() -> None:
    def card(title: str | None, derived: bool) -> str:
        hit = rag.Hit("bahn-1", "bahn-1#0", title, None, "Nord", None, "Die Bahn fährt wieder.", 0, 22, 0.9,
                      title_derived=derived)
        return render.render_sources(rag.Answer("q", "a", (), (hit,), "extractive"), 1)

    marker = '<span class="rag-muted rag-derived">(title from the first sentence)</span>'
    derived = card("Die Bahn <fährt> wieder.", True)
    assert f"Die Bahn &lt;fährt&gt; wieder. {marker}</div>" in derived and "<code>bahn-1</code>" in derived
    assert_only_safe_markup(derived)
    given = card("Bahn-Streik vorbei", False)
    assert "Bahn-Streik vorbei</div>" in given and "rag-derived" not in given
    untitled = card(None, False)  # an index from before derived titles: the id, unmarked
    assert '<span class="rag-badge">1</span> bahn-1</div>' in untitled and "rag-derived" not in untitled


def test_rendering_escapes_hostile_answer_and_sources() -> None:
    hostile_title = '<img src=x onerror="window.__xss=1">Title'
    hit = rag.Hit("evil-1", "evil-1#0", hostile_title, "javascript:alert(1)", "<b>Src</b>", "2023-10-01",
                  "Intro. " + HOSTILE + " The end.", 100, 100 + len("Intro. " + HOSTILE + " The end."), 0.9)
    good = rag.Hit("good", "good#0", None, "https://news.example/a?x=1&y=2", "Example News", "2023-10-02",
                   "Facebook asked JPMorgan Chase for data.", 0, 39, 0.8)
    quote = "Facebook asked JPMorgan Chase for data."
    answer = rag.Answer(QUESTION, "<script>window.__xss=5</script> Facebook asked JPMorgan Chase [2]. "
                                  "It bought a bank [1]. [x](javascript:alert(6))",
                        (rag.Citation(2, "good", "good#0", None, good.url, good.source, good.published_at,
                                      quote, 0, 39),),
                        (hit, good), "openai:test",
                        unsupported=(rag.Unsupported("It bought a bank.", (1,), "not found in source [1]", 0.3),))
    chat = render.render_answer(answer.text, 7, len(answer.hits), answer.unsupported)
    sources = render.render_sources(answer, 7)
    assert_only_safe_markup(chat, chat=True)
    assert_only_safe_markup(sources)
    assert '<a class="rag-cite" href="#src-7-2"' in chat and '<a class="rag-cite" href="#src-7-1"' in chat
    assert "<script>window.__xss=5</script>" in shown(chat)  # shown as text
    assert 'class="rag-flag"' in chat and "Not supported by the cited sources" in chat
    # sources: the cited passage with its quote highlighted, the hostile one as inert text
    assert 'id="src-7-2"' in sources and 'id="src-7-1"' in sources
    assert f'<mark class="rag-quote">{quote}</mark>' in sources
    assert '<a href="https://news.example/a?x=1&amp;y=2" target="_blank"' in sources
    assert "&lt;img src=x onerror=&quot;window.__xss=1&quot;&gt;Title" in sources
    assert "&lt;script&gt;window.__xss=2&lt;/script&gt;" in sources
    assert "It bought a bank." in sources and "not found in source [1]" in sources


def test_every_sentence_citing_a_passage_is_highlighted_and_each_note_shown_once() -> None:
    text = "Facebook asked JPMorgan Chase for data. The bank said no. Wells Fargo was asked too."
    hit = rag.Hit("a", "a#0", "Banks", None, "Wire", "2023-10-02", text, 50, 50 + len(text), 0.9)
    first, second = "Facebook asked JPMorgan Chase for data.", "Wells Fargo was asked too."
    answer = rag.Answer("Which banks?", "JPMorgan Chase [1]. Wells Fargo [1].",
                        (rag.Citation(1, "a", "a#0", "Banks", None, "Wire", None, first, 50, 50 + len(first)),
                         rag.Citation(1, "a", "a#0", "Banks", None, "Wire", None, second,
                                      50 + text.index(second), 50 + len(text))),
                        (hit,), "openai:m", query="banks Facebook asked",
                        notes=("follow-up rewritten as: banks Facebook asked",) * 2)
    sources = render.render_sources(answer, 3)
    marks = re.findall(r'<mark class="rag-quote">(.*?)</mark>', sources)
    assert marks == [first, second], marks  # both sentences, in place, "The bank said no." between them
    footer = shown(re.search(r'<div class="rag-muted rag-footer">(.*?)</div>', sources).group(1))
    assert footer.count("banks Facebook asked") == 1 and "searched for" not in footer, footer
    assert footer.startswith("answered by openai:m")
    plain = render.plain_answer(answer)
    assert plain == "JPMorgan Chase [1]. Wells Fargo [1].\n\nSources:\n[1] Banks (Wire, 2023-10-02)"


# ---------------------------------------------------------------- answering
def test_answer_streams_into_chat_with_sources(sample_index_dir: Path) -> None:
    cb = callbacks(sample_index_dir)
    outputs = run_ask(cb, QUESTION)
    assert len(outputs) >= 3  # the question at once, then the streamed answer, then the checked one
    first_chat, _, _, box = outputs[0]
    assert box == "" and first_chat[-1]["role"] == "assistant" and "Searching" in first_chat[-1]["content"]
    chat, sources, state, _ = outputs[-1]
    assert [m["role"] for m in chat] == ["user", "assistant"]
    reply = chat[-1]["content"]
    assert all(bank in shown(reply) for bank in BANKS), shown(reply)
    link = re.search(r'href="#src-1-(\d+)"', reply)
    assert link, reply
    card = re.search(rf'<div class="rag-src rag-cited" id="src-1-{link.group(1)}">(.*?)</blockquote></div>', sources,
                     re.S)
    assert card and "facebook-banks-de" in card.group(1)  # the id stays shown beside a derived title
    assert re.search(r'<div class="rag-src-title">.*Kaum ist die Aufregung des Facebook-Skandals.*…'
                     r' <span class="rag-muted rag-derived">\(title from the first sentence\)</span></div>',
                     card.group(1)), card.group(1)
    quote = re.search(r'<mark class="rag-quote">(.*?)</mark>', card.group(1), re.S).group(1)
    assert all(bank in html.unescape(quote) for bank in BANKS)
    assert_only_safe_markup(reply, chat=True)
    assert_only_safe_markup(sources)
    assert state.history[0] == ("user", QUESTION) and state.turn == 1

    # A follow-up uses the conversation: without an LLM the previous question is searched along.
    chat2, sources2, state2, _ = run_ask(cb, "and what did Google want?", state)[-1]
    assert len(chat2) == 4 and len(state2.history) == 4
    assert QUESTION in sources2 and "Google" in shown(sources2)
    assert 'id="src-2-' in sources2 and 'id="src-1-' in sources2  # earlier sources stay, collapsed


def test_llm_down_shows_message_and_sources(sample_index_dir: Path) -> None:
    with FakeOpenAI(["500"]) as llm:
        cb = callbacks(sample_index_dir, openai_base_url=llm.base_url, openai_api_key=KEY, llm_max_retries=0)
        chat, sources, state, _ = run_ask(cb, QUESTION)[-1]
    reply = shown(chat[-1]["content"])
    assert "Could not write an answer" in reply and "HTTP 500" in reply
    assert "The language model failed" in sources and "facebook-banks-de" in sources
    assert "Traceback" not in reply + sources
    assert KEY not in repr((chat, sources, state))


def test_stop_keeps_the_text_so_far_and_closes_the_llm_stream(sample_index_dir: Path) -> None:
    """The stop button: Gradio cancels the handler, which closes the answer's generator; the
    LLM's HTTP stream must close then (the server stops writing), and the chat keeps the
    text so far, marked stopped, out of the model's history."""
    words = " ".join(f"word{i}" for i in range(400))
    with FakeOpenAI([f"JPMorgan Chase [1] {words}."], word_delay=0.02) as llm:
        cb = callbacks(sample_index_dir, openai_base_url=llm.base_url, openai_api_key=KEY)
        run = cb.chat.ask(QUESTION, None)
        session = None
        for _, _, session, _ in run:
            if "word3" in session.chat[-1].content:
                break
        run.close()  # what Gradio's cancel does to the handler
        deadline = time.monotonic() + 10
        while llm.streams_cut == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert llm.streams_cut == 1, "the LLM stream was not closed"
    chat, _, stopped, _ = cb.chat.stop(session)
    assert "Stopped" in shown(chat[-1]["content"]) and "word3" in shown(chat[-1]["content"])
    assert "▌" not in chat[-1]["content"]
    assert stopped.history == () and stopped.turn == 0  # nothing half-written goes to the model
    # Regenerate answers the stopped question again, in its place.
    with FakeOpenAI(["JPMorgan Chase and Wells Fargo [1]."]) as llm:
        cb = callbacks(sample_index_dir, openai_base_url=llm.base_url, openai_api_key=KEY)
        chat, _, again, _ = list(cb.chat.regenerate(stopped))[-1]
    assert [m["role"] for m in chat] == ["user", "assistant"] and "Wells Fargo" in shown(chat[-1]["content"])
    assert again.history[0] == ("user", QUESTION) and again.turn == 1
    chat, _, twice, _ = list(cb.chat.regenerate(again))[-1]  # an answered question is replaced, not added
    assert len(chat) == 2 and len(twice.history) == 2 and len(twice.turns) == 1


def test_settings_reach_the_answer(sample_index_dir: Path) -> None:
    """Passages, retrieval mode, source filter and model name from the settings panel."""
    with FakeOpenAI(["Google staged parts of its Gemini demo [1]."]) as llm:
        cb = callbacks(sample_index_dir, openai_base_url=llm.base_url, openai_api_key=KEY)
        chat, sources, _, _ = run_ask(cb, "What did Google fake in its AI demo?", k=2, mode="sparse",
                                      sources=["TechCrunch"], generator="openai", model="other-model")[-1]
    assert llm.requests and llm.requests[-1]["body"]["model"] == "other-model"
    assert "answered by openai:other-model" in sources
    cards = re.findall(r'<div class="rag-meta">(.*?)</div>', sources)
    assert 1 <= len(cards) <= 2 and all(meta.startswith("TechCrunch") for meta in cards), cards
    # the extractive choice needs no LLM at all
    chat, sources, _, _ = run_ask(cb, QUESTION, generator="extractive")[-1]
    assert "No language model is available" in shown(chat[-1]["content"]) and "answered by extractive" in sources


def test_api_key_never_shown(sample_index_dir: Path) -> None:
    leaky = f"Facebook asked JPMorgan Chase, Wells Fargo, Citigroup and U.S. Bancorp [1]. My key is {KEY}."
    with FakeOpenAI([leaky]) as llm:
        cb = callbacks(sample_index_dir, openai_base_url=llm.base_url.replace("http://", "http://user:pw@"),
                       openai_api_key=KEY, llm_max_retries=0)
        outputs = run_ask(cb, QUESTION)
    assert "My key is ***" in shown(outputs[-1][0][-1]["content"])
    # Saved conversations (and so the feedback export) hold the scrubbed text too.
    with FakeOpenAI([leaky]) as llm:
        cbs = callbacks(sample_index_dir, openai_base_url=llm.base_url, openai_api_key=KEY, llm_max_retries=0)
        session = cbs.conversations.restore("", "")[2]
        session = run_ask(cbs, QUESTION, session)[-1][2]
    stored = cbs.ctx.store.get(session.conversation_id, session.owner)
    assert KEY not in repr(stored) and "My key is ***" in stored.messages[-1].answer.text
    with FakeOpenAI(["401"]) as llm:
        cb401 = callbacks(sample_index_dir, openai_base_url=llm.base_url, openai_api_key=KEY)
        outputs += run_ask(cb401, QUESTION)
    everything = repr(outputs) + cb.status.config_html() + cb.library.stats_html() + cb401.status.config_html()
    for spelling in (KEY, md_escape(KEY), esc(KEY), "user:pw@"):
        assert spelling not in everything and spelling not in shown(everything)
    assert "API key</th><td>set" in cb.status.config_html()
    assert "rejected the API key (401)" in repr(outputs)


def test_hostile_article_and_llm_output_are_inert(sample_copy: Path) -> None:
    writer = rag.open_index(sample_copy, make_settings(sample_copy))
    writer.add_articles([{"id": "xss-article", "title": '<img src=x onerror="window.__xss=1">Facebook und Banken',
                          "url": "javascript:window.__xss=7", "source": "<script>window.__xss=8</script>",
                          "text": HOSTILE}])
    reply = ('<img src=x onerror="window.__xss=1"> The banks were JPMorgan Chase and Citigroup [1]. '
             '[Click here](javascript:window.__xss=3) <script>window.__xss=2</script>')
    with FakeOpenAI([reply]) as llm:
        cb = callbacks(sample_copy, openai_base_url=llm.base_url, openai_api_key=KEY)
        chat, sources, _, _ = run_ask(cb, QUESTION, k=8)[-1]
    assert 'id="src-1-' in sources and "xss-article" in sources
    assert_only_safe_markup(chat[-1]["content"], chat=True)
    assert_only_safe_markup(sources)
    assert '<script>window.__xss=2</script>' in shown(chat[-1]["content"])
    assert "&lt;img src=x onerror=&quot;window.__xss=1&quot;&gt;Facebook und Banken" in sources
    assert "&lt;script&gt;window.__xss=2&lt;/script&gt;" in sources


def test_errors_become_short_messages(sample_index_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                      caplog: pytest.LogCaptureFixture) -> None:
    cb = callbacks(sample_index_dir)
    chat, _, state, _ = run_ask(cb, QUESTION, since="31.10.2023")[-1]
    assert "must be a date like 2023-10-31" in shown(chat[-1]["content"]) and state.turn == 0

    def boom(*args, **kwargs):
        raise RuntimeError("internal detail\nTraceback (most recent call last): ...")
    monkeypatch.setattr(rag, "answer_stream", boom)
    chat, _, _, _ = run_ask(cb, QUESTION)[-1]
    assert "Something went wrong (RuntimeError)" in shown(chat[-1]["content"])
    assert "Traceback" not in repr(chat) and "internal detail" not in repr(chat)
    assert "internal detail" in caplog.text  # logged for the operator


# ---------------------------------------------------------------- uploading
def test_upload_indexes_good_files_and_reports_bad_ones(sample_copy: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the upload's working folder goes
    up = tmp_path / "uploads"
    up.mkdir()
    good = up / "zorblat.txt"
    good.write_text("Zorblat Industries will build its new headquarters in Reykjavik, the company said on "
                    "Tuesday. The building will house 400 engineers.\n", encoding="utf-8")
    bad = up / "broken.json"
    bad.write_text('{"title": "x", "text": ', encoding="utf-8")
    exe = up / "tool.exe"
    exe.write_bytes(b"MZ\x90\x00")
    big = up / "big.txt"
    big.write_text("x" * 2_000_000)
    cb = callbacks(sample_copy, ui=UISettings(upload_max_mb=1))
    before = cb.ctx.index.stats().articles
    outputs = list(cb.library.upload([str(good), str(bad), str(exe), str(big)]))
    statuses = [o[0] for o in outputs]
    assert any("Embedding" in s for s in statuses[:-1])  # progress was shown
    final, stats, _, files = outputs[-1]
    text = shown(final)
    assert "Indexed 1 new" in text
    assert "broken.json" in text and "malformed JSON" in text
    assert "tool.exe" in text and "not an accepted file type" in text
    assert "big.txt" in text and "too large" in text
    assert str(scratch) not in final and str(up) not in final  # no server paths shown
    assert cb.ctx.index.stats().articles == before + 1 and f"<b>{before + 1:,}</b> articles" in stats
    assert files is None  # the file box is emptied
    assert list(scratch.iterdir()) == []  # the working copy is gone

    nothing = list(cb.library.upload([]))[-1][0]
    assert "Choose one or more files" in nothing

    with WriteLock(sample_copy):  # another writer ('rag ingest') holds the index
        status = list(cb.library.upload([str(good)]))[-1][0]
    assert "Could not add the articles" in status and "locked" in status and list(scratch.iterdir()) == []


def test_upload_shows_a_moving_progress_bar_and_cancel_leaves_the_index_as_it_was(sample_copy: Path,
                                                                                   tmp_path: Path) -> None:
    up = tmp_path / "many"
    up.mkdir()
    for i in range(40):
        (up / f"story-{i}.txt").write_text(
            f"Story {i}. " + " ".join(f"The council of Quux{i} met on day {d} to discuss the tram." for d in range(40)),
            encoding="utf-8")
    cb = callbacks(sample_copy)
    before = cb.ctx.index.stats().to_dict()
    files = sorted(str(p) for p in up.iterdir())
    run = cb.library.upload(files)
    seen: list[int] = []
    for status, *_ in run:
        bar = re.search(r'<progress max="100" value="(\d+)"', status)
        if bar:
            seen.append(int(bar.group(1)))
        if re.search(r"Embedding.*about \d+ (s|min) left", shown(status)):  # mid-way, with an ETA
            assert cb.library.cancel() != ""  # the Cancel button of this tab
    assert seen == sorted(seen) and len(set(seen)) >= 2, seen  # it moved, never backwards
    assert "Cancelled: nothing was added" in shown(status), shown(status)
    after = rag.open_index(sample_copy, make_settings(sample_copy), create=False).stats().to_dict()
    assert after["articles"] == before["articles"] and after["chunks"] == before["chunks"]
    report = list(cb.library.upload(files[:2]))[-1][0]  # the lock is free again
    assert "Indexed 2 new" in shown(report)


def test_build_app_queues(sample_index_dir: Path) -> None:
    settings = make_settings(sample_index_dir, openai_api_key=KEY)
    demo = app.build_app(settings, rag.open_index(sample_index_dir, settings, create=False),
                         ui=UISettings(concurrency=3))
    groups = {fn.concurrency_id: fn.concurrency_limit for fn in demo.fns.values() if fn.concurrency_id}
    assert groups.get("answer") == 3 and groups.get("ingest") == 1
    assert KEY not in repr(demo.get_config_file())


def test_generator_status_line_says_who_answers_and_why(sample_index_dir: Path, tmp_path: Path) -> None:
    # No usable local model and no LLM server: the UI says so, with the reason, and still answers (quotes).
    cb = callbacks(sample_index_dir, generator="auto", local_model=str(tmp_path / "missing.gguf"))
    line = cb.status.generator_html()
    assert 'data-state="ready"' in line and "No language model: answers quote the sources" in shown(line)
    assert "missing.gguf" in shown(line) and "is not a file" in shown(line)
    html_line, timer = cb.status.poll_generator()
    assert html_line == line and timer.active is False  # nothing to wait for: the timer stops
    chat, sources, _, _ = run_ask(cb, QUESTION)[-1]
    assert "No language model is available" in shown(chat[-1]["content"])
    assert "no local model: RAG_LOCAL_MODEL=" in shown(sources)
    # An LLM server configured: it answers.
    with FakeOpenAI(["x"]) as llm:
        line = callbacks(sample_index_dir, openai_base_url=llm.base_url, openai_api_key=KEY).status.generator_html()
    assert "Answers are written by an LLM server" in shown(line) and KEY not in line


def test_local_model_loads_at_launch_and_its_state_is_shown(sample_index_dir: Path) -> None:
    from rag.generate import local

    settings = make_settings(sample_index_dir, generator="auto")
    reason = local.unavailable_reason(settings)
    if reason:
        pytest.skip(f"local model: {reason}")
    cb = Panels.create(settings, rag.open_index(sample_index_dir, settings, create=False))
    cb.status.warm_up()
    seen = {cb.status.generator_status().state}
    runtime = local.runtime(settings)
    runtime.wait()
    seen.add(cb.status.generator_status().state)
    assert seen <= {"loading", "ready"} and "ready" in seen  # started at launch, not at the first question
    line = cb.status.generator_html()
    assert "Answers are written by the local model" in shown(line) and "Qwen2.5-Coder-1.5B-Instruct" in shown(line)
    deadline = time.monotonic() + 120  # the embedding model loads beside it; polling goes on until both are in
    while cb.status.embedder_state == "loading" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cb.status.poll_generator()[1].active is False


def test_the_embedding_model_loading_is_shown_and_the_first_question_says_it_waits(sample_index_dir: Path) -> None:
    cb = callbacks(sample_index_dir)
    cb.status.warm_up()
    deadline = time.monotonic() + 120
    while cb.status.embedder_state == "loading" and time.monotonic() < deadline:
        assert "Loading the embedding model" in shown(cb.status.generator_html())
        assert cb.status.poll_generator()[1].active is True  # polled until it is ready
        time.sleep(0.05)
    assert cb.status.embedder_state == "ready"
    assert "embedding model" not in shown(cb.status.generator_html())
    cb.status.embedder_state = "loading"  # as right after start, before the model is in memory
    first = next(iter(cb.chat.ask(QUESTION, None)))
    assert "Loading the embedding model" in first[0][-1]["content"]


def test_a_taken_port_is_one_line_naming_the_fix(sample_index_dir: Path) -> None:
    """`python app.py` with its port taken: exit 1 and one line saying what to change, before
    any model loads (it used to print the URL, then a traceback whose advice did nothing)."""
    import os
    import socket
    import subprocess

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAG_INDEX": str(sample_index_dir), "RAG_UI_PORT": str(port)}
        env.pop("OPENAI_BASE_URL", None), env.pop("OPENAI_API_KEY", None)
        for command in (["app.py"], ["app.py", "--port", str(port)], ["-m", "rag.cli", "ui", "--port", str(port)]):
            proc = subprocess.run([sys.executable, *command], cwd=ROOT, env=env, capture_output=True,
                                  text=True, timeout=120)
            assert proc.returncode == 1, proc.stderr[-2000:]
            lines = [line for line in proc.stderr.splitlines() if line.strip()]
            assert lines[-1] == (f"error: port {port} on 127.0.0.1 is already in use (another 'python app.py'?); "
                                 f"pick another with --port N or RAG_UI_PORT=N"), proc.stderr[-2000:]
            assert "Traceback" not in proc.stderr and "News Q&A on" not in proc.stdout
    assert app.port_problem("127.0.0.1", 70000) is not None and "1-65535" in app.port_problem("127.0.0.1", 70000)
    assert "RAG_UI_HOST" in app.port_problem("no-such-host.invalid", 8080)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        unused = free.getsockname()[1]
    assert app.port_problem("127.0.0.1", unused) is None


# ---------------------------------------------------------------- conversations
def test_conversations_survive_a_reload_and_can_be_renamed_rated_exported_deleted(sample_index_dir: Path,
                                                                                    tmp_path: Path) -> None:
    import gradio as gr

    ui = UISettings(conversations=str(tmp_path / "chats.sqlite3"))
    cb = callbacks(sample_index_dir, ui=ui)
    chat, sources, session, owner, open_id, listing = cb.conversations.restore("", "")
    assert re.fullmatch(r"[0-9a-f]{32}", owner) and open_id == "" and chat == [] and listing.choices == []
    _, _, session, _ = run_ask(cb, QUESTION, session)[-1]
    _, _, session, _ = run_ask(cb, "And what did they ask the banks for?", session)[-1]
    open_id, listing = cb.conversations.after_answer(session)
    assert open_id == session.conversation_id and [c[0] for c in listing.choices] == [QUESTION]

    # A reload: the browser brings its owner id and the open conversation; the chat comes back as it was.
    chat2, sources2, restored, owner2, open2, _ = app.Panels.create(
        cb.ctx.settings, cb.ctx.index, ui).conversations.restore(owner, open_id)
    assert owner2 == owner and open2 == open_id and restored.history == session.history
    assert chat2 == session.messages() and sources2 == render.sources_panel(session.turns)
    # Another browser sees none of it, and cannot open it by id.
    _, _, stranger, other, _, others = cb.conversations.restore("", "")
    assert other != owner and others.choices == []
    assert cb.conversations.open(open_id, stranger)[0] == []

    # Copy gives plain text: the answer with its [n] and the cited sources, no markup.
    plain = session.chat[1].plain
    assert "<" not in plain and "[1]" in plain and "Sources:\n[1] " in plain and all(b in plain for b in BANKS)
    assert '<span class="rag-plain">' in session.chat[1].content

    # Rate the first answer, comment, export.
    pending, row, _, status = cb.conversations.rate(session, gr.LikeData(None, {"index": 1, "value": "",
                                                                                "liked": False}))
    assert pending == (session.chat[1].message_id, -1) and row.visible is True and "saved" in shown(status)
    _, row, _, status = cb.conversations.comment("The banks were right, the date was missing.", pending, session)
    assert "Comment saved" in shown(status)
    exported, status = cb.conversations.export(session)
    lines = Path(exported).read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 and '"rating": -1' in lines[0] and "date was missing" in lines[0]
    assert cb.conversations.export(stranger)[0] is None

    # Rename, then delete: the list follows; a new conversation starts empty and keeps the owner.
    listing, _, status = cb.conversations.rename("Facebook and the banks", session)
    assert [c[0] for c in listing.choices] == ["Facebook and the banks"]
    chat3, _, fresh, _, open3, listing, status = cb.conversations.delete(session)
    assert chat3 == [] and open3 == "" and listing.choices == [] and fresh.owner == owner
    assert "deleted" in shown(status)
    assert cb.conversations.restore(owner, open_id)[0] == []  # a deleted conversation is not restored


# ---------------------------------------------------------------- the LLM server chosen in the UI
def test_llm_server_set_in_the_ui_is_used_tested_saved_only_when_asked(sample_index_dir: Path,
                                                                         tmp_path: Path) -> None:
    import os
    import socket

    prefs = tmp_path / "llm.json"
    cb = callbacks(sample_index_dir, ui=UISettings(llm_prefs=str(prefs)))
    choice, url, model, _, status = cb.llm.restore()
    assert choice.base_url == "" and url == "" and "configured generator" in shown(status)
    # Choosing the LLM generator with no server anywhere: a message that says where to set one,
    # and the passages are still shown.
    chat, sources, _, _ = run_ask(cb, QUESTION, generator="openai")[-1]
    assert "rag-src" in sources and "facebook-banks-de" in sources, sources
    assert "OPENAI_BASE_URL" in shown(chat[-1]["content"]) or "server" in shown(chat[-1]["content"])

    with FakeOpenAI(["JPMorgan Chase, Wells Fargo, Citigroup and U.S. Bancorp [1]."]) as llm:
        ok = cb.llm.test(llm.base_url, "test-model", KEY, choice)
        assert "rag-ok" in ok and "test-model" in shown(ok) and KEY not in ok
        choice, key_box, status = cb.llm.apply(llm.base_url, "test-model", KEY, False, choice)
        assert choice.api_key == KEY and key_box.value == "" and KEY not in repr(choice) + status
        assert not prefs.exists()  # not asked to remember: nothing on disk
        chat, sources, _, _ = run_ask(cb, QUESTION, generator="auto", llm=choice)[-1]
        sent = llm.requests[-1]
        assert sent["authorization"] == f"Bearer {KEY}" and sent["body"]["model"] == "test-model"
        assert "answered by openai:test-model" in sources and "Wells Fargo" in shown(chat[-1]["content"])
        # Remembered: the file is private to the user and the key comes back after a restart.
        choice, _, status = cb.llm.apply(llm.base_url, "test-model", "", True, choice)  # "" keeps the key
        assert (os.stat(prefs).st_mode & 0o777) == 0o600 and KEY in prefs.read_text(encoding="utf-8")
        again = callbacks(sample_index_dir, ui=UISettings(llm_prefs=str(prefs))).llm.restore()
        assert again[0].api_key == KEY and again[1] == llm.base_url and KEY not in repr(again)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    refused = cb.llm.test(f"http://127.0.0.1:{closed}/v1", "m", KEY, choice)
    assert "rag-error" in refused and KEY not in refused
    assert "rag-error" in cb.llm.test("file:///etc/passwd", "m", "", choice)
    gone = cb.llm.forget_saved()
    assert gone[0].base_url == "" and not prefs.exists()
    # Reachable from other machines without a login: the browser cannot point the server anywhere.
    exposed = callbacks(sample_index_dir, ui=UISettings(host="0.0.0.0", llm_prefs=str(prefs)))
    assert not exposed.llm.editable and "RAG_UI_USER" in shown(exposed.llm.apply("http://x/v1", "m", "", True, None)[2])
    # The boxes open only after the saved settings are shown, and only where the UI is private.
    opened = cb.llm.opened()
    assert [c.interactive for c in opened[1:4] + opened[5:]] == [True] * 6 and opened[1].value == ""
    shut = exposed.llm.opened()
    assert [c.interactive for c in shut[1:4] + shut[5:]] == [False] * 6


def test_question_box_opens_only_after_the_page_restored_its_conversation(sample_index_dir: Path) -> None:
    """A question asked before the page knows its browser's id would be answered but never saved
    (and could not be rated): the box and Ask start closed, and the restore opens them in the same update."""
    from rag.ui.panels import chat

    demo = app.build_app(make_settings(sample_index_dir), rag.open_index(sample_index_dir,
                         make_settings(sample_index_dir), create=False), warm_up=False, ui=UISettings())
    boxes = {c["props"].get("elem_id"): c["props"] for c in demo.config["components"]}
    assert boxes["question"]["interactive"] is False and boxes["ask"]["interactive"] is False
    assert boxes["llm-test"]["interactive"] is False
    names = [getattr(fn.fn, "__name__", "") for fn in demo.fns.values()]
    assert "restore_and_open_chat" in names and "opened" in names  # values and usability in one update
    box, button = chat.ready()
    assert box.interactive is True and button.interactive is True
