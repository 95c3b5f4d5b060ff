"""Snapshots restore weights (and optimizer state) bit for bit; the monitor rolls back."""

from __future__ import annotations

import pytest
import torch

from driftwatch import DriftMonitor, Policy, RollbackPlan, Threshold
from driftwatch.errors import DriftwatchError
from driftwatch.rollback import SnapshotStore
from tests.conftest import build_model


def _step(model, optimizer, tokenizer, seed):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, len(tokenizer), (2, 16), generator=gen)
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    optimizer.zero_grad()


def _copy(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("mode", ["memory", "disk"])
def test_restore_is_bit_exact_for_weights_and_optimizer(tokenizer, tmp_path, mode):
    model = build_model(tokenizer).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    _step(model, optimizer, tokenizer, 0)
    store = SnapshotStore(mode, directory=tmp_path / "snap")
    store.take(model, 1, optimizer=optimizer)
    weights = _copy(model)
    moments = {k: v["exp_avg"].clone() for k, v in optimizer.state_dict()["state"].items()}
    for seed in (1, 2):
        _step(model, optimizer, tokenizer, seed)
    assert not all(torch.equal(weights[k], v) for k, v in model.state_dict().items())

    assert store.restore(model, optimizer=optimizer) == 1
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    state = optimizer.state_dict()["state"]
    assert all(torch.equal(moments[k], state[k]["exp_avg"]) for k in moments)
    if mode == "disk":
        assert [p.name for p in (tmp_path / "snap").iterdir()] == ["last_healthy.safetensors"]


def test_only_trainable_parameters_are_kept(tokenizer):
    model = build_model(tokenizer)
    model.model.embed_tokens.weight.requires_grad_(False)
    snap = SnapshotStore().take(model, 0)
    assert "model.embed_tokens.weight" not in snap.names
    assert "lm_head.weight" in snap.names


def test_restore_without_a_snapshot_is_an_error(tokenizer):
    with pytest.raises(DriftwatchError, match="no healthy snapshot"):
        SnapshotStore().restore(build_model(tokenizer))


def _run(tokenizer, monitor, steps):
    model = build_model(tokenizer).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-2)
    monitor.start(model, tokenizer, optimizer=optimizer)
    start = _copy(model)
    decisions = []
    for step in range(1, steps + 1):
        _step(model, optimizer, tokenizer, step)
        decision = monitor.step(model, step, optimizer=optimizer)
        if decision.probed:
            decisions.append(decision)
        if decision.stop:
            break
    return model, optimizer, start, decisions


DAMAGE = [Threshold("D", max_kl=1e-4)]
ROLLBACK = Policy(DAMAGE, action="rollback", significance=False)


def test_rollback_then_stop_restores_the_last_healthy_weights(tokenizer, cache):
    monitor = DriftMonitor("smoke", every_n_steps=2, policy=ROLLBACK)
    model, _, start, decisions = _run(tokenizer, monitor, 8)
    (decision,) = decisions
    assert decision.stop and decision.rolled_back_to == 0
    assert "rolled back to step 0" in decision.message
    assert all(torch.equal(start[k], v) for k, v in model.state_dict().items())


def test_rollback_and_continue_scales_the_lr_until_the_cap(tokenizer, cache):
    monitor = DriftMonitor(
        "smoke",
        every_n_steps=2,
        policy=ROLLBACK,
        rollback=RollbackPlan(after="continue", lr_scale=0.5, max_rollbacks=1),
    )
    model, _, start, decisions = _run(tokenizer, monitor, 10)
    assert [d.action for d in decisions] == ["rollback", "stop"]
    assert [d.rolled_back_to for d in decisions] == [0, 0]
    # the first rollback halved the rate; the second restored and stopped (rate untouched
    # by the stop, but the snapshot's moments came back with the weights)
    assert monitor.rollbacks == 2
    assert all(torch.equal(start[k], v) for k, v in model.state_dict().items())


def test_repeated_rollbacks_compound_the_lr_scale(tokenizer, cache):
    monitor = DriftMonitor(
        "smoke",
        every_n_steps=2,
        policy=ROLLBACK,
        rollback=RollbackPlan(after="continue", lr_scale=0.5, max_rollbacks=5),
    )
    _, optimizer, _, decisions = _run(tokenizer, monitor, 6)
    rolled = [d for d in decisions if d.action == "rollback"]
    assert len(rolled) == 3
    assert optimizer.param_groups[0]["lr"] == pytest.approx(5e-2 * 0.5**3)


def test_healthy_rounds_move_the_snapshot_forward(tokenizer, cache):
    monitor = DriftMonitor("smoke", every_n_steps=2, action="rollback", thresholds=[])
    model, _, _, decisions = _run(tokenizer, monitor, 6)
    assert [d.action for d in decisions] == ["continue"] * 3
    assert monitor.snapshots.last.step == 6
    assert all(
        torch.equal(monitor.snapshots.last.tensors[k], p) for k, p in model.named_parameters()
    )


def test_disk_snapshot_pointer_survives_a_restart(tokenizer, cache, tmp_path):
    import json

    kwargs = dict(
        every_n_steps=2,
        action="rollback",
        thresholds=[],
        rollback=RollbackPlan(snapshot="disk", snapshot_dir=tmp_path / "snaps"),
    )
    first = DriftMonitor("smoke", **kwargs)
    model, _, _, _ = _run(tokenizer, first, 4)  # healthy rounds at 2 and 4
    healthy = {k: v.detach().clone() for k, v in model.named_parameters()}
    state = json.loads(json.dumps(first.state_dict()))
    assert state["snapshot"]["step"] == 4

    resumed = DriftMonitor("smoke", **kwargs)
    resumed.load_state_dict(state)
    assert resumed.snapshots.last.step == 4
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert resumed.snapshots.restore(model) == 4
    assert all(torch.equal(healthy[k], p) for k, p in model.named_parameters())


def test_zero3_partitions_are_refused_with_the_fix(tokenizer):
    """A ZeRO-3 parameter's ``data`` is empty (its part lives in DeepSpeed's partitions): a
    snapshot of it would restore nothing, so it is refused, naming checkpoint rollback."""
    model = build_model(tokenizer)
    next(model.parameters()).ds_id = 0  # what deepspeed.zero.Init marks each parameter with
    with pytest.raises(DriftwatchError, match="snapshot='checkpoint'"):
        SnapshotStore("memory").take(model, 0)
