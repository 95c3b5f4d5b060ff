"""Probe kinds are plugins: a kind defined in this file alone, registered with one line, is
loaded from a suite file, batched with the built-in kinds and probed like them."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import ClassVar

import pytest
import torch

from driftwatch import DriftMonitor, ProbeKind, register_kind
from driftwatch.errors import ConfigError, SuiteError
from driftwatch.metrics import METRICS, MetricSpec
from driftwatch.probes.base import Loglik
from driftwatch.probes.registry import KINDS, unregister
from driftwatch.runner import compile_suite, run_probes
from driftwatch.suite import ProbeSuite, validate_path
from tests.conftest import LAYOUT_NOISE
from tests.test_runner import plain_option_logprobs


class YesNo(ProbeKind):
    """How much more likely " yes" is than " no" after the prompt (summed log-probs)."""

    name = "yesno"
    required = ("prompt",)
    metrics = ("margin",)
    new_metrics: ClassVar = {"margin": MetricSpec(higher_is_better=True)}
    default_metric = "margin"

    def request(self, item, encoder):
        prompt, moved = encoder.prompt(item)
        options = [encoder.continuation(moved + word) for word in (" yes", " no")]
        return Loglik(prompt, options)

    def score(self, items, outputs):
        return {"margin": torch.stack([o.logprobs[0] - o.logprobs[1] for o in outputs])}


@pytest.fixture
def yesno():
    kind = register_kind(YesNo())  # the one registry line
    yield kind
    unregister("yesno")
    assert "yesno" not in KINDS and "margin" not in METRICS


QUESTIONS = ["Is the sky blue?", "Is fire cold?", "Do fish swim?", "Is ice hot?"]


def write_suite(root, kind="yesno"):
    root.mkdir()
    lines = [
        {"id": f"q{k}", "capability": "Y", "kind": kind, "prompt": q}
        for k, q in enumerate(QUESTIONS)
    ]
    lines.append(
        {
            "id": "c",
            "capability": "C1",
            "kind": "choice",
            "prompt": "Pick:",
            "choices": [" a", " b"],
        }
        | {"answer": 0}
    )
    (root / "y.jsonl").write_text("\n".join(json.dumps(x) for x in lines[:-1]) + "\n")
    (root / "c1.jsonl").write_text(json.dumps(lines[-1]) + "\n")
    manifest = {
        "format": 1,
        "name": "yesno",
        "capabilities": [
            {"id": "Y", "name": "yes over no", "group": "CAN", "files": ["y.jsonl"]},
            {"id": "C1", "name": "knowledge", "group": "CAN", "files": ["c1.jsonl"]},
        ],
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_a_kind_from_a_test_file_is_loaded_batched_and_scored(yesno, model, tokenizer, tmp_path):
    suite = ProbeSuite.load(write_suite(tmp_path / "suite"))
    assert suite.capability("Y").metric == "margin"  # the kind's default headline
    compiled = compile_suite(suite, tokenizer, model)
    # the kind's requests are batched like the built-in kinds' (rows of similar length share
    # a pass), in the packed layout
    assert compiled.layout == "packed" and len(compiled.loglik) < len(suite.items)
    result = run_probes(model, compiled, tokenizer)
    for k, item in enumerate(suite.items[:4]):
        as_choice = replace(item, kind="choice", choices=(" yes", " no"), answer=0)
        yes, no = plain_option_logprobs(model, tokenizer, as_choice)  # unbatched forwards
        assert float(result.values["margin"][k]) == pytest.approx(yes - no, abs=1e-4)
    assert torch.isnan(result.values["margin"][4])  # the choice item has no margin
    assert float(result.values["score"][4]) in (0.0, 1.0)


def test_a_monitor_watches_the_new_kind(yesno, model, tokenizer, tmp_path, cache):
    monitor = DriftMonitor(write_suite(tmp_path / "suite"), every_n_steps=1, thresholds=[])
    monitor.start(model, tokenizer)
    assert monitor.step(model, 1).probed
    head = monitor.history[-1].capabilities["Y"].headline
    assert head.metric == "margin" and head.n == len(QUESTIONS)
    assert abs(head.delta) <= LAYOUT_NOISE  # the model has not moved


def test_without_registration_the_kind_is_an_error_that_lists_the_kinds(tmp_path):
    problems = validate_path(write_suite(tmp_path / "suite"))
    assert problems and all(p.field == "kind" for p in problems)
    assert "unknown kind 'yesno'" in problems[0].message and "'choice'" in problems[0].message


def test_registration_is_checked(yesno):
    with pytest.raises(ConfigError, match="already registered"):
        register_kind(YesNo())
    with pytest.raises(ConfigError, match="already registered"):
        register_kind(type("Mine", (YesNo,), {"name": "choice"})())

    class Bad(YesNo):
        name = "bad"
        required = ("prompt", "question")

    with pytest.raises(ConfigError, match="not item fields"):
        register_kind(Bad())

    class Unmeasured(YesNo):
        name = "unmeasured"
        metrics = ("nowhere",)
        new_metrics: ClassVar = {}
        default_metric = "nowhere"

    with pytest.raises(ConfigError, match="nowhere"):
        register_kind(Unmeasured())
    with pytest.raises(ConfigError, match="built in"):
        unregister("choice")


def test_an_item_that_cannot_become_a_request_names_its_field(yesno, model, tokenizer):
    from driftwatch.items import Capability, ProbeItem
    from driftwatch.probes.base import ItemProblem

    class Empty(YesNo):
        name = "empty"

        def request(self, item, encoder):
            raise ItemProblem("prompt", "nothing to ask")

    register_kind(Empty())
    try:
        suite = ProbeSuite.from_items(
            [ProbeItem("e", "E", "empty", prompt="?")], [Capability("E", "e", "CAN", "margin")]
        )
        with pytest.raises(SuiteError, match="prompt: e: nothing to ask"):
            compile_suite(suite, tokenizer, model)
    finally:
        unregister("empty")
