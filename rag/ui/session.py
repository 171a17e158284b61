"""What one browser tab holds between events (a ``gr.State``): typed, immutable; each
handler returns a new one."""

from __future__ import annotations

from dataclasses import dataclass, replace

#: The last 4 question/answer pairs go to rag.answer.
HISTORY_MESSAGES = 8
#: Sources of this many answers stay in the panel (older ones collapsed).
KEPT_TURNS = 6


@dataclass(frozen=True)
class SourcesTurn:
    """The sources panel of one answer: its question (shown when collapsed) and its HTML."""

    question: str
    html: str


@dataclass(frozen=True)
class ChatMessage:
    """One bubble as the chat shows it (rendered, escaped markup) and, for answers, the
    plain text the copy button gives and the stored message it belongs to."""

    role: str  # "user" | "assistant"
    content: str
    #: user: the question as typed; assistant: the answer as plain text, "" while it is not
    #: (yet) an answer (streaming, stopped, failed).
    plain: str = ""
    message_id: str | None = None  # in the conversation store

    def to_gradio(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class Session:
    """``history``: what the model is told (raw text); ``chat``: what is shown;
    ``turns``: the sources panel of each recent answer; ``turn``: the number of the latest
    answer (it names the ``#src-<turn>-<n>`` anchors); ``conversation_id``: where it is stored."""

    history: tuple[tuple[str, str], ...] = ()
    chat: tuple[ChatMessage, ...] = ()
    turns: tuple[SourcesTurn, ...] = ()
    turn: int = 0
    conversation_id: str | None = None
    #: The browser this tab belongs to (a random id kept in its localStorage): whose
    #: conversations are listed and stored. "" = nothing is stored.
    owner: str = ""

    def messages(self) -> list[dict[str, str]]:
        """The chat for ``gr.Chatbot``."""
        return [m.to_gradio() for m in self.chat]

    def history_dicts(self) -> list[dict[str, str]]:
        """The recent history as ``rag.answer(history=...)`` takes it."""
        return [{"role": role, "content": content} for role, content in self.history[-HISTORY_MESSAGES:]]

    def last_answer_id(self) -> str | None:
        """The stored id of the latest message if it is an answer (what "regenerate" replaces)."""
        return self.chat[-1].message_id if self.chat and self.chat[-1].role == "assistant" else None

    def last_question(self) -> str | None:
        """The question of the latest exchange (answered or not), for "regenerate"."""
        for m in reversed(self.chat):
            if m.role == "user":
                return m.plain or None
        return None

    def without_last_exchange(self) -> Session:
        """The session before its latest question: its messages go, and, if it was answered,
        its turn in the history and its sources."""
        users = [i for i, m in enumerate(self.chat) if m.role == "user"]
        if not users:
            return self
        dropped = self.chat[users[-1]:]
        answered = any(m.role == "assistant" and m.plain for m in dropped)
        return replace(self, chat=self.chat[:users[-1]],
                       history=self.history[:-2] if answered else self.history,
                       turns=self.turns[:-1] if answered else self.turns)

    def with_answer(self, question: str, answer_text: str, message: ChatMessage, sources: SourcesTurn,
                    user: ChatMessage) -> Session:
        """The session after one more answered question."""
        history = self.history + (("user", question), ("assistant", answer_text))
        return replace(self, history=history[-HISTORY_MESSAGES * 2:], chat=self.chat + (user, message),
                       turns=(self.turns + (sources,))[-KEPT_TURNS:], turn=self.turn + 1)
