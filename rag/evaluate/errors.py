"""Errors of the evaluation harness (all are ``rag.RagError``s)."""

from __future__ import annotations

from rag.errors import RagError


class EvalError(RagError):
    """Base class for problems met while evaluating."""


class DatasetNotFoundError(EvalError):
    """The shared dataset folder or one of its files is missing."""


class DatasetFormatError(EvalError):
    """A dataset file does not have the layout its adapter expects."""


class EvalIndexError(EvalError):
    """The evaluation index could not be built (some records failed to ingest)."""
