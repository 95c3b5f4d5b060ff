"""Requests laid out in batches (driftwatch/runner/layout.py), checked without a model: every
scored position is where the layout says, budgets hold, padding stays small."""

from __future__ import annotations

import math

import pytest
import torch

from driftwatch.memory import Budget
from driftwatch.runner.layout import (
    MAX_PAD_SHARE,
    Scored,
    cached_batches,
    continuation_row,
    generation_batches,
    loglik_rows,
    pack_rows,
)

CPU = torch.device("cpu")
# (prompt, continuations, first continuation id): a two-option item and a one-option item
REQUESTS = [([1, 2, 3], [[4, 5], [6]], 0), ([7, 8], [[9, 10, 11]], 2)]


def test_scored_positions_are_distinct_sorted_and_own_their_queries():
    # positions 5 and 2 are read twice (two options share a prompt's last position)
    queries = [(5, 10, 0), (2, 11, 1), (5, 12, 2), (2, 13, 3), (7, 14, 4)]
    scored = Scored.of(queries, CPU)
    assert scored.gather.tolist() == [2, 5, 7]
    assert scored.starts == [0, 2, 4, 5]
    for lo in range(3):  # the queries of position lo are starts[lo]..starts[lo+1]
        a, b = scored.starts[lo], scored.starts[lo + 1]
        assert set(scored.owners[a:b].tolist()) == {lo}
    seen = set(zip(scored.gather[scored.owners].tolist(), scored.targets.tolist(), strict=True))
    assert seen == {(at, t) for at, t, _ in queries}


def test_packed_rows_hold_the_prompt_once_and_never_feed_an_option_s_last_token():
    packed = loglik_rows(REQUESTS, "packed")
    assert len(packed) == 2  # one row per request
    tokens, segments, positions, queries = packed[0]
    assert tokens == [1, 2, 3, 4]  # prompt, then option 0 without its last token; option 1
    assert segments == [0, 0, 0, 1]  # (one token) needs no position of its own
    assert positions == [0, 1, 2, 3]
    # option 0: token 4 read at the prompt's last position, 5 after 4; option 1: 6 at the prompt's
    assert sorted(queries) == [(2, 4, 0), (2, 6, 1), (3, 5, 0)]


def test_concatenated_rows_repeat_the_prompt_per_option():
    rows = loglik_rows(REQUESTS, "concatenated")
    assert [r[0] for r in rows] == [[1, 2, 3, 4], [1, 2, 3], [7, 8, 9, 10]]
    assert all(set(r[1]) <= {0, 1} for r in rows)  # each row: the prompt and one option
    assert [q for r in rows for q in r[3]][-3:] == [(1, 9, 2), (2, 10, 2), (3, 11, 2)]


@pytest.mark.parametrize("budget", [4, 8, 64])
def test_pack_rows_keeps_to_the_budget_and_to_little_padding(budget):
    gen = torch.Generator().manual_seed(budget)
    rows = []
    for k in range(20):
        n = int(torch.randint(2, 12, (1,), generator=gen))
        tokens = list(range(100, 100 + n))
        rows.append((tokens, [0] * n, list(range(n)), [(n - 2, tokens[-1], k)]))
    batches = pack_rows(rows, Budget(budget), 0, CPU)
    assert sum(b.input_ids.shape[0] for b in batches) == 20
    for b in batches:
        count, width = b.input_ids.shape
        assert count == 1 or count * width <= budget  # a row too long gets a pass of its own
        lengths = (b.segments >= 0).sum(dim=1).tolist()
        assert max(lengths) == width
        assert min(lengths) >= math.ceil(width * (1 - MAX_PAD_SHARE)) or count == 1
    # every query survives, at its row's offset in the flattened batch
    slots = sorted(s for b in batches for s in b.scored.slots.tolist())
    assert slots == list(range(20))


def test_rows_are_trimmed_after_their_last_scored_position():
    row = ([1, 2, 3, 4, 5], [0] * 5, list(range(5)), [(1, 3, 0)])
    (batch,) = pack_rows([row], Budget(64), 0, CPU)
    assert batch.input_ids.tolist() == [[1, 2]]  # positions 2.. change nothing read


def test_a_continuation_row_scores_only_the_reply():
    tokens, _, _, queries = continuation_row([1, 2], [3, 4, 5], first_slot=10)
    assert tokens == [1, 2, 3, 4, 5]
    assert queries == [(1, 3, 10), (2, 4, 11), (3, 5, 12)]


def test_cached_batches_expand_each_prompt_over_its_options():
    (batch,) = cached_batches(REQUESTS, Budget(256), 0, CPU)
    assert batch.prompt_ids.shape == (2, 3) and batch.option_ids.shape == (3, 3)
    assert batch.expand.tolist() == [0, 0, 1]  # option rows continue prompt rows
    # options start where their prompt ends
    assert batch.option_positions[:, 0].tolist() == [3, 3, 2]
    small = cached_batches(REQUESTS, Budget(12), 0, CPU)
    assert len(small) == 2  # prompt rows plus option rows, each as wide as prompt + option


def test_generation_batches_mix_budgets_and_fit_the_longest_prompt():
    prompts = [([1] * 3, 8, 0), ([2] * 9, 2, 1), ([3] * 5, 4, 2)]
    (batch,) = generation_batches(prompts, Budget(1000), 0, CPU)
    assert batch.max_new_tokens == 8 and batch.input_ids.shape == (3, 9)
    assert dict(zip(batch.items, batch.budgets, strict=True)) == {0: 8, 1: 2, 2: 4}
    real = batch.attention_mask.sum(dim=1).tolist()  # left padding is masked out
    assert dict(zip(batch.items, real, strict=True)) == {0: 3, 1: 9, 2: 5}
    small = generation_batches(prompts, Budget(2 * (9 + 8)), 0, CPU)
    assert [len(b.items) for b in small] == [2, 1]
    assert all(
        b.input_ids.shape[0] * (b.input_ids.shape[1] + b.max_new_tokens) <= 34 for b in small
    )
