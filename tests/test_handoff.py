"""Delivery handoff: golden cases, compile checks, records, CLI kinds and properties."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from salesrules import _serde
from salesrules.decision import Decision
from salesrules.errors import PolicyError, RecordError
from salesrules.handoff import (
    CODES,
    REASONS,
    HandoffOutcome,
    HandoffPolicy,
    StatusOutcome,
    TemplateSyntaxError,
    decide_many,
    on_contract_event,
    on_project_status,
    parse_template,
    render_template,
    with_project_id,
)
from salesrules.policy import Policy, load_policy, load_policy_string

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden" / "handoff"
RULES = ROOT / "rules" / "handoff.yaml"
CST = timezone(timedelta(hours=8))
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=CST)

CONTRACT: dict[str, Any] = {
    "id": "C-1",
    "number": "HT-2026-001",
    "opportunity_id": "O-1",
    "customer_id": "K-1",
    "owner_id": "r-east-1",
    "amount": "1200000.00",
    "currency": "CNY",
    "product_line": "gov_platform",
    "region": "华东",
    "start_date": "2026-04-01",
    "end_date": "2026-12-31",
}
OPPORTUNITY: dict[str, Any] = {
    "id": "O-1",
    "name": "智慧政务二期",
    "owner_id": "r-east-1",
    "collaborator_ids": ["r-east-2"],
}
CUSTOMER: dict[str, Any] = {
    "id": "K-1",
    "name": "杭州市数据局",
    "industry": "政府",
    "region": "华东",
}

_POLICY_CACHE: dict[str, Policy] = {}


def example_policy() -> Policy:
    if "example" not in _POLICY_CACHE:
        _POLICY_CACHE["example"] = load_policy(RULES)
    return _POLICY_CACHE["example"]


def _event(data: Mapping[str, Any]) -> dict[str, Any]:
    return {"contract_id": "C-1", "at": NOW.isoformat(), **data}


def _lookup(node: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return "<absent>"
        node = node[part]
    return node


def _plain(value: Any) -> Any:
    return _serde.to_jsonable(value)


# --------------------------------------------------------------------------------------------
# golden cases
# --------------------------------------------------------------------------------------------


def _golden() -> list[Any]:
    files = sorted(GOLDEN.glob("*.yaml"))
    return [pytest.param(p, id=yaml.safe_load(p.read_text("utf-8"))["note"]) for p in files]


def _case_policy(path: Path, case: Mapping[str, Any]) -> Policy:
    if "rules" in case:
        target = (path.parent / case["rules"]).resolve()
        if target == RULES.resolve():
            return example_policy()
        return load_policy(target)
    text = yaml.safe_dump({"version": 1, **case["policy"]}, allow_unicode=True)
    return load_policy_string(text, f"{path.name}#policy")


def _check_want(where: str, decision: Decision[Any], want: Mapping[str, Any]) -> None:
    out = decision.outcome
    for name in ("action", "applied", "team", "template", "project_lead"):
        if name in want:
            assert getattr(out, name) == want[name], f"{where}: {name}"
    if "reasons" in want:
        assert list(decision.reason_codes) == want["reasons"], f"{where}: reasons"
    if "effects" in want:
        assert [f"{e.kind} {e.target}" for e in decision.effects] == want["effects"], where
    if "keys" in want:
        assert [e.idempotency_key for e in decision.effects] == want["keys"], f"{where}: keys"
    if "errors" in want:
        assert [e.code for e in decision.errors] == want["errors"], f"{where}: errors"
    for key, value in (want.get("params") or {}).items():
        found = [_plain(_lookup(e.params, key)) for e in decision.effects]
        assert _plain(value) in found, f"{where}: params {key}={value!r} not in {found}"
    for key, value in (want.get("state") or {}).items():
        assert _plain(_lookup(decision.state, key)) == _plain(value), f"{where}: state {key}"
    if "updates" in want:
        got = {f"{u.target}.{u.field}": _plain(u.value) for u in out.updates}
        for key, value in want["updates"].items():
            assert got.get(key, "<absent>") == _plain(value), f"{where}: update {key}"
    if "tasks" in want:
        assert list(out.tasks) == want["tasks"], f"{where}: tasks"


@pytest.mark.parametrize("path", _golden())
def test_golden(path: Path) -> None:
    case = yaml.safe_load(path.read_text("utf-8"))
    policy = _case_policy(path, case)
    base = {
        "contract": {**CONTRACT, **(case.get("contract") or {})},
        "opportunity": {**OPPORTUNITY, **(case.get("opportunity") or {})},
        "customer": {**CUSTOMER, **(case.get("customer") or {})},
    }
    state: Mapping[str, Any] | None = None
    for i, step in enumerate(case["steps"]):
        where = f"{path.name} step {i + 1}"
        if "set_project_id" in step:
            state = with_project_id(state or {}, step["set_project_id"])
            continue
        if "contract_event" in step:
            records = {k: {**v, **(step.get(k) or {})} for k, v in base.items()}

            def decide(
                records: dict[str, Any] = records,
                step: Mapping[str, Any] = step,
                state: Mapping[str, Any] | None = state,
            ) -> Decision[Any]:
                return on_contract_event(
                    policy,
                    _event(step["contract_event"]),
                    contract=records["contract"],
                    opportunity=records["opportunity"],
                    customer=records["customer"],
                    state=state,
                    now=NOW,
                )

        else:

            def decide(
                step: Mapping[str, Any] = step, state: Mapping[str, Any] | None = state
            ) -> Decision[Any]:
                return on_project_status(
                    policy, _event(step["project_status"]), state=state, now=NOW
                )

        decision = decide()
        _check_want(where, decision, step.get("want") or {})
        # deterministic, and the JSON round trip is exact
        assert decide().to_json() == decision.to_json(), where
        assert Decision.from_json(decision.to_json()) == decision, where
        state = decision.state


def test_every_reason_code_has_a_golden_case() -> None:
    text = "\n".join(p.read_text("utf-8") for p in GOLDEN.glob("*.yaml"))
    assert sorted(code for code in REASONS if code not in text) == []


def test_example_policy_loads_clean() -> None:
    policy = load_policy(RULES, strict=True)
    assert policy.warnings == ()
    assert isinstance(policy.section("handoff"), HandoffPolicy)


# --------------------------------------------------------------------------------------------
# compile checks (codes, with locations)
# --------------------------------------------------------------------------------------------

BASE = """
version: 1
handoff:
  sources:
    contract: [region, amount, number, product_line]
    customer: [name]
  teams: [{ id: t-east, lead: p-1, members: [p-2] }]
  templates: [{ id: tpl-a }]
  delivery_team:
    rules: [{ id: east, when: { contract.region: 华东 }, team: t-east }]
    default: t-east
  template: { default: tpl-a }
  project_fields: [name]
  mapping: { name: { template: "{customer.name}-{contract.number}" } }
  revocation: { no_status: cancel, otherwise: flag }
  statuses: [planning, done]
  crm_fields: { opportunity.delivery_status: { default: none } }
  status_map:
    - { status: planning, set: { opportunity.delivery_status: planning } }
    - { status: done, set: { opportunity.delivery_status: done } }
