"""Assignment invariants over random rosters, policies and lead sequences (hypothesis)."""

from __future__ import annotations

import json
import random
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from hypothesis import event, given, settings
from hypothesis import strategies as st

from salesrules.assignment import Roster, assign, assign_many, claim
from salesrules.policy import Policy, load_policy_string

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
TEAMS = ("t1", "t2", "t3")
_CACHE: dict[str, Policy] = {}


def load(doc: dict[str, Any]) -> Policy:
    text = yaml.safe_dump({"version": 1, **doc}, sort_keys=True)
    if text not in _CACHE:
        _CACHE[text] = load_policy_string(text, "prop.yaml")
    return _CACHE[text]


@st.composite
def rosters(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(1, 9))
    out = []
    for i in range(n):
        out.append({
            "id": f"r{i}",
            "teams": sorted(draw(st.sets(st.sampled_from(TEAMS), min_size=1, max_size=2))),
            "manager_id": draw(st.sampled_from(["m1", "m2", None])),
            "region": draw(st.sampled_from(["A", "B"])),
            "active": draw(st.sampled_from([True, True, True, False])),
            "capacity": draw(st.integers(0, 3)),
        })
    return out


@st.composite
def policies(draw: st.DrawFn) -> dict[str, Any]:
    caps: dict[str, Any] = {
        "daily": {"count": "assignments_per_period", "period": "day",
                  "max": draw(st.integers(0, 4))},
        "held": {"count": "holdings", "exclude_won": draw(st.booleans()),
                 "max": draw(st.integers(0, 6))},
    }
    rules = []
    for i in range(draw(st.integers(1, 4))):
        strategy = draw(st.sampled_from(["round_robin", "least_loaded", "weighted",
                                         "creator_first"]))
        rule: dict[str, Any] = {
            "id": f"rule{i}",
            "to": draw(st.sampled_from(["team:t1", "team:t2", "team:t3", "same_superior",
                                        "creator"])),
            "strategy": strategy,
            "same_region": draw(st.booleans()),
            "if_none_eligible": draw(st.sampled_from(["next", "default", "pool:p", "queue:q"])),
        }
        region = draw(st.sampled_from([None, "A", "B"]))
        if region is not None:
            rule["when"] = {"lead.region": region}
        if strategy == "least_loaded":
            rule["load_by"] = draw(st.sampled_from(["daily", "held"]))
        if strategy == "weighted" and draw(st.booleans()):
            rule["weight_by"] = "held"
        rules.append(rule)
    return {
        "pools": {"p": {"members": {"all": True}}},
        "assignment": {"teams": list(TEAMS), "queues": ["q"], "default": "queue:q",
                       "caps": caps, "rules": rules},
    }


leads_st = st.lists(
    st.fixed_dictionaries({
        "region": st.sampled_from(["A", "B", "C"]),
        "creator": st.integers(0, 9),
    }),
    max_size=20,
)


def make_leads(raw: list[dict[str, Any]], roster: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"id": f"L{i}", "region": x["region"], "creator_id": roster[x["creator"] % len(roster)]["id"]}
        for i, x in enumerate(raw)
    ]


