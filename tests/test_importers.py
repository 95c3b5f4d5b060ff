"""driftwatch import: CapTrack-schema and lm-eval-style files become a loadable suite."""

from __future__ import annotations

import json

import pytest

from driftwatch.cli import main
from driftwatch.errors import SuiteError
from driftwatch.importers import import_suite
from driftwatch.suite import ProbeSuite

SCHEMA = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}
CAPTRACK_ROWS = [
    {
        "id": "k-1",
        "family": "knowledge",
        "prompt": "Question: What is the capital of Peru?\nAnswer:",
        "formatted_prompt": "",
        "ctx": "",
        "choices": ["Lima", "Quito", "Bogota"],
        "gold": 0,
        "meta": {"source": "test"},
        "schema": None,
        "tool_spec": None,
    },
    {
        "id": "r-1",
        "family": "C2",
        "prompt": "Which is larger, 3 or 5?",
        "formatted_prompt": "Q: Which is larger, 3 or 5?\nA:",
        "ctx": None,
        "choices": json.dumps(["3", "5"]),  # parquet exports carry nested values as JSON text
        "gold": "B",
        "meta": None,
        "schema": None,
        "tool_spec": None,
    },
    {
        "id": "c-1",
        "family": "comprehension",
        "prompt": "Question: Who owns the cat?\nAnswer:",
        "formatted_prompt": None,
        "ctx": "Ann owns a cat.",
        "choices": None,
        "gold": "Ann",
        "meta": None,
        "schema": None,
        "tool_spec": None,
    },
    {
        "id": "f-1",
        "family": "structured_output",
        "prompt": "Give a JSON object with an integer x.",
        "formatted_prompt": None,
        "ctx": None,
        "choices": None,
        "gold": None,
        "meta": None,
        "schema": json.dumps(SCHEMA),
        "tool_spec": None,
    },
    {
        "id": "t-1",
        "family": "tool_use",
        "prompt": "What's the weather in Oslo?",
        "formatted_prompt": None,
        "ctx": None,
        "choices": None,
        "gold": json.dumps({"name": "get_weather", "arguments": {"city": "Oslo"}}),
        "meta": None,
        "schema": None,
        "tool_spec": json.dumps([{"name": "get_weather", "parameters": {"city": "string"}}]),
    },
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def check_captrack_suite(suite: ProbeSuite) -> None:
    by_id = {i.id: i for i in suite.items}
    assert by_id["k-1"].capability == "C1" and by_id["k-1"].kind == "choice"
    assert by_id["k-1"].choices == (" Lima", " Quito", " Bogota") and by_id["k-1"].answer == 0
    assert by_id["r-1"].prompt.startswith("Q: Which") and by_id["r-1"].answer == 1
    assert by_id["c-1"].capability == "C3" and by_id["c-1"].kind == "target"
    assert by_id["c-1"].prompt.startswith("Ann owns a cat.") and by_id["c-1"].target == " Ann"
    assert by_id["f-1"].check == {"type": "json_schema", "schema": SCHEMA}
    tool = by_id["t-1"]
    assert tool.capability == "H3" and "get_weather" in tool.prompt
    assert tool.check == {"type": "tool_call", "name": "get_weather", "arguments": {"city": "Oslo"}}
    groups = {c.id: c.group for c in suite.capabilities}
    assert groups == {"C1": "CAN", "C2": "CAN", "C3": "CAN", "H2": "HOW", "H3": "HOW"}


def test_captrack_jsonl(tmp_path):
    src = write_jsonl(tmp_path / "captrack.jsonl", CAPTRACK_ROWS)
    suite, dropped = import_suite([src], tmp_path / "out", source="captrack")
    assert dropped == []
    check_captrack_suite(suite)
    check_captrack_suite(ProbeSuite.load(tmp_path / "out"))  # what was written loads alone


def test_captrack_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    # a parquet column has one type: nested values as JSON text, gold as text ("0", "B")
    rows = [
        {k: None if v is None else v if isinstance(v, str) else json.dumps(v) for k, v in r.items()}
        for r in CAPTRACK_ROWS
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "captrack.parquet")
    suite, _ = import_suite([tmp_path / "captrack.parquet"], tmp_path / "out", source="captrack")
    check_captrack_suite(suite)


def test_unscorable_rows_are_named_not_skipped(tmp_path):
    rows = [
        *CAPTRACK_ROWS,
        {"id": "open-1", "family": "verbosity", "prompt": "Tell me a story."},
        {"id": "bad-gold", "family": "C1", "prompt": "Q?", "choices": ["a", "b"], "gold": 7},
    ]
    src = write_jsonl(tmp_path / "captrack.jsonl", rows)
    with pytest.raises(SuiteError) as err:
        import_suite([src], tmp_path / "out", source="captrack")
    text = str(err.value)
    assert f"{src}:6: gold" in text and "judge" in text
    assert f"{src}:7: gold" in text and "7" in text
    suite, dropped = import_suite([src], tmp_path / "out", source="captrack", skip_invalid=True)
    assert len(suite) == len(CAPTRACK_ROWS) and [p.line for p in dropped] == [6, 7]


LM_EVAL_ROWS = [
    {"query": "Question: 2 + 2 =\nAnswer:", "choices": ["3", "4", "5"], "gold": 1},
    {"question": "Which animal barks?", "choices": ["cat", "dog"], "answer": "dog"},
    {
        "id": "arc-1",
        "question": "What do plants need?",
        "choices": {"text": ["light", "noise"], "label": ["A", "B"]},
        "answerKey": "A",
    },
    {
        "ctx": "She opened the umbrella because",
        "endings": [" it rained.", " it was dry."],
        "label": 0,
    },
]


def test_lm_eval_multiple_choice(tmp_path):
    src = write_jsonl(tmp_path / "mc.jsonl", LM_EVAL_ROWS)
    suite, _ = import_suite([src], tmp_path / "mc", source="lm-eval", capability="C2")
    items = suite.items
    assert [i.answer for i in items] == [1, 1, 0, 0]
    assert items[0].choices == (" 3", " 4", " 5") and items[0].prompt.endswith("Answer:")
    assert items[1].prompt == "Question: Which animal barks?\nAnswer:"
    assert items[2].id == "arc-1" and items[3].choices == (" it rained.", " it was dry.")
    assert suite.capabilities[0].id == "C2" and suite.capabilities[0].group == "CAN"


def test_lm_eval_bad_rows(tmp_path):
    src = tmp_path / "mc.jsonl"
    src.write_text('{"query": "x", "choices": ["a"], "gold": 0}\nnot json\n', encoding="utf-8")
    with pytest.raises(SuiteError) as err:
        import_suite([src], tmp_path / "mc", source="lm-eval")
    assert f"{src}:1: choices" in str(err.value) and f"{src}:2: line" in str(err.value)


def test_cli_import_and_suites(tmp_path, capsys):
    src = write_jsonl(tmp_path / "mc.jsonl", LM_EVAL_ROWS)
    assert main(["import", str(src), "--to", str(tmp_path / "mine"), "--source", "lm-eval"]) == 0
    assert "4 items" in capsys.readouterr().out
    assert main(["suites", str(tmp_path / "mine"), "quick"]) == 0
    out = capsys.readouterr().out
    assert "mine: 4 items" in out and "C1 parametric knowledge" in out
    assert "quick:" in out and "W1 willingness to answer" in out and "≈tokens" in out
    assert main(["import", str(tmp_path / "nope.jsonl"), "--to", "x", "--source", "lm-eval"]) == 2
