"""Credentials never printed: a key in the LLM server's URL (userinfo or query string),
OPENAI_API_KEY and the UI password stay out of answers, notes, error messages, every log
record (ours and the openai/httpx libraries'), the UI and the CLI's output. Done for real:
a real index, the real openai client, tests/fake_openai.py's HTTP server or a closed port."""

from __future__ import annotations

import html
import io
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import rag
from rag.errors import ConfigError
from rag.redact import RedactingFilter, install_redaction, redact, redact_url, uninstall_redaction
from rag.settings import Settings, public

from conftest import make_settings
from fake_openai import FakeOpenAI

from rag.ui import app  # noqa: E402
from rag.ui.app import Panels  # noqa: E402
from rag.ui.base import UISettings  # noqa: E402

SECRET = "SECRET123"  # in every credential below: found anywhere = a leak
URL_KEY = f"sk-test-{SECRET}"
API_KEY = f"sk-api/{SECRET}+key"  # "/" and "+" change when URL-encoded
UI_PASSWORD = f"ui-{SECRET}-pw"
QUESTION = "Which banks did Facebook contact?"


def userinfo_url(port: int) -> str:
    return f"http://user:{URL_KEY}@127.0.0.1:{port}/v1"


def query_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/v1?api_key={URL_KEY}"


URLS = {"userinfo": userinfo_url, "query": query_url}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens here once the socket closes


def port_of(llm: FakeOpenAI) -> int:
    return int(llm.server.server_address[1])


def assert_clean(*texts: object) -> None:
    for text in texts:
        assert SECRET not in str(text), text


@pytest.fixture
def redaction() -> Iterator[None]:
    """Leave logging as the test found it (install_redaction changes process-wide state)."""
    yield
    uninstall_redaction()


def llm_settings(folder: Path, base_url: str, **overrides: object) -> Settings:
    options: dict[str, object] = {"openai_api_key": API_KEY, "generator": "openai", "llm_model": "test-model",
                                  "llm_max_retries": 0, "llm_timeout": 10.0, **overrides}
    return make_settings(folder, openai_base_url=base_url, **options)


def ask_and_check(folder: Path, base_url: str, caplog: pytest.LogCaptureFixture) -> rag.Answer:
    settings = llm_settings(folder, base_url)
    caplog.set_level(logging.DEBUG)  # the openai and httpx loggers print request URLs at DEBUG/INFO
    for name in ("openai", "httpx", "httpx2", "httpcore"):  # quieted by an earlier CLI/UI test in this process
        caplog.set_level(logging.DEBUG, logger=name)
    install_redaction(settings)
    answer = rag.answer(QUESTION, rag.open_index(folder, settings, create=False))
    assert answer.error and answer.hits, answer  # the failure path was taken, the sources still given
    assert_clean(answer.text, answer.error, answer.notes, json.dumps(answer.to_dict()))
    assert caplog.records, "nothing was logged: the test proves nothing"
    for record in caplog.records:
        assert_clean(record.getMessage(), record.exc_text or "", record.stack_info or "")
    assert_clean(caplog.text)
    return answer


# ---------------------------------------------------------------- the redaction itself
def test_redact_removes_every_credential() -> None:
    settings = make_settings(Path("unused"), openai_base_url=userinfo_url(9), openai_api_key=API_KEY)
    ui = UISettings(password=UI_PASSWORD)
    cases = {
        f"The LLM server at {userinfo_url(9)} failed": "The LLM server at http://***@127.0.0.1:9/v1 failed",
        f"GET https://{URL_KEY}@example.com/x": "GET https://***@example.com/x",  # user only: the token
        f"{query_url(9)}&model=m": "http://127.0.0.1:9/v1?api_key=***&model=m",
        "https://h/p?q=1&KEY=abc&Token=t&access_token=a&password=p&secret=s&SIG=x#f":
            "https://h/p?q=1&KEY=***&Token=***&access_token=***&password=***&secret=***&SIG=***#f",
        f"key {API_KEY} or sk-api%2F{SECRET}%2Bkey or sk-api%2f{SECRET}%2bkey": "key *** or *** or ***",
        f"password {UI_PASSWORD}, 'Authorization: Bearer {URL_KEY}'": "password ***, 'Authorization: Bearer ***'",
    }
    for text, want in cases.items():
        assert redact(text, settings, ui) == want
    # httpx turns userinfo into a Basic auth header: its base64 form is a secret too
    assert redact("Basic dXNlcjpzay10ZXN0LVNFQ1JFVDEyMw==", settings) == "Basic ***"
    # the URL-encoded password inside the URL is found as well
    encoded = make_settings(Path("unused"), openai_base_url=f"http://u:p%40ss-{SECRET}@h/v1")
    assert redact(f"p@ss-{SECRET} and p%40ss-{SECRET}", encoded) == "*** and ***"
    # ordinary text is left alone: short secrets are not blanked out, prose is not a URL
    short = make_settings(Path("unused"), openai_base_url="http://u:ab@h/v1", openai_api_key="abc")
    prose = "The abc of banking: mail me@example.com, see http://example.com/a, authorization: the FDA."
    assert redact(prose, short) == prose
    assert redact("http://u:ab@h/v1", short) == "http://***@h/v1"
    assert redact_url(userinfo_url(9), settings) == "http://***@127.0.0.1:9/v1" and redact_url(None) is None
    shown = public(settings)
    assert shown["openai_base_url"] == "http://***@127.0.0.1:9/v1" and shown["openai_api_key"] == "set"
    assert_clean(repr(settings), shown, public(ui))


