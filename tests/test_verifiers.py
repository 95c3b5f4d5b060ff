"""Verifiers: each check type on texts that should pass and fail."""

from __future__ import annotations

import pytest

from driftwatch.probes.style import formatting, uses_formatting, word_count
from driftwatch.probes.verifiers import (
    CHECK_TYPES,
    describe_checks,
    is_refusal,
    run_check,
    validate_check,
)

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}

CASES = [
    ({"type": "regex", "pattern": r"\b4\b"}, "2 + 2 = 4.", "2 + 2 = 44"),
    ({"type": "regex", "pattern": "paris", "ignore_case": True}, "It is Paris.", "Lyon"),
    ({"type": "exact_match", "value": "yes"}, "  yes\n", "yes!"),
    ({"type": "exact_match", "value": "yes", "ignore_case": True}, "YES", "no"),
    ({"type": "all_lowercase"}, "the sea is calm.", "The sea is calm."),
    ({"type": "all_lowercase"}, "fine, 42", "42"),  # no letters at all is not a pass
    ({"type": "all_lowercase"}, "fine, 42", "这是中文"),  # nor a script without case
    ({"type": "all_uppercase"}, "HELLO!", "Hello"),
    ({"type": "word_count", "min": 2, "max": 4}, "three small words", "one"),
    ({"type": "word_count", "max": 2}, "banana", "a banana split"),
    ({"type": "word_count", "max": 2}, "- don't stop — 🙂", "a well-known"),
    ({"type": "json"}, '{"color": "blue"}', '{"color": blue}'),
    ({"type": "json"}, '```json\n{"a": 1}\n```', 'Here:\n```json\n{"a": 1}\n```'),
    ({"type": "json"}, "```\n[1, 2]\n```", "```python\n[1, 2]\n```"),
    # IFEval-style constraints
    ({"type": "sentence_count", "min": 2, "max": 2}, "One. Two!", "Only one sentence here."),
    ({"type": "sentence_count", "max": 1}, "Dr. Smith swam at 3 p.m. today.", "He swam. Then ran."),
    ({"type": "sentence_count", "min": 1}, "The ocean is vast", "   "),
    ({"type": "paragraph_count", "min": 2}, "First part.\n***\nSecond part.", "One\n\nTwo"),
    ({"type": "paragraph_count", "min": 2, "max": 2}, "A\n***\nB", "A\n***\n***\nB"),
    (
        {"type": "paragraph_count", "separator": "blank_line", "min": 2, "max": 2},
        "First part.\n\n***\n\nSecond part.",
        "One block\nof text.",
    ),
    (
        {"type": "paragraph_first_word", "paragraphs": 2, "nth": 2, "word": "then"},
        'First we ate.\n\n"Then, we slept.',
        "First we ate.\n\nAfter that we slept.",
    ),
    ({"type": "letter_count", "letter": "e", "min": 3}, "Eee, see.", "a cat"),
    ({"type": "capital_word_count", "min": 2}, "The USA and the U.K. agree.", "The Usa agrees."),
    ({"type": "language", "language": "fr"}, "Bonjour, je suis très content.", "Hello, I am glad."),
    ({"type": "two_responses"}, "Yes.\n******\nNo.", "Yes.\n******\nYes."),
    ({"type": "constrained_response"}, "My answer is yes.", "Yes."),
    (
        {"type": "constrained_response", "options": ["Option A", "Option B"]},
        "I pick Option B.",
        "I pick option b.",
    ),
    ({"type": "bullet_count", "min": 3, "max": 3}, "- a\n- b\n* c", "- a\n- b"),
    ({"type": "bullet_count", "min": 2}, "-a\n* b", "• a\n• b"),
    ({"type": "char_count", "max": 10}, "short", "this is far too long"),
    ({"type": "keywords", "words": ["sun", "sea"]}, "The Sun and the sea.", "The sunny sea."),
    ({"type": "forbidden_words", "words": ["the"]}, "A cat sat there.", "The cat sat."),
    ({"type": "keyword_count", "word": "blue", "min": 2}, "blue sky, Blue sea", "blue sky"),
    ({"type": "starts_with", "value": "Yes"}, "  Yes, it is.", "Well, yes."),
    ({"type": "starts_with", "value": "yes", "ignore_case": True}, "YES.", "No."),
    (
        {"type": "ends_with", "value": "Any questions?"},
        '"Done. Any questions?"\n',
        "Any questions? No.",
    ),
    ({"type": "no_commas"}, "No commas here.", "One, two."),
    ({"type": "quoted"}, '"All of it."', 'He said "hi".'),
    ({"type": "title"}, "<<Ode to Tea>>\nWarm cup.", "Ode to Tea\nWarm cup."),
    ({"type": "title"}, "<< Tea >>", "<< >> Warm cup."),
    ({"type": "placeholder_count", "min": 2}, "Dear [name], at [address].", "Dear [name]."),
    ({"type": "highlight_count", "min": 1}, "This is *very* important.", "Nothing stands out."),
    ({"type": "highlight_count", "min": 2}, "**a** text *b*", "**Note:** 2 * 3"),
    ({"type": "postscript", "marker": "P.S."}, "Bye.\nP.S. See you.", "Bye. See you."),
    ({"type": "postscript", "marker": "P.S."}, "Bye.\n**p. s.** See you.", "Bye.\nPS. See you."),
    (
        {"type": "section_count", "marker": "Section", "min": 2},
        "## Section 1\nA\n## Section 2\nB",
        "Section 1\nA\nSECTION 2\nB",
    ),
    (
        {"type": "all_of", "checks": [{"type": "all_lowercase"}, {"type": "no_commas"}]},
        "all lower and no commas",
        "all lower, but a comma",
    ),
    # structure
    ({"type": "json"}, '{"a": 1}', 'The answer is {"a": 1}.'),
    (
        {"type": "json_schema", "schema": SCHEMA},
        '```json\n{"name": "Ann", "age": 31}\n```',
        '{"name": "Ann", "age": "thirty-one"}',
    ),
    (
        {"type": "json_schema", "schema": SCHEMA},
        'Here you go: {"name": "Ann", "age": 31, "city": "Oslo"}',
        '{"name": "Ann"}',
    ),
    (
        {"type": "tool_call", "name": "get_weather", "arguments": {"city": "Paris"}},
        '{"name": "get_weather", "arguments": {"city": "paris"}}',
        '{"name": "get_weather", "arguments": {"city": "Lyon"}}',
    ),
    (
        {"type": "tool_call", "name": "set_timer", "arguments": {"minutes": 5}},
        '<tool_call>\n[{"name": "set_timer", "arguments": {"minutes": "5"}}]\n</tool_call>',
        '{"name": "start_timer", "arguments": {"minutes": 5}}',
    ),
    (
        {"type": "tool_call", "name": "f", "arguments": {"x": 1}},
        '{"function": {"name": "f", "arguments": "{\\"x\\": 1}"}}',
        "I would call f with x=1.",
    ),
    (
        {"type": "citation", "sources": ["S2"]},
        "Bees dance to share where flowers are [S2].",
        "Bees dance to share where flowers are [S1].",
    ),
    (
        {"type": "citation", "sources": ["S1", "S3"], "min": 2},
        "Both agree [S1][S3].",
        "Only one [S1], and nothing else.",
    ),
    ({"type": "citation", "sources": ["S2"]}, "As [ S2 ] says.", "As source S2 says."),
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
        ({"type": "keywords", "words": []}, "check.words"),
        ({"type": "keywords", "words": ["a", 1]}, "check.words"),
        ({"type": "bullet_count", "min": -1}, "check.min"),
        ({"type": "json_schema", "schema": {"type": "no-such-type"}}, "check.schema"),
        ({"type": "tool_call", "name": "f"}, "check.arguments"),
        ({"type": "citation", "sources": "S1"}, "check.sources"),
        ({"type": "all_of", "checks": [{"type": "uppercase"}]}, "check.checks[0].type"),
        ({"type": "all_of", "checks": [{"type": "word_count"}]}, "check.checks[0].min"),
        ({"type": "letter_count", "letter": "ab", "min": 1}, "check.letter"),
        ({"type": "language", "language": "english"}, "check.language"),
        ({"type": "paragraph_count", "separator": "---", "min": 1}, "check.separator"),
        ({"type": "paragraph_first_word", "paragraphs": 2, "nth": 3, "word": "a"}, "check.nth"),
        ({"type": "constrained_response", "options": []}, "check.options"),
    ],
)
def test_invalid_checks_are_named(check, field):
    problems = validate_check(check)
    assert problems and problems[0][0] == field


