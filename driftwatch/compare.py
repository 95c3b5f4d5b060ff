"""``driftwatch compare``: several fine-tuned models against one base, CapTrack's main view.

Each entry is a model folder (full weights, or PEFT adapters applied to the base), probed
against the base's reference (built once and cached, as ``driftwatch reference`` does), or
the history of a run already probed — a ``driftwatch_history.jsonl`` file or a folder holding
one (a live run's logdir, ``scan``'s output) — whose last round is taken as it is. Out come a
capabilities × models heatmap of the headline Δ% with significance marks (``heatmap.png``),
a spider plot of all the models (``spider.png``) and the same numbers as ``comparison.csv``
and ``comparison.md``.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftwatch.drift import DriftReport
from driftwatch.errors import DriftwatchError
from driftwatch.files import write_atomic
from driftwatch.formatting import comparison_table, significant
from driftwatch.plots import available as plots_available
from driftwatch.progress import task
from driftwatch.sinks import HISTORY_FILE as HISTORY
from driftwatch.sinks import read_history

__all__ = ["Comparison", "compare_models", "write_comparison"]

logger = logging.getLogger(__name__)


@dataclass
class Comparison:
    labels: list[str]
    reports: list[DriftReport]
    files: list[Path]


def _history_of(path: Path) -> Path | None:
    if path.is_file() and path.suffix == ".jsonl":
        return path
    if path.is_dir() and (path / HISTORY).is_file():
        return path / HISTORY
    return None


def _is_model(path: Path) -> bool:
    return path.is_dir() and any(
        (path / name).is_file() for name in ("config.json", "adapter_config.json")
    )


def _last_round(history: Path) -> DriftReport:
    rounds = read_history(history)
    if not rounds:
        raise DriftwatchError(f"{history}: the history has no probe round yet")
    return rounds[-1][0]


def compare_models(
    entries: list[str | os.PathLike[str]],
    *,
    base: str | os.PathLike[str] | None = None,
    suite: str = "quick",
    labels: list[str] | None = None,
    device: str = "cpu",
    token_budget: int = 4096,
) -> tuple[list[str], list[DriftReport]]:
    """The drift of every entry against ``base`` (a model folder or ``smollm2``): one report
    per entry, in order, with its label (default: the folder's name; a history's label also
    names the step of its last round).

    Raises:
        DriftwatchError: an entry that is neither a model folder nor a history, a model entry
            without ``base``, labels that do not match the entries.
    """
    paths = [Path(e) for e in entries]
    if not paths:
        raise DriftwatchError("compare: name at least one model folder or history file")
    if labels is not None and len(labels) != len(paths):
        raise DriftwatchError(
            f"compare: {len(labels)} labels for {len(paths)} entries; give one label per entry"
        )
    histories = {path: _history_of(path) for path in paths}
    for path, history in histories.items():
        if history is None and not _is_model(path):
            raise DriftwatchError(
                f"{path}: neither a model folder (config.json or adapter_config.json) nor a "
                f"run's history ({HISTORY}, or a folder holding one)"
            )
    to_probe = [path for path, history in histories.items() if history is None]
    if to_probe and base is None:
        raise DriftwatchError(
            f"{to_probe[0]}: a model folder is probed against the base model: pass --base"
        )
    reports: dict[Path, DriftReport] = {}
    names: dict[Path, str] = {}
    for path, history in histories.items():
        if history is not None:
            reports[path] = _last_round(history)
            folder = history.parent.name if history.name == HISTORY else history.stem
            names[path] = f"{folder}@{reports[path].step}"
        else:
            names[path] = path.name
    if to_probe:
        assert base is not None
        reports.update(_probe(to_probe, base, suite, device, token_budget))
    chosen = labels or [names[p] for p in paths]
    return list(chosen), [reports[p] for p in paths]


def _probe(
    paths: list[Path], base: str | os.PathLike[str], suite: str, device: str, token_budget: int
) -> dict[Path, DriftReport]:
    from driftwatch.models import load_finetuned, load_model
    from driftwatch.session import ProbeSession
    from driftwatch.suite import ProbeSuite

    base_model, tokenizer = load_model(base, device=device)
    session = ProbeSession.open(
        base_model, tokenizer, ProbeSuite.load(suite), token_budget=token_budget
    )
    logger.info(
        "reference %s (%s)", session.reference.path, "reused" if session.reused else "built"
    )
    del base_model
    out = {}
    with task("models", total=len(paths), keep=True) as bar:
        for path in paths:
            bar.note(path.name)
            model: Any = load_finetuned(path, base, device)
            out[path], _ = session.measure(model, step=0)
            del model
            bar.advance()
    return out


def _csv(labels: list[str], reports: list[DriftReport]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            "model",
            "capability",
            "group",
            "metric",
            "base",
            "now",
            "delta_pct",
            "ci_low_pct",
            "ci_high_pct",
            "kl",
            "significant",
        ]
    )
    for label, report in zip(labels, reports, strict=True):
        for cap in report.capabilities.values():
            head = cap.headline
            pct = head.delta_pct is not None
            writer.writerow(
                [
                    label,
                    cap.id,
                    cap.group,
                    cap.metric,
                    _cell(head.base),
                    _cell(head.now),
                    _cell(head.delta_pct),
                    _cell(head.ci_low_pct),
                    _cell(head.ci_high_pct),
                    "" if pct else _cell(head.now),
                    int(significant(cap)),
                ]
            )
    return buffer.getvalue()


def _cell(value: float | None) -> str:
    return "" if value is None or value != value else f"{value:.6g}"


def write_comparison(
    labels: list[str], reports: list[DriftReport], out: str | os.PathLike[str]
) -> Comparison:
    """``comparison.csv``, ``comparison.md`` and, with matplotlib, ``heatmap.png`` and
    ``spider.png`` in ``out``, each written atomically."""
    target = Path(out)
    files = [
        write_atomic(target / "comparison.csv", _csv(labels, reports)),
        write_atomic(target / "comparison.md", comparison_table(labels, reports) + "\n"),
    ]
    if plots_available():
        from driftwatch.plots import heatmap, png, spider

        files.append(write_atomic(target / "heatmap.png", png(heatmap(labels, reports))))
        files.append(write_atomic(target / "spider.png", png(spider(labels, reports))))
    else:
        logger.warning("matplotlib is not installed: no heatmap or spider plot (extra 'plots')")
    return Comparison(labels, reports, files)
