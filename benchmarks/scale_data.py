"""Real-distribution test vectors for benchmarks/scale.py (not a benchmark itself).

A million real passages cannot be embedded here in minutes (~50 passages/s), so the vectors are
made from real ones: ``--real`` passages of 10kGNAD (German news, 120-word windows) are embedded
with the real model, and each synthetic vector is a random convex mix of 3 of them (Dirichlet
weights) plus noise shaped like the real vectors' spread (their principal components), normalised.
The cloud keeps the real embeddings' anisotropy and neighbourhood structure, unlike an isotropic
Gaussian; a query is a real question embedded with ``embed_query``. The embeddings of the real
passages are cached in the work folder (a re-run reuses them)."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import numpy as np

from common import load_xquad

#: Mixing weights ~ Dirichlet(ALPHA) (mostly one dominant parent) and noise relative to the real
#: spread, chosen so that over 2,000 real 10kGNAD passages (e5+USE) the synthetic cloud matches
#: the real one: median pairwise cosine 0.670 vs 0.676, nearest neighbour among 1,000 0.81 vs
#: 0.84, best cosine of a real question among 1,000 0.66 vs 0.68.
NOISE = 0.6
ALPHA = 0.3
MIX = 3
WINDOW_WORDS = 120


def passages(shared: Path, limit: int) -> list[str]:
    """120-word windows of the 10kGNAD test articles, in file order."""
    with (shared / "datasets" / "10kgnad" / "test.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, delimiter=";", quotechar="'"))
    out: list[str] = []
    for _, text in rows:
        words = text.split()
        out += [" ".join(words[i:i + WINDOW_WORDS]) for i in range(0, len(words), WINDOW_WORDS)
                if len(words[i:i + WINDOW_WORDS]) >= 30]
        if len(out) >= limit:
            break
    return out[:limit]


def questions(shared: Path) -> list[str]:
    """Real questions: XQuAD's English ones (asked of German news-like text in this project)."""
    _, qs, _ = load_xquad(shared)
    return qs


def real_vectors(embedder: Any, model_id: str, shared: Path, limit: int, cache: Path) -> np.ndarray:
    """The embeddings of ``limit`` real passages (cached by model and count)."""
    name = re.sub(r"[^\w.-]+", "_", model_id)
    path = cache / f"real-{name}-{embedder.dim}-{limit}.npy"
    if path.exists():
        return np.load(path)
    texts = passages(shared, limit)
    vectors = np.concatenate([embedder.embed_documents(texts[i:i + 64]) for i in range(0, len(texts), 64)])
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors.astype(np.float32))
    return vectors.astype(np.float32)


class RealLike:
    """Draws vectors around the real ones (see the module docstring); deterministic per seed."""

    def __init__(self, real: np.ndarray) -> None:
        self.real = real.astype(np.float32)
        centred = self.real - self.real.mean(axis=0)
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        # noise ~ N(0, covariance of the real vectors), scaled by NOISE
        self.shape = (s[:, None] * vt / np.sqrt(len(real))).astype(np.float32)

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        parents = rng.integers(0, len(self.real), size=(n, MIX))
        weights = rng.dirichlet(np.full(MIX, ALPHA), size=n).astype(np.float32)
        v = sum(weights[:, j:j + 1] * self.real[parents[:, j]] for j in range(MIX))
        v += NOISE * (rng.standard_normal((n, len(self.shape)), dtype=np.float32) @ self.shape)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def matrix(self, n: int, seed: int, block: int = 65_536) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return np.concatenate([self.draw(min(block, n - i), rng) for i in range(0, n, block)])
