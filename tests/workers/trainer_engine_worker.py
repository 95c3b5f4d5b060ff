"""Run by tests/test_trainer_engines.py: the Hugging Face ``Trainer`` with driftwatch attached
in rollback mode, on the tiny model, in one of these engines:

- ``plain``: one process, unsharded, batches of 4, rolling back to the Trainer's checkpoints;
- ``fsdp2``: ``torchrun --nproc-per-node 2``, the model loaded by transformers already sharded
  with FSDP2 (``from_pretrained(..., distributed_config=DistributedConfig(fsdp_size=2))``), so
  the Trainer leaves it as it is; batches of 2 per rank; memory snapshots of each rank's
  shards (the Trainer refuses to checkpoint the optimizer of such a model);
- ``zero3``: ``torchrun --nproc-per-node 2``, DeepSpeed ZeRO stage 3 on its CPU accelerator
  (gloo) through ``TrainingArguments(deepspeed=...)``; batches of 2 per rank; rolling back to
  the Trainer's checkpoints (DeepSpeed's own format, loaded by DeepSpeed).

The two ranks together see each step's 4 rows, so every engine computes the same updates.
Writes ``OUT/<mode>-rank<r>.json``: each round's capability values and decision, the stop
step, the checkpoint rolled back to, and whether this rank's parameters (its shards or
partitions) and optimizer moments after the rollback equal those it held at the round rolled
back to (which is what a checkpoint saved at that step holds).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from transformers import Trainer, TrainerCallback, TrainingArguments

from driftwatch import DriftMonitor, Policy, ProbeBudget, RollbackPlan, Threshold
from driftwatch.callbacks.hf import attach
from driftwatch.sharding import is_sharded
from tests.conftest import build_model, build_tokenizer

STEPS, EVERY, LR, SEQ = 12, 2, 2e-2, 24
LINE = 1e-2  # the KL line: crossed at step 10 (D 0.0144), not before (at most 0.0070)

ZERO3 = {
    "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
    "train_micro_batch_size_per_gpu": "auto",
    "train_batch_size": "auto",
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
    "zero_allow_untested_optimizer": True,  # the Trainer's torch AdamW, as unsharded
}


class Rows(torch.utils.data.Dataset):
    def __init__(self, vocab: int) -> None:
        gen = torch.Generator().manual_seed(0)
        self.rows = torch.randint(0, vocab, (STEPS * 4, SEQ), generator=gen)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.rows[i], "labels": self.rows[i]}


def _local(t: torch.Tensor) -> torch.Tensor:
    """This rank's part of a tensor: a DTensor's shard, a ZeRO-3 parameter's partition."""
    if hasattr(t, "ds_tensor"):
        t = t.ds_tensor
    to_local = getattr(t, "to_local", None)
    return (to_local() if to_local is not None else t).detach().clone()


def _state(trainer: Trainer) -> list[torch.Tensor]:
    """This rank's parameters as the optimizer updates them (DeepSpeed's: its flat partitions),
    their moments, and the module's own parameters (ZeRO-3: its partitions)."""
    optimizer = trainer.optimizer
    while hasattr(optimizer, "optimizer"):  # accelerate's and DeepSpeed's wrappers
        optimizer = optimizer.optimizer
    out = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            out.append(_local(p))
            moments = optimizer.state.get(p, {})
            out += [_local(v) for _, v in sorted(moments.items()) if torch.is_tensor(v) and v.dim()]
    return out + [_local(p) for _, p in trainer.model.named_parameters()]


def _model(mode: str, tokenizer, out: Path, world: int):
    if mode != "fsdp2":
        return build_model(tokenizer, seed=3)
    from transformers import AutoModelForCausalLM
    from transformers.distributed import DistributedConfig

    source = out / "tiny"
    if int(os.environ["RANK"]) == 0:
        build_model(tokenizer, seed=3).save_pretrained(source)
        (out / "tiny.done").touch()
    while not (out / "tiny.done").exists():
        time.sleep(0.1)
    config = DistributedConfig(fsdp_size=world)
    return AutoModelForCausalLM.from_pretrained(source, distributed_config=config)


def main(mode: str, out: Path) -> None:
    world = int(os.environ.get("WORLD_SIZE", 1))
    memory = mode == "fsdp2"
    tokenizer = build_tokenizer()
    model = _model(mode, tokenizer, out, world)
    args = TrainingArguments(
        output_dir=str(out / f"run-{mode}"),
        max_steps=STEPS,
        per_device_train_batch_size=4 // world,
        learning_rate=LR,
        lr_scheduler_type="constant",
        weight_decay=0.0,
        save_strategy="no" if memory else "steps",
        save_steps=EVERY,
        report_to=[],
        use_cpu=True,
        seed=0,
        data_seed=0,
        disable_tqdm=True,
        logging_steps=1000,
        deepspeed=ZERO3 if mode == "zero3" else None,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=Rows(len(tokenizer)), processing_class=tokenizer
    )
    monitor = DriftMonitor(
        "smoke",
        every_n_steps=EVERY,
        policy=Policy([Threshold("D", max_kl=LINE)], action="rollback", significance=False),
        budget=ProbeBudget(128),
        rollback=RollbackPlan(snapshot="memory" if memory else "checkpoint"),
    )
    callback = attach(trainer, monitor)
    actions: list[str] = []
    healthy: dict[int, list[torch.Tensor]] = {}  # this rank's state at each healthy round

    class _Actions(TrainerCallback):  # runs after the drift callback (attached first)
        def on_step_end(self, args, state, control, **kwargs):
            last = callback.last_decision
            if (
                last is None
                or last.step != state.global_step
                or len(actions) == len(monitor.history)
            ):
                return
            actions.append(last.action)
            if last.action == "continue":
                healthy[last.step] = _state(trainer)

    trainer.add_callback(_Actions())
    trainer.train()
    sharded = is_sharded(trainer.model)  # FSDP2's DTensors, ZeRO-3's partitions
    decision = callback.last_decision
    restored = None
    if decision is not None and decision.rolled_back_to is not None:
        now, then = _state(trainer), healthy[decision.rolled_back_to]
        restored = len(now) == len(then) and all(
            torch.equal(a, b) for a, b in zip(now, then, strict=True)
        )
    rank = dist.get_rank() if dist.is_initialized() else 0
    record = {
        "rank": rank,
        "rounds": [
            {"step": r.step, "values": {c: cap.value for c, cap in r.capabilities.items()}}
            for r in monitor.history
        ],
        "actions": actions,
        "stopped": trainer.state.global_step,
        "rolled_back_to": None if decision is None else decision.rolled_back_to,
        "restored_from": None if decision is None else decision.restored_from,
        "restored": restored,
        "sharded": sharded,
        "message": None if decision is None else decision.message,
    }
    (out / f"{mode}-rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
