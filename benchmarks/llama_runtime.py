"""llama.cpp knobs for the bundled model on this machine: threads, flash
attention, prompt-lookup decoding, and the system prompt kept evaluated.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/llama_runtime.py

In-process llama-cpp-python (the same library the server runs), the bundled
Qwen2.5-Coder-1.5B-Instruct Q4_K_M, the seed article as the source:

- prompt processing: tokens/s evaluating 400 tokens of the seed;
- generation: tokens/s answering the seed question (after the first token);
- first token / total for the chat request with the whole seed (~900 tokens),
  once cold and once with the same system prompt already evaluated.

The CPU features llama.cpp was built with are printed first (AVX2 only vs
AVX-512 VNNI changes prompt processing; see scripts/bootstrap.py)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine_line  # noqa: E402

QUESTION = "Which banks did Facebook contact?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", default="1,2")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(REPO))
    import llama_cpp
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

    import rag
    from rag.generate import bundled_llm
    from rag.generate.prompt import SYSTEM

    print(machine_line({"cpu_count": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2),
                        "llama_cpp": llama_cpp.__version__}))
    print(llama_cpp.llama_print_system_info().decode().strip())
    settings = rag.Settings.from_env(progress=False)
    model = bundled_llm.assemble(settings.model_dir)
    seed = (REPO / "rag" / "sample" / "facebook-banks-de.txt").read_text(encoding="utf-8")
    messages = [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"Sources:\n\n<source id=\"1\">\n{seed}\n</source>\n\n"
                                            f"Question: {QUESTION}\nAnswer in English."}]

    def chat(llm: llama_cpp.Llama, msgs: list[dict[str, str]]) -> tuple[float, float, int]:
        start, first, text = time.perf_counter(), None, ""
        for event in llm.create_chat_completion(msgs, temperature=0.1, max_tokens=120, stream=True):
            piece = event["choices"][0]["delta"].get("content")
            if piece:
                first = first if first is not None else time.perf_counter() - start
                text += piece
        total = time.perf_counter() - start
        return first or total, total, len(llm.tokenize(text.encode()))

    rows = []
    configs = [(int(t), False, 0) for t in args.threads.split(",")]
    top = max(int(t) for t in args.threads.split(","))
    configs += [(top, True, 0), (top, False, 10)]
    for threads, flash, lookup in configs:
        draft = LlamaPromptLookupDecoding(num_pred_tokens=lookup) if lookup else None
        llm = llama_cpp.Llama(str(model), n_ctx=4096, n_threads=threads, n_threads_batch=threads, flash_attn=flash,
                              draft_model=draft, logits_all=bool(lookup), verbose=False)
        tokens = llm.tokenize(seed.encode())[:400]
        llm.reset()
        start = time.perf_counter()
        llm.eval(tokens)
        prompt_rate = len(tokens) / (time.perf_counter() - start)
        llm.reset()
        cold_first, cold_total, n = chat(llm, messages)
        # The same system prompt, then another source and question: only the system prompt is reused.
        other_source = seed.split("\n\n", 1)[1]
        other = [messages[0], {"role": "user", "content": f"Sources:\n\n<source id=\"1\">\n{other_source}\n</source>"
                                                          f"\n\nQuestion: Who is Elisabeth Diana?\nAnswer in English."}]
        warm_first, warm_total, n2 = chat(llm, other)
        gen_rate = n / max(1e-6, cold_total - cold_first)
        label = f"threads={threads}" + (" flash_attn" if flash else "") + (f" prompt-lookup={lookup}" if lookup else "")
        rows.append((label, prompt_rate, gen_rate, cold_first, cold_total, warm_first, warm_total))
        del llm
    print(f"\n{'config':32} {'prompt tok/s':>12} {'gen tok/s':>9} {'first/total cold':>17} {'first/total warm':>17}")
    for label, p, g, cf, ct, wf, wt in rows:
        print(f"{label:32} {p:12.1f} {g:9.1f} {cf:8.2f}/{ct:<8.2f} {wf:8.2f}/{wt:<8.2f}")
    print("\nwarm = the next request, with the same system prompt but another source and question: llama.cpp "
          "keeps the evaluated system prompt, so only the rest is processed (the cold one had a shorter source)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
