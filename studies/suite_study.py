"""Measurements behind docs/suites.md: base scores, the noise floor, and a damaged model.

    python studies/suite_study.py scores --suite quick --suite standard
    python studies/suite_study.py noise --suite quick --suite standard
    python studies/suite_study.py damage --suite quick --suite standard --steps 30
    python studies/suite_study.py intervals --suite quick --suite OLD_QUICK_FOLDER
    python studies/suite_study.py precision --suite quick --autocast bf16

``scores``  the base model's value of every capability's headline metric, with the chance level
            of multiple-choice capabilities (mean of 1 / options) and a few sample replies of
            each generation-scored capability.
``noise``   Δ between two references of the same model built with different token budgets
            (4096 and --second-budget) and the items in a different (seeded) order: what pure
            numerical noise looks like, per capability.
``damage``  fine-tunes the model on the narrow ``atlas`` task (driftwatch.tasks) for ``--steps``
            steps at ``--lr``, then measures drift against the base references; a capability
            drifts *significantly* when its 95% interval excludes 0.
``intervals`` per capability and named metric, the half-width of the 95% interval of its
            base value over the suite's items (1.96 standard errors: of the mean, or for a
            spread of the standard deviation, by jackknife), in % of the base value: how far
            a capability's score on these items can sit from the model's score on the
            population they are drawn from, so roughly the smallest Δ% a round can tell
            from the luck of the draw.
``precision`` with ``--autocast bf16`` (or fp16): a reference and a round both under that
            autocast (Δ should be exactly 0, with draft and with plain decoding), then rounds in
            that autocast against the fp32 reference of the same weights (the drift of the
            change of precision alone, which the reference's ``compute`` fingerprint refuses
            unless asked for by name). ``noise`` with ``--autocast`` runs both builds under it.

Results go to ``studies/results/suite_study_<mode>.json``. Uses the bundled
SmolLM2-135M-Instruct on the CPU unless ``--model``/``--device`` say otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from driftwatch.drift import DriftReport, MetricDrift, compare
from driftwatch.formatting import significant
from driftwatch.models import load_model
from driftwatch.reference import Reference
from driftwatch.runner import (
    Compute,
    compile_suite,
    detect_compute,
    generate_continuations,
    run_probes,
)
from driftwatch.session import ProbeSession
from driftwatch.settings import ReferenceSpec
from driftwatch.suite import ProbeSuite
from driftwatch.tasks import chat_examples

RESULTS = Path(__file__).resolve().parent / "results"


def _reference(
    model: Any, tokenizer: Any, suite: ProbeSuite, budget: int, compute: Compute | None = None
) -> tuple[Any, Reference]:
    started = time.perf_counter()
    session = ProbeSession.open(model, tokenizer, suite, token_budget=budget, compute=compute)
    print(
        f"  reference {suite.name}: {'reused' if session.reused else 'built'} "
        f"({time.perf_counter() - started:.1f}s) {session.reference.path}",
        flush=True,
    )
    return session.compiled, session.reference


def _chance(suite: ProbeSuite, cap: str) -> float | None:
    items = suite.items_of(cap)
    if not items or any(i.kind != "choice" for i in items):
        return None
    return sum(1 / len(i.choices) for i in items) / len(items)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows)


def scores(args: argparse.Namespace, model: Any, tokenizer: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in args.suite:
        suite = ProbeSuite.load(name)
        compiled, ref = _reference(model, tokenizer, suite, args.token_budget)
        # the reference already holds the base replies: decode them instead of generating again
        texts = [tokenizer.decode(ids, skip_special_tokens=True) for ids in ref.generated]
        caps: dict[str, Any] = {}
        rows = [["capability", "metric", "items", "base", "chance"]]
        gen_index = {s: k for k, s in enumerate(compiled.gen_items)}
        itself = compare(ref.values, ref.values, suite, step=0)  # every metric's base value
        for cap in suite.capabilities:
            idx = [k for k, i in enumerate(suite.items) if i.capability == cap.id]
            drift = itself.capabilities[cap.id]
            parts = {p: drift.metrics[p].base for p in drift.parts}
            base = drift.headline.base if not parts else math.nan
            chance = _chance(suite, cap.id)
            samples = [
                {"id": suite.items[k].id, "reply": texts[gen_index[k]]}
                for k in idx[: args.samples]
                if k in gen_index
            ]
            caps[cap.id] = {
                "group": cap.group,
                "metric": cap.metric,
                "items": len(idx),
                "base": base,
                "metrics": parts,
                "chance": chance,
                "samples": samples,
            }
            rows.append(
                [
                    f"{cap.id} {cap.name}",
                    cap.metric,
                    str(len(idx)),
                    "0 (by definition)" if cap.metric == "kl" else "" if parts else f"{base:.3f}",
                    "" if chance is None else f"{chance:.3f}",
                ]
            )
            for d in cap.metrics:
                chosen = sum(d.selects(suite.items[k]) for k in idx)
                stat = f"{d.stat}({d.metric})"
                rows.append([f"  └ {d.name}", stat, str(chosen), f"{parts[d.name]:.3f}", ""])
        print(f"\n{suite.name}: {len(suite)} items\n{_table(rows)}")
        for cid, cap in caps.items():
            for s in cap["samples"]:
                print(f"  {cid} {s['id']}: {s['reply'][:160]!r}")
        out[suite.name] = {"capabilities": caps}
    return out


def noise(args: argparse.Namespace, model: Any, tokenizer: Any) -> dict[str, Any]:
    """The same model twice: the reference (budget 4096, suite order) against a second build
    with budget ``--second-budget`` and the items shuffled. Accuracy-type and generation
    metrics come from the second build itself; D's KL is the second layout's distributions
    against the reference's top-k along the same base continuations."""
    out: dict[str, Any] = {}
    for name in args.suite:
        suite = ProbeSuite.load(name)
        compute = detect_compute(model, args.autocast)
        compiled, ref = _reference(model, tokenizer, suite, 4096, compute)
        order = list(range(len(suite)))
        random.Random(7).shuffle(order)  # order[new position] = original index
        shuffled = replace(suite, items=tuple(suite.items[k] for k in order))
        other = compile_suite(
            shuffled, tokenizer, model, token_budget=args.second_budget, compute=compute
        )
        started = time.perf_counter()
        own = generate_continuations(model, other)
        rebuilt = run_probes(model, other.with_continuations(own), tokenizer, record_topk=32)
        back = torch.tensor([order.index(k) for k in range(len(order))])
        values = {m: v[back] for m, v in rebuilt.values.items()}
        # D: the other layout scored against the reference, along the reference's replies
        pending = {s: n for n, s in enumerate(compiled.pending_items)}
        conts = [ref.continuations[pending[order[s]]] for s in other.pending_items]
        scored = other.with_continuations(conts)
        perm = _position_map(compiled, scored, order)
        kl = run_probes(model, scored, tokenizer, base_topk=(ref.topk[0][perm], ref.topk[1][perm]))
        values["kl"] = kl.values["kl"][back]
        values["top1_agreement"] = kl.values["top1_agreement"][back]
        report = compare(values, ref.values, suite, step=0)
        caps = {}
        rows = [["capability", "metric", "base", "Δ (abs)", "Δ%"]]
        for cid, h in _lines(report):
            caps[cid] = {"metric": h.metric, "base": h.base, "delta": h.delta, "pct": h.delta_pct}
            pct = "" if h.delta_pct is None else f"{h.delta_pct:+.3f}"
            rows.append([cid, h.metric, f"{h.base:.4f}", f"{h.delta:+.2e}", pct])
        ordinal = {s: n for n, s in enumerate(other.gen_items)}
        inverse = {k: pos for pos, k in enumerate(order)}
        again = [rebuilt.generated[ordinal[inverse[s]]] for s in compiled.gen_items]
        same = sum(a == b for a, b in zip(ref.generated, again, strict=True))
        same_conts = sum(
            a == b
            for a, b in zip(ref.continuations, _reorder(own, other, compiled, order), strict=True)
        )
        seconds = time.perf_counter() - started
        print(
            f"\n{suite.name} in {compute.name}: budget 4096 vs {args.second_budget}, shuffled "
            f"order ({seconds:.0f}s)"
        )
        print(_table(rows))
        print(
            f"  identical greedy replies: {same}/{len(again)}; identical D continuations: "
            f"{same_conts}/{len(own)}; largest |Δ| of a per-item log-prob: "
            f"{_max_logprob_gap(values, ref.values):.2e}"
        )
        out[suite.name] = {
            "compute": compute.name,
            "second_budget": args.second_budget,
            "capabilities": caps,
            "identical_replies": [same, len(again)],
            "identical_continuations": [same_conts, len(own)],
            "max_logprob_gap": _max_logprob_gap(values, ref.values),
        }
    return out


