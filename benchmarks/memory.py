"""Extra peak memory of a probe round, as a share of the model's weights; reference sizes.

For each suite a ``DriftMonitor`` is started (its reference built into a temporary cache, not
measured; ``--memory-share`` as in the monitor, default 0.1) and its rounds are measured:

* CPU: in the first ``--rss-rounds`` (2), the process's resident set size is sampled every
  millisecond by a thread; the extra peak is the highest sample minus the RSS just before the
  round (on Linux the script runs with ``MALLOC_MMAP_THRESHOLD_`` fixed, so freed tensors
  leave the RSS). The first round also pays one-time costs: lazy imports, the allocator's
  growth. One more round is traced by the PyTorch profiler, which records every tensor
  allocation and free: its exact tensor peak is what ``max_memory_allocated`` would report
  on a GPU (tests/memtrace.py). With ``--per-pass`` each forward pass and generate call of the round
  is traced on its own and the largest peak is reported (a trace of a whole ``standard``
  round with the memory cap, 58 generate calls, outgrew 24 GiB).
* CUDA: ``torch.cuda.max_memory_allocated`` during each round minus the memory allocated
  before (the traced round is one more such round).

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
import os
import sys
import tempfile
import threading
from functools import partial
from pathlib import Path
from typing import Any

import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # tests.memtrace
from common import add_model_args, load, write_results

from driftwatch import DriftMonitor, ProbeBudget, ReferenceSpec
from driftwatch.suite import ProbeSuite
from tests.memtrace import allocated_peak


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


def pass_peaks(monitor: DriftMonitor, model: Any) -> int:
    """The largest exact tensor peak of the round's passes, each traced on its own: a whole
    round of many long generate calls makes a trace too large for memory."""
    from driftwatch.runner import preserved_state
    from driftwatch.runner.decoding import greedy_replies
    from driftwatch.runner.kernels import discard, score_batch

    assert monitor.session is not None
    compiled = monitor.session.compiled
    peaks = []
    with preserved_state(model), torch.inference_mode():
        for batch in [*compiled.loglik, *compiled.dist]:
            score = partial(score_batch, model, batch, compiled.layout, compiled.budget, discard)
            peaks.append(allocated_peak(score))
        for gen in compiled.gen:
            decode = partial(
                greedy_replies,
                model,
                [gen],
                len(compiled.gen_items),
                pad_id=compiled.pad_id,
                eos_ids=compiled.eos_ids,
                device=compiled.device,
            )
            peaks.append(allocated_peak(decode))
    return max(peaks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_args(parser)
    parser.add_argument("--suites", default="smoke,quick,standard")
    parser.add_argument("--budget", type=int, default=4096, help="token budget per batch")
    parser.add_argument(
        "--cache-dir", default=None, help="reference cache to reuse (default: a fresh one)"
    )
    parser.add_argument(
        "--per-pass",
        action="store_true",
        help="CPU: trace each pass on its own and report the largest (for long rounds)",
    )
    parser.add_argument(
        "--rss-rounds",
        type=int,
        default=2,
        help="CPU: rounds measured by RSS before the traced one; the first also pays one-time "
        "costs (lazy imports, allocator growth), the last is reported as the steady state",
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
            monitor = DriftMonitor(
                ProbeSuite.load(name),
                budget=ProbeBudget(args.budget, memory_share=args.memory_share),
                reference=ReferenceSpec(cache_dir=cache),
            )
            reference = monitor.start(model, tokenizer)
            device = torch.device(args.device)
            rss = [
                extra_peak(lambda m=monitor, k=k: m.measure(model, k), device)
                for k in range(max(1, args.rss_rounds))
            ]
            first, steady = rss[0], rss[-1]
            last = partial(monitor.measure, model, len(rss))
            if device.type != "cpu":
                exact = extra_peak(last, device)
            elif args.per_pass:
                exact = pass_peaks(monitor, model)
            else:
                exact = allocated_peak(last)
            assert reference.path is not None and monitor.session is not None
            compiled = monitor.session.compiled
            rows.append(
                {
                    "suite": name,
                    "items": len(monitor.suite),
                    "memory_budget_bytes": compiled.budget.bytes,
                    "generate_calls": compiled.stats["generate_calls"],
                    "forward_passes": compiled.stats["forward_passes"],
                    "first_round_bytes": first,
                    "steady_round_bytes": steady,
                    "tensor_peak_bytes": exact,
                    "first_share": first / weights,
                    "steady_share": steady / weights,
                    "tensor_share": exact / weights,
                    "reference_bytes": Path(reference.path).stat().st_size,
                }
            )
            monitor.close()
            print(f"  {name}: {first / 2**20:.1f} MiB", file=sys.stderr, flush=True)

    print(f"weights: {weights / 2**20:.1f} MiB ({args.dtype}), memory_share={args.memory_share}")
    kind = "RSS" if args.device == "cpu" else "allocated"
    print(
        f"| suite | items | passes | generate calls | tensor peak | {kind}, first round | "
        f"{kind}, round {max(1, args.rss_rounds)} | reference file |"
    )
    print("|---|---|---|---|---|---|---|---|")

    def mib(r: dict[str, Any], key: str, share: str) -> str:
        return f"{r[key] / 2**20:.1f} MiB ({100 * r[share]:.1f}%)"

    for r in rows:
        print(
            f"| {r['suite']} | {r['items']} | {r['forward_passes']} | {r['generate_calls']} | "
            f"{mib(r, 'tensor_peak_bytes', 'tensor_share')} | "
            f"{mib(r, 'first_round_bytes', 'first_share')} | "
            f"{mib(r, 'steady_round_bytes', 'steady_share') if len(rss) > 1 else '—'} | "
            f"{r['reference_bytes'] / 2**10:.0f} KiB |"
        )
    write_results(args.out, args, weights_bytes=weights, rows=rows)


if __name__ == "__main__":
    # glibc serves large blocks from its heap once the mmap threshold has grown past them (it
    # grows with every large free) and keeps them after they are freed: the RSS would then show
    # the allocator's pools, not the round. A fixed threshold returns every block over 128 KiB.
    if sys.platform == "linux" and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 << 10)}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    main()
