"""Probe-round time as the suite grows and across token budgets.

A built-in suite (default ``quick``) is replicated 1×, 2× and 4× (copies get new ids, so each
is probed as its own item) and a ``DriftMonitor`` round — probing, scoring against the
reference, comparing — is timed on each; the time per item should stay flat (linear
scaling). Then the 1× suite is timed at several token budgets.

References are built into a temporary cache, so the user's cache is left alone; building
them is not timed.

    python benchmarks/scaling.py
    python benchmarks/scaling.py --device cuda --dtype bfloat16 --budgets 2048,8192,32768

Writes ``benchmarks/results/scaling.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_model_args, load, median_time, write_results

from driftwatch import DriftMonitor, ProbeBudget, ReferenceSpec
from driftwatch.suite import ProbeSuite


def replicate(suite: ProbeSuite, copies: int) -> ProbeSuite:
    """``copies`` copies of every item under new ids (and new paraphrase groups)."""
    items = [
        dataclasses.replace(
            it,
            id=f"{it.id}~{k}" if k else it.id,
            group=None if it.group is None else f"{it.group}~{k}" if k else it.group,
        )
        for k in range(copies)
        for it in suite.items
    ]
    return dataclasses.replace(suite, name=f"{suite.name}x{copies}", items=tuple(items))


def time_round(
    model: Any,
    tokenizer: Any,
    suite: ProbeSuite,
    budget: int,
    cache: str,
    repeats: int,
    share: float | None,
) -> dict[str, Any]:
    monitor = DriftMonitor(
        suite,
        budget=ProbeBudget(budget, memory_share=share),
        reference=ReferenceSpec(cache_dir=cache),
    )
    monitor.start(model, tokenizer)
    assert monitor.session is not None
    compiled = monitor.session.compiled
    assert compiled is not None
    seconds = median_time(lambda: monitor.measure(model, 0), repeats, compiled.device)
    monitor.close()
    return {
        "suite": suite.name,
        "items": len(suite),
        "budget": budget,
        "forward_passes": compiled.stats["forward_passes"],
        "generate_calls": compiled.stats["generate_calls"],
        "real_tokens": compiled.stats["real_tokens"],
        "padded_tokens": compiled.stats["padded_tokens"],
        "seconds": seconds,
        "ms_per_item": 1000 * seconds / len(suite),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_args(parser)
    parser.add_argument("--suite", default="quick")
    parser.add_argument("--copies", default="1,2,4")
    parser.add_argument("--budget", type=int, default=4096, help="budget for the size sweep")
    parser.add_argument("--budgets", default="1024,2048,4096,8192")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/scaling.json")
    args = parser.parse_args()
    logging.getLogger("driftwatch").setLevel(logging.WARNING)

    model, tokenizer = load(args.model, args.device, args.dtype)
    base = ProbeSuite.load(args.suite)
    size_rows, budget_rows = [], []
    with tempfile.TemporaryDirectory() as cache:
        for copies in (int(c) for c in args.copies.split(",")):
            suite = replicate(base, copies)
            size_rows.append(
                time_round(
                    model, tokenizer, suite, args.budget, cache, args.repeats, args.memory_share
                )
            )
            print(f"  {suite.name}: {size_rows[-1]['seconds']:.2f}s", file=sys.stderr, flush=True)
        for budget in (int(b) for b in args.budgets.split(",")):
            budget_rows.append(
                time_round(model, tokenizer, base, budget, cache, args.repeats, args.memory_share)
            )
            print(f"  budget {budget}: {budget_rows[-1]['seconds']:.2f}s", file=sys.stderr)

    first = size_rows[0]
    print("| suite | items | passes | generate calls | real tokens | round | ms/item | ÷ 1× |")
    print("|---|---|---|---|---|---|---|---|")
    for r in size_rows:
        print(
            f"| {r['suite']} | {r['items']} | {r['forward_passes']} | {r['generate_calls']} | "
            f"{r['real_tokens']:,} | {r['seconds']:.2f} s | {r['ms_per_item']:.1f} | "
            f"{r['seconds'] / first['seconds']:.2f} |"
        )
    print()
    print("| token budget | passes | generate calls | padded ÷ real | round |")
    print("|---|---|---|---|---|")
    for r in budget_rows:
        print(
            f"| {r['budget']} | {r['forward_passes']} | {r['generate_calls']} | "
            f"{r['padded_tokens'] / r['real_tokens']:.2f} | {r['seconds']:.2f} s |"
        )
    write_results(args.out, args, sizes=size_rows, budgets=budget_rows)


if __name__ == "__main__":
    main()
