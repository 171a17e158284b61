"""Rebuild the bundled sample corpus in rag/sample/ from ../shared.

    python scripts/build_sample.py [SHARED_DIR]

Deterministic: the same inputs give the same files. See rag/sample/SOURCES.md."""

from __future__ import annotations

import csv
import json
import random
import re
import shutil
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "rag" / "sample"
# Topics that make good distractors for the seed question (tech, banks, data).
GNAD_TOPICAL = re.compile(r"Facebook|Google|Amazon|Apple|Bank|Daten|Kreditkarte|Zahlung", re.I)
MH_TOPICAL = re.compile(r"bank|Facebook|Meta|Google|Amazon|Apple|data|payment|JPMorgan|Wells Fargo", re.I)


def first_sentence(text: str, limit: int = 140) -> str:
    m = re.match(r"(.{20,}?[.!?])\s", text)
    lead = m.group(1) if m else text
    if len(lead) <= limit:
        return lead
    words = lead.split()
    out = ""
    for w in words:
        if len(out) + len(w) + 1 > limit - 1:
            break
        out = f"{out} {w}".strip()
    return out + "…"


def gnad(shared: Path, n_topical: int = 45, n_random: int = 45) -> list[dict]:
    rows = []
    with (shared / "datasets/10kgnad/test.csv").open(encoding="utf-8") as fh:
        for i, (category, text) in enumerate(csv.reader(fh, delimiter=";", quotechar="'")):
            rows.append({"row": i, "category": category, "text": text})
    rnd = random.Random(20181)
    topical = [r for r in rows if GNAD_TOPICAL.search(r["text"])]
    pick = rnd.sample(topical, n_topical)
    rest = [r for r in rows if r not in pick]
    pick += rnd.sample(rest, n_random)
    pick.sort(key=lambda r: r["row"])
    return [{"id": f"10kgnad-test-{r['row']}", "title": first_sentence(r["text"]), "text": r["text"],
             "source": "derStandard.at", "language": "de", "category": r["category"]} for r in pick]


def multihop(shared: Path, n_topical: int = 40, n_random: int = 20) -> list[dict]:
    truth = json.loads((shared / "datasets/multihop-rag-500/ground_truth.json").read_text())
    docs: dict[str, dict] = {}
    facts: dict[str, list[str]] = defaultdict(list)
    for item in truth.values():
        for ev in item["evidence_list"]:
            url = ev["url"]
            docs.setdefault(url, {k: ev.get(k) for k in ("title", "author", "source", "published_at", "url", "category")})
            if ev["fact"] not in facts[url]:
                facts[url].append(ev["fact"])
    urls = sorted(docs)
    rnd = random.Random(2023)
    topical = [u for u in urls if MH_TOPICAL.search(docs[u]["title"] + " ".join(facts[u]))]
    pick = set(rnd.sample(topical, min(n_topical, len(topical))))
    pick |= set(rnd.sample([u for u in urls if u not in pick], n_random))
    out = []
    for url in sorted(pick):
        d = docs[url]
        out.append({"title": d["title"], "text": "\n\n".join(facts[url]), "url": url, "source": d["source"],
                    "author": d["author"], "published_at": d["published_at"], "language": "en",
                    "category": d["category"]})
    return out


def main() -> None:
    shared = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared"
    OUT.mkdir(parents=True, exist_ok=True)
    seed = (shared / "seed/facebook-banks-de.txt").read_text(encoding="utf-8")
    front = ("---\n"
             "id: facebook-banks-de\n"
             "author: bsh\n"
             "language: de\n"
             "---\n")
    (OUT / "facebook-banks-de.txt").write_text(front + seed, encoding="utf-8")
    with (OUT / "derstandard-10kgnad.csv").open("w", encoding="utf-8", newline="") as fh:
        rows = gnad(shared)
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with (OUT / "multihop-news-en.jsonl").open("w", encoding="utf-8") as fh:
        for doc in multihop(shared):
            fh.write(json.dumps(doc, ensure_ascii=False) + "\n")
    size = sum(p.stat().st_size for p in OUT.iterdir() if p.is_file())
    print(f"wrote {OUT} ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
