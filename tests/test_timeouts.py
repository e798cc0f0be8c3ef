"""Grading and release clocks: unit tests, compile checks, CLI kinds and the golden cases."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from salesrules import timeouts as T
from salesrules.decision import Decision
from salesrules.errors import PolicyError, RecordError
from salesrules.policy import Policy, load_policy_string
from salesrules.records import TrackedRecord

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "timeouts"
CST = timezone(timedelta(hours=8))


def _section(name: str, file: str) -> Any:
    data = yaml.safe_load((ROOT / "rules" / file).read_text(encoding="utf-8"))
    return data[name]


BASE_CALENDAR = _section("calendar", "calendar.yaml")
BASE_GRADING = _section("grading", "timeouts.yaml")
BASE_TIMEOUTS = _section("timeouts", "timeouts.yaml")


def make_policy(
    *,
    calendar: Any = None,
    grading: Any = None,
    timeouts: Any = None,
    patch: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Policy:
    """The example company's policy, with sections replaced or the timeouts section patched."""
    tout = copy.deepcopy(timeouts if timeouts is not None else BASE_TIMEOUTS)
    tout.update(copy.deepcopy(patch or {}))
    doc = {
        "version": 1,
        "calendar": calendar if calendar is not None else BASE_CALENDAR,
        "grading": grading if grading is not None else BASE_GRADING,
        "timeouts": tout,
        **(extra or {}),
    }
    return load_policy_string(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))


@pytest.fixture(scope="module")
def policy() -> Policy:
    return make_policy()


def at(month: int, day: int, hour: int = 9, minute: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=CST)


def lead(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "L-1",
        "type": "lead",
        "grade": "A",
        "owner_id": "r-east-1",
        "owner_manager_id": "m-east",
        "owner_since": at(11, 9, 9),
    }
    base.update(kw)
    return base


# -- grading ------------------------------------------------------------------------------


def test_grade_a_when_complete(policy: Policy) -> None:
    d = T.grade(policy, {"id": "L", "company": "c", "contact": "x", "phone": "1",
                         "region": "华东", "need": "ERP"})
    assert d.outcome.grade == "A"
    assert d.outcome.next_grade is None
    assert d.reason_codes == ("graded",)


def test_grade_names_missing_fields_for_next_grade(policy: Policy) -> None:
    d = T.grade(policy, {"id": "L", "company": "c", "contact": "x", "phone": "1",
                         "region": "  ", "need": []})
    assert d.outcome.grade == "B"
    assert d.outcome.next_grade == "A"
    assert d.outcome.missing_for_next == ("region", "need")
    assert d.reason_codes == ("graded", "missing_for_next_grade")
    assert d.reasons[1].data["missing"] == ("region", "need")


def test_grade_c_is_the_catch_all(policy: Policy) -> None:
    d = T.grade(policy, TrackedRecord(id="L", type="lead", company="c"), explain=True)
    assert d.outcome.grade == "C"
    assert d.outcome.missing_for_next == ("contact", "phone")
    assert d.trace is not None and len(d.trace.steps) == 3


def test_grade_with_condition_and_default() -> None:
    grading = {
        "grades": [
            {"id": "hot", "require": ["company"], "when": {"lead.employees": {"ge": 100}}},
            {"id": "warm", "require": ["company"]},
        ],
        "default": "cold",
    }
    p = make_policy(grading=grading, patch={"clocks": [_clock(by_grade={"hot": "1 business day"},
                                                            within="3 business days")]})
    assert T.grade(p, {"company": "x", "employees": 500}).outcome.grade == "hot"
    d = T.grade(p, {"company": "x", "employees": 5})
    assert d.outcome.grade == "warm"
    assert d.outcome.next_condition_failed
    assert "condition_failed_for_next_grade" in d.reason_codes
    d = T.grade(p, {"company": "x"})  # employees missing: unknown -> not hot, issue recorded
    assert d.outcome.grade == "warm"
    assert [e.code for e in d.errors] == ["missing_field"]
    d = T.grade(p, {})
    assert d.outcome.grade == "cold"
    assert d.outcome.missing_for_next == ("company",)


def test_grade_needs_a_grading_section() -> None:
    p = load_policy_string("version: 1\ncalendar: {timezone: UTC}\n")
    with pytest.raises(RecordError):
        T.grade(p, {"id": "x"})
    with pytest.raises(RecordError):
        T.check(p, lead(), now=at(11, 9))


