"""The built-in suites: reproducible from their generator, and covering the taxonomy."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from driftwatch.suite import ProbeSuite, builtin_suites

SUITES = Path(__file__).resolve().parents[1] / "driftwatch" / "probes" / "suites"
BUILD = SUITES / "source" / "build.py"
ACCURACY = ["C1", "C2", "C3", "C4", "C5a", "C5b", "C5c"]
GENERATED = ["W1", "W3a", "W3b", "H1", "H2", "H3", "H4", "H6"]


def test_generator_reproduces_the_checked_in_files_byte_for_byte(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BUILD), "--check"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    # and --check can fail: a changed file is reported
    sys.path.insert(0, str(BUILD.parent))
    try:
        import build  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(BUILD.parent))
    files = build.build()
    assert set(files) == {
        p for s in ("standard", "quick") for p in (SUITES / s).iterdir() if p.is_file()
    }
    assert files == build.build(), "two builds in one process agree"


def test_generator_check_reports_a_changed_file(tmp_path):
    copy = tmp_path / "suites"
    import shutil

    shutil.copytree(SUITES, copy)
    victim = copy / "standard" / "c2_reasoning.jsonl"
    victim.write_text(victim.read_text() + "\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(copy / "source" / "build.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1 and "c2_reasoning.jsonl" in proc.stderr


def test_builtin_suites_are_listed():
    assert {"smoke", "quick", "standard"} <= set(builtin_suites())


def test_standard_covers_every_capability_with_enough_items():
    suite = ProbeSuite.load("standard")
    counts = Counter(i.capability for i in suite.items)
    assert set(counts) == {*ACCURACY, *GENERATED, "D"}
    for cap in ACCURACY:
        assert counts[cap] >= 60, cap
    for cap in GENERATED:
        assert counts[cap] >= 40, cap
    groups = {c.id: c.group for c in suite.capabilities}
    assert {groups[c] for c in ACCURACY} == {"CAN"}
    assert {groups[c] for c in ("W1", "W3a", "W3b")} == {"WILL"}
    assert {groups[c] for c in ("H1", "H2", "H3", "H4", "H6")} == {"HOW"}
    w3a = suite.capability("W3a")
    assert [(d.name, d.metric, d.stat) for d in w3a.metrics] == [
        ("length_mean", "words", "mean"),
        ("length_spread", "words", "std"),
    ]
    assert suite.capability("W3b").metric == "formatted"
    assert suite.capability("D").metric == "kl"


def test_standard_multilingual_paraphrase_and_distribution_shapes():
    suite = ProbeSuite.load("standard")
    langs = {i.lang for i in suite.items_of("C5c")}
    assert len(langs) >= 5
    groups = Counter(i.group for i in suite.items_of("C5a"))
    assert groups and min(groups.values()) >= 3
    d = suite.items_of("D")
    assert any(i.text for i in d) and any(i.prompt for i in d)
    h4 = suite.items_of("H4")
    assert all(i.history and i.chat for i in h4)
    w1 = Counter(i.tags[0] for i in suite.items_of("W1"))
    assert set(w1) == {"harmful", "benign", "borderline"}


def test_answer_positions_are_balanced():
    """Shuffled options: no position holds the gold answer much more often than chance."""
    suite = ProbeSuite.load("standard")
    four = [i for i in suite.items if i.kind == "choice" and len(i.choices) == 4]
    share = Counter(i.answer for i in four)
    assert len(four) > 400
    assert max(share.values()) / len(four) < 0.32


def test_quick_covers_every_group_and_is_a_subset_of_standard():
    quick, standard = ProbeSuite.load("quick"), ProbeSuite.load("standard")
    assert {c.group for c in quick.capabilities} == {"CAN", "WILL", "HOW", "other"}
    content = {i.id: i.content() for i in standard.items}
    for item in quick.items:  # the same items, with at most 32 new tokens (W3a, W3b: standard's)
        mine, theirs = item.content(), content[item.id]
        if "max_new_tokens" in mine:
            cap = {"W3a": 96, "W3b": 64}.get(item.capability, 32)
            assert mine.pop("max_new_tokens") == min(cap, theirs.pop("max_new_tokens"))
        assert mine == theirs
    assert len(quick) < len(standard) / 5


@pytest.mark.parametrize(
    "name",
    [
        "c1_facts.jsonl",
        "c4_misconceptions.jsonl",
        "c5a_paraphrase.jsonl",
        "c5b_commonsense.jsonl",
        "c5c_multilingual.jsonl",
        "w1_requests.jsonl",
    ],
)
def test_written_sources_have_one_gold_and_distinct_options(name):
    for n, line in enumerate((SUITES / "source" / name).read_text("utf-8").splitlines(), 1):
        row = json.loads(line)
        gold = row.get("answer") or row.get("ending")
        if "distractors" in row:
            options = [gold, *row["distractors"]]
            assert len({o.casefold() for o in options}) == len(options), f"{name}:{n}"


# CapTrack's separate metrics where the built-in suites once pooled unlike things
SPLITS = {
    "C1": {"facts": 139, "completion": 47, "arithmetic": 30},
    "W1": {"unsafe_refusal": 30, "benign_compliance": 37},
    "W3a": {"length_mean": 48, "length_spread": 48},
    "H6": {"format": 20, "source": 20},
}


def test_standard_reports_captracks_metrics_separately():
    suite = ProbeSuite.load("standard")
    for cid, sizes in SPLITS.items():
        cap = suite.capability(cid)
        assert cap.metric == "mean"
        items = suite.items_of(cid)
        chosen = {d.name: [i for i in items if d.selects(i)] for d in cap.metrics}
        assert {name: len(sel) for name, sel in chosen.items()} == sizes, cid
        if cid != "W3a":  # the others partition their items
            ids = [i.id for sel in chosen.values() for i in sel]
            assert sorted(ids) == sorted(i.id for i in items), cid
    w1 = {d.name: d for d in suite.capability("W1").metrics}
    harmful = [i for i in suite.items_of("W1") if w1["unsafe_refusal"].selects(i)]
    assert all(i.check == {"type": "refusal", "expect": True} for i in harmful)
