"""Where reports go: TensorBoard, a JSONL history, the log.

Tag scheme (TensorBoard), one point per probe round at the training step:

==========================================  ====================================================
``driftwatch/<group>/<capability>``         Δ% of the capability's headline metric (KL for
                                            distribution capabilities)
``driftwatch/<group>/mean``                 unweighted mean Δ% of the group's capabilities
``driftwatch_raw/<capability>/<metric>``    the current value of every metric, named metrics
                                            (manifest ``metrics``) included
``driftwatch_metric/<capability>/<name>``   Δ% of each named metric; the capability's
                                            headline is their mean
``driftwatch_ci/<capability>/low|high``     the 95% interval of the headline Δ%
``driftwatch_meta/probe_seconds``           wall time of the round
``driftwatch_meta/overhead_pct``            probe time ÷ training time since the previous
                                            round, in percent
``driftwatch_meta/breaches``                number of thresholds crossed this round
``driftwatch_meta/nonfinite/<capability>``  items with NaN/inf log-probabilities (only when
                                            there are some)
==========================================  ====================================================

Besides scalars: breach, stop and rollback events as text under ``driftwatch/events``, a
custom-scalars layout (one chart per CAN / WILL / HOW group) and, with matplotlib, a capability
radar image per round under ``driftwatch/radar``.

Sinks receive plain reports and decisions; they never decide anything.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from driftwatch.drift import DriftReport
from driftwatch.errors import DriftwatchError
from driftwatch.files import keep_lines, write_atomic
from driftwatch.formatting import log_line
from driftwatch.plots import available
from driftwatch.policy import Decision

if TYPE_CHECKING:
    from driftwatch.suite import ProbeSuite

__all__ = [
    "CONFIG_FILE",
    "HISTORY_FILE",
    "JsonlSink",
    "LogSink",
    "Sink",
    "TensorBoardSink",
    "default_sinks",
    "read_history",
    "scalars",
]

logger = logging.getLogger(__name__)

HISTORY_FILE = "driftwatch_history.jsonl"  # every round and its decision, one JSON line each
CONFIG_FILE = "driftwatch_config.json"  # the monitor's configuration (``driftwatch report``)


class Sink(Protocol):
    def write(self, report: DriftReport, decision: Decision) -> None: ...

    def close(self) -> None: ...


def scalars(report: DriftReport, decision: Decision) -> dict[str, float]:
    """The TensorBoard tags and values of one round (finite values only)."""
    out: dict[str, float] = {}
    for cap in report.capabilities.values():
        head = cap.headline
        out[f"driftwatch/{cap.group}/{cap.id}"] = cap.value
        for name, metric in cap.metrics.items():
            out[f"driftwatch_raw/{cap.id}/{name}"] = metric.now
        for name in cap.parts:
            pct = cap.metrics[name].delta_pct
            if pct is not None:
                out[f"driftwatch_metric/{cap.id}/{name}"] = pct
        if head.ci_low_pct is not None and head.ci_high_pct is not None:
            out[f"driftwatch_ci/{cap.id}/low"] = head.ci_low_pct
            out[f"driftwatch_ci/{cap.id}/high"] = head.ci_high_pct
        if cap.nonfinite:
            out[f"driftwatch_meta/nonfinite/{cap.id}"] = float(cap.nonfinite)
    for group, mean in report.groups.items():
        out[f"driftwatch/{group}/mean"] = mean
    out["driftwatch_meta/probe_seconds"] = report.seconds
    for name, value in report.extra.items():
        out[f"driftwatch_meta/{name}"] = value
    out["driftwatch_meta/breaches"] = float(len(decision.breaches))
    return {k: v for k, v in out.items() if math.isfinite(v)}


class TensorBoardSink:
    """Writes :func:`scalars`, event text, a custom-scalars layout and a radar image.

    Args:
        logdir: the event file's folder.
        groups: group -> capability ids, for the custom-scalars layout (one chart per group).
        plots: add a capability radar image per round when matplotlib is installed.
    """

    def __init__(
        self,
        logdir: str | os.PathLike[str],
        *,
        groups: dict[str, list[str]] | None = None,
        plots: bool = True,
        resume_at: int | None = None,
    ) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.logdir = Path(logdir)
        # a resumed run: TensorBoard hides what earlier event files logged after that step
        # (the interrupted process's rounds, probed again now)
        purge = None if resume_at is None else resume_at + 1
        self._writer = SummaryWriter(log_dir=str(self.logdir), purge_step=purge)
        self._plots = plots and available()
        if plots and not self._plots:
            logger.info("matplotlib is not installed: no radar images (extra 'plots')")
        if groups:
            self._writer.add_custom_scalars(_layout(groups))

    def write(self, report: DriftReport, decision: Decision) -> None:
        for tag, value in scalars(report, decision).items():
            self._writer.add_scalar(tag, value, global_step=report.step)
        if decision.breaches or decision.action != "continue":
            self._writer.add_text("driftwatch/events", decision.message, global_step=report.step)
        if self._plots:
            from driftwatch.plots import radar

            self._writer.add_figure("driftwatch/radar", radar(report), global_step=report.step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def _layout(groups: dict[str, list[str]]) -> dict[str, Any]:
    """TensorBoard custom-scalars layout: Δ% of each group's capabilities on one chart."""
    charts = {
        f"{group} Δ%": ["Multiline", [f"driftwatch/{group}/{cap}" for cap in caps]]
        for group, caps in groups.items()
    }
    charts["group means Δ%"] = ["Multiline", [f"driftwatch/{g}/mean" for g in groups]]
    return {"driftwatch": charts}


