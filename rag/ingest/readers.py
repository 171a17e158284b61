"""Read articles out of files and folders.

Every reader yields either a ``Record`` (raw fields of one article plus where
it came from) or a ``Failure`` naming the path and the reason. Nothing here
raises for bad input: one broken file never stops the rest.

File names need not be UTF-8: on Linux an undecodable byte arrives as a
surrogate escape. Paths we show or store (origins, failures, notes) replace
each such character with U+FFFD (``display_path``); ``Record.path`` keeps the
real name so the file can be found and its id derived from its bytes."""

from __future__ import annotations

import csv
import errno
import itertools
import json
import logging
import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from rag.ingest.clean import valid_text
from rag.ingest.jsonvalues import Invalid, invalid_value, json_error, load_json
from rag.ingest.streams import BUFFER, CsvLines, Junk, Line, SkipRow, bounded_lines, encoding_label
from rag.news import Failure

log = logging.getLogger(__name__)

SINGLE_ARTICLE_TYPES = {".txt", ".md", ".markdown", ".html", ".htm"}
EXPORT_TYPES = {".json", ".jsonl", ".ndjson", ".csv", ".tsv"}
STREAMED_TYPES = {".jsonl", ".ndjson", ".csv", ".tsv"}
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
#: Bad lines of one export reported one by one; the rest are counted, so junk cannot flood a report.
MAX_FAILURES_PER_FILE = 1000
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


@dataclass(frozen=True)
class Record:
    """Raw article fields as found in the input, before cleaning."""

    fields: dict[str, Any]
    origin: str  # "path" or "path:line N" / "path:row N" / "path:item N", as valid text (display_path)
    path: str  # the file's real name (may hold surrogate escapes): for finding it, never for showing
    single_file: bool  # the whole file is this one article
    notes: tuple[str, ...] = field(default=())


def renamed(item: Record | Failure, path: str, name: str) -> Record | Failure:
    """``item`` read from ``path``, reported and identified as ``name`` (an upload's own name)."""
    if isinstance(item, Failure):
        return Failure(name + item.path[len(path):], item.reason)
    return Record(item.fields, name + item.origin[len(path):], name, item.single_file,
                  tuple(note.replace(path, name) for note in item.notes))


def display_path(path: str | bytes | os.PathLike[Any]) -> str:
    """A path as valid UTF-8 text: undecodable bytes become U+FFFD, one character each
    (so a prefix of the real name and of the shown one have the same length)."""
    return valid_text(os.fsdecode(path))


def os_reason(exc: OSError) -> str:
    """A short reason for a failed file system call."""
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return "no such file or folder"
    return f"cannot read: {exc.strerror or exc}"


def iter_files(paths: Iterable[str | bytes | os.PathLike[Any]]) -> Iterator[Path | Failure | tuple[str, str]]:
    """Expand paths into files, recursively and in a stable order.

    Yields a Path to read, a Failure for a missing or unreadable path (folders
    met on the way included), or ("skipped", path) for a file of a type we do
    not read met inside a folder."""
    for raw in paths:
        try:
            yield from _expand(Path(os.fsdecode(raw)))
        except MemoryError:
            raise
        except Exception as exc:  # last resort: one bad argument never stops the others
            yield _unexpected(_shown(raw), exc)


def _expand(path: Path) -> Iterator[Path | Failure | tuple[str, str]]:
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        yield Failure(display_path(path), os_reason(exc))
        return
    except ValueError as exc:  # a NUL byte, or a lone surrogate the OS cannot encode
        yield Failure(display_path(path), f"invalid path: {exc}")
        return
    if stat.S_ISDIR(mode):
        yield from _walk(path)
    elif stat.S_ISREG(mode):
        yield path
    else:
        yield Failure(display_path(path), "not a regular file")


