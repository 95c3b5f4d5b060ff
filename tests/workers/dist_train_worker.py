"""Run under ``torchrun --nproc-per-node 2`` by tests/test_distributed.py (gloo, CPU):
a short HF Trainer or Lightning DDP run with driftwatch attached in stop mode.

Writes ``OUT/rank<r>.json`` (the rounds each rank recorded, the step training stopped at) and,
from rank 0, ``OUT/final.safetensors`` (the weights the last round probed).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from driftwatch import DriftMonitor, Policy, ProbeBudget, Threshold
from tests.conftest import build_model, build_tokenizer

STEPS, EVERY, LR = 12, 2, 2e-2
THRESHOLD = Threshold("D", max_kl=2e-3)


def data(tokenizer):
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, len(tokenizer), (48, 24), generator=gen)


def monitor():
    return DriftMonitor(
        "smoke",
        every_n_steps=EVERY,
        policy=Policy([THRESHOLD], action="stop", patience=2, significance=False),
        budget=ProbeBudget(128),
    )


def run_hf(tokenizer, model):
    from transformers import Trainer, TrainingArguments

    from driftwatch.callbacks.hf import DriftCallback

    mon = monitor()
    args = TrainingArguments(
        output_dir=os.environ["OUT_DIR"] + "/hf",
        max_steps=STEPS,
        per_device_train_batch_size=2,
        learning_rate=LR,
        report_to=[],
        use_cpu=True,
        ddp_backend="gloo",
        seed=11,
        disable_tqdm=True,
        save_strategy="no",
        logging_steps=1000,
    )
    rows = [{"input_ids": r, "labels": r} for r in data(tokenizer)]
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=rows,
        processing_class=tokenizer,
        callbacks=[DriftCallback(mon)],
    )
    trainer.train()
    return mon, trainer.state.global_step


def run_lightning(tokenizer, model):
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader

    from driftwatch.callbacks.lightning import DriftCallback

    class LM(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = model

        def training_step(self, batch, batch_idx):
            return self.model(input_ids=batch, labels=batch).loss

        def configure_optimizers(self):
            return torch.optim.AdamW(self.model.parameters(), lr=LR)

    mon = monitor()
    trainer = pl.Trainer(
        max_steps=STEPS,
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[DriftCallback(mon, tokenizer)],
    )
    trainer.fit(LM(), DataLoader(list(data(tokenizer)), batch_size=2))
    return mon, trainer.global_step


def main(framework: str, out: Path) -> None:
    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, seed=3).train()
    model.lm_head.weight.data *= 20
    mon, stopped = (run_hf if framework == "hf" else run_lightning)(tokenizer, model)
    rank = int(os.environ["RANK"])
    record = {
        "steps": [r.step for r in mon.history],
        "kl": [r.capabilities["D"].headline.now for r in mon.history],
        "stopped_at": stopped,
    }
    (out / f"rank{rank}.json").write_text(json.dumps(record))
    if rank == 0:
        save_file(
            {k: v.detach().contiguous() for k, v in model.state_dict().items()},
            str(out / "final.safetensors"),
        )


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
