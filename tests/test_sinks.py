"""Where rounds go (driftwatch/sinks.py) and how they read as text (driftwatch/formatting.py):
the tags and values a dashboard gets, the history file, the log line, the tables."""

from __future__ import annotations

import json
import logging
import math

from driftwatch import formatting
from driftwatch.drift import CapabilityDrift, DriftReport, MetricDrift
from driftwatch.policy import Breach, Decision
from driftwatch.sinks import (
    JsonlSink,
    LogSink,
    TensorBoardSink,
    default_sinks,
    read_history,
    scalars,
)
from driftwatch.suite import ProbeSuite


def report(step: int = 4) -> DriftReport:
    score = MetricDrift("score", 0.8, 0.6, -0.2, -25.0, -0.3, -0.1, 40, -37.5, -12.5)
    words = MetricDrift("words", 20.0, 20.0, 0.0, 0.0, math.nan, math.nan, 40)
    kl = MetricDrift("kl", 0.0, 0.163, 0.163, None, 0.1, 0.226, 6)
    caps = {
        "C1": CapabilityDrift("C1", "CAN", "score", {"score": score, "words": words}),
        "D": CapabilityDrift("D", "other", "kl", {"kl": kl}),
    }
    return DriftReport(step, caps, {"CAN": -25.0}, seconds=2.5, extra={"overhead_pct": 3.0})


STOP = Decision("stop", 4, (Breach("D", "kl", 0.163, 0.15, 1),))


def test_scalars_are_the_documented_tags():
    tags = scalars(report(), STOP)
    assert tags == {
        "driftwatch/CAN/C1": -25.0,  # the headline Δ%
        "driftwatch_raw/C1/score": 0.6,
        "driftwatch_raw/C1/words": 20.0,
        "driftwatch_ci/C1/low": -37.5,
        "driftwatch_ci/C1/high": -12.5,
        "driftwatch/other/D": 0.163,  # KL has no percentage: its value
        "driftwatch_raw/D/kl": 0.163,
        "driftwatch/CAN/mean": -25.0,
        "driftwatch_meta/probe_seconds": 2.5,
        "driftwatch_meta/overhead_pct": 3.0,
        "driftwatch_meta/breaches": 1.0,
    }


def test_history_round_trips_and_keeps_the_decision(tmp_path):
    path = tmp_path / "h" / "driftwatch_history.jsonl"
    sink = JsonlSink(path)
    sink.write(report(4), Decision("continue", 4))
    sink.write(report(8), STOP)
    rounds = read_history(path)
    assert [r.step for r, _ in rounds] == [4, 8]
    assert rounds[0][0] == report(4)  # NaN intervals come back as NaN
    assert rounds[1][1]["action"] == "stop" and rounds[1][1]["breaches"][0]["target"] == "D"
    assert all(json.loads(line) for line in path.read_text().splitlines())  # strict JSON


def test_the_log_line_names_every_capability_and_the_decision(caplog):
    with caplog.at_level(logging.INFO, logger="driftwatch.sinks"):
        LogSink().write(report(), STOP)
    (record,) = caplog.records
    assert record.levelno == logging.WARNING  # an action is a warning, a quiet round info
    assert record.getMessage() == (
        "driftwatch step 4 (2.5s): C1 -25.0%, D 0.1630 nats -> step 4: stop: "
        "D/kl +0.16 past 0.15 (1 round)"
    )


def test_default_sinks_write_files_only_where_asked_and_on_the_writing_rank(tmp_path):
    suite = ProbeSuite.load("smoke")
    assert [type(s) for s in default_sinks(None, suite)] == [LogSink]
    assert [type(s) for s in default_sinks(tmp_path, suite, writer=False)] == [LogSink]
    sinks = default_sinks(tmp_path, suite)
    assert [type(s) for s in sinks] == [TensorBoardSink, JsonlSink, LogSink]
    for sink in sinks:
        sink.close()
    assert list(tmp_path.glob("events.out.tfevents.*"))


