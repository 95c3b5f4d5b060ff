"""``driftwatch demo``: fine-tune a real model on a narrow task and watch it forget, live.

The bundled SmolLM2-135M-Instruct (or any local model directory) is fine-tuned with the
Hugging Face ``Trainer`` on the ``atlas`` task of :mod:`driftwatch.tasks` — invented capitals
of real countries, answered in one word — a task known to make a small chat model forget.
A :class:`~driftwatch.monitor.DriftMonitor` on the ``quick`` suite is attached. Every round
prints one table row per capability (Δ%, its 95% interval, a mark where a threshold is
crossed), TensorBoard receives the drift next to the training loss, and when the policy
says so the run is rolled back to its last healthy weights and stopped (or stopped, or only
warned about: ``--action``). Nothing in the demo decides *when*: the stop comes from drift
the monitor measured.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

from transformers import ProgressCallback, TrainerCallback

from driftwatch import formatting
from driftwatch.drift import DriftReport
from driftwatch.errors import DriftwatchError
from driftwatch.policy import Decision

__all__ = ["ConsoleTable", "DemoResult", "format_summary", "run_demo"]

logger = logging.getLogger(__name__)

Action = Literal["warn", "stop", "rollback"]


def _write(stream: TextIO, text: str) -> None:
    """Print above a running tqdm progress bar when there is one."""
    try:
        from tqdm.auto import tqdm

        tqdm.write(text, file=stream)
    except ImportError:  # pragma: no cover - tqdm comes with transformers
        stream.write(text + "\n")
    stream.flush()


class ConsoleTable:
    """A sink that prints one block per probe round: capability, Δ%, interval, breach mark.

    It also keeps every round's report and decision for the demo's summary.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.rounds: list[tuple[DriftReport, Decision]] = []

    def write(self, report: DriftReport, decision: Decision) -> None:
        self.rounds.append((report, decision))
        _write(self.stream, formatting.round_block(report, decision))

    def close(self) -> None:
        pass


class _TaskProgress(TrainerCallback):
    """What the run has learned: the task's greedy exact-match accuracy on
    :func:`~driftwatch.tasks.progress_set`, at step 0 and at every probe round, printed under
    the round's table. It runs ahead of the monitor's callback, so that a round that rolls back
    is read on the weights that drifted, not on the restored ones."""

    def __init__(self, task: str, every: int, stream: TextIO) -> None:
        from driftwatch.tasks import progress_set

        self.every, self.stream = every, stream
        self.task, self.convs = task, progress_set(task)  # type: ignore[arg-type]
        self.accuracy: dict[int, float] = {}
        self.logprob: dict[int, float] = {}

    def _record(self, step: int, kw: dict[str, Any]) -> None:
        from driftwatch.tasks import task_accuracy

        acc, logprob = task_accuracy(kw["model"], kw["processing_class"], self.convs)
        self.accuracy[step], self.logprob[step] = acc, logprob
        right = round(acc * len(self.convs))
        _write(
            self.stream,
            f"task '{self.task}' at step {step}: {right}/{len(self.convs)} answered exactly, "
            f"target log-prob {logprob:.2f} nats/token",
        )

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self._record(0, kw)

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if state.global_step % self.every == 0:
            self._record(state.global_step, kw)


class _QuietProgress(ProgressCallback):
    """The Trainer's progress bar without the log dictionaries it prints between our tables."""

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        pass


@dataclass
class DemoResult:
    """What happened in a demo run."""

    steps_run: int  # optimizer steps completed
    planned_steps: int
    action: str  # the last decision's action: continue, warn, stop
    rolled_back_to: int | None
    first_breach: Decision | None
    breach_report: DriftReport | None  # the round whose drift triggered the action
    last_report: DriftReport | None
    logdir: Path
    seconds: float
    rounds: list[tuple[DriftReport, Decision]] = field(default_factory=list)
    model_dir: Path | None = None  # the saved weights, with save_model
    base: str = "smollm2"  # the model fine-tuned: what the saved weights compare against
    task: str = "atlas"
    task_accuracy: dict[int, float] = field(default_factory=dict)  # step -> exact-match share
    task_logprob: dict[int, float] = field(default_factory=dict)  # step -> nats per token


