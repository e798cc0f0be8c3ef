"""Unit and golden tests of salesrules.splits (collaboration requests, approval, credit splits)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from salesrules.decision import Decision
from salesrules.errors import PolicyError, RecordError
from salesrules.policy import Policy, load_policy, load_policy_string
from salesrules.records import SplitLine
from salesrules.splits import (
    CODES,
    DEFAULT_SPLITS,
    MINOR_UNITS,
    ApprovalOutcome,
    RequestVerdict,
    SplitOutcome,
    add_member,
    allocate,
    allocate_minor,
    decide_approval,
    default_split,
    minor_unit,
    remove_member,
    split,
    split_many,
    validate_request,
    validate_revenue_split,
)

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden" / "splits"
RULES = ROOT / "rules" / "splits.yaml"
TZ = timezone(timedelta(hours=8))
NOW = datetime(2026, 12, 3, 10, 0, tzinfo=TZ)
D = Decimal


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(RULES)


def _codes(problems: Any) -> list[str]:
    return [p.code for p in problems]


# --------------------------------------------------------------------------------------------
# golden cases
# --------------------------------------------------------------------------------------------


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = _merge(base.get(key), value) if key in base else value
        return out
    return over


def _subset(want: Any, got: Any, where: str = "") -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict), f"{where}: expected an object, got {got!r}"
        for key, value in want.items():
            assert key in got, f"{where}.{key} missing in {got!r}"
            _subset(value, got[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list), f"{where}: expected a list, got {got!r}"
        assert len(want) == len(got), f"{where}: {want!r} != {got!r}"
        for i, (w, g) in enumerate(zip(want, got, strict=True)):
            _subset(w, g, f"{where}[{i}]")
    else:
        assert want == got, f"{where}: want {want!r}, got {got!r}"


def _golden_params() -> list[Any]:
    params = []
    for path in sorted(GOLDEN.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for i, case in enumerate(data["cases"]):
            params.append(pytest.param(path, data, case, id=f"{path.stem}[{i}] {case['note']}"))
    return params


_POLICIES: dict[Path, Policy] = {}


def _file_policy(path: Path, data: dict[str, Any]) -> Policy:
    if path not in _POLICIES:
        if "rules" in data:
            _POLICIES[path] = load_policy((path.parent / data["rules"]).resolve())
        else:
            text = yaml.safe_dump(data["policy"], allow_unicode=True)
            _POLICIES[path] = load_policy_string(text, f"{path.name}:policy")
    return _POLICIES[path]


@pytest.mark.parametrize(("path", "data", "case"), _golden_params())
def test_golden(path: Path, data: dict[str, Any], case: dict[str, Any]) -> None:
    want = case["want"]
    if "policy_yaml" in case:
        text = "version: 1\n" + case["policy_yaml"]
        ours = set(CODES)
        if "codes" in want:
            with pytest.raises(PolicyError) as info:
                load_policy_string(text, path.name)
            got = sorted(c for c in info.value.codes if c in ours)
            assert got == sorted(want["codes"])
        if "warnings" in want:
            loaded = load_policy_string(text, path.name)
            assert sorted(i.code for i in loaded.warnings if i.code in ours) == sorted(
                want["warnings"]
            )
        return
    pol = _file_policy(path, data)
    if "allocate" in case:
        spec = case["allocate"]
        got = allocate(spec["amount"], spec["shares"], spec["currency"])
        assert {k: str(v) for k, v in got.items()} == want
        assert sum(got.values(), D(0)) == D(spec["amount"])
        return
    request = _merge(data.get("defaults", {}), case.get("request", {}))
    request.setdefault("now", data["now"])
    decision = pol.decide(request)
    assert list(decision.reason_codes) == want.get("codes", list(decision.reason_codes))
    if "effects" in want:
        assert [e.kind for e in decision.effects] == want["effects"]
    assert [e.code for e in decision.errors] == want.get("error_codes", [])
    dumped = decision.to_dict()
    if "outcome" in want:
        _subset(want["outcome"], dumped["outcome"], "outcome")
    if "state" in want:
        _subset(want["state"], dumped["state"], "state")
    # every decision survives a JSON round trip and serializes deterministically
    again = Decision.from_json(decision.to_json())
    assert again.to_json() == decision.to_json()
    assert pol.decide(request).to_json() == decision.to_json()


def test_golden_covers_every_refusal_code() -> None:
    text = "\n".join(p.read_text(encoding="utf-8") for p in GOLDEN.glob("*.yaml"))
    codes = [
        # requests
        "missing_field", "invalid_field", "requester_mismatch", "record_mismatch", "no_owner",
        "owner_changed", "kind_not_allowed", "role_not_allowed", "share_below_minimum",
        "share_above_maximum", "share_exceeds_owner", "requester_inactive", "own_record",
        "already_member", "duplicate_request", "too_many_collaborators", "record_closed",
        "stage_not_eligible", "not_eligible",
        # approval
        "not_pending", "expired", "not_expired", "no_actor", "actor_inactive", "not_requester",
        "not_approver", "self_approval", "already_approved", "deal_closed", "credit_rebooked",
        # splits
        "deal_lost", "not_won", "total_not_100", "owner_missing", "share_out_of_range",
        "invalid_share", "missing_rep_id", "duplicate_member", "too_many_members",
        "no_default_share",
    ]  # fmt: skip
    missing = [c for c in codes if c not in text]
    assert missing == []
    assert [c for c in CODES if c not in text] == []


# --------------------------------------------------------------------------------------------
# money
# --------------------------------------------------------------------------------------------


def test_minor_units_table_and_overrides() -> None:
    assert (MINOR_UNITS["CNY"], MINOR_UNITS["JPY"], MINOR_UNITS["KWD"]) == (2, 0, 3)
    assert minor_unit("BHD") == 3
    assert minor_unit("JPY", {"JPY": 2}) == 2
    assert minor_unit("XAU", {"XAU": 4}) == 4
    with pytest.raises(RecordError) as info:
        minor_unit("XAU")
    assert info.value.field == "currency"


@pytest.mark.parametrize(
    ("amount", "shares", "currency", "want"),
    [
        ("99.99", {"a": 75, "b": 25}, "CNY", {"a": "74.99", "b": "25.00"}),
        ("100.00", {"a": 1, "b": 1, "c": 1}, "CNY", {"a": "33.34", "b": "33.33", "c": "33.33"}),
        ("0.01", {"a": 33, "b": 67}, "CNY", {"a": "0.00", "b": "0.01"}),
        ("-0.01", {"a": 33, "b": 67}, "CNY", {"a": "0.00", "b": "-0.01"}),
        ("0", {"a": 1, "b": 1}, "USD", {"a": "0.00", "b": "0.00"}),
        (7, {"a": 1}, "JPY", {"a": "7"}),
        ("5", {"a": D("0.1"), "b": D("0.2")}, "USD", {"a": "1.67", "b": "3.33"}),
    ],
)
def test_allocate_worked_cases(amount: Any, shares: Any, currency: str, want: Any) -> None:
    got = allocate(amount, shares, currency)
    assert {k: str(v) for k, v in got.items()} == want


def test_allocate_accepts_pairs_and_lines_and_keeps_input_order() -> None:
    pairs = allocate(D("10.00"), [("z", 1), ("a", 1), ("m", 1)], "EUR")
    assert list(pairs) == ["z", "a", "m"]
    assert pairs == {"a": D("3.34"), "m": D("3.33"), "z": D("3.33")}
    lines = allocate(
        D("10.00"), [SplitLine(rep_id="a", share=D(50)), {"rep_id": "b", "share": "50"}], "EUR"
    )
    assert lines == {"a": D("5.00"), "b": D("5.00")}


@pytest.mark.parametrize(
    ("amount", "shares", "currency", "field"),
    [
        (99.99, {"a": 1}, "CNY", "amount"),  # float refused
        ("1.005", {"a": 1}, "CNY", "amount"),  # finer than the minor unit
        ("1.5", {"a": 1}, "JPY", "amount"),
        ("NaN", {"a": 1}, "CNY", "amount"),
        ("1" + "0" * 25, {"a": 1}, "CNY", "amount"),  # too large to be exact
        ("1.00", {"a": -1, "b": 2}, "CNY", "a"),
        ("1.00", {"a": 0, "b": 0}, "CNY", "shares"),
        ("1.00", {}, "CNY", "shares"),
        ("1.00", {"a": 0.5}, "CNY", "a"),  # float share refused
        ("1.00", {"": 1}, "CNY", "rep_id"),
        ("1.00", [("a", 1), ("a", 2)], "CNY", "rep_id"),
        ("1.00", [("a", 1, 2)], "CNY", "[0]"),
        ("1.00", "a", "CNY", "shares"),
        ("1.00", {"a": 1}, "XYZ", "currency"),
    ],
)
def test_allocate_refuses_bad_input(amount: Any, shares: Any, currency: str, field: str) -> None:
    with pytest.raises(RecordError) as info:
        allocate(amount, shares, currency)
    assert info.value.field == field


def test_allocate_minor() -> None:
    assert allocate_minor(10000, {"b": 1, "a": 1, "c": 1}) == {"b": 3333, "a": 3334, "c": 3333}
    assert allocate_minor(-1, {"a": D("33"), "b": D("67")}) == {"a": 0, "b": -1}
    with pytest.raises(RecordError):
        allocate_minor(True, {"a": 1})  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# split lines
# --------------------------------------------------------------------------------------------


def test_validate_revenue_split_ok_and_every_problem() -> None:
    assert (
        validate_revenue_split(
            [{"rep_id": "o", "share": "70"}, SplitLine(rep_id="c", share=D("30"))], owner_id="o"
        )
        == ()
    )
    assert _codes(validate_revenue_split([], owner_id="o")) == ["empty_split"]
    assert _codes(validate_revenue_split("nope", owner_id="o")) == ["empty_split"]  # type: ignore[arg-type]
    bad = validate_revenue_split(
        [
            {"rep_id": "c", "share": 50.0},
            {"share": "10"},
            {"rep_id": "d", "share": "101"},
            {"rep_id": "d", "share": "x"},
            object(),  # type: ignore[list-item]
        ],
        owner_id="o",
    )
    assert _codes(bad) == [
        "invalid_share",
        "missing_rep_id",
        "share_out_of_range",
        "invalid_share",
        "duplicate_member",
        "missing_rep_id",
        "owner_missing",
    ]
    assert bad[0].field == "lines[0].share" and bad[0].rep_id == "c"
    total = validate_revenue_split(
        [{"rep_id": "o", "share": "33.33"}, {"rep_id": "c", "share": "66.66"}], owner_id="o"
    )
    assert _codes(total) == ["total_not_100"]


def test_validate_revenue_split_with_policy_limits(policy: Policy) -> None:
    sec = policy.section("splits")
    lines = [
        {"rep_id": "o", "share": "85"},
        {"rep_id": "a", "share": "5"},
        {"rep_id": "b", "share": "5"},
        {"rep_id": "c", "share": "5"},
    ]
    assert _codes(validate_revenue_split(lines, owner_id="o", section=sec)) == [
        "too_many_members",
        "share_below_minimum",
        "share_below_minimum",
        "share_below_minimum",
    ]
    assert validate_revenue_split(lines, owner_id="o") == ()


def test_add_and_remove_members_keep_the_owner_invariants() -> None:
    lines = add_member([], "c", "30", owner_id="o")
    assert [(x.rep_id, x.share) for x in lines] == [("o", D(70)), ("c", D(30))]
    lines = add_member(lines, "d", D("20"), owner_id="o", role="presales")
    assert [(x.rep_id, x.share, x.role) for x in lines][-1] == ("d", D(20), "presales")
    assert validate_revenue_split(lines, owner_id="o") == ()
    back = remove_member(lines, "c", owner_id="o")
    assert [(x.rep_id, x.share) for x in back] == [("o", D(80)), ("d", D(20))]
    for call, field in [
        (lambda: add_member(lines, "c", "10", owner_id="o"), "rep_id"),
        (lambda: add_member(lines, "o", "10", owner_id="o"), "rep_id"),
        (lambda: add_member(lines, "e", "60", owner_id="o"), "share"),
        (lambda: add_member(lines, "e", "0", owner_id="o"), "share"),
        (lambda: add_member([{"rep_id": "x", "share": "100"}], "e", "1", owner_id="o"), "owner_id"),
        (lambda: remove_member(lines, "o", owner_id="o"), "rep_id"),
        (lambda: remove_member(lines, "zz", owner_id="o"), "rep_id"),
        (lambda: remove_member([{"rep_id": "c", "share": "1"}], "c", owner_id="o"), "owner_id"),
        (lambda: remove_member([{"rep_id": 3, "share": "1"}], "c", owner_id="o"), "[0]"),
    ]:
        with pytest.raises(RecordError) as info:
            call()
        assert info.value.field == field


def test_default_split_divides_a_role_equally_ties_by_rep_id() -> None:
    pol = load_policy_string(
        "version: 1\nsplits:\n  request: {roles: [collaborator]}\n"
        "  revenue: {default: {owner: 70, collaborator: 30}, share_precision: 2}\n"
    )
    lines, problems = default_split(
        pol,
        [{"rep_id": "z"}, {"rep_id": "c", "role": "collaborator"}, {"rep_id": "b", "role": "collaborator"},
         {"rep_id": "a", "role": "collaborator"}, {"rep_id": "o", "role": "owner"}],
        owner_id="o",
    )  # fmt: skip
    assert _codes(problems) == ["no_default_share"]
    assert [(x.rep_id, str(x.share)) for x in lines] == [
        ("o", "70"), ("c", "10.00"), ("b", "10.00"), ("a", "10.00"),
    ]  # fmt: skip
    seven, _ = default_split(
        pol, [{"rep_id": f"r{i}", "role": "collaborator"} for i in range(7)], owner_id="o"
    )
    assert sum((x.share or D(0) for x in seven), D(0)) == 100
    assert [str(x.share) for x in seven][1:3] == ["4.29", "4.29"]
    alone, _ = default_split(pol, [], owner_id="o")
    assert [(x.rep_id, x.share) for x in alone] == [("o", D(100))]


# --------------------------------------------------------------------------------------------
# policy
# --------------------------------------------------------------------------------------------


def test_example_policy_loads_without_warnings(policy: Policy) -> None:
    assert policy.warnings == ()
    sec = policy.section("splits")
    assert sec.max_collaborators == 2
    assert [[a.text() for a in step] for step in sec.steps] == [["owner"], ["owner_manager"]]
    assert sec.finance_role == "finance_approver"
    assert dict(sec.default_shares) == {"owner": 70, "collaborator": 30}
    assert set(policy.kinds) >= {"collaboration_request", "approval", "split"}


def test_float_percentages_in_rule_files_are_read_as_written() -> None:
    pol = load_policy_string(
        "version: 1\nsplits:\n  revenue: {default: {owner: 66.7, collaborator: 33.3}}\n"
    )
    assert dict(pol.section("splits").default_shares) == {
        "owner": D("66.7"),
        "collaborator": D("33.3"),
    }
    with pytest.raises(PolicyError) as info:
        load_policy_string("version: 1\nsplits:\n  revenue: {default: {owner: true}}\n")
    assert "SR106" in info.value.codes


def test_policy_without_splits_section_uses_defaults() -> None:
    pol = load_policy_string("version: 1\ncalendar: {timezone: UTC}\n")
    d = split(
        pol,
        {"id": "D", "owner_id": "o", "stage": "won", "amount": "1.00", "currency": "USD"},
        now=NOW,
    )
    assert d.outcome.status == "credited"
    assert (
        DEFAULT_SPLITS.steps
        and split(None, {"id": "D", "stage": "lost"}, now=NOW).outcome.status == "lost"
    )
    with pytest.raises(RecordError):
        split(object(), {"id": "D"}, now=NOW)


# --------------------------------------------------------------------------------------------
# requests and approval through the Python API
# --------------------------------------------------------------------------------------------

REC = {
    "id": "OPP-1", "owner_id": "r-east-1", "stage": "negotiation", "region": "华东",
    "amount": "300000.00", "currency": "CNY",
}  # fmt: skip
OWNER = {"id": "r-east-1", "manager_id": "m-east", "roles": ["sales_rep"]}
MANAGER = {"id": "m-east", "roles": ["sales_manager"]}
REQUESTER = {"id": "r-east-2", "manager_id": "m-east"}
FORM = {
    "id": "CR-1", "requester_id": "r-east-2", "record_id": "OPP-1", "role": "collaborator",
    "share": "25", "contribution": "技术方案", "customer_contact": "王总",
}  # fmt: skip


def test_full_flow_request_owner_manager_then_credit(policy: Policy) -> None:
    sub = validate_request(policy, FORM, record=REC, requester=REQUESTER, owner=OWNER, now=NOW)
    assert sub.outcome.submittable and sub.reason_codes == ("submittable",)
    assert sub.outcome.next_approvers == ("rep:r-east-1",)
    assert sub.next_check_at == datetime(2026, 12, 10, 9, 0, tzinfo=UTC)  # UTC default calendar
    assert {a.key for a in sub.assumptions} == {
        "opportunity:OPP-1.owner_id",
        "opportunity:OPP-1.stage",
        "opportunity:OPP-1.pending_collaboration_requests",
    }
    one = decide_approval(
        policy, sub.state, "approve", actor=OWNER, record=REC, owner=OWNER, now=NOW
    )
    assert one.outcome.accepted and one.outcome.next_approvers == ("rep:m-east",)
    two = decide_approval(
        policy, one.state, "approve", actor=MANAGER, record=REC, owner=OWNER, now=NOW
    )
    assert two.outcome.status == "approved"
    effects = {e.kind: e for e in two.effects}
    assert effects["add_team_member"].params["rep_id"] == "r-east-2"
    assert effects["share_access"].params["access"] == "read"
    lines = effects["record_split"].params["lines"]
    assert [(x["rep_id"], x["share"], x["amount"]) for x in lines] == [
        ("r-east-1", "75", None), ("r-east-2", "25", None),
    ]  # fmt: skip
    assert two.state["status"] == "approved" and len(two.state["approvals"]) == 2
    # an approved request cannot be approved again
    again = decide_approval(
        policy, two.state, "approve", actor=MANAGER, record=REC, owner=OWNER, now=NOW
    )
    assert again.reason_codes == ("not_pending",) and again.effects == ()
    won = REC | {
        "stage": "won",
        "split": [{"rep_id": x["rep_id"], "share": x["share"]} for x in lines],
    }
    credit = split(policy, won, now=NOW)
    assert [(t.rep_id, str(t.amount)) for t in credit.outcome.totals] == [
        ("r-east-1", "225000.00"), ("r-east-2", "75000.00"),
    ]  # fmt: skip


def test_approval_on_a_won_deal_books_amounts_and_previous_split(policy: Policy) -> None:
    won = REC | {"stage": "won", "amount": "99.99"}
    state = {
        "request_id": "CR-2", "record_id": "OPP-1", "requester_id": "r-east-2",
        "owner_id": "r-east-1", "role": "collaborator", "share": "25", "step": 2,
        "submitted_at": NOW.isoformat(),
        "approvals": [
            {"step": 0, "approver": "owner", "by": "r-east-1", "at": NOW.isoformat()},
            {"step": 1, "approver": "owner_manager", "by": "m-east", "at": NOW.isoformat()},
        ],
    }  # fmt: skip
    manager_again = decide_approval(
        policy, state, "approve", actor=MANAGER, record=won, owner=OWNER, now=NOW
    )
    assert manager_again.reason_codes == ("not_approver",)
    fin = {"id": "vp-sales", "roles": ["finance_approver"]}
    d = decide_approval(
        policy, state, "approve", actor=fin, record=won, owner=OWNER, now=NOW, explain=True
    )
    assert d.reason_codes == ("approved", "credit_rebooked")
    rec = next(e for e in d.effects if e.kind == "record_split")
    assert rec.params["rebook"] is True
    assert [x["rep_id"] for x in rec.params["previous"]] == ["r-east-1"]
    assert [(x["amount"], x["currency"]) for x in rec.params["lines"]] == [
        ("74.99", "CNY"),
        ("25.00", "CNY"),
    ]
    assert any(e.params.get("action") == "credit_rebooked" for e in d.effects if e.kind == "audit")


def test_overlay_request_and_approval() -> None:
    pol = load_policy_string(
        "version: 1\nsplits:\n  request: {kinds: [revenue, overlay], max_share: 200, roles: [presales],"
        " required_fields: [share]}\n  revenue: {default: {owner: 100}}\n"
    )
    rec = {"id": "O", "owner_id": "o", "stage": "proposal"}
    form = {
        "id": "R",
        "requester_id": "p",
        "record_id": "O",
        "role": "presales",
        "share": "150",
        "kind": "overlay",
    }
    sub = validate_request(pol, form, record=rec, requester={"id": "p"}, now=NOW)
    assert sub.outcome.submittable, sub.reason_codes
    d = decide_approval(pol, sub.state, "approve", actor={"id": "o"}, record=rec, now=NOW)
    assert d.outcome.status == "approved"
    assert [(s.rep_id, s.share) for s in d.outcome.split] == [("p", D(150))]
    dup = decide_approval(
        pol,
        sub.state,
        "approve",
        actor={"id": "o"},
        record=rec | {"overlay": [{"rep_id": "p", "share": "10"}]},
        now=NOW,
    )
    assert dup.reason_codes == ("already_member",)
    # revenue share above 100 %: refused as above the owner's share
    rev = validate_request(
        pol, form | {"kind": "revenue"}, record=rec, requester={"id": "p"}, now=NOW
    )
    assert rev.reason_codes == ("share_exceeds_owner",)


def test_role_default_share_when_share_is_not_required() -> None:
    pol = load_policy_string(
        "version: 1\nsplits:\n  request: {required_fields: [contribution]}\n"
        "  revenue: {default: {owner: 80, collaborator: 20}}\n  approval: {steps: [[owner, role:sales_manager]]}\n"
    )
    form = {
        "id": "R",
        "requester_id": "c",
        "record_id": "O",
        "role": "collaborator",
        "contribution": "x",
    }
    rec = {"id": "O", "owner_id": "o", "stage": "proposal"}
    sub = validate_request(pol, form, record=rec, requester={"id": "c"}, now=NOW)
    assert sub.outcome.share == D(20)
    assert sub.outcome.next_approvers == ("rep:o", "role:sales_manager")
    assert sub.next_check_at is None
    by_role = decide_approval(
        pol,
        sub.state,
        "approve",
        actor={"id": "m", "roles": ["sales_manager"]},
        record=rec,
        now=NOW,
    )
    assert by_role.outcome.status == "approved"


def test_requests_name_owner_manager_placeholder_without_owner_record(policy: Policy) -> None:
    pol = load_policy_string("version: 1\nsplits:\n  approval: {steps: [owner_manager]}\n")
    form = FORM | {"requester_id": "r-east-2"}
    sub = validate_request(pol, form, record=REC, requester=REQUESTER, now=NOW)
    assert sub.outcome.next_approvers == ("manager_of:r-east-1",)


def test_bad_records_and_actions_raise_record_errors(policy: Policy) -> None:
    with pytest.raises(RecordError) as info:
        validate_request(policy, FORM, record=REC, requester=REQUESTER, now=datetime(2026, 12, 3))
    assert info.value.record == "now"
    with pytest.raises(RecordError):
        validate_request(policy, {"share": "1"}, record=REC, requester=REQUESTER, now=NOW)  # no id
    with pytest.raises(RecordError) as info:
        validate_request(
            policy, FORM, record={"id": "OPP-1", "amount": 1.5}, requester=REQUESTER, now=NOW
        )
    assert info.value.field == "amount"
    state = validate_request(policy, FORM, record=REC, requester=REQUESTER, now=NOW).state
    with pytest.raises(RecordError) as info:
        decide_approval(policy, state, "bless", actor=OWNER, record=REC, now=NOW)
    assert info.value.field == "action"
    with pytest.raises(RecordError) as info:
        decide_approval(policy, state, "approve", actor=OWNER, record=REC | {"id": "X"}, now=NOW)
    assert info.value.field == "id"
    with pytest.raises(RecordError) as info:
        decide_approval(policy, {"request_id": "x"}, "approve", actor=OWNER, record=REC, now=NOW)
    assert info.value.record == "state"


def test_trace_only_with_explain(policy: Policy) -> None:
    bad = FORM | {"share": "5"}
    quiet = validate_request(
        policy, bad, record=REC | {"amount": "1.00"}, requester=REQUESTER, now=NOW
    )
    assert quiet.trace is None
    loud = validate_request(
        policy, bad, record=REC | {"amount": "1.00"}, requester=REQUESTER, now=NOW, explain=True
    )
    assert loud.trace is not None and "large-account" in loud.trace.render()
    assert loud.reasons[1].location is not None and loud.reasons[1].location.line > 0
    assert loud.reason_codes == quiet.reason_codes


# --------------------------------------------------------------------------------------------
# crediting
# --------------------------------------------------------------------------------------------


def test_split_needs_amount_and_currency_on_won_deals() -> None:
    pol = load_policy_string("version: 1\nsplits: {}\n")
    base = {"id": "D", "owner_id": "o", "stage": "won"}
    for deal, field in [
        (base, "amount"),
        (base | {"amount": "1.00"}, "currency"),
        (base | {"lines": [{"amount": "1.00"}]}, "lines.0.currency"),
        (base | {"amount": "1.001", "currency": "CNY"}, "line amount"),
    ]:
        with pytest.raises(RecordError) as info:
            split(pol, deal, now=NOW)
        assert info.value.field == field
    with pytest.raises(RecordError):
        split(pol, base, kind="bonus", now=NOW)  # type: ignore[arg-type]
    no_owner = split(pol, {"id": "D", "stage": "won", "amount": "1", "currency": "USD"}, now=NOW)
    assert no_owner.reason_codes == ("owner_missing",)
    roles_no_owner = split(
        pol, {"id": "D", "stage": "won"}, [{"rep_id": "a", "role": "owner"}], now=NOW
    )
    assert "owner_missing" in roles_no_owner.reason_codes


def test_split_many_equals_one_by_one(policy: Policy) -> None:
    deals = [
        REC | {"id": f"D{i}", "stage": "won", "amount": f"{i}.0{i}",
               "split": [{"rep_id": "r-east-1", "share": "70"}, {"rep_id": "r-east-2", "share": "30"}]}
        for i in range(1, 6)
    ]  # fmt: skip
    many = [d.to_json() for d in split_many(policy, deals, now=NOW)]
    assert many == [split(policy, d, now=NOW).to_json() for d in deals]


def test_split_effect_key_is_stable_and_content_addressed(policy: Policy) -> None:
    deal = REC | {"stage": "won"}
    a = split(policy, deal, now=NOW)
    b = split(policy, deal, now=NOW + timedelta(days=3))
    c = split(policy, deal | {"amount": "300000.01"}, now=NOW)
    assert a.effects[0].idempotency_key == b.effects[0].idempotency_key
    assert a.effects[0].idempotency_key != c.effects[0].idempotency_key
    assert a.to_json() == b.to_json()


def test_outcome_summaries() -> None:
    from salesrules.splits import Problem

    refused = RequestVerdict(False, "R", problems=(Problem("missing_field", "m", "share"),))
    assert refused.summary() == "request R refused (missing_field)"
    ok = RequestVerdict(True, "R", next_approvers=("rep:o",))
    assert ok.summary() == "request R submittable (next approver: rep:o)"
    assert SplitOutcome("D", "revenue", "lost").summary() == "revenue split of D: lost"
    out = ApprovalOutcome("R", "approve", False, "submitted", "submitted", 0, 2, ("rep:o",))
    assert out.summary() == "approve refused: request R submitted, next: rep:o"


def test_cli_kinds_validate_the_request(policy: Policy) -> None:
    base = {"now": NOW.isoformat()}
    with pytest.raises(RecordError) as info:
        policy.decide(base | {"kind": "collaboration_request"})
    assert info.value.field == "request"
    with pytest.raises(RecordError) as info:
        policy.decide(base | {"kind": "approval", "state": {}, "record": {}})
    assert info.value.field == "action"
    with pytest.raises(RecordError) as info:
        policy.decide(base | {"kind": "split", "split_kind": "x", "deal": {"id": "D"}})
    assert info.value.field == "split_kind"
    text = json.dumps(base | {"kind": "split", "deal": REC | {"stage": "won"}}, ensure_ascii=False)
    d = policy.decide(text)
    assert isinstance(d.outcome, SplitOutcome) and d.outcome.credited


def test_deal_split_accepts_the_stage_gates_field_name(policy: Policy) -> None:
    deal = REC | {"stage": "won", "splits": [{"rep_id": "r-east-1", "share": "60"},
                                              {"rep_id": "r-east-2", "share": "40"}]}  # fmt: skip
    d = split(policy, deal, now=NOW)
    assert [(t.rep_id, str(t.amount)) for t in d.outcome.totals] == [
        ("r-east-1", "180000.00"),
        ("r-east-2", "120000.00"),
    ]


def test_share_falls_back_to_the_role_default_or_is_missing() -> None:
    pol = load_policy_string(
        "version: 1\nsplits:\n  request: {required_fields: [], roles: [collaborator, presales]}\n"
        "  revenue: {default: {owner: 80, collaborator: 20}}\n"
    )
    rec = {"id": "O", "owner_id": "o", "stage": "proposal"}
    form = {"id": "R", "requester_id": "c", "record_id": "O", "role": "presales"}
    d = validate_request(pol, form, record=rec, requester={"id": "c"}, now=NOW)
    assert d.reason_codes == ("missing_field",)
    assert d.outcome.problems[0].field == "share"


def test_requests_on_other_records_do_not_count(policy: Policy) -> None:
    other = {
        "request_id": "CR-0", "record_id": "OPP-2", "requester_id": "r-east-2",
        "owner_id": "r-east-9", "role": "collaborator", "share": "50", "status": "submitted",
        "submitted_at": NOW.isoformat(),
    }  # fmt: skip
    d = validate_request(policy, FORM, record=REC, requester=REQUESTER, existing=[other], now=NOW)
    assert d.outcome.submittable


@pytest.mark.parametrize(
    ("request_json", "outcome_type"),
    [
        (
            {
                "kind": "collaboration_request",
                "request": FORM,
                "record": REC,
                "requester": REQUESTER,
                "owner": OWNER,
            },
            RequestVerdict,
        ),
        (
            {
                "kind": "approval",
                "action": "withdraw",
                "actor": REQUESTER,
                "record": REC,
                "state": {
                    "request_id": "CR-1",
                    "record_id": "OPP-1",
                    "requester_id": "r-east-2",
                    "owner_id": "r-east-1",
                    "role": "collaborator",
                    "share": "25",
                    "submitted_at": "2026-12-03T10:00:00+08:00",
                },
            },
            ApprovalOutcome,
        ),
        ({"kind": "split", "deal": REC | {"stage": "won"}}, SplitOutcome),
    ],
    ids=["collaboration_request", "approval", "split"],
)
def test_cli_decide_each_kind(
    request_json: dict[str, Any],
    outcome_type: type,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from salesrules.cli import main

    path = tmp_path / "request.json"
    path.write_text(
        json.dumps(request_json | {"now": NOW.isoformat()}, ensure_ascii=False), encoding="utf-8"
    )
    assert main(["decide", "--policy", str(RULES), str(path)]) == 0
    decision = Decision.from_json(capsys.readouterr().out)
    assert isinstance(decision.outcome, outcome_type)


@pytest.mark.parametrize("members", [5, "ab", {"rep_id": "a"}, [None], True])
def test_split_members_must_be_a_list_of_objects(policy: Policy, members: Any) -> None:
    with pytest.raises(RecordError):
        split(policy, REC | {"stage": "won"}, members, now=NOW)


def test_default_split_reports_lines_without_rep_or_twice(policy: Policy) -> None:
    deal = REC | {"stage": "won"}
    assert split(policy, deal, [{"role": "collaborator"}], now=NOW).reason_codes == (
        "missing_rep_id",
    )
    twice = [{"rep_id": "x", "role": "collaborator"}, {"rep_id": "x", "role": "collaborator"}]
    assert split(policy, deal, twice, now=NOW).reason_codes == ("duplicate_member",)


def test_reopened_deal_after_all_base_steps_needs_a_new_request(policy: Policy) -> None:
    state = {
        "request_id": "CR-9", "record_id": "OPP-1", "requester_id": "r-east-2",
        "owner_id": "r-east-1", "role": "collaborator", "share": "25", "step": 2,
        "submitted_at": NOW.isoformat(),
    }  # fmt: skip
    fin = {"id": "vp-sales", "roles": ["finance_approver"]}
    d = decide_approval(policy, state, "approve", actor=fin, record=REC, owner=OWNER, now=NOW)
    assert d.reason_codes == ("no_step",) and not d.outcome.accepted


def test_dump_and_load_give_the_same_policy(policy: Policy) -> None:
    again = load_policy_string(yaml.safe_dump(policy.dump(), allow_unicode=True))
    assert again == policy
    assert dict(again.section("splits").default_shares) == dict(
        policy.section("splits").default_shares
    )
