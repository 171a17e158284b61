"""XQuAD (dev, German paragraphs, English questions): cross-lingual retrieval
and whether the answer holds the gold span.

Corpus: the 120 German paragraphs, one article each. Questions: the 632
English questions; gold = the paragraph the question id belongs to in the
German file, gold answer text = ``answers[0].text`` in German and in English."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import rag
from rag.evaluate.base import Adapter, CitationTally, RunResult, RunSpec, answer_body, top_articles
from rag.evaluate.errors import DatasetFormatError
from rag.evaluate.metrics import contains_answer, mean, mrr_at_k, recall_at_k, squash, token_f1


@dataclass(frozen=True)
class Question:
    id: str
    text: str  # English
    gold: str  # article id of its German paragraph
    answer_de: str
    answer_en: str


class XQuAD(Adapter):
    name = "xquad"
    folder = "xquad-dev"
    title = "XQuAD dev: English questions over German paragraphs"
    columns = (("recall@1", "R@1"), ("recall@5", "R@5"), ("recall@10", "R@10"), ("mrr@10", "MRR@10"),
               ("answer_contains", "contains"), ("answer_f1", "F1"), ("refused", "refused"),
               ("citation_precision", "cite-prec"), ("cited", "cited"), ("flagged", "flagged"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._articles, self.questions = self._load()

    def _load(self) -> tuple[list[dict[str, Any]], list[Question]]:
        de, en = self.read_json("xquad.de.json"), self.read_json("xquad.en.json")
        articles: list[dict[str, Any]] = []
        gold: dict[str, tuple[str, str]] = {}  # question id -> (article id, German answer)
        try:
            for article in de["data"]:
                for i, para in enumerate(article["paragraphs"]):
                    aid = f"{article['title']}-{i}"
                    articles.append({"id": aid, "title": article["title"].replace("_", " "),
                                     "text": para["context"], "language": "de", "source": "XQuAD"})
                    for qa in para["qas"]:
                        gold[qa["id"]] = (aid, qa["answers"][0]["text"] if qa["answers"] else "")
            questions = []
            for article in en["data"]:
                for para in article["paragraphs"]:
                    for qa in para["qas"]:
                        if qa["id"] not in gold:
                            raise DatasetFormatError(f"question {qa['id']} of xquad.en.json is not in xquad.de.json")
                        aid, answer_de = gold[qa["id"]]
                        answer_en = qa["answers"][0]["text"] if qa["answers"] else ""
                        questions.append(Question(qa["id"], qa["question"], aid, answer_de, answer_en))
        except (KeyError, TypeError, IndexError) as exc:
            raise DatasetFormatError(f"{self.root}: not in SQuAD format ({exc!r})") from None
        return articles, questions

    def evaluate(self, index: rag.NewsIndex, spec: RunSpec) -> RunResult:
        questions = self.sample(self.questions)
        ranks: dict[str, list[float]] = {"recall@1": [], "recall@5": [], "recall@10": [], "mrr@10": []}
        start = time.perf_counter()
        for q in self.bar(questions, f"xquad {spec.mode} retrieval"):
            ranked = [h.article_id for h in top_articles(index, q.text, 10, spec)]
            for k in (1, 5, 10):
                ranks[f"recall@{k}"].append(recall_at_k(ranked, {q.gold}, k))
            ranks["mrr@10"].append(mrr_at_k([a == q.gold for a in ranked], 10))
        retrieval_s = time.perf_counter() - start
        metrics: dict[str, float | None] = {name: mean(values) for name, values in ranks.items()}
        metrics.update({"answer_contains": None, "answer_f1": None, "refused": None, "citation_precision": None,
                        "cited": None, "flagged": None})
        timings = {"retrieval_seconds": retrieval_s}
        if self.options.answers:
            start = time.perf_counter()
            contains, f1, refused = [], [], []
            tally = CitationTally()
            for q in self.bar(questions, f"xquad {spec.mode} answers"):
                answer = self.ask(index, q.text, spec, gold={"article": q.gold, "de": q.answer_de, "en": q.answer_en})
                has, score = judge(answer, q)
                contains.append(float(has))
                f1.append(score)
                refused.append(float(answer.refused))
                gold = squash(q.answer_de)
                tally.add(answer, lambda hit, gold=gold: bool(gold) and gold in squash(hit.text))
            metrics.update({"answer_contains": mean(contains), "answer_f1": mean(f1), "refused": mean(refused),
                            **tally.metrics()})
            timings["answer_seconds"] = time.perf_counter() - start
        return RunResult(spec, metrics, {"questions": len(questions)}, timings)

    def notes(self) -> list[str]:
        out = ["recall@k / MRR@10 over unique paragraphs (chunks of one paragraph count once)",
               "cite-prec: share of citations whose passage holds the German gold answer; cited / flagged: share "
               "of the answers (not refused) with a citation / with a claim the citation check flagged"]
        if not self.options.answers:
            out.append("answer metrics: skipped (--no-answers)")
        elif self.generator == "extractive":
            out.append("answers by the extractive generator: F1 is against the quoted sentences, so it is "
                       "bounded by sentence length (precision), not comparable to SQuAD-style span F1")
        return out


def judge(answer: rag.Answer, q: Question) -> tuple[bool, float]:
    """(does the answer contain the German or the English gold text, best token F1 against either)."""
    body = answer_body(answer)
    return (contains_answer(body, [q.answer_de, q.answer_en]),
            max(token_f1(body, q.answer_de, "de"), token_f1(body, q.answer_en, "en")))
