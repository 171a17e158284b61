"""Exception classes. Library code raises these; only the CLI and the UI turn
them into friendly messages."""

from __future__ import annotations


class RagError(Exception):
    """Base class for every error this package raises on purpose."""


class ConfigError(RagError):
    """A setting has a value we cannot use."""


class EmbeddingModelError(RagError):
    """The embedding model cannot be found, converted or loaded."""


class IndexFolderError(RagError):
    """Base class for problems with an index folder."""


class IndexNotFoundError(IndexFolderError):
    """The folder holds no index (and we were asked not to create one)."""


class IndexCorruptError(IndexFolderError):
    """An index file is missing, truncated, tampered with or of an unknown format."""


class ModelMismatchError(IndexFolderError):
    """The index was built with another embedding model than the configured one."""


class IndexLockedError(IndexFolderError):
    """Another process is writing to the index."""


class IndexWriteError(IndexFolderError):
    """A new generation could not be written (disk full, read-only or unwritable folder). The
    unpublished generation is removed; the index stays as it was before the failed write."""


class ArticleNotFoundError(RagError):
    """No article with the given id."""


class InvalidFilterError(RagError):
    """A search filter has an unknown key or a value we cannot use."""


class InvalidQueryError(RagError):
    """A search or question we cannot run: empty, a bad ``k``, an unknown mode or option."""


class GenerationError(RagError):
    """The generator failed. ``str(error)`` is safe to show (no secrets)."""


class ClusterError(RagError):
    """Ray ingest cannot run: Ray is not installed, the cluster cannot be reached, or its
    workers failed (``rag ingest --ray``)."""


class FetchError(RagError):
    """A URL could not be fetched or read: refused scheme, timeout, HTTP error, too large,
    not a page or feed. ``str(error)`` names the URL and the reason in one line."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason
