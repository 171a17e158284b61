"""The lines above the chat: who writes the answers (the local model loading / ready /
unavailable, an LLM server, or quotes) and what is configured."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import gradio as gr

import rag
from rag.settings import public
from rag.ui.base import UIContext, friendly
from rag.ui.render import esc

log = logging.getLogger(__name__)


class StatusPanel:
    def __init__(self, ctx: UIContext) -> None:
        self.ctx = ctx
        #: The embedding model: "idle" (not asked for yet), "loading", "ready" or "failed".
        self.embedder_state = "idle"

    def warm_up(self) -> None:
        """Load the models at launch, in the background, not at the first question: the
        local LLM (its state is shown, see generator_html) and the embedding model."""
        try:
            rag.generator_status(self.ctx.settings, start=True)
        except Exception:  # shown by generator_html; the UI starts regardless
            log.exception("starting the answer generator failed")

        def embed() -> None:
            try:
                self.ctx.index.embedder.embed_query("warm-up")
                self.embedder_state = "ready"
            except Exception:
                self.embedder_state = "failed"
                log.exception("loading the embedding model failed")

        self.embedder_state = "loading"
        threading.Thread(target=embed, name="rag-warm-up", daemon=True).start()

    def generator_status(self) -> rag.GeneratorStatus:
        try:
            return rag.generator_status(self.ctx.settings)
        except Exception as exc:
            log.exception("generator status failed")
            return rag.GeneratorStatus("extractive", "unavailable", friendly(exc))

    def generator_html(self) -> str:
        """One line on who writes the answers: the local model loading / ready / unavailable
        and why, an LLM server, or quotes without an LLM."""
        st = self.generator_status()
        if st.backend == "local":
            label = {"ready": ("ok", "✓ Answers are written by the local model"),
                     "loading": ("busy", "… Loading the local model"),
                     "idle": ("busy", "… The local model starts with the first question"),
                     "unavailable": ("error", "⚠ The local model is unavailable; answers quote the sources")}
            kind, text = label.get(st.state, ("busy", st.state))
        elif st.backend == "openai":
            kind, text = "ok", "✓ Answers are written by an LLM server"
        elif "no local model" in st.detail:
            kind, text = "warn", "⚠ No language model: answers quote the sources"
        else:
            kind, text = "ok", "Answers quote the sources (no language model)"
        state = st.state
        embedding = ""
        if self.embedder_state == "loading":  # the first question waits for it: say so
            state = "loading"
            embedding = ('<div class="rag-status rag-busy" id="rag-embedder">… Loading the embedding model '
                         '(the first question waits for it)</div>')
        elif self.embedder_state == "failed":
            embedding = ('<div class="rag-status rag-error" id="rag-embedder">⚠ The embedding model failed to load; '
                         'the server log says why</div>')
        return self.ctx.scrub(f'<div class="rag-status rag-{kind} rag-generator" data-state="{esc(state)}" '
                              f'id="rag-generator">{esc(text)} <span class="rag-muted">({esc(st.detail)})</span></div>'
                              + embedding)

    def poll_generator(self) -> tuple[str, Any]:
        """The status line, and the timer kept running only while something is loading."""
        html_line = self.generator_html()
        loading = 'data-state="loading"' in html_line
        return html_line, gr.Timer(active=loading)

    def config_html(self) -> str:
        """What is configured, from Settings.public() (never the key itself; the LLM
        server's URL without its userinfo or a key in its query)."""
        shown, ui = self.ctx.settings.public(), public(self.ctx.ui)
        rows = [("Index folder", shown.get("index_dir")), ("Embedding model", shown.get("embed_model")),
                ("Generator", shown.get("generator")), ("LLM server", shown.get("openai_base_url") or "not set"),
                ("API key", shown.get("openai_api_key")), ("Upload limit", f"{ui.get('upload_max_mb')} MB"),
                ("Concurrent questions", ui.get("concurrency"))]
        body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
        return self.ctx.scrub(f'<div class="rag-muted">Configuration (set in the environment or .env)</div>'
                              f'<table class="rag-config">{body}</table>')


@dataclass(frozen=True)
class StatusLayout:
    line: gr.HTML
    timer: gr.Timer


def layout(panel: StatusPanel) -> StatusLayout:
    first = panel.generator_html()
    return StatusLayout(gr.HTML(first, elem_id="generator-status"),
                        gr.Timer(1.0, active='data-state="loading"' in first))


def wire(panel: StatusPanel, demo: gr.Blocks, parts: StatusLayout) -> None:
    outputs = [parts.line, parts.timer]
    demo.load(panel.poll_generator, None, outputs, api_visibility="private")
    parts.timer.tick(panel.poll_generator, None, outputs, api_visibility="private", show_progress="hidden")