"""


def _codes(text: str, *, strict: bool = False) -> list[str]:
    try:
        policy = load_policy_string(text, "h.yaml", strict=strict)
    except PolicyError as exc:
        assert all(i.location is not None for i in exc.issues)
        return sorted(i.code for i in exc.issues)
    return sorted(i.code for i in policy.warnings)


def test_base_policy_is_clean() -> None:
    assert _codes(BASE, strict=True) == []


@pytest.mark.parametrize(
    ("old", "new", "code"),
    [
        ("{customer.name}-{contract.number}", "{customer.nam}-{contract.number}", "SR260"),
        ("contract.region: 华东", "contract.territory: 华东", "SR260"),
        ('{ template: "{customer.name}-{contract.number}" }', "{ required: true }", "SR261"),
        (
            '{ template: "{customer.name}-{contract.number}" }',
            "{ field: customer.name, value: x }",
            "SR261",
        ),
        ("{customer.name}-{contract.number}", "{customer.name-{contract.number}", "SR262"),
        ("{customer.name}-{contract.number}", "{customer}-{contract.number}", "SR262"),
        ("mapping: { name:", "mapping: { title:", "SR263"),
        ("{ opportunity.delivery_status: planning }", "{ opportunity.stage: planning }", "SR263"),
        ("crm_fields: { opportunity.delivery_status", "crm_fields: { delivery_status", "SR263"),
        ("- { status: done,", "- { status: finished,", "SR264"),
        ("otherwise: flag }", "otherwise: flag, cancel_when: [planing] }", "SR264"),
        ("team: t-east }]", "team: t-west }]", "SR265"),
        ("default: t-east", "default: t-eats", "SR265"),
        ("template: { default: tpl-a }", "template: { default: tpl-b }", "SR266"),
        (
            "template: { default: tpl-a }",
            "template: { default: tpl-a }\n  project_lead: { default: p-9 }",
            "SR267",
        ),
        ("- { status: done,", "- { status: planning,", "SR268"),
        (
            "delivery_team:",
            "verification: { create_project: [x], no_project: [x] }\n  delivery_team:",
            "SR268",
        ),
        (
            "set: { opportunity.delivery_status: done } }",
            "set: { opportunity.delivery_status: done }, tasks: [{ id: t, to: boss, title: hi }] }",
            "SR269",
        ),
        (
            "set: { opportunity.delivery_status: done } }",
            "set: { opportunity.delivery_status: done }, tasks: [{ id: t, title: hi, due: soon }] }",
            "SR130",
        ),
        ("{ contract.region: 华东 }", "{ contract.region: { equals: 华东 } }", "SR120"),
        (
            "project_fields: [name]",
            "project_fields: [name, x]\n  stakeholders: { sales_owner: { field: lead.owner } }",
            "SR260",
        ),
        ("revocation:", 'messages: { approved: "{contract.region" }\n  revocation:', "SR262"),
        (
            "status_map:",
            "milestones: [{ milestone: m, set: {} }, { milestone: m, set: {} }]\n  status_map:",
            "SR268",
        ),
        (
            "teams: [{ id: t-east, lead: p-1, members: [p-2] }]",
            "teams: [{ id: t-east, lead: p-1 }, { id: t-east }]",
            "SR200",
        ),
        (
            "revocation: { no_status: cancel, otherwise: flag }",
            "revocation: { otherwise: flag }",
            "SR105",
        ),
        (
            "revocation: { no_status: cancel, otherwise: flag }",
            "revocation: { no_status: cancel, otherwise: delete }",
            "SR106",
        ),
    ],
)
def test_compile_errors(old: str, new: str, code: str) -> None:
    assert old in BASE
    assert code in _codes(BASE.replace(old, new))


@pytest.mark.parametrize(
    ("old", "new", "code"),
    [
        ("statuses: [planning, done]", "statuses: [planning, done, on_hold]", "SR350"),
        (
            "teams: [{ id: t-east, lead: p-1, members: [p-2] }]",
            "teams: [{ id: t-east, lead: p-1, members: [p-2] }, { id: t-idle }]",
            "SR351",
        ),
        ("templates: [{ id: tpl-a }]", "templates: [{ id: tpl-a }, { id: tpl-z }]", "SR352"),
        (
            "rules: [{ id: east, when: { contract.region: 华东 }, team: t-east }]",
            "rules: [{ id: all, team: t-east }, { id: east, when: { contract.region: 华东 }, team: t-east }]",
            "SR353",
        ),
        ("    default: t-east\n", "", "SR354"),
        ("project_fields: [name]", "project_fields: [name, budget]", "SR355"),
        (
            "crm_fields: { opportunity.delivery_status: { default: none } }",
            "crm_fields: { opportunity.delivery_status: { default: none }, opportunity.x: {} }",
            "SR356",
        ),
    ],
)
def test_compile_warnings(old: str, new: str, code: str) -> None:
    assert old in BASE
    text = BASE.replace(old, new)
    assert code in _codes(text)
    assert code in _codes(text, strict=True)  # strict promotes it to an error


def test_issue_location_points_at_the_reference() -> None:
    text = BASE.replace("team: t-east }]", "team: t-west }]")
    with pytest.raises(PolicyError) as info:
        load_policy_string(text, "h.yaml")
    issue = next(i for i in info.value.issues if i.code == "SR265")
    assert issue.location is not None
    assert (
        issue.location.line
        == text.splitlines().index(next(line for line in text.splitlines() if "t-west" in line)) + 1
    )
    assert issue.rule_id == "east"


def test_codes_documented() -> None:
    doc = (ROOT / "docs" / "handoff.md").read_text("utf-8")
    assert [c for c in CODES if c not in doc] == []
    assert [c for c in REASONS if f"`{c}`" not in doc] == []
    assert all(260 <= int(c[2:]) <= 269 or 350 <= int(c[2:]) <= 359 for c in CODES)


# --------------------------------------------------------------------------------------------
# templates
# --------------------------------------------------------------------------------------------


def test_template_rendering() -> None:
    ctx = {"customer": {"name": "甲方", "n": 3, "flag": True}, "contract": {"number": "N-1"}}
    assert render_template("{customer.name}-{contract.number}", ctx) == ("甲方-N-1", ())
    dated = {"contract": {"start": date(2026, 4, 1), "tags": ["a"]}}
    assert render_template("from {contract.start}", dated) == ("from 2026-04-01", ())
    assert render_template("{contract.tags}", dated) == (None, ("contract.tags",))
    assert render_template("{{literal}} {customer.n} {customer.flag}", ctx) == (
        "{literal} 3 true",
        (),
    )
    assert render_template("{customer.missing}-x", ctx) == (None, ("customer.missing",))
    # only dotted paths of plain data: no indexing, conversions or format specs
    for bad in ("{customer.name!r}", "{0}", "{customer.name:>10}", "{a", "a}", "{customer}"):
        with pytest.raises(TemplateSyntaxError):
            parse_template(bad)
    # attribute names are looked up as mapping keys only, never as Python attributes
    assert render_template("{customer.name.__class__}", ctx)[0] is None


@given(st.text(alphabet=st.sampled_from("ab{}.c_ -"), max_size=20))
def test_template_parser_never_crashes(text: str) -> None:
    try:
        parts = parse_template(text)
    except TemplateSyntaxError:
        return
    rendered, missing = render_template(parts, {"a": {"b": "x"}})
    assert rendered is not None or missing


# --------------------------------------------------------------------------------------------
# records and errors
# --------------------------------------------------------------------------------------------


def _approve(**over: Any) -> Decision[HandoffOutcome]:
    args: dict[str, Any] = {
        "contract": CONTRACT,
        "opportunity": OPPORTUNITY,
        "customer": CUSTOMER,
        "state": None,
        "now": NOW,
    }
    event = over.pop("event", _event({"id": "E1", "type": "approved", "version": 1}))
    args.update(over)
    return on_contract_event(example_policy(), event, **args)


@pytest.mark.parametrize(
    ("over", "record", "field"),
    [
        ({"now": datetime(2026, 3, 2, 10)}, "now", "now"),
        (
            {"event": _event({"id": "E1", "type": "approve", "version": 1})},
            "contract_event 'E1'",
            "type",
        ),
        (
            {"event": _event({"id": "E1", "type": "approved", "version": -1})},
            "contract_event 'E1'",
            "version",
        ),
        (
            {
                "event": {
                    "id": "E1",
                    "type": "approved",
                    "version": 1,
                    "contract_id": "C-1",
                    "at": "2026-03-02T10:00:00",
                }
            },
            "contract_event 'E1'",
            "at",
        ),
        ({"contract": {**CONTRACT, "amount": 1.5}}, "contract 'C-1'", "amount"),
        ({"contract": {**CONTRACT, "start_date": "next week"}}, "contract 'C-1'", "start_date"),
        ({"contract": {**CONTRACT, "id": "C-2"}}, "contract_event 'E1'", "contract_id"),
        ({"customer": {"name": "no id"}}, "customer", "id"),
        ({"state": {"contract_id": "C-9"}}, "handoff state", "contract_id"),
        ({"state": {"contract_id": "C-1", "phase": "dancing"}}, "handoff state", "phase"),
    ],
)
def test_bad_records_raise_record_error(over: dict[str, Any], record: str, field: str) -> None:
    with pytest.raises(RecordError) as info:
        _approve(**over)
    assert info.value.record == record
    assert info.value.field == field


def test_bad_status_event_raises_record_error() -> None:
    with pytest.raises(RecordError) as info:
        on_project_status(
            example_policy(),
            _event({"id": "S1", "status": "done", "percent_complete": 140}),
            state=None,
            now=NOW,
        )
    assert info.value.field == "percent_complete"


def test_with_project_id_needs_a_project() -> None:
    with pytest.raises(RecordError):
        with_project_id({"contract_id": "C-1"}, "P-1")


def test_policy_without_handoff_section() -> None:
    policy = load_policy_string("version: 1\n")
    with pytest.raises(RecordError):
        on_contract_event(
            policy,
            _event({"id": "E1", "type": "approved", "version": 1}),
            contract=CONTRACT,
            now=NOW,
        )


def test_decision_is_immutable_and_explains() -> None:
    decision = _approve(explain=True)
    assert decision.trace is not None
    assert any(step.rule_id == "region-east" for step in decision.trace.steps)
    assert _approve().trace is None
    with pytest.raises(AttributeError):
        decision.outcome.action = "ignored"  # type: ignore[misc]
    assert "notified" in str(decision)


def test_unrelated_field_changes_nothing() -> None:
    a = _approve()
    b = _approve(contract={**CONTRACT, "x_custom_note": "irrelevant"})
    assert a.to_json() == b.to_json()


# --------------------------------------------------------------------------------------------
# CLI request kinds (Policy.decide)
# --------------------------------------------------------------------------------------------


def test_cli_kinds_round_trip() -> None:
    policy = example_policy()
    assert {"contract_event", "project_status"} <= set(policy.kinds)
    request = {
        "kind": "contract_event",
        "now": NOW.isoformat(),
        "event": _event(
            {"id": "E2", "type": "verified", "version": 1, "verification": "normal_project"}
        ),
        "contract": CONTRACT,
        "opportunity": OPPORTUNITY,
        "customer": CUSTOMER,
    }
    decision = policy.decide(json.dumps(request, ensure_ascii=False))
    assert isinstance(decision.outcome, HandoffOutcome)
    assert decision.outcome.action == "project_created"
    again = Decision.from_json(decision.to_json())
    assert again == decision
    status = policy.decide(
        {
            "kind": "project_status",
            "now": NOW.isoformat(),
            "event": _event({"id": "S1", "status": "planning", "version": 1}),
            "state": dict(decision.state),
        }
    )
    assert isinstance(status.outcome, StatusOutcome)
    assert status.outcome.action == "applied"
    assert Decision.from_json(status.to_json()) == status
    for kind, missing in (("contract_event", "contract"), ("project_status", "event")):
        req = {k: v for k, v in {**request, "kind": kind}.items() if k != missing}
        with pytest.raises(RecordError):
            policy.decide(req)


# --------------------------------------------------------------------------------------------
# properties: a tiny reference host
# --------------------------------------------------------------------------------------------


class Host:
    """Applies handoff effects to an in-memory project tool and CRM, threading the state."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.state: Mapping[str, Any] = {}
        self.projects: dict[str, dict[str, Any]] = {}  # create key -> project
        self.crm: dict[str, Any] = {}
        self.tasks: dict[str, Any] = {}
        self.applied_keys: set[str] = set()

    def apply(self, decision: Decision[Any]) -> None:
        for e in decision.effects:
            if e.idempotency_key in self.applied_keys:
                continue  # the project tool / CRM dedupes by key
            self.applied_keys.add(e.idempotency_key)
            if e.kind == "create_project":
                pid = f"P-{len(self.projects) + 1}"
                self.projects[e.idempotency_key] = {"id": pid, "state": "live"}
            elif e.kind in ("cancel_project", "flag_project", "update_project"):
                project = self.projects[e.params["project_key"]]  # never an orphan reference
                if e.kind == "cancel_project":
                    project["state"] = "cancelled"
                elif e.kind == "flag_project":
                    project["state"] = "flagged"
                elif e.params.get("flagged") is False:
                    project["state"] = "live"
            elif e.kind == "update_field":
                self.crm[f"{e.target}.{e.params['field']}"] = _plain(e.params["value"])
            elif e.kind == "create_task":
                self.tasks[e.idempotency_key] = dict(e.params)
        self.state = decision.state
        created = [e for e in decision.effects if e.kind == "create_project"]
        if created:
            self.state = with_project_id(
                self.state, self.projects[created[0].idempotency_key]["id"]
            )

    def contract(self, event: Mapping[str, Any]) -> Decision[Any]:
        d = on_contract_event(
            self.policy,
            event,
            contract=CONTRACT,
            opportunity=OPPORTUNITY,
            customer=CUSTOMER,
            state=self.state,
            now=NOW,
        )
        self.apply(d)
        return d

    def status(self, event: Mapping[str, Any]) -> Decision[Any]:
        d = on_project_status(self.policy, event, state=self.state, now=NOW)
        self.apply(d)
        return d

    def live(self) -> list[str]:
        return [k for k, p in self.projects.items() if p["state"] != "cancelled"]


