"""Hugging Face Trainer: attach driftwatch in three lines.

python examples/hf_trainer.py            # SmolLM2-135M-Instruct, CPU, a few minutes
python examples/hf_trainer.py --tiny     # tiny offline model, seconds
"""

from __future__ import annotations

import os

from _common import parser, setup, train_rows
from transformers import Trainer, TrainingArguments

import driftwatch
from driftwatch.callbacks.hf import attach
from driftwatch.tasks import PadCollator


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    run = setup(args)
    tok = run["tokenizer"]
    os.environ.setdefault("TENSORBOARD_LOGGING_DIR", f"{args.out}/hf_trainer")
    trainer = Trainer(
        model=run["model"],
        args=TrainingArguments(
            output_dir=f"{args.out}/hf_trainer",
            max_steps=run["steps"],
            per_device_train_batch_size=run["batch"],
            learning_rate=run["lr"],
            report_to=["tensorboard"],  # the drift scalars reach every report_to integration
            save_strategy="no",
            use_cpu=True,
            disable_tqdm=True,
        ),
        train_dataset=train_rows(tok, run["steps"] * run["batch"]),
        data_collator=PadCollator(tok.pad_token_id),
        processing_class=tok,
    )
    # the three lines
    monitor = driftwatch.DriftMonitor(
        run["suite"], every_n_steps=run["every"], action="stop", logdir=f"{args.out}/hf_trainer"
    )
    attach(trainer, monitor)
    trainer.train()

    last = monitor.history[-1]
    print(f"probed {len(monitor.history)} rounds; last at step {last.step}: {last.groups}")
    print(f"stopped early: {trainer.state.global_step < run['steps']}")


if __name__ == "__main__":
    main()
