"""DriftMonitor in a plain loop: cadence, TensorBoard tags, history, state, a real stop."""

from __future__ import annotations

import json

import pytest
import torch

from driftwatch import (
    Cadence,
    DriftMonitor,
    Policy,
    ProbeBudget,
    ReferenceSpec,
    RollbackPlan,
    Threshold,
)
from driftwatch.errors import DriftwatchError
from tests.conftest import LAYOUT_NOISE, build_model


def test_cadence_tensorboard_history_and_state(model, tokenizer, tmp_path, cache):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logdir = tmp_path / "run"
    monitor = DriftMonitor("smoke", every_n_steps=3, logdir=logdir, action="warn")
    monitor.start(model, tokenizer)
    probed = [s for s in range(1, 10) if monitor.step(model, s).probed]
    assert probed == [3, 6, 9]
    assert monitor.step(model, 9).probed is False  # a step is probed once
    monitor.close()

    events = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert "driftwatch/radar" in events.Tags()["images"]
    assert [e.step for e in events.Images("driftwatch/radar")] == [3, 6, 9]
    overhead = [e.value for e in events.Scalars("driftwatch_meta/overhead_pct")]
    assert len(overhead) == 3 and all(v > 0 for v in overhead)
    expected = {
        "driftwatch/CAN/C1",
        "driftwatch/CAN/C2",
        "driftwatch/CAN/C5a",
        "driftwatch/WILL/W1",
        "driftwatch/HOW/H1",
        "driftwatch/other/D",
        "driftwatch/CAN/mean",
        "driftwatch_raw/C1/score",
        "driftwatch_raw/D/kl",
        "driftwatch_ci/C1/low",
        "driftwatch_meta/probe_seconds",
    }
    assert expected <= tags
    assert [e.step for e in events.Scalars("driftwatch/CAN/C1")] == [3, 6, 9]
    unchanged = events.Scalars("driftwatch/CAN/C1")  # the model did not move
    assert all(abs(e.value) <= LAYOUT_NOISE for e in unchanged)

    lines = (logdir / "driftwatch_history.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["report"]["step"] for r in records] == [3, 6, 9]
    assert records[0]["decision"]["action"] == "continue"

    state = json.loads(json.dumps(monitor.state_dict()))  # plain JSON data
    fresh = DriftMonitor("smoke", every_n_steps=3)
    fresh.load_state_dict(state)
    assert fresh.history == monitor.history
    assert not fresh.due(9) and fresh.due(12)


def test_monitor_stops_a_model_whose_weights_were_damaged(tokenizer, cache):
    model = build_model(tokenizer)
    model.lm_head.weight.data *= 20  # peaked distributions, like a trained model
    monitor = DriftMonitor(
        "smoke", every_n_steps=1, action="stop", thresholds=[Threshold("D", max_kl=0.05)]
    )
    monitor.start(model, tokenizer)
    assert monitor.step(model, 1).action == "continue"
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * p.std() * torch.randn_like(p))
    decision = monitor.step(model, 2)
    assert decision.stop
    assert decision.breaches[0].target == "D"


def test_state_from_another_suite_is_refused(model, tokenizer, cache):
    from driftwatch.suite import ProbeSuite

    monitor = DriftMonitor("smoke", every_n_steps=1)
    small = ProbeSuite.from_items(ProbeSuite.load("smoke").items[:3], name="small")
    other = DriftMonitor(small, every_n_steps=1, thresholds=[])
    with pytest.raises(DriftwatchError, match="different probe suite"):
        other.load_state_dict(monitor.state_dict())


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: DriftMonitor("smoke", every_n_steps=0), "every_n_steps"),
        (
            lambda: DriftMonitor("smoke", thresholds=[Threshold("C7", max_drop=1.0)]),
            "not a capability or group",
        ),
        (lambda: ReferenceSpec(topk=0), "topk"),
        (lambda: DriftMonitor("smoke", action="explode"), "action"),
        (lambda: RollbackPlan(after="pause"), "after"),
        (lambda: RollbackPlan(lr_scale=0.0), "lr_scale"),
        (lambda: RollbackPlan(snapshot="disk"), "needs a directory"),
        (lambda: DriftMonitor("smoke", policy=Policy(), action="stop"), "in the Policy"),
        (lambda: DriftMonitor("smoke", every_n_steps=5, cadence=Cadence(5)), "in the Cadence"),
    ],
)
def test_bad_settings_fail_at_construction(make, message):
    with pytest.raises(DriftwatchError, match=message):
        make()


def test_probing_before_start_is_a_clear_error(model):
    with pytest.raises(DriftwatchError, match="start"):
        DriftMonitor("smoke", every_n_steps=1).step(model, 1)


def test_restored_state_reuses_the_base_reference(model, tokenizer, cache, tmp_path):
    first = DriftMonitor("smoke", every_n_steps=1)
    built = first.start(model, tokenizer).path
    state = json.loads(json.dumps(first.state_dict()))

    trained = build_model(tokenizer)
    with torch.no_grad():
        for p in trained.parameters():
            p.mul_(1.05)  # a resumed run starts from trained weights
    resumed = DriftMonitor("smoke", every_n_steps=1)
    resumed.load_state_dict(state)
    assert resumed.start(trained, tokenizer).path == built
    assert resumed.step(trained, 1).probed

    built.unlink()
    gone = DriftMonitor("smoke", every_n_steps=1)
    with pytest.raises(DriftwatchError, match="no longer exists"):
        gone.load_state_dict(state)


