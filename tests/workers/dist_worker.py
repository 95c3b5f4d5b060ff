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
from driftwatch.runner.drafts import plan_drafts
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

    # draft decoding of slightly changed weights: some replies match the base's, some diverge
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        gen = torch.Generator().manual_seed(3)  # the same change on every rank
        for p in model.parameters():
            p.add_(0.05 * p.std() * torch.randn(p.shape, generator=gen))
    plain = run_probes(model, compiled, tokenizer, record_topk=8)
    plan = plan_drafts(compiled, result.generated, torch.float32)
    before = len(forwards)
    drafted = run_probes(model, compiled, tokenizer, record_topk=8, drafts=plan)
    draft_calls = len(forwards) - before
    model.load_state_dict(saved)

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
        "plain_generated": plain.generated,
        "draft_generated": drafted.generated,
        "draft_forward_calls": draft_calls,
        "draft_record": drafted.decode,
        "actions": actions,
        "kl": [r.capabilities["D"].headline.now for r in monitor.history],
    }
    (out / f"rank{rank}.json").write_text(json.dumps(record).replace("NaN", "null"))
    dist.barrier()  # leave together (see dist_fault_worker.py)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
