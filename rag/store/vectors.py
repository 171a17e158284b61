"""Chunk vectors of one generation: the raw matrix (``vectors.npy`` +
``vector_ids.npy``, the source of truth) and the FAISS index built from it.

Inner product on L2-normalised vectors (= cosine). Exact search up to a size
threshold, HNSW above it; the raw matrix lets us rebuild either at will."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import faiss
import numpy as np

from rag.errors import IndexCorruptError

log = logging.getLogger(__name__)

VECTORS_FILE = "vectors.npy"
IDS_FILE = "vector_ids.npy"
FAISS_FILE = "chunks.faiss"
#: Exact inner product up to RAG_EXACT_SEARCH_LIMIT chunks, HNSW above.
VectorIndexKind = Literal["flat", "hnsw"]
HNSW_M = 32
#: Candidates HNSW explores per search (at least 2k). 64 kept only ~0.76 of the exact
#: top 10 at 100k synthetic vectors (benchmarks/scale.py); this costs ~1 ms more.
HNSW_EF_SEARCH = 128


@dataclass
class VectorSet:
    """Vectors and their ids (chunk rowids), row-aligned."""

    vectors: np.ndarray  # (n, dim) float32
    ids: np.ndarray  # (n,) int64

    @classmethod
    def empty(cls, dim: int) -> VectorSet:
        return cls(np.zeros((0, dim), np.float32), np.zeros(0, np.int64))

    def without(self, drop_ids: set[int]) -> VectorSet:
        if not drop_ids:
            return self
        keep = ~np.isin(self.ids, np.fromiter(drop_ids, np.int64, len(drop_ids)))
        return VectorSet(self.vectors[keep], self.ids[keep])

    def plus(self, vectors: np.ndarray, ids: np.ndarray) -> VectorSet:
        if len(ids) == 0:
            return self
        return VectorSet(np.concatenate([self.vectors, vectors.astype(np.float32)]),
                         np.concatenate([self.ids, ids.astype(np.int64)]))


#: numpy parses every .npy header with ast.literal_eval, and CPython 3.11's ast module keeps
#: its recursion depth in interpreter-wide state: readers opening generations in several
#: threads once failed with "SystemError: AST constructor recursion depth mismatch" (1 of 663
#: requests in the churn test). Every .npy load of the store takes this lock.
NPY_LOAD_LOCK = threading.Lock()


def load_vectors(folder: Path, dim: int) -> VectorSet:
    try:
        with NPY_LOAD_LOCK:
            vectors = np.load(folder / VECTORS_FILE, mmap_mode="r", allow_pickle=False)
            ids = np.load(folder / IDS_FILE, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(f"cannot read vectors in {folder}: {exc}") from exc
    if vectors.ndim != 2 or vectors.shape[1] != dim or vectors.dtype != np.float32:
        raise IndexCorruptError(f"{folder / VECTORS_FILE}: expected float32 (n, {dim}), "
                                f"found {vectors.dtype} {vectors.shape}")
    if ids.shape != (vectors.shape[0],):
        raise IndexCorruptError(f"{folder}: {len(ids)} vector ids for {vectors.shape[0]} vectors")
    return VectorSet(vectors, ids.astype(np.int64))


def save_vectors(folder: Path, vset: VectorSet) -> None:
    np.save(folder / VECTORS_FILE, np.ascontiguousarray(vset.vectors, dtype=np.float32), allow_pickle=False)
    np.save(folder / IDS_FILE, np.ascontiguousarray(vset.ids, dtype=np.int64), allow_pickle=False)


def choose_kind(n: int, exact_limit: int) -> VectorIndexKind:
    return "flat" if n <= exact_limit else "hnsw"


def build_index(vset: VectorSet, kind: VectorIndexKind) -> faiss.Index:
    dim = vset.vectors.shape[1]
    if kind == "flat":
        base = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        base = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        base.hnsw.efConstruction = 80
        base.hnsw.efSearch = 64
    else:
        raise ValueError(f"unknown vector index kind {kind!r}")
    index = faiss.IndexIDMap2(base)
    if len(vset.ids):
        index.add_with_ids(np.ascontiguousarray(vset.vectors, dtype=np.float32), vset.ids)
    return index


def save_index(folder: Path, index: faiss.Index) -> None:
    # Serialised in memory and written by Python, so a full disk is an OSError (ENOSPC)
    # like every other write, not a FAISS RuntimeError about a short fwrite.
    with (folder / FAISS_FILE).open("wb") as fh:
        faiss.serialize_index(index).tofile(fh)


def load_index(folder: Path) -> faiss.Index:
    path = folder / FAISS_FILE
    try:
        # Plain read: FAISS files hold numbers and a type tag, no code.
        return faiss.read_index(str(path))
    except RuntimeError as exc:
        raise IndexCorruptError(f"{path} is not a readable FAISS index: {str(exc).splitlines()[0]}") from exc


def search(index: faiss.Index, query: np.ndarray, k: int,
           allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
    """Top-k (id, score) for one query vector, optionally among allowed ids."""
    if index.ntotal == 0 or k <= 0 or (allowed is not None and len(allowed) == 0):
        return []
    params = None
    selector = (faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
                if allowed is not None else None)
    if is_hnsw(index):
        params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(HNSW_EF_SEARCH, 2 * k))
    elif selector is not None:
        params = faiss.SearchParameters(sel=selector)
    scores, ids = index.search(query.reshape(1, -1).astype(np.float32), min(k, index.ntotal), params=params)
    return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]


def exact_search(vset: VectorSet, query: np.ndarray, k: int,
                 allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
    """Brute force over the raw vectors (of the allowed ids only, if given)."""
    rows = np.arange(len(vset.ids)) if allowed is None else np.flatnonzero(np.isin(vset.ids, allowed))
    if len(rows) == 0 or k <= 0:
        return []
    scores = np.asarray(vset.vectors[rows] @ query.astype(np.float32))
    top = np.argsort(-scores, kind="stable")[:k]
    return [(int(vset.ids[rows[i]]), float(scores[i])) for i in top]


def is_hnsw(index: faiss.Index) -> bool:
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else index
    return isinstance(inner, faiss.IndexHNSW)