def test_grade_rejects_non_records(policy: Policy) -> None:
    with pytest.raises(RecordError):
        T.grade(policy, 42)


# -- compile checks -----------------------------------------------------------------------


def _clock(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "c1",
        "type": "follow_up",
        "applies_to": "lead",
        "restart_on_follow_up": True,
        "release": {"pool": "lead_pool"},
    }
    base.update(kw)
    return base


def _codes(**kw: Any) -> list[str]:
    with pytest.raises(PolicyError) as info:
        make_policy(**kw)
    return [i.code for i in info.value.issues]


@pytest.mark.parametrize(
    ("clock", "code"),
    [
        (_clock(within="0 business days"), "SR201"),
        (_clock(within="-2 days"), "SR201"),
        (_clock(within="two days"), "SR130"),
        (_clock(), "SR233"),
        (_clock(type="stage", applies_to="opportunity"), "SR233"),
        (_clock(type="stage", applies_to="opportunity", stages={"proposal": "1 day"},
                within="1 day"), "SR233"),
        (_clock(type="overall", by_grade={"A": "1 day"}), "SR233"),
        (_clock(within="1 day", stages={"proposal": "1 day"}), "SR233"),
        (_clock(type="stage", applies_to="lead", stages={"proposal": "1 day"}), "SR234"),
        (_clock(type="conversion", within="1 day"), "SR234"),
        (_clock(type="conversion", applies_to="customer", start="ownership_start",
                within="1 day"), "SR234"),
        (_clock(within="1 day", start="ownership_start"), "SR234"),
        (_clock(type="overall", within="1 day", restart_on_follow_up=True), "SR234"),
        (_clock(within="1 day", restart_on_follow_up=None), "SR234"),
        (_clock(within="1 day", release={"pool": "lead_pool", "scope": "opportunity"}), "SR234"),
        (_clock(within="4 business hours", warn_before="1 business day"), "SR235"),
        (_clock(by_grade={"Z": "1 day"}, within="2 days"), "SR232"),
    ],
)
def test_clock_errors(clock: dict[str, Any], code: str) -> None:
    assert code in _codes(patch={"clocks": [clock]})


def test_unknown_stage_and_pool_are_reported() -> None:
    stages = _section("stages", "stages.yaml")  # the example company's blueprint
    clock = _clock(type="stage", applies_to="opportunity", stages={"proposl": "1 day"},
                   restart_on_follow_up=None)
    assert _codes(patch={"clocks": [clock]}, extra={"stages": stages}) == ["SR230"]
    clock["stages"] = {"proposal": "1 day"}
    assert make_policy(patch={"clocks": [clock]}, extra={"stages": stages}).has("timeouts")


def test_pools_section_checks_pools_and_gives_the_cooldown() -> None:
    pools = _section("pools", "assignment.yaml")
    p = make_policy(extra={"pools": pools})
    assert p.warnings == ()
    d = T.check(p, lead(), now=at(11, 10, 10))
    assert d.outcome.release is not None
    assert d.outcome.release.cooldown_until == d.outcome.release.deadline + timedelta(days=3)
    assert "start_cooldown" in [e.kind for e in d.effects]
    bad = _clock(within="1 day", release={"pool": "lead_pol"})
    assert _codes(patch={"clocks": [bad]}, extra={"pools": pools}) == ["SR231"]
    p = make_policy(patch={"cooldown": "7 days"}, extra={"pools": pools})
    assert {w.code for w in p.warnings} == {"SR323"}
    d = T.check(p, lead(), now=at(11, 10, 10))
    assert d.outcome.release is not None
    assert d.outcome.release.cooldown_until == d.outcome.release.deadline + timedelta(days=7)


def test_without_pools_or_cooldown_there_is_no_cooldown(policy: Policy) -> None:
    d = T.check(policy, lead(), now=at(11, 10, 10))
    assert d.outcome.release is not None and d.outcome.release.cooldown_until is None
    assert "start_cooldown" not in [e.kind for e in d.effects]


def test_unknown_pool_with_a_pools_model() -> None:
    class Ctx:
        def model(self, name: str) -> Any:
            return {"lead_pool": {}, "customer_pool": {}} if name == "pools" else None

    assert T._names_in(Ctx().model("pools"), "pools") == frozenset({"lead_pool", "customer_pool"})
    assert T._names_in({"stages": [{"id": "a"}, {"name": "b"}, "c"]}, "stages") == frozenset(
        {"a", "b", "c"})
    assert T._names_in(None, "pools") is None


