"""The conversation: asking (the answer streams in, its sources beside it), the search and
answer settings, starting over."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

import rag
from rag.ui.base import UIContext, friendly
from rag.ui.render import SOURCES_EMPTY, md_escape, plain_answer, render_answer, render_sources, sources_panel
from rag.ui.session import ChatMessage, Session, SourcesTurn

log = logging.getLogger(__name__)

EXAMPLES = [
    "Which banks did Facebook contact?",
    "What did Google and Amazon ask banks for?",
    "Welche Banken hat Facebook kontaktiert?",
    "Who is trying to take over Manchester United?",
]
MAX_QUESTION_CHARS = 2000
MODES = rag.RETRIEVAL_MODES
STREAM_EVERY = 0.05  # seconds between chat updates while an answer streams
SEARCHING = "Searching the articles…"
WAITING_FOR_MODEL = "Waiting for the local model to finish loading…"
WAITING_FOR_EMBEDDER = "Loading the embedding model (only the first question after start waits for it)…"
STREAMING = " ▌"  # the cursor after the text while it is written
STOPPED = "— Stopped. Ask again or press Regenerate for a full answer."
#: One handler output: (chat messages, sources panel HTML, session, question box).
ChatUpdate = tuple[list[dict[str, str]], str, Session, str]


def plain_marker(plain: str) -> str:
    """The plain text the copy button gives, hidden inside the rendered message (ui.js
    reads it): Markdown-escaped, newlines as character references so it stays one span."""
    return f'<span class="rag-plain">{md_escape(plain).replace(chr(10), "&#10;")}</span>'


class ChatPanel:
    def __init__(self, ctx: UIContext, status: Any = None) -> None:
        self.ctx = ctx
        self.status = status  # the StatusPanel: whether the local model is still loading

    def ask(self, question: str | None, session: Session | None, k: float = 5, mode: str = "hybrid",
            sources: Sequence[str] | None = None, since: str | None = None, until: str | None = None,
            generator: str | None = None, model: str | None = None, llm: Any = None, *,
            replace_id: str | None = None) -> Iterator[ChatUpdate]:
        """Stream an answer: yields (chat messages, sources panel HTML, session, question box).
        ``replace_id``: the stored answer this one replaces (regenerate)."""
        session = session if isinstance(session, Session) else Session()
        chat = list(session.chat)
        question = (question or "").strip()
        if not question:
            yield session.messages(), sources_panel(session.turns), session, ""
            return
        question = question[:MAX_QUESTION_CHARS]
        turn = session.turn + 1
        user = ChatMessage("user", md_escape(self.ctx.scrub(question)), question)
        chat.append(user)
        placeholder = SEARCHING
        if self.status is not None and self.status.embedder_state == "loading":
            placeholder = WAITING_FOR_EMBEDDER
        elif self.status is not None and generator in (None, "auto", "local"):
            waiting = self.status.generator_status()
            if waiting.backend == "local" and waiting.state == "loading":
                placeholder = WAITING_FOR_MODEL
        chat.append(ChatMessage("assistant", placeholder))
        busy = ('<div class="rag-sources"><p class="rag-muted">Searching…</p></div>' if not session.turns
                else sources_panel(session.turns))
        # While it streams, the session shows the question and the text so far (so "stop" can
        # keep them); its history gets the exchange only once the answer is complete.
        yield [m.to_gradio() for m in chat], busy, dataclasses.replace(session, chat=tuple(chat)), ""
        final: rag.Answer | None = None
        text = ""
        events: Iterator[str | rag.Answer] | None = None
        try:
            options = self._options(k, mode, sources, since, until, generator)
            model = (model or "").strip()[:200]
            if model and generator != "extractive":
                options["model"] = model
            server = getattr(llm, "options", None)  # the LLM server chosen in this tab, if any
            if server is not None and generator not in ("extractive", "local"):
                options = {**server(), **options}  # a model typed in the box wins over the saved one
            events = rag.answer_stream(question, self.ctx.index, options.pop("k"),
                                       history=session.history_dicts(), **options)
            last = 0.0
            for event in events:
                if isinstance(event, rag.Answer):
                    final = event
                    break
                text += event
                now = time.monotonic()
                if now - last >= STREAM_EVERY:
                    last = now
                    chat[-1] = ChatMessage("assistant", self._render(text, turn) + STREAMING)
                    yield [m.to_gradio() for m in chat], busy, dataclasses.replace(session, chat=tuple(chat)), ""
            if final is None:
                raise RuntimeError("the answer stream ended without an answer")
        except Exception as exc:  # the callback edge: log it, show a short message, never a traceback
            if isinstance(exc, rag.RagError):
                log.warning("question failed: %s", exc)
            else:
                log.exception("question failed")
            note = md_escape(self.ctx.scrub(friendly(exc)))
            partial = (self._render(text, turn) + "\n\n") if text else ""
            chat[-1] = ChatMessage("assistant", f"{partial}⚠ {note}")
            # The message stays on screen; the model's history does not get it.
            session = dataclasses.replace(session, chat=tuple(chat))
            yield session.messages(), sources_panel(session.turns), session, ""
            return
        finally:
            # Stopped (the browser's stop button, a closed tab) or done: end the answer's
            # generator now, which closes the LLM's HTTP stream so the server stops writing.
            close = getattr(events, "close", None)
            if close is not None:
                close()
        session = self.answered(session, question, final, *self._save(session, question, final, replace_id))
        yield session.messages(), sources_panel(session.turns), session, ""

    def _save(self, session: Session, question: str, final: rag.Answer,
              replace_id: str | None) -> tuple[str | None, str | None]:
        """Store the exchange in the session's conversation (created with the first question).
        Returns (the stored answer's id, the conversation's id); (None, None) when nothing is
        stored or saving failed (said in a toast, not fatal: the answer is still shown)."""
        if not session.owner:
            return None, None
        store = self.ctx.store
        final = self._scrubbed(final)  # stored and exported: never with a key the LLM echoed
        try:
            if replace_id and session.conversation_id:
                message = store.replace_last_answer(session.conversation_id, session.owner, final)
                return message.id, session.conversation_id
            conversation_id = session.conversation_id or store.create(session.owner).id
            return store.add_exchange(conversation_id, session.owner, question, final).id, conversation_id
        except Exception as exc:
            log.exception("saving the answer failed")
            gr.Warning(self.ctx.scrub(f"This answer is shown but was not saved: {friendly(exc)}"))
            return None, None

    def _scrubbed(self, answer: rag.Answer) -> rag.Answer:
        def clean(value: Any) -> Any:
            if isinstance(value, str):
                return self.ctx.scrub(value)
            if isinstance(value, list):
                return [clean(v) for v in value]
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            return value
        return rag.Answer.from_dict(clean(answer.to_dict()))

    def answered(self, session: Session, question: str, final: rag.Answer, message_id: str | None = None,
                 conversation_id: str | None = None) -> Session:
        """The session with ``final`` shown as the answer to ``question`` (``message_id``: where it
        is stored)."""
        turn = session.turn + 1
        plain = self.ctx.scrub(plain_answer(final))
        shown = self._render(final.text, turn, len(final.hits), final.unsupported) + plain_marker(plain)
        if conversation_id:
            session = dataclasses.replace(session, conversation_id=conversation_id)
        return session.with_answer(question, self.ctx.scrub(final.text),
                                   ChatMessage("assistant", shown, plain, message_id),
                                   SourcesTurn(self.ctx.scrub(question), self.ctx.scrub(render_sources(final, turn))),
                                   ChatMessage("user", md_escape(self.ctx.scrub(question)), question))

    def regenerate(self, session: Session | None, *options: Any) -> Iterator[ChatUpdate]:
        """Answer the latest question again (with the current settings), in its place."""
        session = session if isinstance(session, Session) else Session()
        question = session.last_question()
        if not question:
            yield session.messages(), sources_panel(session.turns), session, gr.skip()
            return
        yield from self.ask(question, session.without_last_exchange(), *options, replace_id=session.last_answer_id())

    def stop(self, session: Session | None) -> ChatUpdate:
        """After the stop button: the text written so far stays, marked as stopped; the
        conversation's history does not get it (as with a failed answer)."""
        session = session if isinstance(session, Session) else Session()
        chat = list(session.chat)
        if chat and chat[-1].role == "assistant" and not chat[-1].plain:
            content = chat[-1].content.removesuffix(STREAMING)
            if content in (SEARCHING, WAITING_FOR_MODEL, WAITING_FOR_EMBEDDER):
                content = ""
            chat[-1] = ChatMessage("assistant", (content + "\n\n" if content else "") + STOPPED)
        session = dataclasses.replace(session, chat=tuple(chat))
        return session.messages(), sources_panel(session.turns), session, gr.skip()

    def _render(self, text: str, turn: int, n_passages: int = 0,
                unsupported: Sequence[rag.Unsupported] = ()) -> str:
        """Chat markdown with secrets scrubbed before escaping (escaping changes
        how a key is spelled) and after (belt and braces)."""
        flagged = [dataclasses.replace(u, sentence=self.ctx.scrub(u.sentence)) for u in unsupported]
        return self.ctx.scrub(render_answer(self.ctx.scrub(text), turn, n_passages, flagged))

    def _options(self, k: float, mode: str, sources: Sequence[str] | None, since: str | None,
                 until: str | None, generator: str | None) -> dict[str, Any]:
        try:
            n = int(k)
        except (TypeError, ValueError):
            n = 5
        if mode not in MODES:
            raise rag.InvalidQueryError(f"retrieval mode must be one of {', '.join(MODES)}")
        filters: dict[str, Any] = {}
        chosen = [s for s in (sources or []) if isinstance(s, str) and s]
        if chosen:
            filters["source"] = chosen
        if (start := _valid_date(since, "from")) is not None:
            filters["since"] = start
        if (end := _valid_date(until, "until")) is not None:
            filters["until"] = end
        if "since" in filters and "until" in filters and filters["since"] > filters["until"]:
            raise rag.InvalidFilterError("the 'from' date is after the 'until' date")
        options: dict[str, Any] = {"k": max(1, min(n, 20)), "mode": mode, "filters": filters or None}
        if generator:
            options["generator"] = generator
        return options