def _walk(folder: Path) -> Iterator[Path | Failure | tuple[str, str]]:
    """os.walk, sorted, without hidden entries; folders it cannot list become Failures
    (os.walk itself would skip them silently)."""
    errors: list[OSError] = []
    for root, dirs, files in os.walk(folder, onerror=errors.append):
        yield from _walk_failures(errors)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            file = Path(root) / name
            if file.suffix.lower() in SUPPORTED_TYPES:
                yield file
            else:
                yield ("skipped", display_path(file))
    yield from _walk_failures(errors)


def _walk_failures(errors: list[OSError]) -> Iterator[Failure]:
    for exc in errors:
        yield Failure(display_path(exc.filename or "?"), os_reason(exc))
    errors.clear()


def read_file(path: str | bytes | os.PathLike[Any], max_bytes: int) -> Iterator[Record | Failure]:
    """Yield the articles in one file, or failures saying why not.

    Whatever goes wrong inside one file ends as a Failure for that file;
    MemoryError and BaseExceptions (KeyboardInterrupt...) still propagate."""
    try:
        file = Path(os.fsdecode(path))
        yield from _read_file(file, display_path(file), max_bytes)
    except MemoryError:
        raise
    except Exception as exc:  # last resort: a reader bug or a library's surprise on hostile input
        yield _unexpected(_shown(path), exc)


def _shown(path: object) -> str:
    try:
        return display_path(path)  # type: ignore[arg-type]
    except Exception:
        return valid_text(repr(path))


def _unexpected(shown: str, exc: Exception) -> Failure:
    log.debug("unexpected error reading %s", shown, exc_info=True)
    return Failure(shown, f"unexpected error: {type(exc).__name__}: {valid_text(str(exc))[:200]}")


def _read_file(path: Path, shown: str, max_bytes: int) -> Iterator[Record | Failure]:
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_TYPES:
        yield Failure(shown, f"unsupported file type {valid_text(suffix) or '(none)'}; "
                             f"expected one of {', '.join(sorted(SUPPORTED_TYPES))}")
        return
    try:
        info = path.stat()
    except OSError as exc:
        yield Failure(shown, os_reason(exc))
        return
    if not stat.S_ISREG(info.st_mode):  # a FIFO would block, a device never end
        yield Failure(shown, "not a regular file")
        return
    streamed = suffix in STREAMED_TYPES
    if info.st_size > max_bytes and not streamed:
        yield Failure(shown, f"too large: {info.st_size / 1e6:.1f} MB > limit {max_bytes / 1e6:.0f} MB "
                             f"(RAG_MAX_FILE_MB)")
        return
    if info.st_size == 0:
        yield Failure(shown, "empty file")
        return
    try:
        with path.open("rb", buffering=BUFFER) as fh:
            head = fh.read(8192)
            if looks_binary(head):
                yield Failure(shown, "binary file, not text")
            elif streamed:
                yield from _capped(_read_stream(fh, head, path, shown, suffix, max_bytes), shown)
            else:
                raw = head + fh.read(max_bytes + 1 - len(head))  # bounded even if the file grew
                if len(raw) > max_bytes:
                    yield Failure(shown, f"too large: over the limit of {max_bytes / 1e6:.0f} MB (RAG_MAX_FILE_MB)")
                else:
                    yield from _read_single(raw, path, shown, suffix)
    except OSError as exc:
        yield Failure(shown, os_reason(exc))


def _read_single(raw: bytes, path: Path, shown: str, suffix: str) -> Iterator[Record | Failure]:
    text, note = decode(raw)
    if text is None:
        yield Failure(shown, note)
        return
    notes = (f"{shown}: {note}",) if note else ()  # every record of the file carries it
    if not text.strip():
        yield Failure(shown, "empty file (only whitespace)")
    elif suffix == ".json":
        yield from _read_json(path, shown, text, notes)
    elif suffix in {".html", ".htm"}:
        yield from _read_html(path, shown, text, notes)
    else:
        yield _read_plain(path, shown, text, notes, markdown=suffix in {".md", ".markdown"})


