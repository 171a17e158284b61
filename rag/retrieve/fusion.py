"""Weighted reciprocal rank fusion of the dense and the BM25 ranking, fair across languages."""

from __future__ import annotations

#: RRF's constant: 1/(60 + rank), as in Cormack et al. (2009).
RRF_K = 60


def fuse(dense: list[tuple[int, float]], sparse: list[tuple[int, float]], languages: dict[int, str],
         query_language: str | None, sparse_weight: float) -> list[tuple[int, float]]:
    """Reciprocal rank fusion, fair across languages.

    Plain RRF adds 1/(60 + rank) from each ranking. BM25 cannot match a
    question against text in another language, so for such passages the
    dense rank stands in for the missing BM25 rank; otherwise every passage
    in the question's language would outrank better ones in other languages.
    On a one-language corpus this is exactly RRF."""
    dense_rank = {r: i for i, (r, _) in enumerate(dense)}
    sparse_rank = {r: i for i, (r, _) in enumerate(sparse)}
    scores: dict[int, float] = {}
    for rowid in dense_rank.keys() | sparse_rank.keys():
        score = 1.0 / (RRF_K + dense_rank[rowid] + 1) if rowid in dense_rank else 0.0
        same = query_language is None or languages.get(rowid) == query_language
        if same and rowid in sparse_rank:
            score += sparse_weight / (RRF_K + sparse_rank[rowid] + 1)
        elif not same and rowid in dense_rank:
            score += sparse_weight / (RRF_K + dense_rank[rowid] + 1)
        scores[rowid] = score
    return sorted(scores.items(), key=lambda x: (-x[1], x[0]))
