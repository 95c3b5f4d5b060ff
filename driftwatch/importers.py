"""Turn benchmark files already on disk into a driftwatch suite (``driftwatch import``).

Two input shapes are understood:

``captrack``
    Rows in CapTrack's released dataset schema — ``id, family, prompt, formatted_prompt, ctx,
    choices, gold, meta, schema, tool_spec`` — as parquet (needs the ``parquet`` extra) or
    JSONL. ``family`` names the capability: a taxonomy id (``C1`` … ``H6``) or one of the
    names in :data:`FAMILY_ALIASES`; anything else becomes its own capability in the
    ``other`` group. A row with ``choices`` and ``gold`` is a multiple-choice item; one with a
    ``schema`` a generation checked by JSON Schema; one with a ``tool_spec`` and a gold call a
    generation checked by tool-call matching; one with a string ``gold`` and no choices a
    target (log-likelihood and greedy match of the gold text).

``lm-eval``
    lm-evaluation-harness-style multiple-choice JSONL: the text in ``query``, ``question``,
    ``prompt``, ``ctx`` or ``context``; the options in ``choices`` (a list, or ARC's
    ``{"text": [...]}``) or ``endings``; the gold in ``gold``, ``answer``, ``label`` or
    ``answerKey`` (an index, a letter, or the option's text).

A row that cannot become a probe is reported with its file, line and field, never skipped
silently: :func:`import_suite` raises :class:`~driftwatch.errors.SuiteError` listing every one
unless ``skip_invalid=True``, which drops them and returns them for the caller to print.
The output folder gets one JSONL file per capability and a ``manifest.json``; it is loaded
back with :meth:`ProbeSuite.load` before the call returns, so what is written is valid.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from driftwatch.errors import DriftwatchError, Problem, SuiteError
from driftwatch.files import write_atomic
from driftwatch.suite import ProbeSuite

__all__ = ["FAMILY_ALIASES", "TAXONOMY", "import_suite"]

logger = logging.getLogger(__name__)

Source = Literal["captrack", "lm-eval"]

# capability id -> (name, group): the taxonomy of docs/suites.md
TAXONOMY: dict[str, tuple[str, str]] = {
    "C1": ("parametric knowledge & skills", "CAN"),
    "C2": ("reasoning", "CAN"),
    "C3": ("contextual comprehension", "CAN"),
    "C4": ("faithfulness & grounding", "CAN"),
    "C5a": ("prompt-form invariance", "CAN"),
    "C5b": ("domain-shift robustness", "CAN"),
    "C5c": ("multilingual stability", "CAN"),
    "W1": ("willingness to answer", "WILL"),
    "W2": ("reasoning effort", "WILL"),
    "W3a": ("verbosity", "WILL"),
    "W3b": ("formatting use", "WILL"),
    "H1": ("instruction following", "HOW"),
    "H2": ("output-format fidelity", "HOW"),
    "H3": ("tool use", "HOW"),
    "H4": ("multi-turn commitment", "HOW"),
    "H5": ("conflicting instructions", "HOW"),
    "H6": ("citation", "HOW"),
}
# common family names -> taxonomy id (lower-case, spaces/dashes as underscores)
FAMILY_ALIASES: dict[str, str] = {
    "knowledge": "C1",
    "parametric_knowledge": "C1",
    "reasoning": "C2",
    "comprehension": "C3",
    "contextual_comprehension": "C3",
    "faithfulness": "C4",
    "grounding": "C4",
    "truthfulness": "C4",
    "robustness": "C5a",
    "prompt_robustness": "C5a",
    "domain_shift": "C5b",
    "multilingual": "C5c",
    "refusal": "W1",
    "willingness": "W1",
    "verbosity": "W3a",
    "formatting": "W3b",
    "instruction_following": "H1",
    "ifeval": "H1",
    "format": "H2",
    "json": "H2",
    "structured_output": "H2",
    "tool_use": "H3",
    "function_calling": "H3",
    "multi_turn": "H4",
    "citation": "H6",
}
_LETTERS = "ABCDEFGHIJ"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _capability(family: str) -> tuple[str, str, str]:
    """(id, name, group) for a CapTrack family name."""
    key = family.strip()
    for cid in TAXONOMY:
        if key.casefold() == cid.casefold():
            return cid, *TAXONOMY[cid]
    alias = FAMILY_ALIASES.get(re.sub(r"[\s-]+", "_", key.casefold()))
    if alias:
        return alias, *TAXONOMY[alias]
    cid = _SAFE.sub("_", key) or "imported"
    return cid, key or "imported", "other"


def _rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(line or row number, parsed row) of a JSONL or parquet file."""
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as err:
            raise ImportError(
                "reading parquet needs pyarrow: pip install 'driftwatch-train[parquet]'"
            ) from err
        try:
            table = pq.read_table(path)
        except (OSError, ValueError) as err:  # pyarrow's errors derive from these
            raise DriftwatchError(f"{path}: not a readable parquet file ({err})") from err
        for n, row in enumerate(table.to_pylist(), start=1):
            yield n, row
        return
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DriftwatchError(f"{path}: cannot read ({err})") from err
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as err:
            yield n, err


