"""Draft-verified decoding against plain decoding: whole probe rounds, in turns, one process.

For each suite, two probe sessions share one reference: ``decode="draft"`` (each greedy reply
verified against the base model's recorded reply in one pass, decoded on only past a
divergence) and ``decode="plain"`` (every reply decoded token by token). Their rounds are
timed in turns (draft, plain, draft, plain, …) on the base weights, then on the weights of the
demo's fine-tune (``atlas``, batch 8, lr 3e-5 unless ``--lr``) after each step in
``--steps``. Every round's replies must be identical between the two; the script exits
non-zero otherwise.

    python benchmarks/drafts.py                                  # quick: 3 rounds each
    python benchmarks/drafts.py --suites standard --repeats 1 --no-warmup
    python benchmarks/drafts.py --suites quick --memory-share none
    python benchmarks/drafts.py --suites OLD_FOLDER,quick --modes draft   # two suites' rounds
    python benchmarks/drafts.py --suites OLD_FOLDER,quick --modes draft --lr 2.5e-6 --steps 6

A ``--suites`` entry may be a folder (e.g. an older version of a built-in suite, to compare
two suites in the same run). Writes ``benchmarks/results/drafts.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_model_args, load, sync, write_results

from driftwatch.demo import demo_trainer
from driftwatch.session import ProbeSession
from driftwatch.suite import ProbeSuite


def sessions(
    model: Any, tokenizer: Any, names: list[str], share: float | None, modes: list[str]
) -> dict:
    out = {}
    for name in names:
        suite = ProbeSuite.load(name)
        out[name] = {
            mode: ProbeSession.open(model, tokenizer, suite, memory_share=share, decode=mode)
            for mode in modes
        }
    return out


def measure(model: Any, pair: dict[str, ProbeSession], repeats: int, warmup: bool) -> dict:
    """Rounds of each mode in turns; their median times, decode records and agreement."""
    device = next(model.parameters()).device
    if warmup:
        for session in pair.values():
            session.run(model)
    times: dict[str, list[float]] = {mode: [] for mode in pair}
    replies: dict[str, list[list[int]]] = {}
    records: dict[str, dict[str, float]] = {}
    for _ in range(repeats):
        for mode, session in pair.items():
            sync(device)
            began = time.perf_counter()
            result = session.run(model)
            sync(device)
            times[mode].append(time.perf_counter() - began)
            replies[mode], records[mode] = result.generated, result.decode
    median = {m: statistics.median(t) for m, t in times.items()}
    if len(pair) == 1:  # one mode (--modes): its times, nothing to compare
        (mode,) = pair
        return {
            f"{mode}_s": median[mode],
            "times": times,
            "items": len(replies[mode]),
            f"{mode}_record": records[mode],
        }
    return {
        "draft_s": median["draft"],
        "plain_s": median["plain"],
        "speedup": median["plain"] / median["draft"],
        "times": times,
        "identical": replies["draft"] == replies["plain"],
        "items": len(replies["draft"]),
        "differ": sum(a != b for a, b in zip(replies["draft"], replies["plain"], strict=True)),
        "draft_record": records["draft"],
        "plain_record": records["plain"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_args(parser)
    parser.add_argument("--suites", default="quick", help="comma-separated names or folders")
    parser.add_argument("--steps", default="4,8,12", help="demo fine-tune steps to probe after")
    parser.add_argument(
        "--lr", type=float, default=3e-5, help="the fine-tune's learning rate (the demo's: 2.5e-6)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-warmup", action="store_true", help="no untimed round first")
    parser.add_argument(
        "--modes",
        default="draft,plain",
        help="draft,plain (compared) or one of them: e.g. two suites' draft rounds alone",
    )
    parser.add_argument("--out", default="benchmarks/results/drafts.json")
    args = parser.parse_args()
    from transformers import TrainerCallback
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    model, tokenizer = load(args.model, args.device, args.dtype)
    names = args.suites.split(",")
    modes = args.modes.split(",")
    if sorted(modes) not in (["draft", "plain"], ["draft"], ["plain"]):
        sys.exit(f"--modes: draft,plain, draft or plain; found {args.modes!r}")
    pairs = sessions(model, tokenizer, names, args.memory_share, modes)
    rows: list[dict[str, Any]] = []

    def record(step: int) -> None:
        for name in names:
            row = {
                "suite": name,
                "step": step,
                **measure(model, pairs[name], args.repeats, not args.no_warmup),
            }
            rows.append(row)
            if len(modes) == 1:
                rec = row[f"{modes[0]}_record"]
                print(
                    f"| {name} | {step} | {row[f'{modes[0]}_s']:.2f} s | "
                    f"{' / '.join(f'{t:.2f}' for t in row['times'][modes[0]])} | "
                    f"{rec.get('decode_matched', 0):.0f}/{row['items']} |",
                    flush=True,
                )
                continue
            print(
                f"| {name} | {step} | {row['plain_s']:.2f} s | {row['draft_s']:.2f} s | "
                f"**{row['speedup']:.2f}×** | {row['draft_record'].get('decode_matched', 0):.0f}"
                f"/{row['items']} | {row['draft_record'].get('decode_near_ties', 0):.0f} | "
                f"{row['identical']} |",
                flush=True,
            )

    if len(modes) == 1:
        print(f"| suite | step | {modes[0]} round, median | rounds | matched |")
        print("|---|---|---|---|---|")
    else:
        print("| suite | step | plain round | draft round | speedup | matched | near-ties | same |")
        print("|---|---|---|---|---|---|---|---|")
    record(0)
    steps = sorted(int(s) for s in args.steps.split(",") if s)
    if steps:
        wanted = set(steps)

        class Probe(TrainerCallback):  # type: ignore[misc]
            def on_step_end(self, _args: Any, state: Any, control: Any, **kw: Any) -> None:
                if state.global_step in wanted:
                    record(int(state.global_step))

        trainer = demo_trainer(
            model,
            tokenizer,
            Path(args.out).parent / "drafts-trainer",
            steps=max(steps),
            lr=args.lr,
            report_to=(),
            progress=False,
            device=args.device,
        )
        trainer.add_callback(Probe())
        trainer.train()
    write_results(args.out, args, rows=rows)
    if not all(r.get("identical", True) for r in rows):
        sys.exit("draft and plain decoding gave different replies")


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
