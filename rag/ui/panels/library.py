"""Adding articles from the browser (upload, progress, report) and the index's
statistics and source list."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

import rag

from rag.errors import FetchError
from rag.ingest.fetch import check_url
from rag.ui.base import UIContext, friendly
from rag.ui.ingest_job import IngestJob, JobProgress
from rag.ui.panels.llm import LOOPBACK
from rag.ui.render import date_only, esc, message_html, progress_html, report_html, safe_name

log = logging.getLogger(__name__)

POLL_S = 0.5  # how often a quiet upload refreshes its ETA and looks for Cancel
UPLOAD_TYPES = (".txt", ".md", ".markdown", ".html", ".htm", ".json", ".jsonl", ".ndjson", ".csv", ".tsv")
MAX_UPLOAD_FILES = 100
URLS_OFF = ("Adding from a web address is off: this UI is reachable from other machines without a login, and the "
            "server would fetch any address typed here. Set RAG_UI_USER and RAG_UI_PASSWORD, or use 'rag ingest URL'.")


class LibraryPanel:
    def __init__(self, ctx: UIContext) -> None:
        self.ctx = ctx
        self._stops: dict[str, threading.Event] = {}  # the running upload of each tab
        #: The server fetches whatever address a browser types: only where the UI is private
        #: (loopback) or behind its login, as for the LLM server (rag.ui.panels.llm).
        self.urls_allowed = ctx.ui.host in LOOPBACK or bool(ctx.ui.user and ctx.ui.password)

    # ---- uploading
    def upload(self, files: Sequence[Any] | None,
               request: gr.Request | None = None) -> Iterator[tuple[str, str, Any, Any]]:
        """Index uploaded files: yields (status HTML, stats HTML, source filter update, file box update)."""
        keep = gr.skip()
        folder: Path | None = None
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
                yield self.ctx.scrub(report_html(None, rejected, names, folder)), *self.refresh(), keep
                return
            # Articles are recorded under "upload/<name>", not the temporary path, so
            # uploading an edited file again updates its article.
            names_shown = {str(path): f"upload/{name}" for path, name in names.items()}
            yield from self._job(list(names), names_shown, request,
                                 lambda report: report_html(report, rejected, names, folder), None)
        except Exception as exc:  # the callback edge
            log.exception("upload failed")
            yield message_html("error", self.ctx.scrub(friendly(exc))), keep, keep, keep
        finally:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
            self._stops.pop(_tab(request), None)

    def _job(self, paths: list[Path | str], names: dict[str, str], request: gr.Request | None,
             show: Callable[[rag.IngestReport], str], cleared: Any) -> Iterator[tuple[str, str, Any, Any]]:
        """Run an IngestJob, yielding (status, stats, source filter, input box) as it goes;
        ``cleared`` is what the input box becomes once the job has a report."""
        keep = gr.skip()
        stop = self._stop_event(request)
        # A child process at lower priority: questions keep their speed while it embeds.
        # Leaving the block (done, cancelled, or the tab closed: Gradio closes this
        # generator) cancels a job still running, which leaves the index as it was.
        with IngestJob(self.ctx.index.settings, paths, names) as job:
            job.start()
            yield progress_html("starting", 0, 0, 0.0, None), keep, keep, keep
            for event in job.events(timeout=POLL_S):
                if stop.is_set():
                    job.cancel()
                    done = job.result
                    said = ("Cancelled: nothing was added, the index is as it was." if done and done.cancelled
                            else f"Cancelled. {done.error if done and done.error else ''}".strip())
                    yield message_html("ok" if done and done.cancelled else "warn", said), keep, keep, keep
                    return
                if isinstance(event, JobProgress):
                    yield (progress_html(event.stage, event.done, event.total, event.fraction, event.eta_s),
                           keep, keep, keep)
                    continue
                if event.error or event.report is None:
                    said = event.error or "the ingest ended without a report"
                    yield (message_html("error", self.ctx.scrub(f"Could not add the articles: {said}")),
                           self.stats_html(), keep, keep)
                    return
                yield self.ctx.scrub(show(event.report)), *self.refresh(), cleared
                return

    # ---- adding from the web
    def add_url(self, url: str | None, request: gr.Request | None = None) -> Iterator[tuple[str, str, Any, Any]]:
        """Index the article page or the RSS/Atom feed (every entry) at ``url``, in the same
        ingest job as uploads: yields (status HTML, stats HTML, source filter update, URL box update)."""
        keep = gr.skip()
        try:
            if not self.urls_allowed:
                yield message_html("error", URLS_OFF), keep, keep, keep
                return
            url = (url or "").strip()
            if not url:
                yield message_html("error", "Type the address of an article page or a feed first."), keep, keep, keep
                return
            try:
                url = check_url(url)  # never a local path: the box takes http(s) addresses only
            except FetchError as exc:
                yield message_html("error", self.ctx.scrub(str(exc))), keep, keep, keep
                return
            yield message_html("busy", self.ctx.scrub(f"Fetching {url}…")), keep, keep, keep
            yield from self._job([url], {}, request, lambda report: report_html(report, [], {}, None), "")
        except Exception as exc:  # the callback edge
            log.exception("adding %s failed", url)
            yield message_html("error", self.ctx.scrub(friendly(exc))), keep, keep, keep
        finally:
            self._stops.pop(_tab(request), None)

    def cancel(self, request: gr.Request | None = None) -> str:
        """The Cancel button: the running upload of this tab stops at its next progress step
        and says what became of the index."""
        stop = self._stops.get(_tab(request))
        if stop is None:
            return gr.skip()
        stop.set()
        return message_html("busy", "Cancelling…")

    def _stop_event(self, request: gr.Request | None) -> threading.Event:
        stop = threading.Event()
        self._stops[_tab(request)] = stop
        return stop

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

    # ---- index statistics
    def stats_html(self, stats: rag.IndexStats | None = None) -> str:
        """The line of index statistics (of ``stats`` when the caller already has them)."""
        try:
            s = (stats or self.ctx.index.stats()).to_dict()
        except Exception as exc:
            return _unavailable(exc)
        parts = [f"<b>{s.get('articles', 0):,}</b> articles", f"<b>{s.get('chunks', 0):,}</b> chunks",
                 f"embedding model <code>{esc(s.get('embedding_model', '?'))}</code>"]
        if s.get("updated"):
            parts.append(f"last update {esc(str(s['updated'])[:19].replace('T', ' '))}")
        if s.get("published_from") or s.get("published_to"):
            first, last = date_only(s.get("published_from")), date_only(s.get("published_to"))
            parts.append(f"articles dated {esc(first)} – {esc(last)}")
        if s.get("sources"):
            parts.append(f"{len(s['sources'])} sources")
        return self.ctx.scrub(f'<div class="rag-stats" id="rag-stats">{" · ".join(parts)}</div>')

    def source_choices(self, stats: rag.IndexStats | None = None) -> list[str]:
        try:
            return sorted((s for s in (stats or self.ctx.index.stats()).sources if s), key=str.lower)
        except Exception:
            log.exception("index stats failed")
            return []

    def refresh(self) -> tuple[str, Any]:
        """The statistics line and the source filter's choices, from one reading of the index."""
        try:
            stats = self.ctx.index.stats()
        except Exception as exc:
            return _unavailable(exc), gr.Dropdown(choices=[])
        return self.stats_html(stats), gr.Dropdown(choices=self.source_choices(stats))

