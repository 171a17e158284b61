"""The BM25 index of one generation (bm25s, stored as .npy + .json, no pickle).

Each chunk is tokenised with its article's language: lower case, stop words
dropped, Snowball-stemmed. A query is stemmed with every language the index
holds, so "banks" (en) and "Banken" (de) both reach the stem "bank"."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from rag.errors import IndexCorruptError

log = logging.getLogger(__name__)

SPARSE_DIR = "bm25"
IDS_FILE = "bm25_ids.npy"
LANGS_FILE = "bm25_languages.npy"
_WORD = re.compile(r"\w+", re.UNICODE)
#: ISO 639-1 -> Snowball algorithm name (PyStemmer).
STEMMERS = {
    "ar": "arabic", "ca": "catalan", "cs": "czech", "da": "danish", "de": "german", "el": "greek",
    "en": "english", "es": "spanish", "et": "estonian", "eu": "basque", "fi": "finnish", "fr": "french",
    "ga": "irish", "hi": "hindi", "hu": "hungarian", "hy": "armenian", "id": "indonesian", "it": "italian",
    "lt": "lithuanian", "nb": "norwegian", "ne": "nepali", "nl": "dutch", "no": "norwegian", "pt": "portuguese",
    "ro": "romanian", "ru": "russian", "sr": "serbian", "sv": "swedish", "ta": "tamil", "tr": "turkish",
}


@lru_cache(maxsize=64)
def _stemmer(language: str):  # -> Stemmer.Stemmer | None
    import Stemmer

    name = STEMMERS.get(language)
    return Stemmer.Stemmer(name) if name else None


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from bm25s import stopwords as sw

    words: set[str] = set()
    for name in dir(sw):
        if name.startswith("STOPWORDS_"):
            words.update(getattr(sw, name))
    return frozenset(w.lower() for w in words)


def tokenize(text: str, languages: Sequence[str]) -> list[str]:
    """Stems of the text's content words, once per language given."""
    stop = _stopwords()
    words = [w for w in _WORD.findall(text.lower()) if w not in stop and (len(w) > 1 or w.isdigit())]
    stemmers = [s for s in (_stemmer(lang) for lang in dict.fromkeys(languages)) if s is not None]
    if not stemmers:
        return words
    out: list[str] = []
    for stemmer in stemmers:
        out += stemmer.stemWords(words)
    return out


class SparseIndex:
    """BM25 over chunk texts; ``ids`` maps BM25 document positions to chunk rowids."""

    def __init__(self, model, ids: np.ndarray, languages: tuple[str, ...],  # model: bm25s.BM25
                 doc_languages: np.ndarray) -> None:
        self._model = model
        self.ids = ids
        self.languages = languages  # every language in the index, sorted
        self.doc_languages = doc_languages  # per document: index into `languages`

    @classmethod
    def build(cls, docs: Iterable[tuple[int, str, str | None]]) -> SparseIndex:
        """docs: (rowid, text, language) for every chunk."""
        import bm25s

        ids, corpus, doc_langs = [], [], []
        for rowid, text, lang in docs:
            ids.append(rowid)
            corpus.append(tokenize(text, [lang or "en"]) or ["\u2205"])  # bm25s needs a token per doc
            doc_langs.append(lang or "en")
        model = bm25s.BM25()
        if corpus:
            model.index(corpus, show_progress=False)
        languages = tuple(sorted(set(doc_langs)))
        codes = np.asarray([languages.index(lang) for lang in doc_langs], dtype=np.uint16)
        return cls(model, np.asarray(ids, dtype=np.int64), languages, codes)

    def save(self, folder: Path) -> None:
        target = folder / SPARSE_DIR
        target.mkdir(exist_ok=True)
        np.save(target / IDS_FILE, self.ids, allow_pickle=False)
        np.save(target / LANGS_FILE, self.doc_languages, allow_pickle=False)
        (target / "languages.json").write_text(json.dumps(list(self.languages)))
        if len(self.ids):
            self._model.save(str(target), show_progress=False)

    @classmethod
    def load(cls, folder: Path) -> SparseIndex:
        import bm25s

        target = folder / SPARSE_DIR
        try:
            ids = np.load(target / IDS_FILE, allow_pickle=False)
            doc_languages = np.load(target / LANGS_FILE, allow_pickle=False)
            languages = tuple(json.loads((target / "languages.json").read_text()))
            model = bm25s.BM25.load(str(target), show_progress=False, verbosity=0) if len(ids) else None
        except (OSError, ValueError) as exc:
            raise IndexCorruptError(f"cannot read the BM25 index in {target}: {exc}") from exc
        if doc_languages.shape != ids.shape or (len(ids) and int(doc_languages.max()) >= len(languages)):
            raise IndexCorruptError(f"{target}: document languages do not match the documents")
        return cls(model, ids.astype(np.int64), languages, doc_languages)

    def language_of(self, rowids: list[int]) -> dict[int, str]:
        """Language of each chunk (ids are sorted: they come from the catalog by rowid)."""
        if not rowids or not len(self.ids):
            return {}
        wanted = np.asarray(rowids, dtype=np.int64)
        pos = np.clip(np.searchsorted(self.ids, wanted), 0, len(self.ids) - 1)
        return {int(r): self.languages[int(self.doc_languages[p])]
                for r, p in zip(wanted, pos) if self.ids[p] == r}

    def search(self, query: str, k: int, query_language: str | None = None,
               allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        if self._model is None or not len(self.ids) or k <= 0:
            return []
        langs = list(self.languages) + ([query_language] if query_language else [])
        tokens = list(dict.fromkeys(tokenize(query, langs)))
        vocab = self._model.vocab_dict
        tokens = [t for t in tokens if t in vocab]
        if not tokens:
            return []
        scores = np.asarray(self._model.get_scores(tokens), dtype=np.float32)
        if allowed is not None:
            scores = np.where(np.isin(self.ids, allowed), scores, 0.0)
        top = np.argsort(-scores, kind="stable")[:k]
        return [(int(self.ids[i]), float(scores[i])) for i in top if scores[i] > 0]