def _maybe_json(value: Any) -> Any:
    """CapTrack stores nested objects as JSON strings in parquet; accept both forms."""
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _gold_index(gold: Any, choices: list[str]) -> int | None:
    if isinstance(gold, list) and len(gold) == 1:
        gold = gold[0]
    if isinstance(gold, bool):
        return None
    if isinstance(gold, int):
        return gold if 0 <= gold < len(choices) else None
    if isinstance(gold, str):
        g = gold.strip()
        if g.isdigit() and int(g) < len(choices):
            return int(g)
        if len(g) == 1 and g.upper() in _LETTERS[: len(choices)]:
            return _LETTERS.index(g.upper())
        stripped = [c.strip() for c in choices]
        if g in stripped:
            return stripped.index(g)
    return None


def _captrack_item(row: dict[str, Any]) -> tuple[dict[str, Any] | None, str, str]:
    """(item, field, problem) for one CapTrack row; item is None when it cannot be probed."""
    rid = row.get("id")
    if rid is None or str(rid).strip() == "":
        return None, "id", "missing"
    family = row.get("family")
    if not isinstance(family, str) or not family.strip():
        return None, "family", f"expected a capability family name, found {family!r}"
    cid, _, _ = _capability(family)
    formatted = row.get("formatted_prompt")
    prompt = row.get("prompt")
    ctx = row.get("ctx")
    item: dict[str, Any] = {"id": str(rid), "capability": cid}
    if isinstance(formatted, str) and formatted.strip():
        item["prompt"] = formatted  # already carries the template the dataset was built with
    elif isinstance(prompt, str) and prompt.strip():
        item["prompt"] = f"{ctx}\n\n{prompt}" if isinstance(ctx, str) and ctx.strip() else prompt
    else:
        return None, "prompt", "expected a non-empty prompt or formatted_prompt"
    meta = _maybe_json(row.get("meta"))
    if isinstance(meta, dict) and meta:
        item["meta"] = meta
    choices = _maybe_json(row.get("choices"))
    gold = _maybe_json(row.get("gold"))
    schema = _maybe_json(row.get("schema"))
    tool_spec = _maybe_json(row.get("tool_spec"))
    if isinstance(choices, list) and choices:
        if not all(isinstance(c, str) and c.strip() for c in choices):
            return None, "choices", "expected a list of non-empty strings"
        index = _gold_index(gold, choices)
        if index is None:
            return None, "gold", f"expected an option index, letter or text, found {gold!r}"
        opts = [c if c[:1].isspace() else " " + c for c in choices]
        item.update(kind="choice", choices=opts, answer=index)
        item["prompt"] = item["prompt"].rstrip()
        return item, "", ""
    if isinstance(schema, dict) and schema:
        item.update(kind="generate", chat=True, check={"type": "json_schema", "schema": schema})
        return item, "", ""
    if tool_spec:
        call = gold if isinstance(gold, dict) else None
        if call is None or not isinstance(call.get("name"), str):
            return None, "gold", 'expected the gold call {"name": ..., "arguments": {...}}'
        args = _maybe_json(call.get("arguments", call.get("parameters", {})))
        if not isinstance(args, dict):
            return None, "gold", "expected the gold call's arguments as an object"
        spec = tool_spec if isinstance(tool_spec, str) else json.dumps(tool_spec)
        item["prompt"] = f"You can call these tools:\n{spec}\n\n{item['prompt']}"
        check = {"type": "tool_call", "name": call["name"], "arguments": args}
        item.update(kind="generate", chat=True, check=check)
        return item, "", ""
    if isinstance(gold, str) and gold.strip():
        target = gold if gold[:1].isspace() else " " + gold
        item.update(kind="target", target=target)
        item["prompt"] = item["prompt"].rstrip()
        return item, "", ""
    return (
        None,
        "gold",
        ("no way to score this row without a judge (no choices, schema, tool_spec or gold text)"),
    )


