"""The exact peak of tensor memory a CPU function allocates (what CUDA's
``max_memory_allocated`` is to a GPU), for tests and benchmarks.

The PyTorch profiler records every allocation and free of the CPU allocator with its size and
time; replaying them in order gives the highest number of bytes live at once above what was
live before. Unlike the process's resident set it does not depend on how the C allocator keeps
or returns freed pages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.profiler import ProfilerActivity, profile


def allocated_peak(fn: Callable[[], Any]) -> int:
    """Bytes of CPU tensor memory ``fn`` needs at its peak, above what was allocated before."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    if not events:
        raise RuntimeError("the profiler recorded no allocations (profile_memory unsupported?)")
    live = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        live += event.nbytes()
        peak = max(peak, live)
    return peak
