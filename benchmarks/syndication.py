"""Syndicated copies of one story (issue #16): are they grouped, are unrelated articles kept apart,
what does grouping cost at ingest, and how many distinct stories reach the top 5.

Corpus (public data from the shared datasets folder): MultiHop-RAG (one document per evidence url:
title + its facts, news of 2023 in a few categories, several outlets covering the same events) and
10kGNAD (German derStandard articles, 9 categories). Each original gets, with some probability, 1-5
syndicated copies made programmatically from it: another headline and outlet, and at least one of a
byline/dateline ("By ... (AP) —"), the last paragraph cut (when it is at most a quarter of the text),
light edits (a few words replaced, a sentence dropped). The other originals are the hard negatives:
same category, often the same day or event (MultiHop covers one event by several outlets).

1. Grouping quality over the whole corpus, with ``rag.stories.group_texts`` (the rule an ingest
   applies article by article): pairwise precision and recall of "same story", and the wrongly
   grouped pairs of different originals of the same category.
2. A real index (default embedder) of a subset with copies: the grouping the catalog stores must
   equal (1) on that subset; the ingest time spent grouping, as a share of the whole ingest (same
   run), and ingest with grouping on vs off in interleaved rounds (ratio of medians).
3. Distinct stories in the top 5 of ``rag.answer``'s retrieval (``NewsIndex.retrieve``) for queries
   (MultiHop questions, 10kGNAD first sentences), with collapsing off (``group_stories=False``) and on.

    HF_HUB_OFFLINE=1 PYTHONPATH=$PWD .venv/bin/python benchmarks/syndication.py [--shared ../shared]
        [--copy-rate 0.4] [--index-originals 60] [--rounds 2] [--queries 100] [--seed 7]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import random
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from itertools import combinations
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, machine, machine_line  # noqa: E402

OUTLETS = ("Associated Press", "Reuters", "Daily Herald", "Morning Post", "Evening Standard", "Tribune",
           "Gazette", "Courier", "Chronicle", "Observer", "Kurier", "Presse", "Rundschau", "Anzeiger")
BYLINES = ("By Jane Miller (AP) — ", "(AP) — ", "WASHINGTON (Reuters) - ", "By Staff Writer\n\n", "Von Anna Huber — ",
           "WIEN (APA) — ", "NEW YORK — ")
SWAPS = {"said": "stated", "says": "states", "company": "firm", "announced": "unveiled", "also": "as well",
         "new": "fresh", "large": "big", "people": "persons", "according": "acccording", "million": "mln",
         "sagte": "erklärte", "Unternehmen": "Konzern", "neue": "frische", "auch": "ebenfalls", "Prozent": "%",
         "Regierung": "Bundesregierung", "jedoch": "aber", "wurde": "worden war"}


@dataclass(frozen=True)
class Doc:
    id: str
    title: str
    text: str
    source: str
    published_at: str | None
    category: str
    language: str
    origin: str  # the original's id: the story it belongs to

    def record(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "text": self.text, "source": self.source,
                "published_at": self.published_at, "language": self.language}


def multihop(shared: Path) -> tuple[list[Doc], list[str]]:
    folder = shared / "datasets" / "multihop-rag-500"
    truth = json.loads((folder / "ground_truth.json").read_text(encoding="utf-8"))
    queries = json.loads((folder / "queries.json").read_text(encoding="utf-8"))
    docs: dict[str, dict[str, Any]] = {}
    for gold in truth.values():
        for ev in gold["evidence_list"]:
            d = docs.setdefault(ev["url"], {"title": ev.get("title") or "", "source": ev.get("source") or "",
                                            "published_at": ev.get("published_at"),
                                            "category": ev.get("category") or "", "facts": []})
            if ev["fact"] not in d["facts"]:
                d["facts"].append(ev["fact"])
    out = [Doc("mh-" + hashlib.sha256(url.encode()).hexdigest()[:12], d["title"], "\n\n".join(d["facts"]),
               d["source"], d["published_at"], "en/" + d["category"], "en", "")
           for url, d in docs.items()]
    questions = [q["question"] for q in queries["queries"] if q.get("question_type") != "null_query"]
    return [replace(d, origin=d.id) for d in out], questions


def gnad(shared: Path) -> list[Doc]:
    out = []
    with (shared / "datasets" / "10kgnad" / "test.csv").open(encoding="utf-8") as fh:
        for n, (category, text) in enumerate(csv.reader(fh, delimiter=";", quotechar="'")):
            sentences = re.split(r"(?<=[.!?])\s+", text.strip())
            title, body = sentences[0], sentences[1:] or sentences
            # derStandard rows are one line: paragraphs of three sentences, as a web page shows them
            paragraphs = [" ".join(body[i:i + 3]) for i in range(0, len(body), 3)]
            doc_id = f"gnad-{n:04d}"
            out.append(Doc(doc_id, title, "\n\n".join(paragraphs), "derStandard", None, "de/" + category, "de",
                           doc_id))
    return out


def syndicate(doc: Doc, n: int, rng: random.Random) -> Doc:
    """One copy: another outlet and headline, and at least one change of the text."""
    text = doc.text
    paragraphs = text.split("\n\n")
    ops = [op for op in ("byline", "truncate", "edit") if rng.random() < 0.5] or [rng.choice(("byline", "edit"))]
    if "truncate" in ops and len(paragraphs) > 1 and len(paragraphs[-1]) <= 0.25 * len(text):
        paragraphs = paragraphs[:-1]
    if "edit" in ops:
        changed = 0
        for i, paragraph in enumerate(paragraphs):  # up to three words replaced, paragraph structure kept
            for word, other in SWAPS.items():
                pattern = rf"\b{re.escape(word)}\b"
                if changed < 3 and re.search(pattern, paragraph) and rng.random() < 0.7:
                    paragraph = re.sub(pattern, other, paragraph, count=1)
                    changed += 1
            paragraphs[i] = paragraph
        last = re.split(r"(?<=[.!?])\s+", paragraphs[-1])
        if sum(len(p) for p in paragraphs) > 1500 and len(last) > 1:
            last.pop(rng.randrange(len(last)))  # one sentence dropped from a long text
            paragraphs[-1] = " ".join(last)
    text = "\n\n".join(paragraphs)
    if "byline" in ops or text == doc.text:
        text = rng.choice(BYLINES) + text
    outlet = OUTLETS[(int(hashlib.sha256(doc.id.encode()).hexdigest(), 16) + n) % len(OUTLETS)]
    title = rng.choice(("Report: ", "UPDATE: ", "", "Exclusive: ")) + doc.title.rstrip(".") \
        + rng.choice(("", " – update", "!"))
    return replace(doc, id=f"{doc.id}-copy{n}", title=title, text=text, source=outlet)


def corpus(shared: Path, copy_rate: float, seed: int) -> tuple[list[Doc], list[str]]:
    rng = random.Random(seed)
    english, questions = multihop(shared)
    originals, seen = [], set()
    for doc in english + gnad(shared):
        # one text under two ids (10kGNAD's "Der Volltext ... steht nicht mehr zur Verfügung"
        # placeholders) is refused at ingest as a duplicate: not a story of its own here
        if doc.text not in seen:
            seen.add(doc.text)
            originals.append(doc)
    docs = list(originals) + quoting(originals, rng)
    for doc in originals:
        if rng.random() < copy_rate:
            for n in range(1, rng.randint(1, 5) + 1):
                copy = syndicate(doc, n, rng)
                while copy.text in seen:  # byte-identical texts are refused at ingest: tell it apart
                    copy = replace(copy, text=f"({copy.source}) — {copy.text}")
                seen.add(copy.text)
                docs.append(copy)
    rng.shuffle(docs)  # copies arrive before or after their original
    return docs, questions


def quoting(originals: list[Doc], rng: random.Random) -> list[Doc]:
    """Hard negatives of another kind: a short article of its own that quotes three sentences of a
    long one of the same category (one in ten long German articles). Its own story, not a copy."""
    by_category: dict[str, list[Doc]] = defaultdict(list)
    for doc in originals:
        by_category[doc.category].append(doc)
    out, used = [], set()
    for doc in originals:
        sentences = re.split(r"(?<=[.!?])\s+", doc.text)
        if doc.language != "de" or len(sentences) < 12 or rng.random() >= 0.1:
            continue
        # its own words: the opening of another article of the section (at most a third of that one)
        others = [d for d in by_category[doc.category]
                  if d is not doc and d.text.count(". ") >= 9 and d.id not in used]
        if not others:
            continue
        other = rng.choice(others)
        used.add(other.id)  # each opening once: two articles sharing it would share half their text
        own = re.split(r"(?<=[.!?])\s+", other.text)[:3]
        start = rng.randrange(2, len(sentences) - 3)
        text = " ".join(own[:2] + ["Dazu heißt es:"] + sentences[start:start + 3] + own[2:])
        quote_id = f"{doc.id}-quoted"
        out.append(replace(doc, id=quote_id, title=f"Kommentar: {other.title}", text=text, source="Blog",
                           origin=quote_id))
    return out


def pairwise(groups: list[Any], docs: list[Doc]) -> dict[str, float]:
    """Pairwise precision/recall of predicted groups against the originals."""
    by_pred: dict[Any, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        by_pred[g].append(i)
    predicted = {(a, b) for members in by_pred.values() for a, b in combinations(sorted(members), 2)}
    by_true: dict[str, list[int]] = defaultdict(list)
    for i, d in enumerate(docs):
        by_true[d.origin].append(i)
    true = {(a, b) for members in by_true.values() for a, b in combinations(sorted(members), 2)}
    tp = len(predicted & true)
    wrong = predicted - true
    same_category = sum(1 for a, b in wrong if docs[a].category == docs[b].category)
    return {"true_pairs": len(true), "predicted_pairs": len(predicted), "correct": tp,
            "precision": tp / len(predicted) if predicted else 1.0, "recall": tp / len(true) if true else 1.0,
            "wrong_same_category": same_category, "wrong_pairs": len(wrong)}


def margins(docs: list[Doc]) -> dict[str, float]:
    """How far from the SAME_STORY bar: each copy's similarity to its original, and each story's most
    similar other story (originals and quoting articles, all pairs)."""
    import numpy as np

    from rag.stories import NUM_PERM, signature

    sigs = {d.id: signature(d.text) for d in docs}
    copies = np.array([float(np.count_nonzero(sigs[d.id] == sigs[d.origin])) / NUM_PERM
                       for d in docs if d.origin != d.id])
    matrix = np.stack([sigs[d.id] for d in docs if d.origin == d.id])
    nearest = np.zeros(len(matrix))
    for i in range(len(matrix)):
        same = np.count_nonzero(matrix == matrix[i], axis=1) / NUM_PERM
        same[i] = 0.0
        nearest[i] = same.max()
    return {"copy_min": float(copies.min()), "copy_p1": float(np.percentile(copies, 1)),
            "copy_median": float(np.median(copies)), "other_max": float(nearest.max()),
            "other_p99": float(np.percentile(nearest, 99))}


def quality(docs: list[Doc]) -> dict[str, float]:
    from rag.stories import group_texts

    start, cpu = time.perf_counter(), time.process_time()
    groups = group_texts([d.text for d in docs])
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return pairwise(groups, docs) | {"articles": len(docs), "seconds": seconds, "cpu_seconds": cpu}


def subset(docs: list[Doc], originals: int, seed: int) -> list[Doc]:
    """``originals`` stories (half English, half German, those with copies first) and all their copies."""
    rng = random.Random(seed)
    copied = {d.origin for d in docs if d.origin != d.id}
    chosen: set[str] = set()
    for prefix in ("mh-", "gnad-"):
        ids = sorted({d.origin for d in docs if d.origin.startswith(prefix)}, key=lambda o: (o not in copied, o))
        head = ids[: len(ids) // 2]
        rng.shuffle(head)
        chosen.update(head[: originals // 2])
    return [d for d in docs if d.origin in chosen]


def ingest(docs: list[Doc], folder: Path, grouping: bool) -> tuple[float, float]:
    """Ingest into a new index; (whole seconds, seconds spent grouping). ``grouping=False`` skips the
    grouping step (what an ingest cost before stories), by replacing it for this call only."""
    import rag
    import rag.store.generation as generation
    from rag.stories import StoryLSH
    from rag.settings import Settings

    real = generation.regroup
    spent = [0.0]

    def timed(*args: Any) -> Any:
        start = time.perf_counter()
        try:
            return real(*args) if grouping else StoryLSH()
        finally:
            spent[0] += time.perf_counter() - start

    generation.regroup = timed
    try:
        settings = Settings.from_env(environ={}, dotenv=None, index_dir=folder, progress=False)
        start = time.perf_counter()
        report = rag.open_index(folder, settings).add_articles(d.record() for d in docs)
        seconds = time.perf_counter() - start
    finally:
        generation.regroup = real
    if not report.ok or len(report.added) != len(docs):
        raise SystemExit(f"ingest failed: {report.counts()}")
    return seconds, spent[0]


def catalog_groups(folder: Path, docs: list[Doc]) -> list[str]:
    import sqlite3

    manifest = json.loads((folder / "manifest.json").read_text())
    db = sqlite3.connect(folder / manifest["data_dir"] / "news.sqlite")
    stories = dict(db.execute("SELECT id, story_id FROM articles").fetchall())
    db.close()
    return [stories[d.id] for d in docs]


def top5(folder: Path, docs: list[Doc], questions: list[str], n_queries: int) -> dict[str, float]:
    """Distinct stories (true originals) among the 5 passages of NewsIndex.retrieve, collapsing off and on."""
    import rag
    from rag.settings import Settings

    origin = {d.id: d.origin for d in docs}
    present = {d.origin for d in docs}
    copied = {d.origin for d in docs if d.origin != d.id}
    english = [d for d in docs if d.origin == d.id and d.language == "en"]
    words = {d.id: set(re.findall(r"\w{5,}", (d.title + " " + d.text).lower())) for d in english}
    queries = []
    for q in questions:  # MultiHop questions about an article of the subset (its title's words in the question)
        qwords = set(re.findall(r"\w{5,}", q.lower()))
        if any(len(qwords & w) >= 3 for w in words.values()):
            queries.append(q)
    queries = queries[: n_queries // 2]
    queries += [d.title for d in docs if d.origin == d.id and d.language == "de" and d.origin in copied][
        : n_queries - len(queries)]
    index = rag.open_index(folder, Settings.from_env(environ={}, dotenv=None, index_dir=folder, progress=False),
                           create=False)
    out: dict[str, float] = {"queries": len(queries), "stories": len(present)}
    for label, grouping in (("off", False), ("on", True)):
        distinct, articles, crowded, labelled = [], [], 0, 0
        for q in queries:
            hits = index.retrieve(q, 5, group_stories=grouping).hits
            stories = [origin[h.article_id] for h in hits]
            distinct.append(len(set(stories)))
            articles.append(len({h.article_id for h in hits}))
            crowded += len({h.article_id for h in hits}) > len(set(stories))  # two copies of one story shown
            labelled += sum(1 for h in hits if h.also_reported_by)
        out[f"distinct_{label}"] = statistics.fmean(distinct)
        out[f"articles_{label}"] = statistics.fmean(articles)
        out[f"all5_distinct_{label}"] = sum(d == 5 for d in distinct) / len(distinct)
        out[f"crowded_{label}"] = crowded
        out[f"labelled_{label}"] = labelled
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=SHARED, help="the folder holding datasets/ (default ../shared)")
    ap.add_argument("--copy-rate", type=float, default=0.4, help="share of originals given 1-5 copies")
    ap.add_argument("--index-originals", type=int, default=60, help="stories in the real index (sections 2, 3)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved ingest rounds, grouping on and off")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    from rag.stories import SAME_STORY
    docs, questions = corpus(args.shared, args.copy_rate, args.seed)
    q = quality(docs)
    n_orig = sum(d.origin == d.id for d in docs)
    n_quoting = sum(d.id.endswith("-quoted") for d in docs)
    n_english = sum(d.origin == d.id and d.language == "en" for d in docs)
    print(f"Corpus: {n_orig - n_quoting} originals ({n_english} MultiHop-RAG, "
          f"{sum(d.origin == d.id and d.language == 'de' for d in docs) - n_quoting} 10kGNAD), "
          f"{n_quoting} short articles quoting three sentences of another, {len(docs) - n_orig} syndicated copies, "
          f"{len(docs)} articles")
    print("\n1. Grouping (rag.stories.group_texts, whole corpus)")
    print("| articles | true pairs | grouped pairs | precision | recall | wrong (same category) | seconds (CPU) |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {q['articles']} | {q['true_pairs']} | {q['predicted_pairs']} | {q['precision']:.4f} | {q['recall']:.4f} "
          f"| {q['wrong_pairs']} ({q['wrong_same_category']}) | {q['seconds']:.1f} ({q['cpu_seconds']:.1f}) |")

    m = margins(docs)
    print(f"\nEstimated Jaccard similarity (the bar is {SAME_STORY}): a copy to its original min {m['copy_min']:.2f}, "
          f"1st percentile {m['copy_p1']:.2f}, median {m['copy_median']:.2f}; a story to its most similar other "
          f"story max {m['other_max']:.2f}, 99th percentile {m['other_p99']:.2f}")

    part = subset(docs, args.index_originals, args.seed)
    print(f"\n2. Real index (default embedder): {len(part)} articles, "
          f"{sum(d.origin == d.id for d in part)} stories")
    from rag.embed import load_embedder
    from rag.settings import Settings

    load_embedder(Settings.from_env(environ={}, dotenv=None, progress=False))  # loaded once, outside the timings
    on, off, shares = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        kept = None
        for r in range(args.rounds):
            for grouping in ((True, False) if r % 2 == 0 else (False, True)):
                folder = Path(tmp) / f"r{r}-{grouping}"
                seconds, grouping_seconds = ingest(part, folder, grouping)
                (on if grouping else off).append(seconds)
                if grouping:
                    shares.append(grouping_seconds / seconds)
                    kept = kept or folder
        assert kept is not None
        stored = catalog_groups(kept, part)
        same = stored_partition(stored) == stored_partition(group_texts_of(part))
        pw = pairwise(stored, part)
        print("| ingest grouping on (median s) | off (median s) | ratio on/off | grouping share of ingest | "
              "catalog = group_texts | precision | recall |")
        print("|---|---|---|---|---|---|---|")
        print(f"| {statistics.median(on):.1f} | {statistics.median(off):.1f} | "
              f"{statistics.median(on) / statistics.median(off):.3f} | {100 * statistics.fmean(shares):.1f}% | "
              f"{same} | {pw['precision']:.4f} | {pw['recall']:.4f} |")
        t = top5(kept, part, questions, args.queries)
    print(f"\n3. Top 5 of NewsIndex.retrieve, {t['queries']} queries (MultiHop questions, 10kGNAD headlines)")
    print("| collapsing | distinct stories in top 5 (mean) | distinct articles | queries with 5 stories | "
          "queries where copies took slots | passages naming other copies |")
    print("|---|---|---|---|---|---|")
    for label in ("off", "on"):
        print(f"| {label} | {t[f'distinct_{label}']:.2f} | {t[f'articles_{label}']:.2f} | "
              f"{100 * t[f'all5_distinct_{label}']:.0f}% | "
              f"{t[f'crowded_{label}']} | {t[f'labelled_{label}']} |")
    print("\n" + machine_line(machine()))


def group_texts_of(docs: list[Doc]) -> list[int]:
    from rag.stories import group_texts

    return group_texts([d.text for d in docs])


def stored_partition(groups: list[Any]) -> set[frozenset[int]]:
    members: dict[Any, set[int]] = defaultdict(set)
    for i, g in enumerate(groups):
        members[g].add(i)
    return {frozenset(m) for m in members.values()}


if __name__ == "__main__":
    main()
