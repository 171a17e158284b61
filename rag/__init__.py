"""Cited answers from a pile of news articles.

    import rag
    index = rag.open_index("index")
    index.ingest(["articles/"])
    for hit in index.search("Which banks did Facebook contact?"):
        print(hit.score, hit.title, hit.text)
"""

from pathlib import Path

from rag.errors import (ArticleNotFoundError, ConfigError, EmbeddingModelError, GenerationError, IndexCorruptError,
                        IndexFolderError, IndexLockedError, IndexNotFoundError, IndexWriteError, InvalidFilterError,
                        InvalidQueryError, ModelMismatchError, RagError)
from rag.answer import answer, answer_stream
from rag.generate import GeneratorStatus, generator_status
from rag.index import NewsIndex, open_index
from rag.news import (Answer, Article, ArticleSummary, Chunk, Citation, DeleteReport, Duplicate, Failure, Filters, Hit,
                      IndexStats, IngestReport, Unsupported)
from rag.news import ArticleRef, also_reported
from rag.settings import GENERATOR_NAMES, RETRIEVAL_MODES, GeneratorName, RetrievalMode, Settings

__version__ = "0.1.0"


def sample_articles() -> list[Path]:
    """The files of the bundled sample corpus (see rag/sample/SOURCES.md)."""
    folder = Path(__file__).parent / "sample"
    return sorted(p for p in folder.iterdir() if p.suffix in {".txt", ".csv", ".jsonl"})


__all__ = [
    "Answer", "Citation", "GenerationError", "GeneratorStatus", "Unsupported", "answer", "answer_stream",
    "generator_status", "Article", "ArticleNotFoundError", "ArticleSummary", "Chunk", "ConfigError",
    "DeleteReport", "Duplicate", "EmbeddingModelError", "Failure", "Filters", "Hit", "IndexCorruptError",
    "IndexStats", "IndexFolderError", "IndexLockedError", "IndexNotFoundError", "IndexWriteError",
    "IngestReport", "InvalidFilterError", "InvalidQueryError", "ModelMismatchError", "NewsIndex", "RagError",
    "Settings", "GENERATOR_NAMES", "RETRIEVAL_MODES", "GeneratorName", "RetrievalMode", "open_index",
    "sample_articles", "__version__",
    "ArticleRef", "also_reported",
]
