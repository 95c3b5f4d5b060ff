"""PyTorch Lightning: add driftwatch's callback to the Trainer.

python examples/lightning_loop.py [--tiny]
"""

from __future__ import annotations

import lightning as L
import torch
from _common import parser, setup, train_rows

from driftwatch import DriftMonitor
from driftwatch.callbacks.lightning import DriftCallback
from driftwatch.tasks import PadCollator


class CausalLM(L.LightningModule):
    def __init__(self, model: torch.nn.Module, lr: float) -> None:
        super().__init__()
        self.model, self.lr = model, lr

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.model(**batch).loss
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.lr)


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    run = setup(args)
    tok = run["tokenizer"]
    rows = train_rows(tok, run["steps"] * run["batch"])
    loader = torch.utils.data.DataLoader(
        rows, batch_size=run["batch"], collate_fn=PadCollator(tok.pad_token_id)
    )
    monitor = DriftMonitor(
        run["suite"], every_n_steps=run["every"], action="stop", logdir=f"{args.out}/lightning"
    )
    trainer = L.Trainer(
        max_steps=run["steps"],
        accelerator="cpu",
        callbacks=[DriftCallback(monitor, tok)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    trainer.fit(CausalLM(run["model"], run["lr"]), loader)
    print(f"rounds: {len(monitor.history)}; stopped at step {trainer.global_step}")


if __name__ == "__main__":
    main()