def _reorder(own: list[list[int]], other: Any, compiled: Any, order: list[int]) -> list[list[int]]:
    """``other``'s continuations in ``compiled``'s pending order."""
    inverse = {k: pos for pos, k in enumerate(order)}
    at = {s: n for n, s in enumerate(other.pending_items)}
    return [own[at[inverse[s]]] for s in compiled.pending_items]


def _position_map(compiled: Any, other: Any, order: list[int]) -> torch.Tensor:
    """For every distribution position of ``other``, the same position in ``compiled``."""
    start = {s: int(compiled.dist_offsets[j]) for j, s in enumerate(compiled.dist_items)}
    perm: list[int] = []
    for j, s in enumerate(other.dist_items):
        length = int(other.dist_offsets[j + 1] - other.dist_offsets[j])
        first = start[order[s]]
        perm.extend(range(first, first + length))
    return torch.tensor(perm)


def _max_logprob_gap(now: dict[str, torch.Tensor], base: dict[str, torch.Tensor]) -> float:
    gaps = [
        (now[m] - base[m]).abs()[torch.isfinite(base[m])].max().item()
        for m in ("gold_logprob", "logprob")
        if m in base and bool(torch.isfinite(base[m]).any())
    ]
    return max(gaps, default=0.0)


def _train(model: Any, tokenizer: Any, steps: int, lr: float, batch: int, seed: int) -> list[float]:
    torch.manual_seed(seed)
    data = chat_examples("atlas", steps * batch, seed=seed)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        rows = data[step * batch : (step + 1) * batch]
        ids, labels = [], []
        for conv in rows:
            prompt = tokenizer.apply_chat_template(
                conv[:1], tokenize=False, add_generation_prompt=True
            )
            full = tokenizer.apply_chat_template(conv, tokenize=False)
            p = tokenizer(prompt, add_special_tokens=False).input_ids
            f = tokenizer(full, add_special_tokens=False).input_ids
            ids.append(f)
            labels.append([-100] * len(p) + f[len(p) :])
        width = max(len(x) for x in ids)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids])
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
        target = torch.tensor([y + [-100] * (width - len(y)) for y in labels])
        loss = model(input_ids=input_ids, attention_mask=mask, labels=target).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def damage(args: argparse.Namespace, model: Any, tokenizer: Any) -> dict[str, Any]:
    suites = [ProbeSuite.load(n) for n in args.suite]
    refs = {s.name: _reference(model, tokenizer, s, args.token_budget) for s in suites}
    started = time.perf_counter()
    losses = _train(model, tokenizer, args.steps, args.lr, args.batch, args.seed)
    print(
        f"\ntrained {args.steps} steps at lr {args.lr}: loss {losses[0]:.3f} → {losses[-1]:.3f} "
        f"({time.perf_counter() - started:.0f}s)"
    )
    out: dict[str, Any] = {
        "steps": args.steps,
        "lr": args.lr,
        "batch": args.batch,
        "losses": losses,
    }
    for suite in suites:
        compiled, ref = refs[suite.name]
        result = run_probes(model, compiled, tokenizer, base_topk=ref.topk)
        report = compare(result.values, ref.values, suite, step=args.steps)
        out[suite.name] = _report_json(report)
        print(f"\n{suite.name} after {args.steps} steps ({result.seconds:.1f}s):")
        _print_report(report)
        sample = [
            k
            for k, s in enumerate(compiled.gen_items)
            if suite.items[s].capability in ("W3a", "H1")
        ][:3]
        for k in sample:
            print(f"  {suite.items[compiled.gen_items[k]].id}: {result.texts[k][:120]!r}")
    return out


