"""The layout check: the fastest layout whose results match plain forwards on this model.

``packed`` rows need attention that honours a custom 4-D mask, ``cached`` batches a KV cache
that can be re-indexed over the batch; ``concatenated`` rows work with any causal LM. The
check runs one item both ways, in the precision the model's forwards compute in
(:mod:`driftwatch.runner.precision`), and keeps the first layout within tolerance.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch

from driftwatch.memory import Budget
from driftwatch.runner.isolation import preserved_state
from driftwatch.runner.kernels import continuation_logprobs
from driftwatch.runner.layout import (
    Batch,
    CachedBatch,
    Layout,
    LoglikRequest,
    cached_batches,
    loglik_rows,
    pack_rows,
)
from driftwatch.runner.precision import Compute, layout_tolerance
from driftwatch.sharding import no_grad

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = ["choose_layout"]

logger = logging.getLogger(__name__)


def _mask_sensitivity(request: LoglikRequest) -> int:
    """Scored positions that a packed row's mask hides earlier options from: where a model
    that ignored the mask would read another option's tokens."""
    return sum(max(0, len(cont) - 1) for cont in request[1][1:])


def choose_layout(
    model: PreTrainedModel, requests: list[LoglikRequest], compute: Compute
) -> Layout:
    """The fastest layout whose results match plain per-option forwards, in the precision
    the forwards compute in, on the item where the layouts differ most.

    ``packed`` needs attention that honours a custom 4-D mask; ``cached`` needs a KV cache
    that can be re-indexed over the batch; ``concatenated`` works with any causal LM. The
    item checked is the one with the most option tokens a packed row's mask must hide, so a
    model that ignores the mask errs there by far more than the precision's noise
    (:func:`~driftwatch.runner.precision.layout_tolerance`).
    """
    probe = max((r for r in requests if len(r[1]) > 1), key=_mask_sensitivity, default=None)
    if probe is None:
        return "packed"
    prompt, conts, _ = probe
    parameter = next(model.parameters())
    device = parameter.device

    def plain() -> torch.Tensor:
        sums = []
        for cont in conts:
            ids = torch.tensor([prompt + cont], device=device)
            logits = model(input_ids=ids, use_cache=False).logits[0].float().log_softmax(-1)
            at = torch.arange(len(prompt) - 1, len(prompt) + len(cont) - 1, device=device)
            sums.append(logits[at, torch.tensor(cont, device=device)].double().sum())
        return torch.stack(sums)

    # under 16-bit autocast over wider weights, each layout is also run with autocast off:
    # how far its sums move is this model's noise of the precision on this item
    measure_noise = compute.autocast and parameter.dtype.itemsize > compute.dtype.itemsize
    with preserved_state(model), no_grad(model):
        with compute.context():
            reference = plain()
        for layout in ("packed", "cached"):
            batch: Batch | CachedBatch = (
                pack_rows(loglik_rows([probe], "packed"), Budget(1 << 30), 0, device)[0]
                if layout == "packed"
                else cached_batches([probe], Budget(1 << 30), 0, device)[0]
            )
            try:
                with compute.context():
                    got = continuation_logprobs(model, batch, layout, len(conts), probe[2])
                noise = None
                if measure_noise:
                    with torch.autocast(device.type, enabled=False):
                        wide = continuation_logprobs(model, batch, layout, len(conts), probe[2])
                    noise = float((got - wide).abs().max())
            except (RuntimeError, ValueError, TypeError, AttributeError) as err:
                logger.warning("%s layout unavailable for this model (%s)", layout, err)
                continue
            error = float((got - reference).abs().max())
            tol = layout_tolerance(reference, noise, compute.dtype)
            logger.debug(
                "%s layout in %s: error %.3g, tolerance %.3g", layout, compute.name, error, tol
            )
            if error <= tol:
                return layout
            logger.warning(
                "%s layout does not reproduce plain forwards in %s (max log-prob error %.3g)",
                layout,
                compute.name,
                error,
            )
    logger.warning("using one row per option (the slowest layout)")
    return "concatenated"
