"""Shared by the examples: pick the model, make the narrow training data.

Every example runs on the bundled SmolLM2-135M-Instruct by default. ``--tiny`` (or the
environment variable ``DRIFTWATCH_EXAMPLE_MODEL=tiny``) swaps in driftwatch's tiny offline
test model and the ``smoke`` suite, so CI can run every example in seconds.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from driftwatch.tasks import chat_examples, chat_features


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--tiny", action="store_true", help="tiny offline model + smoke suite (CI)")
    p.add_argument("--out", default="runs/examples", help="where logs and checkpoints go")
    p.add_argument("--steps", type=int, default=None, help="training steps")
    return p


def setup(args: argparse.Namespace) -> dict[str, Any]:
    """Model, tokenizer, suite, cadence, steps and learning rate for this run."""
    tiny = args.tiny or os.environ.get("DRIFTWATCH_EXAMPLE_MODEL") == "tiny"
    if tiny:
        from driftwatch.testing import tiny_model

        model, tokenizer = tiny_model()
        cfg = {"suite": "smoke", "every": 3, "steps": 6, "lr": 0.2, "batch": 2}
    else:
        from driftwatch.models import load_model

        model, tokenizer = load_model("smollm2")
        cfg = {"suite": "quick", "every": 10, "steps": 30, "lr": 1e-4, "batch": 8}
    if args.steps is not None:
        cfg["steps"] = args.steps
    return {"model": model, "tokenizer": tokenizer, "tiny": tiny, **cfg}


def train_rows(tokenizer: Any, n: int) -> list[dict[str, list[int]]]:
    """The narrow 'atlas' task (invented capitals), tokenised with the chat template."""
    return chat_features(tokenizer, chat_examples("atlas", n))
