"""The base reference: the base model's per-item results, saved as one safetensors file.

Tensors (names are part of the format):

=============================  ================================================================
``values/<metric>``            ``(N,)`` float64 per item over the suite (NaN = not applicable)
``<kind>/<name>``              a probe kind's records, e.g. ``choice/option_logprobs``
                               ``(N_choice, max options)`` float32, summed log-prob per option
``generate/tokens``            ``(T,)`` int32, generated ids of every generate item, concatenated
``generate/offsets``           ``(N_generate + 1,)`` int64
``distribution/topk_logprobs`` ``(P, k)`` float32, base top-k log-probs per text position
``distribution/topk_ids``      ``(P, k)`` int32
``distribution/continuation``  ``/tokens`` and ``/offsets``: the base model's reply to each
                               prompt-based distribution item
=============================  ================================================================

The header metadata holds the fingerprint — ``format``, ``suite``, ``tokenizer``, ``model``,
``parameters``, ``precision`` (the weights' dtype), ``compute`` (the precision the forwards ran
in: the weights' dtype, or ``autocast-bfloat16`` and the like, see
:mod:`driftwatch.runner.precision`), ``settings`` — plus ``suite_name`` and ``created``. Loading
checks each part against the run and raises :class:`~driftwatch.errors.ReferenceMismatchError`
naming the first that differs. Files are written to a temporary name and renamed into place,
and the cache (:func:`cache_path`) is keyed by the fingerprint, so a second run with the same
base model and suite reuses the file. Building one (a recorded probe round) is
:func:`driftwatch.session.load_or_build`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from driftwatch import tensorfile
from driftwatch.errors import DriftwatchError, ReferenceMismatchError
from driftwatch.models import cache_dir
from driftwatch.settings import probe_settings
from driftwatch.sharding import full_parameters, model_class

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from driftwatch.runner import ProbeResult
    from driftwatch.suite import ProbeSuite

__all__ = [
    "CHECKED_ON_REUSE",
    "FINGERPRINT_PARTS",
    "FORMAT_VERSION",
    "Reference",
    "cache_path",
    "fingerprint",
    "model_identity",
    "parameter_checksum",
    "probe_settings",
    "tokenizer_hash",
]

logger = logging.getLogger(__name__)

# 2: generate scores follow IFEval's reference checkers (driftwatch 0.1 references hold
# scores from the earlier verifiers, which a comparison would report as drift)
FORMAT_VERSION = "2"
# In checking order: precision before parameters, because a precision change also changes
# the sampled weights and "precision" is the more useful thing to be told.
FINGERPRINT_PARTS = (
    "format",
    "suite",
    "tokenizer",
    "model",
    "precision",
    "compute",
    "parameters",
    "settings",
)
# Parts checked when a given reference is used for a model that may have trained already:
# "parameters" identifies the base weights and is part of the cache key, but a run resumed
# from a checkpoint (or a fine-tuned model probed from the command line) has moved away from
# them, legitimately.
CHECKED_ON_REUSE = ("format", "suite", "tokenizer", "model", "precision", "compute", "settings")
_SAMPLES_PER_PARAMETER = 64
# Config keys that change with how a model is run, not with what it computes.
_VOLATILE_CONFIG = {
    "_name_or_path",
    "use_cache",
    "torch_dtype",
    "dtype",
    "transformers_version",
    "_attn_implementation",
    "_attn_implementation_autoset",
    "attn_implementation",
    "_commit_hash",
    "architectures",
    "output_hidden_states",
    "return_dict",
    "output_attentions",
    "_experts_implementation",
}


def _sha(data: str | bytes) -> str:
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def tokenizer_hash(tokenizer: PreTrainedTokenizerBase) -> str:
    """Hash of everything that decides token ids: vocabulary/merges, special tokens, template."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    core = (
        backend.to_str()
        if backend is not None
        else json.dumps(sorted(tokenizer.get_vocab().items()))
    )
    extra = json.dumps(
        {
            "special": tokenizer.special_tokens_map,
            "template": getattr(tokenizer, "chat_template", None),
            "class": type(tokenizer).__name__,
        },
        sort_keys=True,
        default=str,
    )
    return _sha(core + extra)[:16]


def model_identity(model: torch.nn.Module) -> str:
    """Architecture and configuration (not weights): ``<class>:<config hash>``."""
    config = getattr(model, "config", None)
    data = config.to_dict() if config is not None and hasattr(config, "to_dict") else {}
    stable = {k: v for k, v in data.items() if k not in _VOLATILE_CONFIG}
    digest = _sha(json.dumps(stable, sort_keys=True, default=str))[:12]
    return f"{model_class(model).__name__}:{digest}"


