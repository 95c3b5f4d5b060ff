"""Safetensors files written atomically with a checksum (driftwatch/tensorfile.py). What a
SIGKILL at each moment of a write leaves is tested in tests/test_crash_safety.py."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from driftwatch import tensorfile
from driftwatch.errors import DriftwatchError


def tensors() -> dict[str, torch.Tensor]:
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    return {
        "a": base.t(),  # not contiguous: written as its values
        "b": torch.tensor([1, -2, 3], dtype=torch.int32),
        "c": torch.tensor([float("nan"), 1.5], dtype=torch.float64),
    }


def test_a_round_trip_is_bit_exact_and_carries_the_metadata(tmp_path):
    path = tensorfile.save(tmp_path / "deep" / "f.safetensors", tensors(), {"step": "3"})
    back, meta = tensorfile.load(path)
    assert meta["step"] == "3" and meta[tensorfile.CHECKSUM_KEY].startswith("sha256:")
    for name, t in tensors().items():
        assert back[name].dtype == t.dtype and back[name].shape == t.shape
        assert torch.equal(back[name].nan_to_num(9.0), t.nan_to_num(9.0))
    assert [p.name for p in path.parent.iterdir()] == ["f.safetensors"]  # no temporary left


def test_the_checksum_covers_names_dtypes_shapes_and_bytes():
    base = tensorfile.checksum(tensors())
    renamed = {("z" if k == "a" else k): v for k, v in tensors().items()}
    retyped = {**tensors(), "b": tensors()["b"].long()}
    reshaped = {**tensors(), "a": tensors()["a"].reshape(2, 6)}
    edited = {**tensors(), "b": torch.tensor([1, -2, 4], dtype=torch.int32)}
    assert len({base, *map(tensorfile.checksum, (renamed, retyped, reshaped, edited))}) == 5


def test_a_file_whose_data_was_changed_is_refused_naming_it(tmp_path):
    path = tensorfile.save(tmp_path / "f.safetensors", tensors(), {})
    _, meta = tensorfile.load(path)
    changed = {**tensors(), "b": torch.tensor([7, 7, 7], dtype=torch.int32)}
    save_file({k: v.contiguous() for k, v in changed.items()}, str(path), meta)
    with pytest.raises(DriftwatchError, match=r"f\.safetensors: checksum mismatch"):
        tensorfile.load(path)


def test_a_file_without_a_checksum_is_read_as_it_is(tmp_path):
    path = tmp_path / "old.safetensors"
    save_file({"x": torch.ones(2)}, str(path), {"format": "1"})  # written before checksums
    back, meta = tensorfile.load(path)
    assert torch.equal(back["x"], torch.ones(2)) and meta == {"format": "1"}


@pytest.mark.parametrize("content", [None, b"", b"garbage" * 10])
def test_missing_or_unreadable_files_are_refused_naming_them(tmp_path, content):
    path = tmp_path / "bad.safetensors"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DriftwatchError, match=r"bad\.safetensors"):
        tensorfile.load(path)
