"""Follow-up detection: precision, recall and F1 of ``rag.followup.is_follow_up`` against the
regex ``standalone_query`` used before, on the labelled pairs in tests/data/followups.jsonl.

    PYTHONPATH=. .venv/bin/python benchmarks/followup.py [--errors dev|test]

A line is {"previous", "question", "follow_up", "lang", "source", "split"}. Negatives are real
standalone questions (MultiHop-RAG, XQuAD en/de, RGB; ../shared/datasets) each paired with a
question from the same set, plus the tram question of the UI issue; positives are follow-ups
written for this benchmark. Rules were tuned on "dev"; "test" is held out.

    PYTHONPATH=. .venv/bin/python benchmarks/followup.py --sample-negatives > /tmp/negatives.jsonl

re-draws the sampled negatives (seeded; it prints only those lines: merge them with the
hand-written ones by hand).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SHARED  # noqa: E402

DATA = REPO / "tests" / "data" / "followups.jsonl"
DATASETS = SHARED / "datasets"

# The rule rag/answer.py used until this benchmark (kept here for the comparison): an opener
# or any pronoun/demonstrative anywhere, German articles included.
OLD_FOLLOW_UP = re.compile(
    r"^(and|but|also|what about|how about|und|aber|auch|was ist mit|wie steht es mit)\b|"
    r"\b(it|its|they|them|their|he|she|his|her|this|that|those|these|there|es|sie|ihr|ihre|er|sein|seine|"
    r"dies|diese[rsnm]?|das|dort|dem|den)\b", re.I)


def old_rule(question: str, previous: str | None) -> bool:
    return bool(previous) and bool(OLD_FOLLOW_UP.search(question))


def new_rule(question: str, previous: str | None) -> bool:
    from rag.followup import is_follow_up

    return is_follow_up(question, previous).follow_up


def load(path: Path = DATA) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def scores(cases: Iterable[dict[str, Any]], rule: Callable[[str, str | None], bool]) -> dict[str, float]:
    tp = fp = fn = tn = 0
    for case in cases:
        said, truth = rule(case["question"], case["previous"]), case["follow_up"]
        tp += said and truth
        fp += said and not truth
        fn += truth and not said
        tn += not said and not truth
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def split_of(key: str) -> str:
    """Stable 60/40 dev/test split by a hash of the key (the same XQuAD id in both languages
    lands on the same side)."""
    return "test" if int(hashlib.sha1(key.encode()).hexdigest(), 16) % 10 < 4 else "dev"


def _xquad(lang: str) -> list[tuple[str, str, str]]:
    """(article title, id, question) in file order."""
    data = json.loads((DATASETS / "xquad-dev" / f"xquad.{lang}.json").read_text(encoding="utf-8"))["data"]
    return [(str(a.get("title", i)), q["id"], q["question"].strip())
            for i, a in enumerate(data) for p in a["paragraphs"] for q in p["qas"]]


def _stratified(rng: random.Random, items: list[Any], text: Callable[[Any], str], n: int) -> list[Any]:
    """n items, half of them (where there are enough) ones the old regex fires on: the hard half."""
    hard = [x for x in items if OLD_FOLLOW_UP.search(text(x))]
    easy = [x for x in items if not OLD_FOLLOW_UP.search(text(x))]
    take_hard = min(len(hard), n // 2)
    return rng.sample(hard, take_hard) + rng.sample(easy, min(len(easy), n - take_hard))


def sample_negatives(seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []

    def add(previous: str, question: str, lang: str, source: str, key: str) -> None:
        out.append({"previous": previous, "question": question, "follow_up": False, "lang": lang,
                    "source": source, "split": split_of(key)})

    # XQuAD: the previous question is the one before it on the same Wikipedia article.
    en, de = _xquad("en"), _xquad("de")
    de_by_id = {qid: (title, i) for i, (title, qid, _) in enumerate(de)}
    picked = _stratified(rng, list(range(1, len(en))), lambda i: en[i][2] + " " + de[i][2], 130)
    for i in picked:
        if en[i - 1][0] != en[i][0]:
            continue  # first question of an article: no same-article previous question
        add(en[i - 1][2], en[i][2], "en", f"xquad-dev/xquad.en.json#{en[i][1]}", en[i][1])
        _, j = de_by_id[en[i][1]]
        add(de[j - 1][2], de[j][2], "de", f"xquad-dev/xquad.de.json#{de[j][1]}", de[j][1])
    # MultiHop-RAG: the previous question is the one of the set sharing the most content words.
    queries = json.loads((DATASETS / "multihop-rag-500" / "queries.json").read_text(encoding="utf-8"))["queries"]

    def words(text: str) -> set[str]:
        return {w for w in re.findall(r"\w+", text.lower()) if len(w) > 3}

    bags = [words(q["question"]) for q in queries]
    for i in _stratified(rng, list(range(len(queries))), lambda i: queries[i]["question"], 100):
        j = max((j for j in range(len(queries)) if j != i), key=lambda j: len(bags[i] & bags[j]))
        add(queries[j]["question"], queries[i]["question"], "en",
            f"multihop-rag-500/queries.json#{queries[i]['id']}", f"mh{queries[i]['id']}")
    # RGB: grouped by topic in file order; the previous question is the one before.
    rgb = [json.loads(line) for line in (DATASETS / "rgb" / "en_fact.json").read_text().splitlines() if line]
    for i in sorted(rng.sample(range(1, len(rgb)), 60)):
        add(rgb[i - 1]["query"], rgb[i]["query"], "en", f"rgb/en_fact.json#{rgb[i]['id']}", f"rgb{rgb[i]['id']}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--errors", choices=("dev", "test"), help="also list the new rule's mistakes on a split")
    parser.add_argument("--sample-negatives", action="store_true", help="print freshly sampled negatives")
    args = parser.parse_args()
    if args.sample_negatives:
        for line in sample_negatives():
            print(json.dumps(line, ensure_ascii=False))
        return
    cases = load()
    print(f"{DATA.relative_to(REPO)}: {len(cases)} pairs, "
          f"{sum(c['follow_up'] for c in cases)} follow-ups, {sum(not c['follow_up'] for c in cases)} standalone")
    print("| split | lang | n (follow-up/standalone) | rule | precision | recall | F1 | FP | FN |")
    print("|---|---|---|---|---|---|---|---|---|")
    for split in ("dev", "test"):
        for lang in ("en", "de", "all"):
            part = [c for c in cases if c["split"] == split and lang in ("all", c["lang"])]
            pos = sum(c["follow_up"] for c in part)
            for name, rule in (("old regex", old_rule), ("new rules", new_rule)):
                s = scores(part, rule)
                print(f"| {split} | {lang} | {len(part)} ({pos}/{len(part) - pos}) | {name} | {s['precision']:.3f} "
                      f"| {s['recall']:.3f} | {s['f1']:.3f} | {s['fp']} | {s['fn']} |")
    start = time.perf_counter()
    for case in cases:
        new_rule(case["question"], case["previous"])
    print(f"new rules: {1e6 * (time.perf_counter() - start) / len(cases):.0f} us per question")
    if args.errors:
        from rag.followup import is_follow_up

        for case in cases:
            if case["split"] == args.errors:
                verdict = is_follow_up(case["question"], case["previous"])
                if verdict.follow_up != case["follow_up"]:
                    kind = "FP" if verdict.follow_up else "FN"
                    print(f"{kind} [{case['lang']}] {case['question']!r} (after {case['previous']!r}): "
                          f"{verdict.reason}")


if __name__ == "__main__":
    main()
