"""Re-run the citation check on answers an LLM already wrote, without the LLM.

    .venv/bin/rag eval xquad --generator local --save-answers answers.jsonl   # once (slow)
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/citation_replay.py answers.jsonl

Each line of the log holds the question and the model's text before the check
(``draft``). The passages are retrieved again from the same evaluation index
and compacted as rag.answer does, then rag/cite.py checks the draft. Prints,
per dataset, the figures `rag eval` reports for citations (precision: the
share of citations whose passage holds the supporting text; cited / flagged:
the share of answers with a citation / with a flagged claim), as logged and as
the current check gives them, so a change to the check is measured on the
same answers in seconds instead of an hour of generation."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SHARED  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log", type=Path, nargs="+", help="JSON lines written by rag eval --save-answers")
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("-v", "--verbose", action="store_true", help="print answers whose check changed")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="try another threshold of rag/cite.py, e.g. --set SEMANTIC_SUPPORT=0.8")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(REPO))
    import rag
    from rag.answer import _request
    from rag.cite import check
    from rag.evaluate.base import CitationTally, EvalOptions
    from rag.evaluate.cache import default_cache_dir, open_eval_index
    from rag.evaluate.metrics import squash
    from rag.evaluate.multihop import MultiHopRAG
    from rag.evaluate.xquad import XQuAD
    from rag.evidence import Evidence
    from rag.generate.extractive import is_note

    import rag.cite

    for assignment in args.set:
        name, value = assignment.split("=", 1)
        if not hasattr(rag.cite, name):
            parser.error(f"rag/cite.py has no {name}")
        setattr(rag.cite, name, float(value))
        print(f"{name} = {value}")
    settings = rag.Settings.from_env(progress=False)
    adapters = {"xquad": XQuAD, "multihop-rag": MultiHopRAG}
    indexes: dict[str, Any] = {}
    facts: dict[str, tuple[str, ...]] = {}
    before: dict[str, Any] = defaultdict(CitationTally)
    after: dict[str, Any] = defaultdict(CitationTally)
    for path in args.log:
        for line in path.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            name = rec["dataset"]
            if name not in adapters or not rec.get("draft") or rec.get("refused") or rec.get("error"):
                continue
            if name not in indexes:
                adapter = adapters[name](args.shared / "datasets", settings, EvalOptions())
                indexes[name] = open_eval_index(adapter.name, adapter.articles(), settings, default_cache_dir(),
                                                memo={}).index
                if name == "multihop-rag":
                    facts.update({q.text: q.facts for q in adapter.questions})
            idx = indexes[name]
            if name == "multihop-rag" and rec["gold"].get("type") == "null_query":
                continue
            hits = idx.retrieve(rec["query"] or rec["question"], 5, None, mode=rec.get("mode", "hybrid")).hits
            request = _request(rec["query"] or rec["question"], hits, (), "en", Evidence(hits, idx.embedder),
                               compact=settings.context_tokens)
            assert request.evidence is not None
            checked = check(rec["draft"], request.evidence,
                            fixed=[x for x in rec["draft"].splitlines() if is_note(x)])
            shown = request.passages + tuple(h for h in hits if h not in request.passages)
            new = rag.Answer(rec["question"], checked.text, checked.citations, shown, rec["generator"],
                             unsupported=checked.unsupported)
            if name == "xquad":
                gold = squash(rec["gold"]["de"])

                def supports(hit: rag.Hit, gold: str = gold) -> bool:
                    return bool(gold) and gold in squash(hit.text)
            else:
                wanted = [squash(f) for f in facts.get(rec["question"], ())]

                def supports(hit: rag.Hit, wanted: list[str] = wanted) -> bool:
                    return any(f in squash(hit.text) for f in wanted)
            by_id = {h.chunk_id: h for h in hits}
            old_hits = tuple(by_id.get(p["chunk_id"], hits[0]) for p in rec["passages"])
            old = rag.Answer(rec["question"], rec["answer"],
                             tuple(rag.Citation(c["n"], c["article_id"], c["chunk_id"], c["title"], c["url"],
                                                c["source"], c["published_at"], c["quote"], c["start"], c["end"])
                                   for c in rec["citations"] if 1 <= c["n"] <= len(old_hits)),
                             old_hits, rec["generator"],
                             unsupported=tuple(rag.Unsupported(u["sentence"], tuple(u["cited"]), u["reason"],
                                                               u["support"]) for u in rec["unsupported"]))
            before[name].add(old, supports)
            after[name].add(new, supports)
            if args.verbose and (bool(new.unsupported) != bool(old.unsupported)):
                print(f"- {rec['question'][:100]}\n  draft: {rec['draft'][:200]!r}\n  now:   {new.text[:200]!r}"
                      f"\n  flags: {[(u.sentence[:50], u.reason) for u in new.unsupported]}")
    for name in before:
        b, a = before[name].metrics(), after[name].metrics()
        print(f"{name}: {before[name].answers} answers; " + "; ".join(
            f"{k} {b[k] if b[k] is None else round(b[k], 3)} -> {a[k] if a[k] is None else round(a[k], 3)}"
            for k in ("citation_precision", "cited", "flagged")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
