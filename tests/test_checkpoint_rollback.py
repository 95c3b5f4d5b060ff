"""Rollback to the trainer's own checkpoints (``RollbackPlan(snapshot="checkpoint")``): the HF
Trainer's ``checkpoint-N`` folders and Lightning's ``ModelCheckpoint`` files, loaded by the
frameworks' own code; pinned against rotation; a clear stop when none is eligible."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from driftwatch import DriftMonitor, Policy, RollbackPlan, Threshold
from driftwatch.callbacks.hf import DriftCallback, attach
from driftwatch.checkpoints import CheckpointKeeper, Saved
from driftwatch.errors import DriftwatchError
from tests.conftest import build_model
from tests.test_callbacks_hf import _StopAfter, build_trainer


class _Keep(TrainerCallback):
    """Copies every checkpoint aside when it is saved, before any rotation can delete it."""

    def __init__(self, into: Path) -> None:
        self.into = into

    def on_save(self, args, state, control, **kwargs):
        name = f"checkpoint-{state.global_step}"
        shutil.copytree(Path(args.output_dir) / name, self.into / name, dirs_exist_ok=True)


def _trainer(tokenizer, out: Path, *, steps: int, save_steps: int | None, limit=None):
    return build_trainer(
        tokenizer, out, steps=steps, lr=5e-3, save_steps=save_steps, save_total_limit=limit
    )


def _kl_by_step(tokenizer, tmp_path, steps: int) -> dict[int, float]:
    """The KL (capability D) of the rounds every 2 steps up to ``steps`` of a 12-step run (the
    same learning-rate schedule as the rollback runs), in warn mode."""
    trainer = _trainer(tokenizer, tmp_path / "warn", steps=12, save_steps=None)
    monitor = DriftMonitor("smoke", every_n_steps=2)
    attach(trainer, monitor)
    trainer.add_callback(_StopAfter(steps))
    trainer.train()
    kl = {r.step: r.capabilities["D"].value for r in monitor.history}
    assert list(kl.values()) == sorted(kl.values()), kl  # the KL grows: lines can sit between
    return kl


def _rollback_monitor(line: float, **plan) -> DriftMonitor:
    return DriftMonitor(
        "smoke",
        every_n_steps=2,
        policy=Policy([Threshold("D", max_kl=line)], action="rollback", significance=False),
        rollback=RollbackPlan(snapshot="checkpoint", **plan),
    )


def _assert_state_equals_checkpoint(trainer, folder: Path) -> None:
    weights = load_file(str(folder / "model.safetensors"))
    model = trainer.model.state_dict()
    assert weights.keys() <= model.keys()
    assert all(torch.equal(model[k], w) for k, w in weights.items())
    saved = torch.load(folder / "optimizer.pt", weights_only=True)
    now = trainer.optimizer.state_dict()
    assert saved["state"].keys() == now["state"].keys()
    for key, moments in saved["state"].items():
        for name, value in moments.items():
            assert torch.equal(torch.as_tensor(now["state"][key][name]), torch.as_tensor(value))


def test_hf_rollback_restores_checkpoint_2_exactly(tokenizer, tmp_path, cache):
    kl = _kl_by_step(tokenizer, tmp_path, 4)
    trainer = _trainer(tokenizer, tmp_path / "run", steps=12, save_steps=2)
    kept = tmp_path / "kept"
    trainer.add_callback(_Keep(kept))
    callback = attach(trainer, _rollback_monitor((kl[2] * kl[4]) ** 0.5))  # healthy 2, not 4
    trainer.train()
    decision = callback.last_decision
    assert decision.stop and decision.step == 4
    assert (decision.rolled_back_to, decision.restored_from) == (2, "checkpoint-2")
    assert "rolled back to step 2 from checkpoint-2" in decision.message
    assert trainer.state.global_step == 4
    _assert_state_equals_checkpoint(trainer, kept / "checkpoint-2")


def test_rotation_keeps_the_healthy_checkpoint_until_a_later_one(tokenizer, tmp_path, cache):
    kl = _kl_by_step(tokenizer, tmp_path, 6)
    # a checkpoint every step, only the newest kept: checkpoint-4 is rotated away at step 5
    trainer = _trainer(tokenizer, tmp_path / "run", steps=12, save_steps=1, limit=1)
    kept = tmp_path / "kept"
    trainer.add_callback(_Keep(kept))
    pins = tmp_path / "run" / "driftwatch-healthy"
    seen: dict[int, list[str]] = {}

    class _Pins(TrainerCallback):  # the pinned folders at the end of every step
        def on_step_end(self, args, state, control, **kwargs):
            seen[state.global_step] = sorted(p.name for p in pins.glob("step-*"))

    trainer.add_callback(_Pins())
    callback = attach(trainer, _rollback_monitor((kl[4] * kl[6]) ** 0.5))  # healthy 2, 4
    trainer.train()
    decision = callback.last_decision
    assert decision.stop and (decision.rolled_back_to, decision.restored_from) == (
        4,
        "checkpoint-4",
    )
    assert not (tmp_path / "run" / "checkpoint-4").exists()  # rotated by the Trainer
    # pinned from the healthy round's save on, and replaced once step 4 was healthy
    assert seen[3] == ["step-2"] and seen[5] == ["step-4"]
    _assert_state_equals_checkpoint(trainer, kept / "checkpoint-4")


def test_a_resumed_run_rolls_back_to_the_interrupted_run_s_checkpoint(tokenizer, tmp_path, cache):
    kl = _kl_by_step(tokenizer, tmp_path, 6)
    line = (kl[4] * kl[6]) ** 0.5  # healthy at 2 and 4, breached at 6
    out = tmp_path / "run"
    first = _trainer(tokenizer, out, steps=12, save_steps=2)
    attach(first, _rollback_monitor(line))
    first.add_callback(_StopAfter(4))  # interrupted after checkpoint-4
    first.train()
    second = _trainer(tokenizer, out, steps=12, save_steps=2)
    attach(second, _rollback_monitor(line))
    second.train(resume_from_checkpoint=str(out / "checkpoint-4"))
    # the Trainer rebuilt the callback from the checkpoint's state; it found the trainer again
    (rebuilt,) = [c for c in second.callback_handler.callbacks if isinstance(c, DriftCallback)]
    assert rebuilt.trainer is second and [r.step for r in rebuilt.monitor.history] == [2, 4, 6]
    decision = rebuilt.last_decision
    assert decision.stop and (decision.rolled_back_to, decision.restored_from) == (
        4,
        "checkpoint-4",
    )
    _assert_state_equals_checkpoint(second, out / "checkpoint-4")


def test_no_eligible_checkpoint_stops_and_says_so(tokenizer, tmp_path, cache):
    trainer = _trainer(tokenizer, tmp_path / "run", steps=12, save_steps=3)
    callback = attach(trainer, _rollback_monitor(1e-12))  # breached at the first round
    trainer.train()
    decision = callback.last_decision
    assert decision.stop and decision.step == 2 and decision.rolled_back_to is None
    assert "no checkpoint was saved at or before the last healthy round (step 0)" in (
        decision.message
    )


def test_checkpoint_mode_errors_name_the_fix(tokenizer, tmp_path, cache):
    trainer = _trainer(tokenizer, tmp_path / "a", steps=2, save_steps=2)
    trainer.add_callback(DriftCallback(_rollback_monitor(1.0)))
    with pytest.raises(DriftwatchError, match=r"attach\(trainer, monitor\)"):
        trainer.train()
    trainer = _trainer(tokenizer, tmp_path / "b", steps=2, save_steps=None)
    attach(trainer, _rollback_monitor(1.0))
    with pytest.raises(DriftwatchError, match="save_strategy='no'"):
        trainer.train()
    monitor = _rollback_monitor(1.0)
    with pytest.raises(DriftwatchError, match="only a framework adapter"):
        monitor.start(build_model(tokenizer), tokenizer)


class _Folder:
    """A CheckpointSource over a folder of files named by step, loading nothing."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pin_dir = root / "pins"
        self.loaded: list[Path] = []

    def save(self, step: int) -> None:
        (self.root / f"ckpt-{step}").write_text(str(step))

    def saved(self) -> list[Saved]:
        return [Saved(int(p.name[5:]), p) for p in self.root.glob("ckpt-*")]

    def load(self, path, model, optimizer, scheduler) -> None:
        self.loaded.append(path)


