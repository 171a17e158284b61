"""Names in text, and whether another text holds them, across languages.

A claim or a question is about what it names ("Facebook", "Deutsche Bank",
"Manchester United"). A source that does not hold those names does not say
what the claim says, however close its meaning is (an embedding puts
"Facebook bought Deutsche Bank" next to "Facebook talked to banks"). Names
are found by spelling (a light stem and a fuzzy match: "Huguenots" /
"Hugenotten", "February" / "Februar") and, with an embedder, as translations
("German" / "deutschen", "Emperor" / "Kaiser")."""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Iterable

import numpy as np

#: A name and a word this similar (each embedded alone) are the same name in two languages:
#: translations score 0.81-0.94, unrelated names 0.66-0.78, related ones (two football clubs) up to 0.83.
TRANSLATION_SIMILARITY = 0.85

#: Words that say nothing about whether a source supports a claim.
STOPWORDS = frozenset("""
    the and that this these those are was were has have had for with from into about also than then they their
    there which who whom what when where will would could should been being its not but can may said says
    der die das den dem des und oder ein eine einer eines einem einen ist sind war waren hat haben hatte wird
    werden wurde wurden mit von für auf aus bei nach über unter auch als wie dass sich nicht noch nur sie
    """.split())
#: Capitalised only because they start a sentence.
STARTERS = frozenset("""
    the a an in on at it its this that these those they he she we i you there here according however yes no
    also both after before during while when where what which who why how as by for from with to of and but so
    since because although though if based some many most all each every one two three several other another
    such his her their our my your then today yesterday now later earlier meanwhile instead overall
    das der die ein eine es er sie wir ich laut im am nach vor bei mit von zu auch aber dies diese dieser den
    dem des ja nein seit wegen heute gestern did does do is are was were can could will would should has have had
    whose welche welcher welches welchen welchem wer wem wen was wann wo woher wohin warum wieso wie ist sind hat haben
    """.split())


def names_in(text: str) -> dict[str, str]:
    """What ``text`` names: capitalised words (the first one unless it is a common word that
    starts sentences), and words with capitals inside ("JPMorgan"); stem -> the word as written."""
    words = re.findall(r"[^\W\d_][\w’'.&-]*", text)
    named = [w for k, w in enumerate(words)
             if (w[0].isupper() and (k > 0 or w.lower() not in STARTERS)) or any(c.isupper() for c in w[1:])]
    # Short words only as acronyms ("EZB", "NFL"): "New" of "New World" is "Neue" in German.
    parts = [part for w in named for part in re.split(r"[-’'.&]", w) if len(part) >= 4 or
             (len(part) >= 2 and part.isupper())]
    return {stem(part): part for part in parts if part.lower() not in STOPWORDS}


def word_stems(text: str) -> dict[str, str]:
    """Stem -> word, for every word of ``text``."""
    return {stem(w): w for w in re.findall(r"[^\W\d_]{2,}", text)}


def stem(word: str) -> str:
    """Enough stemming to find a name again in another language or case: "Banken", "Bank",
    "Panthers", "Panther" match."""
    w = word.lower()
    for suffix in ("en", "es", "s", "n", "e"):
        if len(w) > len(suffix) + 2 and w.endswith(suffix):
            return w[:-len(suffix)]
    return w


def spelled_alike(names: Iterable[str], words: set[str]) -> set[str]:
    """The stems of ``names`` that occur among the stems ``words``, exactly or spelled alike."""
    return {n for n in names if n in words or (len(n) >= 4 and any(_alike(n, w) for w in words))}


@functools.lru_cache(maxsize=65536)
def _alike(a: str, b: str) -> bool:
    if abs(len(a) - len(b)) > 3 or a[:2] != b[:2]:
        return False
    return difflib.SequenceMatcher(None, a, b).ratio() >= 0.75


class Vectors:
    """Single words embedded once, in batches."""

    def __init__(self, embed: Callable[[list[str]], np.ndarray]) -> None:
        self._embed = embed
        self._vectors: dict[str, np.ndarray] = {}

    def add(self, words: Iterable[str]) -> None:
        new = sorted({w for w in words if len(w) >= 4 and w not in self._vectors})
        if new:
            self._vectors.update(zip(new, self._embed(new)))

    def __getitem__(self, word: str) -> np.ndarray:
        if word not in self._vectors:
            self.add([word])
        return self._vectors[word]


def translated(missing: dict[str, str], words: dict[str, str], vectors: Vectors) -> set[str]:
    """The stems of ``missing`` names (stem -> word) that one of ``words`` (stem -> word)
    translates: the two embed within TRANSLATION_SIMILARITY."""
    candidates = [w for w in words.values() if len(w) >= 4]
    if not missing or not candidates:
        return set()
    vectors.add(list(missing.values()) + candidates)
    matrix = np.vstack([vectors[w] for w in candidates])
    return {s for s, word in missing.items()
            if len(word) >= 4 and float(np.max(matrix @ vectors[word])) >= TRANSLATION_SIMILARITY}
