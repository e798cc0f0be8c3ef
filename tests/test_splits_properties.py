"""Property and stateful tests of salesrules.splits against the exact-fraction oracle."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from oracle import splits_exact_allocation
from salesrules.policy import Policy, load_policy
from salesrules.splits import (
    allocate,
    decide_approval,
    split,
    validate_request,
    validate_revenue_split,
)

ROOT = Path(__file__).resolve().parent.parent
POLICY: Policy = load_policy(ROOT / "rules" / "splits.yaml")
NOW = datetime(2026, 12, 3, 10, 0, tzinfo=timezone(timedelta(hours=8)))
EXPONENTS = {"CNY": 2, "JPY": 0, "KWD": 3}

rep_ids = st.text(alphabet="abcdefgh-0123", min_size=1, max_size=4)
share_values = st.one_of(
    st.integers(min_value=0, max_value=1000),
    st.decimals(min_value=0, max_value=100, places=2, allow_nan=False, allow_infinity=False),
)
shares_st = st.dictionaries(rep_ids, share_values, min_size=1, max_size=8).filter(
    lambda d: any(v > 0 for v in d.values())
)
currencies = st.sampled_from(sorted(EXPONENTS))


@st.composite
def amounts(draw: st.DrawFn, currency: str) -> Decimal:
    units = draw(st.integers(min_value=-(10**14), max_value=10**14))
    return Decimal(units).scaleb(-EXPONENTS[currency])


@st.composite
def allocations(draw: st.DrawFn) -> tuple[Decimal, dict[str, Any], str]:
    currency = draw(currencies)
    return draw(amounts(currency)), draw(shares_st), currency


@given(allocations())
def test_allocation_matches_the_exact_fraction_oracle(
    case: tuple[Decimal, dict[str, Any], str],
) -> None:
    amount, shares, currency = case
    got = allocate(amount, shares, currency)
    assert got == splits_exact_allocation(amount, shares, EXPONENTS[currency])


@given(allocations())
def test_parts_sum_exactly_and_stay_within_one_minor_unit(
    case: tuple[Decimal, dict[str, Any], str],
) -> None:
    amount, shares, currency = case
    got = allocate(amount, shares, currency)
    assert sum(got.values(), Decimal(0)) == amount
    unit = Fraction(1, 10 ** EXPONENTS[currency])
    total = sum(Fraction(v) for v in shares.values())
    for rep, part in got.items():
        exact = Fraction(amount) * Fraction(shares[rep]) / total
        assert abs(Fraction(part) - exact) < unit
        assert part.as_tuple().exponent == -EXPONENTS[currency]
        if amount > 0:
            assert part >= 0


@given(allocations(), st.randoms(use_true_random=False))
def test_permuting_members_changes_nobodys_part(
    case: tuple[Decimal, dict[str, Any], str], rnd: Any
) -> None:
    amount, shares, currency = case
    items = list(shares.items())
    rnd.shuffle(items)
    assert allocate(amount, dict(items), currency) == allocate(amount, shares, currency)


@given(allocations())
def test_refunds_mirror_sales(case: tuple[Decimal, dict[str, Any], str]) -> None:
    amount, shares, currency = case
    plus = allocate(amount, shares, currency)
    minus = allocate(-amount, shares, currency)
    assert {k: -v for k, v in plus.items()} == minus


@given(
    st.lists(
        st.decimals(min_value=0, max_value=100, places=3, allow_nan=False, allow_infinity=False),
        min_size=1,
        max_size=6,
    )
)
def test_revenue_totals_are_checked_exactly(values: list[Decimal]) -> None:
    lines = [{"rep_id": f"r{i}", "share": v} for i, v in enumerate(values)]
    codes = [p.code for p in validate_revenue_split(lines, owner_id="r0")]
    exact = sum(Fraction(v) for v in values) == 100
    assert ("total_not_100" in codes) is not exact
    assert codes == ([] if exact else ["total_not_100"])


@given(
    st.lists(st.integers(min_value=0, max_value=100), min_size=1, max_size=5),
    st.lists(
        st.tuples(st.sampled_from(["CNY", "JPY", "USD"]), st.integers(-(10**9), 10**9)),
        min_size=1,
        max_size=5,
    ),
)
@settings(max_examples=40)
def test_won_deal_totals_per_currency_add_up(weights: list[int], lines: list[Any]) -> None:
    rest = 100 - sum(weights[1:]) if sum(weights[1:]) <= 100 else None
    if rest is None:
        return
    members = [{"rep_id": "owner", "share": str(rest)}] + [
        {"rep_id": f"m{i}", "share": str(w)} for i, w in enumerate(weights[1:])
    ]
    exps = {"CNY": 2, "JPY": 0, "USD": 2}
    deal = {
        "id": "D",
        "owner_id": "owner",
        "stage": "won",
        "lines": [
            {"id": f"l{i}", "currency": c, "amount": str(Decimal(u).scaleb(-exps[c]))}
            for i, (c, u) in enumerate(lines)
        ],
    }
    d = split(POLICY, deal, members, now=NOW)
    if d.outcome.problems:  # e.g. more members than the policy allows, a share below 10 %
        assert d.outcome.status == "invalid" and not d.effects
        return
    for currency in exps:
        want = sum((Decimal(u).scaleb(-exps[c]) for c, u in lines if c == currency), Decimal(0))
        got = sum((t.amount for t in d.outcome.totals if t.currency == currency), Decimal(0))
        assert got == want
    assert split(POLICY, deal, list(reversed(members)), now=NOW).outcome.totals == d.outcome.totals


# --------------------------------------------------------------------------------------------
# the approval flow as a state machine
# --------------------------------------------------------------------------------------------

OWNER = {"id": "r-east-1", "manager_id": "m-east", "roles": ["sales_rep"]}
ACTORS: dict[str, dict[str, Any] | None] = {
    "owner": OWNER,
    "manager": {"id": "m-east", "manager_id": "vp-sales", "roles": ["sales_manager"]},
    "requester": {"id": "r-east-2", "manager_id": "m-east", "roles": ["sales_rep"]},
    "peer": {"id": "r-east-3", "manager_id": "m-east", "roles": ["sales_rep"]},
    "other_manager": {"id": "m-north", "roles": ["sales_manager"]},
    "finance": {"id": "vp-sales", "roles": ["sales_vp", "finance_approver"]},
    "inactive_owner": {**OWNER, "active": False},
    "system": None,
}
FINANCE_IDS = {"vp-sales"}


class ApprovalMachine(RuleBasedStateMachine):
    """Random actions by random people never break the approval rules."""

    @initialize()
    def submit(self) -> None:
        self.record: dict[str, Any] = {
            "id": "OPP-1",
            "owner_id": "r-east-1",
            "stage": "proposal",
            "region": "华东",
            "amount": "500000.00",
            "currency": "CNY",
        }
        self.now = NOW
        form = {
            "id": "CR-1",
            "requester_id": "r-east-2",
            "record_id": "OPP-1",
            "owner_id": "r-east-1",
            "role": "collaborator",
            "share": "30",
            "contribution": "方案",
            "customer_contact": "李总",
        }
        d = validate_request(
            POLICY, form, record=self.record, requester=ACTORS["requester"], owner=OWNER, now=NOW
        )
        assert d.outcome.submittable
        self.state: dict[str, Any] = dict(d.state)
        self.expires = datetime.fromisoformat(self.state["expires_at"])
        self.terminal: str | None = None

    @rule(stage=st.sampled_from(["negotiation", "contract", "won", "lost"]))
    def change_stage(self, stage: str) -> None:
        self.record = {**self.record, "stage": stage}

    @rule(hours=st.integers(min_value=1, max_value=12))
    def time_passes(self, hours: int) -> None:
        self.now += timedelta(hours=hours)

    @rule(
        action=st.sampled_from(["approve", "reject", "withdraw", "expire"]),
        who=st.sampled_from(sorted(ACTORS)),
    )
    def act_as_anyone(self, action: str, who: str) -> None:
        self.act(action, who)

    def act(self, action: str, who: str) -> None:
        actor = ACTORS[who]
        before = self.state
        d = decide_approval(
            POLICY, before, action, actor=actor, record=self.record, owner=OWNER, now=self.now
        )
        out = d.outcome
        closed = self.record["stage"] in ("won", "lost")
        if before["status"] != "submitted":
            # a final request never changes and never emits effects
            assert not out.accepted and out.status == before["status"] and not d.effects
        if out.accepted and action == "approve":
            expected = ["r-east-1", "m-east", *(sorted(FINANCE_IDS) if closed else [])]
            assert actor is not None and actor.get("active", True)
            assert actor["id"] == expected[before["step"]]
            assert actor["id"] != before["requester_id"]
            assert self.now < self.expires
        if out.accepted and action == "withdraw":
            assert actor is not None and actor["id"] == before["requester_id"]
        kinds = [e.kind for e in d.effects]
        if "record_split" in kinds:
            assert out.status == "approved"
            if closed:
                # booked credit changes only with the finance role, and says so
                assert actor is not None and "finance_approver" in actor["roles"]
                assert "credit_rebooked" in d.reason_codes
        if out.status in ("approved", "rejected", "withdrawn", "expired"):
            self.terminal = self.terminal or out.status
        self.state = dict(d.state)

    @rule(action=st.sampled_from(["approve", "approve", "approve", "approve", "reject"]))
    def the_current_approver_acts(self, action: str) -> None:
        # steer towards the interesting states: approved, approved after close, rebooked
        who = ["owner", "manager", "finance"][min(int(self.state["step"]), 2)]
        self.act(action, who)

    @invariant()
    def final_states_are_final(self) -> None:
        if getattr(self, "terminal", None):
            assert self.state["status"] == self.terminal


ApprovalMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=20, deadline=None)
TestApprovalMachine = ApprovalMachine.TestCase


# --------------------------------------------------------------------------------------------
# robustness: arbitrary JSON in a request gives a Decision or a RecordError, nothing else
# --------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 200) | st.floats(allow_nan=True)
    | st.text(max_size=6) | st.sampled_from(["30", "r-east-1", "OPP-1", "won", "1.005", "NaN"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["id", "rep_id", "share", "owner_id", "stage", "amount", "currency",
                         "requester_id", "record_id", "role", "split", "lines", "status"]),
        inner, max_size=5),
    max_leaves=12,
)  # fmt: skip


@given(
    kind=st.sampled_from(["collaboration_request", "approval", "split"]),
    parts=st.dictionaries(
        st.sampled_from(
            ["request", "record", "requester", "owner", "existing", "state", "action", "actor",
             "deal", "members", "split_kind"]
        ),
        json_values,
        max_size=6,
    ),
)  # fmt: skip
@settings(max_examples=150)
def test_requests_never_leak_other_exceptions(kind: str, parts: dict[str, Any]) -> None:
    from salesrules.decision import Decision
    from salesrules.errors import RecordError

    try:
        d = POLICY.decide({"kind": kind, "now": NOW.isoformat(), **parts})
    except RecordError:
        return
    assert isinstance(d, Decision)
    assert Decision.from_json(d.to_json()).to_json() == d.to_json()
