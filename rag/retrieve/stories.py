"""One passage per story: syndicated copies of one agency text (rag.stories) would otherwise
fill every passage slot. The best-ranked copy stays; it carries the other copies' outlets."""

from __future__ import annotations

import dataclasses

from rag.news import Hit
from rag.store.generation import Snapshot


def one_copy_per_story(hits: list[Hit]) -> list[Hit]:
    """Drop passages of an article whose story an earlier (better ranked) article already
    stands for; passages of that article itself stay (the per-article cap applies to them)."""
    shown: dict[str, str] = {}
    out = []
    for hit in hits:
        story = hit.story_id or hit.article_id
        if shown.setdefault(story, hit.article_id) == hit.article_id:
            out.append(hit)
    return out


def with_copies(snapshot: Snapshot, hits: list[Hit]) -> list[Hit]:
    """Each hit with the number of copies of its story and the outlets (else titles) of the
    other copies, earliest first, its own outlet left out."""
    copies = snapshot.catalog.story_copies({h.story_id for h in hits if h.story_id})
    out = []
    for hit in hits:
        members = copies.get(hit.story_id or "", [])
        if len(members) < 2:
            out.append(hit)
            continue
        others = [m.name for m in members if m.id != hit.article_id and m.name != hit.source]
        out.append(dataclasses.replace(hit, copies=len(members), also_reported_by=tuple(dict.fromkeys(others))))
    return out
