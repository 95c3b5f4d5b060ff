"""Reading probe suites from disk: a folder with a ``manifest.json`` and JSONL probe files.

A suite is a folder with a ``manifest.json`` and one or more JSONL probe files::

    {"format": 1, "name": "smoke",
     "defaults": {"chat": false, "max_new_tokens": 32},
     "capabilities": [
        {"id": "C1", "name": "parametric knowledge", "group": "CAN", "files": ["c1.jsonl"]}]}

Each JSONL line is one item (:func:`driftwatch.validation.parse_item`). Loading checks every
line and reports *every* problem as ``path:line: field: message``; nothing is skipped
silently. Built-in suites live in ``driftwatch/probes/suites/<name>/``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

from driftwatch.errors import Problem, SuiteError
from driftwatch.items import GROUPS, Capability, Group, MetricDef, ProbeItem
from driftwatch.metrics import MEAN, STATS
from driftwatch.validation import (
    MAX_NEW_TOKENS_LIMIT,
    check_suite,
    default_metric,
    is_count,
    parse_item,
)

__all__ = [
    "BUILTIN_ROOT",
    "FORMAT_VERSION",
    "Manifest",
    "builtin_suites",
    "find_manifest",
    "read_manifest",
    "validate_path",
]

FORMAT_VERSION = 1
# A line longer than this is refused before it is parsed (a probe is a prompt, not a book).
MAX_LINE_CHARS = 200_000
BUILTIN_ROOT = Path(__file__).parent / "probes" / "suites"


@dataclass(frozen=True)
class Manifest:
    """What a manifest and its probe files hold, before the cross-item rules."""

    name: str
    capabilities: tuple[Capability, ...]
    items: tuple[ProbeItem, ...]
    path: str


def builtin_suites() -> list[str]:
    """Names of the suites shipped with driftwatch."""
    return sorted(p.parent.name for p in BUILTIN_ROOT.glob("*/manifest.json"))


def validate_path(path: str | os.PathLike[str]) -> list[Problem]:
    """Every problem in a suite (folder or manifest) or a single JSONL probe file.

    A lone JSONL file is checked line by line, without a manifest to say which capabilities
    exist, so unknown capabilities are only reported when a manifest is given.
    """
    p = Path(path)
    if p.suffix == ".jsonl":
        items, problems = _read_jsonl(p, defaults={}, known_caps=None)
        return problems or check_suite(None, items, str(p))
    try:
        manifest = find_manifest(p)
    except SuiteError as err:
        return err.problems
    found, problems = read_manifest(manifest)
    if found is None:
        return problems
    return check_suite(found.capabilities, found.items, found.path)


def find_manifest(name_or_path: str | os.PathLike[str]) -> Path:
    text = str(name_or_path)
    builtin = BUILTIN_ROOT / text / "manifest.json"
    if os.sep not in text and "/" not in text and builtin.is_file():
        return builtin
    p = Path(text).expanduser()
    if p.is_dir():
        p = p / "manifest.json"
    if p.is_file():
        return p
    hint = f" Built-in suites: {builtin_suites()}."
    raise SuiteError([Problem(str(p), 0, "manifest", f"no such suite or manifest file.{hint}")])


def _line_of(text: str, needle: str) -> int:
    """1-based line of the first occurrence of ``needle`` in a JSON text (1 if absent)."""
    at = text.find(json.dumps(needle, ensure_ascii=False))
    if at < 0:
        at = text.find(needle)
    return text.count("\n", 0, at) + 1 if at >= 0 else 1


def read_manifest(path: Path) -> tuple[Manifest | None, list[Problem]]:
    """The suite a manifest describes (items read and checked one by one), or its problems.

    Cross-item rules (:func:`~driftwatch.validation.check_suite`) are left to the caller.
    """
    where = str(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        return None, [Problem(where, 0, "manifest", f"cannot read: {err}")]
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as err:
        return None, [Problem(where, err.lineno, "manifest", f"invalid JSON: {err.msg}")]
    if not isinstance(data, dict):
        return None, [Problem(where, 1, "manifest", "expected a JSON object")]

    problems: list[Problem] = []

    def bad(field_: str, message: str, needle: str | None = None) -> None:
        problems.append(Problem(where, _line_of(raw, needle or field_), field_, message))

    allowed = {"format", "name", "description", "defaults", "capabilities"}
    for key in data:
        if key not in allowed:
            bad(key, f"unknown manifest field; expected {sorted(allowed)}")
    fmt = data.get("format", FORMAT_VERSION)
    if fmt != FORMAT_VERSION:
        bad("format", f"expected {FORMAT_VERSION}, found {fmt!r}")
    name = data.get("name", path.parent.name)
    if not isinstance(name, str) or not name:
        bad("name", f"expected a non-empty string, found {name!r}")
        name = path.parent.name
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        bad("defaults", "expected an object")
        defaults = {}
    for key, value in defaults.items():
        if key == "chat" and not isinstance(value, bool):
            bad("defaults.chat", f"expected true/false, found {value!r}", "chat")
        elif key == "max_new_tokens" and not is_count(value, MAX_NEW_TOKENS_LIMIT):
            bad(
                "defaults.max_new_tokens",
                f"expected 1..{MAX_NEW_TOKENS_LIMIT}, found {value!r}",
                "max_new_tokens",
            )
        elif key not in ("chat", "max_new_tokens"):
            bad(f"defaults.{key}", "unknown default; expected chat, max_new_tokens", key)

    caps_raw = data.get("capabilities")
    if not isinstance(caps_raw, list) or not caps_raw:
        bad("capabilities", "expected a non-empty list of capability objects")
        return None, problems

    capabilities: list[Capability] = []
    files: list[tuple[str, Path]] = []
    cap_keys = {"id", "name", "group", "metric", "metrics", "weight", "files"}
    for n, cap in enumerate(caps_raw):
        label = f"capabilities[{n}]"
        if not isinstance(cap, dict):
            bad(label, "expected an object", "capabilities")
            continue
        cid = cap.get("id")
        anchor = cid if isinstance(cid, str) else "capabilities"
        for key in cap:
            if key not in cap_keys:
                bad(f"{label}.{key}", f"unknown field; expected {sorted(cap_keys)}", key)
        if not isinstance(cid, str) or not cid:
            bad(f"{label}.id", f"expected a non-empty string, found {cid!r}", anchor)
            continue
        group = cap.get("group")
        if group not in GROUPS:
            bad(
                f"{label}.group",
                f"expected one of {list(GROUPS)}, found {group!r}",
                group if isinstance(group, str) else anchor,
            )
            continue
        weight = cap.get("weight", 1.0)
        if (
            isinstance(weight, bool)
            or not isinstance(weight, (int, float))
            or weight <= 0
            or not math.isfinite(weight)
        ):
            bad(f"{label}.weight", f"expected a positive number, found {weight!r}", anchor)
            continue
        metric = cap.get("metric")
        if metric is not None and not isinstance(metric, str):
            bad(f"{label}.metric", f"expected a metric name, found {metric!r}", anchor)
            continue
        defs, def_problems = _metric_defs(cap.get("metrics", []))
        for field_, message in def_problems:
            bad(f"{label}.metrics{field_}", message, anchor)
        if def_problems:
            continue
        if defs and metric not in (None, MEAN):
            bad(
                f"{label}.metric",
                f"a capability that lists its metrics has the headline {MEAN!r} (the mean of "
                f"their Δ%), found {metric!r}",
                anchor,
            )
            continue
        capabilities.append(
            Capability(
                id=cid,
                name=str(cap.get("name", cid)),
                group=cast(Group, group),
                metric=MEAN if defs else metric or "",
                weight=float(weight),
                metrics=defs,
            )
        )
        cap_files = cap.get("files")
        if (
            not isinstance(cap_files, list)
            or not cap_files
            or not all(isinstance(f, str) for f in cap_files)
        ):
            bad(f"{label}.files", "expected a non-empty list of JSONL file names", anchor)
            continue
        for f in cap_files:
            target = path.parent / f
            if Path(f).is_absolute() or ".." in Path(f).parts:
                bad(
                    f"{label}.files",
                    f"{f!r} is outside the manifest's folder; "
                    "probe files must lie beside the manifest",
                    f,
                )
            elif not target.is_file():
                bad(f"{label}.files", f"file {f!r} does not exist (looked at {target})", f)
            elif (cid, target) not in files:
                files.append((cid, target))

    known = {c.id for c in capabilities}
    items: list[ProbeItem] = []
    for cid, file in files:
        got, file_problems = _read_jsonl(file, defaults, known, expect_capability=cid)
        items.extend(got)
        problems.extend(file_problems)
    if problems:
        return None, problems
    # A capability without an explicit metric gets the natural one for its items.
    capabilities = [
        c if c.metric else replace(c, metric=default_metric(items, c.id)) for c in capabilities
    ]
    return Manifest(name, tuple(capabilities), tuple(items), where), []


_DEF_KEYS = {"name", "metric", "tags", "stat"}


def _metric_defs(raw: Any) -> tuple[tuple[MetricDef, ...], list[tuple[str, str]]]:
    """A manifest's ``metrics`` list as :class:`MetricDef` objects, or ``(field, message)``
    problems. Whether the items can measure them is :func:`check_suite`'s business."""
    if not isinstance(raw, list):
        return (), [("", f"expected a list of metric objects, found {raw!r}")]
    defs: list[MetricDef] = []
    problems: list[tuple[str, str]] = []
    for n, entry in enumerate(raw):
        at = f"[{n}]"
        if not isinstance(entry, dict):
            problems.append((at, f"expected an object with {sorted(_DEF_KEYS)}, found {entry!r}"))
            continue
        unknown = sorted(set(entry) - _DEF_KEYS)
        if unknown:
            problems.append((f"{at}.{unknown[0]}", f"unknown field; expected {sorted(_DEF_KEYS)}"))
        name, metric = entry.get("name"), entry.get("metric")
        tags, stat = entry.get("tags", []), entry.get("stat", "mean")
        if not isinstance(name, str) or not name:
            problems.append((f"{at}.name", f"expected a non-empty string, found {name!r}"))
        if not isinstance(metric, str) or not metric:
            problems.append((f"{at}.metric", f"expected a metric name, found {metric!r}"))
        if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
            problems.append((f"{at}.tags", f"expected a list of tag strings, found {tags!r}"))
        if stat not in STATS:
            problems.append((f"{at}.stat", f"expected one of {list(STATS)}, found {stat!r}"))
        if not problems:
            defs.append(MetricDef(str(name), str(metric), tuple(tags), str(stat)))
    return tuple(defs), problems


