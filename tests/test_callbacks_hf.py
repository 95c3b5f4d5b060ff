"""The Hugging Face Trainer adapter on a tiny model: tags and log history at the probe steps,
a real stop, bit-identical warn mode, and a resume that continues the history."""

from __future__ import annotations

import pytest
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from driftwatch import DriftMonitor, Policy, Threshold
from driftwatch.callbacks.hf import DriftCallback
from driftwatch.errors import DriftwatchError
from driftwatch.sinks import HISTORY_FILE, read_history
from tests.conftest import build_model


def dataset(tokenizer, n: int = 32) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    data = torch.randint(0, len(tokenizer), (n, 24), generator=gen)
    return [{"input_ids": row, "labels": row} for row in data]


class _StopAfter(TrainerCallback):
    """Interrupts training after a step, as a crash would (for resume tests)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True


def build_trainer(
    tokenizer,
    out,
    callbacks=(),
    *,
    steps=8,
    lr=1e-3,
    dropout=0.0,
    save_steps=None,
    save_total_limit=None,
    tokenizer_for_trainer=True,
):
    """A Trainer of the tiny model (seed 3) on :func:`dataset`, writing to ``out``."""
    model = build_model(tokenizer, dropout=dropout, seed=3).train()
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=steps,
        per_device_train_batch_size=2,
        learning_rate=lr,
        report_to=[],
        use_cpu=True,
        seed=11,
        disable_tqdm=True,
        logging_steps=1000,
        save_strategy="steps" if save_steps else "no",
        save_steps=save_steps or 500,
        save_total_limit=save_total_limit,
        restore_callback_states_from_checkpoint=True,
        dataloader_num_workers=0,
    )
    return Trainer(
        model=model,
        args=args,
        train_dataset=dataset(tokenizer),
        processing_class=tokenizer if tokenizer_for_trainer else None,
        callbacks=list(callbacks),
    )


def train(
    tokenizer,
    tmp_path,
    callbacks,
    *,
    steps=8,
    lr=1e-3,
    dropout=0.0,
    save_steps=None,
    resume=None,
    tokenizer_for_trainer=True,
    stop_after=None,
):
    trainer = build_trainer(
        tokenizer,
        tmp_path / "out",
        [*callbacks, *([] if stop_after is None else [_StopAfter(stop_after)])],
        steps=steps,
        lr=lr,
        dropout=dropout,
        save_steps=save_steps,
        tokenizer_for_trainer=tokenizer_for_trainer,
    )
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def test_tags_and_log_history_at_the_probe_steps(tokenizer, tmp_path, cache):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monitor = DriftMonitor("smoke", every_n_steps=6, thresholds=[])
    trainer = train(tokenizer, tmp_path, [DriftCallback(monitor)], steps=27)
    logdir = tmp_path / "out" / "driftwatch"  # the documented default
    events = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    # every 6th step, and step 27 because training ends there
    for tag in (
        "driftwatch/other/D",
        "driftwatch/CAN/C1",
        "driftwatch/CAN/mean",
        "driftwatch_raw/C1/score",
        "driftwatch_meta/probe_seconds",
    ):
        assert [e.step for e in events.Scalars(tag)] == [6, 12, 18, 24, 27], tag
    logged = [h for h in trainer.state.log_history if "driftwatch/other/D" in h]
    assert [h["step"] for h in logged] == [6, 12, 18, 24, 27]
    assert logged[-1]["driftwatch/other/D"] > 0
    # the adapter passed its default folder to start(); the monitor's configuration is the
    # user's, unchanged
    assert monitor.logdir is None and monitor.config()["logdir"] is None


def test_drift_over_the_threshold_stops_training(tokenizer, tmp_path, cache):
    monitor = DriftMonitor(
        "smoke",
        every_n_steps=2,
        policy=Policy([Threshold("D", max_kl=1e-4)], action="stop", significance=False),
    )
    callback = DriftCallback(monitor)
    trainer = train(tokenizer, tmp_path, [callback], steps=12, lr=5e-2)
    assert callback.last_decision is not None and callback.last_decision.stop
    assert trainer.state.global_step == 2
    assert [r.step for r in monitor.history] == [2]


def test_warn_mode_leaves_the_trajectory_bit_identical(tokenizer, tmp_path, cache):
    plain = train(tokenizer, tmp_path / "a", [], steps=6, dropout=0.1).model.state_dict()
    monitor = DriftMonitor("smoke", every_n_steps=2, action="warn")
    watched = train(
        tokenizer, tmp_path / "b", [DriftCallback(monitor)], steps=6, dropout=0.1
    ).model.state_dict()
    assert [r.step for r in monitor.history] == [2, 4, 6]
    assert all(torch.equal(plain[k], watched[k]) for k in plain)


def test_resume_continues_history_and_reference(tokenizer, tmp_path, cache):
    first = DriftMonitor("smoke", every_n_steps=2, thresholds=[])
    train(tokenizer, tmp_path, [DriftCallback(first)], steps=4, save_steps=4)
    checkpoint = tmp_path / "out" / "checkpoint-4"
    assert checkpoint.is_dir()

    fresh = DriftMonitor("smoke", every_n_steps=2, thresholds=[])
    trainer = train(tokenizer, tmp_path, [DriftCallback(fresh)], steps=8, resume=str(checkpoint))
    # the Trainer replaced our callback with one rebuilt from the checkpoint's JSON state
    restored = next(c for c in trainer.callback_handler.callbacks if isinstance(c, DriftCallback))
    assert [r.step for r in restored.monitor.history] == [2, 4, 6, 8]
    assert restored.monitor.history[:2] == first.history
    assert restored.monitor.reference.path == first.reference.path
    assert len(list((cache / "references").iterdir())) == 1


def test_a_resume_keeps_one_round_per_step_in_the_logdir(tokenizer, tmp_path, cache):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logdir = tmp_path / "logs"

    def callback():
        return DriftCallback(DriftMonitor("smoke", every_n_steps=2, thresholds=[], logdir=logdir))

    # rounds 2 and 4 logged; resumed from checkpoint-2, as after a crash before step 4's save
    train(tokenizer, tmp_path, [callback()], steps=4, save_steps=2)
    assert [r.step for r, _ in read_history(logdir / HISTORY_FILE)] == [2, 4]
    trainer = train(
        tokenizer, tmp_path, [callback()], steps=4, resume=str(tmp_path / "out/checkpoint-2")
    )
    resumed = next(c for c in trainer.callback_handler.callbacks if isinstance(c, DriftCallback))
    rounds = read_history(logdir / HISTORY_FILE)
    # round 4 once, the resumed process's: the earlier one was dropped
    assert [r.step for r, _ in rounds] == [2, 4]
    assert [r.seconds for r, _ in rounds] == [r.seconds for r in resumed.monitor.history]
    events = EventAccumulator(str(logdir))
    events.Reload()
    shown = events.Scalars("driftwatch/other/D")
    assert [e.step for e in shown] == [2, 4]
    assert shown[1].value == pytest.approx(resumed.monitor.history[1].capabilities["D"].value)


def test_missing_tokenizer_is_a_clear_error(tokenizer, tmp_path, cache):
    with pytest.raises(DriftwatchError, match="processing_class"):
        train(
            tokenizer,
            tmp_path,
            [DriftCallback(DriftMonitor("smoke", every_n_steps=2))],
            steps=2,
            tokenizer_for_trainer=False,
        )


def test_rollback_restores_the_starting_weights_and_stops(tokenizer, tmp_path, cache):
    start = build_model(tokenizer, seed=3).state_dict()  # what train() starts from
    monitor = DriftMonitor(
        "smoke",
        every_n_steps=2,
        policy=Policy([Threshold("D", max_kl=1e-4)], action="rollback", significance=False),
    )
    callback = DriftCallback(monitor)
    trainer = train(tokenizer, tmp_path, [callback], steps=12, lr=5e-2)
    assert callback.last_decision.stop and callback.last_decision.rolled_back_to == 0
    assert trainer.state.global_step == 2
    final = trainer.model.state_dict()
    assert all(torch.equal(start[k], final[k]) for k in start)


def test_drift_is_available_to_metric_for_best_model(tokenizer, tmp_path, cache):
    model = build_model(tokenizer, seed=3).train()
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=6,
        per_device_train_batch_size=2,
        learning_rate=1e-2,
        report_to=[],
        use_cpu=True,
        seed=11,
        disable_tqdm=True,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=2,
        metric_for_best_model="eval_driftwatch_CAN",
        greater_is_better=True,
    )
    monitor = DriftMonitor("smoke", every_n_steps=2, thresholds=[])
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset(tokenizer),
        eval_dataset=dataset(tokenizer, 4),
        processing_class=tokenizer,
        callbacks=[DriftCallback(monitor, eval_metrics=True)],
    )
    trainer.train()
    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    assert [h["step"] for h in evals] == [2, 4, 6]
    means = [r.groups["CAN"] for r in monitor.history]
    assert trainer.state.best_metric == pytest.approx(max(means))
    assert trainer.state.best_global_step == monitor.history[means.index(max(means))].step


def test_resumed_run_takes_the_decisions_of_an_uninterrupted_one(tokenizer, tmp_path, cache):
    def monitor():
        return DriftMonitor(
            "smoke",
            every_n_steps=2,
            # KL here grows about 1e-5 per probe round: breaches from step 6, stop at 8
            policy=Policy(
                [Threshold("D", max_kl=5e-5)], action="stop", patience=2, significance=False
            ),
        )

    whole = monitor()
    whole_trainer = train(tokenizer, tmp_path / "whole", [DriftCallback(whole)], steps=10, lr=2e-3)
    assert whole_trainer.state.global_step == 8

    first = monitor()
    train(
        tokenizer,
        tmp_path / "split",
        [DriftCallback(first)],
        steps=10,
        lr=2e-3,
        save_steps=4,
        stop_after=4,
    )
    resumed_trainer = train(
        tokenizer,
        tmp_path / "split",
        [DriftCallback(monitor())],
        steps=10,
        lr=2e-3,
        resume=str(tmp_path / "split/out/checkpoint-4"),
    )
    resumed = next(
        c for c in resumed_trainer.callback_handler.callbacks if isinstance(c, DriftCallback)
    ).monitor
    assert [r.step for r in first.history] == [2, 4]
    assert resumed_trainer.state.global_step == 8
    assert [r.step for r in resumed.history] == [r.step for r in whole.history] == [2, 4, 6, 8]
    for a, b in zip(whole.history, resumed.history, strict=True):
        assert b.capabilities["D"].headline.now == pytest.approx(
            a.capabilities["D"].headline.now, abs=1e-6
        )
    assert (
        resumed.policy.decide(resumed.history).action == whole.policy.decide(whole.history).action
    )


class _Recorder(TrainerCallback):
    """Stands in for a report_to integration: keeps every log event it sees."""

    def __init__(self) -> None:
        self.logs: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}))


def test_attach_puts_drift_into_what_integrations_log(tokenizer, tmp_path, cache):
    from driftwatch.callbacks.hf import attach

    recorder = _Recorder()
    model = build_model(tokenizer, seed=3).train()
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=6,
        per_device_train_batch_size=2,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        logging_steps=1000,
        save_strategy="no",
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset(tokenizer),
        processing_class=tokenizer,
        callbacks=[recorder],
    )
    attach(trainer, DriftMonitor("smoke", every_n_steps=3, thresholds=[]))
    trainer.train()
    seen = [(log.get("driftwatch/other/D"), log) for log in recorder.logs]
    drift_events = [log for value, log in seen if value is not None]
    assert len(drift_events) == 2  # steps 3 and 6
    assert all("driftwatch/CAN/mean" in log for log in drift_events)


def test_without_attach_integrations_run_first_and_miss_the_drift(tokenizer, tmp_path, cache):
    recorder = _Recorder()
    monitor = DriftMonitor("smoke", every_n_steps=3, thresholds=[])
    train(tokenizer, tmp_path, [recorder, DriftCallback(monitor)], steps=6)
    assert len(monitor.history) == 2
    assert not any("driftwatch/other/D" in log for log in recorder.logs)
