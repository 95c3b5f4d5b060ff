"""Pacing: when a round is due, and what share of the training time probing takes.

The share of a round is its wall time over the training time since the previous round ended
(``overhead_pct`` in its report). Over :attr:`Cadence.max_overhead_pct` the round is reported
(a warning, ``overhead_over_budget``) and, with :attr:`Cadence.adapt`, the cadence stretches
so the next interval fits; it never shrinks. In a process group every rank uses the largest
share of any rank, so every rank keeps the same cadence.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import torch

from driftwatch.distributed import agree_max
from driftwatch.drift import DriftReport
from driftwatch.settings import Cadence

__all__ = ["Pace"]

logger = logging.getLogger(__name__)


class Pace:
    """The cadence in force (configured, or stretched) and the end of the last round."""

    def __init__(self, cadence: Cadence) -> None:
        self.cadence = cadence
        self.every = cadence.every_n_steps
        self.mark: float | None = None  # when the last round (or the start) ended

    def due(self, step: int, last_step: int | None) -> bool:
        """Whether ``step`` is a probe round not probed yet."""
        return step > 0 and step % self.every == 0 and step != last_step

    def account(
        self, report: DriftReport, began: float, ended: float, device: torch.device
    ) -> DriftReport:
        """The report with the round's share of training time; warns and stretches the
        cadence when the share is over budget."""
        share = 0.0
        if self.mark is not None and began > self.mark:
            share = 100.0 * (ended - began) / (began - self.mark)
        share = float(agree_max(torch.tensor([share], dtype=torch.float64, device=device)))
        if share <= 0:
            return report
        extra = {**report.extra, "overhead_pct": share}
        budget = self.cadence.max_overhead_pct
        if budget is not None and share > budget:
            extra["overhead_over_budget"] = 1.0
            message = (
                f"driftwatch: the probe round at step {report.step} took {share:.1f}% of the "
                f"training time since the previous round (budget {budget:g}%)"
            )
            stretched = self.cadence.stretched(self.every, share)
            if stretched != self.every:
                message += f"; probing every {stretched} steps from now on (was {self.every})"
                self.every = stretched
                extra["every_n_steps"] = float(stretched)
            logger.warning(message)
        return replace(report, extra=extra)
