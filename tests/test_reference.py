"""Reference files: bit-exact round trip, fingerprint mismatches named, atomic writes, cache."""

from __future__ import annotations

import json
import os

import pytest
import torch

from driftwatch.errors import DriftwatchError, ReferenceMismatchError
from driftwatch.reference import (
    FINGERPRINT_PARTS,
    Reference,
    cache_path,
    fingerprint,
    parameter_checksum,
    probe_settings,
)
from driftwatch.runner import compile_suite, run_probes
from driftwatch.session import load_or_build
from driftwatch.suite import ProbeSuite
from tests.conftest import build_model, build_tokenizer

SETTINGS = probe_settings(topk=8)


@pytest.fixture
def built(model, tokenizer, tmp_path):
    suite = ProbeSuite.load("smoke")
    compiled = compile_suite(suite, tokenizer, model)
    result = run_probes(model, compiled, tokenizer, record_topk=8)
    fp = fingerprint(suite, tokenizer, model, SETTINGS)
    ref = Reference.from_result(result, fp, suite.name)
    return ref, ref.save(tmp_path / "ref.safetensors"), compiled


def test_round_trip_is_bit_exact(built):
    ref, path, _ = built
    back = Reference.load(path)
    assert back.metadata == ref.metadata
    assert set(back.values) == set(ref.values)
    for name, tensor in ref.values.items():
        assert back.values[name].dtype == tensor.dtype
        assert torch.equal(back.values[name].nan_to_num(7.0), tensor.nan_to_num(7.0))
        assert torch.equal(back.values[name].isnan(), tensor.isnan())
    assert torch.equal(back.option_logprobs, ref.option_logprobs)
    assert back.generated == ref.generated and any(back.generated)
    assert ref.topk is not None and back.topk is not None
    assert all(torch.equal(a, b) for a, b in zip(back.topk, ref.topk, strict=True))


def test_each_fingerprint_mismatch_is_named(built, tokenizer):
    _, path, _ = built
    suite = ProbeSuite.load("smoke")
    base = build_model(tokenizer)
    expected = fingerprint(suite, tokenizer, base, SETTINGS)
    Reference.load(path).check(expected)  # matches itself

    other_suite = ProbeSuite.from_items(suite.items[:5], name="smoke")
    other_tok = build_tokenizer(chat_template="{{ messages }}")
    moved = build_model(tokenizer)
    with torch.no_grad():
        next(moved.parameters()).add_(0.5)
    deeper = build_model(tokenizer, context=1024)
    cases = {
        "suite": fingerprint(other_suite, tokenizer, base, SETTINGS),
        "tokenizer": fingerprint(suite, other_tok, base, SETTINGS),
        "model": fingerprint(suite, tokenizer, deeper, SETTINGS),
        "parameters": fingerprint(suite, tokenizer, moved, SETTINGS),
        "precision": fingerprint(
            suite, tokenizer, build_model(tokenizer, dtype=torch.bfloat16), SETTINGS
        ),
        "settings": fingerprint(suite, tokenizer, base, probe_settings(topk=16)),
    }
    for part, fp in cases.items():
        with pytest.raises(ReferenceMismatchError) as info:
            Reference.load(path).check(fp)
        assert info.value.part == part
        assert f"reference {part} mismatch" in str(info.value) and str(path) in str(info.value)


def test_other_format_version_is_refused(built, tmp_path):
    ref, _, _ = built
    ref.metadata["format"] = "99"
    path = ref.save(tmp_path / "future.safetensors")
    with pytest.raises(ReferenceMismatchError, match="format"):
        Reference.load(path)


@pytest.mark.parametrize("content", [b"", b"not a safetensors file at all", b"\x10" * 64])
def test_garbage_files_are_refused_with_the_path(tmp_path, content):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(DriftwatchError, match=r"bad\.safetensors"):
        Reference.load(path)


def test_truncated_file_is_refused(built, tmp_path):
    _, path, _ = built
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DriftwatchError, match=r"cut\.safetensors"):
        Reference.load(cut)


def test_save_is_atomic(built, tmp_path, monkeypatch):
    ref, path, _ = built
    before = path.read_bytes()

    def failing_save(*args, **kwargs):
        with open(args[1], "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", failing_save)
    with pytest.raises(OSError, match="disk full"):
        ref.save(path)
    assert path.read_bytes() == before, "the previous file is intact"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_cache_is_keyed_by_fingerprint_and_reused(model, tokenizer, cache, monkeypatch):
    suite = ProbeSuite.load("smoke")
    compiled = compile_suite(suite, tokenizer, model)
    first, reused = load_or_build(model, tokenizer, compiled, settings=SETTINGS)
    assert not reused and first.path is not None and first.path.parent == cache / "references"
    mtime = os.stat(first.path).st_mtime_ns

    calls = []
    monkeypatch.setattr(
        "driftwatch.session.run_probes", lambda *a, **k: calls.append(1)
    )  # must not be called again
    second, reused = load_or_build(model, tokenizer, compiled, settings=SETTINGS)
    assert reused and second.path == first.path and calls == []
    assert os.stat(first.path).st_mtime_ns == mtime
    other = cache_path(fingerprint(suite, tokenizer, model, probe_settings(topk=9)), suite.name)
    assert other != first.path


def test_given_reference_accepts_trained_weights_but_not_another_suite(built, tokenizer):
    _, path, compiled = built
    trained = build_model(tokenizer)
    with torch.no_grad():
        for p in trained.parameters():
            p.mul_(1.01)
    ref, reused = load_or_build(trained, tokenizer, compiled, settings=SETTINGS, path=path)
    assert reused and ref.path == path
    small = ProbeSuite.from_items(compiled.suite.items[:4], name="smoke")
    with pytest.raises(ReferenceMismatchError, match="suite"):
        load_or_build(
            trained,
            tokenizer,
            compile_suite(small, tokenizer, trained),
            settings=SETTINGS,
            path=path,
        )


def test_parameter_checksum_is_cheap_and_sensitive(tokenizer):
    a, b = build_model(tokenizer), build_model(tokenizer)
    assert parameter_checksum(a) == parameter_checksum(b)
    with torch.no_grad():
        a.lm_head.weight[0, 0] += 1e-3  # the first element is always sampled
    assert parameter_checksum(a) != parameter_checksum(b)


def test_metadata_holds_every_fingerprint_part(built):
    _, path, _ = built
    meta = Reference.load(path).metadata
    assert set(FINGERPRINT_PARTS) <= set(meta)
    assert json.loads(meta["settings"]) == SETTINGS
    assert meta["precision"] == "float32" and meta["suite_name"] == "smoke"
