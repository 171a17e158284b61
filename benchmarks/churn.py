"""Readers while a writer publishes generations as fast as it can.

16 reader threads (half search, half answer with the extractive generator) run against an
index, first idle, then while another process ingests N articles with RAG_COMMIT_EVERY=1
(one published generation per article). Prints requests, failures and latency p50/p95 for
both phases, and how many generations were published.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/churn.py [--threads 16] [--articles 120] [--peer] [--search-only]

--peer runs the same churn on the peer (LangChain FAISS with the same e5 model): its writer
adds one article and calls save_local() each time, as a LangChain app that keeps its index up
to date would, and its readers reload the index whenever index.faiss changes, then search.
Run it on a quiet machine. To measure another checkout, put it first on PYTHONPATH."""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import rag
from rag.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("RAG_SHARED", ROOT.parent / "shared"))
BANKS = ("JPMorgan Chase", "Wells Fargo", "Citigroup", "U.S. Bancorp")


def german_news(n: int) -> list[str]:
    rows: list[str] = []
    with (SHARED / "datasets" / "10kgnad" / "test.csv").open(encoding="utf-8") as fh:
        for _, text in csv.reader(fh, delimiter=";", quotechar="'"):
            rows.append(text)
            if len(rows) == n:
                break
    return rows


def generation(index: rag.NewsIndex) -> int:
    stats = index.stats()
    return stats["generation"] if isinstance(stats, dict) else stats.generation  # dict: older checkouts


def settings_for(folder: Path) -> Settings:
    return Settings.from_env(environ={}, dotenv=None, index_dir=folder, progress=False, generator="extractive")


class Readers:
    """``threads`` readers; each request's latency and any failure are recorded."""

    def __init__(self, folder: Path, threads: int, answers: bool = True) -> None:
        self.folder = folder
        self.threads = threads
        self.answers = answers  # False: every thread searches (like the peer's readers)
        self.latency: dict[str, list[float]] = {"search": [], "answer": []}
        self.failures: Counter[str] = Counter()
        self._lock = threading.Lock()

    def run(self, keep_going: threading.Event | None, seconds: float | None = None) -> None:
        shared = rag.open_index(self.folder, settings_for(self.folder))
        deadline = time.monotonic() + seconds if seconds else None

        def work(i: int) -> None:
            own = rag.open_index(self.folder, settings_for(self.folder)) if i % 4 == 0 else shared
            while (keep_going is None or not keep_going.is_set()) and (deadline is None or time.monotonic() < deadline):
                kind = "answer" if i % 2 and self.answers else "search"
                start = time.perf_counter()
                try:
                    if kind == "answer":
                        a = rag.answer("Which banks did Facebook contact?", own, generator="extractive")
                        ok = not a.error and any(b in a.text for b in BANKS)
                    else:
                        ok = bool(own.search("Regierung Wien Bank", k=5))
                    failure = None if ok else "wrong or empty result"
                except Exception as exc:  # noqa: BLE001 - a failed request is what we count
                    failure = f"{type(exc).__name__}: {str(exc)[:120]}"
                self.record(kind, failure, time.perf_counter() - start)
                time.sleep(0.02)

        self.run_threads(work)

    def record(self, kind: str, failure: str | None, took: float) -> None:
        with self._lock:
            if failure:
                self.failures[failure] += 1
            else:
                self.latency[kind].append(took)

    def run_threads(self, work: Callable[[int], None]) -> None:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(self.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def row(self, phase: str) -> str:
        cells = [phase]
        for kind in ("search", "answer"):
            xs = sorted(self.latency[kind])
            if xs:
                p95 = xs[min(len(xs) - 1, int(0.95 * len(xs)))]
                cells += [str(len(xs)), f"{statistics.median(xs) * 1000:.0f}", f"{p95 * 1000:.0f}"]
            else:
                cells += ["0", "-", "-"]
        cells.append(str(sum(self.failures.values())))
        return " | ".join(cells)


# ---- the peer: LangChain FAISS, save_local() after each article, readers reload on change
def peer_parts(model_path: str):  # noqa: ANN201 - LangChain objects, imported lazily
    import transformers
    from langchain_community.vectorstores import FAISS
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    transformers.logging.set_verbosity_error()
    emb = HuggingFaceEmbeddings(model_name=model_path, model_kwargs={"device": "cpu"},
                                encode_kwargs={"normalize_embeddings": True, "prompt": "passage: "},
                                query_encode_kwargs={"normalize_embeddings": True, "prompt": "query: "})
    splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
        transformers.AutoTokenizer.from_pretrained(model_path), chunk_size=200, chunk_overlap=40)
    return FAISS, emb, splitter


def peer_writer(folder: str, articles: str, model_path: str) -> None:
    FAISS, emb, splitter = peer_parts(model_path)
    store = FAISS.load_local(folder, emb, allow_dangerous_deserialization=True)
    for line in Path(articles).read_text(encoding="utf-8").splitlines():
        store.add_texts(splitter.split_text(json.loads(line)["text"]))
        store.save_local(folder)  # what a LangChain app does to keep its index current