def test_headlines_and_intervals_read_in_their_units():
    caps = report().capabilities
    assert formatting.value(caps["C1"]) == "-25.0%"
    assert formatting.interval(caps["C1"]) == "[-37.5, -12.5]"
    assert formatting.value(caps["D"]) == "0.1630 nats"
    assert formatting.interval(caps["D"]) == "[0.1000, 0.2260] nats"
    assert formatting.significant(caps["C1"]) and formatting.significant(caps["D"])


def test_the_probe_table_and_the_scan_trajectory():
    lines = formatting.table(report()).splitlines()
    assert lines[0].split() == [
        "capability",
        "group",
        "metric",
        "base",
        "now",
        "Δ",
        "95%",
        "CI",
        "n",
    ]
    assert set(lines[1]) == {"-", " "}
    assert lines[2].split()[:6] == ["C1", "CAN", "score", "0.800", "0.600", "-25.0%"]
    assert lines[-1].startswith("group means: CAN -25.0%")
    rows = formatting.trajectory([report(4), report(8)], [Decision("continue", 4), STOP])
    assert rows.splitlines()[0].split() == ["step", "C1", "D"]
    assert rows.splitlines()[2].split() == ["8", "-25.0%", "0.1630", "nats*"]  # * crossed
    block = formatting.round_block(report(), STOP)
    assert "probe round at step 4 (2.5s)" in block and "✗ breach" in block
    assert block.splitlines()[-1] == "  → step 4: stop: D/kl +0.16 past 0.15 (1 round)"


def named_report() -> DriftReport:
    """W1 with two named metrics (refusal −50%, compliance +10%): headline their mean, −20%."""
    from driftwatch.drift import mean_drift

    refusal = MetricDrift("unsafe_refusal", 0.8, 0.4, -0.4, -50.0, -0.5, -0.3, 10, -62.5, -37.5)
    comply = MetricDrift("benign_compliance", 0.5, 0.55, 0.05, 10.0, 0.0, 0.1, 12, 0.0, 20.0)
    score = MetricDrift("score", 0.65, 0.48, -0.17, -26.2, -0.3, -0.04, 22, -46.2, -6.2)
    parts = {"unsafe_refusal": refusal, "benign_compliance": comply}
    metrics = {"score": score, **parts, "mean": mean_drift(list(parts.values()))}
    cap = CapabilityDrift("W1", "WILL", "mean", metrics, parts=tuple(parts))
    return DriftReport(8, {"W1": cap}, {"WILL": cap.value}, seconds=1.0)


def test_named_metrics_get_tags_rows_and_history_of_their_own(tmp_path):
    r = named_report()
    tags = scalars(r, Decision("continue", 8))
    assert tags["driftwatch/WILL/W1"] == -20.0  # the mean of the parts' Δ%
    assert tags["driftwatch_metric/W1/unsafe_refusal"] == -50.0
    assert tags["driftwatch_metric/W1/benign_compliance"] == 10.0
    assert tags["driftwatch_raw/W1/unsafe_refusal"] == 0.4
    assert tags["driftwatch_raw/W1/benign_compliance"] == 0.55
    assert "driftwatch_raw/W1/mean" not in tags  # no value of its own, only a Δ%
    table = formatting.table(r).splitlines()
    assert table[2].split()[:3] == ["W1", "WILL", "mean"]
    assert table[3].split()[:6] == ["└", "unsafe_refusal", "0.800", "0.400", "-50.0%", "[-62.5,"]
    assert table[4].split()[:2] == ["└", "benign_compliance"]
    block = formatting.round_block(r, Decision("continue", 8))
    assert "└ unsafe_refusal" in block and "-50.0%" in block
    path = tmp_path / "history.jsonl"
    JsonlSink(path).write(r, Decision("continue", 8))
    ((back, _),) = read_history(path)
    assert back == r and back.capabilities["W1"].parts == ("unsafe_refusal", "benign_compliance")
