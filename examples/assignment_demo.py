"""Lead assignment for the case-study company: rules, caps, overflow, protection, a claim."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import salesrules
from salesrules.assignment import Roster, assign, assign_many, claim

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
ROSTER = ROOT / "examples" / "data" / "roster.json"


def show(text: object) -> None:
    """Print with rule-file paths relative to the repository, without the policy digest line.

    Both keep the output stable: the digest changes whenever any bundled rule file does.
    """
    lines = str(text).replace(str(ROOT) + os.sep, "").splitlines()
    print("\n".join(line for line in lines if not line.startswith("  policy ")))


def main() -> None:
    """Assign a handful of leads, explain two of them, and try a pool claim."""
    policy = salesrules.load_policy(RULES)
    roster = Roster(json.loads(ROSTER.read_text(encoding="utf-8"))["reps"])
    now = datetime(2026, 12, 3, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    # What the host counted: 张伟 (r-east-1) already got 8 new leads today (the daily cap),
    # and the other 华东 reps are at their open backlog.
    counts = {
        "r-east-1": {"by_cap": {"daily_new": 8}},
        **{rep: {"by_cap": {"open_backlog": 25}} for rep in ("r-east-2", "r-east-3", "r-east-4")},
    }
    customers = [
        {
            "id": "C-1001",
            "name": "杭州云帆信息技术有限公司",
            "credit_code": "91330000MA27U9W29L",
            "owner_id": "r-east-2",
            "protected_until": "2027-01-31T00:00:00+08:00",
        }
    ]
    leads = [
        {"id": "L-1", "source": "web", "region": "华北", "company": "北方重工", "creator_id": "m-north"},
        {"id": "L-2", "source": "web", "region": "华北", "company": "京津物流", "creator_id": "m-north"},
        {"id": "L-3", "source": "visit", "region": "华南", "company": "南粤制造", "creator_id": "r-south-2"},
        {"id": "L-4", "source": "referral", "region": "西南", "company": "蓉城软件",
         "creator_id": "r-southwest-1"},
        {"id": "L-5", "source": "web", "region": "华东", "company": "申城电子", "creator_id": "m-east"},
        {"id": "L-6", "source": "web", "region": "华东",
         "company": "杭州云帆信息技术（杭州）有限公司", "creator_id": "r-north-1"},
    ]
    print("== assign_many (state and counts threaded lead by lead)")
    for decision in assign_many(policy, leads, now=now, roster=roster, counts=counts,
                                customers=customers):
        print(decision)

    print("\n== L-5 overflows to the public pool: every 华东 rep is capped")
    show(assign(policy, leads[4], now=now, roster=roster, counts=counts, customers=customers,
                 explain=True).explain())

    print("\n== L-6 is a protected customer's company (full-width brackets, city suffix)")
    show(assign(policy, leads[5], now=now, roster=roster, counts=counts, customers=customers,
                 explain=True).explain())

    print("\n== 张伟 claims a lead he released yesterday (cooldown 3 days)")
    pool_record = {"id": "L-0900", "pool": "lead_pool", "previous_owner_id": "r-east-1",
                   "released_at": "2026-12-02T09:00:00+08:00"}
    show(claim(policy, "r-east-1", [pool_record], pool="lead_pool", now=now, roster=roster,
                counts={"claimed_at": ["2026-12-03T09:10:00+08:00"]}).explain())


if __name__ == "__main__":
    main()
