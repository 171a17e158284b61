"""The ``rag`` command. It sits on top of the public API and is the only
place (with the UI) where errors become friendly messages."""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import rag
from rag.console import clean_argument, configure_logging, safe, whole_number
from rag.errors import RagError
from rag.redact import install_redaction
from rag.settings import GENERATOR_NAMES, RETRIEVAL_MODES, Settings

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.for_command(getattr(args, "index", None), getattr(args, "quiet", False),
                                    getattr(args, "json", False))
    install_redaction(settings)  # no log line (httpx request URLs included) may print a credential
    return settings


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


# ---- commands ----
def cmd_ingest(args: argparse.Namespace) -> int:
    settings = _settings(args)
    paths = list(args.paths)
    if isinstance(args.ray, str) and os.path.exists(args.ray):
        paths.insert(0, args.ray)  # `rag ingest --ray FOLDER`: argparse took the path for an address
        args.ray = True
    if args.sample:
        paths += [str(p) for p in rag.sample_articles()]
    if not paths:
        print("error: give at least one PATH, or --sample", file=sys.stderr)
        return EXIT_USAGE
    index = rag.open_index(settings.index_dir, settings)
    if args.if_empty and index.stats().articles > 0:
        if not args.json:
            print(f"{settings.index_dir} already holds {index.stats().articles} articles; nothing to do")
        else:
            _print_json({"skipped": "index not empty", "stats": index.stats().to_dict()})
        return EXIT_OK
    report = index.ingest(paths, ray=args.ray, ray_actors=args.ray_actors)
    if args.json:
        _print_json(report.to_dict())
    else:
        c = report.counts()
        # File names and reasons come from the input: escaped, so they cannot forge lines or colours.
        for failure in report.failed:
            print(f"FAILED  {safe(failure.path)}: {safe(failure.reason)}", file=sys.stderr)
        for dup in report.duplicates:
            print(f"DUPLICATE  {safe(dup.origin)}: same text as article {safe(dup.existing_id)}", file=sys.stderr)
        for note in report.notes:
            print(f"note  {safe(note)}", file=sys.stderr)
        print(f"added {c['added']}, updated {c['updated']}, unchanged {c['unchanged']}, "
              f"failed {c['failed']}, duplicates {c['duplicates']}, skipped {c['skipped']} "
              f"({c['chunks_added']} new chunks) -> {settings.index_dir}")
    return EXIT_OK if report.ok else EXIT_PARTIAL


def cmd_watch(args: argparse.Namespace) -> int:
    """``rag watch FEED... --every 15m``: poll feeds, ingest what is new or changed."""
    from rag.feeds import parse_interval, watch

    settings = _settings(args)
    every = parse_interval(args.every)
    index = rag.open_index(settings.index_dir, settings)
    failed = [False]

    def show(rounds: list[Any]) -> None:
        failed[0] = any(r.status == "failed" for r in rounds)
        if args.json:
            _print_json([r.to_dict() for r in rounds])
            sys.stdout.flush()
            return
        stamp = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")
        for r in rounds:
            print(f"{stamp}  {safe(r.line())}", file=sys.stderr if r.status == "failed" else sys.stdout, flush=True)
            for note in (r.report.notes if r.report else ()):
                print(f"note  {safe(note)}", file=sys.stderr)

    try:
        watch(index, [clean_argument(u) for u in args.feeds], every, once=args.once, on_round=show)
    except KeyboardInterrupt:
        print("watch stopped; every finished round is saved, an interrupted one is redone next time",
              file=sys.stderr)
        return 130
    return EXIT_PARTIAL if failed[0] else EXIT_OK


def _filters(args: argparse.Namespace) -> dict[str, Any] | None:
    f: dict[str, Any] = {}
    for key in ("source", "language"):
        if getattr(args, key, None):
            f[key] = args.__dict__[key]
    if getattr(args, "since", None):
        f["since"] = args.since
    if getattr(args, "until", None):
        f["until"] = args.until
    return f or None


