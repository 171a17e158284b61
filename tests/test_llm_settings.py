"""The backend of the UI's LLM settings, for real: per-call servers in rag.answer() (the real
openai client against tests/fake_openai.py on 127.0.0.1), check_connection against real
servers that fail in every way, run-time secrets in the real log redaction, and the prefs
file on a real disk."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import rag
from rag.answer import NO_GENERATOR
from rag.errors import ConfigError
from rag.generate.connection import check_connection
from rag.generate.openai_chat import MAX_CACHED_GENERATORS, cached_generator_count, openai_generator
from rag.redact import (MAX_RUNTIME_SECRETS, Redactor, forget_secret, install_redaction, register_secret,
                        runtime_secret_count, uninstall_redaction)
from rag.ui.llm_prefs import LLMPrefs, default_prefs_path, forget, load_prefs, save_prefs

from conftest import ROOT, make_settings
from fake_openai import FakeOpenAI

ENV_KEY = "sk-env-OPERATOR-4d1e"  # the index's (the environment's) key
UI_KEY = "sk-ui-TYPED-9b2c7e"  # a key typed into the UI: found in any output = a leak
OTHER_KEY = "sk-ui-OTHER-51aa03"
URL_PASSWORD = "sk-url-PASSWORD-77f0"
QUESTION = "Which banks did Facebook contact?"
GOOD = "Facebook asked JPMorgan Chase, Wells Fargo, Citigroup and U.S. Bancorp to share customer data [1]."
#: For tests that only talk to servers (no index to build): they end, whatever a server does.
NETWORK_TIMEOUT = pytest.mark.timeout(60)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens here once the socket closes


@pytest.fixture
def clean_secrets() -> Iterator[None]:
    """Leave the process's redaction as the test found it."""
    yield
    forget_secret(UI_KEY, OTHER_KEY, URL_PASSWORD)
    uninstall_redaction()


@pytest.fixture
def dead_index(sample_index_dir: Path) -> rag.NewsIndex:
    """The sample index whose own settings point at a server that is not there, with a key."""
    settings = make_settings(sample_index_dir, openai_base_url=f"http://127.0.0.1:{closed_port()}/v1",
                             openai_api_key=ENV_KEY, llm_model="env-model", llm_max_retries=0, llm_timeout=10.0)
    return rag.open_index(sample_index_dir, settings, create=False)


def assert_clean(*texts: object) -> None:
    for text in texts:
        assert UI_KEY not in str(text) and ENV_KEY not in str(text), text


# ---------------------------------------------------------------- per-call servers in rag.answer
def test_per_call_server_answers_while_the_index_settings_point_nowhere(dead_index: rag.NewsIndex,
                                                                         clean_secrets: None) -> None:
    before = dead_index.settings
    with FakeOpenAI([GOOD]) as llm:
        ans = rag.answer(QUESTION, dead_index, base_url=llm.base_url, api_key=UI_KEY, model="ui-model")
    assert ans.error is None and ans.text == GOOD and ans.generator == "openai:ui-model"
    (request,) = llm.requests
    assert request["method"] == "POST" and request["path"] == "/v1/chat/completions"
    assert request["authorization"] == f"Bearer {UI_KEY}" and request["body"]["model"] == "ui-model"
    assert dead_index.settings is before and before.llm_model == "env-model"  # the index keeps its own
    # Without a per-call server the index's dead one is used: the per-call one was for that call only.
    assert "connection refused" in (rag.answer(QUESTION, dead_index).error or "")


def test_the_configured_key_never_goes_to_a_server_the_caller_chose(dead_index: rag.NewsIndex) -> None:
    with FakeOpenAI([GOOD]) as llm:
        events = list(rag.answer_stream(QUESTION, dead_index, base_url=f"  {llm.base_url}  ", api_key=""))
    *pieces, final = events
    assert isinstance(final, rag.Answer) and "".join(pieces).strip() == GOOD
    assert final.generator == "openai:env-model"  # no model given: the index's
    assert llm.requests[0]["authorization"] == "Bearer no-key" and llm.requests[0]["body"]["stream"] is True


