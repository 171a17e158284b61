"""The BM25 index of one generation (bm25s, stored as .npy + .json, no pickle).

Each chunk is tokenised with its article's language: lower case, that
language's stop words dropped, Snowball-stemmed. A query is tokenised once per
language the index holds (and its own): "banks" (en) and "Banken" (de) both
reach the stem "bank". Stop words are per language: "war" is a German stop word
(a form of "sein") and an English noun, so one merged list would drop it from
every text."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from rag.errors import IndexCorruptError
from rag.store.vectors import NPY_LOAD_LOCK

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


#: ISO 639-1 -> the stop-word list bm25s ships for it (languages without one keep every word);
#: English takes NLTK's 179 words, as the 33 of STOPWORDS_EN keep "which", "who", "what".
STOPWORD_LISTS = {
    "da": "STOPWORDS_DANISH", "de": "STOPWORDS_GERMAN", "en": "STOPWORDS_EN_PLUS", "es": "STOPWORDS_SPANISH",
    "fr": "STOPWORDS_FRENCH", "it": "STOPWORDS_ITALIAN", "ko": "STOPWORDS_KOREAN", "nb": "STOPWORDS_NORWEGIAN",
    "nl": "STOPWORDS_DUTCH", "no": "STOPWORDS_NORWEGIAN", "pt": "STOPWORDS_PORTUGUESE", "ru": "STOPWORDS_RUSSIAN",
    "sv": "STOPWORDS_SWEDISH", "tr": "STOPWORDS_TURKISH", "zh": "STOPWORDS_CHINESE",
}
#: Not stop words, though a list has them: NLTK's English list keeps "won" for "won't", and
#: news says "won the election".
KEEP = {"en": frozenset({"won"})}
#: Question words a list lacks (NLTK's English list has who/what/when/where/why/how): in a
#: question they would match every article that happens to use them.
EXTRA = {"de": frozenset({"wer", "wen", "wem", "wann", "warum", "wieso", "weshalb", "wo", "woher", "wohin",
                          "wodurch", "womit", "wofür", "wieviel", "wieviele"})}
#: Written beside the BM25 files; an index tokenised otherwise is re-tokenised when opened.
TOKENIZER_VERSION = 2
TOKENIZER_FILE = "tokenizer.json"


@lru_cache(maxsize=64)
def stopwords(language: str | None) -> frozenset[str]:
    """The stop words of one language (empty when bm25s has no list for it)."""
    from bm25s import stopwords as sw

    name = STOPWORD_LISTS.get((language or "").lower())
    if not name:
        return frozenset()
    lang = language or ""
    words = frozenset(w.lower() for w in getattr(sw, name)) | EXTRA.get(lang, frozenset())
    return words - KEEP.get(lang, frozenset())


@lru_cache(maxsize=256)
def _stop_for(language: str, query_language: str | None) -> frozenset[str]:
    # cached: tokenize runs once per chunk, and the union would be rebuilt every time
    return stopwords(language) | stopwords(query_language)


def tokenize(text: str, languages: Sequence[str], query_language: str | None = None) -> list[str]:
    """Stems of the text's content words, once per language given. Each pass drops the stop
    words of its own language, and for a query also those of the query's language: the
    German pass over "Who won the war?" drops "war", which German chunks never hold, while
    the English pass keeps it."""
    words = [w for w in _WORD.findall(text.lower()) if len(w) > 1 or w.isdigit()]
    out: list[str] = []
    for lang in dict.fromkeys(languages):
        stop = _stop_for(lang, query_language)
        kept = [w for w in words if w not in stop]
        stemmer = _stemmer(lang)
        out += stemmer.stemWords(kept) if stemmer is not None else kept
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
        (target / TOKENIZER_FILE).write_text(json.dumps({"version": TOKENIZER_VERSION, "stopwords": "per language"}))
        if len(self.ids):
            self._model.save(str(target), show_progress=False)

    @staticmethod
    def is_current(folder: Path) -> bool:
        """Whether the BM25 files were tokenised as ``tokenize`` does today."""
        try:
            info = json.loads((folder / SPARSE_DIR / TOKENIZER_FILE).read_text())
        except (OSError, ValueError):
            return False
        return isinstance(info, dict) and info.get("version") == TOKENIZER_VERSION

    @classmethod
    def load(cls, folder: Path) -> SparseIndex:
        import bm25s

        target = folder / SPARSE_DIR
        try:
            with NPY_LOAD_LOCK:  # bm25s loads .npy files too
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
        tokens = list(dict.fromkeys(tokenize(query, langs, query_language)))
        vocab = self._model.vocab_dict
        tokens = [t for t in tokens if t in vocab]
        if not tokens:
            return []
        scores = np.asarray(self._model.get_scores(tokens), dtype=np.float32)
        if allowed is not None:
            scores = np.where(np.isin(self.ids, allowed), scores, 0.0)
        top = np.argsort(-scores, kind="stable")[:k]
        return [(int(self.ids[i]), float(scores[i])) for i in top if scores[i] > 0]
