"""Chat conversations kept across reloads: one SQLite file per server (WAL, short
transactions) holding each browser's conversations, their messages with the full
``Answer`` of every reply, and the thumbs up/down given to answers.

    store = ConversationStore(default_path(os.environ))
    convo = store.create(owner)                          # owner: the browser's opaque id
    answer = rag.answer(question, index, history=store.history(convo.id, owner))
    reply = store.add_exchange(convo.id, owner, question, answer)
    store.set_feedback(reply.id, owner, +1, "exactly right")

Every call takes the owner and checks it: another browser's conversation is
``ConversationNotFoundError``, exactly as a missing one is."""

from __future__ import annotations

import builtins
import json
import logging
import sqlite3
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, TextIO

from rag.errors import RagError
from rag.news import Answer
from rag.titles import shorten

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1  # PRAGMA user_version; a later version adds a step to _MIGRATIONS
APPLICATION_ID = 0x52414743  # "RAGC" in PRAGMA application_id: marks the file as ours
TITLE_CHARS = 60  # a title made from the first question
MAX_TITLE_CHARS = 200  # a title given by rename()
MAX_COMMENT_CHARS = 2000
BUSY_TIMEOUT_S = 10.0

Role = Literal["user", "assistant"]

_SCHEMA = """
CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    title TEXT NOT NULL,
    created TEXT NOT NULL,        -- ISO 8601 UTC, sortable as text
    updated TEXT NOT NULL         -- the last message (or the creation)
);
CREATE INDEX conversations_owner_updated ON conversations(owner, updated);
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,         -- order within the conversation
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content TEXT NOT NULL,
    answer TEXT CHECK (answer IS NULL OR json_valid(answer)),  -- Answer.to_dict() of a reply
    created TEXT NOT NULL,
    UNIQUE (conversation_id, seq)
);
CREATE TABLE feedback (
    message_id TEXT PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
    rating INTEGER NOT NULL CHECK (rating IN (-1, 1)),
    comment TEXT NOT NULL,
    created TEXT NOT NULL
);
"""
#: user_version N -> the SQL that brings a file from N to N + 1.
_MIGRATIONS: dict[int, str] = {}


class ConversationStoreError(RagError):
    """The conversations file cannot be used: not a conversations database, corrupt, written by a
    newer version, missing (when asked not to create it), or locked for too long."""


class ConversationNotFoundError(RagError):
    """No such conversation for this owner: missing, deleted, or another browser's (never told apart)."""


class MessageNotFoundError(ConversationNotFoundError):
    """No such message in this owner's conversations."""


class ConversationInputError(RagError):
    """A value we cannot store: an empty question or title, a rating other than +1/-1/0, a comment
    that is too long, feedback on a question, or no answer to replace."""


@dataclass(frozen=True)
class Feedback:
    rating: int  # +1 | -1
    comment: str
    created: str


@dataclass(frozen=True)
class Message:
    id: str
    role: Role
    content: str  # the question, or the answer's text as the model was shown it in the history
    answer: Answer | None  # the complete answer of an assistant message
    feedback: Feedback | None
    created: str


@dataclass(frozen=True)
class Conversation:
    id: str
    owner: str
    title: str  # "" until the first question
    created: str
    updated: str
    messages: tuple[Message, ...]


@dataclass(frozen=True)
class ConversationSummary:
    """One line of the sidebar."""

    id: str
    title: str
    updated: str
    n_messages: int


def default_path(environ: Mapping[str, str]) -> Path:
    """``$RAG_CONVERSATIONS``, else ``$XDG_DATA_HOME/rag-news/conversations.sqlite3`` (XDG default
    ``~/.local/share``). Nothing is created here."""
    if environ.get("RAG_CONVERSATIONS"):
        return Path(environ["RAG_CONVERSATIONS"]).expanduser()
    data = environ.get("XDG_DATA_HOME", "")
    if not Path(data).is_absolute():  # the XDG spec: a relative value is ignored
        home = Path(environ["HOME"]) if environ.get("HOME") else Path.home()
        data = str(home / ".local" / "share")
    return Path(data) / "rag-news" / "conversations.sqlite3"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _new_id() -> str:
    return uuid.uuid4().hex


