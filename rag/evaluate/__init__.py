"""Measure the pipeline on public datasets (``rag eval DATASET``).

    from rag.evaluate import EvalOptions, render, run_eval
    report = run_eval("xquad", rag.Settings.from_env(), EvalOptions(modes=("dense", "hybrid")))
    print(render(report))

One adapter per dataset (``xquad``, ``multihop``, ``rgb``) builds the corpus,
which is indexed once into a cache folder (``cache``), and scores runs with
the pure functions of ``metrics``."""

from rag.evaluate.base import Adapter, EvalOptions, RunResult, RunSpec
from rag.evaluate.errors import DatasetFormatError, DatasetNotFoundError, EvalError, EvalIndexError
from rag.evaluate.report import render
from rag.evaluate.runner import ADAPTERS, Report, datasets_dir, run_eval

__all__ = ["ADAPTERS", "Adapter", "DatasetFormatError", "DatasetNotFoundError", "EvalError", "EvalIndexError",
           "EvalOptions", "Report", "RunResult", "RunSpec", "datasets_dir", "render", "run_eval"]
