"""The Lightning adapter on a tiny model: tags at the right steps, a real stop, bit-identical
warn mode, and history that survives a checkpoint resume."""

from __future__ import annotations

import itertools

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader

from driftwatch import Cadence, DriftMonitor, Policy, Threshold
from driftwatch.callbacks.lightning import DriftCallback
from driftwatch.errors import DriftwatchError
from tests.conftest import build_model


class LM(pl.LightningModule):
    def __init__(self, model, lr: float) -> None:
        super().__init__()
        self.model = model.train()  # dropout on: the warn-mode test must see RNG use
        self.lr = lr

    def training_step(self, batch, batch_idx):
        return self.model(input_ids=batch, labels=batch).loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.model.parameters(), lr=self.lr)


def loader(tokenizer, n: int = 16) -> DataLoader:
    gen = torch.Generator().manual_seed(0)
    data = torch.randint(0, len(tokenizer), (n, 24), generator=gen)
    return DataLoader(list(data), batch_size=2, shuffle=False)


def fit(
    tokenizer, callbacks, *, steps=8, lr=1e-3, dropout=0.0, tmp_path=None, ckpt=None, saver=None
):
    """``saver``: a ``ModelCheckpoint`` (checkpointing is off without one)."""
    pl.seed_everything(7, verbose=False)
    module = LM(build_model(tokenizer, dropout=dropout, seed=3), lr)
    trainer = pl.Trainer(
        max_steps=steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=saver is not None,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[*callbacks, *([] if saver is None else [saver])],
        default_root_dir=tmp_path,
    )
    trainer.fit(module, loader(tokenizer), ckpt_path=ckpt)
    return trainer, module


def test_tags_at_the_probe_steps(tokenizer, tmp_path, cache):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monitor = DriftMonitor("smoke", every_n_steps=6, logdir=tmp_path / "tb", thresholds=[])
    fit(tokenizer, [DriftCallback(monitor, tokenizer)], steps=27, tmp_path=tmp_path)
    events = EventAccumulator(
        str(tmp_path / "tb"), size_guidance={"scalars": 0, "images": 0, "tensors": 0}
    )
    events.Reload()
    # every 6th step, and the last step when fit ends
    for tag in (
        "driftwatch/other/D",
        "driftwatch/CAN/C1",
        "driftwatch/CAN/mean",
        "driftwatch_raw/C1/score",
        "driftwatch_meta/probe_seconds",
    ):
        assert [e.step for e in events.Scalars(tag)] == [6, 12, 18, 24, 27], tag
    assert [e.step for e in events.Images("driftwatch/radar")] == [6, 12, 18, 24, 27]
    assert events.Scalars("driftwatch/other/D")[-1].value > 0  # training moved the model


def test_drift_over_the_threshold_stops_the_fit(tokenizer, tmp_path, cache):
    monitor = DriftMonitor(
        "smoke",
        every_n_steps=2,
        policy=Policy([Threshold("D", max_kl=1e-4)], action="stop", significance=False),
    )
    callback = DriftCallback(monitor, tokenizer)
    trainer, _ = fit(tokenizer, [callback], steps=12, lr=5e-2, tmp_path=tmp_path)
    assert callback.last_decision is not None and callback.last_decision.stop
    assert trainer.global_step == 2  # the first probe round breaches and stops the run
    assert [r.step for r in monitor.history] == [2]


def test_warn_mode_leaves_the_trajectory_bit_identical(tokenizer, tmp_path, cache):
    _, plain = fit(tokenizer, [], steps=6, dropout=0.1, tmp_path=tmp_path)
    monitor = DriftMonitor("smoke", every_n_steps=2, action="warn")
    _, watched = fit(
        tokenizer, [DriftCallback(monitor, tokenizer)], steps=6, dropout=0.1, tmp_path=tmp_path
    )
    assert [r.step for r in monitor.history] == [2, 4, 6]
    a, b = plain.model.state_dict(), watched.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_history_and_reference_survive_a_checkpoint_resume(tokenizer, tmp_path, cache):
    monitor = DriftMonitor("smoke", every_n_steps=2, thresholds=[])
    trainer, _ = fit(tokenizer, [DriftCallback(monitor, tokenizer)], steps=4, tmp_path=tmp_path)
    ckpt = tmp_path / "mid.ckpt"
    trainer.save_checkpoint(ckpt)
    built = monitor.reference.path

    resumed = DriftMonitor("smoke", every_n_steps=2, thresholds=[])
    fit(tokenizer, [DriftCallback(resumed, tokenizer)], steps=8, tmp_path=tmp_path, ckpt=ckpt)
    assert [r.step for r in resumed.history] == [2, 4, 6, 8]
    assert resumed.history[:2] == monitor.history
    assert resumed.reference.path == built  # not rebuilt from the resumed weights
    assert len(list((cache / "references").iterdir())) == 1