def parameter_checksum(model: torch.nn.Module) -> str:
    """A cheap checksum of the weights: a strided sample of every parameter, as float32 bytes.

    Independent of the device and of sharding (FSDP2's parameters are read whole, so every
    rank gets the unsharded model's checksum); two models with the same weights (in the same
    precision) give the same checksum, and any real training update changes it.
    """
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, param in full_parameters(model):  # sharded ones gathered
            flat = param.reshape(-1)
            stride = max(1, flat.numel() // _SAMPLES_PER_PARAMETER)
            # a copy: NumPy must not share (and so pin) a parameter's storage, which FSDP2
            # frees and re-allocates around every forward
            sample = flat[::stride][:_SAMPLES_PER_PARAMETER].float().cpu().clone()
            digest.update(name.encode())
            digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


def _precision(model: torch.nn.Module) -> str:
    return str(next(model.parameters()).dtype).removeprefix("torch.")


def fingerprint(
    suite: ProbeSuite,
    tokenizer: PreTrainedTokenizerBase,
    model: torch.nn.Module,
    settings: Mapping[str, Any],
    compute: str | None = None,
) -> dict[str, str]:
    """The fingerprint a reference must carry to be used with this suite, tokenizer and model,
    probed in the compute precision ``compute`` (default: the weights' dtype, no autocast)."""
    return {
        "format": FORMAT_VERSION,
        "suite": suite.fingerprint[:16],
        "tokenizer": tokenizer_hash(tokenizer),
        "model": model_identity(model),
        "parameters": parameter_checksum(model),
        "precision": _precision(model),
        "compute": compute or _precision(model),
        "settings": json.dumps(dict(settings), sort_keys=True),
    }


def cache_path(
    fp: Mapping[str, str], suite_name: str, root: str | os.PathLike[str] | None = None
) -> Path:
    """Where the reference with this fingerprint lives in the cache."""
    if root is None:
        root = cache_dir() / "references"
    # a compute precision that is the weights' own dtype is left out of the key, so references
    # cached before it was recorded are found again
    parts = [k for k in FINGERPRINT_PARTS if k != "compute" or fp[k] != fp["precision"]]
    key = _sha(json.dumps({k: fp[k] for k in parts}, sort_keys=True))[:20]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in suite_name)
    return Path(root) / f"{safe}-{key}.safetensors"


