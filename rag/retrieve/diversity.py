"""What keeps the passages shown varied and whole: at most a few per article, and
touching chunks of one article merged into one passage."""

from __future__ import annotations

import dataclasses

from rag.news import Hit
from rag.store.base import Reader as Snapshot


def cap_per_article(hits: list[Hit], k: int, cap: int | None) -> list[Hit]:
    out: list[Hit] = []
    per: dict[str, int] = {}
    for hit in hits:
        if cap is not None and per.get(hit.article_id, 0) >= cap:
            continue
        per[hit.article_id] = per.get(hit.article_id, 0) + 1
        out.append(hit)
        if len(out) == k:
            break
    return out


def merge_neighbours(snapshot: Snapshot, hits: list[Hit]) -> list[Hit]:
    """Hits of one article whose spans touch or overlap become one passage,
    placed where the better of them ranked."""
    out: list[Hit] = []
    for hit in hits:
        for i, kept in enumerate(out):
            if kept.article_id == hit.article_id and hit.start <= kept.end + 2 and kept.start <= hit.end + 2:
                start, end = min(kept.start, hit.start), max(kept.end, hit.end)
                (text,) = snapshot.catalog.spans([(hit.article_id, start, end)])
                ids = sorted({*kept.chunk_id.split("+"), hit.chunk_id}, key=_ordinal)
                out[i] = dataclasses.replace(kept, start=start, end=end, text=text, chunk_id="+".join(ids),
                                             similarity=max(kept.similarity or 0, hit.similarity or 0))
                break
        else:
            out.append(hit)
    return out


def _ordinal(chunk_id: str) -> int:
    return int(chunk_id.rsplit("#", 1)[-1])