def cmd_search(args: argparse.Namespace) -> int:
    settings = _settings(args)
    index = rag.open_index(settings.index_dir, settings, create=False)
    query = clean_argument(args.query)
    hits = index.search(query, k=args.k, filters=_filters(args), mode=args.mode)
    if args.json:
        _print_json({"query": query, "hits": [h.to_dict() for h in hits]})
        return EXIT_OK
    if not hits:
        print("no matching passages")
    for n, hit in enumerate(hits, 1):
        meta = " | ".join(safe(x) for x in (hit.source, hit.published_at, hit.language) if x)
        print(f"{n}. [{hit.score:.3f}] {_shown_title(hit.title, hit.title_derived, hit.article_id)}"
              + (f"  ({meta})" if meta else ""))
        print(f"   {safe(hit.chunk_id)}  chars {hit.start}-{hit.end}" + (f"  {safe(hit.url)}" if hit.url else ""))
        if copies := rag.also_reported(hit.also_reported_by, hit.copies):
            print(f"   {safe(copies)}")
        body = hit.text if len(hit.text) <= 400 else hit.text[:400] + "…"
        print(textwrap.indent(textwrap.fill(safe(" ".join(body.split())), 100), "   "))
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    settings = _settings(args)
    index = rag.open_index(settings.index_dir, settings, create=False)
    rows = index.articles(limit=args.limit, offset=args.offset)
    if args.json:
        _print_json([r.to_dict() for r in rows])
        return EXIT_OK
    for r in rows:
        title = safe((r.title or "")[:70]) + (" *" if r.title_derived else "")
        print(f"{safe(r.id):<48} {safe((r.published_at or '')[:10]):<10} {safe((r.source or '')[:18]):<18} "
              f"{safe(r.language or ''):<3} {r.chunks:>3}  {title}")
    if not rows:
        print("the index holds no articles")
    elif any(r.title_derived for r in rows):
        print(f"* {DERIVED_MARK[1:-1]}")
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    settings = _settings(args)
    index = rag.open_index(settings.index_dir, settings, create=False)
    report = index.delete([clean_argument(i) for i in args.ids])  # all in one generation
    if args.json:
        _print_json(report.to_dict())
        return EXIT_OK
    for article_id in report.deleted:
        print(f"deleted {safe(article_id)}")
    for article_id in report.missing:
        # Not an error: re-running a delete that was interrupted must finish it.
        print(f"not in the index (already deleted?): {safe(article_id)}", file=sys.stderr)
    return EXIT_OK


def cmd_upgrade(args: argparse.Namespace) -> int:
    settings = _settings(args)
    index = rag.open_index(settings.index_dir, settings, create=False)
    done = index.upgrade()
    if args.json:
        _print_json({"upgraded": done, "stats": index.stats().to_dict()})
    else:
        print(f"{settings.index_dir}: " + ("rewritten in the current index format" if done
                                           else "already in the current index format; nothing to do"))
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    index = rag.open_index(settings.index_dir, settings, create=False)
    target = index.migrate(args.to, args.into)
    stats = target.stats()
    if args.json:
        _print_json({"index": str(target.folder), "stats": stats.to_dict()})
    else:
        print(f"copied {stats.articles} articles, {stats.chunks} chunks into {safe(str(target.folder))} "
              f"(Milvus); use it with --index {safe(str(target.folder))} or RAG_INDEX")
    return EXIT_OK


def cmd_stats(args: argparse.Namespace) -> int:
    settings = _settings(args)
    index = rag.open_index(settings.index_dir, settings, create=False)
    stats = index.stats().to_dict()
    if args.json:
        _print_json(stats)
    else:
        for key, value in stats.items():
            if isinstance(value, dict):
                value = ", ".join(f"{k} {v}" for k, v in value.items()) or "-"
            print(f"{key:>16}: {value}")
    return EXIT_OK


