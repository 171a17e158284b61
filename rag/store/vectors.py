"""Chunk vectors of one generation: the raw matrix (``vectors.npy`` +
``vector_ids.npy``, the source of truth) and the FAISS index built from it.

Inner product on L2-normalised vectors (= cosine). Exact search up to a size
threshold, HNSW above it, and IVF-PQ above a second one: PQ codes in RAM, the
candidates re-scored exactly from the memory-mapped raw matrix. The raw matrix
lets us rebuild any kind at will."""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import faiss
import numpy as np

from rag.errors import IndexCorruptError

log = logging.getLogger(__name__)

VECTORS_FILE = "vectors.npy"
IDS_FILE = "vector_ids.npy"
FAISS_FILE = "chunks.faiss"
#: Exact inner product up to RAG_EXACT_LIMIT chunks, HNSW up to RAG_HNSW_LIMIT, IVF-PQ above.
VectorIndexKind = Literal["flat", "hnsw", "ivfpq"]
VECTOR_INDEX_KINDS: tuple[str, ...] = ("flat", "hnsw", "ivfpq")
HNSW_M = 32
#: Candidates HNSW explores per search (at least 2k). 64 kept only ~0.76 of the exact
#: top 10 at 100k synthetic vectors (benchmarks/scale.py); this costs ~1 ms more.
HNSW_EF_SEARCH = 128
#: IVF-PQ: bytes per PQ code (8-bit sub-quantisers; 896-d -> 4 dims each): ~240 bytes per chunk
#: in RAM with the list's id, instead of 3,584 for float32. At 1M real-like 896-d vectors
#: (benchmarks/scale.py data) the inverted lists, not the codes, limit recall: 128-byte codes lost
#: ~0.03 of recall@10 after re-scoring 500 (0.909 vs 0.944 at 128 lists probed), 224 bytes nothing.
IVFPQ_CODE_BYTES = 224
#: Training points per inverted list for the coarse k-means, and for PQ (per centroid).
IVFPQ_TRAIN_PER_LIST = 64
IVFPQ_PQ_TRAIN_PER_CENTROID = 128
#: Inverted lists visited per search (of ~sqrt(n): 1,000 at 1M), and PQ candidates re-scored
#: exactly from the raw vectors (memory-mapped: ~1.7 MB read per search). At 1M: 64 lists kept
#: 0.897 of the true top 10 in the visited lists, 128 0.946, 256 0.978; 192 lists + 500 re-scored
#: gave recall@10 0.967 vs exact at ~33 ms per search on a loaded machine (256: 0.978, ~44 ms).
IVFPQ_NPROBE = 192
IVFPQ_RERANK = 500


