"""Collaboration on a large account: a request refused, fixed, approved twice, then credited.

Run with ``python examples/splits_demo.py``. Uses the bundled policy ``rules/splits.yaml`` and
the roster ``examples/data/roster.json`` of the case-study company.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from salesrules.policy import load_policy
from salesrules.splits import decide_approval, split, validate_request

HERE = Path(__file__).resolve().parent
SHANGHAI = ZoneInfo("Asia/Shanghai")


def _roster() -> dict[str, dict[str, Any]]:
    data = json.loads((HERE / "data" / "roster.json").read_text(encoding="utf-8"))
    return {rep["id"]: rep for rep in data["reps"]}


def main() -> None:
    """Print each decision of the flow and, for the last one, its trace."""
    policy = load_policy(HERE.parent / "rules" / "splits.yaml")
    reps = _roster()
    owner, collaborator = reps["r-east-1"], reps["r-east-2"]
    manager = reps[owner["manager_id"]]
    deal: dict[str, Any] = {
        "id": "OPP-1001",
        "owner_id": owner["id"],
        "stage": "proposal",
        "region": "华东",
        "amount": Decimal("999999.99"),
        "currency": "CNY",
    }
    now = datetime(2026, 12, 3, 10, 0, tzinfo=SHANGHAI)

    # 1. 王芳 files a request but forgets the contribution and the customer contact.
    form: dict[str, Any] = {
        "id": "CR-7",
        "requester_id": collaborator["id"],
        "record_id": deal["id"],
        "owner_id": owner["id"],
        "role": "collaborator",
        "share": "30",
    }
    refused = validate_request(policy, form, record=deal, requester=collaborator, now=now)
    print(refused)
    for problem in refused.outcome.problems:
        print(f"  {problem.code:<14} {problem.field}")

    # 2. The fixed request can be submitted; the owner is the first approver.
    form |= {"contribution": "已有客户 CIO 关系，负责技术方案", "customer_contact": "李总 CIO"}
    submitted = validate_request(
        policy, form, record=deal, requester=collaborator, owner=owner, now=now
    )
    print(submitted)

    # 3. The owner approves, then the owner's manager: access is shared, the split recorded.
    first = decide_approval(
        policy,
        submitted.state,
        "approve",
        actor=owner,
        record=deal,
        owner=owner,
        now=now.replace(hour=14),
    )
    print(first)
    second = decide_approval(
        policy,
        first.state,
        "approve",
        actor=manager,
        record=deal,
        owner=owner,
        now=now.replace(day=4),
    )
    print(second)
    agreed = [{"rep_id": s.rep_id, "share": s.share, "role": s.role} for s in second.outcome.split]

    # 4. The deal is won: the credit is allocated by the agreed ratios, to the fen.
    won = deal | {"stage": "won", "split": agreed}
    credit = split(policy, won, now=now.replace(day=28), explain=True)
    print(credit)
    print(credit.explain())


if __name__ == "__main__":
    main()
