"""The drift reaches the experiment trackers users already look at, through the Trainer's own
``report_to`` integrations: MLflow (a local file store, read back with ``MlflowClient``) and
W&B (offline mode, read back from the run's transaction log). Both are optional extras
(``driftwatch-train[mlflow]``, ``[wandb]``); the tests skip only where they are not installed,
and the README's ``make venv`` installs both, so CI runs them."""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from transformers import Trainer, TrainingArguments

from driftwatch import DriftMonitor
from driftwatch.callbacks.hf import attach
from tests.conftest import build_model
from tests.test_callbacks_hf import dataset

STEPS, EVERY = 6, 3  # two probe rounds: steps 3 and 6


def _train(tokenizer, tmp_path: Path, report_to: str) -> DriftMonitor:
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=STEPS,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        report_to=[report_to],
        use_cpu=True,
        disable_tqdm=True,
        logging_steps=1000,
        save_strategy="no",
    )
    trainer = Trainer(
        model=build_model(tokenizer, seed=3).train(),
        args=args,
        train_dataset=dataset(tokenizer),
        processing_class=tokenizer,
    )
    monitor = DriftMonitor("smoke", every_n_steps=EVERY, thresholds=[])
    attach(trainer, monitor)
    trainer.train()
    assert [r.step for r in monitor.history] == [3, 6]
    return monitor


@pytest.mark.slow
def test_mlflow_gets_the_drift_at_the_probe_steps(tokenizer, tmp_path, cache, monkeypatch):
    pytest.importorskip("mlflow", reason="the 'mlflow' extra")
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # MLflow 3 keeps its file store only on request (a database store needs the full
    # `mlflow` package's SQLAlchemy); the integration is the same either way
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "driftwatch-test")
    monitor = _train(tokenizer, tmp_path, "mlflow")

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("driftwatch-test")
    (run,) = client.search_runs([experiment.experiment_id])
    for tag, value_of in {
        "driftwatch/other/D": lambda r: r.capabilities["D"].value,
        "driftwatch/CAN/mean": lambda r: r.groups["CAN"],
        "driftwatch/WILL/W1": lambda r: r.capabilities["W1"].value,
    }.items():
        points = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, tag)]
        assert points == [(r.step, pytest.approx(value_of(r))) for r in monitor.history]
    # the training loss of the same log events sits beside it
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [3, 6]


def _wandb_records(path: Path) -> Iterator[object]:
    """The records of a W&B transaction log (``run-<id>.wandb``).

    wandb 0.31 dropped its Python reader of this file (the Go core writes it), so it is read
    here: the header ``:W&B``, magic 0xBEE1, version 0, then LevelDB-log blocks of 32 KiB whose
    records (checksum, length, type: full / first / middle / last) hold a protobuf ``Record``.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B transaction log")
    pos, block, parts = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if left < 7 or (length == 0 and kind == 0):  # block trailer or padding
            pos += left
            continue
        if pos + 7 + length > len(data):  # still being written
            break
        parts += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # full, or the last piece
            record = pb.Record()
            record.ParseFromString(parts)
            parts = b""
            yield record


def _wandb_history(log: Path, *, timeout: float = 60.0) -> list[dict[str, object]]:
    """Every history row of a finished offline run. W&B's core process may still be writing
    the log when ``wandb.finish()`` returns, so it is read again until its exit record is in."""
    deadline = time.monotonic() + timeout
    while True:
        records = list(_wandb_records(log))
        kinds = [r.WhichOneof("record_type") for r in records]
        if "exit" in kinds or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert "exit" in kinds, f"{log}: no exit record after {timeout:.0f} s"
    return [
        {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
        for r, kind in zip(records, kinds, strict=True)
        if kind == "history"
    ]


@pytest.mark.slow
def test_wandb_offline_run_holds_the_drift_at_the_probe_steps(
    tokenizer, tmp_path, cache, monkeypatch
):
    wandb = pytest.importorskip("wandb", reason="the 'wandb' extra")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_PROJECT", "driftwatch-test")
    try:
        monitor = _train(tokenizer, tmp_path, "wandb")
    finally:
        wandb.finish()

    (log,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    rows = _wandb_history(log)
    # the Trainer's integration prefixes training logs with train/
    drift = [
        (
            row["train/global_step"],
            row["train/driftwatch/other/D"],
            row["train/driftwatch/CAN/mean"],
        )
        for row in rows
        if "train/driftwatch/other/D" in row
    ]
    assert drift == [
        (r.step, pytest.approx(r.capabilities["D"].value), pytest.approx(r.groups["CAN"]))
        for r in monitor.history
    ]