def _lm_eval_item(
    row: dict[str, Any], n: int, capability: str
) -> tuple[dict[str, Any] | None, str, str]:
    text_field = next(
        (k for k in ("query", "question", "prompt", "ctx", "context") if k in row), None
    )
    if text_field is None or not isinstance(row[text_field], str) or not row[text_field].strip():
        return None, "query", "expected the text in query, question, prompt, ctx or context"
    text = row[text_field].rstrip()
    if text_field == "question":
        text = f"Question: {text}\nAnswer:"
    choices = row.get("choices", row.get("endings"))
    if isinstance(choices, dict):  # ARC: {"text": [...], "label": [...]}
        labels = choices.get("label")
        choices = choices.get("text")
        gold_raw = row.get("answerKey", row.get("gold", row.get("answer", row.get("label"))))
        if isinstance(labels, list) and gold_raw in labels:
            gold_raw = labels.index(gold_raw)
    else:
        gold_raw = next(
            (row[k] for k in ("gold", "answer", "label", "answerKey") if k in row), None
        )
    if not isinstance(choices, list) or len(choices) < 2:
        return None, "choices", "expected a list of at least 2 options"
    if not all(isinstance(c, str) and c.strip() for c in choices):
        return None, "choices", "expected a list of non-empty strings"
    index = _gold_index(gold_raw, choices)
    if index is None:
        return None, "gold", f"expected an option index, letter or text, found {gold_raw!r}"
    rid = row.get("id", row.get("doc_id", n))
    item = {
        "id": str(rid),
        "capability": capability,
        "kind": "choice",
        "prompt": text,
        "choices": [c if c[:1].isspace() else " " + c for c in choices],
        "answer": index,
    }
    return item, "", ""


def import_suite(
    sources: list[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    source: Source,
    name: str | None = None,
    capability: str = "C1",
    skip_invalid: bool = False,
) -> tuple[ProbeSuite, list[Problem]]:
    """Convert benchmark files into a suite folder and load it back.

    Args:
        sources: input files (JSONL, or parquet for ``captrack``).
        out_dir: the suite folder to write (created; existing probe files are replaced).
        source: the input shape, ``"captrack"`` or ``"lm-eval"``.
        name: the suite name (default: the folder's name).
        capability: the capability id of ``lm-eval`` items (a taxonomy id such as ``C1`` or
            any name; ``captrack`` rows carry their own family).
        skip_invalid: drop rows that cannot become probes instead of raising.

    Returns:
        The loaded suite and the problems of the rows that were dropped.

    Raises:
        SuiteError: rows that cannot become probes (unless ``skip_invalid``), or duplicate ids.
    """
    if source not in ("captrack", "lm-eval"):
        raise DriftwatchError(f"source: expected 'captrack' or 'lm-eval', found {source!r}")
    out = Path(out_dir)
    items: dict[str, list[dict[str, Any]]] = {}
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for src in sources:
        path = Path(src)
        if not path.is_file():
            raise DriftwatchError(f"{path}: no such file")
        for n, row in _rows(path):
            if isinstance(row, json.JSONDecodeError):
                problems.append(Problem(str(path), n, "line", f"invalid JSON: {row.msg}"))
                continue
            if not isinstance(row, dict):
                problems.append(Problem(str(path), n, "line", "expected a JSON object"))
                continue
            if source == "captrack":
                item, field, why = _captrack_item(row)
            else:
                item, field, why = _lm_eval_item(row, n, capability)
            if item is None:
                problems.append(Problem(str(path), n, field, why))
                continue
            if item["id"] in seen:
                problems.append(
                    Problem(
                        str(path),
                        n,
                        "id",
                        f"duplicate id {item['id']!r} (first at {seen[item['id']]})",
                    )
                )
                continue
            seen[item["id"]] = f"{path}:{n}"
            items.setdefault(item["capability"], []).append(item)
    if problems and not skip_invalid:
        raise SuiteError(problems)
    if not items:
        raise SuiteError(problems or [Problem(", ".join(map(str, sources)), 0, "file", "no rows")])
    out.mkdir(parents=True, exist_ok=True)
    caps = []
    for cid, rows in items.items():
        cap_name, group = TAXONOMY.get(cid, (cid, "other"))
        if source == "captrack":
            cap_name, group = _capability(cid)[1:]
        file = f"{_SAFE.sub('_', cid.lower())}.jsonl"
        write_atomic(out / file, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        caps.append({"id": cid, "name": cap_name, "group": group, "files": [file]})
    manifest = {
        "format": 1,
        "name": name or out.name,
        "description": f"imported from {', '.join(Path(s).name for s in sources)} ({source})",
        "capabilities": caps,
    }
    write_atomic(out / "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    suite = ProbeSuite.load(out)
    logger.info("imported %d items into %s (%d rows dropped)", len(suite), out, len(problems))
    return suite, problems