def test_every_check_type_is_exercised_by_a_case():
    """Adding a check type without a passing and a failing example fails here."""

    def types(check):
        yield check["type"]
        for nested in check.get("checks", []):
            yield from types(nested)

    covered = {t for check, _, _ in CASES for t in types(check)}
    assert covered == set(CHECK_TYPES)
    ifeval = {
        "all_lowercase",
        "all_uppercase",
        "word_count",
        "sentence_count",
        "paragraph_count",
        "bullet_count",
        "char_count",
        "keywords",
        "forbidden_words",
        "keyword_count",
        "starts_with",
        "ends_with",
        "no_commas",
        "quoted",
        "title",
        "placeholder_count",
        "highlight_count",
        "postscript",
        "section_count",
        "letter_count",
        "capital_word_count",
        "language",
        "paragraph_first_word",
        "two_responses",
        "constrained_response",
        "json",
    }
    assert ifeval <= set(CHECK_TYPES)


@pytest.mark.parametrize("check", [c for c, _, _ in CASES], ids=lambda c: c["type"])
def test_an_empty_reply_fails_every_check(check):
    """IFEval's strict scoring fails every instruction on an empty reply; so does driftwatch,
    so a model that collapses to empty replies loses every item instead of passing the
    max-type counts, the forbidden words and the no-comma rule."""
    for text in ("", "  \n\t "):
        assert run_check(check, text) is False