CONTRACT_EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["approved", "verified", "revoked", "amended"]),
        st.integers(0, 3),
        st.sampled_from(["normal_project", "normal_project", "framework_agreement", "odd"]),
    ),
    min_size=1,
    max_size=8,
    unique_by=lambda t: (t[0], t[1]),
)
STATUSES = [
    "not_started",
    "planning",
    "in_progress",
    "on_hold",
    "accepted",
    "completed",
    "cancelled",
]


@given(CONTRACT_EVENTS, st.data())
def test_at_most_one_live_project_and_no_orphans(events: list[Any], data: st.DataObject) -> None:
    raw = [
        _event({"id": f"E-{kind}-{v}", "type": kind, "version": v, "verification": ver})
        for kind, v, ver in events
    ]
    statuses = [
        _event({"id": f"S{i}", "status": s, "version": i, "percent_complete": 10 * i})
        for i, s in enumerate(data.draw(st.lists(st.sampled_from(STATUSES), max_size=4)))
    ]
    pool = [("c", e) for e in raw] + [("s", e) for e in statuses]
    deliveries = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=20))
    host = Host(example_policy())
    applied = []
    for which, event in deliveries:
        d = host.contract(event) if which == "c" else host.status(event)
        assert (d.effects == ()) or d.outcome.applied
        if d.outcome.applied:
            applied.append((which, event))
        live = host.live()
        assert len(live) <= 1
        project = host.state.get("project")
        if live:  # the live project is the one the state knows: no orphan
            assert project is not None
            assert project["key"] == live[0]
            assert project["state"] != "cancelled"
    # delivering an already applied event again changes nothing
    for which, event in applied[-3:]:
        before = (json.dumps(_plain(host.state), sort_keys=True), len(host.projects))
        d = host.contract(event) if which == "c" else host.status(event)
        assert d.effects == ()
        assert (json.dumps(_plain(host.state), sort_keys=True), len(host.projects)) == before


