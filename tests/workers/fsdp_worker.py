"""Run by tests/test_fsdp.py: a plain training loop with driftwatch attached in rollback mode,
on the tiny model, unsharded in one process or sharded under ``torchrun --nproc-per-node 2``
(gloo, CPU): FSDP2 (``fully_shard`` on every decoder layer, then the root), FSDP1 around the
whole model, or FSDP1 with a unit per decoder layer.

Every rank trains on the same batches, so the sharded run's averaged gradients are the
unsharded run's. Writes ``OUT/<mode>-rank<r>.json``: the reference fingerprint's weight
checksum and model identity, each round's capability values and decision, the stop step, and
whether the rollback restored this rank's parameter shards and optimizer moments exactly as
they were at the last healthy round.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from driftwatch import DriftMonitor, Policy, ProbeBudget, RollbackPlan, Threshold
from driftwatch.reference import model_identity, parameter_checksum
from tests.conftest import build_model, build_tokenizer

STEPS, EVERY, LR = 12, 2, 2e-2
# benchmarks/gpu.sh runs it on CUDA with NCCL (FSDP_DEVICE=cuda); the tests on CPU with gloo
DEVICE = torch.device(os.environ.get("FSDP_DEVICE", "cpu"))


def _local(t: torch.Tensor) -> torch.Tensor:
    """This rank's part of a parameter or moment (its shard under FSDP2)."""
    to_local = getattr(t, "to_local", None)
    return (to_local() if to_local is not None else t).detach().clone()


def _state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """This rank's parameters as training holds them (the optimizer's: under FSDP2 a unit left
    gathered after a forward shows the module other tensors) and their moments."""
    out = {}
    for g, group in enumerate(optimizer.param_groups):
        for i, p in enumerate(group["params"]):
            out[f"p/{g}/{i}"] = _local(p)
            for key, value in optimizer.state.get(p, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() > 0:
                    out[f"o/{g}/{i}/{key}"] = _local(value)
    return out


def main(mode: str, out: Path) -> None:
    disk = mode.endswith("-disk")  # snapshots in a file per rank instead of memory
    mode = mode.removesuffix("-disk")
    sharded = mode != "plain"
    if sharded:
        dist.init_process_group("nccl" if DEVICE.type == "cuda" else "gloo")
    if DEVICE.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    rank = dist.get_rank() if sharded else 0
    tokenizer = build_tokenizer()
    device = (
        torch.device(DEVICE.type, torch.cuda.current_device()) if DEVICE.type == "cuda" else DEVICE
    )
    model = build_model(tokenizer, seed=3).to(device)
    if mode == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for layer in model.model.layers:
            fully_shard(layer)
        fully_shard(model)
    elif mode == "fsdp1":  # the spelling: one unit around the whole model
        from torch.distributed.fsdp import FullyShardedDataParallel

        model = FullyShardedDataParallel(model, device_id=device, use_orig_params=True)
    elif mode == "fsdp1-layers":  # a unit per decoder layer, gathered one at a time
        from torch.distributed.fsdp import FullyShardedDataParallel
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy
        from transformers.models.llama.modeling_llama import LlamaDecoderLayer

        model = FullyShardedDataParallel(
            model,
            device_id=device,
            use_orig_params=True,
            auto_wrap_policy=ModuleWrapPolicy({LlamaDecoderLayer}),
        )
    weights = {"checksum": parameter_checksum(model), "identity": model_identity(model)}
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(0)
    data = torch.randint(0, len(tokenizer), (STEPS, 2, 24), generator=gen)

    monitor = DriftMonitor(
        "smoke",
        every_n_steps=EVERY,
        policy=Policy(
            [Threshold("D", max_kl=2e-3)], action="rollback", patience=2, significance=False
        ),
        budget=ProbeBudget(128),
        rollback=RollbackPlan(snapshot="disk", snapshot_dir=str(out / "snap"))
        if disk
        else RollbackPlan(),
    )
    monitor.start(model, tokenizer, optimizer=optimizer)
    healthy = _state(model, optimizer)
    rounds, restored, stopped = [], None, STEPS
    model.train()
    for step in range(1, STEPS + 1):
        batch = data[step - 1].to(device)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        decision = monitor.step(model, step, optimizer=optimizer)
        if not decision.probed:
            continue
        report = monitor.history[-1]
        rounds.append(
            {
                "step": step,
                "action": decision.action,
                "values": {c: cap.value for c, cap in report.capabilities.items()},
            }
        )
        if decision.action == "continue":
            healthy = _state(model, optimizer)
        if decision.rolled_back_to is not None:
            now = _state(model, optimizer)
            restored = now.keys() == healthy.keys() and all(
                torch.equal(now[k], healthy[k]) for k in healthy
            )
        if decision.stop:
            stopped = step
            break
    monitor.close()
    files = sorted(p.name for p in (out / "snap").glob("*.safetensors")) if disk else []
    record = {
        "rank": rank,
        "rounds": rounds,
        "stopped": stopped,
        "restored": restored,
        "files": files,
        **weights,
    }
    name = record["mode"] = f"{mode}-disk" if disk else mode
    (out / f"{name}-rank{rank}.json").write_text(json.dumps(record))
    if sharded:
        dist.barrier()  # leave together (see dist_fault_worker.py)
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