@dataclass
class Reference:
    """A base model's per-item results plus the fingerprint they were computed under."""

    metadata: dict[str, str]
    values: dict[str, torch.Tensor]
    records: dict[str, torch.Tensor]  # the probe kinds' extra tensors, "<kind>/<name>"
    generated: list[list[int]]
    topk: tuple[torch.Tensor, torch.Tensor] | None
    path: Path | None = None
    # base continuations of the prompt-based distribution items (CompiledSuite.pending_items)
    continuations: list[list[int]] = field(default_factory=list)

    @classmethod
    def from_result(cls, result: ProbeResult, fp: Mapping[str, str], suite_name: str) -> Reference:
        meta = dict(fp)
        meta["suite_name"] = suite_name
        meta["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return cls(
            metadata=meta,
            values={k: v.clone() for k, v in result.values.items()},
            records={k: v.clone() for k, v in result.records.items()},
            generated=[list(g) for g in result.generated],
            topk=result.topk,
        )

    @property
    def option_logprobs(self) -> torch.Tensor:
        """The choice kind's ``(N_choice, max options)`` summed option log-probs."""
        return self.records.get("choice/option_logprobs", torch.zeros(0, 0))

    # ---- persistence --------------------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        out = {f"values/{k}": v.contiguous() for k, v in self.values.items()}
        out.update({k: v.contiguous() for k, v in self.records.items()})
        out.update(_ragged("generate", self.generated))
        if self.topk is not None:
            out["distribution/topk_logprobs"] = self.topk[0].contiguous()
            out["distribution/topk_ids"] = self.topk[1].contiguous()
        if self.continuations:
            out.update(_ragged("distribution/continuation", self.continuations))
        return out

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically, with a checksum of the data (see :mod:`driftwatch.tensorfile`)."""
        self.path = tensorfile.save(path, self.tensors(), self.metadata)
        return self.path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Reference:
        """Read a reference file (safetensors only: nothing in it can execute code).

        A file whose data does not match its checksum (torn, truncated, edited) is refused.
        """
        source = Path(path)
        if not source.is_file():
            raise DriftwatchError(f"{source}: no such reference file")
        tensors, metadata = tensorfile.load(source)
        metadata.pop(tensorfile.CHECKSUM_KEY, None)
        if "precision" in metadata:  # written before the compute precision was recorded:
            metadata.setdefault("compute", metadata["precision"])  # no autocast applied then
        fmt = metadata.get("format")
        if fmt != FORMAT_VERSION:
            raise ReferenceMismatchError("format", FORMAT_VERSION, str(fmt), str(source))
        missing = [p for p in FINGERPRINT_PARTS if p not in metadata]
        needed = ["generate/offsets", "generate/tokens"]
        missing += [t for t in needed if t not in tensors]
        if missing:
            raise DriftwatchError(f"{source}: not a driftwatch reference: missing {missing}")
        problem = _tensor_problem(tensors)
        if problem:
            raise DriftwatchError(f"{source}: not a valid driftwatch reference: {problem}")
        topk = None
        if "distribution/topk_logprobs" in tensors:
            topk = (tensors["distribution/topk_logprobs"], tensors["distribution/topk_ids"])
        values = {
            k.removeprefix("values/"): v for k, v in tensors.items() if k.startswith("values/")
        }
        records = {
            k: v
            for k, v in tensors.items()
            if not k.startswith(("values/", "generate/", "distribution/"))
        }
        return cls(
            metadata=metadata,
            values=values,
            records=records,
            generated=_unragged(tensors, "generate"),
            topk=topk,
            path=source,
            continuations=_unragged(tensors, "distribution/continuation"),
        )

    # ---- validation ---------------------------------------------------------------------
    def check(self, expected: Mapping[str, str], parts: Iterable[str] = FINGERPRINT_PARTS) -> None:
        """Raise :class:`ReferenceMismatchError` naming the first part that differs."""
        for part in parts:
            if self.metadata.get(part) != expected[part]:
                raise ReferenceMismatchError(
                    part,
                    expected[part],
                    str(self.metadata.get(part)),
                    str(self.path) if self.path else None,
                )


def _tensor_problem(tensors: Mapping[str, torch.Tensor]) -> str | None:
    """What is wrong with a reference's tensors (shapes, dtypes, offsets), or None."""
    for name, t in tensors.items():
        if name.startswith("values/") and (t.dim() != 1 or not t.is_floating_point()):
            return f"{name}: expected a 1-D float tensor, found {tuple(t.shape)} {t.dtype}"
    lp = tensors.get("choice/option_logprobs")
    if lp is not None and (lp.dim() != 2 or not lp.is_floating_point()):
        return f"choice/option_logprobs: expected a 2-D float tensor, found {tuple(lp.shape)}"
    pair = ("distribution/topk_logprobs", "distribution/topk_ids")
    if (pair[0] in tensors) != (pair[1] in tensors):
        return f"expected both or neither of {list(pair)}"
    if pair[0] in tensors:
        values, ids = tensors[pair[0]], tensors[pair[1]]
        if values.dim() != 2 or values.shape != ids.shape or ids.is_floating_point():
            return f"{list(pair)}: expected two (P, k) tensors, float and integer"
    for prefix in ("generate", "distribution/continuation"):
        offsets, tokens = tensors.get(f"{prefix}/offsets"), tensors.get(f"{prefix}/tokens")
        if offsets is None and tokens is None:
            continue
        if offsets is None or tokens is None:
            return f"expected both {prefix}/offsets and {prefix}/tokens"
        if (
            offsets.dim() != 1
            or tokens.dim() != 1
            or offsets.is_floating_point()
            or tokens.is_floating_point()
            or offsets.numel() == 0
            or int(offsets[0]) != 0
            or bool((offsets[1:] < offsets[:-1]).any())
            or int(offsets[-1]) != tokens.numel()
        ):
            return f"{prefix}/offsets and {prefix}/tokens do not describe token lists"
    return None


def _ragged(prefix: str, rows: list[list[int]]) -> dict[str, torch.Tensor]:
    """Token lists as ``prefix/offsets`` (cumulative, int64) and ``prefix/tokens`` (int32)."""
    lengths = torch.tensor([0] + [len(r) for r in rows], dtype=torch.int64)
    return {
        f"{prefix}/offsets": lengths.cumsum(0),
        f"{prefix}/tokens": torch.tensor([t for r in rows for t in r], dtype=torch.int32),
    }


def _unragged(tensors: Mapping[str, torch.Tensor], prefix: str) -> list[list[int]]:
    if f"{prefix}/offsets" not in tensors:
        return []
    offsets = tensors[f"{prefix}/offsets"].tolist()
    tokens = tensors[f"{prefix}/tokens"].tolist()
    return [tokens[a:b] for a, b in itertools.pairwise(offsets)]