def _execute_all(db: sqlite3.Connection, script: str) -> None:
    """Statements one by one: executescript() would commit the open transaction first."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def title_from(question: str) -> str:
    """The first question as a title: whitespace collapsed, cut on a word boundary near 60 chars."""
    return shorten(" ".join(question.split()), TITLE_CHARS)


class ConversationStore:
    """The conversations of every browser, in one SQLite file. Safe to share between the threads
    of a server and between processes: each call opens its own connection and holds the file
    only for one short transaction."""

    def __init__(self, path: str | Path, *, create: bool = True, timeout: float = BUSY_TIMEOUT_S) -> None:
        self.path = Path(path).expanduser()
        self.timeout = timeout
        if not self.path.exists():
            if not create:
                raise ConversationStoreError(f"no conversations database at {self.path} (check the path, "
                                             f"or set RAG_CONVERSATIONS)")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConversationStoreError(f"cannot create the folder of {self.path}: {exc}") from exc
        self._initialize()

    # ---- connections ----
    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN ourselves, so each call is one explicit transaction.
        db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        db.execute("PRAGMA foreign_keys = ON")
        return db

    def _fail(self, exc: sqlite3.Error) -> ConversationStoreError:
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            return ConversationStoreError(f"{self.path} stayed locked by another writer for over "
                                          f"{self.timeout:g} s; try again")
        return ConversationStoreError(f"{self.path} is not a readable conversations database ({exc}); "
                                      f"move it away or set RAG_CONVERSATIONS to another file")

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A fresh connection, closed afterwards; SQLite's errors become ConversationStoreError."""
        try:
            db = self._connect()
        except sqlite3.Error as exc:
            raise self._fail(exc) from exc
        try:
            yield db
        except sqlite3.Error as exc:
            raise self._fail(exc) from exc
        finally:
            db.close()

    @contextmanager
    def _transaction(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction on a fresh connection. Writes take the write lock up front (BEGIN
        IMMEDIATE): a read that turns into a write could otherwise fail at once under WAL."""
        with self._connection() as db:
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                db.rollback()
                raise

    def _initialize(self) -> None:
        # The write lock first: of two processes opening a new file, one creates the schema.
        with self._transaction(write=True) as db:
            app_id = db.execute("PRAGMA application_id").fetchone()[0]
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if app_id == 0 and version == 0 and tables == 0:
                _execute_all(db, _SCHEMA)
                db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                log.info("created the conversations database %s", self.path)
            elif app_id != APPLICATION_ID:
                raise ConversationStoreError(f"{self.path} is an SQLite database but not a conversations database; "
                                             f"give another path (RAG_CONVERSATIONS)")
            elif version > SCHEMA_VERSION:
                raise ConversationStoreError(f"{self.path} was written by a newer rag (schema {version}, this one "
                                             f"reads up to {SCHEMA_VERSION}); upgrade rag")
            else:
                while version < SCHEMA_VERSION:
                    _execute_all(db, _MIGRATIONS[version])
                    version += 1
                    db.execute(f"PRAGMA user_version = {version}")
        # Only once the file is known to be ours: another program's database is left as it was.
        # Outside a transaction (SQLite's rule); persistent, a no-op once set.
        with self._connection() as db:
            db.execute("PRAGMA journal_mode = WAL")

    # ---- conversations ----
    def create(self, owner: str, title: str = "") -> Conversation:
        """A new, empty conversation. Without a title, the first question becomes it."""
        owner, title = _owner(owner), _title(title, allow_empty=True)
        with self._transaction(write=True) as db:
            now = _now()
            conversation = Conversation(_new_id(), owner, title, now, now, ())
            db.execute("INSERT INTO conversations (id, owner, title, created, updated) VALUES (?, ?, ?, ?, ?)",
                       (conversation.id, owner, title, now, now))
        return conversation

    def list(self, owner: str, limit: int = 50) -> list[ConversationSummary]:
        """The owner's conversations for the sidebar, the most recently active first."""
        owner = _owner(owner)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ConversationInputError(f"limit must be a whole number >= 0, not {limit!r}")
        with self._transaction() as db:
            rows = db.execute(
                "SELECT c.id, c.title, c.updated, (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id)"
                " FROM conversations c WHERE c.owner = ? ORDER BY c.updated DESC, c.rowid DESC LIMIT ?",
                (owner, limit)).fetchall()
        return [ConversationSummary(row[0], row[1], row[2], row[3]) for row in rows]

    def get(self, conversation_id: str, owner: str) -> Conversation:
        with self._transaction() as db:  # one snapshot: the messages match the conversation row
            row = self._conversation(db, conversation_id, owner)
            messages = self._messages(db, conversation_id)
        return Conversation(row["id"], row["owner"], row["title"], row["created"], row["updated"], messages)

    def rename(self, conversation_id: str, owner: str, title: str) -> None:
        title = _title(title, allow_empty=False)
        with self._transaction(write=True) as db:
            self._conversation(db, conversation_id, owner)
            db.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id))

    def delete(self, conversation_id: str, owner: str) -> None:
        """The conversation with its messages and their feedback."""
        with self._transaction(write=True) as db:
            self._conversation(db, conversation_id, owner)
            db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))  # cascades

    # ---- messages ----
    def add_exchange(self, conversation_id: str, owner: str, question: str, answer: Answer) -> Message:
        """The question and its answer, appended together. Returns the assistant message (its id
        is what ``set_feedback`` takes)."""
        question = _question(question)
        stored = _answer_json(answer)
        with self._transaction(write=True) as db:
            row = self._conversation(db, conversation_id, owner)
            now = _now()  # under the write lock: times follow the order of the writes
            reply = Message(_new_id(), "assistant", answer.text, answer, None, now)
            seq = db.execute("SELECT coalesce(max(seq), 0) FROM messages WHERE conversation_id = ?",
                             (conversation_id,)).fetchone()[0]
            db.execute("INSERT INTO messages (id, conversation_id, seq, role, content, answer, created) "
                       "VALUES (?, ?, ?, 'user', ?, NULL, ?)", (_new_id(), conversation_id, seq + 1, question, now))
            db.execute("INSERT INTO messages (id, conversation_id, seq, role, content, answer, created) "
                       "VALUES (?, ?, ?, 'assistant', ?, ?, ?)",
                       (reply.id, conversation_id, seq + 2, reply.content, stored, now))
            db.execute("UPDATE conversations SET updated = ?, title = ? WHERE id = ?",
                       (now, row["title"] or title_from(question), conversation_id))
        return reply

    def replace_last_answer(self, conversation_id: str, owner: str, answer: Answer) -> Message:
        """"Regenerate": the last answer gives way to ``answer``. The new message has a new id, and the
        old one's feedback is gone with it (a stale rating click then finds no message)."""
        stored = _answer_json(answer)
        with self._transaction(write=True) as db:
            self._conversation(db, conversation_id, owner)
            now = _now()
            reply = Message(_new_id(), "assistant", answer.text, answer, None, now)
            last = db.execute("SELECT id, seq, role FROM messages WHERE conversation_id = ? ORDER BY seq DESC LIMIT 1",
                              (conversation_id,)).fetchone()
            if last is None or last["role"] != "assistant":
                raise ConversationInputError(f"conversation {conversation_id} has no answer to replace; "
                                             f"ask a question first")
            db.execute("DELETE FROM messages WHERE id = ?", (last["id"],))  # and its feedback
            db.execute("INSERT INTO messages (id, conversation_id, seq, role, content, answer, created) "
                       "VALUES (?, ?, ?, 'assistant', ?, ?, ?)",
                       (reply.id, conversation_id, last["seq"], reply.content, stored, now))
            db.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, conversation_id))
        return reply

    def history(self, conversation_id: str, owner: str) -> builtins.list[dict[str, str]]:  # list(): the method
        """The conversation as ``rag.answer(history=...)`` takes it: ``[{"role", "content"}, ...]``."""
        with self._transaction() as db:
            self._conversation(db, conversation_id, owner)
            rows = db.execute("SELECT role, content FROM messages WHERE conversation_id = ? ORDER BY seq",
                              (conversation_id,)).fetchall()
        return [{"role": row["role"], "content": row["content"]} for row in rows]

    # ---- feedback ----
    def set_feedback(self, message_id: str, owner: str, rating: int, comment: str = "") -> Feedback | None:
        """Thumbs up (+1) or down (-1) with an optional comment on an answer; again replaces it,
        ``rating=0`` clears it (and returns None)."""
        owner = _owner(owner)
        if isinstance(rating, bool) or rating not in (-1, 0, 1):
            raise ConversationInputError(f"rating must be +1, -1 or 0 (clear), not {rating!r}")
        if not isinstance(comment, str):
            raise ConversationInputError(f"comment must be text, not {type(comment).__name__}")
        comment = comment.strip()
        if len(comment) > MAX_COMMENT_CHARS:
            raise ConversationInputError(f"the comment has {len(comment)} characters; at most {MAX_COMMENT_CHARS}, "
                                         f"please shorten it")
        feedback = Feedback(rating, comment, _now()) if rating else None
        with self._transaction(write=True) as db:
            row = db.execute("SELECT m.role FROM messages m JOIN conversations c ON c.id = m.conversation_id "
                             "WHERE m.id = ? AND c.owner = ?", (str(message_id), owner)).fetchone()
            if row is None:
                raise MessageNotFoundError(f"no message {message_id!r} in this browser's conversations "
                                           f"(deleted, regenerated, or never there)")
            if row["role"] != "assistant":
                raise ConversationInputError(f"message {message_id} is a question; only answers can be rated")
            if feedback is None:
                db.execute("DELETE FROM feedback WHERE message_id = ?", (message_id,))
            else:
                db.execute("INSERT OR REPLACE INTO feedback (message_id, rating, comment, created) VALUES (?, ?, ?, ?)",
                           (message_id, feedback.rating, feedback.comment, feedback.created))
        return feedback

    def export_feedback(self, out: TextIO, owner: str | None = None) -> int:
        """One JSON line per rated answer (every owner's unless ``owner``), with what an evaluation
        needs: the question, the conversation before it, the answer's ``to_dict()`` (text, standalone
        query, passages, citations, unsupported sentences, generator, ...), the rating, the comment
        and the times. The owner id is not exported. Returns the number of lines."""
        where, params = ("WHERE c.owner = ?", (_owner(owner),)) if owner is not None else ("", ())
        with self._transaction() as db:
            rated = db.execute(
                "SELECT m.id, m.conversation_id, m.seq, m.answer, m.created, f.rating, f.comment, f.created AS rated"
                " FROM feedback f JOIN messages m ON m.id = f.message_id JOIN conversations c"
                f" ON c.id = m.conversation_id {where} ORDER BY f.created, m.id", params).fetchall()
            turns: dict[str, list[sqlite3.Row]] = {}
            for conversation_id in {row["conversation_id"] for row in rated}:
                turns[conversation_id] = db.execute(
                    "SELECT seq, role, content, created FROM messages WHERE conversation_id = ? ORDER BY seq",
                    (conversation_id,)).fetchall()
        lines = []
        for row in rated:
            before = [t for t in turns[row["conversation_id"]] if t["seq"] < row["seq"]]
            asked = before[-1] if before and before[-1]["role"] == "user" else None
            answer = json.loads(row["answer"])
            record: dict[str, Any] = {
                "conversation_id": row["conversation_id"], "message_id": row["id"],
                "question": asked["content"] if asked else answer.get("question", ""),
                "history": [{"role": t["role"], "content": t["content"]} for t in (before[:-1] if asked else before)],
                **{key: value for key, value in answer.items() if key != "question"},
                "rating": row["rating"], "comment": row["comment"],
                "asked_at": asked["created"] if asked else None, "answered_at": row["created"],
                "rated_at": row["rated"],
            }
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")
        out.writelines(lines)
        return len(lines)

    # ---- helpers ----
    def _conversation(self, db: sqlite3.Connection, conversation_id: str, owner: str) -> sqlite3.Row:
        row = db.execute("SELECT * FROM conversations WHERE id = ? AND owner = ?",
                         (str(conversation_id), _owner(owner))).fetchone()
        if row is None:  # missing and not yours read the same: ids of others are never confirmed
            raise ConversationNotFoundError(f"no conversation {conversation_id!r} for this browser "
                                            f"(deleted, or never there); start a new one")
        return row

    def _messages(self, db: sqlite3.Connection, conversation_id: str) -> tuple[Message, ...]:
        rows = db.execute("SELECT m.*, f.rating, f.comment, f.created AS rated FROM messages m "
                          "LEFT JOIN feedback f ON f.message_id = m.id WHERE m.conversation_id = ? ORDER BY m.seq",
                          (conversation_id,)).fetchall()
        return tuple(Message(row["id"], row["role"], row["content"], self._load_answer(row),
                             Feedback(row["rating"], row["comment"], row["rated"]) if row["rating"] else None,
                             row["created"]) for row in rows)

    def _load_answer(self, row: sqlite3.Row) -> Answer | None:
        if row["answer"] is None:
            return None
        try:
            return Answer.from_dict(json.loads(row["answer"]))
        except (ValueError, TypeError, KeyError) as exc:
            raise ConversationStoreError(f"{self.path}: the stored answer of message {row['id']} cannot be read "
                                         f"({exc}); delete that conversation") from exc


def _owner(owner: str) -> str:
    if not isinstance(owner, str) or not owner.strip():
        raise ConversationInputError("owner must be a non-empty string (the browser's id)")
    return owner


def _title(title: str, allow_empty: bool) -> str:
    if not isinstance(title, str):
        raise ConversationInputError(f"a title must be text, not {type(title).__name__}")
    title = " ".join(title.split())
    if not title and not allow_empty:
        raise ConversationInputError("a title cannot be empty")
    if len(title) > MAX_TITLE_CHARS:
        raise ConversationInputError(f"the title has {len(title)} characters; at most {MAX_TITLE_CHARS}")
    return title


def _question(question: str) -> str:
    if not isinstance(question, str) or not question.strip():
        raise ConversationInputError("the question is empty; there is nothing to store")
    return question.strip()


def _answer_json(answer: Answer) -> str:
    if not isinstance(answer, Answer):
        raise ConversationInputError(f"answer must be a rag.Answer, not {type(answer).__name__}")
    return json.dumps(answer.to_dict(), ensure_ascii=False)
