"""Read articles out of files and folders.

Every reader yields either a ``Record`` (raw fields of one article plus where
it came from) or a ``Failure`` naming the path and the reason. Nothing here
raises for bad input: one broken file never stops the rest."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.news import Failure

log = logging.getLogger(__name__)

SINGLE_ARTICLE_TYPES = {".txt", ".md", ".markdown", ".html", ".htm"}
EXPORT_TYPES = {".json", ".jsonl", ".ndjson", ".csv", ".tsv"}
SUPPORTED_TYPES = SINGLE_ARTICLE_TYPES | EXPORT_TYPES
#: Column/key spellings accepted for each article field in exports.
FIELD_ALIASES = {
    "id": ("id", "article_id", "guid", "uuid"),
    "title": ("title", "headline", "heading"),
    "text": ("text", "body", "content", "article", "full_text", "fulltext"),
    "url": ("url", "link", "href"),
    "source": ("source", "publisher", "site", "sitename", "outlet"),
    "author": ("author", "authors", "byline"),
    "published_at": ("published_at", "published", "date", "pubdate", "publication_date",
                     "published_date", "datetime"),
    "language": ("language", "lang", "locale"),
}


@dataclass(frozen=True)
class Record:
    """Raw article fields as found in the input, before cleaning."""

    fields: dict[str, Any]
    origin: str  # "path" or "path:line N" / "path:row N" / "path:item N"
    path: str
    single_file: bool  # the whole file is this one article
    notes: tuple[str, ...] = field(default=())


def iter_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path | Failure | tuple[str, str]]:
    """Expand paths into files, recursively and in a stable order.

    Yields a Path to read, a Failure for a missing path, or ("skipped", path)
    for a file of a type we do not read met inside a folder."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if name.startswith("."):
                        continue
                    file = Path(root) / name
                    if file.suffix.lower() in SUPPORTED_TYPES:
                        yield file
                    else:
                        yield ("skipped", str(file))
        elif path.is_file():
            yield path
        elif path.exists():
            yield Failure(str(path), "not a regular file")
        else:
            yield Failure(str(path), "no such file or folder")


def read_file(path: Path, max_bytes: int) -> Iterator[Record | Failure]:
    """Yield the articles in one file, or failures saying why not."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_TYPES:
        yield Failure(str(path), f"unsupported file type {suffix or '(none)'}; "
                                 f"expected one of {', '.join(sorted(SUPPORTED_TYPES))}")
        return
    try:
        size = path.stat().st_size
    except OSError as exc:
        yield Failure(str(path), f"cannot read: {exc.strerror or exc}")
        return
    streamed = suffix in {".jsonl", ".ndjson", ".csv", ".tsv"}
    if size > max_bytes and not streamed:
        yield Failure(str(path), f"too large: {size / 1e6:.1f} MB > limit {max_bytes / 1e6:.0f} MB "
                                 f"(RAG_MAX_FILE_MB)")
        return
    if size == 0:
        yield Failure(str(path), "empty file")
        return
    try:
        with path.open("rb") as fh:
            head = fh.read(8192)
    except OSError as exc:
        yield Failure(str(path), f"cannot read: {exc.strerror or exc}")
        return
    if looks_binary(head):
        yield Failure(str(path), "binary file, not text")
        return
    try:
        if streamed:
            yield from _read_stream(path, suffix, max_bytes)
        else:
            raw = path.read_bytes()
            text, note = decode(raw)
            if text is None:
                yield Failure(str(path), note)
                return
            notes = (f"{path}: {note}",) if note else ()  # every record of the file carries it
            if not text.strip():
                yield Failure(str(path), "empty file (only whitespace)")
            elif suffix == ".json":
                yield from _read_json(path, text, notes)
            elif suffix in {".html", ".htm"}:
                yield from _read_html(path, text, notes)
            else:
                yield _read_plain(path, text, notes, markdown=suffix in {".md", ".markdown"})
    except OSError as exc:
        yield Failure(str(path), f"cannot read: {exc.strerror or exc}")


def looks_binary(head: bytes) -> bool:
    """NUL bytes (outside UTF-16) or mostly control characters mean binary."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return False
    if b"\x00" in head:
        return True
    if not head:
        return False
    control = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13, 27))
    return control / len(head) > 0.10


