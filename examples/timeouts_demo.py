"""A lead's life against the release clocks of the example company (rules/timeouts.yaml).

A lead is graded, warned before its follow-up deadline, followed up, converted into a
registered customer (报备客户) with an opportunity; the opportunity then misses a stage deadline
and is released — with its customer, because it never got past 需求确认. A nightly sweep over
the same records shows what a host's scheduled job sees.

Run: ``python examples/timeouts_demo.py``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from salesrules import timeouts
from salesrules.policy import load_policy

RULES = Path(__file__).resolve().parent.parent / "rules"
CST = timezone(timedelta(hours=8), "CST")


def at(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """An instant of 2026 in Beijing time."""
    return datetime(2026, month, day, hour, minute, tzinfo=CST)


def main() -> None:
    """Print the timeline, one decision per step."""
    policy = load_policy(RULES)

    lead = {
        "id": "L-1001",
        "type": "lead",
        "company": "上海浦江城市商业银行",
        "contact": "周经理",
        "phone": "021-5555-0101",
        "owner_id": "r-east-1",
        "owner_manager_id": "m-east",
        "owner_since": at(11, 6, 16),  # assigned on Friday afternoon
    }
    print("1. grade the new lead")
    graded = timeouts.grade(policy, lead)
    print("  ", graded)
    lead["grade"] = graded.outcome.grade

    print("2. Tuesday 14:30: the B-grade follow-up deadline (2 business days) is near")
    d = timeouts.check(policy, lead, now=at(11, 10, 14, 30))
    print("  ", d)
    for e in d.effects:
        print("    effect", e.kind, e.target, "key", e.idempotency_key)

    print("3. Tuesday 15:00: the owner calls; the follow-up clock restarts, conversion starts")
    call = {"id": "A-1", "record_id": "L-1001", "kind": "call", "at": at(11, 10, 15),
            "by": "r-east-1"}
    d = timeouts.check(policy, lead, now=at(11, 10, 15, 5), activities=[call])
    print("  ", d)
    for c in d.outcome.clocks:
        print(f"     {c.clock}: {c.state}, deadline {c.deadline}")

    print("4. Thursday: converted into registered customer C-88 with opportunity O-501")
    lead["converted_at"] = at(11, 12, 10)
    print("  ", timeouts.check(policy, lead, now=at(11, 12, 10, 5), activities=[call]))
    opportunity = {
        "id": "O-501", "type": "opportunity", "customer_id": "C-88", "owner_id": "r-east-1",
        "owner_manager_id": "m-east", "owner_since": at(11, 12, 10),
    }
    stages = [
        {"stage": "lead_confirmed", "at": at(11, 12, 10)},
        {"stage": "needs_confirmed", "at": at(11, 16, 11)},
    ]
    customer = {"id": "C-88", "type": "customer", "has_active_contract": False,
                "open_receivables": 0}

    print("5. 需求确认 has 15 business days (until 7 December 11:00); at 14:00 it is overdue")
    d = timeouts.check(policy, opportunity, now=at(12, 7, 14), stage_history=stages,
                       customer=customer, explain=True)
    print("  ", d)
    for r in d.reasons:
        print(f"     reason {r}")
    for e in d.effects:
        print(f"     effect {e.kind} {e.target} key={e.idempotency_key}")
    for a in d.assumptions:
        print(f"     assumes {a.key} == {a.expected!r}")
    if d.trace is not None:
        for step in d.trace.steps:
            print(f"     trace {step.status.value} {step.rule_id}: {step.message}")

    print("6. the same night, a sweep over both records")
    items = [
        {"record": lead, "activities": [call]},
        {"record": opportunity, "stage_history": stages, "customer": customer},
    ]
    summary = timeouts.sweep_all(policy, items, now=at(12, 8, 0, 5))
    print("  ", summary)
    for entry in summary.outcome.releases:
        print(f"     release {entry.record} -> {entry.pool} ({entry.scope}) for {entry.clock}")
    for entry in summary.outcome.next_checks:
        print(f"     next check {entry.record} at {entry.next_check_at}")


if __name__ == "__main__":
    main()
