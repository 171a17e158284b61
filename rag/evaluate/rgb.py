"""RGB (Chen et al. 2024), English counterfactual split ``en_fact.json``:
does retrieval surface a passage with the true answer among near-identical
counterfactual copies, and does the answer repeat the truth or the fake?

Corpus: every positive, negative and positive_wrong passage of every query,
identical texts once (ids name the first query and kind that had the text;
``occurrences`` keeps all of them)."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import rag
from rag.evaluate.base import Adapter, RunResult, RunSpec, answer_body, top_articles
from rag.evaluate.errors import DatasetFormatError
from rag.evaluate.metrics import contains_all, contains_answer, hits_at_k, mean
from rag.ingest.clean import clean_text

KINDS = ("positive", "negative", "positive_wrong")
K = 5


@dataclass(frozen=True)
class Question:
    id: int
    text: str
    answer: tuple[str | tuple[str, ...], ...]  # every element needed; a tuple = alternatives
    fake: str


class RGB(Adapter):
    name = "rgb"
    folder = "rgb"
    title = "RGB en_fact: true passages among counterfactual copies and distractors"
    columns = (("recall@5", "R@5"), ("counterfactual@5", "CF@5"), ("answer_gold", "gold"),
               ("answer_fake", "fake-only"), ("answer_both", "both"), ("refused", "refused"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._articles, self.questions, self.occurrences = self._load()

    def _load(self) -> tuple[list[dict[str, Any]], list[Question], dict[str, set[tuple[int, str]]]]:
        articles: list[dict[str, Any]] = []
        by_text: dict[str, str] = {}
        occurrences: dict[str, set[tuple[int, str]]] = defaultdict(set)
        questions = []
        try:
            for row in self.read_jsonl("en_fact.json"):
                qid = int(row["id"])
                for kind in KINDS:
                    for j, text in enumerate(row.get(kind) or []):
                        key = clean_text(text)  # what the index compares for duplicates
                        if not key:
                            continue
                        if key not in by_text:
                            by_text[key] = f"rgb-{qid}-{kind}-{j}"
                            articles.append({"id": by_text[key], "text": text, "language": "en", "source": "RGB"})
                        occurrences[by_text[key]].add((qid, kind))
                questions.append(Question(qid, row["query"], parse_answer(row["answer"]), str(row.get("fakeanswer") or "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetFormatError(f"{self.root}/en_fact.json: unexpected layout ({exc!r})") from None
        return articles, questions, dict(occurrences)

    def has(self, article_id: str, qid: int, kind: str) -> bool:
        return (qid, kind) in self.occurrences.get(article_id, ())

    def evaluate(self, index: rag.NewsIndex, spec: RunSpec) -> RunResult:
        questions = self.sample(self.questions)
        recall, cf = [], []
        start = time.perf_counter()
        for q in self.bar(questions, f"rgb {spec.mode} retrieval"):
            top = [h.article_id for h in top_articles(index, q.text, K, spec)]
            recall.append(hits_at_k([self.has(a, q.id, "positive") for a in top], K))
            cf.append(hits_at_k([self.has(a, q.id, "positive_wrong") for a in top], K))
        timings = {"retrieval_seconds": time.perf_counter() - start}
        metrics: dict[str, float | None] = {"recall@5": mean(recall), "counterfactual@5": mean(cf),
                                            "answer_gold": None, "answer_fake": None, "answer_both": None,
                                            "refused": None}
        if self.options.answers:
            start = time.perf_counter()
            gold, fake, both, refused = [], [], [], []
            for q in self.bar(questions, f"rgb {spec.mode} answers"):
                answer = self.ask(index, q.text, spec)
                has_gold, has_fake = judge(answer, q)
                gold.append(float(has_gold))
                fake.append(float(has_fake and not has_gold))
                both.append(float(has_fake and has_gold))
                refused.append(float(answer.refused))
            metrics.update({"answer_gold": mean(gold), "answer_fake": mean(fake), "answer_both": mean(both),
                            "refused": mean(refused)})
            timings["answer_seconds"] = time.perf_counter() - start
        return RunResult(spec, metrics, {"questions": len(questions)}, timings)

    def notes(self) -> list[str]:
        out = [(f"R@{K}: a passage of the query's `positive` list among the top {K} passages; "
                f"CF@{K}: a counterfactual (`positive_wrong`) copy among them"),
               ("gold: the answer holds the gold answer (every part; any listed alternative), whether or not it "
                "also holds the counterfactual `fakeanswer`; fake-only: the fake but not the gold; both: both "
                "(a part of gold)")]
        if not self.options.answers:
            out.append("answer metrics: skipped (--no-answers)")
        return out


def judge(answer: rag.Answer, q: Question) -> tuple[bool, bool]:
    """(holds the gold answer, holds the counterfactual fake answer)."""
    body = answer_body(answer)
    return contains_all(body, q.answer), bool(q.fake) and contains_answer(body, q.fake)


def parse_answer(raw: Any) -> tuple[str | tuple[str, ...], ...]:
    """RGB's ``answer``: a string, or a list whose items are strings or lists of alternatives."""
    if isinstance(raw, str):
        return (raw,)
    if isinstance(raw, list) and raw:
        out: list[str | tuple[str, ...]] = []
        for item in raw:
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, list) and item and all(isinstance(a, str) for a in item):
                out.append(tuple(item))
            else:
                raise ValueError(f"answer item {item!r} is neither a string nor a list of strings")
        return tuple(out)
    raise ValueError(f"answer {raw!r} is neither a string nor a non-empty list")
