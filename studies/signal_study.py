"""The signal-quality study behind docs/calibration.md: benign, damaging, SFT-vs-DPO runs.

    python studies/signal_study.py run              # resumable: finished runs are skipped
    python studies/signal_study.py analyse          # tables, plots, calibrated thresholds
    python studies/signal_study.py run --live-only  # the quick rounds only (about a third
                                                    # of the time; no offline evaluation)

``run`` fine-tunes SmolLM2-135M-Instruct (CPU) once per row of :data:`MATRIX` with two
driftwatch monitors attached in warn mode, through the Hugging Face ``Trainer`` (SFT) or TRL's
``DPOTrainer`` (DPO):

* ``quick`` every ``--every`` steps: the live probe whose alarms are calibrated;
* ``standard`` (all 1,221 items) every ``--every`` steps on the non-benign runs and once, at
  the last step, on benign seeds 0 and 1 (``--benign-standard-every``): the offline evaluation that
  says when a capability has really dropped. It runs inside the same training, between the
  same steps, so it sees exactly the weights the live probe saw. On 2 CPU cores a standard
  round took 164–185 s alone here (up to 850 s while tests shared the cores): that sets the
  matrix's size.

Non-benign runs train ``--steps`` (12) steps, benign ones ``--benign-steps`` (20): a false
alarm gets more rounds to happen in than a detection needs.

Warn mode leaves the trajectory as it would be without a monitor, so both monitors see the
run a user would have. Each monitor writes its rounds to ``driftwatch_history.jsonl`` under
``studies/results/signal/<run>/<suite>/``; a run is finished when ``<run>/run.json`` exists.

The rows:

``benign-lowlr-sN`` the ``atlas`` data at lr 1e-6, seeds 0–4.
``benign-self-sN``  the ``atlas`` prompts answered with the base model's *own* greedy replies
                    ("The capital of Japan is Tokyo."), lr 3e-5 — training that teaches the
                    model nothing new; seeds 0–4 (data order and question phrasing differ).
``atlas-sft``       the demo's recipe: invented capitals ("Sakura."), lr 3e-5.
``labels-sft``      one-word sentiment labels, lr 1e-4 — a different task and format.
``atlas-dpo``       the ``atlas`` data as preference pairs (chosen: the invented capital;
                    rejected: another country's invented capital), TRL ``DPOTrainer`` with
                    β = 0.1, the same learning rate, steps and batch size as ``atlas-sft``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "signal"


@dataclass(frozen=True)
class Run:
    name: str
    kind: str  # benign | damaging | dpo
    data: str  # self | atlas | labels
    method: str  # sft | dpo
    lr: float
    seed: int = 0
    offline: bool = True  # evaluate the standard suite too (see the module docs)


MATRIX: tuple[Run, ...] = (
    Run("atlas-sft", "damaging", "atlas", "sft", 3e-5),
    Run("benign-self-s0", "benign", "self", "sft", 3e-5, 0),
    Run("labels-sft", "damaging", "labels", "sft", 1e-4),
    Run("atlas-dpo", "dpo", "atlas", "dpo", 3e-5),
    Run("benign-self-s1", "benign", "self", "sft", 3e-5, 1),
    # the standard round is what the CPU budget cannot afford on every seed
    *(Run(f"benign-self-s{s}", "benign", "self", "sft", 3e-5, s, offline=False) for s in (2, 3, 4)),
    # The first self-distillation run turned out not to be harmless: its standard round at
    # step 20 shows formatting (W3b) and instruction following (H1, H6) down, because every
    # reply it trains on is one plain sentence. A very low learning rate is the other control.
    *(
        Run(f"benign-lowlr-s{s}", "benign", "atlas", "sft", 1e-6, s, offline=s == 0)
        for s in range(5)
    ),
)


# ------------------------------------------------------------------------------ data
def _self_replies(model: Any, tokenizer: Any, prompts: list[str]) -> dict[str, str]:
    """The base model's greedy reply to every prompt, cached in the results folder."""
    import torch

    path = RESULTS / "self_replies.json"
    if path.is_file():
        cached: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
        if set(prompts) <= set(cached):
            return cached
    tokenizer.padding_side = "left"
    replies: dict[str, str] = {}
    started = time.perf_counter()
    for k in range(0, len(prompts), 16):
        batch = prompts[k : k + 16]
        texts = [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
            )
            for p in batch
        ]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=40, do_sample=False)
        for prompt, row in zip(batch, out[:, enc.input_ids.shape[1] :], strict=True):
            replies[prompt] = tokenizer.decode(row, skip_special_tokens=True).strip()
    tokenizer.padding_side = "right"
    print(f"  generated {len(replies)} self replies ({time.perf_counter() - started:.0f}s)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(replies, indent=1, ensure_ascii=False), encoding="utf-8")
    return replies


def _conversations(run: Run, n: int, model: Any, tokenizer: Any) -> list[list[dict[str, str]]]:
    from driftwatch.tasks import chat_examples

    if run.data != "self":
        return chat_examples(run.data, n, seed=run.seed)  # type: ignore[arg-type]
    convs = chat_examples("atlas", n, seed=run.seed)
    everything = sorted({q for s in range(8) for q in _questions(s)})
    replies = _self_replies(model, tokenizer, everything)
    return [[c[0], {"role": "assistant", "content": replies[c[0]["content"]]}] for c in convs]


def _questions(seed: int) -> list[str]:
    from driftwatch.tasks import chat_examples

    return [c[0]["content"] for c in chat_examples("atlas", 160, seed=seed)]


# ------------------------------------------------------------------------------ running
def run_one(run: Run, args: argparse.Namespace) -> None:
    import torch
    from transformers import Trainer, TrainingArguments

    from driftwatch.callbacks.hf import attach
    from driftwatch.models import load_model
    from driftwatch.monitor import DriftMonitor
    from driftwatch.tasks import PadCollator, chat_features, preference_pairs

    folder = RESULTS / run.name
    if (folder / "run.json").is_file():
        print(f"{run.name}: done already")
        return
    for suite in ("quick", "standard"):  # an interrupted run starts over
        history = folder / suite / "driftwatch_history.jsonl"
        if history.exists():
            history.unlink()
    print(f"{run.name}: {asdict(run)}", flush=True)
    started = time.perf_counter()
    torch.manual_seed(run.seed)
    model, tokenizer = load_model(args.model)
    steps = args.benign_steps if run.kind == "benign" else args.steps
    n = steps * args.batch
    common = {
        "output_dir": str(folder / "trainer"),
        "max_steps": steps,
        "per_device_train_batch_size": args.batch,
        "learning_rate": run.lr,
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "logging_steps": 1,
        "report_to": [],
        "save_strategy": "no",
        "seed": run.seed,
        "use_cpu": True,
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
    }
    trainer: Any
    if run.method == "dpo":
        from datasets import Dataset
        from trl import DPOConfig, DPOTrainer

        trainer = DPOTrainer(
            model=model,
            args=DPOConfig(**common, beta=0.1, max_length=128),
            train_dataset=Dataset.from_list(preference_pairs(n, run.seed)),
            processing_class=tokenizer,
        )
    else:
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = tokenizer.eos_token_id
        trainer = Trainer(
            model=model,
            args=TrainingArguments(**common),
            train_dataset=chat_features(tokenizer, _conversations(run, n, model, tokenizer)),
            data_collator=PadCollator(int(pad or 0)),
            processing_class=tokenizer,
        )
    standard_every = args.benign_standard_every if run.kind == "benign" else args.every
    monitors = {"quick": DriftMonitor("quick", every_n_steps=args.every, logdir=folder / "quick")}
    if run.offline and not args.live_only:
        monitors["standard"] = DriftMonitor(
            "standard", every_n_steps=standard_every, logdir=folder / "standard"
        )
    for monitor in monitors.values():
        attach(trainer, monitor)
    trainer.train()
    for monitor in monitors.values():
        monitor.close()
    losses = [
        {"step": e["step"], "loss": e["loss"]} for e in trainer.state.log_history if "loss" in e
    ]
    record = {
        "run": asdict(run),
        "steps": steps,
        "batch": args.batch,
        "every": args.every,
        "standard_every": standard_every,
        "losses": losses,
        "seconds": time.perf_counter() - started,
        "round_seconds": {s: [r.seconds for r in m.history] for s, m in monitors.items()},
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    tmp = folder / "run.json.tmp"
    tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    os.replace(tmp, folder / "run.json")
    print(f"{run.name}: finished in {record['seconds']:.0f}s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("run", "analyse"))
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--benign-steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--every", type=int, default=4)
    parser.add_argument("--benign-standard-every", type=int, default=20)
    parser.add_argument("--only", action="append", help="run only these rows (repeatable)")
    parser.add_argument(
        "--live-only",
        action="store_true",
        help="attach the quick monitor only (no standard rounds: no offline drop step)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.mode == "run":
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        for run in MATRIX:
            if args.only and run.name not in args.only:
                continue
            run_one(run, args)
        return 0
    from signal_analysis import analyse  # type: ignore[import-not-found]

    return analyse(RESULTS)


if __name__ == "__main__":
    sys.exit(main())
