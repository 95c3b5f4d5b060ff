"""Extra peak memory of a probe round, as a share of the model's weights; reference sizes.

For each suite a ``DriftMonitor`` is started (its reference built into a temporary cache, not
measured) and two rounds are measured:

* CPU: the process's resident set size is sampled every millisecond by a thread during the
  round; the extra peak is the highest sample minus the RSS just before the round. The first
  round also pays for the allocator growing its pools; the second shows the steady state.
* CUDA: ``torch.cuda.max_memory_allocated`` during the round minus the memory allocated before.

The weights' size is the sum of the parameters' bytes. The reference file's size on disk is
reported per suite (what the cache and a resumed run keep).

    python benchmarks/memory.py
    python benchmarks/memory.py --device cuda --dtype bfloat16

Writes ``benchmarks/results/memory.json``.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_model_args, load, write_results

from driftwatch import DriftMonitor
from driftwatch.suite import ProbeSuite


class PeakRSS:
    """Samples this process's RSS every millisecond while in the ``with`` block."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakRSS:
        self.before = self.process.memory_info().rss
        self.peak = self.before
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(0.001)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def extra_peak(fn: Any, device: torch.device) -> int:
    """Bytes above the memory in use before ``fn`` that ``fn`` needed at its peak."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated() - before)
    with PeakRSS() as rss:
        fn()
    return int(rss.peak - rss.before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_args(parser)
    parser.add_argument("--suites", default="smoke,quick,standard")
    parser.add_argument("--budget", type=int, default=4096, help="token budget per batch")
    parser.add_argument(
        "--cache-dir", default=None, help="reference cache to reuse (default: a fresh one)"
    )
    parser.add_argument("--out", default="benchmarks/results/memory.json")
    args = parser.parse_args()
    logging.getLogger("driftwatch").setLevel(logging.WARNING)

    model, tokenizer = load(args.model, args.device, args.dtype)
    model.eval()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache_dir or tmp
        for name in args.suites.split(","):
            monitor = DriftMonitor(ProbeSuite.load(name), token_budget=args.budget, cache_dir=cache)
            reference = monitor.start(model, tokenizer)
            device = torch.device(args.device)
            first = extra_peak(lambda m=monitor: m.measure(model, 0), device)
            second = extra_peak(lambda m=monitor: m.measure(model, 1), device)
            assert reference.path is not None
            rows.append(
                {
                    "suite": name,
                    "items": len(monitor.suite),
                    "first_round_bytes": first,
                    "steady_round_bytes": second,
                    "first_share": first / weights,
                    "steady_share": second / weights,
                    "reference_bytes": Path(reference.path).stat().st_size,
                }
            )
            monitor.close()
            print(f"  {name}: {first / 2**20:.1f} MiB", file=sys.stderr, flush=True)

    print(f"weights: {weights / 2**20:.1f} MiB ({args.dtype})")
    print("| suite | items | extra peak, first round | later round | reference file |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['suite']} | {r['items']} | {r['first_round_bytes'] / 2**20:.1f} MiB "
            f"({100 * r['first_share']:.1f}%) | {r['steady_round_bytes'] / 2**20:.1f} MiB "
            f"({100 * r['steady_share']:.1f}%) | {r['reference_bytes'] / 2**10:.0f} KiB |"
        )
    write_results(args.out, args, weights_bytes=weights, rows=rows)


if __name__ == "__main__":
    main()