def test_per_call_server_on_an_index_without_any_llm(sample_index_dir: Path, clean_secrets: None) -> None:
    idx = rag.open_index(sample_index_dir, make_settings(sample_index_dir), create=False)  # extractive
    with FakeOpenAI([GOOD]) as llm:
        auto = rag.answer(QUESTION, idx, base_url=llm.base_url, api_key=UI_KEY, model="m", generator="auto")
        named = rag.answer(QUESTION, idx, base_url=llm.base_url, api_key=UI_KEY, generator="extractive")
    assert auto.generator == "openai:m" and auto.text == GOOD
    assert named.generator == "extractive" and len(llm.requests) == 1  # asked for by name: no LLM call


def test_two_browsers_with_different_servers_in_turn(dead_index: rag.NewsIndex, clean_secrets: None) -> None:
    with FakeOpenAI(["From A [1]."]) as a, FakeOpenAI(["From B [1]."]) as b:
        first = rag.answer(QUESTION, dead_index, base_url=a.base_url, api_key=UI_KEY, model="model-a")
        second = rag.answer(QUESTION, dead_index, base_url=b.base_url, api_key=OTHER_KEY, model="model-b")
        third = rag.answer(QUESTION, dead_index, base_url=a.base_url, api_key=UI_KEY, model="model-a")
    assert (first.draft, second.draft, third.draft) == ("From A [1].", "From B [1].", "From A [1].")
    assert (first.generator, second.generator, third.generator) == ("openai:model-a", "openai:model-b",
                                                                    "openai:model-a")
    assert [(r["authorization"], r["body"]["model"]) for r in a.requests] == [(f"Bearer {UI_KEY}", "model-a")] * 2
    assert [(r["authorization"], r["body"]["model"]) for r in b.requests] == [(f"Bearer {OTHER_KEY}", "model-b")]


def test_generators_are_shared_only_for_the_same_server_key_and_model(tmp_path: Path) -> None:
    base = make_settings(tmp_path, openai_base_url="http://127.0.0.1:9/v1", openai_api_key=UI_KEY)
    one = openai_generator(base)
    assert openai_generator(make_settings(tmp_path, openai_base_url="http://127.0.0.1:9/v1",
                                          openai_api_key=UI_KEY)) is one
    others = [base.replace(openai_api_key=OTHER_KEY), base.replace(llm_model="other"),
              base.replace(openai_base_url="http://127.0.0.1:10/v1")]
    assert all(openai_generator(s) is not one for s in others)
    # Many servers (many browsers): the cache stays bounded, the least recently used goes first.
    for port in range(20, 20 + 2 * MAX_CACHED_GENERATORS):
        openai_generator(base.replace(openai_base_url=f"http://127.0.0.1:{port}/v1"))
    assert cached_generator_count() == MAX_CACHED_GENERATORS
    assert openai_generator(base) is not one
    last = base.replace(openai_base_url=f"http://127.0.0.1:{19 + 2 * MAX_CACHED_GENERATORS}/v1")
    assert openai_generator(last) is openai_generator(last)


@pytest.mark.parametrize("url", ["localhost:11434/v1", "ftp://user:sk-ui-TYPED-9b2c7e@host/v1", "http://", "file:///etc"])
def test_a_base_url_that_is_not_http_is_a_config_error_naming_it(dead_index: rag.NewsIndex, url: str) -> None:
    with pytest.raises(ConfigError, match="is not an http\\(s\\) URL") as caught:
        rag.answer(QUESTION, dead_index, base_url=url, api_key=UI_KEY)
    message = str(caught.value)
    assert url.replace(UI_KEY, "").split("@")[-1] in message  # named (credentials masked)
    assert_clean(message, repr(caught.value), caught.value.__context__)
    with pytest.raises(ConfigError, match="is not an http\\(s\\) URL"):
        check_connection(url, UI_KEY, "m")