def decode(raw: bytes) -> tuple[str | None, str]:
    """Decode text: UTF-8 (BOM allowed), UTF-16 with BOM, else Windows-1252.

    Returns (text, note); text is None when undecodable, note then says why."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16"), "decoded as UTF-16"
        except UnicodeDecodeError:
            return None, "undecodable: broken UTF-16"
    try:
        return raw.decode("utf-8-sig"), ""
    except UnicodeDecodeError as exc:
        utf8_error = exc
    try:
        text = raw.decode("cp1252")
    except UnicodeDecodeError:
        return None, (f"undecodable: neither UTF-8 (bad byte at offset {utf8_error.start}) "
                      f"nor Windows-1252")
    return text, "not UTF-8; decoded as Windows-1252"


_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*\n", re.S)
_META_LINE = re.compile(r"^([A-Za-z_][\w-]*)\s*:\s*(.*)$")


def _read_plain(path: Path, text: str, notes: tuple[str, ...], markdown: bool) -> Record:
    """A .txt/.md file is one article. Optional front matter (``key: value``
    lines between ``---``) carries metadata; a leading ``# Title`` is the title."""
    fields: dict[str, Any] = {}
    match = _FRONT_MATTER.match(text)
    if match:
        for line in match.group(1).splitlines():
            m = _META_LINE.match(line.strip())
            if m:
                fields[m.group(1).lower()] = m.group(2).strip().strip("\"'")
        text = text[match.end():]
    if markdown:
        lines = text.lstrip("\n").split("\n", 1)
        if lines[0].startswith("# ") and "title" not in fields:
            fields["title"] = lines[0][2:].strip()
            text = lines[1] if len(lines) > 1 else ""
    fields["text"] = text
    return Record(fields, str(path), str(path), single_file=True, notes=notes)


def _read_html(path: Path, text: str, notes: tuple[str, ...]) -> Iterator[Record | Failure]:
    import trafilatura

    doc = trafilatura.bare_extraction(text, with_metadata=True, include_comments=False,
                                      include_tables=True, favor_recall=True)
    body = getattr(doc, "text", None) if doc is not None else None
    if not body or not body.strip():
        yield Failure(str(path), "no article text found in the HTML page")
        return
    fields = {
        "text": body,
        "title": getattr(doc, "title", None),
        "url": getattr(doc, "url", None),
        "source": getattr(doc, "sitename", None) or getattr(doc, "hostname", None),
        "author": getattr(doc, "author", None),
        "published_at": getattr(doc, "date", None),
        "language": getattr(doc, "language", None),
    }
    yield Record({k: v for k, v in fields.items() if v}, str(path), str(path), True, notes)


