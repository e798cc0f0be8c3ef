"""Policy shortcuts call the domain functions with the policy: same decisions, byte for byte."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from salesrules import load_policy, splits, stages, timeouts

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 12, 3, 10, 0, tzinfo=timezone(timedelta(hours=8)))
POLICY = load_policy(ROOT / "rules")


def test_grade_shortcut() -> None:
    lead = {"id": "L-1", "company": "杭州某某科技有限公司", "contact_phone": "13800000000"}
    assert POLICY.grade(lead).to_json() == timeouts.grade(POLICY, lead).to_json()


def test_transition_shortcut() -> None:
    opp = {"id": "O-1", "stage": "lead_confirmed", "owner_id": "r-east-1"}
    actor = {"id": "r-east-1", "roles": ["sales_rep"]}
    a = POLICY.check_transition(opp, to_stage="needs_confirmed", actor=actor, channel="ui", now=NOW)
    b = stages.check_transition(
        POLICY, opp, to_stage="needs_confirmed", actor=actor, channel="ui", now=NOW
    )
    assert a.to_json() == b.to_json()


def test_split_shortcut() -> None:
    deal = {
        "id": "O-9",
        "owner_id": "r-east-1",
        "stage": "won",
        "amount": "99.99",
        "currency": "CNY",
        "split": [{"rep_id": "r-east-1", "share": "75"}, {"rep_id": "r-east-2", "share": "25"}],
    }
    a = POLICY.split(deal, now=NOW)
    assert a.to_json() == splits.split(POLICY, deal, now=NOW).to_json()