@pytest.mark.parametrize("name", ["RAG_CHUNK_TOKENS", "RAG_LLM_TIMEOUT", "RAG_PROGRESS", "RAG_GENERATOR",
                                  "RAG_LLM_MAX_RETRIES"])
def test_bad_setting_value_is_named_not_echoed(name: str) -> None:
    with pytest.raises(ConfigError, match=name) as caught:
        Settings.from_env(environ={name: f"sk-{SECRET}"}, dotenv=None)
    assert "must be" in str(caught.value)
    assert_clean(str(caught.value), repr(caught.value), caught.value.__cause__, caught.value.__context__)


def test_bad_ui_setting_value_is_named_not_echoed() -> None:
    with pytest.raises(ConfigError, match="RAG_UI_PORT must be an integer") as caught:
        UISettings.from_env(environ={"RAG_UI_PORT": f"sk-{SECRET}"}, dotenv=None)
    assert_clean(str(caught.value))


def test_log_records_are_redacted_everywhere(redaction: None) -> None:
    settings = make_settings(Path("unused"), openai_base_url=userinfo_url(9), openai_api_key=API_KEY)
    root = logging.getLogger()
    present = logging.StreamHandler(io.StringIO())
    root.addHandler(present)
    try:
        flt = install_redaction(settings, UISettings(password=UI_PASSWORD))
        assert flt in root.filters and flt in present.filters
        # A handler added later, on a logger that does not propagate to the root.
        later = logging.StreamHandler(io.StringIO())
        later.setFormatter(logging.Formatter("%(name)s %(message)s"))
        lib = logging.getLogger("test_secrets.library")
        lib.addHandler(later)
        lib.propagate, lib.level = False, logging.DEBUG
        lib.info("HTTP Request: POST %s/chat/completions", userinfo_url(9))
        lib.debug("Request options: %s", {"headers": {"Authorization": f"Bearer {API_KEY}"}})
        lib.info("user %s logged in with %s", "admin", UI_PASSWORD)
        try:
            raise ConnectionError(f"cannot connect to {query_url(9)}")
        except ConnectionError:
            lib.exception("request failed")
        logging.getLogger("test_secrets.other").warning("at %s", userinfo_url(9))
        lib.info("no secret here: %d passages", 5)
        out, out_root = later.stream.getvalue(), present.stream.getvalue()  # type: ignore[attr-defined]
        assert "http://***@127.0.0.1:9/v1/chat/completions" in out and "api_key=***" in out
        assert "ConnectionError" in out and "no secret here: 5 passages" in out
        assert "http://***@127.0.0.1:9/v1" in out_root
        assert_clean(out, out_root)
        # A record without a secret keeps its arguments (some formatters read them).
        record = logging.getLogRecordFactory()("x", logging.INFO, __file__, 1, "%d passages", (5,), None)
        assert record.args == (5,)
        # The filter on its own, as a handler's filter: message merged with its arguments.
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "at %s", (userinfo_url(9),), None)
        assert RedactingFilter(settings).filter(record) and record.getMessage() == "at http://***@127.0.0.1:9/v1"
    finally:
        root.removeHandler(present)
        lib.removeHandler(later)
        lib.propagate = True
    uninstall_redaction()
    assert flt not in root.filters and flt not in present.filters