# ---------------------------------------------------------------- Answer.generator: who wrote the text
def test_a_failed_llm_is_not_named_as_the_author(dead_index: rag.NewsIndex, clean_secrets: None) -> None:
    with FakeOpenAI(["500"]) as llm:
        failed = rag.answer(QUESTION, dead_index, base_url=llm.base_url, api_key=UI_KEY, model="m")
    assert failed.generator == NO_GENERATOR and failed.text.startswith("Could not write an answer:")
    assert "failed with HTTP 500" in (failed.error or "") and "openai:m failed before writing anything" in failed.notes
    with FakeOpenAI(["broken_stream"]) as llm:
        *_, partial_answer = rag.answer_stream(QUESTION, dead_index, base_url=llm.base_url, model="m")
    assert isinstance(partial_answer, rag.Answer) and partial_answer.text.startswith("Partial answer")
    assert partial_answer.generator == "openai:m" and partial_answer.error  # it did write what is shown
    assert "openai:m failed after writing part of the answer" in partial_answer.notes
    refused = rag.answer("How tall is the Eiffel Tower?", dead_index)
    assert refused.refused and refused.generator == NO_GENERATOR  # the stock refusal: no generator ran


# ---------------------------------------------------------------- check_connection
class NotOpenAI(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass


@pytest.fixture
def plain_http(tmp_path: Path) -> Iterator[str]:
    """A plain web server (files, no API): GET is 404, POST is 501, both HTML."""
    (tmp_path / "index.html").write_text("<html>hello</html>")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(NotOpenAI, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@NETWORK_TIMEOUT
@pytest.mark.parametrize("reply, fake_options, model, ok, starts", [
    ("OK", {}, "test-model", True, "connected: model 'test-model'"),
    ("OK", {}, "unlisted", True, "connected: model 'unlisted'"),
    ("OK", {"models": None}, "test-model", True, "connected"),  # a server without GET /models
    ("401", {"models_fault": "401"}, "test-model", False, "bad key:"),
    ("401", {}, "test-model", False, "bad key:"),
    ("404", {}, "gpt-nope", False, "unknown model:"),
    ("404", {"models": None}, "gpt-nope", False, "unknown model or path:"),
    ("429", {}, "test-model", False, "rate limited:"),
    ("500", {}, "test-model", False, "server error:"),
    ("OK", {"models_fault": "500"}, "test-model", False, "server error:"),
    ("malformed", {}, "test-model", False, "malformed JSON:"),
    ("OK", {"models_fault": "malformed"}, "test-model", False, "malformed JSON:"),
    ("empty_choices", {}, "test-model", False, "not an OpenAI-compatible reply:"),
    ("html", {"models_fault": "html"}, "test-model", False, "not an OpenAI-compatible server:"),
])
def test_check_connection_outcomes(reply: str, fake_options: dict[str, Any], model: str, ok: bool, starts: str,
                                   caplog: pytest.LogCaptureFixture, clean_secrets: None) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeOpenAI([reply], **fake_options) as llm:
        result = check_connection(llm.base_url, UI_KEY, model, timeout=5)
    assert result.ok is ok and result.detail.startswith(starts), result
    assert llm.base_url in result.detail and "\n" not in result.detail
    assert [r["authorization"] for r in llm.requests] == [f"Bearer {UI_KEY}"] * len(llm.requests)
    if ok:
        assert result.latency_s is not None and 0 < result.latency_s < 5
        assert llm.requests[-1]["body"]["max_tokens"] == 1 and llm.requests[-1]["body"]["model"] == model
    else:
        assert result.latency_s is None
    listed = fake_options.get("models", ["test-model"]) if "models_fault" not in fake_options else None
    assert result.models == (tuple(listed) if listed else ())
    if model == "unlisted":
        assert "'unlisted' is not in its model list (test-model)" in result.detail
    if reply == "404" and listed:
        assert result.detail.endswith("it offers test-model")
    assert_clean(result, caplog.text)


@NETWORK_TIMEOUT
def test_check_connection_refused_timeout_and_not_openai(plain_http: str, caplog: pytest.LogCaptureFixture,
                                                         clean_secrets: None) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"http://127.0.0.1:{closed_port()}/v1"
    refused = check_connection(url, UI_KEY, "m", timeout=5)
    assert not refused.ok and refused.detail == f"connection refused: is the server running at {url}?"

    with FakeOpenAI(["timeout"], timeout_sleep=4.0) as llm:
        started = time.monotonic()
        slow = check_connection(llm.base_url, UI_KEY, "test-model", timeout=0.5)
        elapsed = time.monotonic() - started
    assert not slow.ok and slow.detail.startswith("timeout:") and "within 0.5 s" in slow.detail
    assert elapsed < 3.5, elapsed  # the check gave up; it did not wait for the server's 4 s

    web = check_connection(plain_http, UI_KEY, "m", timeout=5)
    assert not web.ok and web.detail.startswith("not an OpenAI-compatible server:") and "HTTP 501" in web.detail
    assert_clean(refused, slow, web, caplog.text)


@NETWORK_TIMEOUT
def test_check_connection_never_shows_a_key_the_server_echoes(caplog: pytest.LogCaptureFixture,
                                                              clean_secrets: None) -> None:
    install_redaction()  # as the UI does at launch: then keys registered at run time leave no log record
    caplog.set_level(logging.DEBUG)
    with FakeOpenAI(["401_echo"], models_fault="401_echo") as llm:
        bearer = check_connection(llm.base_url, UI_KEY, "test-model", timeout=5)
        url = llm.base_url.replace("http://", f"http://user:{URL_PASSWORD}@")
        basic = check_connection(url, None, "test-model", timeout=5)  # httpx sends the userinfo as Basic auth
    assert UI_KEY in llm.requests[0]["authorization"]  # the server did get the key, and quoted it
    assert bearer.detail.startswith("bad key:") and "Incorrect API key: Bearer ***" in bearer.detail
    assert basic.detail.startswith("bad key:") and "Incorrect API key: Basic ***" in basic.detail
    assert "http://***@127.0.0.1" in basic.detail
    for text in (bearer, basic, caplog.text):
        assert URL_PASSWORD not in str(text)
        assert_clean(text)


def test_check_connection_rejects_an_empty_model() -> None:
    with pytest.raises(ConfigError, match="no model name given"):
        check_connection("http://127.0.0.1:9/v1", UI_KEY, "  ")


# ---------------------------------------------------------------- run-time secrets
def test_a_runtime_secret_is_scrubbed_from_shown_text_and_logs(clean_secrets: None,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    earlier = Redactor(make_settings(Path("unused")))  # built before the key was typed
    install_redaction(make_settings(Path("unused")))
    caplog.set_level(logging.INFO)
    logging.getLogger("test.llm").info("the user typed %s and %s", UI_KEY, UI_KEY.replace("-", "%2D"))
    assert UI_KEY in caplog.text  # not registered yet: the test below proves something
    register_secret(UI_KEY)
    logging.getLogger("test.llm").info("the user typed %s", UI_KEY)
    assert caplog.records[-1].getMessage() == "the user typed ***"
    assert earlier(f"key={UI_KEY}; quoted {json.dumps(UI_KEY)}") == 'key=***; quoted "***"'
    forget_secret(UI_KEY)
    assert earlier(UI_KEY) == UI_KEY


def test_a_key_used_in_answer_is_kept_out_of_every_log_record(dead_index: rag.NewsIndex, clean_secrets: None,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    install_redaction(dead_index.settings)  # as the UI does at launch, knowing only the environment's secrets
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    with FakeOpenAI(["401"]) as llm:
        ans = rag.answer(QUESTION, dead_index, base_url=llm.base_url, api_key=UI_KEY)
        logging.getLogger("test.llm").warning("after the answer: %s", UI_KEY)
    assert ans.error and "rejected the API key" in ans.error and caplog.records
    assert_clean(ans, caplog.text, *(r.getMessage() for r in caplog.records))


def test_runtime_secrets_are_bounded_and_thread_safe(clean_secrets: None) -> None:
    redactor = Redactor()
    keys = [f"sk-many-{i:05d}-x" for i in range(MAX_RUNTIME_SECRETS + 40)]
    errors: list[BaseException] = []

    def register(part: list[str]) -> None:
        try:
            for key in part:
                register_secret(key)
                assert redactor(f"k={key}") == "k=***"  # registered: scrubbed at once, in any thread
        except BaseException as exc:  # noqa: BLE001 (reported by the main thread)
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(keys[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert not errors, errors[:1]
        assert runtime_secret_count() == MAX_RUNTIME_SECRETS
        register_secret(keys[-1])  # the newest stays
        assert redactor(keys[-1]) == "***"
    finally:
        forget_secret(*keys)
    assert runtime_secret_count() == 0 and redactor(keys[-1]) == keys[-1]


# ---------------------------------------------------------------- the prefs file
def test_prefs_file_is_private_and_holds_the_key_only_when_asked(tmp_path: Path, clean_secrets: None) -> None:
    path = tmp_path / "config" / "rag-news" / "llm.json"
    prefs = LLMPrefs("http://127.0.0.1:11434/v1", "llama3", UI_KEY)
    assert load_prefs(path) is None
    save_prefs(path, prefs, remember_key=False)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert UI_KEY not in path.read_text() and json.loads(path.read_text())["model"] == "llama3"
    assert load_prefs(path) == LLMPrefs("http://127.0.0.1:11434/v1", "llama3", None)

    save_prefs(path, prefs, remember_key=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and UI_KEY in path.read_text()
    assert load_prefs(path) == prefs
    assert sorted(p.name for p in path.parent.iterdir()) == ["llm.json"]  # no temporary file left
    assert UI_KEY not in repr(prefs) and "api_key=set" in repr(prefs) and UI_KEY not in str(prefs)

    assert forget(path) is True and not path.exists() and forget(path) is False


def test_prefs_repr_hides_url_credentials_and_bad_files_are_ignored(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    prefs = LLMPrefs(f"http://user:{UI_KEY}@127.0.0.1/v1", "m")
    assert UI_KEY not in repr(prefs) and "api_key=not set" in repr(prefs)
    path = tmp_path / "llm.json"
    for content in ("{not json", json.dumps({"version": 99, "base_url": "x", "model": "m"}),
                    json.dumps({"version": 1, "base_url": "x", "model": 3})):
        path.write_text(content)
        assert load_prefs(path) is None
    assert "ignoring the LLM preferences" in caplog.text


def test_prefs_in_an_unwritable_place_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot save the LLM settings") as caught:
        save_prefs(blocker / "llm.json", LLMPrefs("http://h/v1", "m", UI_KEY), remember_key=True)
    assert_clean(str(caught.value), repr(caught.value))


def test_default_prefs_path(tmp_path: Path) -> None:
    assert default_prefs_path({"RAG_UI_LLM_PREFS": str(tmp_path / "p.json"),
                               "XDG_CONFIG_HOME": "/x"}) == tmp_path / "p.json"
    assert default_prefs_path({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "rag-news" / "llm.json"
    assert default_prefs_path({}) == Path.home() / ".config" / "rag-news" / "llm.json"
    assert default_prefs_path({"RAG_UI_LLM_PREFS": ""}) == Path.home() / ".config" / "rag-news" / "llm.json"
    assert not (tmp_path / "rag-news").exists()  # naming the path touches nothing


def test_nothing_touches_disk_or_environment_at_import(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = ("import os, rag.ui.llm_prefs, rag.generate.connection, rag.redact; "
            "print(sorted(os.listdir('.')))")
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]" and not (tmp_path / "cfg").exists()
