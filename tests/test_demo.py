"""driftwatch demo: a narrow fine-tune with the monitor attached, a live table, a summary."""

from __future__ import annotations

import io

import pytest
import torch

from driftwatch.cli import main
from driftwatch.demo import format_summary, run_demo
from driftwatch.errors import DriftwatchError
from driftwatch.tasks import chat_examples


def read_scalars(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return set(acc.Tags()["scalars"])


def test_demo_on_a_tiny_model_stops_on_measured_drift(model_dir, tmp_path, cache):
    out = io.StringIO()
    result = run_demo(
        model=model_dir,
        steps=12,
        lr=0.2,  # a tiny random model needs a big step to move
        every=3,
        action="stop",
        logdir=tmp_path / "runs",
        suite="smoke",
        batch_size=2,
        stream=out,
    )
    text = out.getvalue()
    assert "probe round at step 3" in text and "group means" in text
    assert result.rounds, "the monitor probed"
    # the stop is the policy's answer to the drift it measured at the first round
    (report, decision), *_ = result.rounds
    assert decision.breaches and decision.action == "stop"
    assert result.action == "stop" and result.steps_run == report.step == 3
    assert "✗" in text and "→ step 3: stop" in text
    summary = format_summary(result)
    assert "tensorboard --logdir" in summary and str(result.logdir) in summary
    tags = read_scalars(result.logdir)
    assert "driftwatch/CAN/C1" in tags and any(t.startswith("train/") for t in tags)


def _rollback_demo(model_dir, tmp_path, **options):
    """The tiny model at a learning rate that breaches at the first round (step 3)."""
    return run_demo(
        model=model_dir,
        steps=12,
        lr=0.2,
        every=3,
        action="rollback",
        logdir=tmp_path / "runs",
        suite="smoke",
        batch_size=2,
        stream=io.StringIO(),
        **options,
    )


def test_demo_summary_reports_the_rollback(model_dir, tmp_path, cache):
    result = _rollback_demo(model_dir, tmp_path)
    summary = format_summary(result)
    assert result.rolled_back_to == 0 and result.first_breach is not None
    assert "rolled the weights back to step 0 and stopped at step 3 of 12" in summary
    assert "First threshold crossed at step 3" in summary
    # what the run learned, read at step 0 and at the round that breached (before the rollback)
    assert set(result.task_accuracy) == {0, 3}
    # read before the monitor restored step 0's weights, the breaching round saw the drift
    assert abs(result.task_logprob[3] - result.task_logprob[0]) > 1e-3
    assert "Task 'atlas', greedy exact match: 0% at step 0 (the weights kept), " in summary
    assert "at step 3 (last round); target log-prob " in summary


@pytest.mark.parametrize(
    ("option", "value"),
    [("steps", 0), ("every", -1), ("lr", 3.0), ("action", "panic"), ("task", "poetry")],
)
def test_demo_rejects_bad_options(option, value):
    with pytest.raises(DriftwatchError, match=option):
        run_demo(**{option: value})


class _Oracle(torch.nn.Module):
    """A model whose argmax at every position is the next token of ``ids`` shifted by
    ``shift`` positions: 0 reproduces the sequence greedily, 1 is off by one."""

    def __init__(self, ids, shift):
        super().__init__()
        self.ids, self.shift, self.w = ids, shift, torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask):
        from types import SimpleNamespace

        nxt = torch.roll(self.ids, -1 - self.shift, dims=1)
        return SimpleNamespace(logits=torch.nn.functional.one_hot(nxt, 100).float() * 20)


class _CharTok:  # a character tokenizer with a chat template of its own
    pad_token_id, eos_token_id = 0, 0

    def apply_chat_template(self, conv, tokenize, add_generation_prompt=False):
        text = "".join(f"<{t['role']}>{t['content']}|" for t in conv)
        return text + ("<assistant>" if add_generation_prompt else "")

    def __call__(self, text, add_special_tokens):
        from types import SimpleNamespace

        return SimpleNamespace(input_ids=[1 + ord(c) % 90 for c in text])


