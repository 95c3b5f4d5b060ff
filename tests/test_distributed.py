"""Two-process gloo runs: sharded probing gives the single-process results, every rank makes
the same number of forward passes and takes the same decision, and nothing hangs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(tmp_path: Path, nproc: int, script: str = "dist_worker.py", *args: str) -> list[dict]:
    out = tmp_path / f"{Path(script).stem}-{'-'.join(args)}-n{nproc}"
    out.mkdir()
    env = {
        **os.environ,
        "DRIFTWATCH_CACHE": str(tmp_path / f"cache{nproc}"),
        "OMP_NUM_THREADS": "1",
        "MASTER_ADDR": "127.0.0.1",
        "OUT_DIR": str(out),
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={nproc}",
        f"--master-port={_free_port()}",
        "--master-addr=127.0.0.1",
        str(REPO / "tests" / "workers" / script),
        *args,
        str(out),
    ]
    proc = subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False
    )  # a hang fails the test here instead of blocking CI
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(nproc)]


def _close(a, b, tol=1e-5):
    return all((x is None and y is None) or abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def test_two_ranks_match_one_process(tmp_path):
    (single,) = _launch(tmp_path, 1)
    ranks = _launch(tmp_path, 2)
    for r in ranks:
        for name, values in single["values"].items():
            assert _close(r["values"][name], values), name
        assert r["generated"] == single["generated"]
        assert all(_close(a, b) for a, b in zip(r["topk"], single["topk"], strict=True))
        assert _close(r["kl"], single["kl"])
    # the same work on both ranks (FSDP would hang otherwise), about half of one process's
    assert ranks[0]["forward_calls"] == ranks[1]["forward_calls"] < single["forward_calls"]
    # draft decoding: the plain replies, and the same passes on every rank, even though
    # each rank verified different items and only some of them diverged
    for r in [single, *ranks]:
        assert r["draft_generated"] == r["plain_generated"] == single["plain_generated"]
    assert ranks[0]["draft_forward_calls"] == ranks[1]["draft_forward_calls"]
    record = single["draft_record"]
    assert 0 < record["decode_matched"] < len(single["generated"]), record
    # both ranks stop at the same round, as one process does
    assert ranks[0]["actions"] == ranks[1]["actions"] == single["actions"] == ["continue", "stop"]


@pytest.mark.parametrize("framework", ["hf", "lightning"])
def test_ddp_training_ranks_agree_and_stop_together(tmp_path, framework):
    import torch
    from safetensors.torch import load_file

    from driftwatch import DriftMonitor, ProbeBudget, ReferenceSpec
    from tests.conftest import build_model, build_tokenizer

    ranks = _launch(tmp_path, 2, "dist_train_worker.py", framework)
    assert ranks[0] == ranks[1]  # the same rounds, the same drift, the same stop
    record = ranks[0]
    assert record["steps"] and record["stopped_at"] == record["steps"][-1] < 12

    # the last round's drift equals what one process measures on the same weights
    tokenizer = build_tokenizer()
    base = build_model(tokenizer, seed=3)
    base.lm_head.weight.data *= 20
    monitor = DriftMonitor(
        "smoke",
        every_n_steps=1,
        thresholds=[],
        budget=ProbeBudget(128),
        reference=ReferenceSpec(cache_dir=tmp_path / "single"),
    )
    monitor.start(base, tokenizer)
    out = tmp_path / f"dist_train_worker-{framework}-n2"
    base.load_state_dict(load_file(str(out / "final.safetensors")))
    with torch.no_grad():
        monitor.step(base, 1)
    assert monitor.history[-1].capabilities["D"].headline.now == pytest.approx(
        record["kl"][-1], abs=1e-5
    )


def test_a_failure_on_one_rank_skips_the_round_on_every_rank(tmp_path):
    ranks = _launch(tmp_path, 2, "dist_fault_worker.py", "error")  # a hang times out instead
    for r in ranks:
        assert r["probed"] == [False, True], r
        assert r["failures"] == 1 and r["steps"] == [2]
    assert ranks[0]["actions"] == ranks[1]["actions"]


def test_out_of_memory_on_one_rank_shrinks_the_budget_on_every_rank(tmp_path):
    ranks = _launch(tmp_path, 2, "dist_fault_worker.py", "oom")
    for r in ranks:
        assert r["probed"] == [True, True] and r["failures"] == 0, r
        assert r["budget"] == 32  # the same layout everywhere, so the ranks stay in step


def test_a_stop_on_one_rank_stops_every_rank(tmp_path):
    ranks = _launch(tmp_path, 2, "dist_fault_worker.py", "stop")
    for r in ranks:
        assert r["probed"] == [True, True], r
        assert r["actions"][0] == "stop", r  # rank 0's own policy said continue
