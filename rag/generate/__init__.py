"""Answer generators, chosen by name from ``GENERATORS``.

``auto`` (the default) picks, in order: the openai backend when
OPENAI_BASE_URL or OPENAI_API_KEY is set; the local model when it can run
here (llama-cpp-python and the model are installed); else the extractive
generator, which needs no LLM."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rag.embed import Embedder
from rag.errors import ConfigError
from rag.generate.base import REFUSAL, GenerationRequest, Generator, Turn, history_turns
from rag.redact import redact_url
from rag.settings import Settings


def _openai(settings: Settings, embedder: Embedder) -> Generator:
    from rag.generate.openai_chat import openai_generator

    return openai_generator(settings)


def _extractive(settings: Settings, embedder: Embedder) -> Generator:
    from rag.generate.extractive import ExtractiveGenerator

    return ExtractiveGenerator(embedder)


def _local(settings: Settings, embedder: Embedder) -> Generator:
    from rag.generate.local import local_generator

    return local_generator(settings)


#: Generator name -> factory. Add a backend by adding a file and a line here.
GENERATORS: dict[str, Callable[[Settings, Embedder], Generator]] = {
    "openai": _openai,
    "extractive": _extractive,
    "local": _local,
}


def local_unavailable(settings: Settings) -> str | None:
    """Why the local model cannot run here (None: it can)."""
    from rag.generate.local import unavailable_reason

    return unavailable_reason(settings)


def resolve(settings: Settings, name: str | None = None) -> tuple[str, str | None]:
    """(the backend ``name`` stands for, and why ``auto`` skipped the local model, if it did)."""
    name = name or settings.generator
    if name != "auto":
        return name, None
    if settings.openai_base_url or settings.openai_api_key:
        return "openai", None
    reason = local_unavailable(settings)
    return ("extractive", reason) if reason else ("local", None)


@dataclass(frozen=True)
class GeneratorStatus:
    """Which generator answers and whether it can: ``state`` is "ready", "loading"
    (the local model is starting), "idle" (not started yet) or "unavailable"."""

    backend: str  # "openai", "local" or "extractive"
    state: str
    detail: str  # for people: the model, what is loading, or why not


def generator_status(settings: Settings, start: bool = False) -> GeneratorStatus:
    """The status of the generator ``settings.generator`` stands for; ``start=True``
    begins loading the local model in the background (the UI does so at launch)."""
    backend, skipped = resolve(settings)
    if backend == "openai":
        # Name the server by its redacted URL: userinfo or a key in the query is a credential.
        where = (f"the OpenAI-compatible server at {redact_url(settings.openai_base_url, settings)}"
                 if settings.openai_base_url else "the OpenAI API")
        return GeneratorStatus("openai", "ready", f"model {settings.llm_model} on {where}")
    if backend == "local":
        from rag.generate.local import runtime, unavailable_reason

        reason = unavailable_reason(settings)
        if reason:
            return GeneratorStatus("local", "unavailable", reason)
        local = runtime(settings)
        if start:
            local.start()
        status = local.status()
        return GeneratorStatus("local", status.state, f"{status.model}: {status.detail}" if status.detail
                               else status.model)
    why = f"no local model: {skipped}" if skipped else "chosen in the settings"
    return GeneratorStatus("extractive", "ready", f"quotes the best sentences ({why})")


def choose_generator(settings: Settings, embedder: Embedder, name: str | None = None) -> Generator:
    """The generator ``name`` (default: settings.generator) stands for; see the module docstring."""
    backend, _ = resolve(settings, name)
    factory = GENERATORS.get(backend)
    if factory is None:
        raise ConfigError(f"unknown generator {backend!r}; choose one of auto, {', '.join(GENERATORS)}")
    return factory(settings, embedder)


__all__ = ["GENERATORS", "REFUSAL", "GenerationRequest", "Generator", "GeneratorStatus", "Turn",
           "choose_generator", "generator_status", "history_turns", "local_unavailable", "resolve"]
