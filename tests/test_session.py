"""A probe session: compile, load or build the reference, attach its base replies, measure
(driftwatch/session.py), used alike by the monitor, the CLI, scan and the benchmarks."""

from __future__ import annotations

import pytest
import torch

from driftwatch import ProbeSession, ReferenceSpec
from driftwatch.suite import ProbeItem, ProbeSuite
from tests.conftest import LAYOUT_NOISE, build_model, largest_change


def test_a_session_builds_then_reuses_its_reference_and_is_ready_to_probe(model, tokenizer, cache):
    smoke = ProbeSuite.load("smoke")
    ask = ProbeItem("d-ask", "D", "distribution", prompt="Describe the sea.", max_new_tokens=4)
    suite = ProbeSuite.from_items([*smoke.items, ask], smoke.capabilities)  # a base reply
    first = ProbeSession.open(model, tokenizer, suite)
    assert not first.reused and first.reference.path.parent == cache / "references"
    assert len(first.reference.continuations) == 1
    assert not first.compiled.needs_continuations  # attached: nothing left to the caller
    second = ProbeSession.open(model, tokenizer, suite)
    assert second.reused and second.reference.path == first.reference.path
    report, result = second.measure(model, step=3)
    assert report.step == 3 and result.seconds > 0
    assert largest_change(report) <= LAYOUT_NOISE


def test_a_smaller_layout_measures_the_same(model, tokenizer, cache):
    session = ProbeSession.open(model, tokenizer, ProbeSuite.load("smoke"), memory_share=0.2)
    before = session.run(model)
    passes = session.compiled.stats["forward_passes"]
    session.relayout(model, 64)
    assert session.token_budget == 64 and session.memory_share == pytest.approx(0.2 * 64 / 4096)
    assert session.compiled.stats["forward_passes"] > passes  # really cut smaller
    after = session.run(model)
    for name, values in before.values.items():
        torch.testing.assert_close(after.values[name], values, atol=1e-4, rtol=0, equal_nan=True)
    assert after.generated == before.generated


def test_a_given_reference_serves_a_trained_model(model, tokenizer, cache):
    suite = ProbeSuite.load("smoke")
    built = ProbeSession.open(model, tokenizer, suite).reference.path
    trained = build_model(tokenizer)
    with torch.no_grad():
        for p in trained.parameters():
            p.mul_(1.05)
    session = ProbeSession.open(trained, tokenizer, suite, reference=ReferenceSpec(path=built))
    assert session.reused and session.reference.path == built
    report, _ = session.measure(trained, step=1)
    assert report.capabilities["D"].headline.now > 1e-6  # the trained model drifted
