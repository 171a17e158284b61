"""``rag eval DATASET``: wired into the ``rag`` command by ``register``.

    from rag.evaluate.cli import register
    register(sub, common)   # sub: the parser's subparsers, common: the shared options
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rag.console import safe, whole_number
from rag.errors import RagError
from rag.evaluate.base import EvalOptions
from rag.evaluate.runner import ADAPTERS, run_eval
from rag.settings import GENERATOR_NAMES, RETRIEVAL_MODES as MODES
from rag.settings import Settings

EXIT_OK, EXIT_ERROR = 0, 1

DESCRIPTION = """\
Measure retrieval (and answers) on a public dataset of ../shared/datasets:
  xquad         English questions over German paragraphs: recall@1/5/10, MRR@10,
                answer contains gold / token F1
  multihop-rag  MultiHop-RAG sample: Hits@4/10, MAP@10, MRR@10 per question type,
                refusal on unanswerable questions, accuracy (with an LLM)
  rgb           RGB counterfactual split: answer-passage recall@5, answers holding
                the true or the counterfactual answer
The corpus is indexed once into a cache folder (--index DIR, default
~/.cache/rag/eval) and reused while corpus, embedding model and chunking are
unchanged; your own index is never touched."""


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("eval", parents=[common], help="measure retrieval and answers on a public dataset",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", choices=sorted(ADAPTERS), metavar="DATASET",
                   help=f"one of: {', '.join(sorted(ADAPTERS))}")
    p.add_argument("--data", metavar="DIR",
                   help="the datasets folder (default: $RAG_SHARED/datasets or <repo>/../shared/datasets)")
    p.add_argument("--modes", type=_modes, default=("hybrid",), metavar="LIST",
                   help="retrieval modes, comma-separated: one row each (default: hybrid)")
    p.add_argument("--rerank", action="append", default=[], metavar="MODEL",
                   help="also run every mode with this sentence-transformers CrossEncoder (repeatable)")
    p.add_argument("--chunk-tokens", type=_sizes, default=(), metavar="LIST",
                   help="one index per chunk size, e.g. 120,200,300 (overlap min(40, n/4); "
                        "default: $RAG_CHUNK_TOKENS)")
    p.add_argument("--limit", type=whole_number(1), metavar="N",
                   help="only N questions, evenly spread over the dataset")
    p.add_argument("--no-answers", action="store_true", help="skip generating answers (retrieval metrics only)")
    p.add_argument("--answer-k", type=whole_number(1), default=5, metavar="K", help="passages per answer (default 5)")
    p.add_argument("--generator", choices=GENERATOR_NAMES,
                   help="answer generator (default auto: openai when configured, else the local model when "
                        "installed, else extractive)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the cached evaluation index")
    p.add_argument("--save-answers", metavar="FILE", type=Path,
                   help="append every answer (text, citations, flags, gold, seconds) to FILE as JSON lines")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from rag.evaluate.report import render

    try:
        settings = _settings(args)
        show = settings.progress if settings.progress is not None else sys.stderr.isatty()
        options = EvalOptions(
            modes=tuple(args.modes), rerankers=tuple(dict.fromkeys(args.rerank)),
            chunk_tokens=tuple(args.chunk_tokens), answers=not args.no_answers, limit=args.limit,
            answer_k=args.answer_k, generator=args.generator, rebuild=args.rebuild,
            cache_dir=Path(args.index).expanduser() if args.index else None, progress=bool(show),
            answers_log=args.save_answers)
        report = run_eval(args.dataset, settings, options, args.data)
    except RagError as exc:  # EvalError (dataset missing or malformed), ConfigError, index errors...
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        json.dump(report.to_dict(), sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        print(render(report))
    return EXIT_OK


def _settings(args: argparse.Namespace) -> Settings:
    # --index here is the evaluation cache, not the index to answer from
    return Settings.for_command(quiet=args.quiet, json_output=args.json)


def _modes(raw: str) -> tuple[str, ...]:
    modes = tuple(dict.fromkeys(m.strip() for m in raw.split(",") if m.strip()))
    bad = [m for m in modes if m not in MODES]
    if not modes or bad:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(MODES)}; got {safe(raw)!r}")
    return modes


def _sizes(raw: str) -> tuple[int, ...]:
    try:
        sizes = tuple(dict.fromkeys(int(x) for x in raw.split(",") if x.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated token counts, e.g. 120,200,300; got {safe(raw)!r}")
    if not sizes or min(sizes) < 16:
        raise argparse.ArgumentTypeError(f"chunk sizes must be at least 16 tokens; got {safe(raw)!r}")
    return sizes