class PeerReaders(Readers):
    def run_peer(self, keep_going: threading.Event, model_path: str) -> None:
        FAISS, emb, _ = peer_parts(model_path)
        state: dict[str, object] = {"mtime": None, "store": None}
        reload = threading.Lock()

        def current():  # noqa: ANN202
            with reload:
                mtime = (self.folder / "index.faiss").stat().st_mtime_ns
                if mtime != state["mtime"]:
                    state["store"] = FAISS.load_local(str(self.folder), emb, allow_dangerous_deserialization=True)
                    state["mtime"] = mtime
                return state["store"]

        def work(i: int) -> None:
            while not keep_going.is_set():
                start = time.perf_counter()
                try:
                    failure = None if current().similarity_search("Regierung Wien Bank", k=5) else "no result"
                except Exception as exc:  # noqa: BLE001
                    failure = f"{type(exc).__name__}: {str(exc)[:120]}"
                self.record("search", failure, time.perf_counter() - start)
                time.sleep(0.02)

        self.run_threads(work)


def run_peer(texts: list[str], args: argparse.Namespace) -> tuple[PeerReaders, float]:
    from rag.embed.sentence_transformers import BUNDLED

    model_path = str(BUNDLED["bundled:multilingual-e5-small"](
        Settings.from_env(environ={}, dotenv=None, embed_model="bundled:multilingual-e5-small")))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "peer"
        FAISS, emb, splitter = peer_parts(model_path)
        seed = (ROOT / "rag" / "sample" / "facebook-banks-de.txt").read_text(encoding="utf-8")
        FAISS.from_texts([c for t in [seed, *texts[:20]] for c in splitter.split_text(t)], emb).save_local(str(folder))
        late = Path(tmp) / "late.jsonl"
        late.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[20:]), encoding="utf-8")
        readers = PeerReaders(folder, args.threads)
        stop = threading.Event()
        started = time.monotonic()
        writer = subprocess.Popen([sys.executable, __file__, "--peer-writer", str(folder), str(late), model_path],
                                  stderr=subprocess.PIPE, text=True)
        thread = threading.Thread(target=readers.run_peer, args=(stop, model_path))
        thread.start()
        _, err = writer.communicate()
        stop.set()
        thread.join()
        if writer.returncode != 0:
            sys.exit(f"peer writer failed: {err[-1000:]}")
        return readers, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--articles", type=int, default=120, help="articles the writer adds, one generation each")
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--peer", action="store_true", help="also run the churn on the LangChain FAISS peer")
    parser.add_argument("--search-only", action="store_true",
                        help="every reader thread searches (no answers): like-for-like with the peer's readers")
    parser.add_argument("--peer-writer", nargs=3, metavar=("FOLDER", "JSONL", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer_writer:
        peer_writer(*args.peer_writer)
        return

    texts = german_news(20 + args.articles)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "index"
        base = rag.open_index(folder, settings_for(folder))
        seed = (ROOT / "rag" / "sample" / "facebook-banks-de.txt").read_text(encoding="utf-8")
        base.add_articles([{"id": "facebook-banks-de", "text": seed}]
                          + [{"id": f"base-{i}", "text": t} for i, t in enumerate(texts[:20])])
        rag.answer("warm up", base, generator="extractive")  # models loaded before timing
        start_gen = generation(base)

        idle = Readers(folder, args.threads, answers=not args.search_only)
        idle.run(None, args.idle_seconds)

        late = Path(tmp) / "late.jsonl"
        late.write_text("".join(json.dumps({"id": f"late-{i}", "text": t}) + "\n"
                                for i, t in enumerate(texts[20:])), encoding="utf-8")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAG_INDEX": str(folder), "RAG_COMMIT_EVERY": "1"}
        churn = Readers(folder, args.threads, answers=not args.search_only)
        stop = threading.Event()
        started = time.monotonic()
        writer = subprocess.Popen([str(Path(sys.executable).parent / "rag"), "ingest", str(late), "--json"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        reader = threading.Thread(target=churn.run, args=(stop,))
        reader.start()
        out, err = writer.communicate()
        stop.set()
        reader.join()
        writer_s = time.monotonic() - started
        if writer.returncode != 0:
            sys.exit(f"writer failed: {err[-1000:]}")
        published = generation(rag.open_index(folder, settings_for(folder))) - start_gen

    print(f"rag {rag.__file__}; load {os.getloadavg()[0]:.1f}; {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"{args.threads} reader threads; writer added {json.loads(out)['counts']['added']} articles in "
          f"{published} generations in {writer_s:.1f} s ({published / writer_s:.2f} publishes/s)\n")
    print("phase | search n | search p50 ms | search p95 ms | answer n | answer p50 ms | answer p95 ms | failed")
    print("--- | --: | --: | --: | --: | --: | --: | --:")
    print(idle.row("idle"))
    print(churn.row("churn"))
    for reason, n in (idle.failures + churn.failures).most_common(5):
        print(f"  {n} x {reason}")
    if args.peer:
        peer, peer_s = run_peer(texts, args)
        print(f"\npeer (LangChain FAISS, save_local per article, readers reload on change): writer {peer_s:.1f} s")
        print(peer.row("peer churn"))
        for reason, n in peer.failures.most_common(5):
            print(f"  {n} x {reason}")
        ours, theirs = sorted(churn.latency["search"]), sorted(peer.latency["search"])
        if ours and theirs:
            print(f"search p50 during churn, ours/peer: {statistics.median(ours) / statistics.median(theirs):.2f}x")


if __name__ == "__main__":
    main()
