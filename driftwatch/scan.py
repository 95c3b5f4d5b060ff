"""``driftwatch scan``: probe every saved checkpoint of a finished run, after the fact.

CapTrack compares checkpoints post hoc; ``scan`` does the same with driftwatch's probes. It
builds (or reuses) the base model's reference, then loads each checkpoint of the run in step
order — Hugging Face ``checkpoint-<step>`` folders written by ``save_pretrained`` (full
weights, or PEFT adapters applied to the base) — and measures its drift. Everything a live run
writes is written here too (TensorBoard events, ``driftwatch_history.jsonl``), plus
``trajectory.png`` (Δ% per capability against the step) and ``radar.png`` (the last
checkpoint) when matplotlib is installed.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from driftwatch.drift import DriftReport
from driftwatch.errors import DriftwatchError
from driftwatch.plots import available as plots_available
from driftwatch.policy import Decision
from driftwatch.progress import task

__all__ = ["ScanResult", "find_checkpoints", "scan"]

logger = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"checkpoint-(\d+)$")


@dataclass
class ScanResult:
    history: list[DriftReport]
    decisions: list[Decision]
    out: Path
    plots: list[Path]


def find_checkpoints(run_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every ``checkpoint-<step>`` folder holding weights, by step.

    Raises:
        DriftwatchError: no such folder, or no checkpoint in it.
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise DriftwatchError(f"{root}: no such run directory")
    found = []
    for path in root.iterdir():
        match = _CHECKPOINT.match(path.name)
        if (
            match
            and path.is_dir()
            and ((path / "config.json").is_file() or (path / "adapter_config.json").is_file())
        ):
            found.append((int(match.group(1)), path))
    if not found:
        raise DriftwatchError(
            f"{root}: no checkpoint-<step> folders with a config.json or adapter_config.json "
            "(save them with the Trainer's save_strategy, or model.save_pretrained)"
        )
    return sorted(found)


def scan(
    run_dir: str | os.PathLike[str],
    *,
    base: str | os.PathLike[str],
    suite: str = "quick",
    out: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    token_budget: int = 4096,
) -> ScanResult:
    """Drift of every checkpoint in ``run_dir`` against ``base`` (a model folder or ``smollm2``).

    Args:
        out: where the events, history and plots go (default ``RUN_DIR/driftwatch_scan``).
    """
    from driftwatch.models import load_finetuned, load_model
    from driftwatch.monitor import DriftMonitor
    from driftwatch.settings import ProbeBudget

    checkpoints = find_checkpoints(run_dir)
    target = Path(out) if out is not None else Path(run_dir) / "driftwatch_scan"
    decisions: list[Decision] = []

    class _Collect:
        def write(self, report: DriftReport, decision: Decision) -> None:
            decisions.append(decision)

        def close(self) -> None:
            pass

    monitor = DriftMonitor(
        suite,
        every_n_steps=1,
        action="warn",
        logdir=target,
        # offline: no training run shares the memory
        budget=ProbeBudget(token_budget, memory_share=None),
        sinks=[_Collect()],
    )
    base_model, tokenizer = load_model(base, device=device)
    monitor.start(base_model, tokenizer)
    del base_model
    try:
        with task("checkpoints", total=len(checkpoints), keep=True) as bar:
            for step, path in checkpoints:
                logger.info("probing %s", path)
                bar.note(path.name)
                model = load_finetuned(path, base, device)
                monitor.probe(model, step)
                del model
                bar.advance()
    finally:
        monitor.close()
    plots: list[Path] = []
    if monitor.history and plots_available():
        from driftwatch.plots import radar, trajectory

        for name, figure in (
            ("trajectory.png", trajectory(monitor.history)),
            ("radar.png", radar(monitor.history[-1])),
        ):
            figure.savefig(target / name, dpi=110)
            plots.append(target / name)
    return ScanResult(monitor.history, decisions, target, plots)
