"""Placeholder for the chat UI (tracked in the UI issue): until it lands,
`make run` opens an interactive search over the index in the terminal."""

from __future__ import annotations

import sys

import rag
from rag.settings import Settings


def main() -> int:
    settings = Settings.from_env()
    index = rag.open_index(settings.index_dir, settings)
    stats = index.stats()
    print(f"Index {stats['index']}: {stats['articles']} articles, {stats['chunks']} chunks "
          f"({stats['embedding_model']}). Ask a question (empty line to quit).")
    while True:
        try:
            query = input("? ").strip()
        except (EOFError, KeyboardInterrupt):
            return 0
        if not query:
            return 0
        for n, hit in enumerate(index.search(query, k=3), 1):
            print(f"[{n}] {hit.score:.3f} {hit.title or hit.article_id}: {' '.join(hit.text.split())[:300]}")


if __name__ == "__main__":
    sys.exit(main())
