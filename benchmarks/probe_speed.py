"""Probe-round time against the bare forward pass over the same tokens (the lower bound).

For each log-likelihood probe kind (choice, target, distribution) a seeded set of items is
compiled once; then, in one process and on the same model:

* ``probe``    — ``run_probes`` on the compiled suite (what a training run pays per round);
* ``bare``     — ``model(input_ids, attention_mask, position_ids)`` over exactly the same
                 batches (same rows, same padding, same 4-D masks, prebuilt), logits for every
                 position, no scoring: the forward pass any evaluator must at least do;
* ``backbone`` — the same without the output head (a stricter floor that no scorer reaches,
                 because scoring needs the head at the scored positions).

Each is timed ``--repeats`` times after a warm-up and the median is reported, with the
ratios probe/bare and probe/backbone, the layout the runner chose and the padding waste
(padded ÷ real tokens). The choice kind is also timed in the two fallback layouts — "cached"
(each prompt once with a KV cache, re-indexed over its options) and "concatenated" (one row
per option) — to show what the packed layout saves. A plan entry with a third field,
``KIND:LAYOUT:bf16`` (or ``fp16``), runs the compile, the probe round and both floors under that
``torch.autocast`` over the same weights, as a mixed-precision training run probes
(``driftwatch.runner.precision``); the default plan times the choice kind so in bf16 too.

    python benchmarks/probe_speed.py                       # SmolLM2-135M-Instruct on CPU
    python benchmarks/probe_speed.py --device cuda --dtype bfloat16 --items 1200
    python benchmarks/probe_speed.py --model tiny --items 60   # a smoke run, no real model

Writes ``benchmarks/results/probe_speed.json``.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from typing import Any, Literal, cast

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_model_args, load, median_times, memory_budget, write_results

from driftwatch.runner import Compute, compile_suite, detect_compute, run_probes
from driftwatch.runner.kernels import _cached_outputs, mask4d
from driftwatch.runner.layout import Batch, CachedBatch
from driftwatch.suite import ProbeItem, ProbeSuite

LayoutChoice = Literal["auto", "packed", "cached", "concatenated"]
LAYOUTS = ("auto", "packed", "cached", "concatenated")
_COUNTRIES = [
    ("France", "Paris"),
    ("Japan", "Tokyo"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Germany", "Berlin"),
    ("Egypt", "Cairo"),
    ("Canada", "Ottawa"),
    ("Peru", "Lima"),
    ("Kenya", "Nairobi"),
    ("Norway", "Oslo"),
    ("Greece", "Athens"),
    ("Chile", "Santiago"),
    ("Poland", "Warsaw"),
    ("Cuba", "Havana"),
    ("Ireland", "Dublin"),
]
_SENTENCES = [
    "The river runs slowly past the old mill before it turns toward the sea.",
    "Most modern computers store numbers in binary, using only zeros and ones.",
    "In spring the orchard fills with white blossoms and the hum of bees.",
    "A good recipe lists its ingredients first and its steps in order.",
    "The committee met on Tuesday and agreed to publish the report next month.",
    "Light from the Sun takes about eight minutes to reach the Earth.",
    "She packed a map, a flashlight and two sandwiches for the long hike.",
    "def mean(xs):\n    return sum(xs) / len(xs)\n",
]


def make_items(kind: str, n: int, seed: int) -> list[ProbeItem]:
    """Seeded probe items of one kind (about the length of real benchmark items)."""
    rng = random.Random(seed)
    items = []
    for k in range(n):
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        if kind == "choice" and k % 2:
            country, capital = rng.choice(_COUNTRIES)
            wrong = rng.sample([c for _, c in _COUNTRIES if c != capital], 3)
            options = [capital, *wrong]
            rng.shuffle(options)
            items.append(
                ProbeItem(
                    id=f"c{k}",
                    capability="X",
                    kind="choice",
                    prompt=f"Question: What is the capital of {country}?\nAnswer:",
                    choices=tuple(" " + o for o in options),
                    answer=options.index(capital),
                )
            )
        elif kind == "choice":
            sums = sorted({a + b, a + b + 1, a + b - 1, a + b + 10}, key=lambda _: rng.random())
            items.append(
                ProbeItem(
                    id=f"c{k}",
                    capability="X",
                    kind="choice",
                    prompt=f"Question: Tom has {a} apples and buys {b} more. How many apples does "
                    f"he have now?\nAnswer:",
                    choices=tuple(f" {o}" for o in sums),
                    answer=sums.index(a + b),
                )
            )
        elif kind == "target":
            items.append(
                ProbeItem(
                    id=f"t{k}",
                    capability="X",
                    kind="target",
                    prompt=f"Question: What is {a} plus {b}?\nAnswer:",
                    target=f" {a + b}",
                )
            )
        else:
            text = " ".join(rng.sample(_SENTENCES, 4))
            items.append(ProbeItem(id=f"d{k}", capability="X", kind="distribution", text=text))
    return items


def bench_kind(
    model: Any,
    tokenizer: Any,
    kind: str,
    n: int,
    budget: int,
    repeats: int,
    layout: LayoutChoice = "auto",
    share: float | None = None,
    compute: Compute | None = None,
) -> dict[str, Any]:
    suite = ProbeSuite.from_items(make_items(kind, n, seed=1234))
    compute = compute or detect_compute(model)
    compiled = compile_suite(
        suite,
        tokenizer,
        model,
        token_budget=budget,
        memory_budget=memory_budget(model, share),
        layout=layout,
        compute=compute,
    )
    device = compiled.device
    dtype = next(model.parameters()).dtype
    batches: list[Batch | CachedBatch] = [*compiled.loglik, *compiled.dist]
    masks = [
        None
        if isinstance(b, CachedBatch)
        else mask4d(b.segments, dtype)
        if compiled.layout == "packed"
        else (b.segments >= 0).long()
        for b in batches
    ]
    base_topk = None
    if kind == "distribution":
        base_topk = run_probes(model, compiled, tokenizer, record_topk=32).topk

    def probe() -> None:
        run_probes(model, compiled, tokenizer, base_topk=base_topk)

    def forward(net: Any, hidden: bool) -> None:
        """The same batches through ``net`` with nothing scored (in the probe's precision)."""
        with torch.inference_mode(), compute.context():
            for b, m in zip(batches, masks, strict=True):
                if isinstance(b, CachedBatch):
                    _cached_outputs(net, b, hidden=hidden)
                else:
                    net(
                        input_ids=b.input_ids,
                        attention_mask=m,
                        position_ids=b.position_ids,
                        use_cache=False,
                    )

    def bare() -> None:
        forward(model, hidden=False)

    def backbone() -> None:
        forward(model.get_decoder(), hidden=True)

    model.eval()
    t_probe, t_bare, t_backbone = median_times([probe, bare, backbone], repeats, device)
    real, padded = compiled.stats["real_tokens"], compiled.stats["padded_tokens"]
    return {
        "kind": kind,
        "layout": compiled.layout,
        "compute": compute.name,
        "items": n,
        "forward_passes": compiled.stats["forward_passes"],
        "real_tokens": real,
        "padded_tokens": padded,
        "padding_waste": padded / real,
        "probe_s": t_probe,
        "bare_forward_s": t_bare,
        "backbone_s": t_backbone,
        "probe_over_bare": t_probe / t_bare,
        "probe_over_backbone": t_probe / t_backbone,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_args(parser)
    parser.add_argument("--items", type=int, default=300, help="items per kind")
    parser.add_argument("--budget", type=int, default=2048, help="token budget per batch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/probe_speed.json")
    parser.add_argument(
        "--plan",
        default="choice:auto,target:auto,distribution:auto,choice:cached,choice:concatenated,"
        "choice:auto:bf16",
        help="comma-separated KIND:LAYOUT[:AUTOCAST] entries to time (layout auto/packed/"
        "cached/concatenated; autocast bf16/fp16 over the same weights, default none)",
    )
    args = parser.parse_args()

    model, tokenizer = load(args.model, args.device, args.dtype)
    plan = []
    for entry in args.plan.split(","):
        kind, layout, *cast_to = entry.split(":")
        if (
            kind not in ("choice", "target", "distribution")
            or layout not in LAYOUTS
            or cast_to not in ([], ["bf16"], ["fp16"])
        ):
            parser.error(f"--plan: expected KIND:LAYOUT[:AUTOCAST] entries, found {entry!r}")
        n = args.items if kind != "distribution" else max(1, args.items // 5)
        plan.append((kind, n, cast(LayoutChoice, layout), cast_to[0] if cast_to else "off"))
    rows = []
    for kind, n, layout, autocast in plan:
        compute = detect_compute(model, autocast)
        rows.append(
            bench_kind(
                model,
                tokenizer,
                kind,
                n,
                args.budget,
                args.repeats,
                layout,
                args.memory_share,
                compute,
            )
        )
        print(
            f"  {kind} ({rows[-1]['layout']}, {compute.name}): probe "
            f"{rows[-1]['probe_s']:.2f}s, bare {rows[-1]['bare_forward_s']:.2f}s",
            file=sys.stderr,
            flush=True,
        )
    header = (
        "kind",
        "layout",
        "compute",
        "items",
        "passes",
        "real tok",
        "pad/real",
        "probe s",
        "bare s",
        "backbone s",
        "probe/bare",
        "probe/backbone",
    )
    print(" | ".join(header))
    for r in rows:
        print(
            " | ".join(
                [
                    r["kind"],
                    r["layout"],
                    r["compute"],
                    str(r["items"]),
                    str(r["forward_passes"]),
                    str(r["real_tokens"]),
                    f"{r['padding_waste']:.2f}",
                    f"{r['probe_s']:.2f}",
                    f"{r['bare_forward_s']:.2f}",
                    f"{r['backbone_s']:.2f}",
                    f"{r['probe_over_bare']:.2f}",
                    f"{r['probe_over_backbone']:.2f}",
                ]
            )
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_results(args.out, args, rows=rows)


if __name__ == "__main__":
    main()