class JsonlSink:
    """Appends one JSON record per round (report + decision) to a history file.

    Each record is one ``write`` of a complete line followed by ``fsync``, so a crash loses at
    most the round being written, never earlier ones. A record torn by a crash (a last line
    without its newline) is cut off, with a warning, before the next one is appended, so a
    resumed run never glues a new record onto half an old one. :func:`read_history` reads the
    file back.

    ``resume_at``: the step of the last round a resumed monitor's restored state holds (0
    for none). The rounds after it in the file were logged by the interrupted process after
    the checkpoint it resumes from; the resumed run probes those steps again, so they are
    dropped (with a warning) and each step keeps one record.
    """

    def __init__(self, path: str | os.PathLike[str], *, resume_at: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _cut_torn_tail(self.path)
        if resume_at is not None:
            _drop_rounds_after(self.path, resume_at)

    def write(self, report: DriftReport, decision: Decision) -> None:
        record: dict[str, Any] = {
            "report": report.to_dict(),
            "decision": {
                "action": decision.action,
                "step": decision.step,
                "breaches": [_finite(vars(b)) for b in decision.breaches],
                "rolled_back_to": decision.rolled_back_to,
                "restored_from": decision.restored_from,
                "message": decision.message,
            },
        }
        line = json.dumps(record, allow_nan=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def close(self) -> None:
        pass


def _cut_torn_tail(path: Path) -> None:
    """Truncate a history file after its last complete line."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as handle:
        data = handle.read()
        if data.endswith(b"\n"):
            return
        keep = data.rfind(b"\n") + 1
        handle.truncate(keep)
        handle.flush()
        os.fsync(handle.fileno())
    logger.warning(
        "%s: dropped a torn last record (%d bytes without a newline, from a crash while it "
        "was written)",
        path,
        len(data) - keep,
    )


def _drop_rounds_after(path: Path, step: int) -> None:
    """Rewrite a history file (atomically) without its records of rounds after ``step``;
    lines that are not records are kept as they are, for :func:`read_history` to name."""

    def keep(line: str) -> bool:
        try:
            return int(json.loads(line)["report"]["step"]) <= step
        except (ValueError, KeyError, TypeError):
            return True

    dropped = keep_lines(path, keep)
    if dropped:
        logger.warning(
            "%s: dropped %d round(s) after step %d, logged before the run was interrupted; "
            "the resumed run probes those steps again",
            path,
            dropped,
            step,
        )


def read_history(path: str | os.PathLike[str]) -> list[tuple[DriftReport, dict[str, Any]]]:
    """The rounds of a ``driftwatch_history.jsonl`` file: ``(report, decision data)`` each.

    A torn last line (no newline: the process died while writing it) is skipped with a
    warning; any other malformed line raises.

    Raises:
        DriftwatchError: naming the file, the line and what is wrong with it.
    """
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DriftwatchError(f"{source}: cannot read the history ({err})") from err
    lines = text.split("\n")
    if lines[-1]:
        logger.warning("%s:%d: skipped a torn last record (no newline)", source, len(lines))
    out = []
    for number, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            out.append((DriftReport.from_dict(record["report"]), dict(record["decision"])))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise DriftwatchError(
                f"{source}:{number}: not a driftwatch history record ({type(err).__name__}: {err})"
            ) from err
    return out


def _finite(record: dict[str, Any]) -> dict[str, Any]:
    return {
        k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()
    }


class LogSink:
    """One log line per round: the headline drift of every capability and the decision."""

    def write(self, report: DriftReport, decision: Decision) -> None:
        level = logging.WARNING if decision.action != "continue" else logging.INFO
        logger.log(level, "%s", log_line(report, decision))

    def close(self) -> None:
        pass


def default_sinks(
    logdir: str | os.PathLike[str] | None,
    suite: ProbeSuite,
    *,
    writer: bool = True,
    settings: dict[str, Any] | None = None,
    resume_at: int | None = None,
) -> list[Sink]:
    """The built-in sinks of a monitor: TensorBoard events and ``driftwatch_history.jsonl``
    in ``logdir`` (when there is one and this process is the ``writer``, rank 0 of a group),
    and the log line. The monitor's ``settings`` go to ``driftwatch_config.json`` beside
    them (written atomically), for ``driftwatch report``. ``resume_at``: a resumed run's
    last restored round (0 for none); both files continue from it (:class:`JsonlSink`)."""
    if logdir is None or not writer:
        return [LogSink()]
    if settings is not None:
        write_atomic(Path(logdir) / CONFIG_FILE, json.dumps(settings, indent=2))
    groups: dict[str, list[str]] = {}
    for cap in suite.capabilities:
        groups.setdefault(cap.group, []).append(cap.id)
    root = Path(logdir)
    return [
        TensorBoardSink(root, groups=groups, resume_at=resume_at),
        JsonlSink(root / HISTORY_FILE, resume_at=resume_at),
        LogSink(),
    ]
