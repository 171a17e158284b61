"""Generator backend ``local``: a GGUF model served by llama.cpp's
OpenAI-compatible server (``llama-cpp-python[server]``) on 127.0.0.1, called
through the openai backend like any other server.

The default model is the bundled Qwen2.5-Coder-1.5B-Instruct
(``rag.generate.bundled_llm``); ``RAG_LOCAL_MODEL`` points at any other GGUF.

One server per process and model. ``LocalRuntime.start()`` assembles the model
if needed and starts the server in the background, so the UI can load it at
launch and show its state; ``generate`` waits for it. A server started by
``rag llm start`` outlives the command and is found through a state file in the
model folder, so repeated ``rag ask`` calls skip the model load.

Speed on a laptop: prompt processing dominates, so the server uses every core
(llama.cpp's server default is half of them) and keeps the evaluated tokens of
the fixed system prompt between questions; the prompt itself is kept short
(``RAG_CONTEXT_TOKENS``). Prompt-lookup decoding and flash attention were
measured and left off: both were slower here (BENCHMARKS.md)."""

from __future__ import annotations

import atexit
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rag.errors import ConfigError
from rag.generate import bundled_llm
from rag.errors import GenerationError
from rag.generate.base import GenerationRequest, Turn
from rag.generate.openai_chat import OpenAIGenerator
from rag.settings import Settings

log = logging.getLogger(__name__)
_runtimes: dict[tuple[str, ...], LocalRuntime] = {}
_lock = threading.Lock()
STATE_FILE = "llm-server.json"
LOG_FILE = "llm-server.log"
BUILD_LOG = "llama-cpp-build.log"  # written by the Makefile beside the venv's python
BUILD_PID = "llama-cpp-build.pid"  # the compiling process, while scripts/bootstrap.py waits for it
INSTALL_HINT = ('CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" '
                'pip install --no-cache-dir "llama-cpp-python[server]"')


@dataclass(frozen=True)
class LocalStatus:
    """What the local model is doing, for people: ``state`` is "idle" (not
    started), "loading", "ready" or "unavailable"; ``detail`` says what or why."""

    state: str
    model: str
    detail: str = ""


def missing_runtime() -> str | None:
    """Why llama-cpp-python's server cannot run here, or None when it can."""
    if importlib.util.find_spec("llama_cpp") is None:
        reason = "llama-cpp-python is not installed"
        build_log = Path(sys.prefix) / BUILD_LOG
        if _compiling(Path(sys.prefix) / BUILD_PID):
            return f"{reason} yet: it is being compiled in the background (about 6 min; log: {build_log})"
        if build_log.is_file():
            reason += f" (its build failed; see {build_log})"
        return f"{reason}; install it with: {INSTALL_HINT}"
    for module in ("uvicorn", "fastapi", "sse_starlette", "starlette_context"):
        if importlib.util.find_spec(module) is None:
            return f"llama-cpp-python's server extra is missing ({module}); install it with: {INSTALL_HINT}"
    return None


def _compiling(pid_file: Path) -> bool:
    """Whether the process named in ``pid_file`` (the background build) is still running."""
    try:
        os.kill(int(pid_file.read_text(encoding="ascii").strip()), 0)
    except (OSError, ValueError):  # no file, garbage, or the process is gone
        return False
    return True


def model_file(settings: Settings) -> tuple[Path, str, bool]:
    """(GGUF path, display name, whether it still has to be assembled from the bundled packages)."""
    if settings.local_model:
        path = Path(settings.local_model).expanduser()
        if not path.is_file():
            raise ConfigError(f"RAG_LOCAL_MODEL={settings.local_model!r} is not a file")
        return path, path.name, False
    path = bundled_llm.target(settings.model_dir)
    if bundled_llm.is_assembled(settings.model_dir):
        return path, bundled_llm.MODEL_NAME, False
    bundled_llm.part_paths()  # raises ModelPartsMissingError naming the missing packages
    return path, bundled_llm.MODEL_NAME, True


def unavailable_reason(settings: Settings) -> str | None:
    """Why the local generator cannot be used here (None: it can). Cheap: no model is loaded."""
    reason = missing_runtime()
    if reason:
        return reason
    try:
        model_file(settings)
    except ConfigError as exc:
        return str(exc)
    return None


def server_command(settings: Settings, model: Path, port: int) -> list[str]:
    threads = str(settings.local_threads or os.cpu_count() or 1)
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
               "--port", str(port), "--n_ctx", str(settings.local_context), "--model_alias", "local",
               "--n_threads", threads, "--n_threads_batch", threads, "--verbose", "False"]
    return command


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serving(base_url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=timeout) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


# ---- a server shared between processes (rag llm start / stop / status)
def shared_server(settings: Settings) -> dict[str, object] | None:
    """The state of a server started by ``rag llm start`` that is up and serves
    the configured model, else None."""
    path = Path(settings.model_dir) / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        model, _, _ = model_file(settings)
    except (OSError, ValueError, ConfigError):
        return None
    if not isinstance(state, dict) or state.get("model") != str(model):
        return None
    if not _serving(str(state.get("base_url"))):
        return None
    return state


