"""The report as aligned plain-text tables."""

from __future__ import annotations

import os
from collections.abc import Sequence

from rag.evaluate.runner import Report


def fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> list[str]:
    """Columns padded to their widest cell; the first ``left`` columns are
    left-aligned, the rest (numbers) right-aligned."""
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i < left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def render(report: Report) -> str:
    s = report.settings
    counts = ", ".join(f"{v} {k}" for k, v in report.counts.items())
    out = [f"{report.dataset}: {report.title}",
           f"data: {report.data_dir} ({counts})",
           f"embedding model: {s['embed_model']}; answers: "
           + (f"{s['generator']}" + (f" ({s['llm_model']})" if s.get("llm_model") else "") + f", k={s['answer_k']}"
              if s["answers"] else "skipped"),
           ""]
    indexes = {r.index.get("folder"): r.index for r in report.runs}
    for folder, info in indexes.items():
        state = "reused" if info.get("reused") else f"built in {info.get('build_seconds', 0):.1f} s"
        out.append(f"index: {folder} ({state}; {info.get('articles')} articles, {info.get('chunks')} chunks)")
    out.append("")
    headers = ["chunks", "mode", "rerank", *(h for _, h in report.columns), "seconds"]
    rows = [[f"{r.spec.chunk_tokens}/{r.spec.chunk_overlap}", r.spec.mode, r.spec.reranker or "-",
             *(fmt(r.metrics.get(k)) for k, _ in report.columns), f"{r.timings.get('total_seconds', 0):.1f}"]
            for r in report.runs]
    out += table(headers, rows, left=3)
    if report.type_columns and any(r.by_type for r in report.runs):
        out += ["", "by question type:"]
        headers = ["chunks", "mode", "rerank", "type", *(h for _, h in report.type_columns)]
        rows = [[f"{r.spec.chunk_tokens}/{r.spec.chunk_overlap}", r.spec.mode, r.spec.reranker or "-", qtype,
                 *(fmt(values.get(k)) for k, _ in report.type_columns)]
                for r in report.runs for qtype, values in r.by_type.items()]
        out += table(headers, rows, left=4)
    if report.notes:
        out += ["", *(f"note: {n}" for n in report.notes)]
    out.append(f"total: {report.seconds:.1f} s (embedding the questions once: {report.query_seconds:.1f} s; "
               f"the rows' seconds exclude it); load average {report.load[0]:.1f} -> {report.load[1]:.1f} "
               f"on {os.cpu_count()} cores")
    return "\n".join(out)
