"""A process killed (SIGKILL) while writing a reference, a snapshot or the history leaves the
previous file intact and usable; torn or altered files are detected and refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from driftwatch import DriftMonitor
from driftwatch.errors import DriftwatchError
from driftwatch.policy import Decision
from driftwatch.reference import Reference
from driftwatch.rollback import SnapshotStore
from driftwatch.sinks import JsonlSink, read_history

WORKER = Path(__file__).parent / "workers" / "crash_worker.py"
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")


def _kill_while_writing(kind: str, path: Path, moment: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), kind, str(path), moment],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.strip() == "BLOCKED", proc.stderr.read()  # type: ignore[union-attr]
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture
def reference_file(model, tokenizer, cache) -> Path:
    monitor = DriftMonitor("smoke", every_n_steps=1)
    ref = monitor.start(model, tokenizer)
    assert ref.path is not None
    return ref.path


@pytest.mark.parametrize("moment", ["mid-write", "before-rename"])
def test_killed_while_writing_a_reference_leaves_the_old_one(reference_file, moment):
    before = reference_file.read_bytes()
    _kill_while_writing("reference", reference_file, moment)
    assert reference_file.read_bytes() == before
    ref = Reference.load(reference_file)  # whole, checksum verified
    assert ref.metadata["created"] != "second write"
    leftovers = list(reference_file.parent.glob(f".{reference_file.name}.*.tmp"))
    assert len(leftovers) == 1  # the dead writer's temporary file, never read by anyone
    ref.save(reference_file)  # the next write succeeds and leaves nothing behind
    assert list(reference_file.parent.glob("*.tmp")) == leftovers


@pytest.mark.parametrize("moment", ["mid-write", "before-rename"])
def test_killed_while_writing_a_snapshot_leaves_the_old_one(tmp_path, moment):
    model = torch.nn.Linear(4, 4)
    torch.nn.init.constant_(model.weight, 1.0)
    store = SnapshotStore("disk", directory=tmp_path)
    store.take(model, 1)
    _kill_while_writing("snapshot", tmp_path, moment)  # would write weights of 2.0
    with torch.no_grad():
        model.weight.fill_(9.0)
    assert store.restore(model) == 1
    assert torch.equal(model.weight, torch.ones(4, 4))


def test_killed_while_appending_to_the_history_loses_only_that_record(
    model, tokenizer, cache, tmp_path, caplog
):
    monitor = DriftMonitor("smoke", every_n_steps=1, logdir=tmp_path)
    monitor.start(model, tokenizer)
    monitor.step(model, 1)
    monitor.step(model, 2)
    monitor.close()
    path = tmp_path / "driftwatch_history.jsonl"
    _kill_while_writing("history", path, "mid-write")
    assert not path.read_bytes().endswith(b"\n")  # the third record is torn
    with caplog.at_level("WARNING"):
        rounds = read_history(path)
    assert [r.step for r, _ in rounds] == [1, 2]
    assert "skipped a torn last record" in caplog.text
    # a resumed run cuts the torn tail before appending, so its records stay whole
    with caplog.at_level("WARNING"):
        sink = JsonlSink(path)
    assert "dropped a torn last record" in caplog.text
    sink.write(rounds[-1][0], Decision("continue", 3))
    assert [d["step"] for _, d in read_history(path)] == [1, 2, 3]


def test_a_malformed_history_line_names_file_and_line(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_text('{"report": {}}\n', encoding="utf-8")
    with pytest.raises(DriftwatchError, match=r"h\.jsonl:1: not a driftwatch history record"):
        read_history(path)


def _flip_last_data_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # the end of the tensor data, after the header
    path.write_bytes(bytes(data))


def test_an_altered_reference_is_refused_by_its_checksum(reference_file):
    _flip_last_data_byte(reference_file)
    with pytest.raises(DriftwatchError, match="checksum mismatch"):
        Reference.load(reference_file)


def test_a_truncated_reference_is_refused(reference_file):
    data = reference_file.read_bytes()
    reference_file.write_bytes(data[: len(data) - 7])
    with pytest.raises(DriftwatchError, match=str(reference_file.name)):
        Reference.load(reference_file)


def test_an_altered_snapshot_is_refused_not_restored(tmp_path):
    model = torch.nn.Linear(4, 4)
    store = SnapshotStore("disk", directory=tmp_path)
    store.take(model, 1)
    _flip_last_data_byte(tmp_path / "last_healthy.safetensors")
    before = model.weight.detach().clone()
    with pytest.raises(DriftwatchError, match="checksum mismatch"):
        store.restore(model)
    assert torch.equal(model.weight, before)  # nothing half-restored
