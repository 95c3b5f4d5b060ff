"""TRL's SFTTrainer builds on the Hugging Face Trainer: the same callback attaches.

pip install 'driftwatch-train[trl]'
python examples/trl_sft.py [--tiny]
"""

from __future__ import annotations

from _common import parser, setup
from datasets import Dataset
from trl import SFTConfig, SFTTrainer

import driftwatch
from driftwatch.callbacks.hf import attach
from driftwatch.tasks import chat_examples


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    run = setup(args)
    data = Dataset.from_list(
        [{"messages": conv} for conv in chat_examples("atlas", run["steps"] * run["batch"])]
    )
    trainer = SFTTrainer(
        model=run["model"],
        args=SFTConfig(
            output_dir=f"{args.out}/trl_sft",
            max_steps=run["steps"],
            per_device_train_batch_size=run["batch"],
            learning_rate=run["lr"],
            assistant_only_loss=False,
            report_to=[],
            save_strategy="no",
            use_cpu=True,
            disable_tqdm=True,
        ),
        train_dataset=data,
        processing_class=run["tokenizer"],
    )
    monitor = driftwatch.DriftMonitor(
        run["suite"], every_n_steps=run["every"], action="stop", logdir=f"{args.out}/trl_sft"
    )
    attach(trainer, monitor)
    trainer.train()
    # SFTConfig has bf16=True by default: the probes run under the same bf16 autocast
    assert monitor.session is not None
    compiled = monitor.session.compiled
    print(f"probed in {compiled.compute.name} with the {compiled.layout} layout")
    print(f"rounds: {len(monitor.history)}; last groups: {monitor.history[-1].groups}")


if __name__ == "__main__":
    main()