def _valid_date(value: str | None, name: str) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise rag.InvalidFilterError(f"'{name}' must be a date like 2023-10-31, got {value!r}") from None
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise rag.InvalidFilterError(f"'{name}' must be a date like 2023-10-31, got {value!r}")
    return value


@dataclass(frozen=True)
class ChatLayout:
    session: gr.State
    chatbot: gr.Chatbot
    question: gr.Textbox
    ask: gr.Button
    stop: gr.Button
    regenerate: gr.Button
    clear: gr.Button
    sources: gr.HTML


@dataclass(frozen=True)
class SearchLayout:
    k: gr.Slider
    mode: gr.Radio
    source_filter: gr.Dropdown
    since: gr.Textbox
    until: gr.Textbox
    generator: gr.Radio


def layout(panel: ChatPanel) -> ChatLayout:
    session = gr.State(Session())
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=360):
            chatbot = gr.Chatbot(label="Conversation", elem_id="chat", height=520, latex_delimiters=[],
                                 feedback_options=("Like", "Dislike"), buttons=["copy"], sanitize_html=True,
                                 placeholder="Ask a question about the news articles, or pick an example below.")
            with gr.Row():
                # Usable once the page has loaded this browser's conversation (``ready``): a question
                # asked before would not know its owner, and its answer would not be saved.
                question = gr.Textbox(show_label=False, placeholder="Loading…", elem_id="question", scale=5,
                                      lines=1, max_lines=4, max_length=MAX_QUESTION_CHARS, interactive=False)
                ask = gr.Button("Ask", variant="primary", scale=1, min_width=80, elem_id="ask", interactive=False)
                stop = gr.Button("Stop", variant="stop", scale=1, min_width=80, elem_id="stop", visible=False)
            gr.Examples(EXAMPLES, inputs=[question], label="Example questions")
            with gr.Row():
                regenerate = gr.Button("↻ Regenerate", size="sm", elem_id="regenerate")
                clear = gr.Button("New conversation", size="sm", elem_id="clear")
        with gr.Column(scale=2, min_width=320):
            gr.Markdown("### Sources")
            sources = gr.HTML(SOURCES_EMPTY, elem_id="sources", max_height=700)
    return ChatLayout(session, chatbot, question, ask, stop, regenerate, clear, sources)