@dataclass
class VectorSet:
    """Vectors and their ids (chunk rowids), row-aligned."""

    vectors: np.ndarray  # (n, dim) float32, usually memory-mapped
    ids: np.ndarray  # (n,) int64
    #: Row order sorting ``ids`` (None while unknown; ids are appended in rowid order, so
    #: usually the identity, then not stored).
    _order: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)
    _sorted: bool | None = field(default=None, init=False, repr=False, compare=False)

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

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Row positions of the given ids (unknown ids left out), ascending: a binary search,
        not ``np.isin`` over every id (that costs tens of ms per call at 1M chunks)."""
        if self._sorted is None:
            self._sorted = bool(np.all(self.ids[1:] > self.ids[:-1]))
            if not self._sorted:
                self._order = np.argsort(self.ids, kind="stable")
        wanted = np.asarray(ids, dtype=np.int64)
        keys = self.ids if self._sorted else self.ids[self._order]
        pos = np.clip(np.searchsorted(keys, wanted), 0, max(0, len(keys) - 1))
        found = pos[keys[pos] == wanted] if len(keys) else pos[:0]
        return np.unique(found if self._sorted else self._order[found])


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


def choose_kind(n: int, exact_limit: int, hnsw_limit: int | None = None) -> VectorIndexKind:
    if n <= exact_limit:
        return "flat"
    return "hnsw" if hnsw_limit is None or n <= hnsw_limit else "ivfpq"


def build_index(vset: VectorSet, kind: VectorIndexKind) -> faiss.Index:
    dim = vset.vectors.shape[1]
    if kind == "ivfpq":
        return _build_ivfpq(vset)
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


def _pq_bytes(dim: int) -> int:
    """The largest code size <= IVFPQ_CODE_BYTES that divides the dimension."""
    return max(m for m in range(1, min(IVFPQ_CODE_BYTES, dim) + 1) if dim % m == 0)


def _ivf_shape(n: int) -> tuple[int, int]:
    """(inverted lists, bits per PQ sub-code) for n vectors."""
    nlist = max(1, min(int(math.sqrt(n)), n // 39))  # FAISS wants >= 39 training points per list
    # 8-bit codes need 256 x 39 training points; a small index (a test) gets fewer centroids
    nbits = 8 if n >= 256 * 39 else max(1, min(4, int(math.log2(max(2, n)))))
    return nlist, nbits


def update_index(base: faiss.Index, n: int, dropped: set[int], vectors: np.ndarray,
                 ids: np.ndarray) -> faiss.Index | None:
    """The next generation's IVF-PQ index from the previous one without retraining: a copy with
    ``dropped`` removed and the new vectors encoded (an ingest batch then costs its own vectors,
    not a rebuild of millions). None when ``base`` is not IVF-PQ or was trained for a size too
    far from ``n`` (lists at half or twice the size wanted, other code width): rebuild."""
    ivf = ivf_of(base)
    if not isinstance(ivf, faiss.IndexIVFPQ):
        return None
    nlist, nbits = _ivf_shape(n)
    if not (nlist / 2 <= ivf.nlist <= 2 * nlist) or ivf.pq.nbits != nbits:
        return None
    index = faiss.clone_index(base)
    if dropped:
        index.remove_ids(faiss.IDSelectorBatch(np.fromiter(dropped, np.int64, len(dropped))))
    for start in range(0, len(ids), 65_536):
        index.add_with_ids(np.ascontiguousarray(vectors[start:start + 65_536], dtype=np.float32),
                           np.ascontiguousarray(ids[start:start + 65_536], dtype=np.int64))
    return index if index.ntotal == n else None


def _build_ivfpq(vset: VectorSet) -> faiss.Index:
    """IVF (~sqrt(n) lists) + PQ codes, trained on a random sample. The index holds the codes
    and ids only, never the float vectors: searches re-score from ``vset``. sqrt(n), not the
    usual 4 sqrt(n): the coarse k-means and assigning every vector cost O(n x lists x dim);
    at 1M x 896-d it trains and encodes in ~3 min here (74 s of CPU)."""
    n, dim = vset.vectors.shape
    nlist, nbits = _ivf_shape(n)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFPQ(quantizer, dim, nlist, _pq_bytes(dim), nbits, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = 10  # 25 by default: the lists only need to be good, not converged
    index.cp.max_points_per_centroid = IVFPQ_TRAIN_PER_LIST
    index.pq.cp.max_points_per_centroid = IVFPQ_PQ_TRAIN_PER_CENTROID  # PQ training dominates the build
    sample = np.sort(np.random.default_rng(0).choice(n, min(n, IVFPQ_TRAIN_PER_LIST * nlist), replace=False))
    index.train(np.ascontiguousarray(vset.vectors[sample], dtype=np.float32))
    for start in range(0, n, 65_536):  # blocks: the writer's matrix may be memory-mapped
        index.add_with_ids(np.ascontiguousarray(vset.vectors[start:start + 65_536], dtype=np.float32),
                           np.ascontiguousarray(vset.ids[start:start + 65_536]))
    index.nprobe = IVFPQ_NPROBE
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


def search(index: faiss.Index, query: np.ndarray, k: int, allowed: np.ndarray | None = None,
           vset: VectorSet | None = None) -> list[tuple[int, float]]:
    """Top-k (id, score) for one query vector, optionally among allowed ids. IVF-PQ needs
    ``vset``: its candidates are re-scored exactly from the raw vectors."""
    if index.ntotal == 0 or k <= 0 or (allowed is not None and len(allowed) == 0):
        return []
    params = None
    selector = (faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
                if allowed is not None else None)
    ivf = ivf_of(index)
    if ivf is not None:
        if vset is None:
            raise ValueError("an IVF-PQ search needs the raw vectors to re-score its candidates")
        nprobe = IVFPQ_NPROBE
        if allowed is not None:  # a filter keeps a fraction of each list: visit more lists
            nprobe = int(min(ivf.nlist, math.ceil(nprobe * index.ntotal / max(1, len(allowed)))))
        params = faiss.SearchParametersIVF(sel=selector, nprobe=min(nprobe, ivf.nlist))
        depth = min(max(IVFPQ_RERANK, 4 * k), index.ntotal)
        _, ids = index.search(query.reshape(1, -1).astype(np.float32), depth, params=params)
        return exact_search(vset, query, k, ids[0][ids[0] >= 0])
    if is_hnsw(index):
        params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(HNSW_EF_SEARCH, 2 * k))
    elif selector is not None:
        params = faiss.SearchParameters(sel=selector)
    scores, ids = index.search(query.reshape(1, -1).astype(np.float32), min(k, index.ntotal), params=params)
    return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]


def exact_search(vset: VectorSet, query: np.ndarray, k: int,
                 allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
    """Brute force over the raw vectors (of the allowed ids only, if given)."""
    rows = np.arange(len(vset.ids)) if allowed is None else vset.rows(allowed)
    if len(rows) == 0 or k <= 0:
        return []
    scores = np.asarray(vset.vectors[rows] @ query.astype(np.float32))
    top = np.argsort(-scores, kind="stable")[:k]
    return [(int(vset.ids[rows[i]]), float(scores[i])) for i in top]


def is_hnsw(index: faiss.Index) -> bool:
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else index
    return isinstance(inner, faiss.IndexHNSW)


def ivf_of(index: faiss.Index) -> faiss.IndexIVF | None:
    """The IVF index inside ``index`` (the store's IVF-PQ kind), else None."""
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else index
    return inner if isinstance(inner, faiss.IndexIVF) else None