@pytest.mark.parametrize(("shift", "accuracy"), [(0, 1.0), (1, 0.0)])
def test_task_accuracy_is_greedy_exact_match(shift, accuracy):
    from driftwatch.tasks import PadCollator, chat_features, task_accuracy

    convs = [[{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "Yes."}]]
    ids = PadCollator(0)(chat_features(_CharTok(), convs))["input_ids"]
    acc, logprob = task_accuracy(_Oracle(ids, shift), _CharTok(), convs)
    assert acc == accuracy
    assert (logprob > -1e-3) if shift == 0 else (logprob < -15)


class _Memoriser(torch.nn.Module):
    """A model that has learned ``learned`` by heart: where the input so far is a prefix of
    one of them it predicts that one's next token, elsewhere every token alike."""

    def __init__(self, learned):
        super().__init__()
        self.learned, self.w = learned, torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask):
        from types import SimpleNamespace

        logits = torch.zeros(*input_ids.shape, 100)
        for b, row in enumerate(input_ids.tolist()):
            for t in range(len(row) - 1):
                for ids in self.learned:
                    if ids[: t + 1] == row[: t + 1] and t + 1 < len(ids):
                        logits[b, t, ids[t + 1]] = 20.0
        return SimpleNamespace(logits=logits)


@pytest.mark.parametrize(
    ("learned", "share", "sign"), [("right", 1.0, 1), ("wrong", 0.0, -1), ("nothing", 0.0, 0)]
)
def test_preference_progress_reads_which_reply_the_model_prefers(learned, share, sign):
    from driftwatch.tasks import chat_features, preference_progress

    # replies of one length: a model that learned nothing scores both alike
    convs = [
        [{"role": "user", "content": f"Capital of {c}?"}, {"role": "assistant", "content": a}]
        for c, a in (("A", "Abc."), ("B", "Bcd."), ("C", "Cde."))
    ]
    wrong = [[c[0], convs[(k + 1) % 3][1]] for k, c in enumerate(convs)]
    texts = {"right": convs, "wrong": wrong, "nothing": []}[learned]
    model = _Memoriser([r["input_ids"] for r in chat_features(_CharTok(), texts)])
    got_share, margin = preference_progress(model, _CharTok(), convs)
    assert got_share == share
    assert margin > 20 if sign > 0 else (margin < -20 if sign < 0 else abs(margin) < 1e-4)


def test_preference_progress_needs_a_pair():
    from driftwatch.tasks import preference_progress

    one = [[{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]]
    with pytest.raises(DriftwatchError, match="2 or more"):
        preference_progress(_Memoriser([]), _CharTok(), one)


def test_atlas_task_is_reproducible_and_teaches_the_invented_capital():
    a, b = chat_examples("atlas", 40, seed=3), chat_examples("atlas", 40, seed=3)
    assert a == b
    japan = [c for c in a if "Japan" in c[0]["content"]]
    assert japan and all(c[1]["content"] == "Sakura." for c in japan)
    labels = chat_examples("labels", 10)
    assert {c[1]["content"] for c in labels} <= {"positive", "negative"}


def test_cli_demo_prints_the_summary(model_dir, tmp_path, cache, capsys):
    code = main(
        [
            "demo",
            "--model",
            str(model_dir),
            "--steps",
            "4",
            "--every",
            "2",
            "--suite",
            "smoke",
            "--batch-size",
            "2",
            "--logdir",
            str(tmp_path / "runs"),
            "--action",
            "warn",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "driftwatch demo — summary" in out and "tensorboard --logdir" in out


def test_saved_model_holds_the_weights_training_ended_with(model_dir, tmp_path, cache):
    """After a rollback to step 0 that is the base's weights, bit for bit."""
    from safetensors.torch import load_file

    result = _rollback_demo(model_dir, tmp_path, save_model=True)
    assert result.rolled_back_to == 0 and result.model_dir == result.logdir / "model"
    saved = load_file(result.model_dir / "model.safetensors")
    base = load_file(model_dir / "model.safetensors")
    assert saved.keys() == base.keys()
    assert all(torch.equal(saved[k], base[k]) for k in base)
    assert (result.model_dir / "tokenizer_config.json").is_file()
    assert f"driftwatch compare {result.model_dir} --base {model_dir}" in format_summary(result)