STATUS_EVENTS = st.lists(
    st.tuples(
        st.sampled_from([*STATUSES, "mystery"]),
        st.integers(0, 100),
        st.lists(st.sampled_from(["acceptance", "kickoff"]), max_size=2, unique=True),
    ),
    min_size=1,
    max_size=6,
)


def _started_host() -> Host:
    host = Host(example_policy())
    host.contract(
        _event({"id": "E1", "type": "verified", "version": 1, "verification": "normal_project"})
    )
    return host


@given(STATUS_EVENTS, st.booleans(), st.data())
def test_crm_equals_newest_status_applied_once(
    items: list[Any], by_time: bool, data: st.DataObject
) -> None:
    events = []
    for i, (status, pct, done) in enumerate(items):
        ev: dict[str, Any] = {
            "id": f"S{i}",
            "status": status,
            "percent_complete": pct,
            "milestones": [{"id": m, "done": True} for m in done],
        }
        if by_time:
            ev["at"] = (NOW + timedelta(minutes=i)).isoformat()
        else:
            ev["version"] = i
        events.append(_event(ev))
    deliveries = data.draw(st.lists(st.sampled_from(events), min_size=1, max_size=15))
    host = _started_host()
    for ev in deliveries:
        host.status(ev)
    known = [e for e in deliveries if e["status"] != "mystery"]
    once = _started_host()
    if known:
        newest = max(known, key=lambda e: (e.get("version", -1), e["at"]))
        once.status(newest)
        assert host.state["status"]["event_id"] == newest["id"]
    assert host.crm == once.crm
    assert len(host.projects) == 1
    # tasks are keyed per contract and status: at most one cross-sell task
    assert sum(1 for k in host.tasks if "/completed/" in k) <= 1