def test_duplicate_clock_ids_and_grade_that_shadows() -> None:
    c = _clock(within="1 day")
    assert "SR200" in _codes(patch={"clocks": [c, copy.deepcopy(c)]})
    grading = {"grades": [{"id": "A"}, {"id": "B", "require": ["x"]}]}
    assert "SR236" in _codes(grading=grading, patch={"clocks": [c]})


def test_warnings_are_reported() -> None:
    p = make_policy(patch={"clocks": [_clock(within="1 business day",
                                             warn_before="1 business day")]})
    assert [w.code for w in p.warnings] == ["SR320"]
    p = make_policy(patch={"clocks": [_clock(by_grade={"A": "1 business day"})]})
    assert sorted(w.code for w in p.warnings) == ["SR321", "SR321"]  # B and C have no clock
    p = make_policy(patch={"clocks": [_clock(within="1 day", extendable=False)]})
    assert [w.code for w in p.warnings] == ["SR322"]
    with pytest.raises(PolicyError):
        load_policy_string(
            yaml.safe_dump({"version": 1, "grading": BASE_GRADING, "timeouts": {
                **BASE_TIMEOUTS, "clocks": [_clock(within="2 hours", warn_before="3 hours")]}}),
            strict=True,
        )


def test_example_policy_loads_cleanly(policy: Policy) -> None:
    assert policy.warnings == ()
    assert {"grading", "timeouts"} <= set(policy.section_names)


# -- check: basics ------------------------------------------------------------------------


def test_now_must_be_aware(policy: Policy) -> None:
    with pytest.raises(RecordError) as info:
        T.check(policy, lead(), now=datetime(2026, 11, 9, 9))
    assert info.value.field == "now"
    with pytest.raises(RecordError):
        list(T.sweep(policy, [lead()], "2026-11-09"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"type": "leed"}, "type"),
        ({"owner_since": "2026-11-09T09:00:00"}, "owner_since"),
        ({"extensions": -1}, "extensions"),
        ({"owner_lock_count": "x"}, "owner_lock_count"),
        ({"grade_changes": [{"grade": "A", "at": "yesterday"}]}, "grade_changes.0.at"),
    ],
)
def test_bad_records_raise_record_error_naming_the_field(
    policy: Policy, bad: dict[str, Any], field: str
) -> None:
    with pytest.raises(RecordError) as info:
        T.check(policy, lead(**bad), now=at(11, 9))
    assert info.value.field == field


def test_bad_activity_and_history(policy: Policy) -> None:
    with pytest.raises(RecordError) as info:
        T.check(policy, lead(), now=at(11, 9), activities=[{"id": "a", "record_id": "L-1",
                                                             "kind": "call",
                                                             "at": "2026-11-09T10:00:00"}])
    assert info.value.field == "at"
    with pytest.raises(RecordError):
        T.check(policy, lead(), now=at(11, 9), activities={"not": "a list"})
    with pytest.raises(RecordError):
        T.check(policy, lead(owner_since=None), now=at(11, 9),
                ownership_history=[{"owner_id": "r-east-2", "at": at(11, 1)}])
    with pytest.raises(RecordError):
        T.check(policy, lead(), now=at(11, 9), stage_history=[{"stage": 3, "at": at(11, 1)}])


def test_unowned_lost_won_converted(policy: Policy) -> None:
    now = at(12, 1)
    assert T.check(policy, lead(owner_id=None), now=now).reason_codes == ("unowned",)
    assert T.check(policy, lead(status="lost"), now=now).reason_codes == ("closed",)
    won = T.check(policy, lead(status="won"), now=now)
    assert won.outcome.held_by == ("won",)
    assert won.outcome.action == "none"
    conv = T.check(policy, lead(converted_at=at(11, 9, 10)), now=now)
    assert conv.reason_codes == ("converted",)


def test_terminal_stages_close_the_opportunity() -> None:
    stages = _section("stages", "stages.yaml")
    p = make_policy(extra={"stages": stages})
    opp = {"id": "O-1", "type": "opportunity", "owner_id": "r-east-1", "owner_since": at(1, 5)}
    hist = [{"stage": "proposal", "at": at(1, 5)}, {"stage": "won", "at": at(2, 5)}]
    d = T.check(p, opp, now=at(12, 1), stage_history=hist)
    assert d.reason_codes == ("won",)
    hist[-1]["stage"] = "lost"
    assert T.check(p, opp, now=at(12, 1), stage_history=hist).reason_codes == ("closed",)
    assert T.check(p, {**opp, "stage": "won"}, now=at(12, 1)).reason_codes == ("won",)


