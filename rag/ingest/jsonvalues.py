"""JSON as articles come in it: NaN, Infinity, a 5000-digit integer or absurd nesting
fail the record holding them (with a reason), never the whole ingest."""

from __future__ import annotations

import json
import math
from typing import Any

from rag.ingest.clean import valid_text

#: Python refuses longer integer strings (CVE-2020-10735); we say so instead of raising.
MAX_INT_DIGITS = 4300


class Invalid:
    """Stands in for a value JSON should not hold (NaN, Infinity, a 5000-digit integer),
    so the record holding it fails and its neighbours in the same file do not."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _json_constant(name: str) -> Invalid:
    return Invalid(f"{name} is not a valid JSON number")


def _json_int(digits: str) -> int | Invalid:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        return Invalid(f"integer of {len(digits.lstrip('-'))} digits (limit {MAX_INT_DIGITS})")
    return int(digits)


def _json_float(text: str) -> float | Invalid:
    value = float(text)
    return value if math.isfinite(value) else Invalid(f"number {text[:40]} is out of range")


def load_json(text: str) -> Any:
    """json.loads that never yields NaN/Infinity nor raises for a huge integer: such
    values become ``Invalid`` markers (see ``invalid_value``). Still raises
    JSONDecodeError for bad syntax and RecursionError for absurd nesting."""
    return json.loads(text, parse_constant=_json_constant, parse_int=_json_int, parse_float=_json_float)


def invalid_value(value: Any) -> str | None:
    """Why a parsed JSON value is unacceptable, or None. Iterative: nesting is only
    bounded by the recursion limit the parser already survived."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Invalid):
            return item.reason
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def json_error(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply"
    return f"invalid JSON: {valid_text(str(exc))[:200]}"
