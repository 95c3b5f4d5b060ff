"""Probe suites: items loaded from JSONL files, grouped into capabilities by a manifest.

A suite is a folder with a ``manifest.json`` and one or more JSONL probe files::

    {"format": 1, "name": "smoke",
     "defaults": {"chat": false, "max_new_tokens": 32},
     "capabilities": [
        {"id": "C1", "name": "parametric knowledge", "group": "CAN", "files": ["c1.jsonl"]}]}

Each JSONL line is one :class:`ProbeItem` (format in ``DESIGN.md`` §4). Loading checks every
line and reports *every* problem as ``path:line: field: message``; nothing is skipped silently.
A suite's :attr:`ProbeSuite.fingerprint` hashes everything that changes what is measured
(items, capabilities, defaults) and nothing that does not (file names, line numbers).

Built-in suites live in ``driftwatch/probes/suites/<name>/``; :func:`builtin_suites` lists them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast

from driftwatch.errors import Problem, SuiteError, describe, did_you_mean
from driftwatch.probes.verifiers import validate_check

__all__ = [
    "GROUPS",
    "KINDS",
    "Capability",
    "ProbeItem",
    "ProbeSuite",
    "builtin_suites",
    "round_tokens",
    "validate_path",
]

logger = logging.getLogger(__name__)

Kind = Literal["choice", "target", "generate", "distribution"]
Group = Literal["CAN", "WILL", "HOW", "other"]
KINDS: tuple[str, ...] = ("choice", "target", "generate", "distribution")
GROUPS: tuple[str, ...] = ("CAN", "WILL", "HOW", "other")
FORMAT_VERSION = 1
MAX_NEW_TOKENS_LIMIT = 1024
# A line longer than this is refused before it is parsed (a probe is a prompt, not a book).
MAX_LINE_CHARS = 200_000
# An item whose texts (prompt, options, target, text, history) add up to more is refused at
# load, by id: it would make one probe forward pass alone larger than a round's token budget.
MAX_ITEM_CHARS = 20_000

_BUILTIN_ROOT = Path(__file__).parent / "probes" / "suites"

# field -> (accepted JSON types, kinds that require it, kinds that allow it)
_ALL = set(KINDS)
_FIELDS: dict[str, tuple[tuple[type, ...], set[str], set[str]]] = {
    "id": ((str,), _ALL, _ALL),
    "capability": ((str,), _ALL, _ALL),
    "kind": ((str,), _ALL, _ALL),
    "prompt": ((str,), {"choice", "target", "generate"}, _ALL),
    "choices": ((list,), {"choice"}, {"choice"}),
    "answer": ((int,), {"choice"}, {"choice"}),
    "target": ((str,), {"target"}, {"target"}),
    "text": ((str,), set(), {"distribution"}),
    "check": ((dict,), set(), {"generate"}),
    "history": ((list,), set(), {"choice", "target", "generate", "distribution"}),
    "chat": ((bool,), set(), _ALL),
    "max_new_tokens": ((int,), set(), {"generate", "distribution"}),
    "group": ((str,), set(), _ALL),
    "lang": ((str,), set(), _ALL),
    "tags": ((list,), set(), _ALL),
    "meta": ((dict,), set(), _ALL),
}


@dataclass(frozen=True)
class Capability:
    """One capability of a suite: what it measures and how its drift is summarised."""

    id: str  # short id used in tags and thresholds, e.g. "C1"
    name: str  # human name, e.g. "parametric knowledge"
    group: Group  # CapTrack group: CAN / WILL / HOW, or "other" (e.g. output distribution D)
    metric: str = "score"  # the headline metric thresholds apply to (see drift.METRICS)
    weight: float = 1.0  # weight in group means (1.0 = CapTrack's unweighted mean)


@dataclass(frozen=True)
class ProbeItem:
    """One probe. Which fields are set depends on ``kind`` (see DESIGN.md §4)."""

    id: str
    capability: str
    kind: Kind
    prompt: str | None = None  # choice / target / generate
    choices: tuple[str, ...] = ()  # choice: the options, scored as continuations of prompt
    answer: int | None = None  # choice: index of the gold option
    target: str | None = None  # target: the continuation whose log-likelihood is measured
    text: str | None = None  # distribution: a fixed text whose next-token distributions count
    check: dict[str, Any] | None = None  # generate: a verifier (probes/verifiers.py); None:
    # style metrics only (words, formatted)
    chat: bool = False  # wrap prompt in the tokenizer's chat template
    history: tuple[tuple[str, str], ...] = ()  # chat: (role, content) turns before the prompt
    max_new_tokens: int = 32  # generate: greedy decoding budget
    group: str | None = None  # paraphrase group: items that ask the same thing
    lang: str | None = None
    tags: tuple[str, ...] = ()
    source: str = field(default="<memory>", compare=False)  # "path:line", for error messages

    def content(self) -> dict[str, Any]:
        """The fields that define what is measured (used for the suite fingerprint)."""
        out: dict[str, Any] = {"id": self.id, "capability": self.capability, "kind": self.kind}
        for name in ("prompt", "target", "text", "check", "group"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.history:
            out["history"] = [list(turn) for turn in self.history]
        if self.kind == "choice":
            out["choices"], out["answer"] = list(self.choices), self.answer
        if self.prompt is not None:
            out["chat"] = self.chat
        if self.kind == "generate" or (self.kind == "distribution" and self.prompt is not None):
            out["max_new_tokens"] = self.max_new_tokens
        return out

    def where(self) -> tuple[str, int]:
        """``(path, line)`` of the item's source line."""
        path, _, line = self.source.rpartition(":")
        return (path, int(line)) if line.isdigit() else (self.source, 0)