def looks_binary(head: bytes) -> bool:
    """NUL bytes (outside UTF-16) or mostly control characters mean binary."""
    if head.startswith(_UTF16_BOMS):
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
    if raw.startswith(_UTF16_BOMS):
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


def _read_plain(path: Path, shown: str, text: str, notes: tuple[str, ...], markdown: bool) -> Record:
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
    return Record(fields, shown, str(path), single_file=True, notes=notes)


def _read_html(path: Path, shown: str, text: str, notes: tuple[str, ...]) -> Iterator[Record | Failure]:
    fields = html_fields(text)
    if fields is None:
        yield Failure(shown, "no article text found in the HTML page")
        return
    yield Record(fields, shown, str(path), True, notes)


#: Dates from the page's metadata and markup only. htmldate's "extensive search" guesses from
#: any date in the text: a dateless page with "Copyright 2021" in its footer was dated 2021-01-01.
HTML_DATE_PARAMS = {"extensive_search": False, "original_date": True}


def html_fields(content: str | bytes, url: str | None = None) -> dict[str, Any] | None:
    """The article fields trafilatura extracts from an HTML page (the body as ``text``, and
    title, url, source, author, published_at, language where the page has them); None when
    it holds no article text. A page without a date in its metadata gets none."""
    import trafilatura

    doc = trafilatura.bare_extraction(content, url=url, with_metadata=True, include_comments=False,
                                      include_tables=True, favor_recall=True,
                                      date_extraction_params=HTML_DATE_PARAMS)
    body = getattr(doc, "text", None) if doc is not None else None
    if not body or not body.strip():
        return None
    fields = {
        "text": body,
        "title": getattr(doc, "title", None),
        "url": getattr(doc, "url", None),
        "source": getattr(doc, "sitename", None) or getattr(doc, "hostname", None),
        "author": getattr(doc, "author", None),
        "published_at": getattr(doc, "date", None),
        "language": getattr(doc, "language", None),
    }
    return {k: v for k, v in fields.items() if v}


