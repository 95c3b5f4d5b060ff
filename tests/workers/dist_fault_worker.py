"""Run under ``torchrun --nproc-per-node 2`` by tests/test_distributed.py (gloo, CPU).

Rank 1 alone fails its share of the first probe round — with an ordinary error (``error``)
or out of memory (``oom``) — or alone decides to stop (``stop``: its policy is replaced by
one that always stops), and every rank writes what its monitor did to ``OUT/rank<r>.json``.
Without coordination rank 0 would wait forever in the round's all-reduce, or train on alone.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import driftwatch.runner.rounds as rounds
from driftwatch import Decision, DriftMonitor, Policy, ProbeBudget
from tests.conftest import build_model, build_tokenizer


def main(mode: str, out: Path) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    tokenizer = build_tokenizer()
    model = build_model(tokenizer)
    monitor = DriftMonitor("smoke", every_n_steps=1, budget=ProbeBudget(64, min_token_budget=16))
    monitor.start(model, tokenizer)
    real = rounds._score_local
    calls = []

    def flaky(model, compiled, *args):
        calls.append(compiled.token_budget)
        if rank == 1 and mode == "error" and len(calls) == 1:
            raise RuntimeError("injected failure on rank 1")
        if rank == 1 and mode == "oom" and compiled.token_budget > 32:
            raise torch.OutOfMemoryError("injected out of memory on rank 1")
        return real(model, compiled, *args)

    rounds._score_local = flaky
    if mode == "stop" and rank == 1:

        class Stop(Policy):
            def decide(self, history):
                return Decision("stop", history[-1].step)

        monitor.policy = Stop((), action="stop")
    decisions = [monitor.step(model, 1)]
    decisions.append(monitor.step(model, 2))
    record = {
        "rank": rank,
        "probed": [d.probed for d in decisions],
        "actions": [d.action for d in decisions],
        "failures": monitor.failures,
        "budget": monitor.state_dict()["token_budget"],
        "steps": [r.step for r in monitor.history],
    }
    (out / f"rank{rank}.json").write_text(json.dumps(record))
    # leave together: a rank that destroys its group while a peer has already exited can
    # abort in gloo's teardown ("terminate called without an active exception")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
