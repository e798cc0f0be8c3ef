"""Stage-gate benchmark: transition checks/s (explain off and on) versus a hand-written baseline.

Workload (seeded): a 12-stage pipeline (10 open stages, won, lost) whose every forward
transition has 5 requirements — who (owner or owner's manager), a positive amount, a close date
not in the past, an attachment kind and a checklist item (the close-as-won transition also has
an approval) — plus ``any_open -> lost`` with a reason. N opportunities in random stages with
random evidence; each request asks for the next stage (70 %), ``lost`` (10 %) or a random stage
(20 %) by a random actor on a random channel.

The baseline is what a host would hand-write for exactly this graph: one dict lookup for the
transition and five ``if`` tests, returning the list of missing codes — no record validation,
no locations, no reasons, no effects, no idempotency keys. Both agree on every allow/refuse
(checked), so the ratio is the price of validation, explanations and effects.

Usage::

    python benchmarks/bench_stages.py [--checks 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from salesrules.policy import Policy, load_policy_string
from salesrules.stages import check_transition

CST = timezone(timedelta(hours=8))
NOW = datetime(2026, 12, 3, 10, tzinfo=CST)
OPEN = [f"s{i:02d}" for i in range(1, 11)]
CHANNELS = ["ui", "api", "automation", "import"]


def policy_text() -> str:
    lines = [
        "version: 1",
        "stages:",
        "  fields:",
        "    amount: { type: number }",
        "    close_date: { type: date }",
        "    loss_reason: { type: text }",
        "  attachment_kinds: {" + ", ".join(f"doc{i}: doc {i}" for i in range(1, 11)) + "}",
        "  checklist: {" + ", ".join(f"item{i}: item {i}" for i in range(1, 11)) + "}",
        "  approvals: { final: final approval }",
        "  roles: [sales_rep, sales_manager]",
        "  stages:",
        f"    - {{ id: {OPEN[0]}, label: 阶段1, initial: true }}",
        *(f"    - {{ id: {s}, label: 阶段{i + 1} }}" for i, s in enumerate(OPEN[1:], 1)),
        "    - { id: won, label: 赢单, terminal: won }",
        "    - { id: lost, label: 输单, terminal: lost }",
        "  transitions:",
    ]
    targets = [*OPEN[1:], "won"]
    for i, (src, dst) in enumerate(zip(OPEN, targets, strict=True), 1):
        approvals = "\n        approvals: [final]" if dst == "won" else ""
        lines += [
            f"    - id: t{i}",
            f"      from: {src}",
            f"      to: {dst}",
            "      who: { relations: [owner, owner_manager] }",
            "      require:",
            "        fields: [{ field: amount, gt: 0 }, { field: close_date, not_past: true }]",
            f"        attachments: [doc{i}]",
            f"        checklist: [item{i}]{approvals}",
            "      after:",
            "        - { do: notify, to: owner_manager, message: stage moved }",
        ]
    lines += [
        "    - id: lose",
        "      from: any_open",
        "      to: lost",
        "      require: { fields: [loss_reason], reason: true }",
    ]
    return "\n".join(lines) + "\n"


def workload(n: int, seed: int = 11) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for k in range(n):
        pos = rng.randrange(len(OPEN))
        stage = OPEN[pos]
        nxt = OPEN[pos + 1] if pos + 1 < len(OPEN) else "won"
        roll = rng.random()
        to = nxt if roll < 0.7 else "lost" if roll < 0.8 else rng.choice([*OPEN, "won", "lost"])
        n_docs = rng.randrange(0, 11)
        opp: dict[str, Any] = {
            "id": f"O-{k}",
            "stage": stage,
            "owner_id": f"r-{k % 17}",
            "owner_manager_id": f"m-{k % 3}",
            "amount": Decimal(rng.choice([0, 50_000, 1_200_000])),
            "close_date": rng.choice(["2026-12-31", "2027-03-01", "2026-11-01"]),
            "attachments": [{"kind": f"doc{rng.randrange(1, 11)}"} for _ in range(n_docs)]
            + ([{"kind": f"doc{pos + 1}"}] if rng.random() < 0.6 else []),
            "checklist": {f"item{pos + 1}": rng.random() < 0.8},
            "approvals": [{"kind": "final"}] if rng.random() < 0.7 else [],
        }
        if rng.random() < 0.5:
            opp["loss_reason"] = "价格"
        who = rng.random()
        actor_id = opp["owner_id"] if who < 0.6 else opp["owner_manager_id"] if who < 0.8 else "x"
        out.append(
            {
                "opp": opp,
                "to": to,
                "actor": {"id": actor_id, "roles": ["sales_rep"]},
                "channel": rng.choice(CHANNELS),
                "reason": "客户放弃" if rng.random() < 0.5 else None,
            }
        )
    return out


# --- the hand-written baseline, for exactly policy_text() -------------------------------------

_NEXT = dict(zip(OPEN, [*OPEN[1:], "won"], strict=True))
_INDEX = {s: i + 1 for i, s in enumerate(OPEN)}


def baseline(req: dict[str, Any], today: date) -> list[str]:
    opp, to, actor = req["opp"], req["to"], req["actor"]
    stage = opp["stage"]
    if to == "lost":
        missing = [] if opp.get("loss_reason") else ["field_missing"]
        return missing + ([] if req["reason"] else ["reason_required"])
    if _NEXT.get(stage) != to:
        return ["transition_not_allowed"]
    missing = []
    if actor["id"] not in (opp["owner_id"], opp["owner_manager_id"]):
        missing.append("actor_not_permitted")
    if not opp["amount"] > 0:
        missing.append("field_invalid")
    if date.fromisoformat(opp["close_date"]) < today:
        missing.append("field_invalid")
    i = _INDEX[stage]
    if f"doc{i}" not in {a["kind"] for a in opp["attachments"]}:
        missing.append("attachment_missing")
    if opp["checklist"].get(f"item{i}") is not True:
        missing.append("checklist_unchecked")
    if to == "won" and not opp["approvals"]:
        missing.append("approval_missing")
    return missing


def _time(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median wall time and median CPU time of ``runs`` calls (CPU time is robust on a busy box)."""
    wall, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    """Run the benchmark and print checks/s for the engine (explain off/on) and the baseline."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checks", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    policy: Policy = load_policy_string(policy_text(), "bench-stages.yaml")
    reqs = workload(args.checks)
    today = NOW.date()

    def engine(explain: bool) -> list[bool]:
        return [
            check_transition(
                policy, r["opp"], to_stage=r["to"], actor=r["actor"], channel=r["channel"],
                now=NOW, reason=r["reason"], explain=explain,
            ).outcome.allowed
            for r in reqs
        ]

    def hand() -> list[bool]:
        return [not baseline(r, today) for r in reqs]

    got, want = engine(False), hand()
    if got != want:
        bad = next(i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b)
        raise SystemExit(f"engine and baseline disagree on request {bad}: {reqs[bad]}")
    allowed = sum(got)
    t_off = _time(lambda: engine(False), args.runs)
    t_on = _time(lambda: engine(True), args.runs)
    t_base = _time(hand, args.runs)
    n = len(reqs)
    print(f"stage gates: {n} checks on a 12-stage graph, 5 requirements per transition")
    print(f"  allowed {allowed} / refused {n - allowed} (engine and baseline agree)")
    print("                        wall checks/s   cpu checks/s")
    for label, (wall, cpu) in (
        ("engine, explain off", t_off),
        ("engine, explain on ", t_on),
        ("hand-written check ", t_base),
    ):
        print(f"  {label}   {n / wall:>12,.0f}   {n / cpu:>12,.0f}")
    print(f"  ratio engine/baseline time (explain off, cpu): {t_off[1] / t_base[1]:.1f}x")

if __name__ == "__main__":
    main()