def cmd_ask(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.model:
        overrides["llm_model"] = args.model
    settings = _settings(args).replace(**overrides) if overrides else _settings(args)
    index = rag.open_index(settings.index_dir, settings, create=False)
    options: dict[str, Any] = {"mode": args.mode, "filters": _filters(args)}
    if args.generator:
        options["generator"] = args.generator
    question = clean_argument(args.question)
    if args.json:
        _print_json(rag.answer(question, index, k=args.k, **options).to_dict())
        return EXIT_OK
    final: rag.Answer | None = None
    for event in rag.answer_stream(question, index, k=args.k, **options):
        if isinstance(event, rag.Answer):
            final = event
        else:
            sys.stdout.write(safe(event, multiline=True))
            sys.stdout.flush()
    assert final is not None
    print()
    _print_sources(final)
    return EXIT_OK


#: After a title that is the article's first sentence (it came without one).
DERIVED_MARK = "(title from the first sentence)"


def _shown_title(title: str | None, derived: bool, article_id: str) -> str:
    if not title:
        return safe(article_id)
    return safe(title) + (f" {DERIVED_MARK}" if derived else "")


def _print_sources(answer: rag.Answer) -> None:
    if answer.citations:
        print("\nSources:")
    for c in answer.citations:
        meta = ", ".join(safe(x) for x in (c.source, (c.published_at or "")[:10]) if x)
        print(f"[{c.n}] {_shown_title(c.title, c.title_derived, c.article_id)}" + (f" ({meta})" if meta else "")
              + (f" {safe(c.url)}" if c.url else ""))
        if copies := rag.also_reported(c.also_reported_by, c.copies):
            print(f"    {safe(copies)}")
        print(textwrap.indent(textwrap.fill(safe(f"«{' '.join(c.quote.split())}»"), 100), "    "))
    for u in answer.unsupported:
        print(f"! unsupported: {safe(u.sentence)} ({safe(u.reason)})", file=sys.stderr)
    for note in answer.notes:
        print(f"note: {safe(note)}", file=sys.stderr)
    print(f"(answered by {answer.generator})", file=sys.stderr)


def cmd_llm(args: argparse.Namespace) -> int:
    """The answer generator: which one answers, the bundled model, a shared local server."""
    from rag.generate import bundled_llm, local

    settings = _settings(args)
    if args.action == "install":
        progress, close = (bundled_llm.tqdm_progress() if settings.progress is not False and sys.stderr.isatty()
                           else (None, lambda: None))
        try:
            path = bundled_llm.assemble(settings.model_dir, progress)
        finally:
            close()
        reason = local.missing_runtime()
        if args.json:
            _print_json({"model": str(path), "runtime": reason or "ok"})
        else:
            print(f"{bundled_llm.MODEL_NAME}: {path} (sha256 verified)")
            if reason:
                print(f"note: {reason}", file=sys.stderr)
        return EXIT_OK
    if args.action == "start":
        state = local.start_shared(settings)
        if args.json:
            _print_json(state)
        else:
            print(f"local model served at {state['base_url']} (pid {state['pid']}); 'rag ask' uses it until "
                  f"'rag llm stop'")
        return EXIT_OK
    if args.action == "stop":
        stopped = local.stop_shared(settings)
        if args.json:
            _print_json({"stopped": stopped})
        else:
            print("stopped the shared local model server" if stopped else "no shared local model server was running")
        return EXIT_OK
    status = rag.generator_status(settings)
    shared = local.shared_server(settings)
    info = {"generator": status.backend, "state": status.state, "detail": status.detail,
            "bundled_model": str(bundled_llm.target(settings.model_dir)) if bundled_llm.is_assembled(settings.model_dir)
            else ("packages installed, not assembled yet" if bundled_llm.parts_installed() else "not installed"),
            "runtime": local.missing_runtime() or "llama-cpp-python installed",
            "shared_server": shared["base_url"] if shared else None}
    if args.json:
        _print_json(info)
    else:
        for key, value in info.items():
            print(f"{key:>14}: {value if value is not None else '-'}")
    return EXIT_OK


def cmd_ui(args: argparse.Namespace) -> int:
    from rag.ui.app import main as ui_main  # the top layer, and Gradio: loaded only for this command

    argv = [f"--{name}={value}" for name in ("host", "port", "index") if (value := getattr(args, name)) is not None]
    return ui_main(argv)


def cmd_feedback(args: argparse.Namespace) -> int:
    """``rag feedback export``: the rated answers of the chat UI as JSON lines, for evaluation."""
    from pathlib import Path

    from rag.conversations import ConversationStore, default_path

    path = Path(args.db).expanduser() if args.db else default_path(os.environ)
    store = ConversationStore(path, create=False)  # a missing file is an error, not a new empty database
    if args.out:
        out = Path(args.out).expanduser()
        try:
            with out.open("w", encoding="utf-8") as handle:
                lines = store.export_feedback(handle)
        except OSError as exc:
            print(f"error: cannot write {safe(out)}: {safe(exc.strerror or exc)}", file=sys.stderr)
            return EXIT_ERROR
    else:
        lines = store.export_feedback(sys.stdout)
        sys.stdout.flush()
    print(f"exported {lines} rated answer{'s' if lines != 1 else ''} from {safe(path)}"
          + (f" to {safe(args.out)}" if args.out else ""), file=sys.stderr)
    return EXIT_OK


# ---- parser ----
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--index", metavar="DIR", help="index folder (default: $RAG_INDEX or ./index)")
    common.add_argument("--json", action="store_true", help="print machine-readable JSON only")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    common.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")

    parser = argparse.ArgumentParser(prog="rag", description="Cited answers from news articles.")
    parser.add_argument("--version", action="version", version=f"rag {rag.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("ingest", parents=[common], help="add files/folders, web pages or feeds to the index")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help=".txt .md .html .json .jsonl .csv files or folders, or http(s) URLs of article pages or "
                        "RSS/Atom feeds (each entry's page is fetched)")
    p.add_argument("--sample", action="store_true", help="also ingest the bundled sample corpus")
    p.add_argument("--if-empty", action="store_true", help="do nothing if the index already holds articles")
    p.add_argument("--ray", nargs="?", const=True, default=None, metavar="ADDRESS",
                   help="read, chunk and embed on Ray (pip install 'rag-news[ray]'): a local Ray without ADDRESS "
                        "(or $RAY_ADDRESS), else the cluster this machine is a node of: auto or HEAD:6379")
    p.add_argument("--ray-actors", type=whole_number(1), default=None, metavar="N",
                   help="embedding actors on Ray (default: the cluster's CPUs but one)")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("watch", parents=[common], help="poll RSS/Atom feeds, add new and changed articles",
                       description="Polls each feed (conditional GET: an unchanged feed costs one request), "
                                   "ingests entries that are new or changed, and logs each round. Feed state is "
                                   "kept in feeds.sqlite3 in the index folder. Ctrl-C stops.")
    p.add_argument("feeds", nargs="+", metavar="FEED", help="http(s) URL of an RSS or Atom feed")
    p.add_argument("--every", default="15m", help="time between rounds: 30s, 15m, 1h (default 15m)")
    p.add_argument("--once", action="store_true", help="one round, then exit (for cron and tests)")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("search", parents=[common], help="show the passages most similar to a query")
    p.add_argument("query")
    p.add_argument("--k", type=whole_number(1), default=5, help="number of passages (default 5)")
    p.add_argument("--mode", choices=RETRIEVAL_MODES, default="hybrid", help="retrieval mode")
    _filter_args(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("list", parents=[common], help="list indexed articles, newest first")
    p.add_argument("--limit", type=whole_number(0), default=None, help="at most N articles")
    p.add_argument("--offset", type=whole_number(0), default=0, help="skip the first N")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("delete", parents=[common], help="remove articles by id")
    p.add_argument("ids", nargs="+", metavar="ID")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("stats", parents=[common], help="counts, model and dates of the index")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("upgrade", parents=[common], help="rewrite an index made by an older version in today's format")
    p.set_defaults(func=cmd_upgrade)

    p = sub.add_parser("migrate", parents=[common],
                       help="copy a FAISS index into Milvus without embedding again (a new index folder)")
    p.add_argument("--to", required=True, metavar="URI",
                   help="milvus://HOST:PORT[/DB] (a server; token in RAG_MILVUS_TOKEN), milvus:PATH (a Milvus Lite "
                        "file) or milvus (Lite, inside the new folder)")
    p.add_argument("--into", metavar="FOLDER", default=None,
                   help="the new index folder (default: the index folder's name + '-milvus')")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("ask", parents=[common], help="answer a question with cited sources")
    p.add_argument("question")
    p.add_argument("--k", type=whole_number(1), default=5, help="passages shown to the generator (default 5)")
    p.add_argument("--generator", choices=GENERATOR_NAMES,
                   help="default ($RAG_GENERATOR or auto): openai when OPENAI_BASE_URL/OPENAI_API_KEY is set, "
                        "else the local model when it is installed, else extractive")
    p.add_argument("--model", help="LLM model name (default: $RAG_LLM_MODEL)")
    p.add_argument("--mode", choices=RETRIEVAL_MODES, default="hybrid", help="retrieval mode")
    _filter_args(p)
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("llm", parents=[common], help="the answer generator: status, bundled model, shared server",
                       description="status: which generator answers and why; install: assemble the bundled model "
                                   "from its packages (sha256 checked); start/stop: a local model server that "
                                   "outlives the command, so repeated 'rag ask' calls skip the model load")
    p.add_argument("action", nargs="?", default="status", choices=["status", "install", "start", "stop"])
    p.set_defaults(func=cmd_llm)

    p = sub.add_parser("ui", help="start the chat UI in the browser (same as python app.py)")
    p.add_argument("--index", metavar="DIR", help="index folder (default: $RAG_INDEX or ./index)")
    p.add_argument("--host", help="address to listen on (default: $RAG_UI_HOST or 127.0.0.1)")
    p.add_argument("--port", type=whole_number(1), help="port to listen on (default: $RAG_UI_PORT or 7860)")
    p.set_defaults(func=cmd_ui, verbose=0)

    p = sub.add_parser("feedback", help="the thumbs up/down given in the chat UI",
                       description="export: every rated answer (question, conversation so far, answer, passages, "
                                   "citations, rating, comment) as one JSON line each, for evaluation")
    p.add_argument("action", choices=["export"])
    p.add_argument("--db", metavar="PATH", help="the conversations database (default: $RAG_CONVERSATIONS or "
                                               "$XDG_DATA_HOME/rag-news/conversations.sqlite3)")
    p.add_argument("--out", metavar="FILE", help="write the JSON lines to FILE (default: stdout)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    p.set_defaults(func=cmd_feedback)

    from rag.evaluate.cli import register  # a layer above answer(), like this CLI

    register(sub, common)
    return parser


def _filter_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", action="append", help="only this source (repeatable)")
    p.add_argument("--language", action="append", help="only this language code (repeatable)")
    p.add_argument("--since", help="published on or after DATE (YYYY-MM-DD)")
    p.add_argument("--until", help="published on or before DATE (YYYY-MM-DD)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return int(args.func(args))
    except RagError as exc:
        print(f"error: {safe(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