@given(st.permutations(["approved", "verified", "verified", "approved"]))
def test_webhook_redelivery_creates_exactly_one_project(order: list[str]) -> None:
    host = Host(example_policy())
    for kind in order:
        host.contract(
            _event(
                {"id": f"E-{kind}", "type": kind, "version": 1, "verification": "normal_project"}
            )
        )
    assert len(host.projects) == 1
    assert host.live() == ["create_project:contract:C-1:v1"]


def test_explain_reports_unknown_rules_and_status_steps() -> None:
    decision = _approve(contract={**CONTRACT, "region": None}, explain=True)
    assert decision.outcome.team == "delivery-pmo"
    assert decision.trace is not None
    statuses = [step.status.value for step in decision.trace.steps]
    assert statuses.count("ERRORED") == 4
    assert [e.code for e in decision.errors] == ["missing_field"] * 4
    # explain on or off: the same decision apart from the trace
    plain = _approve(contract={**CONTRACT, "region": None})
    assert plain.errors == decision.errors
    assert plain.effects == decision.effects
    created = on_contract_event(
        example_policy().section("handoff"),  # the compiled section works too
        _event({"id": "E2", "type": "verified", "version": 1, "verification": "normal_project"}),
        contract=CONTRACT,
        opportunity=OPPORTUNITY,
        customer=CUSTOMER,
        state=None,
        now=NOW,
    )
    assert "template tpl-gov-platform" in str(created)
    assert created.policy_digest == ""
    status = on_project_status(
        example_policy(),
        _event({"id": "S1", "status": "completed", "version": 1}),
        state=created.state,
        now=NOW,
        explain=True,
    )
    assert status.trace is not None
    assert any(step.rule_id == "completed" for step in status.trace.steps)
    assert "applied (5 updates, 1 tasks)" in str(status)


