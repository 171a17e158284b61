"""The language-model server a browser uses: base URL, model and key, a connection test,
and (only when asked) saving them on this computer.

The key typed here stays on the server side of the page (a ``gr.State``): the key box is
emptied once the settings are applied and the page never receives it back. It is registered
with the redaction, so no log line, message or saved answer shows it."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

import rag
from rag.generate.connection import check_connection
from rag.generate.openai_chat import validate_base_url
from rag.redact import register_secret
from rag.ui.base import UIContext, friendly
from rag.ui.llm_prefs import LLMPrefs, default_prefs_path, forget, load_prefs, save_prefs
from rag.ui.render import esc, message_html

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class LLMChoice:
    """What this browser tab answers with: a server, a model and a key (the key never in a repr)."""

    base_url: str = ""
    model: str = ""
    api_key: str = ""

    def __repr__(self) -> str:
        return f"LLMChoice(base_url={self.base_url!r}, model={self.model!r}, key={'set' if self.api_key else 'none'})"

    def options(self) -> dict[str, str]:
        """The per-call options of ``rag.answer`` ("" = the configured server)."""
        if not self.base_url:
            return {}
        return {"base_url": self.base_url, "api_key": self.api_key, **({"model": self.model} if self.model else {})}


class LLMPanel:
    def __init__(self, ctx: UIContext) -> None:
        self.ctx = ctx
        ui = ctx.ui
        self.path = Path(ui.llm_prefs).expanduser() if ui.llm_prefs else default_prefs_path(os.environ)
        #: A browser may point this server at any URL it types: only where the UI is private
        #: (loopback) or behind its login.
        self.editable = ui.host in LOOPBACK or bool(ui.user and ui.password)

    def saved(self) -> LLMChoice:
        prefs = load_prefs(self.path) if self.editable else None
        if prefs is None:
            return LLMChoice()
        return LLMChoice(prefs.base_url, prefs.model, prefs.api_key or "")

    def restore(self) -> tuple[LLMChoice, str, str, str, str]:
        """At page load: the saved choice. Returns (choice, URL box, model box, key box
        placeholder, status)."""
        choice = self.saved()
        return choice, choice.base_url, choice.model, self._key_hint(choice), self.status(choice)

    def opened(self) -> tuple[Any, ...]:
        """At page load, in one update: the saved settings in the boxes, which become usable (where
        this UI lets a browser set the LLM) only with them, so they never overwrite typing.
        Returns (choice, URL box, model box, key box, status, test, apply, forget buttons)."""
        choice, url, model, key, status = self.restore()
        editable = self.editable
        return (choice, gr.Textbox(value=url, interactive=editable), gr.Textbox(value=model, interactive=editable),
                gr.Textbox(value="", placeholder=key.placeholder, interactive=editable), status,
                *(gr.Button(interactive=editable) for _ in range(3)))

    def _key_hint(self, choice: LLMChoice) -> Any:
        return gr.Textbox(value="", placeholder="•••••• (a key is set; type to replace it)" if choice.api_key
                          else "API key (optional for local servers)")

    def status(self, choice: LLMChoice) -> str:
        if not choice.base_url:
            configured = self.ctx.settings.public().get("openai_base_url")
            where = f"the configured server ({configured})" if configured else "the configured generator"
            return message_html("busy", f"Answers use {where}. Set a server here to use another one.")
        key = "with a key" if choice.api_key else "without a key"
        return self.ctx.scrub(message_html("ok", f"Answers use {choice.base_url}, model {choice.model or '?'}, {key}."))

    def _choice(self, base_url: str | None, model: str | None, key: str | None, current: Any) -> LLMChoice:
        current = current if isinstance(current, LLMChoice) else LLMChoice()
        base_url = (base_url or "").strip()
        key = (key or "").strip() or (current.api_key if base_url == current.base_url else "")
        model = (model or "").strip()[:200] or self.ctx.settings.llm_model
        if key:
            register_secret(key)
        if base_url:
            base_url = validate_base_url(base_url)
        return LLMChoice(base_url, model if base_url else "", key if base_url else "")

    def apply(self, base_url: str | None, model: str | None, key: str | None, remember: bool,
              current: Any) -> tuple[Any, ...]:
        """Use these settings in this tab (and save them if asked). Returns (choice, key box, status)."""
        if not self.editable:
            return current, "", message_html("error", self._locked())
        try:
            choice = self._choice(base_url, model, key, current)
            if remember and choice.base_url:
                save_prefs(self.path, LLMPrefs(choice.base_url, choice.model, choice.api_key or None), True)
        except rag.RagError as exc:
            return current, "", message_html("error", self.ctx.scrub(friendly(exc)))
        saved = " Saved on this computer (key included)." if remember and choice.base_url else ""
        note = self.status(choice).replace("</div>", esc(saved) + "</div>")
        return choice, self._key_hint(choice), note

    def test(self, base_url: str | None, model: str | None, key: str | None, current: Any) -> str:
        """Try the server with a one-token answer; one line on how it went."""
        if not self.editable:
            return message_html("error", self._locked())
        try:
            choice = self._choice(base_url, model, key, current)
            if not choice.base_url:
                return message_html("error", "Type the server's base URL first, e.g. http://127.0.0.1:11434/v1")
            result = check_connection(choice.base_url, choice.api_key or None, choice.model, timeout=15)
        except rag.RagError as exc:
            return message_html("error", self.ctx.scrub(friendly(exc)))
        except Exception as exc:  # the callback edge
            log.exception("connection test failed")
            return message_html("error", self.ctx.scrub(friendly(exc)))
        models = f" Models: {', '.join(result.models[:8])}" + ("…" if len(result.models) > 8 else "") \
            if result.models else ""
        return self.ctx.scrub(message_html("ok" if result.ok else "error", result.detail + models))

    def forget_saved(self) -> tuple[Any, ...]:
        """Delete the saved settings (key included); this tab goes back to the configured
        generator. Returns (choice, URL box, model box, key box, status)."""
        try:
            gone = forget(self.path)
        except rag.RagError as exc:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), message_html("error", friendly(exc))
        choice = LLMChoice()
        text = "Saved LLM settings deleted." if gone else "Nothing was saved."
        return choice, "", "", self._key_hint(choice), message_html("ok", text)

    def _locked(self) -> str:
        return ("This UI is reachable from other machines without a login, so the LLM server can only be "
                "set in its environment (OPENAI_BASE_URL); set RAG_UI_USER and RAG_UI_PASSWORD to change it here.")


@dataclass(frozen=True)
class LLMLayout:
    choice: gr.State
    base_url: gr.Textbox
    model: gr.Textbox
    key: gr.Textbox
    remember: gr.Checkbox
    apply: gr.Button
    test: gr.Button
    forget: gr.Button
    status: gr.HTML


def layout(panel: LLMPanel) -> LLMLayout:
    with gr.Accordion("Language model server", open=False, elem_id="llm-box"):
        gr.Markdown("Any OpenAI-compatible server: OpenAI, Ollama (`http://127.0.0.1:11434/v1`), vLLM, "
                    "llama.cpp. Used by this browser tab; saved on this computer only if you tick the box.")
        base_url = gr.Textbox(label="Base URL", placeholder="https://api.openai.com/v1", elem_id="llm-url",
                              max_length=500, interactive=False)
        model = gr.Textbox(label="Model", placeholder=panel.ctx.settings.llm_model, elem_id="llm-model",
                           max_length=200, interactive=False)
        key = gr.Textbox(label="API key", type="password", elem_id="llm-key", max_length=500,
                         interactive=False)
        remember = gr.Checkbox(False, label="Remember on this computer (the key too)", elem_id="llm-remember")
        with gr.Row():
            # Usable once the saved settings are shown (``opened``), so they never overwrite typing.
            test = gr.Button("Test connection", size="sm", elem_id="llm-test", interactive=False)
            apply = gr.Button("Use these settings", size="sm", variant="primary", elem_id="llm-apply",
                              interactive=False)
            forget_button = gr.Button("Forget saved", size="sm", elem_id="llm-forget", interactive=False)
        status = gr.HTML("", elem_id="llm-status")
    return LLMLayout(gr.State(LLMChoice()), base_url, model, key, remember, apply, test, forget_button, status)


def wire(panel: LLMPanel, demo: gr.Blocks, parts: LLMLayout) -> None:
    private = {"api_visibility": "private"}
    demo.load(panel.opened, None, [parts.choice, parts.base_url, parts.model, parts.key, parts.status, parts.test,
                                   parts.apply, parts.forget], **private)
    parts.apply.click(panel.apply, [parts.base_url, parts.model, parts.key, parts.remember, parts.choice],
                      [parts.choice, parts.key, parts.status], **private)
    parts.test.click(panel.test, [parts.base_url, parts.model, parts.key, parts.choice], [parts.status], **private)
    parts.forget.click(panel.forget_saved, None, [parts.choice, parts.base_url, parts.model, parts.key, parts.status],
                       **private)