@dataclass(frozen=True)
class ProbeSuite:
    """A validated set of probe items grouped by capability."""

    name: str
    capabilities: tuple[Capability, ...]
    items: tuple[ProbeItem, ...]
    path: str = "<memory>"

    def __post_init__(self) -> None:
        problems = _check_suite(self.capabilities, self.items, self.path)
        if problems:
            raise SuiteError(problems)

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def load(cls, name_or_path: str | os.PathLike[str]) -> ProbeSuite:
        """Load a built-in suite by name, or a suite folder / manifest file from disk.

        Raises:
            SuiteError: listing every problem found (file, line, field, message).
        """
        manifest = _find_manifest(name_or_path)
        suite, problems = _load_manifest(manifest)
        if problems or suite is None:
            raise SuiteError(problems)
        return suite

    @classmethod
    def from_items(
        cls,
        items: Iterable[ProbeItem],
        capabilities: Iterable[Capability] | None = None,
        name: str = "custom",
    ) -> ProbeSuite:
        """Build a suite in memory; capabilities default to one "other" group entry each."""
        items = tuple(items)
        if capabilities is None:
            ids = dict.fromkeys(i.capability for i in items)
            capabilities = [Capability(c, c, "other", _default_metric(items, c)) for c in ids]
        return cls(name=name, capabilities=tuple(capabilities), items=items)

    # ---- queries ------------------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        """SHA-256 of the suite's content; equal fingerprints measure the same things."""
        payload = {
            "format": FORMAT_VERSION,
            "capabilities": [vars(c) for c in self.capabilities],
            "items": [i.content() for i in self.items],
        }
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def capability(self, cap_id: str) -> Capability:
        for cap in self.capabilities:
            if cap.id == cap_id:
                return cap
        raise KeyError(f"no capability {cap_id!r}; known: {[c.id for c in self.capabilities]}")

    def items_of(self, cap_id: str) -> list[ProbeItem]:
        return [i for i in self.items if i.capability == cap_id]

    def __len__(self) -> int:
        return len(self.items)