def _lines(report: DriftReport) -> list[tuple[str, MetricDrift]]:
    """Every capability's headline, each followed by its named metrics (``W1.unsafe_refusal``)."""
    out = []
    for cid, c in report.capabilities.items():
        out.append((cid, c.headline))
        out += [(f"{cid}.{p}", c.metrics[p]) for p in c.parts]
    return out


def _report_json(report: DriftReport) -> dict[str, Any]:
    return {
        cid: {
            "metric": h.metric,
            "base": h.base,
            "now": h.now,
            "delta": h.delta,
            "delta_pct": h.delta_pct,
            "ci": [h.ci_low, h.ci_high],
            "ci_pct": [h.ci_low_pct, h.ci_high_pct],
            "significant": significant(h),
        }
        for cid, h in _lines(report)
    }


def _print_report(report: DriftReport) -> None:
    rows = [["capability", "metric", "base", "now", "Δ%", "95% CI of Δ", "95% CI of Δ%", "sig."]]
    for cid, h in _lines(report):
        pct = f"{h.delta_pct:+.1f}" if h.delta_pct is not None else f"{h.delta:.4f} nats"
        pct_ci = "" if h.ci_low_pct is None else f"[{h.ci_low_pct:+.1f}, {h.ci_high_pct:+.1f}]"
        rows.append(
            [
                cid,
                h.metric,
                f"{h.base:.3f}",
                f"{h.now:.3f}",
                pct,
                f"[{h.ci_low:+.3f}, {h.ci_high:+.3f}]",
                pct_ci,
                "yes" if significant(h) else "",
            ]
        )
    print(_table(rows))


