"""Cited answers from a pile of news articles.

    import rag
    index = rag.open_index("index")
    index.ingest(["articles/"])
    for hit in index.search("Which banks did Facebook contact?"):
        print(hit.score, hit.title, hit.text)
"""

from rag.errors import (ArticleNotFoundError, ConfigError, EmbeddingModelError, IndexCorruptError,
                        IndexLockedError, IndexNotFoundError, InvalidFilterError, ModelMismatchError, RagError)
from rag.index import NewsIndex, open_index
from rag.news import Article, Chunk, Duplicate, Failure, Hit, IngestReport
from rag.settings import Settings
from rag.store.catalog import Filters

__version__ = "0.1.0"

__all__ = [
    "Article", "ArticleNotFoundError", "Chunk", "ConfigError", "Duplicate", "EmbeddingModelError",
    "Failure", "Filters", "Hit", "IndexCorruptError", "IndexLockedError", "IndexNotFoundError",
    "IngestReport", "InvalidFilterError", "ModelMismatchError", "NewsIndex", "RagError", "Settings",
    "open_index", "__version__",
]
