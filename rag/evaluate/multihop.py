"""MultiHop-RAG (500-query sample): multi-document retrieval as the paper
scores it, refusal on questions the corpus cannot answer, and answer accuracy
when an LLM writes the answers.

The full article bodies are not shipped: each evidence url becomes one
document (its title and metadata, text = its gold facts joined by blank
lines). Retrieval (as ``retrieval_evaluate.py`` of the paper's repository):
the top 10 chunks of ``index.search``; a chunk is a hit when it contains a
gold fact (compared with all whitespace removed); Hits@4, Hits@10, MAP@10 and
MRR@10 over the answerable queries."""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import rag
from rag.evaluate.base import Adapter, CitationTally, RunResult, RunSpec, answer_body
from rag.evaluate.errors import DatasetFormatError
from rag.evaluate.metrics import (average_precision_at_k, contains_answer, hits_at_k, mean, mrr_at_k,
                                  says_no_answer, squash)

NULL = "null_query"
K = 10
RETRIEVAL = ("hits@4", "hits@10", "map@10", "mrr@10")


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    type: str
    answer: str
    facts: tuple[str, ...]

    @property
    def answerable(self) -> bool:
        return self.type != NULL and bool(self.facts)


class MultiHopRAG(Adapter):
    name = "multihop-rag"
    folder = "multihop-rag-500"
    title = "MultiHop-RAG (500-query sample): evidence facts as documents"
    columns = (("hits@4", "Hits@4"), ("hits@10", "Hits@10"), ("map@10", "MAP@10"), ("mrr@10", "MRR@10"),
               ("null_refusal", "refuse(null)"), ("false_refusal", "refuse(other)"), ("accuracy", "accuracy"),
               ("citation_precision", "cite-prec"), ("cited", "cited"), ("flagged", "flagged"))
    type_columns = (("n", "n"), ("hits@4", "Hits@4"), ("hits@10", "Hits@10"), ("map@10", "MAP@10"),
                    ("mrr@10", "MRR@10"), ("refused", "refused"), ("accuracy", "accuracy"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._articles, self.questions = self._load()

    def _load(self) -> tuple[list[dict[str, Any]], list[Question]]:
        queries, truth = self.read_json("queries.json"), self.read_json("ground_truth.json")
        docs: dict[str, dict[str, Any]] = {}
        questions = []
        try:
            for q in queries["queries"]:
                gold = truth[str(q["id"])]
                facts = []
                for ev in gold["evidence_list"]:
                    facts.append(ev["fact"])
                    doc = docs.setdefault(ev["url"], {
                        "id": "mhr-" + hashlib.sha256(ev["url"].encode("utf-8")).hexdigest()[:16],
                        "title": ev.get("title"), "url": ev["url"], "source": ev.get("source"),
                        "author": ev.get("author"), "published_at": ev.get("published_at"), "language": "en",
                        "facts": []})
                    if ev["fact"] not in doc["facts"]:
                        doc["facts"].append(ev["fact"])
                questions.append(Question(str(q["id"]), q["question"], q["question_type"], str(gold["answer"]),
                                          tuple(facts)))
        except (KeyError, TypeError) as exc:
            raise DatasetFormatError(f"{self.root}: unexpected layout ({exc!r} missing or malformed)") from None
        articles = [{k: v for k, v in d.items() if k != "facts"} | {"text": "\n\n".join(d["facts"])}
                    for d in docs.values()]
        return articles, questions

    def counts(self) -> dict[str, int]:
        sample = self.sample(self.questions)
        return super().counts() | {"answerable": sum(q.answerable for q in sample),
                                   "null": sum(not q.answerable for q in sample)}

    def evaluate(self, index: rag.NewsIndex, spec: RunSpec) -> RunResult:
        questions = self.sample(self.questions)
        per_type: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        start = time.perf_counter()
        options: dict[str, Any] = {"reranker": spec.reranker} if spec.reranker else {}
        for q in self.bar([q for q in questions if q.answerable], f"multihop {spec.mode} retrieval"):
            hits = index.search(q.text, k=K, mode=spec.mode, **options)
            for name, value in score_retrieval([h.text for h in hits], q.facts).items():
                per_type[q.type][name].append(value)
        timings = {"retrieval_seconds": time.perf_counter() - start}

        # Answers: all questions, or (--no-answers) only the null ones, for refusal, by the cheap generator.
        start = time.perf_counter()
        llm = self.options.answers and self.generator != "extractive"
        asked = questions if self.options.answers else [q for q in questions if not q.answerable]
        generator = None if self.options.answers else "extractive"
        tally = CitationTally()
        for q in self.bar(asked, f"multihop {spec.mode} answers"):
            answer = self.ask(index, q.text, spec, generator, gold={"type": q.type, "answer": q.answer})
            refused, correct = judge(answer, q)
            per_type[q.type]["refused"].append(float(refused))
            if llm:
                per_type[q.type]["accuracy"].append(float(correct))
            if self.options.answers and q.answerable:
                facts = [squash(f) for f in q.facts]
                tally.add(answer, lambda hit, facts=facts: any(f in squash(hit.text) for f in facts))
        if asked:
            timings["answer_seconds"] = time.perf_counter() - start

        def pooled(name: str, types: list[str]) -> float | None:
            return mean(v for t in types for v in per_type[t].get(name, []))

        answerable_types = sorted({q.type for q in questions if q.answerable})
        metrics: dict[str, float | None] = {name: pooled(name, answerable_types) for name in RETRIEVAL}
        metrics["null_refusal"] = pooled("refused", [NULL])
        metrics["false_refusal"] = pooled("refused", answerable_types)
        metrics["accuracy"] = pooled("accuracy", list(per_type))
        metrics.update(tally.metrics() if self.options.answers else
                       {"citation_precision": None, "cited": None, "flagged": None})
        by_type = {t: {"n": sum(q.type == t for q in questions),
                       **{name: mean(vals) for name, vals in per_type[t].items()}}
                   for t in sorted({q.type for q in questions})}
        counts = {"questions": len(questions), "answerable": sum(q.answerable for q in questions),
                  "answered": len(asked)}
        return RunResult(spec, metrics, counts, timings, by_type=by_type)

    def notes(self) -> list[str]:
        out = [(f"retrieval: top {K} chunks; a chunk is a hit when it contains a gold fact "
                "(MultiHop-RAG's retrieval_evaluate.py, incl. its MAP@10); answerable queries only"),
               ("cite-prec: share of citations (answerable queries) whose passage holds a gold fact; cited / "
                "flagged: share of those answers (not refused) with a citation / with a flagged claim"),
               ("corpus: one document per evidence url holding only its gold facts (full bodies not shipped), "
                "so figures are not comparable with the paper's full-corpus numbers")]
        if not self.options.answers:
            out.append("refusal: null queries only, answered by the extractive generator (the relevance gate "
                       "decides; --no-answers)")
        if not (self.options.answers and self.generator != "extractive"):
            out.append("answer accuracy: skipped (no LLM configured)")
        return out


def judge(answer: rag.Answer, q: Question) -> tuple[bool, bool]:
    """(refused, correct) as the paper's QA script scores an answer: a
    refusal is correct for a null query; otherwise the gold answer must
    appear in the answer (case-insensitive)."""
    refused = answer.refused or says_no_answer(answer.text)
    if not q.answerable:
        return refused, refused
    return refused, contains_answer(answer_body(answer), q.answer)


def score_retrieval(chunks: list[str], facts: tuple[str, ...] | list[str], k: int = K) -> dict[str, float]:
    """Hits@4, Hits@k, MAP@k, MRR@k of retrieved chunk texts against gold facts."""
    gold = [squash(f) for f in facts]
    found = [{g for g in gold if g in squash(text)} for text in chunks[:k]]
    relevant = [bool(f) for f in found]
    return {"hits@4": hits_at_k(relevant, 4), f"hits@{k}": hits_at_k(relevant, k),
            f"map@{k}": average_precision_at_k(found, len(gold), k), f"mrr@{k}": mrr_at_k(relevant, k)}