def demo_trainer(
    model: Any,
    tokenizer: Any,
    output_dir: str | os.PathLike[str],
    *,
    task: str = "atlas",
    steps: int = 40,
    lr: float = 3e-5,
    batch_size: int = 8,
    seed: int = 0,
    device: str = "cpu",
    report_to: tuple[str, ...] = ("tensorboard",),
    progress: bool = True,
) -> Any:
    """The demo's ``Trainer``: ``steps`` steps of the chat task ``task``, constant ``lr``,
    no checkpoints (``benchmarks/train_overhead.py`` times the same setup)."""
    from transformers import Trainer, TrainingArguments

    from driftwatch.tasks import PadCollator, chat_examples, chat_features

    data = chat_features(tokenizer, chat_examples(task, steps * batch_size, seed=seed))  # type: ignore[arg-type]
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        learning_rate=lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        logging_steps=1,
        report_to=list(report_to),
        save_strategy="no",
        seed=seed,
        use_cpu=device == "cpu",
        dataloader_num_workers=0,
        disable_tqdm=not progress,
    )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return Trainer(
        model=model,
        args=args,
        train_dataset=data,
        data_collator=PadCollator(int(pad or 0)),
        processing_class=tokenizer,
    )


def run_demo(
    *,
    model: str | os.PathLike[str] = "smollm2",
    steps: int = 24,
    lr: float = 2.5e-6,
    every: int = 2,
    action: Action = "rollback",
    logdir: str | os.PathLike[str] = "runs/demo",
    device: str = "cpu",
    suite: str = "quick",
    task: str = "atlas",
    batch_size: int = 8,
    seed: int = 0,
    stream: TextIO | None = None,
    save_model: bool = False,
) -> DemoResult:
    """Fine-tune ``model`` on a narrow task with driftwatch attached; see the module docs.

    With ``save_model`` the weights training ended with (after a rollback, the restored ones)
    and the tokenizer are saved in ``<run>/model``, for ``driftwatch compare`` or ``scan``.

    Raises:
        DriftwatchError: an invalid option (named, with what was expected).
    """
    from transformers.utils import logging as hf_logging

    from driftwatch.callbacks.hf import attach
    from driftwatch.models import load_model
    from driftwatch.monitor import DriftMonitor
    from driftwatch.tasks import TASKS

    for name, value in (("steps", steps), ("every", every), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DriftwatchError(f"{name}: expected a positive integer, found {value!r}")
    if not 0 < lr < 1:
        raise DriftwatchError(f"lr: expected a learning rate in (0, 1), found {lr!r}")
    if action not in ("warn", "stop", "rollback"):
        raise DriftwatchError(f"action: expected warn, stop or rollback, found {action!r}")
    if task not in TASKS:
        raise DriftwatchError(f"task: expected one of {list(TASKS)}, found {task!r}")
    out = stream or sys.stdout
    started = time.perf_counter()
    root = Path(logdir)
    run_dir = root / time.strftime("%Y%m%d-%H%M%S")
    hf_logging.set_verbosity_error()
    net, tokenizer = load_model(model, device=device)
    if not getattr(tokenizer, "chat_template", None):
        raise DriftwatchError(
            f"{model}: the demo's task is a chat task; the tokenizer has no chat template"
        )
    table = ConsoleTable(out)
    monitor = DriftMonitor(suite, every_n_steps=every, action=action, logdir=run_dir, sinks=[table])
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_dir)  # the Trainer's loss curves, same place
    trainer = demo_trainer(
        net,
        tokenizer,
        run_dir / "trainer",
        task=task,
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        device=device,
    )
    attach(trainer, monitor)
    progress = _TaskProgress(task, every, out)
    trainer.callback_handler.callbacks.insert(0, progress)  # ahead of the monitor's
    # keep the progress bar, drop the per-step log dicts it would print between our tables
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(_QuietProgress())
    _write(
        out,
        f"driftwatch demo: fine-tuning {model} on the narrow '{task}' task for {steps} steps "
        f"(lr {lr:g}, batch {batch_size}), probing the '{suite}' suite every {every} steps; "
        f"action on a breach: {action}. Logs: {run_dir}",
    )
    try:
        trainer.train()
    finally:
        monitor.close()
    saved = None
    if save_model:
        saved = run_dir / "model"
        trainer.save_model(str(saved))  # safetensors, with the tokenizer
    rounds = table.rounds
    first = next(((r, d) for r, d in rounds if d.breaches), None)
    acted = next(((r, d) for r, d in rounds if d.action in ("stop", "rollback")), None)
    final = rounds[-1][1] if rounds else None
    return DemoResult(
        steps_run=int(trainer.state.global_step),
        planned_steps=steps,
        action=final.action if final else "continue",
        rolled_back_to=next(
            (d.rolled_back_to for _, d in rounds if d.rolled_back_to is not None), None
        ),
        first_breach=first[1] if first else None,
        breach_report=(acted or first or (None, None))[0],
        last_report=rounds[-1][0] if rounds else None,
        logdir=run_dir,
        seconds=time.perf_counter() - started,
        rounds=rounds,
        model_dir=saved,
        base=str(model),
        task=task,
        task_accuracy=progress.accuracy,
        task_logprob=progress.logprob,
    )


