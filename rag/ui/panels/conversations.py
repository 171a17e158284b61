"""The sidebar of saved conversations (open, rename, delete, start a new one), restoring the
conversation after a reload, and the thumbs up/down (with a comment) on answers.

Conversations belong to a browser: a random id kept in its localStorage (``gr.BrowserState``)
is the owner of everything it stores, so one browser never sees another's conversations."""

from __future__ import annotations

import logging
import re
import secrets
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import gradio as gr

from rag.conversations import Conversation
from rag.ui.base import UIContext, friendly
from rag.ui.panels.chat import ChatPanel
from rag.ui.panels.chat import ready as chat_ready
from rag.ui.render import SOURCES_EMPTY, message_html, sources_panel
from rag.ui.session import Session

log = logging.getLogger(__name__)

_OWNER = re.compile(r"[0-9a-f]{32}")
MAX_COMMENT_CHARS = 2000


class ConversationsPanel:
    def __init__(self, ctx: UIContext, chat: ChatPanel) -> None:
        self.ctx = ctx
        self.chat = chat

    # ---- restoring and switching
    def restore(self, owner: str | None, conversation_id: str | None) -> tuple[Any, ...]:
        """At page load: this browser's id (made on its first visit) and the conversation it
        had open, shown again. Returns (chat, sources, session, owner, open id, sidebar)."""
        owner = owner if isinstance(owner, str) and _OWNER.fullmatch(owner) else secrets.token_hex(16)
        session = self.load(owner, conversation_id or "")
        return (session.messages(), sources_panel(session.turns), session, owner, session.conversation_id or "",
                self.sidebar(session))

    def load(self, owner: str, conversation_id: str) -> Session:
        """The stored conversation as a session (an empty one when it is gone)."""
        session = Session(owner=owner)
        if not conversation_id:
            return session
        try:
            conversation = self.ctx.store.get(conversation_id, owner)
        except Exception as exc:  # deleted in another tab, or the store is unreadable: start empty
            log.info("conversation %s not restored: %s", conversation_id, exc)
            return session
        return self._replay(session, conversation)

    def _replay(self, session: Session, conversation: Conversation) -> Session:
        question = ""
        for message in conversation.messages:
            if message.role == "user":
                question = message.content
            elif message.answer is not None:
                session = self.chat.answered(session, question, message.answer, message.id, conversation.id)
        return replace(session, conversation_id=conversation.id)

    def open(self, conversation_id: str | None, session: Session | None) -> tuple[Any, ...]:
        """A conversation picked in the sidebar. Returns (chat, sources, session, open id)."""
        owner = session.owner if isinstance(session, Session) else ""
        chosen = self.load(owner, conversation_id or "") if owner else Session()
        return chosen.messages(), sources_panel(chosen.turns), chosen, chosen.conversation_id or ""

    def new(self, session: Session | None) -> tuple[Any, ...]:
        """Start over; the conversation so far stays in the list. Returns (chat, sources,
        session, question box, open id, sidebar)."""
        owner = session.owner if isinstance(session, Session) else ""
        fresh = Session(owner=owner)
        return [], SOURCES_EMPTY, fresh, "", "", self.sidebar(fresh)

    # ---- the list
    def sidebar(self, session: Session | None) -> Any:
        """The sidebar's list: this browser's conversations, the open one selected."""
        owner = session.owner if isinstance(session, Session) else ""
        choices: list[tuple[str, str]] = []
        if owner:
            try:
                choices = [(self.ctx.scrub(c.title or "Untitled"), c.id) for c in self.ctx.store.list(owner)]
            except Exception:
                log.exception("listing conversations failed")
        current = session.conversation_id if isinstance(session, Session) else None
        return gr.Radio(choices=choices, value=current if current in {c for _, c in choices} else None)

    def after_answer(self, session: Session | None) -> tuple[str, Any]:
        """After an answer: remember the open conversation in the browser, refresh the list."""
        current = session.conversation_id if isinstance(session, Session) else None
        return current or "", self.sidebar(session)

    def rename(self, title: str | None, session: Session | None) -> tuple[Any, str, str]:
        """Returns (sidebar, title box, status)."""
        if not isinstance(session, Session) or not session.conversation_id:
            return gr.skip(), gr.skip(), message_html("error", "Open or start a conversation first.")
        try:
            self.ctx.store.rename(session.conversation_id, session.owner, (title or "").strip())
        except Exception as exc:
            return gr.skip(), gr.skip(), message_html("error", self.ctx.scrub(friendly(exc)))
        return self.sidebar(session), "", message_html("ok", "Renamed.")

    def delete(self, session: Session | None) -> tuple[Any, ...]:
        """Delete the open conversation. Returns (chat, sources, session, question box, open id,
        sidebar, status)."""
        if not isinstance(session, Session) or not session.conversation_id:
            return (*self.new(session), message_html("error", "Nothing to delete: this conversation is not saved."))
        try:
            self.ctx.store.delete(session.conversation_id, session.owner)
        except Exception as exc:
            log.exception("deleting a conversation failed")
            return (session.messages(), sources_panel(session.turns), session, gr.skip(), gr.skip(), gr.skip(),
                    message_html("error", self.ctx.scrub(friendly(exc))))
        return (*self.new(session), message_html("ok", "Conversation deleted."))

    # ---- feedback
    def rate(self, session: Session | None, like: gr.LikeData) -> tuple[Any, ...]:
        """A thumb on an answer: saved at once; the comment box opens for an optional comment.
        Returns (pending (message id, rating), comment row, comment box, status)."""
        message_id, rating = self._rated(session, like)
        if message_id is None:
            return None, gr.Row(visible=False), "", message_html("error", "Only saved answers can be rated.")
        try:
            self.ctx.store.set_feedback(message_id, session.owner, rating)  # type: ignore[union-attr]
        except Exception as exc:
            return None, gr.Row(visible=False), "", message_html("error", self.ctx.scrub(friendly(exc)))
        if not rating:
            return None, gr.Row(visible=False), "", message_html("ok", "Rating removed.")
        word = "👍 Thanks" if rating > 0 else "👎 Thanks"
        return ((message_id, rating), gr.Row(visible=True), "",
                message_html("ok", f"{word}: saved. Add a comment if you like."))

    def _rated(self, session: Session | None, like: gr.LikeData) -> tuple[str | None, int]:
        if not isinstance(session, Session) or not session.owner:
            return None, 0
        index = like.index[0] if isinstance(like.index, (list, tuple)) else like.index
        if not isinstance(index, int) or not 0 <= index < len(session.chat):
            return None, 0
        message = session.chat[index]
        rating = 1 if like.liked is True else -1 if like.liked is False else 0
        return (message.message_id if message.role == "assistant" else None), rating

    def comment(self, text: str | None, pending: Any, session: Session | None) -> tuple[Any, ...]:
        """The comment for the latest rating. Returns (pending, comment row, comment box, status)."""
        if not pending or not isinstance(session, Session):
            return None, gr.Row(visible=False), "", message_html("error", "Rate an answer first.")
        message_id, rating = pending
        text = (text or "").strip()[:MAX_COMMENT_CHARS]
        try:
            self.ctx.store.set_feedback(message_id, session.owner, rating, text)
        except Exception as exc:
            return pending, gr.skip(), gr.skip(), message_html("error", self.ctx.scrub(friendly(exc)))
        return None, gr.Row(visible=False), "", message_html("ok", "Comment saved with your rating.")

    def export(self, session: Session | None) -> tuple[Any, str]:
        """This browser's rated answers as a JSONL file to download. Returns (file, status)."""
        if not isinstance(session, Session) or not session.owner:
            return None, message_html("error", "Nothing to export yet.")
        folder = Path(tempfile.mkdtemp(prefix="rag-feedback-"))
        path = folder / "rated-answers.jsonl"
        with path.open("w", encoding="utf-8") as out:
            lines = self.ctx.store.export_feedback(out, owner=session.owner)
        if not lines:
            return None, message_html("error", "No rated answers yet: use 👍/👎 under an answer.")
        return str(path), message_html("ok", f"{lines} rated answer{'s' if lines != 1 else ''} exported.")


