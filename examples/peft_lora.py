"""PEFT LoRA under the Hugging Face Trainer: only the adapters train, only they are snapshot.

    python examples/peft_lora.py [--tiny]

The reference is built from the model the run starts with (the base model plus fresh,
zero-effect adapters). When resuming from adapters that already changed the model, pass
``reference_from="base"`` to build it with the adapters disabled.
"""

from __future__ import annotations

import os

from _common import parser, setup, train_rows
from peft import LoraConfig, get_peft_model
from transformers import Trainer, TrainingArguments

import driftwatch
from driftwatch.callbacks.hf import attach
from driftwatch.tasks import PadCollator


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    run = setup(args)
    tok = run["tokenizer"]
    model = get_peft_model(
        run["model"],
        LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    model.print_trainable_parameters()
    os.environ.setdefault("TENSORBOARD_LOGGING_DIR", f"{args.out}/peft_lora")
    trainer = Trainer(
        model=model,
        args=TrainingArguments(
            output_dir=f"{args.out}/peft_lora",
            max_steps=run["steps"],
            per_device_train_batch_size=run["batch"],
            learning_rate=run["lr"] * 10,  # LoRA trains fewer weights: a larger step
            report_to=[],
            save_strategy="no",
            use_cpu=True,
            disable_tqdm=True,
        ),
        train_dataset=train_rows(tok, run["steps"] * run["batch"]),
        data_collator=PadCollator(tok.pad_token_id),
        processing_class=tok,
    )
    monitor = driftwatch.DriftMonitor(
        run["suite"],
        every_n_steps=run["every"],
        action="rollback",
        logdir=f"{args.out}/peft_lora",
    )
    attach(trainer, monitor)
    trainer.train()
    print(f"rounds: {len(monitor.history)}; rollbacks: {monitor.rollbacks}")


if __name__ == "__main__":
    main()