def start_shared(settings: Settings, timeout: float = 300.0) -> dict[str, object]:
    """Start a server that outlives this process (``rag llm start``); returns its state."""
    running = shared_server(settings)
    if running:
        return running
    reason = missing_runtime()
    if reason:
        raise ConfigError(reason)
    model, _, pending = model_file(settings)
    if pending:
        bundled_llm.assemble(settings.model_dir)
    port = _free_port()
    folder = Path(settings.model_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOG_FILE, "ab") as out:
        proc = subprocess.Popen(server_command(settings, model, port), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + timeout
    while not _serving(base_url):
        if proc.poll() is not None:
            raise GenerationError(f"the local model server exited (code {proc.returncode}); see {folder / LOG_FILE}")
        if time.monotonic() > deadline:
            proc.terminate()
            raise GenerationError(f"the local model server did not start within {timeout:g} s")
        time.sleep(0.3)
    state: dict[str, object] = {"pid": proc.pid, "port": port, "base_url": base_url, "model": str(model),
                                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    tmp = folder / f".{STATE_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, folder / STATE_FILE)
    return state


def stop_shared(settings: Settings) -> bool:
    """Stop the server ``rag llm start`` started; False when none was running."""
    path = Path(settings.model_dir) / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        pid = int(state["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    path.unlink(missing_ok=True)
    try:
        os.kill(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return False
    return True


# ---- the per-process runtime
class LocalRuntime:
    """The local model of one process: started once in the background, then
    ready (or unavailable, with the reason)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._status = LocalStatus("idle", self._display_name())
        self.base_url: str | None = None
        self.error: str | None = None

    def _display_name(self) -> str:
        return Path(self.settings.local_model).name if self.settings.local_model else bundled_llm.MODEL_NAME

    def status(self) -> LocalStatus:
        return self._status

    def start(self) -> LocalRuntime:
        """Begin loading in the background (once); returns at once."""
        with _lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="rag-local-llm", daemon=True)
                self._status = LocalStatus("loading", self._display_name(), "starting")
                self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> str:
        """The server's base URL once it is up; GenerationError if it cannot start."""
        self.start()
        if not self._ready.wait(timeout if timeout is not None else self.settings.local_startup_timeout):
            raise GenerationError("the local model is still loading; try again in a moment")
        if self.error or not self.base_url:
            raise GenerationError(f"the local model is unavailable: {self.error}")
        return self.base_url

    def _run(self) -> None:
        name = self._display_name()
        try:
            reason = missing_runtime()
            if reason:
                raise ConfigError(reason)
            shared = shared_server(self.settings)
            if shared:
                self.base_url = str(shared["base_url"])
                self._status = LocalStatus("ready", name, f"shared server at {self.base_url} (rag llm start)")
                return
            model, _, pending = model_file(self.settings)
            if pending:
                def progress(done: int, total: int) -> None:
                    self._status = LocalStatus("loading", name, f"assembling the model file ({100 * done // total}%)")
                bundled_llm.assemble(self.settings.model_dir, progress)
            self._status = LocalStatus("loading", name, "starting the llama.cpp server")
            self.base_url = self._serve(model)
            self._status = LocalStatus("ready", name, f"llama.cpp server at {self.base_url}")
            log.info("local model %s served at %s", name, self.base_url)
        except Exception as exc:  # any failure is reported through status() and wait()
            self.error = str(exc) if isinstance(exc, (ConfigError, GenerationError)) else f"{type(exc).__name__}: {exc}"
            self._status = LocalStatus("unavailable", name, self.error)
            log.warning("local model unavailable: %s", self.error)
        finally:
            self._ready.set()

    def _serve(self, model: Path) -> str:
        port = _free_port()
        base_url = f"http://127.0.0.1:{port}/v1"
        folder = Path(self.settings.model_dir)
        folder.mkdir(parents=True, exist_ok=True)
        # The server logs a lot; a pipe nobody reads would fill up and stall it.
        log_path = folder / f"llm-server-{os.getpid()}.log"
        with open(log_path, "wb") as out:
            self._proc = subprocess.Popen(server_command(self.settings, model, port), stdout=out,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        atexit.register(self.stop)
        deadline = time.monotonic() + self.settings.local_startup_timeout
        while not _serving(base_url, timeout=1.0):
            if self._proc.poll() is not None:
                last = log_path.read_text(errors="replace").strip().splitlines()[-1:]
                raise GenerationError(f"the llama.cpp server exited (code {self._proc.returncode}): "
                                      f"{' '.join(last)[-300:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise GenerationError(f"the llama.cpp server did not start within "
                                      f"{self.settings.local_startup_timeout:g} s")
            time.sleep(0.2)
        log_path.unlink(missing_ok=True)  # started fine: nothing worth keeping
        return base_url

    def stop(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def runtime(settings: Settings) -> LocalRuntime:
    """This process's runtime for the configured model (created, not started)."""
    key = (str(settings.local_model), str(settings.model_dir), str(settings.local_threads),
           str(settings.local_context))
    with _lock:
        found = _runtimes.get(key)
        if found is None:
            found = _runtimes[key] = LocalRuntime(settings)
    return found


class LocalGenerator:
    """The openai backend, pointed at the local server once it is up."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._runtime = runtime(settings).start()
        self.name = f"local:{self._runtime.status().model}"
        self._client: OpenAIGenerator | None = None

    def _generator(self) -> OpenAIGenerator:
        if self._client is None:
            base_url = self._runtime.wait()
            local = self._settings.replace(openai_base_url=base_url, openai_api_key="local", llm_model="local",
                                           llm_timeout=self._settings.local_timeout, llm_max_retries=0)
            self._client = OpenAIGenerator(local, max_tokens=self._settings.local_max_tokens)
        return self._client

    def generate(self, request: GenerationRequest, stream: bool = False) -> Iterator[str]:
        return self._generator().generate(request, stream)

    def rewrite(self, history: tuple[Turn, ...], question: str) -> str:
        return self._generator().rewrite(history, question)


def local_generator(settings: Settings) -> LocalGenerator:
    reason = unavailable_reason(settings)
    if reason:
        raise ConfigError(f"the local generator is unavailable: {reason}")
    return LocalGenerator(settings)
