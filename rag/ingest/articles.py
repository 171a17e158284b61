"""Turn raw records into clean ``Article`` objects: metadata, identity, language."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Any

from rag.ingest.clean import clean_field, clean_text
from rag.ingest.readers import FIELD_ALIASES, Record, canonical_key
from rag.dates import normalize_date
from rag.news import ARTICLE_FIELDS, Article, Failure

log = logging.getLogger(__name__)

_ID_OK = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")


def to_article(record: Record, languages: tuple[str, ...]) -> tuple[Article | None, Failure | None, list[str]]:
    """Clean one record. Returns (article, None, notes) or (None, failure, notes)."""
    lowered = {str(k).lower().strip(): k for k in record.fields}
    raw: dict[str, Any] = {}
    for name in FIELD_ALIASES:
        key = canonical_key(name, lowered)
        if key is not None:
            raw[name] = record.fields[key]
    notes = list(record.notes)

    text = raw.get("text")
    if text is None:
        return None, Failure(record.origin, "no 'text' field"), notes
    if not isinstance(text, str):
        return None, Failure(record.origin, f"'text' must be a string, not {type(text).__name__}"), notes
    text = clean_text(text)
    if not text:
        return None, Failure(record.origin, "empty article text after cleaning"), notes

    meta = {name: clean_field(raw.get(name)) for name in ARTICLE_FIELDS if name not in ("text", "id")}
    explicit_id = raw.get("id")
    if explicit_id is not None and not isinstance(explicit_id, (str, int)):
        return None, Failure(record.origin, f"'id' must be a string or number, not {type(explicit_id).__name__}"), notes
    explicit_id = clean_field(explicit_id) if explicit_id is not None else None
    if explicit_id is not None and not _ID_OK.match(explicit_id):
        return None, Failure(record.origin, "'id' must be 1-200 printable characters"), notes

    published = meta.get("published_at")
    if published:
        parsed = normalize_date(published)
        if parsed is None:
            notes.append(f"{record.origin}: unrecognised date {published!r} ignored")
        meta["published_at"] = parsed
    meta["language"] = normalize_language(meta.get("language")) or detect_language(text, languages)

    text_hash = _sha(text)
    article_id = explicit_id or make_id(record, meta, text_hash)
    content_hash = _sha(json.dumps([text, *(meta[k] for k in sorted(meta))], ensure_ascii=False))
    article = Article(id=article_id, text=text, origin=record.origin,
                      content_hash=content_hash, text_hash=text_hash, **meta)
    return article, None, notes


def make_id(record: Record, meta: dict[str, str | None], text_hash: str) -> str:
    """A stable id: from the url, else the file (for one-article files, so an
    edited file replaces its old version), else the text itself."""
    url = meta.get("url")
    key: str | bytes
    if url:
        key, base = "url:" + url.strip().rstrip("/").lower(), url.rstrip("/").rsplit("/", 1)[-1]
    elif record.single_file:
        key, base = b"file:" + _file_key(record.path), Path(record.path).stem
    else:
        key, base = "text:" + text_hash, meta.get("title") or ""
    return f"{_slug(base) or 'article'}-{_sha(key)[:10]}"


def _file_key(name: str) -> bytes:
    """A real file is keyed by its absolute path, a display name (an upload) by itself; both
    as the name's bytes: a file name need not be UTF-8 (it arrives with surrogate escapes),
    and for one that is, the key and so the id are what they always were."""
    path = Path(name)
    try:
        if path.exists():
            return os.fsencode(path.resolve())
    except (OSError, RuntimeError):  # unreadable parent, symlink loop: key by the name
        pass
    try:
        return os.fsencode(name)
    except UnicodeEncodeError:  # a lone surrogate that no file name can hold
        return name.encode("utf-8", "surrogatepass")


def _slug(text: str, limit: int = 40) -> str:
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"\.(html?|php|aspx?)$", "", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:limit].strip("-")


def _sha(text: str | bytes) -> str:
    return hashlib.sha256(text if isinstance(text, bytes) else text.encode("utf-8")).hexdigest()


def normalize_language(value: str | None) -> str | None:
    if not value:
        return None
    code = value.strip().lower().replace("_", "-").split("-")[0]
    return code if re.fullmatch(r"[a-z]{2,3}", code) else None


def detect_language(text: str, languages: tuple[str, ...]) -> str | None:
    """ISO 639-1 code of the text's language, or None when unsure."""
    detector = _detector(languages)
    if detector is None:
        return None
    found = detector.detect_language_of(text[:3000])
    return found.iso_code_639_1.name.lower() if found is not None else None


# Function words that settle the language of a short question.
_FUNCTION_WORDS = {
    "en": set("what which who whom whose when where why how did does do is are was were the and of to in for on "
              "with about has have had will would can could should it they their this that these those an".split()),
    "de": set("was welche welcher welches wer wen wem wann wo warum wie hat haben hatte ist sind war waren der "
              "die das und von zu im mit für auf über den dem des ein eine einen nicht auch gibt".split()),
    "fr": set("que qui quoi quel quelle quels quand où pourquoi comment est sont était le la les et de des du "
              "un une avec pour sur dans".split()),
    "es": set("qué cuál cuáles quién quiénes cuándo dónde por cómo es son fue el la los las y de del un una con "
              "para en".split()),
}


def detect_query_language(text: str, languages: tuple[str, ...]) -> str | None:
    """Language of a (short) question: function words decide when they can,
    the statistical detector otherwise; None when unsure."""
    words = re.findall(r"\w+", text.lower())
    votes = {lang: sum(w in _FUNCTION_WORDS[lang] for w in words) for lang in languages if lang in _FUNCTION_WORDS}
    best = max(votes.values(), default=0)
    winners = [lang for lang, v in votes.items() if v == best]
    if best > 0 and len(winners) == 1:
        return winners[0]
    return detect_language(text, languages) if len(words) >= 4 else None


@lru_cache(maxsize=4)
def _detector(languages: tuple[str, ...]):  # -> lingua.LanguageDetector | None
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    codes = [getattr(IsoCode639_1, c.upper()) for c in languages if hasattr(IsoCode639_1, c.upper())]
    if len(codes) < 2:
        return None
    # Low-accuracy mode: 70 MB and fast instead of ~1 GB; articles are long enough.
    return LanguageDetectorBuilder.from_iso_codes_639_1(*codes).with_low_accuracy_mode().build()
