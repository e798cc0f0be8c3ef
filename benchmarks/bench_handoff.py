"""Handoff benchmark: contract events/s and status events/s versus a hand-written baseline.

Workload (seeded): N contracts of the example company (regions 华东/华北/华南/西南, four product
lines, amounts from 100k to 20M). For each contract an ``approved`` and a ``verified`` event go
through :func:`salesrules.handoff.on_contract_event` (threading the state), then four status
snapshots go through :func:`salesrules.handoff.on_project_status`.

The baseline is what a host would hand-write for exactly the bundled policy: dict lookups for
team / template / lead, an f-string for the project name, a dict per status — no record
validation, no reasons, no idempotency keys, no state model. Both produce the same team,
template, lead and CRM values (checked), so the ratio is the price of validation, explanations
and the generic rule engine.

Usage::

    python benchmarks/bench_handoff.py [--contracts 2000] [--runs 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from salesrules.handoff import on_contract_event, on_project_status, with_project_id
from salesrules.policy import load_policy

ROOT = Path(__file__).resolve().parent.parent
CST = timezone(timedelta(hours=8))
NOW = datetime(2026, 3, 2, 10, tzinfo=CST)
REGIONS = ["华东", "华北", "华南", "西南"]
LINES = ["core_banking", "gov_platform", "mes", "custom"]
STATUSES = ["planning", "in_progress", "on_hold", "completed"]


def workload(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        region = rng.choice(REGIONS)
        owner = f"r-{i % 13}"
        out.append(
            {
                "contract": {
                    "id": f"C-{i}",
                    "number": f"HT-{i:05d}",
                    "opportunity_id": f"O-{i}",
                    "customer_id": f"K-{i}",
                    "owner_id": owner,
                    "amount": f"{rng.randrange(100_000, 20_000_000)}.00",
                    "currency": "CNY",
                    "product_line": rng.choice(LINES),
                    "region": region,
                    "start_date": "2026-04-01",
                },
                "opportunity": {
                    "id": f"O-{i}",
                    "name": f"商机{i}",
                    "owner_id": owner,
                    "collaborator_ids": [f"r-{(i + 1) % 13}"],
                },
                "customer": {
                    "id": f"K-{i}",
                    "name": f"客户{i}",
                    "industry": rng.choice(["金融", "政府", "能源"]),
                    "region": region,
                },
            }
        )
    return out


# --- the hand-written baseline, for exactly rules/handoff.yaml -------------------------------

_TEAM_BY_REGION = {
    "华东": "delivery-east",
    "华北": "delivery-north",
    "华南": "delivery-south",
    "西南": "delivery-southwest",
}
_TEAM_LEADS = {
    "delivery-east": "d-east-lead",
    "delivery-north": "d-north-lead",
    "delivery-south": "d-south-lead",
    "delivery-southwest": "d-southwest-lead",
    "delivery-finance": "d-finance-lead",
    "delivery-mes": "d-mes-lead",
    "delivery-pmo": "d-pmo-lead",
}
_TEMPLATES = {
    "core_banking": "tpl-core-banking",
    "gov_platform": "tpl-gov-platform",
    "mes": "tpl-mes",
}
_CRM = {
    "planning": {"delivery_status": "planning"},
    "in_progress": {"delivery_status": "in_progress"},
    "on_hold": {"delivery_status": "on_hold", "delivery_at_risk": True},
    "completed": {
        "delivery_status": "completed",
        "delivery_percent": "100",
        "acceptance_signed": True,
        "delivered": True,
    },
}
_DEFAULTS = {
    "delivery_status": "not_started",
    "delivery_percent": "0",
    "delivery_at_risk": False,
    "acceptance_signed": False,
    "delivered": False,
}


def baseline_contract(rec: dict[str, Any]) -> tuple[str, str, str]:
    c, cust = rec["contract"], rec["customer"]
    amount = float(c["amount"])
    if c["product_line"] == "core_banking" and amount >= 3_000_000:
        team = "delivery-finance"
    elif c["product_line"] == "mes":
        team = "delivery-mes"
    else:
        team = _TEAM_BY_REGION.get(c["region"], "delivery-pmo")
    template = _TEMPLATES.get(c["product_line"], "tpl-custom")
    if amount >= 10_000_000:
        lead = "d-pmo-senior"
    elif cust["industry"] == "能源" and c["product_line"] == "core_banking":
        lead = "d-finance-architect"
    else:
        lead = _TEAM_LEADS[team]
    _name = f"{cust['name']}-{c['number']}"
    return team, template, lead


def baseline_status(status: str, pct: int, last: dict[str, Any] | None) -> dict[str, Any]:
    values = dict(_DEFAULTS)
    values.update(_CRM[status])
    if status in ("in_progress", "on_hold"):
        values["delivery_percent"] = str(pct)
    return {k: v for k, v in values.items() if last is None or last.get(k) != v}


# --- measuring ---------------------------------------------------------------------------------


def _time(fn: Callable[[], Any], runs: int) -> float:
    best = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best.append(time.perf_counter() - t0)
    return statistics.median(best)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contracts", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    policy = load_policy(ROOT / "rules" / "handoff.yaml")
    recs = workload(args.contracts)
    states: list[Any] = []

    def sr_contracts() -> None:
        states.clear()
        for rec in recs:
            cid = rec["contract"]["id"]
            state: Any = None
            for kind in ("approved", "verified"):
                d = on_contract_event(
                    policy,
                    {
                        "id": f"{cid}-{kind}",
                        "contract_id": cid,
                        "type": kind,
                        "version": 1,
                        "at": NOW,
                        "verification": "normal_project",
                    },
                    contract=rec["contract"],
                    opportunity=rec["opportunity"],
                    customer=rec["customer"],
                    state=state,
                    now=NOW,
                )
                state = d.state
            states.append(with_project_id(state, f"P-{cid}"))

    def base_contracts() -> None:
        for rec in recs:
            baseline_contract(rec)
            baseline_contract(rec)

    def sr_status() -> None:
        for rec, state in zip(recs, states, strict=True):
            cid = rec["contract"]["id"]
            for v, status in enumerate(STATUSES):
                d = on_project_status(
                    policy,
                    {
                        "id": f"{cid}-s{v}",
                        "contract_id": cid,
                        "status": status,
                        "version": v,
                        "percent_complete": 20 * v,
                        "at": NOW,
                    },
                    state=state,
                    now=NOW,
                )
                state = d.state

    def base_status() -> None:
        for _rec in recs:
            last: dict[str, Any] | None = None
            for v, status in enumerate(STATUSES):
                changed = baseline_status(status, 20 * v, last)
                last = {**(last or {}), **changed}

    sr_contracts()  # warm up, and check agreement with the baseline
    for rec, state in zip(recs, states, strict=True):
        project = state["project"]
        team, template, lead = baseline_contract(rec)
        assert (state["team"], project["template"], project["lead_id"]) == (team, template, lead)
    n_contract = 2 * len(recs)
    n_status = len(STATUSES) * len(recs)
    rows = [
        (
            "contract events",
            n_contract,
            _time(sr_contracts, args.runs),
            _time(base_contracts, args.runs),
        ),
        ("status events", n_status, _time(sr_status, args.runs), _time(base_status, args.runs)),
    ]
    print(f"handoff benchmark: {len(recs)} contracts, median of {args.runs} runs")
    for label, n, t_sr, t_base in rows:
        sr_rate, base_rate = n / t_sr, n / t_base
        print(
            f"  {label:16s} salesrules {sr_rate:10,.0f}/s   hand-written {base_rate:12,.0f}/s   "
            f"ratio {base_rate / sr_rate:6.1f}x"
        )


if __name__ == "__main__":
    main()
