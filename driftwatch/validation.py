"""The rules a probe item and a suite must follow, each problem named by its field.

:func:`parse_item` checks one raw JSON item: the common fields here, the kind-specific rules
in the item's kind (:meth:`driftwatch.probes.base.ProbeKind.check`). :func:`check_suite`
checks what only the whole suite shows: unique ids, known capabilities, no empty capability,
and a headline metric each capability's items can measure. Both report problems, never raise,
so a file gets every problem at once (:mod:`driftwatch.suite_files` adds file and line).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from driftwatch.errors import Problem, describe, did_you_mean
from driftwatch.items import Capability, ProbeItem
from driftwatch.metrics import CONSISTENCY, MEAN, METRICS
from driftwatch.probes.registry import KINDS, get_kind, kinds_producing

__all__ = [
    "MAX_ITEM_CHARS",
    "MAX_NEW_TOKENS_LIMIT",
    "check_suite",
    "default_metric",
    "is_count",
    "parse_item",
]

MAX_NEW_TOKENS_LIMIT = 1024
# An item whose texts (prompt, options, target, text, history) add up to more is refused at
# load, by id: it would make one probe forward pass alone larger than a round's token budget.
MAX_ITEM_CHARS = 20_000

# every field an item may have, with its JSON types; in checking (and reporting) order
_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "capability": (str,),
    "kind": (str,),
    "prompt": (str,),
    "choices": (list,),
    "answer": (int,),
    "target": (str,),
    "text": (str,),
    "check": (dict,),
    "history": (list,),
    "chat": (bool,),
    "max_new_tokens": (int,),
    "group": (str,),
    "lang": (str,),
    "tags": (list,),
    "meta": (dict,),
}
# fields every kind takes (the rest belong to kinds: ProbeKind.fields)
_COMMON = {"id": True, "capability": True, "kind": True, "history": False, "chat": False}
_COMMON |= {"group": False, "lang": False, "tags": False, "meta": False}
_NON_EMPTY = ("id", "capability", "prompt", "target", "text")
_WANT = {str: "a string", list: "a list", int: "an integer", dict: "an object", bool: "true/false"}
_ROLES = ("system", "user", "assistant")


def is_count(value: object, limit: int) -> bool:
    """An integer (not a bool) in ``1..limit``."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= limit


def parse_item(
    obj: object,
    defaults: dict[str, Any],
    known_caps: set[str] | None,
    expect_capability: str | None,
) -> tuple[ProbeItem | None, list[tuple[str, str]]]:
    """The item a JSON object describes, or ``(None, [(field, message), …])``."""
    if not isinstance(obj, dict):
        return None, [("line", f"expected a JSON object, found {type(obj).__name__}")]
    problems: list[tuple[str, str]] = []
    kind_name = obj.get("kind")
    if "kind" not in obj:
        problems.append(("kind", f"missing; expected one of {list(KINDS)}"))
    elif not isinstance(kind_name, str) or kind_name not in KINDS:
        hint = did_you_mean(str(kind_name), KINDS)
        problems.append(
            ("kind", f"unknown kind {kind_name!r}{hint}; expected one of {list(KINDS)}")
        )
    for key in obj:
        if key not in _TYPES:
            problems.append((key, f"unknown field; expected some of {sorted(_TYPES)}"))
    if problems:
        return None, problems
    kind = get_kind(str(kind_name))
    rules = {**_COMMON, **kind.fields}
    for key, types in _TYPES.items():
        if key not in obj:
            if rules.get(key):
                problems.append((key, f"missing (required for kind {kind_name!r})"))
            continue
        value = obj[key]
        if key not in rules:
            problems.append((key, f"not used by kind {kind_name!r}; remove it"))
        elif not isinstance(value, types) or (int in types and isinstance(value, bool)):
            problems.append((key, f"expected {_WANT[types[0]]}, found {describe(value)}"))
        elif key in _NON_EMPTY and not str(value).strip():
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
    problems.extend(kind.check(obj))
    history = obj.get("history", [])
    problems.extend(_history_problems(history))
    chat = obj.get("chat", defaults.get("chat", False))
    if history and not chat:
        problems.append(("history", 'earlier turns need "chat": true'))
    max_new = obj.get("max_new_tokens", defaults.get("max_new_tokens", 32))
    if "max_new_tokens" in kind.fields and not is_count(max_new, MAX_NEW_TOKENS_LIMIT):
        problems.append(
            ("max_new_tokens", f"expected 1..{MAX_NEW_TOKENS_LIMIT}, found {max_new!r}")
        )
    tags = obj.get("tags", [])
    if not all(isinstance(t, str) for t in tags):
        problems.append(("tags", "expected a list of strings"))
    if not problems and (size := _text_size(obj)) > MAX_ITEM_CHARS:
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
        kind=str(kind_name),
        prompt=obj.get("prompt"),
        choices=tuple(obj.get("choices", ())),
        answer=obj.get("answer"),
        target=obj.get("target"),
        text=obj.get("text"),
        check=obj.get("check"),
        chat=chat,
        history=tuple((t["role"], t["content"]) for t in history),
        max_new_tokens=max_new,
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


