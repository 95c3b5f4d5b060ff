"""Run by tests/test_lightning_fsdp.py: a Lightning ``fit`` of the tiny model with
``DriftCallback`` in rollback mode, unsharded in one process (``plain``: devices=1, batch 4)
or sharded with FSDP2 (``fsdp2``: ``ModelParallelStrategy(data_parallel_size=2,
tensor_parallel_size=1)``, devices=2 on CPU with gloo, Lightning's own launcher re-running
this script as rank 1, ``configure_model`` applying ``fully_shard`` to every decoder layer and
then the root on the data-parallel mesh).

``python tests/workers/lightning_fsdp_worker.py MODE OUT``

Rank r trains on rows r::2 in batches of 2 (no distributed sampler), so the two ranks' averaged
gradients at each step are the plain run's on the same 4 rows. Writes ``OUT/<mode>-rank<r>.json``:
each round's step, decision and capability values, the step the fit stopped at
(``trainer.global_step``), whether the parameters were sharded while it trained, and whether
the rollback restored this rank's parameter shards and optimizer moments exactly as they were
at the last healthy round.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.strategies import ModelParallelStrategy
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from driftwatch import DriftMonitor, Policy, ProbeBudget, RollbackPlan, Threshold
from driftwatch.callbacks.lightning import DriftCallback
from tests.conftest import build_model, build_tokenizer
from tests.workers.fsdp_worker import _state

# the plain run's D (nats of KL) without a line: 6.0e-4 at step 2, 1.45e-3 at 4, 2.39e-3 at 6,
# 3.07e-3 at 8; a line between steps 4 and 6 warns at 6, then (patience 2) rolls back to the
# snapshot of step 4 at 8 and stops there
STEPS, EVERY, LR, MAX_KL = 12, 2, 1e-2, 2e-3


class LM(pl.LightningModule):  # as tests/test_callbacks_lightning.py
    def __init__(self, model: torch.nn.Module, lr: float) -> None:
        super().__init__()
        self.model = model.train()
        self.lr = lr

    def training_step(self, batch, batch_idx):
        return self.model(input_ids=batch, labels=batch).loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.model.parameters(), lr=self.lr)


class ShardedLM(LM):
    def configure_model(self) -> None:
        from torch.distributed.fsdp import fully_shard
        from torch.distributed.tensor import DTensor

        if any(isinstance(p, DTensor) for p in self.model.parameters()):
            return  # already sharded (configure_model may be called again)
        mesh = self.device_mesh["data_parallel"]
        for layer in self.model.model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(self.model, mesh=mesh)


class Recorder(pl.Callback):
    """Runs after ``DriftCallback``: the round it just probed, and the local shards and moments
    at each healthy round, compared with those after the rollback."""

    def __init__(self, drift: DriftCallback) -> None:
        self.drift = drift
        self.rounds: list[dict] = []
        self.healthy: dict[str, torch.Tensor] | None = None
        self.restored: bool | None = None
        self.sharded: bool | None = None

    def on_fit_start(self, trainer, pl_module) -> None:
        from torch.distributed.tensor import DTensor

        self.sharded = any(isinstance(p, DTensor) for p in pl_module.model.parameters())
        self.healthy = _state(pl_module.model, trainer.optimizers[0])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        history = self.drift.monitor.history
        if not history or history[-1].step != trainer.global_step:
            return  # not a probe round
        decision = self.drift.last_decision
        report = history[-1]
        self.rounds.append(
            {
                "step": report.step,
                "action": decision.action,
                "rolled_back_to": decision.rolled_back_to,
                "values": {c: cap.value for c, cap in report.capabilities.items()},
            }
        )
        state = _state(pl_module.model, trainer.optimizers[0])
        if decision.action == "continue":
            self.healthy = state
        if decision.rolled_back_to is not None:
            self.restored = state.keys() == self.healthy.keys() and all(
                torch.equal(state[k], self.healthy[k]) for k in self.healthy
            )


def main(mode: str, out: Path) -> None:
    tokenizer = build_tokenizer()
    pl.seed_everything(7, verbose=False)
    if mode == "plain":
        module, devices, strategy, batch = LM(build_model(tokenizer, seed=3), LR), 1, "auto", 4
    elif mode == "fsdp2":
        module, devices, batch = ShardedLM(build_model(tokenizer, seed=3), LR), 2, 2
        strategy = ModelParallelStrategy(
            data_parallel_size=2, tensor_parallel_size=1, process_group_backend="gloo"
        )
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    monitor = DriftMonitor(
        "smoke",
        every_n_steps=EVERY,
        policy=Policy(
            [Threshold("D", max_kl=MAX_KL)], action="rollback", patience=2, significance=False
        ),
        budget=ProbeBudget(128),
        rollback=RollbackPlan(),  # memory snapshots of each rank's shards and moments
    )
    drift = DriftCallback(monitor, tokenizer)
    recorder = Recorder(drift)
    trainer = pl.Trainer(
        max_steps=STEPS,
        accelerator="cpu",
        devices=devices,
        strategy=strategy,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[drift, recorder],  # in this order: the recorder sees the decision
        default_root_dir=out / f"root-{mode}",
        use_distributed_sampler=False,
    )
    rank, world = trainer.global_rank, trainer.world_size
    gen = torch.Generator().manual_seed(0)
    data = torch.randint(0, len(tokenizer), (STEPS * 4, 24), generator=gen)
    rows = DataLoader(list(data)[rank::world], batch_size=batch, shuffle=False)
    trainer.fit(module, rows)
    record = {
        "rank": rank,
        "world": trainer.world_size,
        "rounds": recorder.rounds,
        "history": [r.step for r in monitor.history],
        "stopped": trainer.global_step,
        "restored": recorder.restored,
        "sharded": recorder.sharded,
    }
    (out / f"{mode}-rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
