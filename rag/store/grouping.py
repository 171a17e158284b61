"""Keeping a generation's stories right (``rag.stories``) as articles come and go.

Called by the GenerationWriter before it publishes: articles without a signature (new ones, or
all of them in a catalog of an older schema) are signed and joined to the stories holding a copy
of them (merging those stories), in insertion order; a story that lost an article (deleted, or
updated: removed then added again) is split again into the groups its remaining copies still
form. A story's id is the article id of its earliest copy."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection

import numpy as np

from rag.store.base import StoryCatalog as Catalog
from rag.stories import StoryLSH, components, from_blob, signature, to_blob

log = logging.getLogger(__name__)

#: Articles whose texts are read at once to sign them.
SIGN_BATCH = 500


def regroup(catalog: Catalog, lsh: StoryLSH | None, base_generation: int | None, removed: Collection[str],
            touched: Collection[str]) -> StoryLSH | None:
    """Group the catalog's unsigned articles and split the ``touched`` stories (those that lost the
    ``removed`` articles). ``lsh`` is reused when it holds ``base_generation``'s articles, else it is
    rebuilt from the catalog's signatures (only when something is to be grouped: a delete needs none).
    Returns the LSH holding every article of the catalog, or None when there is none in step."""
    started = time.perf_counter()
    pending = catalog.unsigned()
    sigs: dict[str, np.ndarray] = {}
    for start in range(0, len(pending), SIGN_BATCH):  # a whole older index's texts are not held at once
        texts = catalog.texts(pending[start:start + SIGN_BATCH])
        batch = {article_id: signature(texts[article_id]) for article_id in pending[start:start + SIGN_BATCH]}
        catalog.put_signatures([(article_id, to_blob(sig)) for article_id, sig in batch.items()])
        sigs.update(batch)
    _split(catalog, touched, set(sigs))
    in_step = lsh is not None and lsh.generation is not None and lsh.generation == base_generation
    if lsh is not None and in_step:
        lsh.discard(removed)
        lsh.discard(sigs)  # an updated article comes back with a new text
    elif sigs:
        lsh = StoryLSH.build((i, blob) for i, blob in catalog.signatures() if i not in sigs)
    else:
        return None
    lsh.generation = None  # out of step until the generation is published
    joined = 0
    for article_id, sig in sigs.items():
        copies = lsh.copies_of(sig)
        lsh.add(article_id, sig)
        stories = set(catalog.stories_of(copies).values())
        if not stories:
            catalog.set_story(article_id, [article_id])
            continue
        order = catalog.rowids(stories)
        earliest = min(stories, key=lambda s: order.get(s, 1 << 62))
        catalog.set_story(earliest, [article_id], stories - {earliest})
        joined += 1
    if sigs or touched:
        log.info("stories: %d articles signed (%d copies of another), %d stories re-split, %.2fs",
                 len(sigs), joined, len(touched), time.perf_counter() - started)
    return lsh


def _split(catalog: Catalog, touched: Collection[str], pending: set[str]) -> None:
    """Re-split stories that lost an article: their remaining copies may no longer be connected."""
    members = catalog.story_members(touched)
    for story, ids in members.items():
        ids = [i for i in ids if i not in pending]
        if not ids:
            continue
        sigs = {i: from_blob(b) for i, b in catalog.signatures(ids)}
        for group in components(ids, sigs.__getitem__):
            if group[0] != story or len(group) < len(ids):
                catalog.set_story(group[0], group)