def test_describe_checks_documents_every_type():
    rows = describe_checks()
    assert [r[0] for r in rows] == sorted(CHECK_TYPES)
    assert all(r[2] for r in rows), "every type says when it passes"


@pytest.mark.parametrize(
    "text",
    [
        "I'm not able to help with making weapons.",
        "I will not provide that information.",
        "I'm afraid that I can't do that.",
        "Please seek professional help if you feel this way.",
        "I strongly advise against doing this.",
        "As a responsible AI, I must point out this is dangerous.",
    ],
)
def test_refusal_lexicon_covers_declines_and_redirections(text):
    assert is_refusal(text)


@pytest.mark.parametrize(
    "text",
    [
        "To kill a stuck process, run kill -9 with its PID.",
        "Sorry for the wait! Here is the recipe: mix flour and water.",
        "I can help with that. First, preheat the oven.",
    ],
)
def test_refusal_lexicon_leaves_answers_alone(text):
    assert not is_refusal(text)


def test_style_statistics():
    assert word_count("one two  three\n") == 3
    assert formatting("| a | b |\n|---|---|\n| 1 | 2 |")["table"]
    assert formatting("# Title\ntext")["heading"]
    assert formatting("Use **bold** here")["bold"]
    assert formatting("```python\nprint(1)\n```")["code"]
    assert uses_formatting("1. first\n2. second")
    assert not uses_formatting("Plain prose, with a number 1. and a dash - here.")


def test_the_docs_table_is_describe_checks():
    """docs/suites.md lists every check as describe_checks() renders it."""
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "suites.md").read_text(encoding="utf-8")
    for name, params, passes_when in describe_checks():
        assert f"| `{name}` | {params} | {passes_when} |" in doc, name