def test_models_and_dicts_give_the_same_decision(policy: Policy) -> None:
    rec = lead()
    acts = [{"id": "a1", "record_id": "L-1", "kind": "call", "at": at(11, 9, 10),
             "by": "r-east-1"}]
    a = T.check(policy, rec, now=at(11, 10, 11), activities=acts)
    b = T.check(policy, TrackedRecord.model_validate(rec), now=at(11, 10, 11),
                activities=[T.Activity.model_validate(x) for x in acts])
    assert a.to_json() == b.to_json()


def test_activities_by_others_and_non_qualifying_kinds_do_not_count(policy: Policy) -> None:
    acts = [
        {"id": "a1", "record_id": "L-1", "kind": "call", "at": at(11, 9, 10), "by": "r-east-2"},
        {"id": "a2", "record_id": "L-1", "kind": "email", "at": at(11, 9, 11), "by": "r-east-1"},
        {"id": "a3", "record_id": "L-1", "kind": "call", "at": at(11, 11, 11), "by": "r-east-1"},
    ]  # a3 is in the future of now
    d = T.check(policy, lead(), now=at(11, 10, 10), activities=acts)
    assert d.outcome.action == "release"
    assert d.outcome.release is not None and d.outcome.release.clock == "lead-follow-up"


def test_ownership_history_gives_the_tenure_start(policy: Policy) -> None:
    hist = [
        {"owner_id": "r-east-1", "at": at(10, 1)},
        {"owner_id": "r-east-2", "at": at(10, 5)},
        {"owner_id": "r-east-1", "at": at(11, 9, 9)},
        {"owner_id": "r-east-1", "at": at(11, 9, 9, 30), "reason": "re-assigned"},
    ]
    d = T.check(policy, lead(owner_since=None), now=at(11, 9, 12), ownership_history=hist)
    assert d.outcome.clocks[0].anchor == at(11, 9, 9)


# -- check: release, warn, holds ----------------------------------------------------------


def test_release_effects_and_idempotency() -> None:
    policy = make_policy(patch={"cooldown": "7 days"})
    d1 = T.check(policy, lead(), now=at(11, 10, 10))
    d2 = T.check(policy, lead(), now=at(11, 12, 17))
    assert d1.outcome.action == "release"
    kinds = [e.kind for e in d1.effects]
    assert kinds == ["release_to_pool", "start_cooldown", "notify", "notify", "audit"]
    assert [e.idempotency_key for e in d1.effects] == [e.idempotency_key for e in d2.effects]
    rel = d1.effects[0]
    assert rel.params["pool"] == "lead_pool"
    assert rel.params["previous_owner_id"] == "r-east-1"
    assert d1.outcome.release is not None
    assert d1.outcome.release.cooldown_until == d1.outcome.release.deadline + timedelta(days=7)
    assert d1.next_check_at is None
    assert {a.key for a in d1.assumptions} >= {"lead:L-1.owner_id", "lead:L-1.owner_since"}


def test_warning_fires_once_per_deadline(policy: Policy) -> None:
    d1 = T.check(policy, lead(), now=at(11, 10, 7, 30))
    d2 = T.check(policy, lead(), now=at(11, 10, 8, 59))
    assert d1.outcome.action == d2.outcome.action == "warn"
    assert d1.effects[0].idempotency_key == d2.effects[0].idempotency_key
    assert d1.next_check_at == at(11, 10, 9)


def test_lock_within_limit_holds(policy: Policy) -> None:
    d = T.check(policy, lead(locked=True, owner_lock_count=5), now=at(11, 12))
    assert d.outcome.action == "none"
    assert d.outcome.held_by == ("lock",)
    assert d.reason_codes == ("overdue", "locked")
    assert d.next_check_at is None


def test_extension_cap(policy: Policy) -> None:
    d = T.check(policy, lead(extensions=5), now=at(11, 12))
    clock = d.outcome.clocks[0]
    assert clock.extensions == 2  # capped
    assert clock.deadline == at(11, 24, 9)  # 1 + 2x5 business days after Mon 09:00
    assert "extension_cap_reached" in d.reason_codes