def initial_counts(roster: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    out = {}
    for r in roster:
        held = rng.randrange(4)
        out[r["id"]] = {"holdings": held, "won": rng.randrange(held + 1)}
    return out


def candidates(rule: dict[str, Any], lead: dict[str, Any],
               roster: list[dict[str, Any]]) -> set[str]:
    by_id = {r["id"]: r for r in roster}
    creator = by_id.get(lead["creator_id"], {})
    to = rule["to"]
    if to.startswith("team:"):
        out = {r["id"] for r in roster if to[5:] in r["teams"]}
    elif to == "creator":
        out = {creator["id"]} if creator else set()
    else:
        m = creator.get("manager_id")
        out = {r["id"] for r in roster if m is not None and r["manager_id"] == m}
    if rule["same_region"]:
        out = {r for r in out if by_id[r]["region"] == lead["region"]}
    return {r for r in out if by_id[r]["active"]}


@settings(max_examples=60)
@given(rosters(), policies(), leads_st, st.integers(0, 1000))
def test_caps_hold_and_owners_are_eligible_or_the_declared_fallback(
    roster: list[dict[str, Any]], doc: dict[str, Any], raw: list[dict[str, Any]], seed: int
) -> None:
    policy = load(doc)
    leads = make_leads(raw, roster)
    counts = initial_counts(roster, seed)
    decisions = assign_many(policy, leads, now=NOW, roster=roster, counts=counts)
    caps = doc["assignment"]["caps"]
    rules = {r["id"]: r for r in doc["assignment"]["rules"]}
    got: dict[str, int] = {}
    for lead, d in zip(leads, decisions, strict=True):
        out = d.outcome
        assert d.effects and d.effects[0].kind == "set_owner"
        if out.owner_kind == "rep":
            rule = rules[out.rule_id]
            assert out.owner_id in candidates(rule, lead, roster)
            c = counts[out.owner_id]
            held = c["holdings"] - (c["won"] if caps["held"]["exclude_won"] else 0)
            n = got.get(out.owner_id, 0)
            assert n < caps["daily"]["max"]  # count before this assignment was under the cap
            assert held + n < caps["held"]["max"]
            got[out.owner_id] = n + 1
            event("assigned to a rep")
        elif out.code == "no_rule_matched":
            assert (out.owner_kind, out.owner_id) == ("queue", "q")
        else:
            rule = rules[out.rule_id]
            fallback = rule["if_none_eligible"]
            expected = "queue:q" if fallback == "default" else fallback
            assert f"{out.owner_kind}:{out.owner_id}" == expected


@settings(max_examples=30)
@given(st.integers(2, 8), st.integers(0, 40), st.integers(0, 7))
def test_round_robin_over_always_eligible_reps_is_balanced(
    n_reps: int, n_leads: int, start: int
) -> None:
    policy = load({
        "pools": {"p": {"members": {"all": True}}},
        "assignment": {"teams": ["t1"], "default": "pool:p",
                       "rules": [{"id": "rr", "to": "team:t1", "if_none_eligible": "default"}]},
    })
    roster = [{"id": f"r{i}", "teams": ["t1"]} for i in range(n_reps)]
    state = {"rr:team:t1": {"last": f"r{start % n_reps}", "version": 1}}
    decisions = assign_many(policy, [{"id": f"L{i}"} for i in range(n_leads)], now=NOW,
                            roster=roster, state=state)
    tally = {r["id"]: 0 for r in roster}
    for d in decisions:
        tally[d.outcome.owner_id] += 1
    assert max(tally.values()) - min(tally.values()) <= 1


@settings(max_examples=40)
@given(rosters(), policies(), leads_st, st.integers(0, 1000), st.randoms(use_true_random=False))
def test_deterministic_order_independent_and_blind_to_unrelated_fields(
    roster: list[dict[str, Any]], doc: dict[str, Any], raw: list[dict[str, Any]], seed: int,
    rnd: random.Random,
) -> None:
    policy = load(doc)
    leads = make_leads(raw, roster)
    counts = initial_counts(roster, seed)
    first = [d.to_json() for d in assign_many(policy, leads, now=NOW, roster=roster,
                                              counts=counts)]
    again = [d.to_json() for d in assign_many(policy, leads, now=NOW, roster=Roster(roster),
                                              counts=counts)]
    assert first == again
    shuffled = list(roster)
    rnd.shuffle(shuffled)
    assert [d.to_json() for d in assign_many(policy, leads, now=NOW, roster=shuffled,
                                             counts=counts)] == first
    extra = [{**lead, "utm_campaign": "x", "custom_zz": 1} for lead in leads]
    assert [d.to_json() for d in assign_many(policy, extra, now=NOW, roster=roster,
                                             counts=counts)] == first


@settings(max_examples=25)
@given(rosters(), policies(), leads_st)
def test_batch_equals_one_by_one(
    roster: list[dict[str, Any]], doc: dict[str, Any], raw: list[dict[str, Any]]
) -> None:
    policy = load(doc)
    leads = make_leads(raw, roster)[:8]
    batch = assign_many(policy, leads, now=NOW, roster=roster)
    state: dict[str, Any] = {}
    counts: dict[str, dict[str, Any]] = {}
    for lead, expected in zip(leads, batch, strict=True):
        d = assign(policy, lead, now=NOW, roster=roster, state=state, counts=counts)
        assert d.to_json() == expected.to_json()
        state.update(d.state)
        if d.outcome.owner_kind == "rep":
            c = counts.setdefault(d.outcome.owner_id, {})
            c["assigned_at"] = [*c.get("assigned_at", []), NOW.isoformat()]
            c["open_records"] = [*c.get("open_records", []), lead]
            c["holdings"] = c.get("holdings", 0) + 1
            c["last_assigned_at"] = NOW.isoformat()


@settings(max_examples=60)
@given(
    st.integers(1, 6),
    st.integers(0, 6),
    st.integers(0, 8),
    st.integers(0, 10),
    st.booleans(),
    st.lists(st.sampled_from(["p", "other"]), min_size=0, max_size=5),
)
def test_refused_batch_claim_changes_nothing(
    per_day: int, claimed: int, holdings_max: int, held: int, admin: bool, pools: list[str]
) -> None:
    policy = load({"pools": {"p": {
        "members": {"all": True}, "admins": {"roles": ["admin"]}, "admins_can_claim": False,
        "claims": {"per_day": per_day}, "holdings": {"max": holdings_max, "exclude_won": False},
    }}})
    rep = {"id": "a", "roles": ["admin"] if admin else []}
    records = [{"id": f"R{i}", "pool": p} for i, p in enumerate(pools)]
    counts = {"claimed_at": [NOW.isoformat()] * claimed, "holdings": held}
    d = claim(policy, rep, records, pool="p", now=NOW, counts=counts)
    refused = (not records or admin or "other" in pools or claimed + len(records) > per_day
               or held + len(records) > holdings_max)
    assert d.outcome.allowed is (not refused)
    if refused:
        assert d.effects == () and d.assumptions == () and d.state == {}
        assert d.outcome.refusals
    else:
        assert len(d.effects) == len(records)
    assert json.loads(d.to_json())["kind"] == "claim"
