"""Copies of one story: the same agency text republished by several outlets with small edits
(another headline, a byline or dateline added, the last paragraph cut, a few words changed).

Each article's text becomes a set of character shingles summarised by a MinHash signature
(datasketch, ``NUM_PERM`` 32-bit values, stored in the catalog as a BLOB); an LSH over the
signatures finds candidate copies in constant time per article, and a candidate counts only when
the estimated Jaccard similarity of the two shingle sets reaches ``SAME_STORY``. A story is a
connected group of such pairs; its id is the article id of its earliest member. Nothing is
deleted: grouping only labels. The titles are not compared (syndicated copies are re-headlined).

Pure functions over signatures here; the catalog bookkeeping is in ``rag.store.generation``."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

#: Permutations per signature: the Jaccard estimate's standard error is about 0.04 near 0.5.
NUM_PERM = 128
SEED = 1
#: datasketch 2's default permutation scheme: 32-bit hash values (stored as uint32).
SCHEME = "affine32"
#: Characters per shingle (after lowercasing and folding punctuation/space runs): robust to a
#: changed word in a short text (a word kills ~its length of shingles), unlike word n-grams.
SHINGLE_CHARS = 7
#: Copies need this estimated Jaccard similarity of their shingle sets. It also bounds the length
#: ratio (J <= shorter/longer), so a short article quoting part of a long one is not its copy.
SAME_STORY = 0.5
#: The LSH looks for candidates from a lower similarity, so few copies are missed at the band edge.
LSH_THRESHOLD = 0.3

_FOLD = re.compile(r"[\W_]+")
_P = np.uint64(1_000_003)
_MASK = np.uint64(0xFFFFFFFF)
_template: MinHash | None = None


def shingle_hashes(text: str) -> np.ndarray:
    """The distinct 32-bit hashes of the text's character shingles (a polynomial hash of the
    code points, stable across processes and platforms, vectorised in numpy)."""
    folded = _FOLD.sub(" ", text.lower()).strip()
    codes = np.frombuffer(folded.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if len(codes) == 0:
        return np.zeros(0, dtype=np.uint32)
    k = min(SHINGLE_CHARS, len(codes))
    h = np.zeros(len(codes) - k + 1, dtype=np.uint64)
    for j in range(k):  # h = sum codes[i + j] * P^(k-1-j), kept to 32 bits as it goes
        h = ((h * _P) + codes[j:len(codes) - k + 1 + j]) & _MASK
    return np.unique(h.astype(np.uint32))


def signature(text: str) -> np.ndarray:
    """The MinHash signature (``NUM_PERM`` uint32) of the text's shingles."""
    global _template
    if _template is None:  # the permutations are drawn once per process (same SEED: same ones)
        _template = MinHash(num_perm=NUM_PERM, seed=SEED, scheme=SCHEME)
    m = MinHash(num_perm=NUM_PERM, seed=SEED, scheme=SCHEME, hashfunc=int, permutations=_template.permutations)
    m.update_batch(shingle_hashes(text).tolist())
    return np.asarray(m.hashvalues, dtype=np.uint32)


def to_blob(sig: np.ndarray) -> bytes:
    return np.asarray(sig, dtype="<u4").tobytes()


def from_blob(blob: bytes) -> np.ndarray:
    sig = np.frombuffer(blob, dtype="<u4")
    if len(sig) != NUM_PERM:
        raise ValueError(f"a story signature has {len(sig)} values, expected {NUM_PERM}")
    return sig


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Estimated Jaccard similarity of the two shingle sets."""
    return float(np.count_nonzero(a == b)) / NUM_PERM


def same_story(a: np.ndarray, b: np.ndarray) -> bool:
    return similarity(a, b) >= SAME_STORY


class StoryLSH:
    """The LSH over the signatures of one catalog's articles. It is rebuilt from the catalog
    when a writer starts (``generation`` None or another one than the writer's base), and a
    writer that publishes leaves it in step with its generation for the next batch."""

    def __init__(self) -> None:
        self.lsh = MinHashLSH(threshold=LSH_THRESHOLD, num_perm=NUM_PERM)
        self.signatures: dict[str, np.ndarray] = {}
        #: The generation whose articles it holds (None: unknown, rebuild before use).
        self.generation: int | None = None

    @classmethod
    def build(cls, rows: Iterable[tuple[str, bytes]]) -> StoryLSH:
        out = cls()
        with out.lsh.insertion_session() as session:
            for article_id, blob in rows:
                sig = from_blob(blob)
                out.signatures[article_id] = sig
                session.insert(article_id, _lean(sig), check_duplication=False)
        return out

    def add(self, article_id: str, sig: np.ndarray) -> None:
        self.discard([article_id])
        self.lsh.insert(article_id, _lean(sig))
        self.signatures[article_id] = sig

    def discard(self, article_ids: Iterable[str]) -> None:
        for article_id in article_ids:
            if self.signatures.pop(article_id, None) is not None:
                self.lsh.remove(article_id)

    def copies_of(self, sig: np.ndarray) -> list[str]:
        """The indexed articles whose text is a copy of the one with this signature."""
        return [key for key in self.lsh.query(_lean(sig)) if same_story(sig, self.signatures[key])]


def _lean(sig: np.ndarray) -> LeanMinHash:
    return LeanMinHash(seed=SEED, hashvalues=sig, scheme=SCHEME)


def _root(parent: list[int], i: int) -> int:
    """The representative of ``i`` in a union-find forest (path halving)."""
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def components(members: Sequence[str], sigs: Callable[[str], np.ndarray]) -> list[list[str]]:
    """Split articles (in order, earliest first) into groups connected by copy pairs, each
    group in the given order. Used when an article leaves a story: the rest may fall apart."""
    parent = list(range(len(members)))

    def root(i: int) -> int:
        return _root(parent, i)

    values = [sigs(m) for m in members]
    matrix = np.stack(values) if values else np.zeros((0, NUM_PERM), np.uint32)
    for i in range(len(members)):
        close = np.flatnonzero((matrix[i + 1:] == matrix[i]).sum(axis=1) >= SAME_STORY * NUM_PERM) + i + 1
        for j in close:
            parent[root(int(j))] = root(i)
    groups: dict[int, list[str]] = {}
    for i, m in enumerate(members):
        groups.setdefault(root(i), []).append(m)
    return list(groups.values())


def group_texts(texts: Sequence[str]) -> list[int]:
    """The story of each text (the index of its group's earliest text), grouped as an ingest
    groups them one by one: a text joins, and so merges, every earlier story holding a copy of it."""
    lsh = StoryLSH()
    parent = list(range(len(texts)))

    def root(i: int) -> int:
        return _root(parent, i)

    for i, text in enumerate(texts):
        sig = signature(text)
        for key in lsh.copies_of(sig):
            a, b = root(i), root(int(key))
            parent[max(a, b)] = min(a, b)
        lsh.add(str(i), sig)
    return [root(i) for i in range(len(texts))]
