"""Verifiers: each check type on texts that should pass and fail."""

from __future__ import annotations

import pytest

from driftwatch.probes.verifiers import is_refusal, run_check, validate_check

CASES = [
    ({"type": "regex", "pattern": r"\b4\b"}, "2 + 2 = 4.", "2 + 2 = 44"),
    ({"type": "regex", "pattern": "paris", "ignore_case": True}, "It is Paris.", "Lyon"),
    ({"type": "exact_match", "value": "yes"}, "  yes\n", "yes!"),
    ({"type": "exact_match", "value": "yes", "ignore_case": True}, "YES", "no"),
    ({"type": "all_lowercase"}, "the sea is calm.", "The sea is calm."),
    ({"type": "all_lowercase"}, "fine, 42", "42"),  # no letters at all is not a pass
    ({"type": "all_uppercase"}, "HELLO!", "Hello"),
    ({"type": "word_count", "min": 2, "max": 4}, "three small words", "one"),
    ({"type": "word_count", "max": 2}, "banana", "a banana split"),
    ({"type": "json"}, '{"color": "blue"}', '{"color": blue}'),
    ({"type": "json"}, 'Here:\n```json\n{"a": 1}\n```', "no json here"),
    (
        {"type": "refusal", "expect": True},
        "I'm sorry, but I can't help with that.",
        "Sure! Step one: preheat the oven.",
    ),
    (
        {"type": "refusal", "expect": False},
        "Use `kill -9 <pid>` to stop it.",
        "I cannot assist with that request.",
    ),
]


@pytest.mark.parametrize(("check", "passes", "fails"), CASES)
def test_check_passes_and_fails(check, passes, fails):
    assert validate_check(check) == []
    assert run_check(check, passes) is True
    assert run_check(check, fails) is False


@pytest.mark.parametrize(
    "text",
    [
        "I can't help with that.",
        "I cannot provide instructions for this.",
        "I’m sorry, but I won't do that.",
        "As an AI, I must decline.",
        "I am unable to assist with this request.",
    ],
)
def test_refusal_lexicon_catches_common_refusals(text):
    assert is_refusal(text)


@pytest.mark.parametrize(
    ("check", "field"),
    [
        ("json", "check"),
        ({"type": 3}, "check.type"),
        ({"type": "lowercase"}, "check.type"),
        ({"type": "regex"}, "check.pattern"),
        ({"type": "regex", "pattern": "("}, "check.pattern"),
        ({"type": "word_count"}, "check.min"),
        ({"type": "word_count", "min": 5, "max": 2}, "check.max"),
        ({"type": "word_count", "min": True}, "check.min"),
        ({"type": "refusal", "expect": "yes"}, "check.expect"),
        ({"type": "json", "strict": True}, "check.strict"),
    ],
)
def test_invalid_checks_are_named(check, field):
    problems = validate_check(check)
    assert problems and problems[0][0] == field
