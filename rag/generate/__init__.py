"""Answer generators, chosen by name from ``GENERATORS``."""

from __future__ import annotations

from collections.abc import Callable

from rag.embed import Embedder
from rag.errors import ConfigError
from rag.generate.base import GenerationError, GenerationRequest, Generator, Turn, history_turns
from rag.settings import Settings


def _openai(settings: Settings, embedder: Embedder) -> Generator:
    from rag.generate.openai_chat import OpenAIGenerator

    return OpenAIGenerator(settings)


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


def choose_generator(settings: Settings, embedder: Embedder, name: str | None = None) -> Generator:
    """``auto``: the openai backend when OPENAI_BASE_URL or OPENAI_API_KEY is set, else extractive."""
    name = name or settings.generator
    if name == "auto":
        name = "openai" if (settings.openai_base_url or settings.openai_api_key) else "extractive"
    factory = GENERATORS.get(name)
    if factory is None:
        raise ConfigError(f"unknown generator {name!r}; choose one of auto, {', '.join(GENERATORS)}")
    return factory(settings, embedder)


__all__ = ["GENERATORS", "GenerationError", "GenerationRequest", "Generator", "Turn", "choose_generator",
           "history_turns"]