def ready() -> tuple[Any, Any]:
    """The question box and Ask button, usable (sent with the page's restored conversation)."""
    return (gr.Textbox(interactive=True, placeholder="Ask a question…", autofocus=True),
            gr.Button(interactive=True))


def search_layout(panel: ChatPanel, source_choices: list[str]) -> SearchLayout:
    settings = panel.ctx.settings
    generators = [("Automatic (LLM server if configured, else the local model, else quotes)", "auto"),
                  ("Local model (bundled, offline)", "local"),
                  ("LLM (OpenAI-compatible server)", "openai"),
                  ("Extractive (no LLM: quotes the sources)", "extractive")]
    if settings.generator not in {v for _, v in generators}:
        generators.append((settings.generator, settings.generator))
    k = gr.Slider(1, 20, value=5, step=1, label="Passages given to the answer", elem_id="k")
    mode = gr.Radio(list(MODES), value="hybrid", label="Retrieval",
                    info="hybrid = meaning + keywords; dense = meaning only; sparse = keywords only")
    source_filter = gr.Dropdown(source_choices, value=[], multiselect=True,
                                label="Only these sources (none = all)", elem_id="source-filter")
    with gr.Row():
        since = gr.Textbox(label="Published from", placeholder="YYYY-MM-DD", elem_id="since")
        until = gr.Textbox(label="Published until", placeholder="YYYY-MM-DD", elem_id="until")
    generator = gr.Radio(generators, value=settings.generator, label="Answer generator", elem_id="generator")
    return SearchLayout(k, mode, source_filter, since, until, generator)


