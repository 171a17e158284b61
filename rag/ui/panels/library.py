"""Adding articles from the browser (upload, progress, report) and the index's
statistics and source list."""

from __future__ import annotations

import logging
import queue
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

import rag
from rag.ui.base import UIContext, friendly
from rag.ui.render import _date, esc, message_html, progress_text, report_html, safe_name

log = logging.getLogger(__name__)

UPLOAD_TYPES = (".txt", ".md", ".markdown", ".html", ".htm", ".json", ".jsonl", ".ndjson", ".csv", ".tsv")
MAX_UPLOAD_FILES = 100


class LibraryPanel:
    def __init__(self, ctx: UIContext) -> None:
        self.ctx = ctx

    # ---- uploading
    def upload(self, files: Sequence[Any] | None) -> Iterator[tuple[str, str, Any, Any]]:
        """Index uploaded files: yields (status HTML, stats HTML, source filter update, file box update)."""
        keep = gr.skip()
        try:
            paths = [Path(str(getattr(f, "name", f))) for f in (files or []) if f]
            if not paths:
                yield message_html("error", "Choose one or more files first."), keep, keep, keep
                return
            yield message_html("busy", f"Checking {len(paths)} file(s)…"), keep, keep, keep
            folder = Path(tempfile.mkdtemp(prefix="rag-upload-"))
            rejected, names = self._stage(paths, folder)
            if not names:
                shutil.rmtree(folder, ignore_errors=True)
                yield (self.ctx.scrub(report_html(None, rejected, names, folder)), self.stats_html(),
                       self.source_update(), keep)
                return
            events: queue.Queue[tuple[str, Any]] = queue.Queue()
            worker = threading.Thread(target=self._ingest_worker, args=(names, folder, events),
                                      name="rag-upload", daemon=True)
            worker.start()
            while True:
                kind, value = events.get()
                if kind == "progress":
                    stage, done, total = value
                    yield message_html("busy", progress_text(stage, done, total)), keep, keep, keep
                    continue
                if kind == "error":
                    yield message_html("error", self.ctx.scrub(friendly(value))), self.stats_html(), keep, keep
                    return
                yield (self.ctx.scrub(report_html(value, rejected, names, folder)), self.stats_html(),
                       self.source_update(), None)
                return
        except Exception as exc:  # the callback edge
            log.exception("upload failed")
            yield message_html("error", self.ctx.scrub(friendly(exc))), keep, keep, keep

    def _stage(self, paths: list[Path], folder: Path) -> tuple[list[tuple[str, str]], dict[Path, str]]:
        """Copy acceptable uploads into ``folder`` under sanitised names.
        Returns (rejected (name, reason), {copied path: name shown})."""
        limit = self.ctx.ui.upload_max_mb * 1_000_000
        rejected: list[tuple[str, str]] = []
        names: dict[Path, str] = {}
        used: set[str] = set()
        for n, src in enumerate(paths):
            shown = safe_name(src.name)
            if n >= MAX_UPLOAD_FILES:
                rejected.append((shown, f"more than {MAX_UPLOAD_FILES} files in one upload"))
                continue
            suffix = Path(shown).suffix.lower()
            if suffix not in UPLOAD_TYPES:
                reason = f"not an accepted file type ({suffix or 'no extension'}); accepted: {', '.join(UPLOAD_TYPES)}"
                rejected.append((shown, reason))
                continue
            try:
                size = src.stat().st_size
                if not src.is_file():
                    raise OSError("not a regular file")
            except OSError:
                rejected.append((shown, "the uploaded file could not be read"))
                continue
            if size > limit:
                rejected.append((shown, f"too large: {size / 1e6:.1f} MB > limit {self.ctx.ui.upload_max_mb:g} MB"))
                continue
            name, i = shown, 1
            while name.lower() in used:
                i += 1
                name = f"{Path(shown).stem}-{i}{Path(shown).suffix}"
            used.add(name.lower())
            target = folder / name
            shutil.copyfile(src, target)
            names[target] = name
        return rejected, names

    def _ingest_worker(self, names: dict[Path, str], folder: Path, events: queue.Queue[tuple[str, Any]]) -> None:
        """Runs in a thread so the handler can stream progress. Removes the
        temporary folder whatever happens (also when the browser went away),
        before it reports the result."""
        result: tuple[str, Any]
        try:
            # Articles are recorded under "upload/<name>", not the temporary path, so
            # uploading an edited file again updates its article.
            report = self.ctx.index.ingest(list(names), progress=lambda s, d, t: events.put(("progress", (s, d, t))),
                                       names={str(path): f"upload/{name}" for path, name in names.items()})
            result = ("done", report)
        except Exception as exc:
            if isinstance(exc, rag.RagError):
                log.warning("upload ingest failed: %s", exc)
            else:
                log.exception("upload ingest failed")
            result = ("error", exc)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        events.put(result)

    # ---- index statistics
    def stats_html(self) -> str:
        try:
            s = self.ctx.index.stats().to_dict()
        except Exception as exc:
            log.exception("index stats failed")
            return message_html("error", f"Index statistics are unavailable: {friendly(exc)}")
        parts = [f"<b>{s.get('articles', 0):,}</b> articles", f"<b>{s.get('chunks', 0):,}</b> chunks",
                 f"embedding model <code>{esc(s.get('embedding_model', '?'))}</code>"]
        if s.get("updated"):
            parts.append(f"last update {esc(str(s['updated'])[:19].replace('T', ' '))}")
        if s.get("published_from") or s.get("published_to"):
            first, last = _date(s.get("published_from")), _date(s.get("published_to"))
            parts.append(f"articles dated {esc(first)} – {esc(last)}")
        if s.get("sources"):
            parts.append(f"{len(s['sources'])} sources")
        return self.ctx.scrub(f'<div class="rag-stats" id="rag-stats">{" · ".join(parts)}</div>')

    def source_choices(self) -> list[str]:
        try:
            return sorted((s for s in self.ctx.index.stats().sources if s), key=str.lower)
        except Exception:
            log.exception("index stats failed")
            return []

    def source_update(self) -> Any:
        return gr.Dropdown(choices=self.source_choices())

    def refresh(self) -> tuple[str, Any]:
        return self.stats_html(), self.source_update()


@dataclass(frozen=True)
class LibraryLayout:
    files: gr.File
    add: gr.Button
    status: gr.HTML


def layout(panel: LibraryPanel) -> LibraryLayout:
    with gr.Accordion("Add articles", open=False, elem_id="upload-box"):
        gr.Markdown(f"Files: {', '.join(UPLOAD_TYPES)} — at most {panel.ctx.ui.upload_max_mb:g} MB each. "
                    "A .txt/.md/.html file is one article; .json/.jsonl/.csv hold many "
                    "(fields: text, title, url, source, published_at, …).")
        files = gr.File(file_count="multiple", label="Article files", elem_id="upload")
        add = gr.Button("Add to index", variant="primary", elem_id="add")
        status = gr.HTML("", elem_id="upload-status")
    return LibraryLayout(files, add, status)


def wire(panel: LibraryPanel, demo: gr.Blocks, parts: LibraryLayout, stats: gr.HTML,
         source_filter: gr.Dropdown) -> None:
    # Uploads go one at a time, in their own group: they never hold up questions.
    parts.add.click(panel.upload, [parts.files], [parts.status, stats, source_filter, parts.files],
                    concurrency_limit=1, concurrency_id="ingest", show_progress="minimal", api_visibility="private")
    demo.load(panel.refresh, None, [stats, source_filter], api_visibility="private")
