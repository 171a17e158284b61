"""Exception classes. Library code raises these; only the CLI and the UI turn
them into friendly messages."""

from __future__ import annotations


class RagError(Exception):
    """Base class for every error this package raises on purpose."""


class ConfigError(RagError):
    """A setting has a value we cannot use."""


class EmbeddingModelError(RagError):
    """The embedding model cannot be found, converted or loaded."""


class IndexError_(RagError):
    """Base class for problems with an index folder."""


class IndexNotFoundError(IndexError_):
    """The folder holds no index (and we were asked not to create one)."""


class IndexCorruptError(IndexError_):
    """An index file is missing, truncated, tampered with or of an unknown format."""


class ModelMismatchError(IndexError_):
    """The index was built with another embedding model than the configured one."""


class IndexLockedError(IndexError_):
    """Another process is writing to the index."""


class ArticleNotFoundError(RagError):
    """No article with the given id."""


class InvalidFilterError(RagError):
    """A search filter has an unknown key or a value we cannot use."""
