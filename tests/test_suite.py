"""Suite loading, fingerprints and the bad-input table (every problem names file, line, field)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from driftwatch.errors import SuiteError
from driftwatch.suite import ProbeItem, ProbeSuite, builtin_suites, validate_path

GOOD_CHOICE = {
    "id": "a",
    "capability": "C1",
    "kind": "choice",
    "prompt": "Q?",
    "choices": [" x", " y"],
    "answer": 0,
}


def write_suite(root: Path, lines: list[str | dict], manifest: dict | None = None) -> Path:
    """A one-capability suite whose probe file holds ``lines`` (dicts are JSON-encoded)."""
    root.mkdir(parents=True, exist_ok=True)
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines)
    (root / "c1.jsonl").write_text(text + ("\n" if text else ""), encoding="utf-8")
    manifest = manifest or {
        "format": 1,
        "name": "t",
        "capabilities": [{"id": "C1", "name": "knowledge", "group": "CAN", "files": ["c1.jsonl"]}],
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return root


def test_builtin_smoke_suite_covers_every_kind_and_four_capabilities():
    suite = ProbeSuite.load("smoke")
    assert "smoke" in builtin_suites()
    assert {i.kind for i in suite.items} == {"choice", "target", "generate", "distribution"}
    assert len(suite.capabilities) >= 4
    assert {c.group for c in suite.capabilities} >= {"CAN", "WILL", "HOW"}
    assert any(i.group for i in suite.items), "paraphrase groups are exercised"
    assert suite.capability("D").metric == "kl"
    assert 24 <= len(suite) <= 80


def test_fingerprint_tracks_content_not_location(tmp_path):
    a = ProbeSuite.load(write_suite(tmp_path / "a", [GOOD_CHOICE]))
    b = ProbeSuite.load(write_suite(tmp_path / "b", ["", GOOD_CHOICE]))  # other path and line
    changed = dict(GOOD_CHOICE, answer=1)
    c = ProbeSuite.load(write_suite(tmp_path / "c", [changed]))
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint != c.fingerprint


def test_defaults_apply_and_items_override(tmp_path):
    gen = {
        "id": "g",
        "capability": "C1",
        "kind": "generate",
        "prompt": "Say hi",
        "check": {"type": "json"},
    }
    manifest = {
        "format": 1,
        "defaults": {"chat": True, "max_new_tokens": 7},
        "capabilities": [{"id": "C1", "group": "HOW", "files": ["c1.jsonl"]}],
    }
    suite = ProbeSuite.load(write_suite(tmp_path, [gen, dict(gen, id="h", chat=False)], manifest))
    assert [(i.chat, i.max_new_tokens) for i in suite.items] == [(True, 7), (False, 7)]
    assert suite.items[0].source.endswith("c1.jsonl:1")


# (case, probe-file lines, manifest override or None, expected line, expected field);
# for manifest problems the expected line is given as the text that must stand on it.
BAD = [
    ("bad json", ['{"id": "a", "kind": '], None, 1, "line"),
    ("missing field", [{k: v for k, v in GOOD_CHOICE.items() if k != "prompt"}], None, 1, "prompt"),
    ("wrong type", [dict(GOOD_CHOICE, prompt=7)], None, 1, "prompt"),
    ("answer out of range", [dict(GOOD_CHOICE, answer=5)], None, 1, "answer"),
    ("answer is a bool", [dict(GOOD_CHOICE, answer=True)], None, 1, "answer"),
    ("empty choices", [dict(GOOD_CHOICE, choices=[])], None, 1, "choices"),
    ("duplicate id", [GOOD_CHOICE, dict(GOOD_CHOICE)], None, 2, "id"),
    (
        "oversized item",
        [GOOD_CHOICE, dict(GOOD_CHOICE, id="big", prompt="x" * 20_001)],
        None,
        2,
        "id",
    ),
    ("unknown kind", [dict(GOOD_CHOICE, kind="choise")], None, 1, "kind"),
    (
        "unknown check",
        [
            {
                "id": "g",
                "capability": "C1",
                "kind": "generate",
                "prompt": "p",
                "check": {"type": "all_lower"},
            }
        ],
        None,
        1,
        "check.type",
    ),
    (
        "bad check parameter",
        [
            {
                "id": "g",
                "capability": "C1",
                "kind": "generate",
                "prompt": "p",
                "check": {"type": "word_count", "min": "3"},
            }
        ],
        None,
        1,
        "check.min",
    ),
    (
        "bad regex",
        [
            {
                "id": "g",
                "capability": "C1",
                "kind": "generate",
                "prompt": "p",
                "check": {"type": "regex", "pattern": "(unclosed"},
            }
        ],
        None,
        1,
        "check.pattern",
    ),
    (
        "unknown capability",
        [GOOD_CHOICE, dict(GOOD_CHOICE, id="b", capability="C9")],
        None,
        2,
        "capability",
    ),
    ("unknown field", [dict(GOOD_CHOICE, promt="typo")], None, 1, "promt"),
    ("field of another kind", [dict(GOOD_CHOICE, target=" x")], None, 1, "target"),
    ("empty prompt", [dict(GOOD_CHOICE, prompt="  ")], None, 1, "prompt"),
    ("not an object", ["[1, 2]"], None, 1, "line"),
    ("empty file", [], None, 0, "file"),
    (
        "manifest points at a missing file",
        [GOOD_CHOICE],
        {
            "format": 1,
            "capabilities": [{"id": "C1", "group": "CAN", "files": ["c1.jsonl", "gone.jsonl"]}],
        },
        "gone.jsonl",
        "capabilities[0].files",
    ),
    (
        "manifest path escapes its folder",
        [GOOD_CHOICE],
        {
            "format": 1,
            "capabilities": [{"id": "C1", "group": "CAN", "files": ["../../etc/passwd"]}],
        },
        "../../etc/passwd",
        "capabilities[0].files",
    ),
    (
        "manifest group unknown",
        [GOOD_CHOICE],
        {"format": 1, "capabilities": [{"id": "C1", "group": "MAYBE", "files": ["c1.jsonl"]}]},
        '"MAYBE"',
        "capabilities[0].group",
    ),
    ("manifest is not JSON", [GOOD_CHOICE], "{not json", 1, "manifest"),
    (
        "distribution with text and prompt",
        [{"id": "d", "capability": "C1", "kind": "distribution", "text": "t", "prompt": "p"}],
        None,
        1,
        "text",
    ),
    (
        "fixed text with a generation budget",
        [{"id": "d", "capability": "C1", "kind": "distribution", "text": "t", "max_new_tokens": 4}],
        None,
        1,
        "max_new_tokens",
    ),
    (
        "history without chat",
        [dict(GOOD_CHOICE, history=[{"role": "user", "content": "hi"}])],
        None,
        1,
        "history",
    ),
    (
        "malformed history turn",
        [dict(GOOD_CHOICE, chat=True, history=[{"role": "robot", "content": "hi"}])],
        None,
        1,
        "history[0]",
    ),
    (
        "nested check problem",
        [
            {
                "id": "g",
                "capability": "C1",
                "kind": "generate",
                "prompt": "p",
                "check": {"type": "all_of", "checks": [{"type": "json_schema", "schema": 3}]},
            }
        ],
        None,
        1,
        "check.checks[0].schema",
    ),
]


@pytest.mark.parametrize(
    ("lines", "manifest", "line", "field"),
    [case[1:] for case in BAD],
    ids=[case[0] for case in BAD],
)
def test_bad_input_names_file_line_and_field(tmp_path, lines, manifest, line, field):
    root = write_suite(tmp_path / "suite", lines, manifest if isinstance(manifest, dict) else None)
    if isinstance(manifest, str):
        (root / "manifest.json").write_text(manifest, encoding="utf-8")
    if isinstance(line, str):  # the manifest line that holds this text
        text = (root / "manifest.json").read_text().splitlines()
        line = next(n for n, row in enumerate(text, start=1) if line in row)
    with pytest.raises(SuiteError) as info:
        ProbeSuite.load(root)
    problems = info.value.problems
    assert any(p.line == line and p.field == field for p in problems), problems
    hit = next(p for p in problems if p.field == field)
    expected_file = (
        "manifest.json" if field.startswith(("capabilities", "manifest")) else "c1.jsonl"
    )
    assert hit.path.endswith(expected_file)
    rendered = str(info.value)
    assert (
        f"{hit.path}:{line}: {field}:" in rendered if line else f"{hit.path}: {field}:" in rendered
    )
    assert validate_path(root) == problems  # `driftwatch validate` reports the same


def test_an_oversized_item_is_refused_with_its_id(tmp_path):
    history = [{"role": "user", "content": "y" * 15_000}, {"role": "assistant", "content": "ok"}]
    big = dict(GOOD_CHOICE, id="long-chat", chat=True, history=history, prompt="z" * 5_000)
    problems = validate_path(write_suite(tmp_path, [GOOD_CHOICE, big]))
    assert [(p.line, p.field) for p in problems] == [(2, "id")]
    assert "'long-chat'" in problems[0].message and "20000 limit" in problems[0].message


def test_every_problem_is_reported_not_just_the_first(tmp_path):
    lines = [dict(GOOD_CHOICE, answer=9), '{"broken', dict(GOOD_CHOICE, id="b", kind="nope")]
    problems = validate_path(write_suite(tmp_path, lines))
    assert [(p.line, p.field) for p in problems] == [(1, "answer"), (2, "line"), (3, "kind")]


def test_unknown_kind_suggests_the_close_name(tmp_path):
    problems = validate_path(write_suite(tmp_path, [dict(GOOD_CHOICE, kind="choise")]))
    assert "did you mean 'choice'" in problems[0].message


def test_validate_single_jsonl_file(tmp_path):
    good = write_suite(tmp_path / "ok", [GOOD_CHOICE]) / "c1.jsonl"
    bad = write_suite(tmp_path / "bad", [GOOD_CHOICE, GOOD_CHOICE]) / "c1.jsonl"
    assert validate_path(good) == []
    assert [p.field for p in validate_path(bad)] == ["id"]


def test_unknown_suite_name_lists_builtins():
    with pytest.raises(SuiteError, match=r"Built-in suites: .*smoke"):
        ProbeSuite.load("no-such-suite")


def test_capability_without_items_and_mixed_distribution_are_refused():
    dist = ProbeItem(id="d", capability="D", kind="distribution", text="some text here")
    choice = ProbeItem(
        id="c", capability="D", kind="choice", prompt="Q", choices=("a", "b"), answer=0
    )
    with pytest.raises(SuiteError, match="distribution items cannot share"):
        ProbeSuite.from_items([dist, choice])


def test_copied_builtin_suite_validates(tmp_path):
    from driftwatch.suite import BUILTIN_ROOT

    shutil.copytree(BUILTIN_ROOT / "smoke", tmp_path / "mine")
    assert validate_path(tmp_path / "mine") == []
    assert ProbeSuite.load(tmp_path / "mine").fingerprint == ProbeSuite.load("smoke").fingerprint


@pytest.mark.parametrize(
    ("metric", "message"),
    [
        ("acuracy", "unknown metric 'acuracy'"),
        ("logprob", "not produced by the capability's items"),
        ("consistency", "needs paraphrase groups"),
    ],
)
def test_manifest_metric_must_be_measurable(tmp_path, metric, message):
    manifest = {
        "format": 1,
        "capabilities": [{"id": "C1", "group": "CAN", "metric": metric, "files": ["c1.jsonl"]}],
    }
    problems = validate_path(write_suite(tmp_path, [GOOD_CHOICE], manifest))
    assert [p.field for p in problems] == ["capabilities.C1.metric"]
    assert message in problems[0].message


def test_generate_items_without_a_check_need_a_style_metric(tmp_path):
    item = {"id": "g", "capability": "C1", "kind": "generate", "prompt": "Tell me a story."}
    with pytest.raises(SuiteError, match="needs a check on every generate item"):
        ProbeSuite.load(write_suite(tmp_path / "a", [item]))
    manifest = {
        "format": 1,
        "capabilities": [{"id": "C1", "group": "WILL", "metric": "words", "files": ["c1.jsonl"]}],
    }
    suite = ProbeSuite.load(write_suite(tmp_path / "b", [item], manifest))
    assert suite.capability("C1").metric == "words"


def test_history_is_rendered_with_the_chat_template(tokenizer):
    from driftwatch.runner.encoding import Encoder

    item = ProbeItem(
        "h",
        "H4",
        "generate",
        prompt="What is 2 + 2?",
        chat=True,
        history=(("user", "Answer in capitals."), ("assistant", "OK.")),
        check={"type": "all_uppercase"},
    )
    ids, _ = Encoder(tokenizer).prompt(item)
    text = tokenizer.decode(ids)
    assert text.index("Answer in capitals.") < text.index("OK.") < text.index("What is 2 + 2?")
    assert text.endswith("<|im_start|>assistant\n")


def test_history_falls_back_to_a_plain_transcript(caplog):
    from driftwatch.runner.encoding import Encoder
    from tests.conftest import build_tokenizer

    plain = build_tokenizer(chat_template=None)
    item = ProbeItem(
        "h",
        "H4",
        "generate",
        prompt="Next?",
        chat=True,
        history=(("user", "Rule."),),
        check={"type": "no_commas"},
    )
    with caplog.at_level("WARNING"):
        ids, _ = Encoder(plain).prompt(item)
    assert plain.decode(ids, skip_special_tokens=True) == "User: Rule.\nUser: Next?\nAssistant:"
    assert "no chat template" in caplog.text


def _tagged(n: int) -> list[dict]:
    """n choice items, alternately tagged "harm" and "ok"."""
    return [{**GOOD_CHOICE, "id": f"i{k}", "tags": ["harm" if k % 2 else "ok"]} for k in range(n)]


def _with_metrics(metrics, **extra) -> dict:
    cap = {"id": "C1", "group": "CAN", "files": ["c1.jsonl"], "metrics": metrics, **extra}
    return {"format": 1, "capabilities": [cap]}


@pytest.mark.parametrize(
    ("metrics", "extra", "field", "message"),
    [
        ("score", {}, "capabilities[0].metrics", "expected a list of metric objects"),
        ([{"name": "a"}], {}, "capabilities[0].metrics[0].metric", "expected a metric name"),
        (
            [{"name": "a", "metric": "score", "stat": "max"}],
            {},
            "capabilities[0].metrics[0].stat",
            "expected one of ['mean', 'std']",
        ),
        (
            [{"name": "a", "metric": "score", "colour": 1}],
            {},
            "capabilities[0].metrics[0].colour",
            "unknown field",
        ),
        (
            [{"name": "a", "metric": "score"}],
            {"metric": "score"},
            "capabilities[0].metric",
            "headline 'mean'",
        ),
        (
            [{"name": "a", "metric": "score", "tags": ["nope"]}],
            {},
            "capabilities.C1.metrics[0].tags",
            "select 0 of the capability's items",
        ),
        (
            [{"name": "a", "metric": "kl"}],
            {},
            "capabilities.C1.metrics[0].metric",
            "not a per-item metric with a Δ%",
        ),
        (
            [{"name": "a", "metric": "logprob"}],
            {},
            "capabilities.C1.metrics[0].metric",
            "not produced by ['choice'] items",
        ),
        (
            [{"name": "a", "metric": "score"}, {"name": "a", "metric": "gold_logprob"}],
            {},
            "capabilities.C1.metrics[1].name",
            "used twice",
        ),
        (
            [{"name": "score", "metric": "score"}],
            {},
            "capabilities.C1.metrics[0].name",
            "the name of a built-in metric",
        ),
        (
            [{"name": "a", "metric": "score", "tags": ["ok"], "stat": "std"}],
            {},
            "capabilities.C1.metrics[0].tags",
            "needs at least 3",
        ),
    ],
)
def test_bad_named_metrics_name_the_field(tmp_path, metrics, extra, field, message):
    problems = validate_path(write_suite(tmp_path, _tagged(4), _with_metrics(metrics, **extra)))
    assert [p.field for p in problems] == [field]
    assert message in problems[0].message
    assert problems[0].path.endswith("manifest.json")


def test_named_metrics_of_opposite_direction_are_refused(tmp_path):
    items = [
        {
            "id": f"g{k}",
            "capability": "C1",
            "kind": "generate",
            "prompt": "Hi.",
            "check": {"type": "json"},
        }
        for k in range(3)
    ]
    metrics = [{"name": "ok", "metric": "score"}, {"name": "long", "metric": "words"}]
    problems = validate_path(write_suite(tmp_path, items, _with_metrics(metrics)))
    assert [p.field for p in problems] == ["capabilities.C1.metrics"]
    assert "better higher" in problems[0].message


def test_named_metrics_load_round_trip_and_enter_the_fingerprint(tmp_path):
    metrics = [
        {"name": "harm", "metric": "score", "tags": ["harm"]},
        {"name": "ok", "metric": "score", "tags": ["ok"]},
    ]
    suite = ProbeSuite.load(write_suite(tmp_path / "a", _tagged(4), _with_metrics(metrics)))
    cap = suite.capability("C1")
    assert cap.metric == "mean" and [d.name for d in cap.metrics] == ["harm", "ok"]
    assert [i.id for i in suite.items if cap.metrics[0].selects(i)] == ["i1", "i3"]
    again = ProbeSuite.from_spec(ProbeSuite.from_items(suite.items, suite.capabilities).spec())
    assert again.capabilities == suite.capabilities and again.items == suite.items
    # a different split, or different tags, measures something else
    other = [{**metrics[0], "tags": ["ok"]}, {**metrics[1], "tags": ["harm"]}]
    swapped = ProbeSuite.load(write_suite(tmp_path / "b", _tagged(4), _with_metrics(other)))
    assert swapped.fingerprint != suite.fingerprint
    retagged = [{**i, "tags": ["ok"]} if i["id"] == "i1" else i for i in _tagged(4)]
    moved = ProbeSuite.load(write_suite(tmp_path / "c", retagged, _with_metrics(metrics)))
    assert moved.fingerprint != suite.fingerprint