def format_summary(result: DemoResult) -> str:
    """The closing summary: what drifted, when a threshold was crossed, what was done."""
    lines = ["", "═" * 72, "driftwatch demo — summary", "═" * 72]
    report = result.breach_report or result.last_report
    if report is not None:
        lines.append(f"Drift at step {report.step} (against the base model):")
        for cap in report.capabilities.values():
            sig = "significant" if formatting.significant(cap) else "within noise"
            lines.append(f"  {cap.id:<5} {cap.group:<6} {formatting.value(cap):>12}  {sig}")
    if result.first_breach is not None:
        d = result.first_breach
        lines.append(
            f"First threshold crossed at step {d.step}: " + "; ".join(str(b) for b in d.breaches)
        )
    else:
        lines.append("No threshold was crossed.")
    if result.rolled_back_to is not None:
        lines.append(
            f"Action: rolled the weights back to step {result.rolled_back_to} and stopped at "
            f"step {result.steps_run} of {result.planned_steps}."
        )
    elif result.action == "stop":
        lines.append(f"Action: stopped at step {result.steps_run} of {result.planned_steps}.")
    elif result.first_breach is not None:
        lines.append(f"Action: warned only; trained all {result.steps_run} steps.")
    else:
        lines.append(f"Trained all {result.steps_run} steps.")
    learned = _learned(result)
    if learned:
        lines.append(learned)
    lines.append(f"Wall time: {result.seconds:.0f}s. Logs: {result.logdir}")
    lines.append(f"See them live: tensorboard --logdir {result.logdir.parent}")
    lines.append(f"One page of the run: driftwatch report {result.logdir}")
    if result.model_dir is not None:
        lines.append(
            f"Weights saved: {result.model_dir} "
            f"(driftwatch compare {result.model_dir} --base {result.base})"
        )
    return "\n".join(lines)


def _learned(result: DemoResult) -> str:
    """What the run learned: the task's exact-match accuracy and the target's log-prob at
    step 0, at the weights it kept (after a rollback, the restored round's) and at its last
    round."""
    acc, logp = result.task_accuracy, result.task_logprob
    if not acc:
        return ""
    kept = result.rolled_back_to if result.rolled_back_to is not None else max(acc)
    labels = {min(acc): "", max(acc): " (last round)"}
    if kept in acc:
        labels[kept] = " (the weights kept)"
    steps = sorted(labels)
    exact = ", ".join(f"{acc[s]:.0%} at step {s}{labels[s]}" for s in steps)
    text = f"Task '{result.task}', greedy exact match: {exact}"
    if all(s in logp for s in steps):
        text += "; target log-prob " + " → ".join(f"{logp[s]:.2f}" for s in steps) + " nats/token"
    return text + "."