def _read_jsonl(
    path: Path,
    defaults: dict[str, Any],
    known_caps: set[str] | None,
    expect_capability: str | None = None,
) -> tuple[list[ProbeItem], list[Problem]]:
    where = str(path)
    items: list[ProbeItem] = []
    problems: list[Problem] = []
    try:
        raw = path.read_bytes()
    except OSError as err:
        return [], [Problem(where, 0, "file", f"cannot read: {err}")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        return [], [Problem(where, line, "line", f"not UTF-8 text ({err.reason})")]
    rows = text.splitlines()
    if not any(row.strip() for row in rows):
        return [], [
            Problem(where, 0, "file", "empty probe file: expected one JSON object per line")
        ]
    for number, row in enumerate(rows, start=1):
        if not row.strip():
            continue
        if len(row) > MAX_LINE_CHARS:
            problems.append(
                Problem(
                    where, number, "line", f"{len(row)} characters, over the {MAX_LINE_CHARS} limit"
                )
            )
            continue
        try:
            obj = json.loads(row)
        except json.JSONDecodeError as err:
            problems.append(
                Problem(where, number, "line", f"invalid JSON: {err.msg} (column {err.colno})")
            )
            continue
        item, item_problems = parse_item(obj, defaults, known_caps, expect_capability)
        problems.extend(Problem(where, number, f, m) for f, m in item_problems)
        if item is not None:
            items.append(replace(item, source=f"{where}:{number}"))
    return items, problems