def _read_json(path: Path, text: str, notes: tuple[str, ...]) -> Iterator[Record | Failure]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        yield Failure(str(path), f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")
        return
    if isinstance(data, dict) and isinstance(data.get("articles"), list):
        items = data["articles"]
    elif isinstance(data, list):
        items = data
    elif isinstance(data, dict):
        items = [data]
    else:
        yield Failure(str(path), "JSON must be an article object, a list of them, or {\"articles\": [...]}")
        return
    for n, item in enumerate(items, 1):
        origin = f"{path}:item {n}"
        if not isinstance(item, dict):
            yield Failure(origin, f"item {n} is not a JSON object")
            continue
        yield Record(item, origin, str(path), single_file=len(items) == 1, notes=notes)


def _read_stream(path: Path, suffix: str, max_bytes: int) -> Iterator[Record | Failure]:
    """JSONL and CSV exports are read record by record, in bounded memory."""
    raw_fh = path.open("rb")
    with raw_fh:
        head = raw_fh.read(4096)
        raw_fh.seek(0)
        encoding, note = "utf-8-sig", ""
        try:
            head.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            if exc.start < len(head) - 4:  # not just a character cut at the buffer's end
                encoding, note = "cp1252", "not UTF-8; decoded as Windows-1252"
        text_fh = io.TextIOWrapper(raw_fh, encoding=encoding, errors="strict", newline="")
        notes = (f"{path}: {note}",) if note else ()
        try:
            if suffix in {".jsonl", ".ndjson"}:
                yield from _read_jsonl(path, text_fh, notes, max_bytes)
            else:
                yield from _read_csv(path, text_fh, notes, max_bytes, tsv=suffix == ".tsv")
        except UnicodeDecodeError as exc:
            yield Failure(str(path), f"undecodable as {encoding} near byte {exc.start}; "
                                     f"records before it were read")


def _read_jsonl(path: Path, fh: io.TextIOBase, notes: tuple[str, ...],
                max_bytes: int) -> Iterator[Record | Failure]:
    for n, line in enumerate(fh, 1):
        if not line.strip():
            continue
        origin = f"{path}:line {n}"
        if len(line) > max_bytes:
            yield Failure(origin, f"line {n} too large ({len(line) / 1e6:.1f} MB)")
            continue
        if "\x00" in line:
            yield Failure(origin, f"line {n} contains NUL bytes")
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Failure(origin, f"malformed JSON on line {n}: {exc.msg}")
            continue
        if not isinstance(item, dict):
            yield Failure(origin, f"line {n} is not a JSON object")
            continue
        yield Record(item, origin, str(path), single_file=False, notes=notes)


def _read_csv(path: Path, fh: io.TextIOBase, notes: tuple[str, ...], max_bytes: int,
              tsv: bool) -> Iterator[Record | Failure]:
    csv.field_size_limit(max(int(max_bytes), 131072))
    first_line = fh.readline()
    fh.seek(0)
    dialect = csv.excel_tab if tsv else _dialect_from_header(first_line)
    reader = csv.reader(fh, dialect)
    try:
        header = next(reader)
    except StopIteration:
        yield Failure(str(path), "empty CSV")
        return
    except csv.Error as exc:
        yield Failure(str(path), f"malformed CSV header: {exc}")
        return
    header = [h.strip().lstrip("\ufeff") for h in header]
    if canonical_key("text", {h.lower(): h for h in header}) is None:
        yield Failure(str(path), f"CSV has no text column (columns: {', '.join(header) or 'none'}); "
                                 f"expected one of {', '.join(FIELD_ALIASES['text'])}")
        return
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Failure(f"{path}:line {reader.line_num}", f"malformed CSV at line {reader.line_num}: {exc}")
            continue
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        origin = f"{path}:line {line}"
        if len(row) != len(header):
            yield Failure(origin, f"malformed CSV row at line {line}: {len(row)} fields, "
                                  f"header has {len(header)}")
            continue
        yield Record(dict(zip(header, row)), origin, str(path), single_file=False, notes=notes)


def _dialect_from_header(header: str) -> type[csv.Dialect]:
    """The delimiter is the candidate found most often in the header line
    (column names rarely contain one; sniffing whole rows guesses wrong on prose)."""
    unquoted = re.sub(r'"[^"]*"', "", header)
    counts = {d: unquoted.count(d) for d in (",", ";", "\t", "|")}
    delimiter = max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","

    class Dialect(csv.excel):
        pass

    Dialect.delimiter = delimiter
    return Dialect


def canonical_key(name: str, lowered: dict[str, str]) -> str | None:
    """The key in a record (given as {lowercase: original}) that holds ``name``."""
    for alias in FIELD_ALIASES[name]:
        if alias in lowered:
            return lowered[alias]
    return None
