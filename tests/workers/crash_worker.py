"""Killed by tests/test_crash_safety.py in the middle of writing a file.

    python tests/workers/crash_worker.py <reference|snapshot|history> <path> <moment>

The writer is driftwatch's own (Reference.save, SnapshotStore.take, JsonlSink.write); a patch
makes it stop at the chosen moment (mid-write or before-rename), print BLOCKED and wait to be
killed with SIGKILL.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def block() -> None:
    print("BLOCKED", flush=True)
    time.sleep(120)


def main(kind: str, path: Path, moment: str) -> None:
    import os

    import safetensors.torch
    import torch

    import driftwatch.sinks as sinks
    from driftwatch.reference import Reference
    from driftwatch.rollback import SnapshotStore

    if moment == "before-rename":
        os.replace = lambda *a, **k: block()  # type: ignore[assignment]
    elif kind != "history":
        real = safetensors.torch.save

        def half(tensors, filename, metadata=None):
            data = real(tensors, metadata=metadata)
            with open(filename, "wb") as handle:
                handle.write(data[: len(data) // 2])
                handle.flush()
            block()

        safetensors.torch.save_file = half
    else:

        class Torn:
            def __init__(self, handle):
                self.handle = handle

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.handle.close()

            def write(self, text):
                self.handle.write(text[: len(text) // 2])
                self.handle.flush()
                block()

        def torn_append(file, mode="r", *args, **kwargs):
            handle = open(file, mode, *args, **kwargs)  # noqa: SIM115
            return Torn(handle) if mode == "a" else handle

        sinks.open = torn_append  # type: ignore[attr-defined]

    if kind == "reference":
        ref = Reference.load(path)
        ref.metadata["created"] = "second write"
        ref.save(path)
    elif kind == "snapshot":
        model = torch.nn.Linear(4, 4)
        torch.nn.init.constant_(model.weight, 2.0)
        SnapshotStore("disk", directory=path).take(model, 2)
    else:
        from driftwatch.policy import Decision

        report = sinks.read_history(path)[0][0]
        sinks.JsonlSink(path).write(report, Decision("continue", 3))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), sys.argv[3])