def test_scope_rule_with_missing_customer_id(policy: Policy) -> None:
    opp = {"id": "O-1", "type": "opportunity", "owner_id": "r-east-1",
           "owner_since": at(10, 20), "stage": "lead_confirmed", "stage_entered_at": at(10, 20)}
    d = T.check(policy, opp, now=at(12, 1), customer={"id": "C", "open_receivables": 0,
                                                        "has_active_contract": False})
    assert d.outcome.release is not None
    assert d.outcome.release.scope == "opportunity_and_customer"
    assert d.outcome.release.records == ("opportunity:O-1",)
    assert [e.code for e in d.errors] == ["missing_field"]


def test_exemption_with_unknown_field_is_an_error_not_a_hold(policy: Policy) -> None:
    cust = {"id": "C-9", "type": "customer", "owner_id": "r-east-1", "owner_since": at(9, 1),
            "open_opportunities": 0}
    d = T.check(policy, cust, now=at(11, 30))
    assert d.outcome.action == "release"
    assert sorted(e.code for e in d.errors) == ["missing_field", "missing_field"]


def test_clock_when_condition(policy: Policy) -> None:
    cust = {"id": "C-9", "type": "customer", "owner_id": "r-east-1", "owner_since": at(9, 1),
            "open_opportunities": 2}
    d = T.check(policy, cust, now=at(11, 30), explain=True)
    assert d.outcome.clocks == ()
    assert d.reason_codes == ("no_clock",)
    assert d.trace is not None


def test_follow_up_clock_without_restart_is_met_by_first_follow_up() -> None:
    p = make_policy(patch={"clocks": [_clock(within="1 business day",
                                             restart_on_follow_up=False)]})
    acts = [{"id": "a", "record_id": "L-1", "kind": "visit", "at": at(11, 9, 10),
             "by": "r-east-1"}]
    d = T.check(p, lead(), now=at(12, 30), activities=acts)
    assert d.outcome.clocks[0].state == "met"
    assert d.next_check_at is None


def test_conversion_from_ownership_start() -> None:
    p = make_policy(patch={"clocks": [_clock(type="conversion", start="ownership_start",
                                             within="2 days", restart_on_follow_up=None)]})
    d = T.check(p, lead(), now=at(11, 11, 9))
    assert d.outcome.action == "release"
    assert d.outcome.clocks[0].anchor_kind == "ownership_start"


# -- decisions: JSON, determinism, CLI ----------------------------------------------------


def test_json_round_trip_and_determinism(policy: Policy) -> None:
    d = T.check(policy, lead(), now=at(11, 10, 10), explain=True)
    again = T.check(policy, lead(), now=at(11, 10, 10), explain=True)
    assert d.to_json() == again.to_json()
    back = Decision.from_json(d.to_json())
    assert back == d
    g = T.grade(policy, {"id": "L", "company": "x"})
    assert Decision.from_json(g.to_json()) == g
    s = T.sweep_all(policy, [lead(), lead(id="L-2", grade="C")], at(11, 10, 10))
    assert Decision.from_json(s.to_json(), T.SweepOutcome) == s


def test_sweep_equals_check_one_by_one(policy: Policy) -> None:
    now = at(11, 10, 10)
    items = [
        {"record": lead(id=f"L-{i}", grade="ABC"[i % 3], owner_since=at(11, 9, 9 + i % 8)),
         "activities": [{"id": f"a{i}", "record_id": f"L-{i}", "kind": "call",
                         "at": at(11, 9, 10 + i % 5), "by": "r-east-1"}] if i % 2 else []}
        for i in range(12)
    ]
    swept = [d.to_json() for d in T.sweep(policy, items, now)]
    single = [T.check(policy, it["record"], now=now, activities=it["activities"]).to_json()
              for it in items]
    assert swept == single


def test_sweep_all_orders_and_summarizes(policy: Policy) -> None:
    now = at(11, 10, 10)
    items = [lead(id="L-b", owner_since=at(11, 6, 9)), lead(id="L-a", owner_since=at(11, 6, 9)),
             lead(id="L-w", owner_since=at(11, 9, 11)), lead(id="L-n", owner_since=at(11, 10, 9)),
             T.CheckInput(lead(id="L-0", owner_id=None))]
    d = T.sweep_all(policy, items, now)
    o = d.outcome
    assert o.checked == 5
    assert [e.record for e in o.releases] == ["lead:L-a", "lead:L-b"]
    assert [e.record for e in o.warnings] == ["lead:L-w"]
    assert [e.record for e in o.next_checks] == ["lead:L-w", "lead:L-n"]
    assert d.next_check_at == o.next_check_at == at(11, 10, 11)
    assert "releases" in o.summary()
    with pytest.raises(RecordError):
        T.sweep_all(policy, [{"record": lead(), "activites": []}], now)