@dataclass(frozen=True)
class LibraryLayout:
    files: gr.File
    add: gr.Button
    cancel: gr.Button
    status: gr.HTML
    url: gr.Textbox
    add_url: gr.Button


def layout(panel: LibraryPanel) -> LibraryLayout:
    with gr.Accordion("Add articles", open=False, elem_id="upload-box"):
        gr.Markdown(f"Files: {', '.join(UPLOAD_TYPES)} — at most {panel.ctx.ui.upload_max_mb:g} MB each. "
                    "A .txt/.md/.html file is one article; .json/.jsonl/.csv hold many "
                    "(fields: text, title, url, source, published_at, …).")
        files = gr.File(file_count="multiple", label="Article files", elem_id="upload")
        with gr.Row():
            add = gr.Button("Add to index", variant="primary", elem_id="add")
            cancel = gr.Button("Cancel upload", elem_id="cancel-upload")
        with gr.Row():
            url = gr.Textbox(label="Or an article page or RSS/Atom feed (each entry is fetched)", max_length=2000,
                             placeholder="https://…" if panel.urls_allowed else "off: the UI is public without a login",
                             interactive=panel.urls_allowed, elem_id="add-url-box", scale=4)
            add_url = gr.Button("Add from URL", elem_id="add-url", interactive=panel.urls_allowed, scale=1)
        status = gr.HTML("", elem_id="upload-status")
    return LibraryLayout(files, add, cancel, status, url, add_url)


def wire(panel: LibraryPanel, demo: gr.Blocks, parts: LibraryLayout, stats: gr.HTML,
         source_filter: gr.Dropdown) -> None:
    # Uploads go one at a time, in their own group: they never hold up questions.
    parts.add.click(panel.upload, [parts.files], [parts.status, stats, source_filter, parts.files],
                    concurrency_limit=1, concurrency_id="ingest", show_progress="minimal", api_visibility="private")
    for trigger in (parts.add_url.click, parts.url.submit):
        trigger(panel.add_url, [parts.url], [parts.status, stats, source_filter, parts.url], concurrency_limit=1,
                concurrency_id="ingest", show_progress="minimal", api_visibility="private")
    parts.cancel.click(panel.cancel, None, [parts.status], queue=False, api_visibility="private")
    demo.load(panel.refresh, None, [stats, source_filter], api_visibility="private")


def _tab(request: gr.Request | None) -> str:
    """Which browser tab an event came from (tests call the handlers without one)."""
    return getattr(request, "session_hash", None) or "-"


def _unavailable(exc: Exception) -> str:
    log.exception("index stats failed")
    return message_html("error", f"Index statistics are unavailable: {friendly(exc)}")
