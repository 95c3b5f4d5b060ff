"""Files written atomically: a reader sees the old file or the whole new one, never a part."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["keep_lines", "write_atomic"]


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` through a synced temporary file beside it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def keep_lines(path: str | os.PathLike[str], keep: Callable[[str], bool]) -> int:
    """Rewrite a text file atomically with only the lines ``keep`` accepts (each with its
    newline); the number of lines dropped, 0 when nothing was dropped or there is no file
    (then nothing is written)."""
    if not Path(path).is_file():
        return 0
    lines = Path(path).read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if keep(line)]
    if len(kept) < len(lines):
        write_atomic(path, "".join(kept))
    return len(lines) - len(kept)