def test_only_rank_zero_writes_logs(model, tokenizer, cache, tmp_path, monkeypatch):
    monkeypatch.setattr("driftwatch.monitor.rank", lambda: 1)
    monitor = DriftMonitor("smoke", every_n_steps=1, logdir=tmp_path / "tb")
    monitor.start(model, tokenizer)
    assert monitor.step(model, 1).probed
    monitor.close()
    assert not (tmp_path / "tb").exists()


@pytest.mark.parametrize("source", ["builtin", "folder", "memory"])
def test_config_round_trips_through_json(tmp_path, source):
    import shutil

    from driftwatch.suite import BUILTIN_ROOT, ProbeSuite

    if source == "builtin":
        suite = "smoke"
    elif source == "folder":
        shutil.copytree(BUILTIN_ROOT / "smoke", tmp_path / "mine")
        suite = tmp_path / "mine"
    else:
        suite = ProbeSuite.from_items(ProbeSuite.load("smoke").items[:6], name="mem")
    monitor = DriftMonitor(
        suite,
        every_n_steps=7,
        policy=Policy(
            [Threshold("C1", max_drop=3.0, min_abs=0.01)],
            action="stop",
            patience=2,
            warmup_steps=5,
            significance=False,
            floor=0.2,
        ),
        logdir=tmp_path / "tb",
        budget=ProbeBudget(512),
        reference=ReferenceSpec(topk=16),
    )
    config = json.loads(json.dumps(monitor.config()))
    again = DriftMonitor.from_config(config)
    assert again.config() == config
    assert again.suite.fingerprint == monitor.suite.fingerprint
    assert again.policy == monitor.policy
    if source == "builtin":
        assert config["suite"] == "smoke"


def test_overhead_is_probe_time_over_training_time(model, tokenizer, cache):
    # start ends at 0; round 1 runs 10 → 11 (logged by 11); round 2 runs 31 → 35
    ticks = iter([0.0, 10.0, 11.0, 11.0, 31.0, 35.0, 35.0])
    monitor = DriftMonitor("smoke", every_n_steps=1)
    monitor.clock = lambda: next(ticks)
    monitor.start(model, tokenizer)
    monitor.step(model, 1)
    assert monitor.history[-1].extra["overhead_pct"] == pytest.approx(100 * 1 / 10)
    monitor.step(model, 2)
    assert monitor.history[-1].extra["overhead_pct"] == pytest.approx(100 * 4 / 20)


def test_custom_scalars_layout_groups_capabilities(model, tokenizer, cache, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.custom_scalar import layout_pb2, metadata

    monitor = DriftMonitor("smoke", every_n_steps=1, logdir=tmp_path)
    monitor.start(model, tokenizer)
    monitor.close()
    events = EventAccumulator(
        str(tmp_path), size_guidance={"scalars": 0, "images": 0, "tensors": 0}
    )
    events.Reload()
    layout = layout_pb2.Layout()
    tensor = events.Tensors(metadata.CONFIG_SUMMARY_TAG)[0].tensor_proto
    layout.ParseFromString(tensor.string_val[0])
    charts = {c.title: list(c.multiline.tag) for cat in layout.category for c in cat.chart}
    assert charts["CAN Δ%"] == ["driftwatch/CAN/C1", "driftwatch/CAN/C2", "driftwatch/CAN/C5a"]
    assert charts["group means Δ%"] == [
        "driftwatch/CAN/mean",
        "driftwatch/WILL/mean",
        "driftwatch/HOW/mean",
        "driftwatch/other/mean",
    ]


def test_finish_probes_the_last_step_once(model, tokenizer, cache):
    monitor = DriftMonitor("smoke", every_n_steps=4, thresholds=[])
    monitor.start(model, tokenizer)
    monitor.step(model, 4)
    assert not monitor.finish(model, 4).probed  # already probed
    monitor.start(model, tokenizer)
    assert monitor.finish(model, 6).probed
    assert [r.step for r in monitor.history] == [4, 6]


def test_a_failing_round_is_skipped_and_leaves_the_model_as_it_was(
    tokenizer, cache, monkeypatch, caplog
):
    import driftwatch.runner.rounds as rounds

    model = build_model(tokenizer, dropout=0.1)
    monitor = DriftMonitor("smoke", every_n_steps=1, action="stop")
    monitor.start(model, tokenizer)
    model.train()
    model.model.layers[0].eval()  # a mixed mode pattern, to see it restored exactly
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]

    def broken(*args, **kwargs):
        raise RuntimeError("injected failure half-way through the round")

    monkeypatch.setattr(rounds, "_generate", broken)  # after the log-likelihood passes
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    with caplog.at_level("ERROR"):
        decision = monitor.step(model, 1)
    assert decision.action == "continue" and not decision.probed
    assert monitor.failures == 1 and monitor.history == []
    assert "probe round at step 1 failed" in caplog.text and "injected failure" in caplog.text
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags
    assert torch.equal(torch.rand(3), expected), "the RNG stream is untouched"

    monkeypatch.undo()  # the next round works again: monitoring resumes
    assert monitor.step(model, 2).probed and monitor.failures == 1
    assert monitor.state_dict()["failures"] == 1


def test_strict_monitor_reraises(model, tokenizer, cache, monkeypatch):
    import driftwatch.runner.rounds as rounds

    monitor = DriftMonitor("smoke", every_n_steps=1, strict=True)
    monitor.start(model, tokenizer)
    fail = lambda *a, **k: (_ for _ in ()).throw(ValueError("x"))  # noqa: E731
    monkeypatch.setattr(rounds, "_generate", fail)
    with pytest.raises(ValueError, match="x"):
        monitor.step(model, 1)
    assert DriftMonitor.from_config(monitor.config()).strict is True
