"""The chat UI's layout, launch and command line.

    python app.py [--host H] [--port N]   # or: rag ui [--host H] [--port N]

``build_app(settings, index)`` lays out the Gradio Blocks from the panels in
rag/ui/panels/ (each with handlers tested without a browser, see tests/test_ui.py);
``serve()`` launches; ``main()`` wires it up. No handler lets an exception reach
Gradio: each logs it and shows a short message instead of a traceback."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import os
import socket
import sys
from importlib import resources
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no telemetry, no version check

import gradio as gr  # noqa: E402

import rag  # noqa: E402
from rag.console import configure_logging  # noqa: E402
from rag.redact import install_redaction  # noqa: E402
from rag.ui.base import UIContext, UISettings  # noqa: E402
from rag.ui.panels import chat, conversations, library, llm, status  # noqa: E402

log = logging.getLogger(__name__)

TITLE = "News Q&A"


def asset(name: str) -> str:
    """A file of rag/ui/assets (CSS, JS), read when the app is built."""
    return resources.files("rag.ui").joinpath("assets", name).read_text(encoding="utf-8")


@dataclasses.dataclass(frozen=True)
class Panels:
    """The UI's panels over one context; tests call their handlers directly."""

    ctx: UIContext
    status: status.StatusPanel
    chat: chat.ChatPanel
    library: library.LibraryPanel
    conversations: conversations.ConversationsPanel
    llm: llm.LLMPanel

    @classmethod
    def create(cls, settings: rag.Settings, index: rag.NewsIndex, ui: UISettings | None = None) -> Panels:
        ctx = UIContext.create(settings, index, ui)
        st = status.StatusPanel(ctx)
        talk = chat.ChatPanel(ctx, st)
        return cls(ctx, st, talk, library.LibraryPanel(ctx), conversations.ConversationsPanel(ctx, talk),
                   llm.LLMPanel(ctx))


def build_app(settings: rag.Settings, index: rag.NewsIndex, warm_up: bool = True,
              ui: UISettings | None = None) -> gr.Blocks:
    """The Gradio app over ``index``. Launch it with ``serve()``. ``warm_up``: start loading
    the models now, in the background (tests of the layout pass False)."""
    panels = Panels.create(settings, index, ui)
    ui = panels.ctx.ui
    if warm_up:
        panels.status.warm_up()
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(f"## {TITLE}\nAsk about the indexed news articles. Answers cite their sources: "
                    "click a number like [1] to see the passage it comes from.")
        stats = gr.HTML(panels.library.stats_html(), elem_id="stats")
        status_parts = status.layout(panels.status)
        chat_parts = chat.layout(panels.chat)
        saved_parts = conversations.layout(panels.conversations)  # the sidebar; under the chat: the comment box
        with gr.Row(equal_height=False):
            with gr.Column():
                with gr.Accordion("Search and answer settings", open=False, elem_id="settings"):
                    search = chat.search_layout(panels.chat, panels.library.source_choices())
                    gr.HTML(panels.status.config_html())
                llm_parts = llm.layout(panels.llm)
            with gr.Column():
                library_parts = library.layout(panels.library)
        answering = chat.wire(panels.chat, chat_parts, search, llm_parts.model, llm_parts.choice)
        llm.wire(panels.llm, demo, llm_parts)
        conversations.wire(panels.conversations, demo, saved_parts, chat_parts, answering)
        library.wire(panels.library, demo, library_parts, stats, search.source_filter)
        status.wire(panels.status, demo, status_parts)
    demo.queue(default_concurrency_limit=ui.concurrency)
    return demo


def serve(demo: gr.Blocks, ui: UISettings, *, port: int | None = None, block: bool = True,
          quiet: bool = False) -> Any:
    """Launch ``demo`` on ui.host:ui.port (loopback by default)."""
    auth = None
    if ui.user and ui.password:
        auth = (ui.user, ui.password)
    elif ui.user or ui.password:
        log.warning("set both RAG_UI_USER and RAG_UI_PASSWORD to require a login; the UI is open")
    if auth is None and ui.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("the UI listens on %s without a login; set RAG_UI_USER and RAG_UI_PASSWORD", ui.host)
    return demo.launch(server_name=ui.host, server_port=port or ui.port, auth=auth,
                       max_file_size=int(ui.upload_max_mb * 1_000_000), share=False, show_error=False,
                       prevent_thread_lock=not block, quiet=quiet, ssr_mode=False, css=asset("ui.css"),
                       head=f"<script>{asset('ui.js')}</script>", footer_links=[])


def port_problem(host: str, port: int) -> str | None:
    """Why the UI cannot listen on host:port (taken, or not an address here), or None.
    Checked before the models load, so the answer is one line instead of a traceback."""
    if not 0 < port < 65536:
        return f"port {port} is not a TCP port (1-65535); set --port N or RAG_UI_PORT=N"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"cannot listen on {host}:{port}: {exc.strerror}; set --host or RAG_UI_HOST"
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (f"port {port} on {host} is already in use (another 'python app.py'?); "
                        f"pick another with --port N or RAG_UI_PORT=N")
            return f"cannot listen on {host}:{port}: {exc.strerror}; pick another with --port N or --host H"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The news Q&A chat UI.")
    parser.add_argument("--host", help="address to listen on (default: RAG_UI_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default: RAG_UI_PORT or 7860)")
    parser.add_argument("--index", metavar="DIR", help="index folder (default: RAG_INDEX or ./index)")
    args = parser.parse_args(argv)
    # INFO, lines terminal-safe; libraries quiet (no DEBUG from bm25s, no "Loading weights" bars).
    configure_logging(1, "%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = rag.Settings.from_env(**({"index_dir": args.index} if args.index else {}))
        ui = UISettings.from_env()
        ui = dataclasses.replace(ui, host=args.host or ui.host, port=ui.port if args.port is None else args.port)
        # Before anything can log: the server log never shows the key, the UI password or
        # credentials inside the LLM server's URL (openai and httpx log request URLs).
        install_redaction(settings, ui)
        index = rag.open_index(settings.index_dir, settings)
    except rag.RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    problem = port_problem(ui.host, ui.port)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    demo = build_app(settings, index, ui=ui)  # starts loading the models in the background
    status = rag.generator_status(settings)
    print(f"News Q&A on http://{ui.host}:{ui.port} (index {settings.index_dir})\n"
          f"answers: {status.backend} ({status.state}: {status.detail})", flush=True)
    try:
        serve(demo, ui)
    except OSError as exc:  # taken between the check and the launch
        print(f"error: cannot listen on {ui.host}:{ui.port} ({exc}); pick another with --port N or RAG_UI_PORT=N",
              file=sys.stderr)
        return 1
    return 0


