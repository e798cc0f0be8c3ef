"""Invariants of the release clocks, checked with hypothesis on the example company's policy."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from hypothesis import assume, given
from hypothesis import strategies as st
from tests.test_timeouts import BASE_CALENDAR, BASE_GRADING, BASE_TIMEOUTS

from salesrules import timeouts as T
from salesrules.calendar import Calendar, parse_duration
from salesrules.decision import Decision
from salesrules.policy import Policy, load_policy_string

T0 = datetime(2026, 9, 20, tzinfo=UTC)  # spans Mid-Autumn, National Day and a make-up Saturday
SPAN = 60 * 86400


def _policy(patch: dict[str, Any] | None = None) -> Policy:
    tout = copy.deepcopy(BASE_TIMEOUTS)
    tout.update(patch or {})
    doc = {"version": 1, "calendar": BASE_CALENDAR, "grading": BASE_GRADING, "timeouts": tout}
    return load_policy_string(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))


POLICY = _policy()
FIRST_ONLY = _policy({"clocks": [{
    "id": "first-contact", "type": "follow_up", "applies_to": "lead",
    "by_grade": {"A": "1 business day", "B": "2 business days"}, "within": "3 business days",
    "restart_on_follow_up": False, "warn_before": "2 business hours",
    "release": {"pool": "lead_pool"},
}]})
CAL: Calendar = POLICY.calendar

instants = st.integers(0, SPAN).map(lambda s: T0 + timedelta(seconds=s))
kinds = st.sampled_from(["call", "visit", "email", "meeting", "email_opened"])


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    """A lead, customer or opportunity with activities, stage history and a `now`."""
    typ = draw(st.sampled_from(["lead", "customer", "opportunity"]))
    since = draw(instants)
    now = since + timedelta(seconds=draw(st.integers(0, 40 * 86400)))
    owner = "r-1"
    rec: dict[str, Any] = {"id": "X-1", "type": typ, "owner_id": owner, "owner_since": since,
                           "owner_manager_id": "m-1"}
    if typ == "lead":
        rec["grade"] = draw(st.sampled_from(["A", "B", "C"]))
        if draw(st.booleans()):
            rec["extensions"] = draw(st.integers(0, 3))
    if typ == "customer":
        rec["open_opportunities"] = draw(st.integers(0, 1))
    acts = [
        {"id": f"a{i}", "record_id": "X-1", "kind": draw(kinds),
         "by": draw(st.sampled_from([owner, owner, "r-2"])),
         "at": since + timedelta(seconds=draw(st.integers(-86400, 40 * 86400)))}
        for i in range(draw(st.integers(0, 4)))
    ]
    item: dict[str, Any] = {"record": rec, "activities": acts}
    if typ == "opportunity":
        stages = ["lead_confirmed", "needs_confirmed", "proposal", "negotiation", "contract"]
        k = draw(st.integers(1, 4))
        times = sorted(since + timedelta(seconds=draw(st.integers(-86400, 30 * 86400)))
                       for _ in range(k))
        item["stage_history"] = [{"stage": stages[i], "at": t} for i, t in enumerate(times)]
        item["customer"] = {"id": "C-1", "has_active_contract": False, "open_receivables": 0}
        rec["customer_id"] = "C-1"
    return {"item": item, "now": now}


def _check(policy: Policy, item: dict[str, Any], now: datetime) -> Decision[T.CheckOutcome]:
    return T.check(policy, item["record"], now=now, activities=item.get("activities", ()),
                   stage_history=item.get("stage_history", ()),
                   customer=item.get("customer"))


def _without_changes_between(item: dict[str, Any], a: datetime, b: datetime) -> dict[str, Any]:
    """The item with no activity and no stage change in (a, b]."""
    out = dict(item)
    out["activities"] = [x for x in item["activities"] if not a < x["at"] <= b]
    if "stage_history" in item:
        out["stage_history"] = [x for x in item["stage_history"] if not a < x["at"] <= b]
    return out


@given(cases(), st.integers(1, 30 * 86400))
def test_time_is_monotone(case: dict[str, Any], later_s: int) -> None:
    now = case["now"]
    later = now + timedelta(seconds=later_s)
    item = _without_changes_between(case["item"], now, later)
    first = _check(POLICY, item, now)
    if first.outcome.action == "release":
        again = _check(POLICY, item, later)
        assert again.outcome.action == "release"


@given(cases())
def test_next_check_is_future_and_nothing_changes_before_it(case: dict[str, Any]) -> None:
    now = case["now"]
    d = _check(POLICY, case["item"], now)
    nxt = d.next_check_at
    assert nxt == d.outcome.next_check_at
    if nxt is None:
        return
    assert nxt > now
    just_before = nxt - timedelta(microseconds=1)
    item = _without_changes_between(case["item"], now, just_before)
    e = _check(POLICY, item, just_before)
    assert e.outcome.action == d.outcome.action
    assert [x.idempotency_key for x in e.effects] == [x.idempotency_key for x in d.effects]
    assert [c.state for c in e.outcome.clocks] == [c.state for c in d.outcome.clocks]
    at_next = _check(POLICY, _without_changes_between(case["item"], now, nxt), nxt)
    changed = (
        at_next.outcome.action != d.outcome.action
        or [c.state for c in at_next.outcome.clocks] != [c.state for c in d.outcome.clocks]
    )
    assert changed  # the next check is exactly when something happens


@given(cases(), st.booleans())
def test_exempt_records_are_never_released(case: dict[str, Any], which: bool) -> None:
    item = copy.deepcopy(case["item"])
    rec = item["record"]
    if rec["type"] == "opportunity":
        item["customer"]["open_receivables" if which else "has_active_contract"] = (
            500 if which else True)
    else:
        rec["status"] = "won"
    d = _check(POLICY, item, case["now"])
    assert d.outcome.action != "release"
    assert not any(e.kind == "release_to_pool" for e in d.effects)


@given(cases(), st.booleans())
def test_locked_within_limit_is_never_released(case: dict[str, Any], count_known: bool) -> None:
    item = copy.deepcopy(case["item"])
    item["record"]["locked"] = True
    if count_known:
        item["record"]["owner_lock_count"] = 5
    assert _check(POLICY, item, case["now"]).outcome.action != "release"


@given(cases())
def test_business_deadlines_fall_inside_working_hours(case: dict[str, Any]) -> None:
    d = _check(POLICY, case["item"], case["now"])
    for c in d.outcome.clocks:
        if c.deadline is None or c.duration is None or "business" not in c.duration:
            continue
        inside = CAL.is_working(c.deadline) or CAL.is_working(c.deadline - timedelta(
            microseconds=1))
        assert inside, c
        if c.warn_at is not None:
            assert CAL.is_working(c.warn_at) or CAL.is_working(
                c.warn_at - timedelta(microseconds=1)), c


@given(st.sampled_from(["A", "B", "C"]), instants, st.integers(0, 20 * 86400), st.data())
def test_a_follow_up_before_the_deadline_prevents_that_release(
    grade: str, since: datetime, after_s: int, data: st.DataObject
) -> None:
    rec = {"id": "L-1", "type": "lead", "grade": grade, "owner_id": "r-1", "owner_since": since}
    bare = T.check(FIRST_ONLY, rec, now=since)
    deadline = bare.outcome.clocks[0].deadline
    assert deadline is not None
    span = int((deadline - since).total_seconds())
    assume(span > 0)
    x = since + timedelta(seconds=data.draw(st.integers(0, span - 1)))
    now = x + timedelta(seconds=after_s)
    act = {"id": "a", "record_id": "L-1", "kind": "call", "at": x, "by": "r-1"}
    d = T.check(FIRST_ONLY, rec, now=now, activities=[act])
    assert d.outcome.action != "release"
    assert d.outcome.clocks[0].state == "met"
    # with the restarting clock of the example policy the follow-up moves the deadline to
    # add(x, duration): never overdue before that
    e = T.check(POLICY, rec, now=now, activities=[act])
    fu = next(c for c in e.outcome.clocks if c.clock == "lead-follow-up")
    restarted = CAL.add(x, parse_duration({"A": "1 business day", "B": "2 business days",
                                           "C": "3 business days"}[grade]))
    assert fu.deadline == restarted
    assert (fu.state == "overdue") == (now >= restarted)


@given(cases())
def test_check_is_deterministic_and_round_trips(case: dict[str, Any]) -> None:
    a = _check(POLICY, case["item"], case["now"])
    b = _check(POLICY, copy.deepcopy(case["item"]), case["now"])
    assert a.to_json() == b.to_json()
    assert Decision.from_json(a.to_json()) == a


@given(st.lists(cases(), min_size=1, max_size=5))
def test_sweep_gives_exactly_the_single_checks(batch: list[dict[str, Any]]) -> None:
    now = max(c["now"] for c in batch)
    swept = [d.to_json() for d in T.sweep(POLICY, [c["item"] for c in batch], now)]
    assert swept == [_check(POLICY, c["item"], now).to_json() for c in batch]


@given(instants, st.sampled_from(["1 business day", "3 business days", "12 business days",
                                  "0 business days", "2 days", "1 week", "30 days",
                                  "4 business hours", "P1DT2H"]))
def test_fast_adds_equal_calendar_add(start: datetime, text: str) -> None:
    d = parse_duration(text)
    cw = T._Clockwork(CAL)
    mine, theirs = cw.add(start, d), CAL.add(start, d)
    assert mine == theirs
    assert mine.isoformat() == theirs.isoformat()


@given(instants, st.integers(1, 40 * 3600))
def test_minus_business_inverts_between(end: datetime, seconds: int) -> None:
    cw = T._Clockwork(CAL)
    w = cw.minus_business(end, seconds)
    assert CAL.between(w, end) == timedelta(seconds=seconds)


DST_CALENDARS = (
    Calendar.from_hours("America/New_York", {"mon-sun": ["00:00-02:30", "08:00-24:00"]}),
    Calendar.from_hours("Europe/Berlin", {"mon-fri": ["09:00-18:00"], "sat": ["01:30-03:30"]},
                        country="DE"),
)
dst_instants = st.sampled_from(
    [datetime(2026, 3, 6, tzinfo=UTC), datetime(2026, 3, 27, tzinfo=UTC),
     datetime(2026, 10, 23, tzinfo=UTC), datetime(2026, 10, 30, tzinfo=UTC)]
).flatmap(lambda b: st.integers(0, 5 * 86400).map(lambda s: b + timedelta(seconds=s)))


@given(st.sampled_from(DST_CALENDARS), dst_instants, st.integers(0, 4))
def test_fast_business_days_equal_calendar_add_across_dst(
    cal: Calendar, start: datetime, n: int
) -> None:
    d = parse_duration(f"{n} business days")
    mine, theirs = T._Clockwork(cal).add(start, d), cal.add(start, d)
    assert (mine, mine.isoformat()) == (theirs, theirs.isoformat())


@given(st.lists(cases(), min_size=1, max_size=6))
def test_sweep_entries_match_the_decisions(batch: list[dict[str, Any]]) -> None:
    now = max(c["now"] for c in batch)
    items = [c["item"] for c in batch]
    lean = list(T.sweep_entries(POLICY, items, now))
    full = [T._entry(d) for d in T.sweep(POLICY, items, now)]
    assert lean == full
    collected = T.sweep_all(POLICY, items, now)
    assert collected.outcome.checked == len(items)
    assert sorted(e.record for e in collected.outcome.releases) == sorted(
        e.record for e in full if e.action == "release")
