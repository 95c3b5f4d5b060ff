"""Training overhead of the Hugging Face callback: the same run with and without it.

The demo's setup — SmolLM2-135M-Instruct, the ``atlas`` chat task, batch 8, lr 3e-5, the
``quick`` suite, warn mode — is trained for ``--steps`` steps with the same seed, in one
process: once without driftwatch, then once per cadence in ``--every`` with the callback
attached. Overhead is (with − without) ÷ without on the wall time of ``trainer.train()``;
"steady" leaves out the monitor's start (loading the cached reference and compiling the suite,
once per run). The losses of every run must equal the run without driftwatch's bit for bit
(warn mode does not touch the training).

The reference is built before the timed runs, so every run loads it from the cache.

    python benchmarks/train_overhead.py                  # 100 steps; every 4 (demo) and 100
    python benchmarks/train_overhead.py --steps 20 --every 4,20

Writes ``benchmarks/results/train_overhead.json``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load, memory_share, write_results

from driftwatch import DriftMonitor, ProbeBudget
from driftwatch.callbacks.hf import attach
from driftwatch.demo import demo_trainer


def train(
    model_name: str,
    device: str,
    steps: int,
    every: int | None,
    batch: int,
    workdir: Path,
    share: float | None = 0.1,
    decode: str = "draft",
    suite: str = "quick",
) -> dict[str, Any]:
    model, tokenizer = load(model_name, device, "float32")
    run = workdir / f"every-{every}-{decode}"
    trainer = demo_trainer(
        model,
        tokenizer,
        run / "trainer",
        steps=steps,
        batch_size=batch,
        device=device,
        report_to=(),
        progress=False,
    )
    start_s = 0.0
    monitor = None
    if every is not None:
        monitor = DriftMonitor(
            suite,
            every_n_steps=every,
            action="warn",
            logdir=run / "dw",
            budget=ProbeBudget(memory_share=share, decode=decode),  # type: ignore[arg-type]
        )
        original = monitor.start

        def timed_start(*a: Any, **k: Any) -> Any:
            nonlocal start_s
            begin = time.perf_counter()
            try:
                return original(*a, **k)
            finally:
                start_s = time.perf_counter() - begin

        monitor.start = timed_start  # type: ignore[method-assign]
        attach(trainer, monitor)
    begin = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - begin
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    rounds = 0 if monitor is None else len(monitor.history)
    return {
        "every": every,
        "decode": decode,
        "steps": int(trainer.state.global_step),
        "seconds": seconds,
        "start_seconds": start_s,
        "rounds": rounds,
        "losses": losses,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2", help="model dir, 'smollm2' or 'tiny'")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--every", default="4,100", help="cadences to time, comma-separated")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--memory-share", type=memory_share, default=0.1, help="the monitor's memory_share"
    )
    parser.add_argument(
        "--decode", default="draft", help="the monitor's decode modes to time, comma-separated"
    )
    parser.add_argument(
        "--suite", default="quick", help="the monitor's suite (the tests use 'smoke')"
    )
    parser.add_argument("--out", default="benchmarks/results/train_overhead.json")
    args = parser.parse_args()
    logging.getLogger("driftwatch").setLevel(logging.WARNING)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model, tokenizer = load(args.model, args.device, "float32")  # build the reference once
        DriftMonitor(args.suite, logdir=work / "warm").start(model, tokenizer)
        del model
        runs = [train(args.model, args.device, args.steps, None, args.batch, work)]
        for every in (int(e) for e in args.every.split(",")):
            for decode in args.decode.split(","):
                runs.append(
                    train(
                        args.model,
                        args.device,
                        args.steps,
                        every,
                        args.batch,
                        work,
                        args.memory_share,
                        decode,
                        args.suite,
                    )
                )
                print(
                    f"  every {every}, {decode}: {runs[-1]['seconds']:.1f}s",
                    file=sys.stderr,
                    flush=True,
                )

    bare = runs[0]
    print(f"without driftwatch: {bare['steps']} steps in {bare['seconds']:.1f} s")
    print(
        "| cadence | decode | rounds | train() | overhead | steady (no start) | losses identical |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in runs[1:]:
        r["overhead"] = (r["seconds"] - bare["seconds"]) / bare["seconds"]
        r["steady_overhead"] = (r["seconds"] - r["start_seconds"] - bare["seconds"]) / bare[
            "seconds"
        ]
        r["losses_identical"] = r["losses"] == bare["losses"]
        print(
            f"| every {r['every']} | {r['decode']} | {r['rounds']} | {r['seconds']:.1f} s | "
            f"**{100 * r['overhead']:.1f}%** | {100 * r['steady_overhead']:.1f}% | "
            f"{r['losses_identical']} |"
        )
    write_results(args.out, args, runs=runs)
    if not all(r["losses_identical"] for r in runs[1:]):
        sys.exit("warn mode changed the training losses")


if __name__ == "__main__":
    main()
