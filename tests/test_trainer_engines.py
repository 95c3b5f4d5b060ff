"""The Hugging Face ``Trainer`` on sharded engines, two gloo ranks on CPU, against the same run
unsharded in one process (``tests/workers/trainer_engine_worker.py``):

- FSDP2 as transformers applies it when loading (``DistributedConfig(fsdp_size=2)``): the
  Trainer trains the sharded model as it is; rollback from driftwatch's memory snapshots of each
  rank's shards. (The Trainer refuses to checkpoint such a model's optimizer, so
  ``snapshot="checkpoint"`` is not available there.)
- DeepSpeed ZeRO-3 through ``TrainingArguments(deepspeed=...)`` on DeepSpeed's CPU accelerator:
  rollback to the Trainer's own checkpoint, loaded by DeepSpeed.

FSDP through ``TrainingArguments(fsdp=...)`` cannot run on CPU: accelerate 1.16 refuses FSDP1
("FSDP parameter initialization with `sync_module_states=True` is not supported on cpu") and
silently trains with DDP instead of FSDP2 (it enables FSDP only for GPU-like devices). It is in
``benchmarks/gpu.sh``.
"""

from __future__ import annotations

import pytest

from tests.sharded import REPO, assert_restored, assert_same_drift, run

WORKER = REPO / "tests" / "workers" / "trainer_engine_worker.py"
pytestmark = pytest.mark.slow
TIMEOUT = 600  # DeepSpeed compiles its CPU communication op on first use


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return run(WORKER, "plain", tmp_path_factory.mktemp("plain"), ranks=1)[0]


@pytest.fixture(scope="module", params=["fsdp2", "zero3"])
def runs(request, plain, tmp_path_factory):
    mode = request.param
    if mode == "zero3":
        pytest.importorskip("deepspeed", reason="the deepspeed extra (make venv installs it)")
    out = tmp_path_factory.mktemp(mode)
    ranks = run(WORKER, mode, out, ranks=2, timeout=TIMEOUT, DS_ACCELERATOR="cpu")
    return mode, plain, ranks


def test_drift_under_the_engine_equals_the_unsharded_run(runs):
    _, plain, ranks = runs
    assert len(plain["rounds"]) == 5
    assert_same_drift(plain, ranks)


def test_every_rank_rolls_back_and_stops_where_the_unsharded_run_does(runs):
    mode, plain, ranks = runs
    assert plain["actions"] == ["continue"] * 4 + ["stop"]
    assert (plain["stopped"], plain["rolled_back_to"], plain["restored_from"]) == (
        10,
        8,
        "checkpoint-8",
    )
    source = None if mode == "fsdp2" else "checkpoint-8"  # fsdp2: driftwatch's own snapshot
    for rank in ranks:
        assert rank["actions"] == plain["actions"]
        assert (rank["stopped"], rank["rolled_back_to"], rank["restored_from"]) == (10, 8, source)


def test_the_rollback_restores_every_rank_s_shards_and_moments_exactly(runs):
    _, plain, ranks = runs
    assert_restored(plain, ranks)


def test_the_ranks_really_trained_sharded(runs):
    """Equal drift would also come from an engine that quietly trained unsharded."""
    mode, plain, ranks = runs
    assert plain["sharded"] is False
    assert [rank["sharded"] for rank in ranks] == [True, True], mode