@dataclass(frozen=True)
class ConversationsLayout:
    owner: gr.BrowserState
    open_id: gr.BrowserState
    pending: gr.State
    listing: gr.Radio
    title: gr.Textbox
    rename: gr.Button
    delete: gr.Button
    export: gr.Button
    export_file: gr.File
    status: gr.HTML
    comment_row: gr.Row
    comment: gr.Textbox
    send_comment: gr.Button


def layout(panel: ConversationsPanel) -> ConversationsLayout:
    """The sidebar; the comment row is placed by ``comment_layout`` under the chat."""
    owner = gr.BrowserState("", storage_key="rag-news-owner")
    open_id = gr.BrowserState("", storage_key="rag-news-conversation")
    with gr.Sidebar(label="Conversations", open=False, elem_id="conversations-bar"):
        gr.Markdown("### Conversations")
        listing = gr.Radio([], label="Saved conversations", elem_id="conversations", show_label=False)
        with gr.Row():
            title = gr.Textbox(placeholder="New name…", show_label=False, elem_id="conversation-title", scale=3,
                               max_length=200)
            rename = gr.Button("Rename", size="sm", elem_id="rename", scale=1)
        delete = gr.Button("Delete this conversation", size="sm", variant="stop", elem_id="delete")
        export = gr.Button("Export rated answers (JSONL)", size="sm", elem_id="export-feedback")
        export_file = gr.File(label="Rated answers", elem_id="feedback-file", interactive=False)
        status = gr.HTML("", elem_id="conversations-status")
    return ConversationsLayout(owner, open_id, gr.State(None), listing, title, rename, delete, export, export_file,
                               status, *comment_layout())


