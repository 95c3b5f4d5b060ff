"""Safetensors files written atomically and read back only when whole.

References and disk snapshots go through here. :func:`save` writes to a temporary file in the
target's folder, fsyncs it, renames it over the target and fsyncs the folder, so a process
killed at any moment leaves either the previous file or the new one — never a mix. It also
stores a SHA-256 of every tensor's name, dtype, shape and bytes in the metadata
(``checksum``); :func:`load` recomputes it and refuses a file whose data does not match (a
torn copy, a bad disk, an edited file), naming the file. Files written before checksums
existed (no ``checksum`` key) are read as they are.

Safetensors holds tensors and string metadata only: reading a file never executes code.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch

from driftwatch.errors import DriftwatchError

__all__ = ["checksum", "load", "save"]

CHECKSUM_KEY = "checksum"


def checksum(tensors: Mapping[str, torch.Tensor]) -> str:
    """``sha256:<hex>`` over the tensors' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"sha256:{digest.hexdigest()}"


def save(
    path: str | os.PathLike[str], tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]
) -> Path:
    """Write ``tensors`` and ``metadata`` (plus their checksum) to ``path`` atomically."""
    from safetensors.torch import save_file

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # safetensors refuses tensors that share memory or are not contiguous
    data = {k: v.detach().contiguous() for k, v in tensors.items()}
    meta = {**metadata, CHECKSUM_KEY: checksum(data)}
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        save_file(data, tmp, metadata=meta)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _fsync_dir(target.parent)
    return target


def load(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a file written by :func:`save`.

    Raises:
        DriftwatchError: the file is missing, not safetensors, truncated, or its data does not
            match its checksum; the message names the file.
    """
    from safetensors import SafetensorError, safe_open

    source = Path(path)
    if not source.is_file():
        raise DriftwatchError(f"{source}: no such file")
    try:
        with safe_open(str(source), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise DriftwatchError(f"{source}: not a readable safetensors file ({err})") from err
    expected = metadata.get(CHECKSUM_KEY)
    if expected is not None:
        found = checksum(tensors)
        if found != expected:
            raise DriftwatchError(
                f"{source}: checksum mismatch (the metadata says {expected[:19]}…, the data "
                f"hashes to {found[:19]}…): the file is torn or was changed after it was "
                "written; it is refused"
            )
    return tensors, metadata


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (a no-op where folders cannot be opened, e.g. Windows)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
