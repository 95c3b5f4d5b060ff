"""Loaders under random input (hypothesis): only driftwatch's documented errors escape.

The suite loader may raise only :class:`SuiteError`, whose every problem names a file; the
reference loader only :class:`DriftwatchError` naming the file. Nothing else — no KeyError,
TypeError or crash from a crafted file.
"""

from __future__ import annotations

import json

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftwatch.errors import DriftwatchError, SuiteError
from driftwatch.reference import FINGERPRINT_PARTS, FORMAT_VERSION, Reference
from driftwatch.suite import ProbeSuite

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),  # unicode of every kind, surrogates excepted (not JSON-encodable)
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)
item_like = st.fixed_dictionaries(
    {},
    optional={
        key: json_values
        | st.sampled_from(["C1", "choice", "target", "generate", "distribution", "x"])
        for key in (
            "id", "capability", "kind", "prompt", "choices", "answer", "target", "text",
            "check", "chat", "max_new_tokens", "history", "group", "tags", "meta",
        )
    },
)  # fmt: skip
MANIFEST = {"format": 1, "capabilities": [{"id": "C1", "group": "CAN", "files": ["c1.jsonl"]}]}


def load_suite(root):
    try:
        ProbeSuite.load(root)
    except SuiteError as err:
        assert err.problems and all(p.path for p in err.problems), err


@FUZZ
@given(line=item_like | json_values, raw=st.binary(max_size=300), manifest=json_values)
def test_suite_loader_raises_only_suite_errors(tmp_path_factory, line, raw, manifest):
    root = tmp_path_factory.mktemp("suite")
    (root / "manifest.json").write_text(json.dumps(MANIFEST), encoding="utf-8")
    (root / "c1.jsonl").write_text(json.dumps(line) + "\n", encoding="utf-8")
    load_suite(root)
    (root / "c1.jsonl").write_bytes(raw)  # random bytes: bad UTF-8, NULs, half lines
    load_suite(root)
    (root / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    load_suite(root)


def load_reference(path):
    try:
        Reference.load(path)
    except DriftwatchError as err:
        assert str(path) in str(err)


@FUZZ
@given(raw=st.binary(max_size=400))
def test_reference_loader_on_random_bytes(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("ref") / "ref.safetensors"
    path.write_bytes(raw)
    load_reference(path)


TENSORS = [
    "values/score",
    "values/kl",
    "choice/option_logprobs",
    "generate/offsets",
    "generate/tokens",
    "distribution/topk_logprobs",
    "distribution/topk_ids",
    "distribution/continuation_offsets",
    "distribution/continuation_tokens",
]


@FUZZ
@given(
    names=st.sets(st.sampled_from(TENSORS)),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.int32, torch.int64, torch.uint8]),
    shape=st.lists(st.integers(0, 4), max_size=3),
    values=st.integers(-3, 3),
    complete=st.booleans(),
)
def test_reference_loader_on_crafted_safetensors(
    tmp_path_factory, names, dtype, shape, values, complete
):
    """Well-formed safetensors files whose tensors have the wrong shapes, types or offsets."""
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("ref") / "ref.safetensors"
    metadata = {part: "x" for part in FINGERPRINT_PARTS} if complete else {}
    metadata["format"] = FORMAT_VERSION
    tensors = {n: torch.full(shape, values).to(dtype) for n in names}
    save_file(tensors, str(path), metadata=metadata)
    load_reference(path)
