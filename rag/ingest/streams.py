"""Bounded-memory line reading for exports (JSONL/NDJSON, CSV/TSV).

A hostile export can hold a gigabyte without a newline, or a long run of
binary junk. Memory must follow the record limit, not the longest line: lines
are read with a length limit from the binary handle, an over-long line is
skipped in fixed-size pieces without being kept, and a run of junk lines
(over-long or holding NUL bytes) is reported once, as one ``Junk``."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

#: Bytes read at a time while skipping the rest of an over-long line.
SKIP_PIECE = 1 << 20
#: Buffer for export handles: readline refills one buffer at a time, 8 KB makes a long line slow.
BUFFER = 1 << 20


@dataclass(frozen=True)
class Line:
    """One line as bytes (newline included), numbered from 1."""

    number: int
    data: bytes


@dataclass
class Junk:
    """A run of consecutive lines skipped for the same reason."""

    first: int
    last: int
    size: int  # bytes skipped
    reason: str

    def describe(self) -> str:
        where = f"line {self.first}" if self.first == self.last else f"lines {self.first}-{self.last}"
        size = f"{self.size / 1e6:.1f} MB" if self.size >= 100_000 else f"{self.size} bytes"
        return f"{where} {self.reason}; {size} skipped"


def bounded_lines(fh: BinaryIO, limit: int) -> Iterator[Line | Junk]:
    """The lines of ``fh``, none longer than ``limit`` bytes (newline excluded).

    Lines over the limit and lines with NUL bytes come back merged into runs
    of ``Junk``, so a stretch of binary data is one report, not thousands."""
    run: Junk | None = None
    number = 0
    while True:
        data = fh.readline(limit + 1)
        if not data:
            break
        number += 1
        size = len(data)
        if size > limit and not data.endswith(b"\n"):
            del data  # free it before skipping: never hold more than one limit's worth
            size += _skip_rest_of_line(fh)
            reason = f"too large (> {limit / 1e6:g} MB)"
        elif b"\x00" in data:
            reason = "with binary data (NUL bytes)"
        else:
            if run is not None:
                yield run
                run = None
            pieces = _split_bare_cr(data)
            for n, piece in enumerate(pieces, number):
                yield Line(n, piece)
            number += len(pieces) - 1
            continue
        if run is not None and run.reason == reason and run.last == number - 1:
            run.last, run.size = number, run.size + size
        else:
            if run is not None:
                yield run
            run = Junk(number, number, size, reason)
    if run is not None:
        yield run


_BARE_CR = re.compile(rb"(?<=\r)(?!\n)")


def _split_bare_cr(data: bytes) -> list[bytes]:
    """A lone CR ends a line too (old Mac exports), as with universal newlines."""
    if b"\r" not in data:
        return [data]
    return [piece for piece in _BARE_CR.split(data) if piece]


def _skip_rest_of_line(fh: BinaryIO) -> int:
    """Read up to and including the next newline in fixed-size pieces, keeping none of them;
    return the bytes skipped. Plain reads and a seek back: no line is ever assembled."""
    skipped = 0
    while True:
        piece = fh.read(SKIP_PIECE)
        if not piece:
            return skipped
        end = piece.find(b"\n")
        if end >= 0:
            fh.seek(end + 1 - len(piece), io.SEEK_CUR)  # exports are regular files: seekable
            return skipped + end + 1
        skipped += len(piece)


def encoding_label(encoding: str) -> str:
    """The name a user knows a codec by."""
    return {"utf-8-sig": "UTF-8", "utf-8": "UTF-8", "cp1252": "Windows-1252"}.get(encoding, encoding)


class SkipRow(Exception):
    """Raised into csv.reader to abandon a row (it resets at the next one); the message says why."""


class CsvLines:
    """Decoded lines for ``csv.reader``, with the file's real line numbers.

    A quoted field may span lines, so one row is bounded here too: when the
    lines fed to the current row pass ``limit`` bytes, or junk or an
    undecodable line interrupts it, ``SkipRow`` is raised and csv.reader
    starts afresh with the next line. Call ``row_done`` after every row."""

    def __init__(self, lines: Iterator[Line | Junk], encoding: str, limit: int) -> None:
        self._lines = lines
        self._encoding = encoding
        self._limit = limit
        self._fed = 0
        self.first = 0  # line number where the current row started
        self.last = 0  # line number last fed

    def __iter__(self) -> CsvLines:
        return self

    def __next__(self) -> str:
        item = next(self._lines)  # StopIteration ends the csv.reader too
        if isinstance(item, Junk):
            self._fed, self.first, self.last = 0, item.first, item.last
            raise SkipRow(item.describe())
        if self._fed == 0:
            self.first = item.number
        self.last = item.number
        self._fed += len(item.data)
        if self._fed > self._limit:
            self._fed = 0
            raise SkipRow(f"row starting at line {self.first} too large (> {self._limit / 1e6:g} MB)")
        try:
            return item.data.decode(self._encoding)
        except UnicodeDecodeError as exc:
            self._fed = 0
            raise SkipRow(f"line {item.number} undecodable as {encoding_label(self._encoding)} "
                          f"(bad byte at column {exc.start + 1})") from None

    def row_done(self) -> None:
        self._fed = 0
