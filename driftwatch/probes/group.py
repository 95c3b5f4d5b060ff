"""Paraphrase-group consistency: do items that ask the same thing get the same outcome?"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["consistency"]


def consistency(scores: torch.Tensor, group_index: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Per group, 1.0 when all its items have the same outcome (all right or all wrong).

    Args:
        scores: ``(N,)`` per-item 0/1 outcomes.
        group_index: ``(N,)`` group of each item, in ``0..n_groups-1``.
        n_groups: number of groups.

    Returns:
        ``(n_groups,)`` float64.
    """
    import torch

    ones = torch.zeros(n_groups, dtype=torch.float64).index_add_(0, group_index, scores.double())
    size = torch.zeros(n_groups, dtype=torch.float64).index_add_(
        0, group_index, torch.ones_like(scores, dtype=torch.float64)
    )
    return ((ones == 0) | (ones == size)).to(torch.float64)
