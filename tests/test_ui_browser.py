"""The chat UI in a real browser: Debian's headless Chromium driven by
Playwright against app.py served on a free port over a copy of the sample
index. Asks the seed question, follows a citation, uploads articles (one of
them hostile) and asks about them, and checks no injected script ran."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import rag

from conftest import BANKS, make_settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
WAIT_MS = 240_000  # one answer on a busy 2-core machine, with the embedder warming up

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (the Makefile's test set-up does)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed "
                                                             "(pip install -e '.[test]')")

from rag.ui import app  # noqa: E402
from rag.ui.base import UISettings  # noqa: E402

QUESTION_1 = "Which banks did Facebook contact?"
ZORBLAT = ("Zorblat Industries will build its new headquarters in Reykjavik, the company said on Tuesday. "
           "The glass building on the harbour will house 400 engineers from 2025 on.\n")
HOSTILE = ('---\ntitle: <img src=x onerror="window.__xss=1">Quuxberg tram\n---\n'
           'The mayor of Quuxberg announced a new tram line to the airport. '
           '<img src=x onerror="window.__xss=1"> <script>window.__xss=2</script> '
           '[Click for details](javascript:window.__xss=3) The tram line will open in spring.\n')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(sample_copy: Path):
    settings = make_settings(sample_copy)
    ui = UISettings(port=free_port())
    demo = app.build_app(settings, rag.open_index(sample_copy, settings, create=False), ui=ui)
    app.serve(demo, ui, block=False, quiet=True)
    try:
        yield f"http://{ui.host}:{ui.port}/"
    finally:
        demo.close()


def ask(page, question: str, turn: int) -> str:
    """Ask, wait until the checked answer and its sources are shown; the answer's text."""
    page.fill("#question textarea", question)
    page.click("#ask")
    page.wait_for_selector(f"#sources #turn-{turn}", timeout=WAIT_MS)
    return page.locator("#chat [data-testid='bot']").last.inner_text()


@contextmanager
def chromium(failure: Path, viewport: dict[str, int],
             clipboard_for: str | None = None) -> Iterator[tuple[Any, list[str]]]:
    """A page in headless Chromium and the script errors it reports; when the test fails in it, a
    screenshot of the page at ``failure``. ``clipboard_for``: the origin that may use the clipboard."""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport=viewport)
            if clipboard_for:
                context.grant_permissions(["clipboard-read", "clipboard-write"], origin=clipboard_for)
            page = context.new_page()
            page_errors: list[str] = []
            page.on("pageerror", lambda exc: page_errors.append(str(exc)))
            try:
                yield page, page_errors
            except Exception:
                page.screenshot(path=str(failure), full_page=True)
                print(f"screenshot of the failure: {failure}")
                raise
        finally:
            browser.close()


def assert_screenshots(shots: Iterable[Path]) -> None:
    for shot in shots:
        print(f"screenshot: {shot}")
        assert shot.stat().st_size > 10_000


def test_chat_upload_and_xss_in_a_browser(server: str, tmp_path: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    (files / "zorblat.txt").write_text(ZORBLAT, encoding="utf-8")
    (files / "quuxberg.txt").write_text(HOSTILE, encoding="utf-8")
    shots = (tmp_path / "chat-ui-seed-question.png", tmp_path / "chat-ui-after-upload.png")
    with chromium(tmp_path / "chat-ui-failure.png", {"width": 1400, "height": 1100}) as (page, page_errors):
        page.goto(server)
        page.wait_for_selector("#question textarea", timeout=60_000)
        # Who writes the answers is said above the chat (here: quotes, as the settings choose).
        assert "Answers quote the sources" in page.inner_text("#generator-status")

        # 1. The seed question: streamed answer with the four banks and a citation.
        answer = ask(page, "Which banks did Facebook contact?", turn=1)
        for bank in BANKS:
            assert bank in answer, answer
        cite = page.locator("#chat a.rag-cite").first
        target = cite.get_attribute("href")[1:]
        card = page.locator(f"#sources #{target}")
        assert "facebook-banks-de" in card.inner_text()
        assert page.locator(f"#sources #{target} mark.rag-quote").inner_text().count("Bancorp") == 1
        cite.click()  # jumps to (and flashes) the source
        page.wait_for_selector(f"#sources #{target}.rag-flash", timeout=5_000)
        page.locator("#settings").get_by_text("Search and answer settings").first.click()
        page.wait_for_selector("#generator", state="visible", timeout=10_000)
        assert "sk-" not in page.inner_text("body")
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(shots[0]), full_page=True)

        # 2. Upload two articles (one hostile); progress, then a report; stats refresh.
        stats_before = page.inner_text("#stats")
        page.locator("#upload-box").get_by_text("Add articles").first.click()  # open the accordion
        page.set_input_files("#upload input[type=file]", [str(files / "zorblat.txt"), str(files / "quuxberg.txt")])
        for name in ("zorblat.txt", "quuxberg.txt"):  # listed once the browser has uploaded them
            page.wait_for_selector(f"#upload [aria-label='{name}']", timeout=60_000)
        page.click("#add")
        page.wait_for_selector("#upload-status .rag-ok", timeout=WAIT_MS)
        assert "Indexed 2 new" in page.inner_text("#upload-status")
        page.wait_for_function("(before) => document.querySelector('#stats').innerText !== before",
                               arg=stats_before, timeout=30_000)

        # 3. Ask about the uploaded article.
        answer = ask(page, "Where will Zorblat Industries build its new headquarters?", turn=2)
        assert "Reykjavik" in answer, answer
        assert "zorblat" in page.inner_text("#sources #turn-2")

        # 4. The hostile article shows in the sources as text; nothing it carries runs.
        answer = ask(page, "What did the mayor of Quuxberg announce?", turn=3)
        sources = page.inner_text("#sources #turn-3")
        assert "Quuxberg tram" in sources and '<img src=x onerror="window.__xss=1">' in sources
        assert "<script>window.__xss=2</script>" in sources
        assert page.locator("#sources img, #chat img, #sources script, #chat script").count() == 0
        assert page.locator("#sources a[href^='javascript'], #chat a[href^='javascript']").count() == 0
        page.locator("#sources #turn-3").scroll_into_view_if_needed()
        assert page.evaluate("window.__xss") is None
        assert not page_errors, page_errors

        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(shots[1]), full_page=True)
    assert_screenshots(shots)


