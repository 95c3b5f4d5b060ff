"""Generation rounds against ``model.generate`` on the same prompts and lengths.

The ``generate`` items of a built-in suite (default ``standard``: chat prompts with verifiers,
16–128 new tokens) are compiled once; then, in one process and on the same model:

* ``probe``    — ``run_probes`` on them: greedy decoding in the runner's batches, the
                 non-finite watch, decoding the text and running every verifier;
* ``generate`` — ``model.generate`` greedy over exactly the same left-padded batches with the
                 same ``max_new_tokens`` and end-of-sequence tokens, nothing else: the cost of
                 decoding these prompts at all.
* ``one by one`` (``--single``) — ``model.generate`` per prompt, unbatched, for scale.

Each is timed ``--repeats`` times after a warm-up; the median is reported with the ratio
probe ÷ generate (target ≤ 1.3).

    python benchmarks/generation.py
    python benchmarks/generation.py --device cuda --dtype bfloat16 --single

Writes ``benchmarks/results/generation.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_model_args, load, median_time, median_times, memory_budget, write_results

from driftwatch.runner import compile_suite, run_probes
from driftwatch.suite import ProbeSuite


def bench(
    model: Any,
    tokenizer: Any,
    suite_name: str,
    budget: int,
    repeats: int,
    single: bool,
    share: float | None = None,
) -> dict[str, Any]:
    full = ProbeSuite.load(suite_name)
    items = [it for it in full.items if it.kind == "generate"]
    used = {it.capability for it in items}
    suite = ProbeSuite.from_items(items, [c for c in full.capabilities if c.id in used])
    compiled = compile_suite(
        suite, tokenizer, model, token_budget=budget, memory_budget=memory_budget(model, share)
    )
    device = compiled.device
    eos = compiled.eos_ids or None

    def probe() -> None:
        run_probes(model, compiled, tokenizer)

    def generate() -> None:
        with torch.inference_mode():
            for b in compiled.gen:
                model.generate(
                    input_ids=b.input_ids,
                    attention_mask=b.attention_mask,
                    max_new_tokens=b.max_new_tokens,
                    do_sample=False,
                    num_beams=1,
                    pad_token_id=compiled.pad_id,
                    eos_token_id=eos,
                )

    def one_by_one() -> None:
        with torch.inference_mode():
            for b in compiled.gen:
                for row, limit in enumerate(b.budgets):
                    keep = b.attention_mask[row].bool()
                    model.generate(
                        input_ids=b.input_ids[row][keep][None],
                        max_new_tokens=limit,
                        do_sample=False,
                        num_beams=1,
                        pad_token_id=compiled.pad_id,
                        eos_token_id=eos,
                    )

    model.eval()
    t_probe, t_gen = median_times([probe, generate], repeats, device)
    t_single = median_time(one_by_one, 1, device) if single else None
    prompt_tokens = sum(b.real_tokens for b in compiled.gen)
    return {
        "suite": suite_name,
        "items": len(items),
        "generate_calls": len(compiled.gen),
        "prompt_tokens": prompt_tokens,
        "new_token_budget": sum(it.max_new_tokens for it in items),
        "probe_s": t_probe,
        "generate_s": t_gen,
        "one_by_one_s": t_single,
        "probe_over_generate": t_probe / t_gen,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_args(parser)
    parser.add_argument("--suite", default="standard")
    parser.add_argument("--budget", type=int, default=4096, help="token budget per batch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--single", action="store_true", help="also time unbatched generate")
    parser.add_argument("--out", default="benchmarks/results/generation.json")
    args = parser.parse_args()

    model, tokenizer = load(args.model, args.device, args.dtype)
    row = bench(
        model, tokenizer, args.suite, args.budget, args.repeats, args.single, args.memory_share
    )
    print("| suite | items | generate calls | probe round | model.generate | probe ÷ generate |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {row['suite']} | {row['items']} | {row['generate_calls']} | {row['probe_s']:.2f} s | "
        f"{row['generate_s']:.2f} s | **{row['probe_over_generate']:.2f}** |"
    )
    if row["one_by_one_s"] is not None:
        print(f"unbatched model.generate, one prompt at a time: {row['one_by_one_s']:.2f} s")
    write_results(args.out, args, rows=[row])


if __name__ == "__main__":
    main()