def test_missing_model_attribute_is_a_clear_error(tokenizer, tmp_path, cache):
    monitor = DriftMonitor("smoke", every_n_steps=2)
    with pytest.raises(DriftwatchError, match="model_attr"):
        fit(
            tokenizer,
            [DriftCallback(monitor, tokenizer, model_attr="net")],
            steps=2,
            tmp_path=tmp_path,
        )


def test_rollback_restores_the_starting_weights_and_stops(tokenizer, tmp_path, cache):
    start = build_model(tokenizer, seed=3).state_dict()  # what fit() starts from
    monitor = DriftMonitor(
        "smoke",
        every_n_steps=2,
        policy=Policy([Threshold("D", max_kl=1e-4)], action="rollback", significance=False),
    )
    callback = DriftCallback(monitor, tokenizer)
    trainer, module = fit(tokenizer, [callback], steps=12, lr=5e-2, tmp_path=tmp_path)
    assert callback.last_decision.stop and callback.last_decision.rolled_back_to == 0
    assert trainer.global_step == 2
    final = module.model.state_dict()
    assert all(torch.equal(start[k], final[k]) for k in start)


def test_resumed_fit_takes_the_decisions_of_an_uninterrupted_one(tokenizer, tmp_path, cache):
    def monitor():
        return DriftMonitor(
            "smoke",
            every_n_steps=2,
            policy=Policy(
                [Threshold("D", max_kl=1e-4)], action="stop", patience=2, significance=False
            ),
        )

    # 8 samples in batches of 2: an epoch is 4 steps, so the checkpoint at step 4 sits on an
    # epoch boundary and the resumed run sees exactly the batches the uninterrupted one does
    def run(mon, steps, ckpt=None):
        pl.seed_everything(7, verbose=False)
        module = LM(build_model(tokenizer, seed=3), 2e-3)
        trainer = pl.Trainer(
            max_steps=steps,
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[DriftCallback(mon, tokenizer)],
        )
        trainer.fit(module, loader(tokenizer, n=8), ckpt_path=ckpt)
        return trainer

    whole = monitor()
    whole_trainer = run(whole, 12)
    first = monitor()
    run(first, 4).save_checkpoint(tmp_path / "epoch.ckpt")
    resumed = monitor()
    resumed_trainer = run(resumed, 12, ckpt=tmp_path / "epoch.ckpt")

    def actions(mon):
        return [mon.policy.decide(mon.history[: n + 1]).action for n in range(len(mon.history))]

    # Lightning's own resume is not bit-exact (without driftwatch the weights after resuming
    # differ by up to 5.6e-3 here), so the drift values agree loosely; the rounds, the
    # decisions and the stop step must agree exactly.
    assert [r.step for r in resumed.history] == [r.step for r in whole.history]
    assert actions(resumed) == actions(whole) == ["continue"] * 4 + ["warn", "stop"]
    for a, b in zip(whole.history, resumed.history, strict=True):
        assert b.capabilities["D"].headline.now == pytest.approx(
            a.capabilities["D"].headline.now, rel=0.1
        )
    assert resumed_trainer.global_step == whole_trainer.global_step


def test_a_fit_resumed_after_the_cadence_stretched_finds_its_state(tokenizer, tmp_path, cache):
    """The callback's state_key comes from the configured cadence, not the one the monitor
    stretched while running: a fit resumed from a checkpoint written after ``Cadence.adapt``
    stretched the cadence continues its history (it silently started a new one before)."""

    def monitor():
        mon = DriftMonitor(
            "smoke", cadence=Cadence(2, max_overhead_pct=50.0, adapt=True), thresholds=[]
        )
        ticks = itertools.count()
        # one tick per clock reading: every round takes as long as the training before it
        # (100% of the training time, twice the 50% budget), so the cadence doubles each round
        mon.clock = lambda: float(next(ticks))
        return mon

    first = monitor()
    trainer, _ = fit(tokenizer, [DriftCallback(first, tokenizer)], steps=8, tmp_path=tmp_path)
    assert [r.step for r in first.history] == [2, 4, 8] and first.every_n_steps == 16
    trainer.save_checkpoint(tmp_path / "stretched.ckpt")

    resumed = monitor()
    fit(
        tokenizer,
        [DriftCallback(resumed, tokenizer)],
        steps=16,
        tmp_path=tmp_path,
        ckpt=tmp_path / "stretched.ckpt",
    )
    assert [r.step for r in resumed.history] == [2, 4, 8, 16]
    assert resumed.history[:3] == first.history