def test_crm_record_without_id_is_reported_not_written() -> None:
    contract = {k: v for k, v in CONTRACT.items() if k != "opportunity_id"}
    created = on_contract_event(
        example_policy(),
        _event({"id": "E2", "type": "verified", "version": 1, "verification": "normal_project"}),
        contract=contract,
        opportunity=None,
        customer=CUSTOMER,
        state=None,
        now=NOW,
    )
    assert created.outcome.action == "project_created"
    assert created.state["opportunity_id"] is None
    status = on_project_status(
        example_policy(),
        _event({"id": "S1", "status": "planning", "version": 1}),
        state=created.state,
        now=NOW,
    )
    assert status.outcome.applied
    assert status.effects == ()
    assert {e.field for e in status.errors} == {"opportunity.id"}


def test_dump_round_trip_keeps_literal_null() -> None:
    text = RULES.read_text("utf-8").replace(
        "opportunity.delivery_status: cancelled",
        "opportunity.delivery_status: cancelled, opportunity.delivered: null",
    )
    for policy in (example_policy(), load_policy_string(text)):
        again = load_policy_string(yaml.safe_dump(policy.dump(), allow_unicode=True))
        assert again == policy


def test_declared_but_unmapped_status_writes_defaults() -> None:
    policy = load_policy_string(
        BASE.replace("statuses: [planning, done]", "statuses: [planning, done, paused]")
    )
    created = on_contract_event(
        policy,
        _event({"id": "E2", "type": "verified", "version": 1, "verification": "normal_project"}),
        contract=CONTRACT,
        opportunity=OPPORTUNITY,
        customer=CUSTOMER,
        state=None,
        now=NOW,
    )
    assert created.outcome.action == "project_created"
    status = on_project_status(
        policy, _event({"id": "S1", "status": "paused", "version": 1}), state=created.state, now=NOW
    )
    assert status.outcome.action == "applied"
    assert [(u.field, u.value) for u in status.outcome.updates] == [("delivery_status", "none")]
    assert status.outcome.tasks == ()