def round_tokens(items: Sequence[ProbeItem], count: Callable[[str], int] | None = None) -> int:
    """Tokens one probe round processes for ``items``: prompts, options, texts, and the
    generation budgets. ``count`` tokenises a text; by default 4 characters make a token
    (a rough English average).

    Example:
        >>> round_tokens([ProbeItem("a", "C1", "target", prompt="12345678", target=" abcd")])
        4
    """
    count = count or (lambda text: -(-len(text) // 4))
    total = 0
    for item in items:
        prompt = item.prompt or item.text or ""
        prompt += "".join(content for _, content in item.history)
        total += count(prompt)
        total += sum(count(c) for c in item.choices) + (count(item.target) if item.target else 0)
        if item.kind == "generate" or (item.kind == "distribution" and item.prompt is not None):
            total += item.max_new_tokens
    return total


def builtin_suites() -> list[str]:
    """Names of the suites shipped with driftwatch."""
    return sorted(p.parent.name for p in _BUILTIN_ROOT.glob("*/manifest.json"))


def validate_path(path: str | os.PathLike[str]) -> list[Problem]:
    """Every problem in a suite (folder or manifest) or a single JSONL probe file.

    A lone JSONL file is checked line by line, without a manifest to say which capabilities
    exist, so unknown capabilities are only reported when a manifest is given.
    """
    p = Path(path)
    if p.suffix == ".jsonl":
        items, problems = _read_jsonl(p, defaults={}, known_caps=None)
        if not problems:
            problems = _check_suite(None, tuple(items), str(p))
        return problems
    try:
        manifest = _find_manifest(p)
    except SuiteError as err:
        return err.problems
    return _load_manifest(manifest)[1]


# ---- loading ------------------------------------------------------------------------------
def _find_manifest(name_or_path: str | os.PathLike[str]) -> Path:
    text = str(name_or_path)
    builtin = _BUILTIN_ROOT / text / "manifest.json"
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


def _load_manifest(path: Path) -> tuple[ProbeSuite | None, list[Problem]]:
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
        elif key == "max_new_tokens" and not _is_count(value, MAX_NEW_TOKENS_LIMIT):
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
    cap_keys = {"id", "name", "group", "metric", "weight", "files"}
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
        capabilities.append(
            Capability(
                id=cid,
                name=str(cap.get("name", cid)),
                group=cast(Group, group),
                metric=metric or "",
                weight=float(weight),
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
        c if c.metric else Capability(c.id, c.name, c.group, _default_metric(items, c.id), c.weight)
        for c in capabilities
    ]
    try:
        suite = ProbeSuite(
            name=name, capabilities=tuple(capabilities), items=tuple(items), path=where
        )
    except SuiteError as err:
        return None, err.problems
    return suite, []


def _default_metric(items: Sequence[ProbeItem], cap_id: str) -> str:
    kinds = {i.kind for i in items if i.capability == cap_id}
    return "kl" if kinds == {"distribution"} else "score"


def _is_count(value: object, limit: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= limit


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
        item, item_problems = _parse_item(obj, defaults, known_caps, expect_capability)
        problems.extend(Problem(where, number, f, m) for f, m in item_problems)
        if item is not None:
            items.append(replace(item, source=f"{where}:{number}"))
    return items, problems


def _parse_item(
    obj: object,
    defaults: dict[str, Any],
    known_caps: set[str] | None,
    expect_capability: str | None,
) -> tuple[ProbeItem | None, list[tuple[str, str]]]:
    if not isinstance(obj, dict):
        return None, [("line", f"expected a JSON object, found {type(obj).__name__}")]
    problems: list[tuple[str, str]] = []
    kind = obj.get("kind")
    if "kind" not in obj:
        problems.append(("kind", f"missing; expected one of {list(KINDS)}"))
    elif kind not in KINDS:
        hint = did_you_mean(str(kind), KINDS)
        problems.append(("kind", f"unknown kind {kind!r}{hint}; expected one of {list(KINDS)}"))
    for key in obj:
        if key not in _FIELDS:
            problems.append((key, f"unknown field; expected some of {sorted(_FIELDS)}"))
    if problems:
        return None, problems
    for key, (types, required_by, allowed_for) in _FIELDS.items():
        if key not in obj:
            if kind in required_by:
                problems.append((key, f"missing (required for kind {kind!r})"))
            continue
        value = obj[key]
        if kind not in allowed_for:
            problems.append((key, f"not used by kind {kind!r}; remove it"))
        elif not isinstance(value, types) or (int in types and isinstance(value, bool)):
            want = {
                str: "a string",
                list: "a list",
                int: "an integer",
                dict: "an object",
                bool: "true/false",
            }[types[0]]
            problems.append((key, f"expected {want}, found {describe(value)}"))
        elif (
            types == (str,)
            and key in ("id", "capability", "prompt", "target", "text")
            and not str(value).strip()
        ):
            problems.append((key, "expected a non-empty string, found an empty one"))
    if problems:
        return None, problems

    cap = obj["capability"]
    if known_caps is not None and cap not in known_caps:
        problems.append(
            ("capability", f"unknown capability {cap!r}; the manifest defines {sorted(known_caps)}")
        )
    elif expect_capability is not None and cap != expect_capability:
        problems.append(
            (
                "capability",
                f"this file is listed under {expect_capability!r} in the manifest, found {cap!r}",
            )
        )
    if kind == "choice":
        choices = obj["choices"]
        if len(choices) < 2:
            problems.append(("choices", f"expected at least 2 options, found {len(choices)}"))
        elif not all(isinstance(c, str) and c.strip() for c in choices):
            problems.append(("choices", "expected non-empty strings"))
        elif len(set(choices)) != len(choices):
            problems.append(("choices", "options must differ from each other"))
        elif not 0 <= obj["answer"] < len(choices):
            problems.append(
                ("answer", f"expected an index in 0..{len(choices) - 1}, found {obj['answer']}")
            )
    if kind == "distribution" and ("text" in obj) == ("prompt" in obj):
        problems.append(
            (
                "text",
                "expected exactly one of 'text' (a fixed text) or 'prompt' (a prompt whose "
                "base continuation is recorded in the reference)",
            )
        )
    if kind == "distribution" and "text" in obj:
        for key in ("chat", "history", "max_new_tokens"):
            if key in obj:
                problems.append((key, "only used with a 'prompt'; a fixed 'text' is read as is"))
    history = obj.get("history", [])
    problems.extend(_history_problems(history))
    if history and not obj.get("chat", defaults.get("chat", False)):
        problems.append(("history", 'earlier turns need "chat": true'))
    if kind == "generate" and "check" in obj:
        problems.extend(validate_check(obj["check"]))
    if kind in ("generate", "distribution"):
        mnt = obj.get("max_new_tokens", defaults.get("max_new_tokens", 32))
        if not _is_count(mnt, MAX_NEW_TOKENS_LIMIT):
            problems.append(
                ("max_new_tokens", f"expected 1..{MAX_NEW_TOKENS_LIMIT}, found {mnt!r}")
            )
    tags = obj.get("tags", [])
    if not all(isinstance(t, str) for t in tags):
        problems.append(("tags", "expected a list of strings"))
    if not problems:
        size = _text_size(obj)
        if size > MAX_ITEM_CHARS:
            problems.append(
                (
                    "id",
                    f"item {obj['id']!r} holds {size} characters of text, over the "
                    f"{MAX_ITEM_CHARS} limit for one probe",
                )
            )
    if problems:
        return None, problems
    item = ProbeItem(
        id=obj["id"],
        capability=cap,
        kind=cast(Kind, kind),
        prompt=obj.get("prompt"),
        choices=tuple(obj.get("choices", ())),
        answer=obj.get("answer"),
        target=obj.get("target"),
        text=obj.get("text"),
        check=obj.get("check"),
        chat=obj.get("chat", defaults.get("chat", False)),
        history=tuple((t["role"], t["content"]) for t in history),
        max_new_tokens=obj.get("max_new_tokens", defaults.get("max_new_tokens", 32)),
        group=obj.get("group"),
        lang=obj.get("lang"),
        tags=tuple(tags),
    )
    return item, []


def _text_size(obj: dict[str, Any]) -> int:
    """Characters of text an item feeds the model (its prompt, options, target, history)."""
    texts = [obj.get(k) or "" for k in ("prompt", "target", "text")]
    texts += list(obj.get("choices", ())) + [t["content"] for t in obj.get("history", ())]
    return sum(len(t) for t in texts)


_ROLES = ("system", "user", "assistant")


def _history_problems(history: list[Any]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for n, turn in enumerate(history):
        if (
            not isinstance(turn, dict)
            or set(turn) != {"role", "content"}
            or turn["role"] not in _ROLES
            or not isinstance(turn["content"], str)
        ):
            problems.append(
                (
                    f"history[{n}]",
                    f'expected {{"role": one of {list(_ROLES)}, "content": "..."}}, '
                    f"found {describe(turn)}",
                )
            )
    return problems


def _check_suite(
    capabilities: tuple[Capability, ...] | None,
    items: tuple[ProbeItem, ...],
    where: str,
) -> list[Problem]:
    """Cross-item rules: unique ids, known capabilities, no empty capability, sane metrics."""
    from driftwatch.drift import METRICS  # the metric registry lives with the drift math

    problems: list[Problem] = []

    def at(item: ProbeItem, field_: str, message: str) -> None:
        path, line = item.where()
        problems.append(Problem(path if line else where, line, field_, message))

    if not items:
        problems.append(Problem(where, 0, "items", "the suite has no probe items"))
    seen: dict[str, ProbeItem] = {}
    for item in items:
        if item.id in seen:
            at(item, "id", f"duplicate id {item.id!r} (first at {seen[item.id].source})")
        else:
            seen[item.id] = item
    if capabilities is None:
        return problems
    ids = [c.id for c in capabilities]
    for cid in {c for c in ids if ids.count(c) > 1}:
        problems.append(Problem(where, 0, "capabilities", f"capability {cid!r} defined twice"))
    known = set(ids)
    for item in items:
        if item.capability not in known:
            at(
                item,
                "capability",
                f"unknown capability {item.capability!r}; the suite defines {sorted(known)}",
            )
    for cap in capabilities:
        kinds = {i.kind for i in items if i.capability == cap.id}
        if not kinds:
            problems.append(Problem(where, 0, f"capabilities.{cap.id}", "capability has no items"))
            continue
        if "distribution" in kinds and kinds != {"distribution"}:
            problems.append(
                Problem(
                    where,
                    0,
                    f"capabilities.{cap.id}",
                    "distribution items cannot share a capability with "
                    "scored items (KL and accuracy do not average)",
                )
            )
        if cap.metric and cap.metric not in METRICS:
            problems.append(
                Problem(
                    where,
                    0,
                    f"capabilities.{cap.id}.metric",
                    f"unknown metric {cap.metric!r}; known: {sorted(METRICS)}",
                )
            )
        elif cap.metric and not kinds & set(METRICS[cap.metric].kinds):
            problems.append(
                Problem(
                    where,
                    0,
                    f"capabilities.{cap.id}.metric",
                    f"metric {cap.metric!r} is not produced by the "
                    f"capability's items (kinds {sorted(kinds)})",
                )
            )
        elif cap.metric in ("score", "consistency") and (
            unchecked := [
                i.id
                for i in items
                if i.capability == cap.id and i.kind == "generate" and i.check is None
            ]
        ):
            problems.append(
                Problem(
                    where,
                    0,
                    f"capabilities.{cap.id}.metric",
                    f"metric {cap.metric!r} needs a check on every generate item; "
                    f"{len(unchecked)} have none (first: {unchecked[0]!r}). Give them a "
                    "'check' or use the metric 'words' or 'formatted'",
                )
            )
        elif cap.metric == "consistency" and not any(
            i.group for i in items if i.capability == cap.id
        ):
            problems.append(
                Problem(
                    where,
                    0,
                    f"capabilities.{cap.id}.metric",
                    "metric 'consistency' needs paraphrase groups: give the items a 'group'",
                )
            )
    return problems