def test_checkpoints_between_a_healthy_round_and_a_rollback_never_become_eligible(tmp_path):
    source = _Folder(tmp_path)
    keeper = CheckpointKeeper(source, writer=True)
    keeper.start(0)
    source.save(2)
    keeper.mark_healthy(2)
    assert keeper.pinned.step == 2 and (keeper.pinned.path.read_text() == "2")
    source.save(3)  # after the healthy round, before the breach at 4: suspect weights
    assert keeper.restore(None, None, None, step=4).step == 2
    assert source.loaded == [keeper.pinned.path]
    keeper.mark_healthy(6)  # healthy again, but checkpoint 3 predates the rollback
    assert keeper.pinned.step == 2
    source.save(6)
    keeper.refresh()
    assert keeper.pinned.step == 6
    assert [p.name for p in source.pin_dir.iterdir()] == ["step-6"]  # the old pin removed
    # a hard link: pinning costs no second copy on disk
    assert keeper.pinned.path.stat().st_ino == (tmp_path / "ckpt-6").stat().st_ino


def test_lightning_rollback_restores_the_step_2_checkpoint_exactly(tokenizer, tmp_path, cache):
    from lightning.pytorch.callbacks import ModelCheckpoint

    from driftwatch.callbacks.lightning import DriftCallback as LightningCallback
    from tests.test_callbacks_lightning import fit

    def run(monitor, steps, saver=None):
        callbacks = [LightningCallback(monitor, tokenizer)]
        return fit(tokenizer, callbacks, steps=steps, lr=5e-3, tmp_path=tmp_path, saver=saver)

    warn = DriftMonitor("smoke", every_n_steps=2)
    run(warn, 4)
    kl = {r.step: r.capabilities["D"].value for r in warn.history}
    assert kl[2] < kl[4]
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=2, save_top_k=-1)
    trainer, module = run(_rollback_monitor((kl[2] * kl[4]) ** 0.5), 12, saver)
    decision = trainer.callbacks[0].last_decision
    assert decision.stop and decision.step == 4 and trainer.global_step == 4
    assert (decision.rolled_back_to, decision.restored_from) == (2, "epoch=0-step=2.ckpt")
    saved = torch.load(tmp_path / "ckpt" / "epoch=0-step=2.ckpt", weights_only=True)
    now = module.state_dict()
    assert all(torch.equal(now[k], v) for k, v in saved["state_dict"].items())
    moments = trainer.optimizers[0].state_dict()["state"]
    for key, values in saved["optimizer_states"][0]["state"].items():
        for name, value in values.items():
            assert torch.equal(torch.as_tensor(moments[key][name]), torch.as_tensor(value))
