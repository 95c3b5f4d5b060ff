"""Running a worker script on two gloo ranks (or one process) and comparing its ranks with the
unsharded run, for the sharded-engine tests (test_fsdp, test_trainer_engines,
test_lightning_fsdp)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_distributed import _free_port

REPO = Path(__file__).resolve().parents[1]


def env(out: Path, name: str, **extra: str) -> dict[str, str]:
    """One run's environment: its own cache, one thread per rank, a free port."""
    return {
        **os.environ,
        "DRIFTWATCH_CACHE": str(out / f"cache-{name}"),
        "OMP_NUM_THREADS": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
        **extra,
    }


def run(
    worker: Path,
    mode: str,
    out: Path,
    *,
    ranks: int,
    torchrun: bool = True,
    timeout: int = 300,
    **extra: str,
) -> list[dict]:
    """``worker MODE OUT`` on ``ranks`` ranks: one process, or ``torchrun`` (``torchrun=False``:
    the worker launches its other ranks itself, as Lightning does); the ranks'
    ``OUT/<mode>-rank<r>.json`` records. A hang fails the test at ``timeout``."""
    launch = [sys.executable]
    if ranks > 1 and torchrun:
        launch += ["-m", "torch.distributed.run", f"--nproc-per-node={ranks}"]
        launch += [f"--master-port={_free_port()}", "--master-addr=127.0.0.1"]
    proc = subprocess.run(
        [*launch, str(worker), mode, str(out)],
        cwd=REPO,
        env=env(out, mode, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((out / f"{mode}-rank{r}.json").read_text()) for r in range(ranks)]


def assert_same_drift(plain: dict, ranks: list[dict], tolerance: float = 1e-5) -> None:
    """Every rank measured every capability of every round as the unsharded run did."""
    assert len(plain["rounds"]) >= 2
    for rank in ranks:
        assert [r["step"] for r in rank["rounds"]] == [r["step"] for r in plain["rounds"]]
        for mine, theirs in zip(rank["rounds"], plain["rounds"], strict=True):
            assert mine["values"].keys() == theirs["values"].keys()
            for cid, value in theirs["values"].items():
                assert mine["values"][cid] == pytest.approx(value, abs=tolerance), (
                    mine["step"],
                    cid,
                )


def assert_same_decisions(plain: dict, ranks: list[dict], steps: int) -> None:
    """Both ranks took the unsharded run's decisions, the policy stopped the run (after a
    rollback) before ``steps``, and every rank stopped where the unsharded run did."""
    actions = [[r["action"] for r in rank["rounds"]] for rank in ranks]
    assert actions[0] == actions[1] == [r["action"] for r in plain["rounds"]]
    assert "stop" in actions[0]
    assert ranks[0]["stopped"] == ranks[1]["stopped"] == plain["stopped"] < steps


def assert_restored(plain: dict, ranks: list[dict]) -> None:
    """The rollback restored the unsharded run's and every rank's state bit for bit."""
    assert plain["restored"] is True
    assert [rank["restored"] for rank in ranks] == [True] * len(ranks)