def test_cli_request_kinds(policy: Policy) -> None:
    now = "2026-11-10T15:00:00+08:00"
    g = policy.decide({"kind": "grade", "now": now, "lead": {"id": "L", "company": "x"}})
    assert g.outcome.grade == "C"
    c = policy.decide(json.dumps({
        "kind": "check", "now": now, "explain": True,
        "record": {"id": "L-1", "type": "lead", "grade": "A", "owner_id": "r-east-1",
                   "owner_since": "2026-11-06T09:00:00+08:00"},
        "activities": [{"id": "a", "record_id": "L-1", "kind": "call",
                        "at": "2026-11-09T16:00:00+08:00", "by": "r-east-1"}],
    }))
    assert c.outcome.action == "warn"
    s = policy.decide({"kind": "sweep", "now": now, "items": [
        {"record": {"id": "L-1", "type": "lead", "grade": "A", "owner_id": "r-east-1",
                    "owner_since": "2026-11-06T09:00:00+08:00"}}]})
    assert s.kind == "sweep"
    assert s.outcome.releases[0].record == "lead:L-1"
    for bad in ({"kind": "check", "now": now, "record": "x"},
                {"kind": "check", "now": now, "record": {}, "customer": 3},
                {"kind": "grade", "now": now},
                {"kind": "sweep", "now": now, "items": {"a": 1}}):
        with pytest.raises(RecordError):
            policy.decide(bad)


def test_outcome_summaries() -> None:
    assert T.GradeOutcome("L", None).summary() == "ungraded"
    assert "needs" in T.GradeOutcome("L", "B", "A", ("x",), True).summary()
    assert "warn" in T.CheckOutcome("lead:L", "warn", warnings=("c",)).summary()
    assert "held by lock" in T.CheckOutcome("lead:L", "none", held_by=("lock",)).summary()


# -- golden cases -------------------------------------------------------------------------


def _golden_cases() -> list[Any]:
    return [
        pytest.param(path, id=yaml.safe_load(path.read_text(encoding="utf-8"))["note"])
        for path in sorted(GOLDEN.glob("*.yaml"))
    ]


def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


@pytest.mark.parametrize("path", _golden_cases())
def test_golden(path: Path) -> None:
    case = yaml.safe_load(path.read_text(encoding="utf-8"))
    p = make_policy(calendar=case.get("calendar"), patch=case.get("timeouts_patch"),
                    extra={"pools": _section("pools", "assignment.yaml")})
    now = datetime.fromisoformat(case["now"])
    d = T.check(p, case["record"], now=now, activities=case.get("activities", ()),
                stage_history=case.get("stage_history", ()),
                ownership_history=case.get("ownership_history", ()),
                customer=case.get("customer"), explain=True)
    want = case["want"]
    o = d.outcome
    where = f"{path.name}: {d.explain()}"
    assert o.action == want["action"], where
    if "reasons" in want:
        assert list(d.reason_codes) == want["reasons"], where
    if "next_check_at" in want:
        assert _iso(d.next_check_at) == want["next_check_at"], where
        if d.next_check_at is not None:
            assert d.next_check_at.isoformat() == want["next_check_at"], where
    if "held_by" in want:
        assert list(o.held_by) == want["held_by"], where
    if "effects" in want:
        assert [e.kind for e in d.effects] == want["effects"], where
    if "clock" in want:
        name = o.release.clock if o.release is not None else o.warnings[0]
        assert name == want["clock"], where
        status = next(c for c in o.clocks if c.clock == name)
        if "deadline" in want:
            assert _iso(status.deadline) == want["deadline"], where
    if "records" in want:
        assert o.release is not None and list(o.release.records) == want["records"], where
    if "scope" in want:
        assert o.release is not None and o.release.scope == want["scope"], where
    for clock_id, fields in (want.get("clocks") or {}).items():
        status = next(c for c in o.clocks if c.clock == clock_id)
        for key, value in fields.items():
            assert _iso(getattr(status, key)) == value, f"{clock_id}.{key} in {where}"
    assert Decision.from_json(d.to_json()) == d