# ---------------------------------------------------------------- rag.answer failure paths
@pytest.mark.parametrize("variant", sorted(URLS))
def test_llm_server_down(variant: str, sample_index_dir: Path, caplog: pytest.LogCaptureFixture,
                         redaction: None) -> None:
    answer = ask_and_check(sample_index_dir, URLS[variant](closed_port()), caplog)
    assert "cannot be reached" in answer.error
    where = "http://***@127.0.0.1" if variant == "userinfo" else "?api_key=***"
    assert where in answer.error
    assert any("generation failed" in r.getMessage() and where in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("fault", ["500", "401"])
@pytest.mark.parametrize("variant", sorted(URLS))
def test_llm_server_fails(variant: str, fault: str, sample_index_dir: Path, caplog: pytest.LogCaptureFixture,
                          redaction: None) -> None:
    with FakeOpenAI([fault]) as llm:
        answer = ask_and_check(sample_index_dir, URLS[variant](port_of(llm)), caplog)
    assert llm.requests, "the server was not asked"
    assert answer.error.startswith("The LLM server at http://")
    if variant == "userinfo":  # the query variant breaks the request path: the server says 404
        assert ("HTTP 500" if fault == "500" else "rejected the API key (401)") in answer.error
        assert llm.requests[0]["authorization"].startswith("Basic ")  # the userinfo was really used
    # the libraries did log the request URL, redacted
    assert any("127.0.0.1" in r.getMessage() and "***" in r.getMessage() for r in caplog.records
               if not r.name.startswith("rag"))


# ---------------------------------------------------------------- the UI
def test_ui_never_shows_the_secret(sample_index_dir: Path) -> None:
    ui = UISettings(user="admin", password=UI_PASSWORD)
    with FakeOpenAI(["500"]) as llm:
        settings = llm_settings(sample_index_dir, userinfo_url(port_of(llm)), generator="auto")
        cb = Panels.create(settings, rag.open_index(sample_index_dir, settings, create=False), ui=ui)
        outputs = list(cb.chat.ask(QUESTION, None))
        config, status = cb.status.config_html(), cb.status.generator_html()
        demo = app.build_app(settings, cb.ctx.index, warm_up=False, ui=ui)
    chat, sources, state, _ = outputs[-1]
    assert "HTTP 500" in html.unescape(chat[-1]["content"])
    assert "rag-footer" in sources and "127.0.0.1" in status
    assert "http://***@127.0.0.1" in config and "API key</th><td>set" in config
    assert_clean(repr(outputs), config, status, repr(demo.get_config_file()))


# ---------------------------------------------------------------- the CLI
def test_cli_ask_prints_no_secret(sample_index_dir: Path) -> None:
    # rag/cli.py installs rag.redact.install_redaction(settings) where it builds its settings:
    # without it httpx's INFO line "HTTP Request: POST http://user:<key>@..." reaches stderr with -v.
    with FakeOpenAI(["500"]) as llm:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAG_INDEX": str(sample_index_dir),
               "OPENAI_BASE_URL": userinfo_url(port_of(llm)), "OPENAI_API_KEY": API_KEY,
               "RAG_GENERATOR": "openai", "RAG_LLM_MAX_RETRIES": "0", "RAG_PROGRESS": "false"}
        env.pop("RAG_EMBED_MODEL", None)
        outputs = []
        for args in (["ask", QUESTION, "-vv"], ["ask", "--json", QUESTION, "-v"], ["llm", "status"]):
            # rag/__init__.py has no __main__: the CLI module is run as a script.
            proc = subprocess.run([sys.executable, "-m", "rag.cli", *args], env=env, capture_output=True,
                                  text=True, timeout=600)
            outputs.append((args, proc.returncode, proc.stdout, proc.stderr))
        # A bad value in a setting: named, not echoed.
        bad = {**env, "RAG_CHUNK_TOKENS": f"sk-{SECRET}"}
        proc = subprocess.run([sys.executable, "-m", "rag.cli", "ask", QUESTION], env=bad, capture_output=True,
                              text=True, timeout=600)
        outputs.append((["bad setting"], proc.returncode, proc.stdout, proc.stderr))
    assert llm.requests, "the LLM server was not asked"
    everything = "\n".join(f"{args} rc={rc}\n{out}\n{err}" for args, rc, out, err in outputs)
    assert "HTTP 500" in everything and "RAG_CHUNK_TOKENS must be an integer" in everything
    assert SECRET not in everything, everything