def test_decide_many_equals_one_by_one() -> None:
    policy = example_policy()
    c2 = {**CONTRACT, "id": "C-2", "region": "西南"}

    def req(kind: str, contract: Mapping[str, Any], **event: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": kind,
            "now": NOW.isoformat(),
            "event": {"contract_id": contract["id"], "at": NOW.isoformat(), **event},
        }
        if kind == "contract_event":
            body.update(contract=contract, opportunity=OPPORTUNITY, customer=CUSTOMER)
        return body

    stream = [
        req("contract_event", CONTRACT, id="E1", type="approved", version=1),
        req(
            "contract_event", c2, id="F1", type="verified", version=1, verification="normal_project"
        ),
        req(
            "contract_event",
            CONTRACT,
            id="E2",
            type="verified",
            version=1,
            verification="normal_project",
        ),
        req("project_status", c2, id="S2", status="in_progress", version=2, project_id="P-2"),
        req(
            "contract_event",
            CONTRACT,
            id="E2",
            type="verified",
            version=1,
            verification="normal_project",
        ),
        req("project_status", c2, id="S1", status="planning", version=1, project_id="P-2"),
    ]
    batch = [d.to_json() for d in decide_many(policy, stream)]
    states: dict[str, Any] = {}
    one_by_one = []
    for r in stream:
        cid = r["event"]["contract_id"]
        d = policy.decide({**r, "state": states.get(cid)})
        states[cid] = d.state
        one_by_one.append(d.to_json())
    assert batch == one_by_one
    actions = [json.loads(t)["outcome"]["action"] for t in batch]
    assert actions == [
        "notified",
        "project_created",
        "project_created",
        "applied",
        "ignored",
        "ignored",
    ]
    with pytest.raises(RecordError):
        list(decide_many(policy, [{"kind": "assign", "now": NOW.isoformat()}]))
    with pytest.raises(RecordError):
        list(decide_many(policy, [{"kind": "project_status", "now": NOW.isoformat(), "event": {}}]))