def default_metric(items: Sequence[ProbeItem], cap_id: str) -> str:
    """The headline metric of a capability whose manifest names none: its kinds' common
    default (``kl`` for distribution items), else ``score``."""
    defaults = {get_kind(i.kind).default_metric for i in items if i.capability == cap_id}
    return defaults.pop() if len(defaults) == 1 else "score"


def check_suite(
    capabilities: Sequence[Capability] | None, items: Sequence[ProbeItem], where: str
) -> list[Problem]:
    """Cross-item rules: unique ids, known kinds and capabilities, no empty capability, a
    capability's kinds comparable, and its headline metric measurable on its items."""
    problems: list[Problem] = []

    def at(item: ProbeItem, field_: str, message: str) -> None:
        path, line = item.where()
        problems.append(Problem(path if line else where, line, field_, message))

    if not items:
        problems.append(Problem(where, 0, "items", "the suite has no probe items"))
    seen: dict[str, ProbeItem] = {}
    for item in items:
        if item.kind not in KINDS:
            at(item, "kind", f"unknown kind {item.kind!r}; expected one of {list(KINDS)}")
        if item.id in seen:
            at(item, "id", f"duplicate id {item.id!r} (first at {seen[item.id].source})")
        else:
            seen[item.id] = item
    if capabilities is None or problems:
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
        label = f"capabilities.{cap.id}"
        mine = [i for i in items if i.capability == cap.id]
        if not mine:
            problems.append(Problem(where, 0, label, "capability has no items"))
            continue
        for suffix, message in _capability_problems(cap, mine):
            problems.append(Problem(where, 0, label + suffix, message))
    return problems


def _capability_problems(cap: Capability, items: Sequence[ProbeItem]) -> list[tuple[str, str]]:
    """``(field suffix, message)`` for what makes a capability unmeasurable."""
    kinds = [k for k in KINDS if any(i.kind == k for i in items)]  # registry order
    produced = {k: set(get_kind(k).metrics) for k in kinds}
    out: list[tuple[str, str]] = []
    for k in reversed(kinds):  # name the latest-registered kind that fits with no other
        others = [o for o in kinds if o != k]
        if others and not produced[k] & set().union(*(produced[o] for o in others)):
            out.append(
                (
                    "",
                    f"{k} items cannot share a capability with {', '.join(others)} items: "
                    "they have no metric in common to average",
                )
            )
            break
    metric = cap.metric
    if cap.metrics:
        return out + _defs_problems(cap, items)
    if not metric:
        return out
    if metric not in METRICS:
        return [*out, (".metric", f"unknown metric {metric!r}; known: {sorted(METRICS)}")]
    if not set(kinds) & kinds_producing(metric):
        message = f"metric {metric!r} is not produced by the capability's items (kinds {kinds})"
        return [*out, (".metric", message)]
    for k in kinds:
        reasons = get_kind(k).capability_problems(metric, [i for i in items if i.kind == k])
        if reasons:
            return [*out, (".metric", reasons[0])]
    if metric == CONSISTENCY and not any(i.group for i in items):
        message = "metric 'consistency' needs paraphrase groups: give the items a 'group'"
        return [*out, (".metric", message)]
    return out


def _defs_problems(cap: Capability, items: Sequence[ProbeItem]) -> list[tuple[str, str]]:
    """What makes a capability's named metrics unmeasurable or their mean meaningless."""
    out: list[tuple[str, str]] = []
    if cap.metric != MEAN:
        out.append((".metric", f"a capability with named metrics has the headline {MEAN!r}"))
    directions: dict[bool, str] = {}
    seen: set[str] = set()
    for n, d in enumerate(cap.metrics):
        at = f".metrics[{n}]"
        if d.name in seen or d.name in METRICS or d.name == MEAN:
            taken = "used twice" if d.name in seen else "the name of a built-in metric"
            out.append((f"{at}.name", f"{d.name!r} is {taken}; give each metric its own name"))
        seen.add(d.name)
        spec = METRICS.get(d.metric)
        if spec is None or not spec.per_item or not spec.percent:
            usable = [m for m, s in METRICS.items() if s.per_item and s.percent]
            out.append(
                (
                    f"{at}.metric",
                    f"{d.metric!r} is not a per-item metric with a Δ%; expected one of {usable}",
                )
            )
            continue
        mine = [i for i in items if d.selects(i)]
        least = 3 if d.stat == "std" else 1
        if len(mine) < least:
            out.append(
                (
                    f"{at}.tags",
                    f"tags {list(d.tags)} select {len(mine)} of the "
                    f"capability's items; {d.name!r} needs at least {least}",
                )
            )
            continue
        kinds = sorted({i.kind for i in mine} - kinds_producing(d.metric))
        if kinds:
            out.append((f"{at}.metric", f"{d.metric!r} is not produced by {kinds} items"))
        directions.setdefault(spec.higher_is_better, d.name)
    if len(directions) > 1:
        up, down = directions[True], directions[False]
        out.append(
            (
                ".metrics",
                f"{up!r} is better higher and {down!r} better lower: the mean "
                "of their Δ% would cancel a real change; give them separate capabilities",
            )
        )
    return out
