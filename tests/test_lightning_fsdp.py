"""The Lightning adapter under FSDP2, two gloo ranks on CPU: ``ModelParallelStrategy``
(``data_parallel_size=2``, ``fully_shard`` on every decoder layer and the root in
``configure_model``, Lightning's own launcher) against one unsharded process on the same rows.
``DriftCallback`` in rollback mode measures what the unsharded run measures, every rank takes
the unsharded run's decisions and stops at the same step, and the rollback restores each
rank's parameter shards and optimizer moments bit for bit.

``FSDPStrategy`` (FSDP1) is not covered: Lightning refuses it on CPU ("The strategy `fsdp`
requires a GPU accelerator, but received `accelerator='cpu'`..."), and a subclass that gets
past that check fails in its setup with "FSDP needs a non-CPU accelerator device, but no
accelerator device is detected." (FSDP1 in a plain loop is tested in tests/test_fsdp.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_distributed import _free_port

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "workers" / "lightning_fsdp_worker.py"
pytestmark = pytest.mark.slow


def _env(tmp_path: Path, name: str) -> dict[str, str]:
    return {
        **os.environ,
        "DRIFTWATCH_CACHE": str(tmp_path / f"cache-{name}"),
        "OMP_NUM_THREADS": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
    }


def _run(cmd: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False
    )  # a hang fails the test here instead of blocking CI
    assert proc.returncode == 0, proc.stderr[-3000:]


def _fit(tmp_path_factory, mode: str) -> list[dict]:
    out = tmp_path_factory.mktemp(mode)
    _run([sys.executable, str(WORKER), mode, str(out)], _env(out, mode))
    ranks = 1 if mode == "plain" else 2  # Lightning launches rank 1 itself
    return [json.loads((out / f"{mode}-rank{r}.json").read_text()) for r in range(ranks)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    (plain,) = _fit(tmp_path_factory, "plain")
    return plain, _fit(tmp_path_factory, "fsdp2")


def test_the_ranks_trained_sharded_and_the_plain_run_did_not(runs):
    plain, ranks = runs
    assert (plain["world"], plain["sharded"]) == (1, False)
    assert [(rank["world"], rank["sharded"]) for rank in ranks] == [(2, True), (2, True)]


def test_sharded_drift_equals_the_unsharded_run(runs):
    plain, ranks = runs
    assert len(plain["rounds"]) >= 2
    for rank in ranks:
        assert [r["step"] for r in rank["rounds"]] == [r["step"] for r in plain["rounds"]]
        for mine, theirs in zip(rank["rounds"], plain["rounds"], strict=True):
            assert mine["values"].keys() == theirs["values"].keys()
            for cid, value in theirs["values"].items():
                assert mine["values"][cid] == pytest.approx(value, abs=1e-5), (mine["step"], cid)


def test_every_rank_takes_the_same_decisions_and_stops_at_the_same_step(runs):
    plain, ranks = runs
    actions = [[r["action"] for r in rank["rounds"]] for rank in ranks]
    assert actions[0] == actions[1] == [r["action"] for r in plain["rounds"]]
    assert "stop" in actions[0]  # the policy acted: the fit was rolled back and stopped
    assert ranks[0]["stopped"] == ranks[1]["stopped"] == plain["stopped"] < 12
    assert ranks[0]["stopped"] == plain["rounds"][-1]["step"]  # stopped by that round


def test_rollback_restores_every_rank_s_shards_and_moments_exactly(runs):
    plain, ranks = runs
    assert plain["restored"] is True
    assert [rank["restored"] for rank in ranks] == [True, True]
