"""Does a source support a claim? Calibrates the rule of rag/cite.py on labelled pairs.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/support_check.py

XQuAD-dev has every paragraph in English and German, sentence by sentence. An
English sentence is a claim; a German paragraph is its source:

- supported:  the claim against the German paragraph it was translated from;
- absent:     the claim against that paragraph without its own sentence (same
              topic, same names, but the statement itself is missing);
- swapped:    the claim with one of its names replaced by a name from another
              article, against the full paragraph (what a model that mixes up
              entities writes: "Facebook bought the Deutsche Bank").

Only paragraphs whose two versions split into the same number of sentences are
used. The decision is the check's: some sentence of the source (or it and the
next) supports the claim, and every number of the claim is in the source.
Prints precision / recall of "supported" for each rule, the one in use first."""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SHARED, machine, machine_line  # noqa: E402


def pairs(shared: Path) -> list[tuple[list[str], list[str]]]:
    from rag.chunk import split_sentences

    folder = shared / "datasets" / "xquad-dev"
    en = json.loads((folder / "xquad.en.json").read_text(encoding="utf-8"))
    de = json.loads((folder / "xquad.de.json").read_text(encoding="utf-8"))
    out = []
    for a_en, a_de in zip(en["data"], de["data"]):
        for p_en, p_de in zip(a_en["paragraphs"], a_de["paragraphs"]):
            s_en = [p_en["context"][s.start:s.end] for s in split_sentences(p_en["context"])]
            s_de = [p_de["context"][s.start:s.end] for s in split_sentences(p_de["context"])]
            if len(s_en) == len(s_de) and len(s_en) >= 2:
                out.append((s_en, s_de))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-translate", dest="translate", action="store_false",
                        help="match names by spelling only (no embedding of single words)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(REPO))
    import numpy as np

    import rag
    from rag import cite
    from rag.embed import load_embedder

    print(machine_line(machine()))
    rng = random.Random(args.seed)
    embedder = load_embedder(rag.Settings.from_env(progress=False))
    paragraphs = pairs(args.shared)
    all_names = sorted({n for s_en, _ in paragraphs for s in s_en for n in re.findall(r"\b[A-Z][a-z]{3,}\b", s[1:])})
    cases: list[tuple[str, str, list[str]]] = []  # (kind, claim, source sentences)
    for s_en, s_de in paragraphs:
        for i, claim in enumerate(s_en):
            if len(claim.split()) < 5:
                continue
            cases.append(("supported", claim, s_de))
            cases.append(("absent", claim, s_de[:i] + s_de[i + 1:]))
            names = re.findall(r"\b[A-Z][a-z]{3,}\b", claim[1:])
            if names:
                old = rng.choice(names)
                new = rng.choice([n for n in all_names if n not in " ".join(s_en)])
                cases.append(("swapped", claim.replace(old, new), s_de))
    claims = sorted({c for _, c, _ in cases})
    sentences = sorted({s for _, _, src in cases for s in src})
    vec_c = dict(zip(claims, embedder.embed_documents(claims)))
    vec_s = dict(zip(sentences, embedder.embed_documents(sentences)))
    words: dict[str, np.ndarray] = {}

    def embed(texts: list[str]) -> np.ndarray:  # words, cached across cases
        new = [t for t in texts if t not in words]
        if new:
            words.update(zip(new, embedder.embed_documents(new)))
        return np.vstack([words[t] for t in texts])

    features = []
    for kind, claim, source in cases:
        sims = np.array([[float(vec_c[claim] @ vec_s[s]) for s in source]])
        following = [j + 1 if j + 1 < len(source) else None for j in range(len(source))]
        matches = cite.match_matrix([claim], source, sims, following, [0] * len(source),
                                    embed if args.translate else None)[0]
        numbers_ok = cite._numbers(claim) <= cite._numbers(" ".join(source))
        features.append((kind, matches, numbers_ok))

    def evaluate(rule: Callable[[cite.Match], bool]) -> dict[str, float]:
        decided = {"supported": [], "absent": [], "swapped": []}
        for kind, matches, numbers_ok in features:
            decided[kind].append(numbers_ok and any(rule(m) for m in matches))
        tp = sum(decided["supported"])
        fp = sum(decided["absent"]) + sum(decided["swapped"])
        return {"recall": tp / len(decided["supported"]), "absent accepted": float(np.mean(decided["absent"])),
                "swapped accepted": float(np.mean(decided["swapped"])), "precision": tp / max(1, tp + fp)}

    counts = {k: sum(1 for f in features if f[0] == k) for k in ("supported", "absent", "swapped")}
    print(f"{len(paragraphs)} aligned paragraphs; claims: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    rules: list[tuple[str, Callable[[cite.Match], bool]]] = [
        (f"in use: lexical>={cite.LEXICAL_SUPPORT} or cos>={cite.SEMANTIC_SUPPORT} & all names or "
         f"cos>={cite.SEMANTIC_SUPPORT_ONE_NAME_MISSING} & 1 missing (unnamed: cos>={cite.SEMANTIC_SUPPORT_UNNAMED})",
         lambda m: m.supports),
        ("before: cos>=0.75 or lexical>=0.6", lambda m: m.semantic >= 0.75 or m.lexical >= 0.6),
    ]
    for cos in (0.70, 0.75, 0.80, 0.85):
        for names in (0.5, 0.67, 1.0):
            rules.append((f"lexical>=0.6 or cos>={cos} & names>={names}",
                          lambda m, c=cos, n=names: m.lexical >= 0.6 or (m.semantic >= c and m.names >= n)))
    for cos in (0.75, 0.80, 0.85):
        rules.append((f"lexical>=0.6 or cos>={cos}", lambda m, c=cos: m.lexical >= 0.6 or m.semantic >= c))
    for one in (0.80, 0.85, 0.90):
        for unnamed in (0.75, 0.80):
            rules.append((f"lexical>=0.6 or cos>=0.75 & all names or cos>={one} & 1 missing (unnamed cos>={unnamed})",
                          lambda m, o=one, u=unnamed: m.lexical >= 0.6 or (
                              m.semantic >= u if not m.named else (m.semantic >= 0.75 and m.missing == 0) or (
                                  m.semantic >= o and m.missing == 1 and m.names >= 0.5))))
    print(f"{'rule':86} {'recall':>7} {'absent ok':>9} {'swapped ok':>10} {'precision':>9}")
    for label, rule in rules:
        r = evaluate(rule)
        print(f"{label:86} {r['recall']:7.3f} {r['absent accepted']:9.3f} {r['swapped accepted']:10.3f} "
              f"{r['precision']:9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