def _half_width_pct(values: torch.Tensor, stat: str) -> float:
    """1.96 standard errors of the mean (or, for ``std``, of the standard deviation, by
    jackknife) of ``values``, in % of that statistic."""
    x = values[~values.isnan()].double()
    n = len(x)
    if stat == "std":
        value = float(x.std())
        loo = torch.stack([torch.cat([x[:i], x[i + 1 :]]).std() for i in range(n)])
        se = math.sqrt((n - 1) / n * float(((loo - loo.mean()) ** 2).sum()))
    else:
        value = float(x.mean())
        se = float(x.std()) / math.sqrt(n)
    return math.nan if value == 0 else 100 * 1.96 * se / abs(value)


def intervals(args: argparse.Namespace, model: Any, tokenizer: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in args.suite:
        suite = ProbeSuite.load(name)
        _, ref = _reference(model, tokenizer, suite, args.token_budget)
        rows = [["capability", "items", "95% half-width at base"]]
        caps: dict[str, Any] = {}
        for cap in suite.capabilities:
            idx = [k for k, i in enumerate(suite.items) if i.capability == cap.id]
            if cap.metric == "kl":  # 0 at base by definition: its line is in nats
                caps[cap.id] = {"items": len(idx), "half_width_pct": None}
                rows.append([cap.id, str(len(idx)), "— (KL is 0 at base; its line is in nats)"])
                continue
            parts: dict[str, float] = {}
            for d in cap.metrics:
                chosen = [k for k in idx if d.selects(suite.items[k])]
                values = ref.values[d.metric][chosen]
                parts[d.name] = _half_width_pct(values, d.stat)
            if parts:  # the headline is the mean of the parts' Δ%: sqrt(Σ h²) / k
                half = math.sqrt(math.fsum(h * h for h in parts.values())) / len(parts)
            else:
                half = _half_width_pct(ref.values[cap.metric][idx], "mean")
            caps[cap.id] = {"items": len(idx), "half_width_pct": half, "metrics": parts}
            rows.append([cap.id, str(len(idx)), f"±{half:.1f}%"])
            for part, h in parts.items():
                count = sum(
                    d.selects(suite.items[k]) for d in cap.metrics if d.name == part for k in idx
                )
                rows.append([f"  └ {part}", str(count), f"±{h:.1f}%"])
        print(f"\n{suite.name}: {len(suite)} items\n{_table(rows)}")
        out[suite.name] = caps
    return out


def _identical(replies: list[list[int]], others: list[list[int]]) -> int:
    return sum(list(a) == list(b) for a, b in zip(replies, others, strict=True))


def precision(args: argparse.Namespace, model: Any, tokenizer: Any) -> dict[str, Any]:
    """Δ of rounds under ``--autocast`` against a reference built under it (draft and plain
    decoding), and against the fp32 reference of the same weights (asked for by name)."""
    compute = detect_compute(model, args.autocast)
    if not compute.autocast:
        raise SystemExit("precision: give --autocast bf16 or fp16")
    out: dict[str, Any] = {}
    for name in args.suite:
        suite = ProbeSuite.load(name)
        entry: dict[str, Any] = {"compute": compute.name}
        for decode in ("draft", "plain"):
            started = time.perf_counter()
            session = ProbeSession.open(model, tokenizer, suite, compute=compute, decode=decode)
            report, result = session.measure(model, step=0)
            largest = max(
                (
                    abs(h.delta)
                    for _, h in _lines(report)
                    if h.delta is not None and math.isfinite(h.delta)
                ),
                default=0.0,
            )
            same = _identical(result.generated, session.reference.generated)
            print(
                f"\n{suite.name}: {compute.name} round ({decode}) against a {compute.name} "
                f"reference: largest |Δ| {largest:.3g}, identical replies {same}/"
                f"{len(result.generated)}, round {result.seconds:.1f}s "
                f"({time.perf_counter() - started:.0f}s with the reference)"
            )
            entry[f"same_precision_{decode}"] = {
                "largest_abs_delta": largest,
                "identical_replies": [same, len(result.generated)],
                "round_seconds": result.seconds,
                "decode": result.decode,
            }
        fp32 = ProbeSession.open(model, tokenizer, suite, compute=detect_compute(model, "off"))
        spec = ReferenceSpec(
            path=str(fp32.reference.path), cross_precision=fp32.reference.metadata["compute"]
        )
        own = session.reference.generated  # the replies of the reference built in autocast
        entry["references_identical_replies"] = [
            _identical(own, fp32.reference.generated),
            len(own),
        ]
        for decode in ("draft", "plain"):
            crossed = ProbeSession.open(
                model, tokenizer, suite, reference=spec, compute=compute, decode=decode
            )
            report, result = crossed.measure(model, step=0)
            same = _identical(result.generated, fp32.reference.generated)
            print(
                f"\n{suite.name}: {compute.name} round ({decode}) against the float32 reference "
                f"(the change of precision alone); identical replies {same}/"
                f"{len(result.generated)}"
            )
            _print_report(report)
            entry[f"cross_precision_{decode}"] = {
                "report": _report_json(report),
                "identical_replies": [same, len(result.generated)],
            }
        print(
            f"\nthe {compute.name} and float32 references' replies: "
            f"{entry['references_identical_replies'][0]}/{len(own)} identical"
        )
        out[suite.name] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["scores", "noise", "damage", "intervals", "precision"])
    parser.add_argument("--suite", action="append", default=None)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--autocast", default="off", choices=["off", "bf16", "fp16"], help="noise, precision"
    )
    parser.add_argument("--token-budget", type=int, default=4096)
    parser.add_argument("--samples", type=int, default=3, help="sample replies per capability")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--second-budget", type=int, default=1024, help="noise: the second build's token budget"
    )
    args = parser.parse_args(argv)
    args.suite = args.suite or ["quick", "standard"]
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, tokenizer = load_model(args.model, device=args.device)
    result = {
        "mode": args.mode,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": args.model,
        "device": args.device,
        "torch": torch.__version__,
        "results": {
            "scores": scores,
            "noise": noise,
            "damage": damage,
            "intervals": intervals,
            "precision": precision,
        }[args.mode](args, model, tokenizer),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"suite_study_{args.mode}.json"
    path.write_text(json.dumps(result, indent=2, default=float) + "\n", encoding="utf-8")
    print(f"\nwrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