def comment_layout() -> tuple[gr.Row, gr.Textbox, gr.Button]:
    with gr.Row(visible=False, elem_id="comment-row") as row:
        comment = gr.Textbox(placeholder="What was good or wrong about this answer? (optional)", show_label=False,
                             elem_id="comment", scale=5, max_length=MAX_COMMENT_CHARS)
        send = gr.Button("Send", size="sm", elem_id="send-comment", scale=1)
    return row, comment, send


def wire(panel: ConversationsPanel, demo: gr.Blocks, parts: ConversationsLayout, chat_parts: Any,
         answering: list[Any]) -> None:
    private = {"api_visibility": "private"}
    shown = [chat_parts.chatbot, chat_parts.sources, chat_parts.session]

    def restore_and_open_chat(owner: str | None, conversation_id: str | None) -> tuple[Any, ...]:
        # One update: the question box opens with the restored session (and its owner), never before.
        return (*panel.restore(owner, conversation_id), *chat_ready())

    demo.load(restore_and_open_chat, [parts.owner, parts.open_id],
              [*shown, parts.owner, parts.open_id, parts.listing, chat_parts.question, chat_parts.ask], **private)
    for event in answering:
        event.then(panel.after_answer, [chat_parts.session], [parts.open_id, parts.listing], **private)
    parts.listing.input(panel.open, [parts.listing, chat_parts.session], [*shown, parts.open_id], **private)
    new_outputs = [*shown, chat_parts.question, parts.open_id, parts.listing]
    chat_parts.clear.click(panel.new, [chat_parts.session], new_outputs, queue=False, **private)
    chat_parts.chatbot.clear(panel.new, [chat_parts.session], new_outputs, queue=False, **private)
    parts.rename.click(panel.rename, [parts.title, chat_parts.session], [parts.listing, parts.title, parts.status],
                       **private)
    parts.delete.click(panel.delete, [chat_parts.session], [*new_outputs, parts.status], **private)
    parts.export.click(panel.export, [chat_parts.session], [parts.export_file, parts.status], **private)
    chat_parts.chatbot.like(panel.rate, [chat_parts.session],
                            [parts.pending, parts.comment_row, parts.comment, parts.status], **private)
    for trigger in (parts.send_comment.click, parts.comment.submit):
        trigger(panel.comment, [parts.comment, parts.pending, chat_parts.session],
                [parts.pending, parts.comment_row, parts.comment, parts.status], **private)