def _read_json(path: Path, shown: str, text: str, notes: tuple[str, ...]) -> Iterator[Record | Failure]:
    try:
        data = load_json(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        yield Failure(shown, json_error(exc))
        return
    if isinstance(data, dict) and isinstance(data.get("articles"), list):
        items = data["articles"]
    elif isinstance(data, list):
        items = data
    elif isinstance(data, dict):
        items = [data]
    else:
        why = data.reason if isinstance(data, Invalid) else ""
        yield Failure(shown, f"{why + '; ' if why else ''}"
                             "JSON must be an article object, a list of them, or {\"articles\": [...]}")
        return
    for n, item in enumerate(items, 1):
        origin = f"{shown}:item {n}"
        if not isinstance(item, dict):
            yield Failure(origin, f"item {n} is not a JSON object")
        elif (bad := invalid_value(item)) is not None:
            yield Failure(origin, f"item {n}: {bad}")
        else:
            yield Record(item, origin, str(path), single_file=len(items) == 1, notes=notes)


def _read_stream(fh: BinaryIO, head: bytes, path: Path, shown: str, suffix: str,
                 max_bytes: int) -> Iterator[Record | Failure]:
    """JSONL and CSV exports are read line by line from the binary handle, decoded per
    line: memory follows ``max_bytes`` (the limit of one record), not the file."""
    if head.startswith(_UTF16_BOMS):
        yield Failure(shown, "UTF-16 exports are not supported; save the file as UTF-8")
        return
    encoding, note = "utf-8-sig", ""
    try:
        head[:4096].decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if exc.start < min(len(head), 4096) - 4:  # not just a character cut at the buffer's end
            encoding, note = "cp1252", "not UTF-8; decoded as Windows-1252"
    notes = (f"{shown}: {note}",) if note else ()
    fh.seek(0)
    lines = bounded_lines(fh, max_bytes)
    if suffix in {".jsonl", ".ndjson"}:
        yield from _read_jsonl(path, shown, lines, encoding, notes)
    else:
        yield from _read_csv(path, shown, lines, encoding, notes, max_bytes, tsv=suffix == ".tsv")


def _capped(items: Iterator[Record | Failure], shown: str) -> Iterator[Record | Failure]:
    """Pass records on; pass the first MAX_FAILURES_PER_FILE failures, then only count them."""
    failures = 0
    for item in items:
        if isinstance(item, Failure):
            failures += 1
            if failures > MAX_FAILURES_PER_FILE:
                continue
        yield item
    if failures > MAX_FAILURES_PER_FILE:
        yield Failure(shown, f"{failures - MAX_FAILURES_PER_FILE} more bad lines not listed "
                             f"(only the first {MAX_FAILURES_PER_FILE} are)")


def _read_jsonl(path: Path, shown: str, lines: Iterator[Line | Junk], encoding: str,
                notes: tuple[str, ...]) -> Iterator[Record | Failure]:
    for line in lines:
        if isinstance(line, Junk):
            yield Failure(f"{shown}:line {line.first}", line.describe())
            continue
        if not line.data.strip():
            continue
        n, origin = line.number, f"{shown}:line {line.number}"
        try:
            item = load_json(line.data.decode(encoding))
        except UnicodeDecodeError as exc:
            yield Failure(origin, f"line {n} undecodable as {encoding_label(encoding)} "
                                  f"(bad byte at column {exc.start + 1})")
            continue
        except json.JSONDecodeError as exc:
            yield Failure(origin, f"malformed JSON on line {n}: {exc.msg}")
            continue
        except (ValueError, RecursionError) as exc:
            yield Failure(origin, f"line {n}: {json_error(exc)}")
            continue
        if not isinstance(item, dict):
            yield Failure(origin, f"line {n} is not a JSON object")
        elif (bad := invalid_value(item)) is not None:
            yield Failure(origin, f"line {n}: {bad}")
        else:
            yield Record(item, origin, str(path), single_file=False, notes=notes)


def _read_csv(path: Path, shown: str, lines: Iterator[Line | Junk], encoding: str, notes: tuple[str, ...],
              max_bytes: int, tsv: bool) -> Iterator[Record | Failure]:
    csv.field_size_limit(max(int(max_bytes), 131072))
    first = next(lines, None)
    if not isinstance(first, Line):
        yield Failure(shown, "empty CSV" if first is None else f"malformed CSV header: {first.describe()}")
        return
    try:
        dialect = csv.excel_tab if tsv else _dialect_from_header(first.data.decode(encoding))
    except UnicodeDecodeError:
        yield Failure(shown, f"malformed CSV header: undecodable as {encoding_label(encoding)}")
        return
    feed = CsvLines(itertools.chain([first], lines), encoding, max_bytes)
    reader = csv.reader(feed, dialect)
    try:
        header = next(reader)
    except StopIteration:
        yield Failure(shown, "empty CSV")
        return
    except (csv.Error, SkipRow) as exc:
        yield Failure(shown, f"malformed CSV header: {exc}")
        return
    feed.row_done()
    header = [h.strip().lstrip("\ufeff") for h in header]
    if canonical_key("text", {h.lower(): h for h in header}) is None:
        yield Failure(shown, f"CSV has no text column (columns: {', '.join(header)[:500] or 'none'}); "
                             f"expected one of {', '.join(FIELD_ALIASES['text'])}")
        return
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except SkipRow as exc:
            yield Failure(f"{shown}:line {feed.first}", str(exc))
            continue
        except csv.Error as exc:
            yield Failure(f"{shown}:line {feed.last}", f"malformed CSV at line {feed.last}: {exc}")
            feed.row_done()
            continue
        feed.row_done()
        line = feed.last  # a row is known by the line it ends on, as csv.reader's line_num
        if not any(cell.strip() for cell in row):
            continue
        origin = f"{shown}:line {line}"
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