def wire(panel: ChatPanel, parts: ChatLayout, search: SearchLayout, model: gr.Textbox, llm: gr.State) -> list[Any]:
    """The chat's events; returns the events that answer (for what follows an answer). ``model``,
    ``llm``: the LLM panel's model box and this tab's LLMChoice."""
    options = [search.k, search.mode, search.source_filter, search.since, search.until, search.generator,
               model, llm]
    outputs = [parts.chatbot, parts.sources, parts.session, parts.question]
    running = {"concurrency_limit": panel.ctx.ui.concurrency, "concurrency_id": "answer", "show_progress": "hidden",
               "api_visibility": "private"}
    busy = [parts.ask, parts.stop]

    def show_stop() -> tuple[Any, Any]:
        return gr.Button(visible=False), gr.Button(visible=True)

    def show_ask() -> tuple[Any, Any]:
        return gr.Button(visible=True), gr.Button(visible=False)

    answering = []
    for trigger in (parts.question.submit, parts.ask.click):
        event = trigger(show_stop, None, busy, queue=False, api_visibility="private").then(
            panel.ask, [parts.question, parts.session, *options], outputs, **running)
        event.then(show_ask, None, busy, queue=False, api_visibility="private")
        answering.append(event)
    again = parts.regenerate.click(show_stop, None, busy, queue=False, api_visibility="private").then(
        panel.regenerate, [parts.session, *options], outputs, **running)
    again.then(show_ask, None, busy, queue=False, api_visibility="private")
    answering.append(again)
    parts.stop.click(panel.stop, [parts.session], outputs, cancels=answering, queue=False,
                     api_visibility="private").then(show_ask, None, busy, queue=False, api_visibility="private")
    return answering
