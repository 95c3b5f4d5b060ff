"""Run under ``torchrun --nproc-per-node N`` by tests/test_distributed.py (gloo, CPU).

Each rank probes the smoke suite on the same tiny model, then monitors a model whose weights
are damaged after the first round, and writes what it saw to ``OUT/rank<r>.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from driftwatch import DriftMonitor, Policy, ProbeBudget, Threshold
from driftwatch.runner import compile_suite, run_probes
from driftwatch.suite import ProbeSuite
from tests.conftest import build_model, build_tokenizer


def main(out: Path) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    tokenizer = build_tokenizer()
    model = build_model(tokenizer)
    model.lm_head.weight.data *= 20
    forwards = []
    # the decoder runs in every probe forward pass (the packed path bypasses the LM head)
    model.model.register_forward_hook(lambda *a: forwards.append(1))

    compiled = compile_suite(ProbeSuite.load("smoke"), tokenizer, model, token_budget=64)
    result = run_probes(model, compiled, tokenizer, record_topk=8)
    calls = len(forwards)

    monitor = DriftMonitor(
        "smoke",
        every_n_steps=1,
        policy=Policy([Threshold("D", max_kl=1e-3)], action="stop", significance=False),
        budget=ProbeBudget(64),
    )
    monitor.start(model, tokenizer)
    actions = [monitor.step(model, 1).action]
    with torch.no_grad():
        gen = torch.Generator().manual_seed(5)  # the same damage on every rank
        for p in model.parameters():
            p.add_(0.3 * p.std() * torch.randn(p.shape, generator=gen))
    actions.append(monitor.step(model, 2).action)
    record = {
        "rank": rank,
        "world": dist.get_world_size(),
        "values": {k: v.tolist() for k, v in result.values.items()},
        "generated": result.generated,
        "topk": result.topk[0].tolist(),
        "forward_calls": calls,
        "actions": actions,
        "kl": [r.capabilities["D"].headline.now for r in monitor.history],
    }
    (out / f"rank{rank}.json").write_text(json.dumps(record).replace("NaN", "null"))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