# ---------------------------------------------------------------- conversations, copy, stop, phone
SLOW = "Please answer slowly: what did Facebook ask the banks?"


def reply_for(body: dict) -> str:
    """The fake LLM: a long, slow answer for the stop test; else the seed answer."""
    prompt = body["messages"][-1]["content"]
    if "answer slowly" in prompt:
        return "Facebook asked the banks for data [1]. " + " ".join(f"More{i}" for i in range(600))
    return "Facebook contacted JPMorgan Chase, Wells Fargo, Citigroup and U.S. Bancorp [1]."


@pytest.fixture
def llm_server(sample_copy: Path, tmp_path: Path):
    from fake_openai import FakeOpenAI

    with FakeOpenAI([reply_for], word_delay=0.05) as llm:
        settings = make_settings(sample_copy, openai_base_url=llm.base_url, openai_api_key="sk-browser-test")
        ui = UISettings(port=free_port(), conversations=str(tmp_path / "chats.sqlite3"))
        demo = app.build_app(settings, rag.open_index(sample_copy, settings, create=False), ui=ui)
        app.serve(demo, ui, block=False, quiet=True)
        try:
            yield f"http://{ui.host}:{ui.port}/", llm
        finally:
            demo.close()


def test_reload_copy_feedback_stop_regenerate_and_phone_popover(llm_server, tmp_path: Path) -> None:
    url, llm = llm_server
    shots = {name: tmp_path / f"chat-ui-{name}.png"
             for name in ("restored", "stopped", "upload-progress", "phone-popover")}
    with chromium(tmp_path / "chat-ui-failure-2.png", {"width": 1400, "height": 1000},
                  clipboard_for=url.rstrip("/")) as (page, page_errors):
        page.goto(url)
        page.wait_for_selector("#question textarea", timeout=60_000)
        answer = ask(page, QUESTION_1, turn=1)
        assert all(bank in answer for bank in BANKS), answer
        bot = page.locator("#chat [data-testid='bot']").last
        # The accessible name is the text, not markup.
        page.wait_for_function("() => { const m = [...document.querySelectorAll(\"#chat [data-testid='bot']\")]"
                               ".pop(); return m && !m.getAttribute('aria-label').includes('<'); }",
                               timeout=10_000)
        assert "Wells Fargo" in bot.get_attribute("aria-label")

        # Copy: plain text with [1] and the source list.
        bot.hover()
        page.locator("#chat button[aria-label='Copy message']").last.click()
        copied = page.evaluate("navigator.clipboard.readText()")
        assert "[1]" in copied and "Sources:\n[1] Kaum ist die Aufregung" in copied, copied  # the derived title
        assert "<" not in copied and "&#" not in copied, copied

        # Thumbs down with a comment: saved with the conversation.
        page.locator("#chat button[aria-label='Dislike']").last.click()
        page.wait_for_selector("#comment-row textarea", state="visible", timeout=20_000)
        page.fill("#comment textarea", "Missing the date.")
        page.click("#send-comment")
        page.wait_for_function("() => document.querySelector('#conversations-status').innerText"
                               ".includes('Comment saved')", timeout=20_000)

        # Reload: the conversation, its answer and its sources come back; the sidebar lists it.
        page.reload()
        page.wait_for_selector("#sources #turn-1", timeout=60_000)
        assert all(bank in page.locator("#chat [data-testid='bot']").last.inner_text() for bank in BANKS)
        page.locator("#conversations-bar").get_by_text(QUESTION_1).first.wait_for(state="attached",
                                                                                   timeout=20_000)
        page.screenshot(path=str(shots["restored"]), full_page=True)

        # Stop: the streaming answer ends where it is, marked; the LLM's stream is closed.
        page.fill("#question textarea", SLOW)
        page.click("#ask")
        page.wait_for_function("() => { const m = [...document.querySelectorAll(\"#chat [data-testid='bot']\")]"
                               ".pop(); return m && m.innerText.includes('More3'); }", timeout=WAIT_MS)
        page.click("#stop")
        page.wait_for_function("() => [...document.querySelectorAll(\"#chat [data-testid='bot']\")].pop()"
                               ".innerText.includes('Stopped')", timeout=20_000)
        stopped_at = page.locator("#chat [data-testid='bot']").last.inner_text()
        assert "More599" not in stopped_at
        page.wait_for_function("() => { const b = document.querySelector('#ask');"
                               " return b && getComputedStyle(b).display !== 'none'; }", timeout=20_000)
        deadline = time.monotonic() + 20
        while llm.streams_cut == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert llm.streams_cut >= 1, "the LLM stream was not closed by Stop"
        page.screenshot(path=str(shots["stopped"]), full_page=True)

        # Regenerate: the stopped question is answered again in its place.
        count = page.locator("#chat [data-testid='bot']").count()
        llm.word_delay = 0.0
        page.click("#regenerate")
        page.wait_for_selector("#sources #turn-2", timeout=WAIT_MS)
        assert page.locator("#chat [data-testid='bot']").count() == count
        assert "Stopped" not in page.locator("#chat [data-testid='bot']").last.inner_text()

        # The LLM server set in the page: tested, applied, used; the key never comes back.
        typed_key = "sk-typed-in-the-browser-7781"
        page.locator("#llm-box").get_by_text("Language model server").first.click()
        page.fill("#llm-url input, #llm-url textarea", llm.base_url)
        page.fill("#llm-model input, #llm-model textarea", "test-model")
        page.fill("#llm-key input", typed_key)
        page.click("#llm-test")
        page.wait_for_selector("#llm-status .rag-ok, #llm-status .rag-error", timeout=60_000)
        assert page.locator("#llm-status .rag-ok").count() == 1, page.inner_text("#llm-status")
        assert "test-model" in page.inner_text("#llm-status")
        page.click("#llm-apply")
        page.wait_for_function("() => document.querySelector('#llm-status').innerText.includes('Answers use')",
                               timeout=20_000)
        assert page.input_value("#llm-key input") == "" and typed_key not in page.content()
        ask(page, QUESTION_1, turn=3)
        assert llm.requests[-1]["authorization"] == f"Bearer {typed_key}"
        assert llm.requests[-1]["body"]["model"] == "test-model"
        assert "answered by openai:test-model" in page.inner_text("#sources #turn-3")
        assert typed_key not in page.content()

        # An upload of 40 articles: a progress bar that moves, with the time left; Cancel
        # leaves the index as it was.
        files = tmp_path / "many"
        files.mkdir()
        for i in range(40):
            (files / f"story-{i}.txt").write_text(f"Story {i}. " + " ".join(
                f"The council of Quux{i} met on day {d} to discuss the tram." for d in range(40)), encoding="utf-8")
        stats_before = page.inner_text("#stats")
        page.locator("#upload-box").get_by_text("Add articles").first.click()
        page.set_input_files("#upload input[type=file]", sorted(str(f) for f in files.iterdir()))
        page.wait_for_selector("#upload [aria-label='story-9.txt']", timeout=60_000)
        page.click("#add")
        values: list[int] = []
        deadline = time.monotonic() + WAIT_MS / 1000
        while time.monotonic() < deadline:
            bar = page.locator("#upload-status progress")
            if bar.count():
                values.append(int(bar.get_attribute("value") or 0))
                eta = re.search(r"about \d+ (s|min) left", page.inner_text("#upload-status"))
                if values[-1] > 0 and eta and len(set(values)) >= 2:
                    break
            time.sleep(0.1)
        assert len(set(values)) >= 2 and values == sorted(values), values
        page.screenshot(path=str(shots["upload-progress"]), full_page=True)
        page.click("#cancel-upload")
        page.wait_for_function("() => document.querySelector('#upload-status').innerText"
                               ".includes('nothing was added')", timeout=60_000)
        assert page.inner_text("#stats") == stats_before

        # A phone: [n] opens the passage in place, quote highlighted; no developer footer items.
        page.set_viewport_size({"width": 390, "height": 844})
        page.reload()
        page.wait_for_selector("#chat a.rag-cite", timeout=60_000)
        page.locator("#chat a.rag-cite").first.click()
        page.wait_for_selector("#rag-popover mark.rag-quote", timeout=10_000)
        box = page.locator("#rag-popover").bounding_box()
        assert box and box["y"] >= 0 and box["y"] + box["height"] <= 844 + 1  # on screen, not a jump
        page.screenshot(path=str(shots["phone-popover"]))
        page.click("#rag-popover .rag-popover-close")
        assert page.locator("#rag-popover").count() == 0
        assert page.locator("footer").get_by_text("Use via API").count() == 0
        assert page.locator("footer").get_by_text("Settings").count() == 0
        assert not page_errors, page_errors
    assert_screenshots(shots.values())
