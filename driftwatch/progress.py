"""Progress of the long steps: a probe round's batches, the models of ``compare``, the
checkpoints of ``scan``.

Library code reports through :func:`task`; nothing is shown unless a caller turned progress
on with :func:`shown` (the command line does, on stderr). A training run's monitor never
prints a bar: its rounds report the same way, to nobody. The bars are tqdm's, which comes
with transformers.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any, TextIO

__all__ = ["Task", "shown", "task"]

_STREAM: contextvars.ContextVar[TextIO | None] = contextvars.ContextVar(
    "driftwatch_progress", default=None
)


class Task:
    """One bar (or nothing, when progress is off)."""

    def __init__(self, bar: Any = None) -> None:
        self._bar = bar

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def note(self, text: str) -> None:
        """What the step is doing now, beside the bar."""
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)


@contextlib.contextmanager
def shown(stream: TextIO | None) -> Iterator[None]:
    """Show the bars of every :func:`task` inside this block on ``stream`` (None: none)."""
    token = _STREAM.set(stream)
    try:
        yield
    finally:
        _STREAM.reset(token)


@contextlib.contextmanager
def task(description: str, total: int, *, keep: bool = False) -> Iterator[Task]:
    """A step of ``total`` units; ``keep`` leaves its finished bar on the screen (an outer
    step such as the models of a comparison), else it is cleared (a probe round)."""
    stream = _STREAM.get()
    if stream is None:
        yield Task()
        return
    from tqdm.auto import tqdm

    bar = tqdm(
        total=total,
        desc=description,
        file=stream,
        leave=keep,
        dynamic_ncols=True,
        mininterval=0.5,
        unit="",
    )
    try:
        yield Task(bar)
    finally:
        bar.close()
