"""What the benchmark scripts share: loading a model by name, timing, the JSON they write."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_time(fn: Any, repeats: int, device: torch.device) -> float:
    return median_times([fn], repeats, device)[0]


def median_times(fns: list[Any], repeats: int, device: torch.device) -> list[float]:
    """The median time of each function over ``repeats`` calls after a warm-up of each,
    called in turns (a, b, c, a, b, c, …): a change in the machine's speed during the
    measurement hits all of them alike, and the ratios between them stay fair."""
    for fn in fns:
        fn()  # warm-up
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, spent in zip(fns, times, strict=True):
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            spent.append(time.perf_counter() - start)
    return [statistics.median(spent) for spent in times]


# Llama-shaped, about 1.1B parameters with SmolLM2's 49,152-token vocabulary
LLAMA_1B = {
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": True,
}


def load(model_name: str, device: str, dtype: str) -> tuple[Any, Any]:
    """A model and tokenizer by name.

    ``tiny``: the test suite's tiny model; ``smollm2``: the bundled SmolLM2-135M-Instruct;
    ``random-smollm2`` / ``random-llama1b``: random weights of SmolLM2's shape or a ~1.1B
    Llama shape, with SmolLM2's tokenizer and config read from ``--tokenizer`` (a folder with
    the tokenizer files and config.json; by default the cached converted model), for machines
    where the bundled weights are not at hand (timing does not depend on the weights' values,
    only generation lengths do: random weights rarely stop early); anything else: a local
    model folder.
    """
    if model_name == "tiny":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.conftest import build_model, build_tokenizer

        tok = build_tokenizer()
        return build_model(tok, context=2048).to(device), tok
    if model_name.startswith("random-"):
        return _random_model(model_name, device, dtype)
    from driftwatch.models import load_model

    return load_model(model_name, device=device, dtype=dtype)


def _random_model(model_name: str, device: str, dtype: str) -> tuple[Any, Any]:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder = os.environ.get("DRIFTWATCH_BENCH_TOKENIZER")
    if folder is None:
        from driftwatch.models import bundled_model_dir

        folder = str(bundled_model_dir())
    config = AutoConfig.from_pretrained(folder)
    if model_name == "random-llama1b":
        for key, value in LLAMA_1B.items():
            setattr(config, key, value)
    elif model_name != "random-smollm2":
        raise SystemExit(f"--model: unknown random model {model_name!r}")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    return model.to(device).eval(), AutoTokenizer.from_pretrained(folder)


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="smollm2", help="'smollm2', 'tiny', 'random-…', a dir")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument(
        "--memory-share",
        type=memory_share,
        default=0.1,
        help="memory cap of a probe pass, as a share of the weights (the library's default, "
        "0.1), or 'none'",
    )


def memory_share(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def memory_budget(model: Any, share: float | None) -> int | None:
    """``share`` of the model's weights in bytes, as ``DriftMonitor(memory_share=…)`` caps it."""
    from driftwatch.memory import share_bytes

    return share_bytes(model, share)


def write_results(path: str, args: argparse.Namespace, **payload: Any) -> None:
    """``payload`` with the run's settings and machine as ``meta``, to ``path`` as JSON."""
    meta = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **{k: v for k, v in vars(args).items() if k != "out"},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, **payload}, indent=2))
    print(f"wrote {out}")
