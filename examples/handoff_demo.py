"""Delivery handoff: approval tells the team, verification creates the project, status flows back.

A contract of 杭州市数据局 is approved (the 华东 delivery team hears about it at once), verified as
a normal project (one ``create_project`` effect), the verification webhook arrives a second time
(ignored: still one project), and two project status updates arrive out of order (the older one
is ignored, the CRM shows the newest, and the sales owner gets a cross-sell task).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import salesrules
from salesrules.decision import Decision
from salesrules.handoff import on_contract_event, on_project_status, with_project_id

HERE = Path(__file__).resolve().parent
RULES = HERE.parent / "rules"


def _show(title: str, decision: Decision[Any], reps: Mapping[str, str]) -> None:
    print(f"== {title}")
    print(f"   {decision}")
    for e in decision.effects:
        p = e.params
        if e.kind == "notify":
            print(f"   -> notify {e.target}: {p['message']}")
        elif e.kind == "create_project":
            people = ", ".join(
                f"{reps.get(s['rep_id'], s['rep_id'])} ({s['role']})" for s in p["stakeholders"]
            )
            print(
                f"   -> create project '{p['fields']['name']}' from {p['template_name']}, "
                f"lead {p['lead_id']}, budget {p['fields']['budget']} {p['fields']['currency']}"
            )
            print(f"      stakeholders: {people}")
        elif e.kind == "update_field":
            print(f"   -> {e.target}.{p['field']} = {json.dumps(p['value'], ensure_ascii=False)}")
        elif e.kind == "create_task":
            print(
                f"   -> task for {reps.get(e.target[4:], e.target)}: {p['title']} (due {p['due']})"
            )
        print(f"      key {e.idempotency_key}")


def main() -> None:
    """Run the handoff of one contract through a tiny host that persists the state."""
    policy = salesrules.load_policy(RULES)
    roster = json.loads((HERE / "data" / "roster.json").read_text(encoding="utf-8"))
    reps = {r["id"]: r["name"] for r in roster["reps"]}
    owner = next(r for r in roster["reps"] if r["region"] == "华东" and "sales_rep" in r["roles"])
    partner = next(
        r
        for r in roster["reps"]
        if r["region"] == "华东" and r["id"] != owner["id"] and "sales_rep" in r["roles"]
    )
    contract = {
        "id": "C-2026-018",
        "number": "HT-2026-018",
        "opportunity_id": "O-311",
        "customer_id": "K-77",
        "owner_id": owner["id"],
        "amount": "1860000.00",
        "currency": "CNY",
        "product_line": "gov_platform",
        "region": "华东",
        "start_date": "2026-04-01",
        "end_date": "2026-12-31",
    }
    opportunity = {
        "id": "O-311",
        "name": "一网通办二期",
        "owner_id": owner["id"],
        "collaborator_ids": [partner["id"]],
    }
    customer = {
        "id": "K-77",
        "name": "杭州市数据资源管理局",
        "industry": "政府",
        "region": "华东",
    }
    state: Mapping[str, Any] = {}

    def contract_event(event: dict[str, Any], now: str) -> Decision[Any]:
        return on_contract_event(
            policy,
            {"contract_id": contract["id"], "at": now, **event},
            contract=contract,
            opportunity=opportunity,
            customer=customer,
            state=state,
            now=_t(now),
        )

    d = contract_event(
        {"id": "WH-1", "type": "approved", "version": 1}, "2026-03-02T10:00:00+08:00"
    )
    _show("contract approved", d, reps)
    state = d.state

    verify = {"id": "WH-2", "type": "verified", "version": 1, "verification": "normal_project"}
    d = contract_event(verify, "2026-03-03T15:30:00+08:00")
    _show("verified: normal project", d, reps)
    state = with_project_id(d.state, "PRJ-5001")  # the project tool answered with its id

    d = contract_event(verify, "2026-03-03T15:30:05+08:00")
    _show("the same webhook delivered again", d, reps)

    newer = {
        "id": "ST-9",
        "contract_id": contract["id"],
        "project_id": "PRJ-5001",
        "status": "completed",
        "percent_complete": 100,
        "version": 9,
        "at": "2026-09-25T17:00:00+08:00",
        "milestones": [{"id": "acceptance", "done": True}],
    }
    older = {
        "id": "ST-8",
        "contract_id": contract["id"],
        "project_id": "PRJ-5001",
        "status": "in_progress",
        "percent_complete": 85,
        "version": 8,
        "at": "2026-09-20T12:00:00+08:00",
    }
    d = on_project_status(policy, newer, state=state, now=_t("2026-09-25T17:00:02+08:00"))
    _show("status v9 'completed' arrives first", d, reps)
    state = d.state
    d = on_project_status(policy, older, state=state, now=_t("2026-09-25T17:00:03+08:00"))
    _show("status v8 'in_progress' arrives late", d, reps)
    print(
        f"CRM now: {json.dumps(dict(state['status']['crm']), ensure_ascii=False, sort_keys=True)}"
    )


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text)


if __name__ == "__main__":
    main()
