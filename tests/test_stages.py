"""Stage gates: the graph, every refusal code, bypass, effects, compile checks, golden cases."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from salesrules.decision import Decision
from salesrules.errors import PolicyError, RecordError
from salesrules.policy import Policy, load_policy, load_policy_string
from salesrules.records import StageActor, StageOpportunity
from salesrules.stages import (
    STAGE_CODES,
    AvailableTransitions,
    StagesPolicy,
    StageVerdict,
    _fallback_revenue_split,
    available_transitions,
    check_transition,
)

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules" / "stages.yaml"
GOLDEN = Path(__file__).parent / "golden" / "stages"
CST = timezone(timedelta(hours=8))
NOW = datetime(2026, 12, 3, 10, 0, tzinfo=CST)

OWNER = {"id": "r-east-1", "roles": ["sales_rep"]}
MANAGER = {"id": "m-east", "roles": ["sales_manager"]}
COLLAB = {"id": "r-east-2", "roles": ["sales_rep"]}
STRANGER = {"id": "r-north-1", "roles": ["sales_rep"]}
VP = {"id": "vp-sales", "roles": ["sales_vp"]}
ADMIN = {"id": "it-admin", "roles": ["admin", "sales_vp"]}  # no bypass permission
MIGRATOR = {"id": "ops-1", "roles": [], "permissions": ["data_migration"]}

#: Every piece of evidence any transition of rules/stages.yaml asks for.
FULL: dict[str, Any] = {
    "decision_maker": "李总",
    "budget_confirmed": True,
    "amount": Decimal("500000"),
    "close_date": "2026-12-31",
    "solution_scope": "ERP 二期",
    "quote_id": "Q-2026-118",
    "discount_pct": Decimal("10"),
    "competitor": "某友商",
    "contract_no": "HT-2026-0042",
    "loss_reason": "价格",
    "customer_registered": True,
    "attachments": [{"kind": k} for k in ("需求调研表", "方案书", "报价单", "合同扫描件")],
    "checklist": {"kickoff_call": True, "demo_done": True, "legal_review": True},
    "approvals": [{"kind": "discount"}, {"kind": "contract"}],
    "splits": [{"rep_id": "r-east-1", "share": "60"}, {"rep_id": "r-east-2", "share": "40"}],
}


def opp(stage: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "O-1",
        "stage": stage,
        "owner_id": "r-east-1",
        "owner_manager_id": "m-east",
        "collaborator_ids": ["r-east-2"],
    }
    base.update(fields)
    return base


def full(stage: str, **fields: Any) -> dict[str, Any]:
    return opp(stage, **{**FULL, **fields})


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(RULES)


def check(policy: Policy, record: dict[str, Any], to: str, **kw: Any) -> Decision[StageVerdict]:
    kw.setdefault("actor", OWNER)
    kw.setdefault("channel", "ui")
    kw.setdefault("now", NOW)
    return check_transition(policy, record, to_stage=to, **kw)


# ---------------------------------------------------------------------------------------------
# the graph
# ---------------------------------------------------------------------------------------------


def test_example_policy_loads_without_warnings(policy: Policy) -> None:
    assert policy.warnings == ()
    assert load_policy(ROOT / "rules").has("stages")


def test_graph_of_the_example(policy: Policy) -> None:
    sp: StagesPolicy = policy.section("stages")
    assert sp.initial == "lead_confirmed"
    assert [s.label for s in sp.stages.values()] == [
        "线索确认", "需求确认", "方案报价", "商务谈判", "合同签订", "赢单", "输单",
    ]
    assert {s.id for s in sp.stages.values() if s.kind != "open"} == {"won", "lost"}
    moves = {k: t.move for k, t in sp.transitions.items()}
    assert moves[("proposal", "needs_confirmed")] == "backward"
    assert moves[("contract", "won")] == "won"
    assert moves[("lead_confirmed", "lost")] == "lost"
    assert all(("won", s) not in sp.transitions and ("lost", s) not in sp.transitions for s in sp.stages)
    assert sp.path_exists("lead_confirmed", "won")
    assert not sp.path_exists("won", "lead_confirmed")


def test_forward_transition_allowed_with_evidence(policy: Policy) -> None:
    d = check(policy, full("needs_confirmed"), "proposal")
    assert d.outcome.allowed
    assert d.outcome.failed == ()
    assert d.outcome.to_label == "方案报价"
    assert d.reason_codes == ("transition_allowed",)
    kinds = [e.kind for e in d.effects]
    assert kinds[:2] == ["update_field", "stage_entered"]
    assert d.effects[0].params == {"field": "stage", "value": "proposal"}
    entered = d.effects[1].params
    assert entered["stage"] == "proposal"
    assert entered["previous_stage"] == "needs_confirmed"
    assert entered["at"] == NOW.isoformat()
    assert entered["by"] == "r-east-1"
    assert "notify" in kinds
    assert d.assumptions[0].key == "opportunity:O-1.stage"
    assert d.assumptions[0].expected == "needs_confirmed"
    assert len({e.idempotency_key for e in d.effects}) == len(d.effects)


def test_every_missing_requirement_is_listed_at_once(policy: Policy) -> None:
    d = check(policy, opp("proposal", amount=Decimal(0), close_date="2026-01-01"), "negotiation")
    assert not d.outcome.allowed
    assert d.outcome.codes == (
        "field_missing",  # quote_id
        "field_invalid",  # amount > 0
        "field_invalid",  # close date in the past
        "field_missing",  # discount_pct
        "field_missing",  # competitor
        "approval_missing",
    )
    assert [f.subject for f in d.outcome.failed] == [
        "quote_id", "amount", "close_date", "discount_pct", "competitor", "discount",
    ]
    assert d.reason_codes == d.outcome.codes
    for f in d.outcome.failed:
        assert f.rule_id == "start_negotiation"
        assert f.location is not None
        assert f.location.file.endswith("stages.yaml")
        assert f.location.line > 0
    assert d.effects == ()


def test_requirement_locations_point_at_the_requirement(policy: Policy) -> None:
    lines = RULES.read_text(encoding="utf-8").splitlines()
    d = check(policy, opp("needs_confirmed"), "proposal")
    for f in d.outcome.failed:
        assert f.location is not None
        assert f.subject in lines[f.location.line - 1]


def test_skipping_and_backward_moves(policy: Policy) -> None:
    d = check(policy, full("lead_confirmed"), "proposal")
    assert d.outcome.codes == ("transition_not_allowed",)
    # backward: declared, but only the manager (or a VP), with a reason
    d = check(policy, full("negotiation"), "needs_confirmed", reason="客户需求变更")
    assert d.outcome.codes == ("actor_not_permitted",)
    d = check(policy, full("negotiation"), "needs_confirmed", actor=MANAGER)
    assert d.outcome.codes == ("reason_required",)
    d = check(policy, full("negotiation"), "needs_confirmed", actor=MANAGER, reason="  ")
    assert d.outcome.codes == ("reason_required",)
    d = check(policy, full("negotiation"), "needs_confirmed", actor=VP, reason="客户需求变更")
    assert d.outcome.allowed


def test_terminal_stages_have_no_way_out(policy: Policy) -> None:
    for to in ("lost", "contract", "lead_confirmed"):
        d = check(policy, full("won"), to, actor=MANAGER, reason="x")
        assert d.outcome.codes == ("transition_not_allowed",)
    d = check(policy, full("won"), "won")
    assert d.outcome.codes == ("transition_not_allowed",)


def test_unknown_target_stage_is_a_refusal(policy: Policy) -> None:
    d = check(policy, full("proposal"), "closed_won")
    assert d.outcome.codes == ("unknown_stage",)
    assert d.outcome.transition_id is None


def test_actor_relations(policy: Policy) -> None:
    rec = full("needs_confirmed")
    for actor in (OWNER, MANAGER, COLLAB):
        assert check(policy, rec, "proposal", actor=actor).outcome.allowed
    for actor in (STRANGER, VP, ADMIN, MIGRATOR):
        assert check(policy, rec, "proposal", actor=actor).outcome.codes == ("actor_not_permitted",)
    # a collaborator may send the proposal but not confirm the needs
    d = check(policy, full("lead_confirmed"), "needs_confirmed", actor=COLLAB)
    assert d.outcome.codes == ("actor_not_permitted",)


def test_criterion_on_the_record(policy: Policy) -> None:
    d = check(policy, full("negotiation", customer_registered=False), "contract")
    assert d.outcome.codes == ("criterion_not_met",)
    assert d.errors == ()
    rec = full("negotiation")
    del rec["customer_registered"]
    d = check(policy, rec, "contract")
    assert d.outcome.codes == ("criterion_not_met",)
    assert [e.code for e in d.errors] == ["missing_field"]
    assert d.errors[0].rule_id == "sign_contract"


def test_typed_field_checks(policy: Policy) -> None:
    def codes(**fields: Any) -> tuple[str, ...]:
        return check(policy, full("proposal", **fields), "negotiation").outcome.codes

    assert codes() == ()
    assert codes(amount="abc") == ("field_invalid",)
    assert codes(amount=-5) == ("field_invalid",)
    assert codes(amount="500000.00") == ()
    assert codes(amount=True) == ("field_invalid",)
    assert codes(amount=None) == ("field_missing",)
    assert codes(close_date="2026-12-03") == ()  # today (Shanghai) is not the past
    assert codes(close_date="2026-12-02") == ("field_invalid",)
    assert codes(close_date=date(2027, 1, 5)) == ()
    assert codes(close_date="next week") == ("field_invalid",)
    assert codes(discount_pct=Decimal("30")) == ()
    assert codes(discount_pct=Decimal("30.5")) == ("field_invalid",)
    assert codes(competitor="   ") == ("field_missing",)
    assert codes(competitor=42) == ("field_invalid",)


def test_not_past_uses_the_calendar_zone() -> None:
    pol = load_policy(ROOT / "rules")  # Asia/Shanghai calendar
    late = datetime(2026, 12, 3, 17, 0, tzinfo=UTC)  # already Dec 4 in Shanghai
    d = check_transition(
        pol, full("proposal", close_date="2026-12-03"), to_stage="negotiation", actor=OWNER,
        channel="ui", now=late,
    )
    assert d.outcome.codes == ("field_invalid",)


def test_choice_field_and_reason_for_lost(policy: Policy) -> None:
    d = check(policy, full("proposal", loss_reason="不知道"), "lost", reason="客户选择了友商")
    assert d.outcome.codes == ("field_invalid",)
    d = check(policy, full("proposal"), "lost")
    assert d.outcome.codes == ("reason_required",)
    d = check(policy, full("proposal"), "lost", reason="客户选择了友商")
    assert d.outcome.allowed
    assert d.outcome.to_label == "输单"


def test_attachments_checklist_and_approvals(policy: Policy) -> None:
    rec = full(
        "negotiation",
        attachments=[{"kind": "方案书"}],
        checklist={"legal_review": False},
        approvals=[{"kind": "contract", "status": "pending"}],
    )
    d = check(policy, rec, "contract")
    assert d.outcome.codes == ("attachment_missing", "checklist_unchecked", "approval_missing")
    assert [f.subject for f in d.outcome.failed] == ["合同扫描件", "legal_review", "contract"]


def test_close_won_requires_a_valid_split(policy: Policy) -> None:
    assert check(policy, full("contract"), "won").outcome.allowed
    bad = [{"rep_id": "r-east-1", "share": "60"}, {"rep_id": "r-east-2", "share": "30"}]
    d = check(policy, full("contract", splits=bad), "won")
    assert d.outcome.codes == ("check_failed",)
    assert d.outcome.failed[0].subject == "valid_revenue_split"
    d = check(policy, full("contract", splits=None), "won")
    assert d.outcome.codes == ("check_failed",)


@pytest.mark.parametrize(
    ("lines", "ok"),
    [
        ([{"rep_id": "a", "share": "100"}], True),
        ([{"rep_id": "a", "share": "33.33"}, {"rep_id": "b", "share": "33.33"},
          {"rep_id": "c", "share": "33.34"}], True),
        ([{"rep_id": "a", "share": "33.333"}, {"rep_id": "b", "share": "66.666"}], False),
        ([{"rep_id": "a", "share": "50"}, {"rep_id": "a", "share": "50"}], False),
        ([{"rep_id": "a", "share": 0.5}, {"rep_id": "b", "share": "99.5"}], False),
        ([{"rep_id": "a", "share": "-10"}, {"rep_id": "b", "share": "110"}], False),
        ([], False),
        ("60/40", False),
    ],
)
def test_fallback_split_rule_is_exact(lines: Any, ok: bool) -> None:
    assert (_fallback_revenue_split(lines, None) == ()) is ok


def test_owner_must_hold_a_split_line_in_fallback() -> None:
    assert _fallback_revenue_split([{"rep_id": "b", "share": 100}], "a") != ()


# ---------------------------------------------------------------------------------------------
# channels and bypass
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("actor", [OWNER, MANAGER, STRANGER, ADMIN])
def test_same_verdict_on_every_channel(policy: Policy, actor: dict[str, Any]) -> None:
    rec = opp("proposal", amount=Decimal(1))
    verdicts = {
        check(policy, rec, "negotiation", actor=actor, channel=c, reason="x").outcome
        for c in ("ui", "api", "automation", "import")
    }
    assert len(verdicts) == 1


def test_bypass_needs_the_permission_the_channel_and_a_reason(policy: Policy) -> None:
    rec = opp("contract")
    d = check(policy, rec, "won", actor=MIGRATOR, channel="ui", reason="迁移")
    assert not d.outcome.allowed
    assert "bypass_reason_required" not in d.outcome.codes
    d = check(policy, rec, "won", actor=MIGRATOR, channel="import")
    assert not d.outcome.allowed
    assert d.outcome.codes[-1] == "bypass_reason_required"
    d = check(policy, rec, "won", actor=MIGRATOR, channel="import", reason="旧系统 2019 年赢单迁移")
    assert d.outcome.allowed
    assert d.outcome.bypass == "data_migration"
    assert "actor_not_permitted" in [w.code for w in d.outcome.waived]
    assert d.reason_codes == ("bypassed",)
    audit = [e for e in d.effects if e.kind == "audit"]
    assert len(audit) == 1
    assert audit[0].params["actor"] == "ops-1"
    assert audit[0].params["reason"] == "旧系统 2019 年赢单迁移"
    assert audit[0].params["channel"] == "import"


def test_bypass_never_opens_an_undeclared_transition(policy: Policy) -> None:
    d = check(policy, opp("lead_confirmed"), "won", actor=MIGRATOR, channel="import", reason="x")
    assert d.outcome.codes == ("transition_not_allowed",)


def test_no_implicit_admin_bypass(policy: Policy) -> None:
    d = check(policy, opp("contract"), "won", actor=ADMIN, channel="import", reason="I am admin")
    assert not d.outcome.allowed
    assert d.outcome.bypass is None


def test_bypass_is_not_used_when_every_gate_is_met(policy: Policy) -> None:
    owner_migrator = {**OWNER, "permissions": ["data_migration"]}
    d = check(policy, full("contract"), "won", actor=owner_migrator, channel="import")
    assert d.outcome.allowed
    assert d.outcome.bypass is None
    assert "audit" not in [e.kind for e in d.effects]


# ---------------------------------------------------------------------------------------------
# effects
# ---------------------------------------------------------------------------------------------


def test_after_effects_and_task_due_in_business_time() -> None:
    pol = load_policy(ROOT / "rules")  # Shanghai calendar with China's holidays
    fri = datetime(2026, 12, 4, 16, 0, tzinfo=CST)
    d = check_transition(pol, full("negotiation"), to_stage="contract", actor=OWNER,
                         channel="api", now=fri)
    assert d.outcome.allowed
    tasks = [e for e in d.effects if e.kind == "create_task"]
    assert len(tasks) == 1
    assert tasks[0].target == "rep:r-east-1"
    assert tasks[0].params["due"] == "2026-12-08T16:00:00+08:00"  # Friday + 2 business days
    updates = [e.params for e in d.effects if e.kind == "update_field"]
    assert {"field": "probability", "value": 90} in updates


def test_notify_without_an_owner_manager_is_skipped(policy: Policy) -> None:
    rec = full("needs_confirmed", owner_manager_id=None)
    d = check(policy, rec, "proposal")
    assert d.outcome.allowed
    assert "notify" not in [e.kind for e in d.effects]


def test_request_id_drives_idempotency_keys(policy: Policy) -> None:
    rec = full("needs_confirmed")
    a = check(policy, rec, "proposal", request_id="evt-1")
    b = check(policy, rec, "proposal", request_id="evt-1", now=NOW + timedelta(seconds=3))
    assert [e.idempotency_key for e in a.effects] == [e.idempotency_key for e in b.effects]


# ---------------------------------------------------------------------------------------------
# available transitions
# ---------------------------------------------------------------------------------------------


def test_available_transitions_lists_what_is_missing(policy: Policy) -> None:
    d = available_transitions(policy, opp("proposal", loss_reason="价格"), actor=OWNER,
                              channel="ui", now=NOW)
    out = d.outcome
    assert isinstance(out, AvailableTransitions)
    assert out.stage_label == "方案报价"
    by_to = {o.to_stage: o for o in out.options}
    assert set(by_to) == {"negotiation", "lost", "needs_confirmed"}
    assert by_to["lost"].ready and by_to["lost"].needs_reason
    assert by_to["negotiation"].move == "forward"
    assert "approval_missing" in [m.code for m in by_to["negotiation"].missing]
    assert [m.code for m in by_to["needs_confirmed"].missing] == ["actor_not_permitted"]
    assert by_to["needs_confirmed"].move == "backward"
    assert out.ready == ("lost",)
    assert not any(o.can_bypass for o in out.options)


def test_available_matches_check(policy: Policy) -> None:
    rec = full("negotiation", approvals=[])
    d = available_transitions(policy, rec, actor=MANAGER, channel="api", now=NOW)
    for o in d.outcome.options:
        v = check(policy, rec, o.to_stage, actor=MANAGER, channel="api", reason="r").outcome
        assert v.allowed is o.ready
        assert v.failed == o.missing


def test_available_for_bypass_holder(policy: Policy) -> None:
    d = available_transitions(policy, opp("contract"), actor=MIGRATOR, channel="import", now=NOW)
    assert all(o.can_bypass for o in d.outcome.options)


# ---------------------------------------------------------------------------------------------
# records, determinism, JSON
# ---------------------------------------------------------------------------------------------


def test_pydantic_records_are_accepted(policy: Policy) -> None:
    rec = StageOpportunity.model_validate(full("needs_confirmed"))
    actor = StageActor.model_validate(OWNER)
    d1 = check_transition(policy, rec, to_stage="proposal", actor=actor, channel="ui", now=NOW)
    d2 = check(policy, full("needs_confirmed"), "proposal")
    assert d1.outcome == d2.outcome


@pytest.mark.parametrize(
    ("record", "actor", "channel", "now", "field"),
    [
        (opp("proposal"), OWNER, "ui", datetime(2026, 12, 3, 10, 0), "now"),
        (opp("proposal"), OWNER, "fax", NOW, "channel"),
        ({"stage": "proposal"}, OWNER, "ui", NOW, "id"),
        (opp("proposal", attachments="需求调研表"), OWNER, "ui", NOW, "attachments"),
        (opp("proposal", attachments=[{"name": "x"}]), OWNER, "ui", NOW, "attachments.0.kind"),
        (opp("proposal", checklist={"demo_done": "yes"}), OWNER, "ui", NOW, "checklist.demo_done"),
        (opp("proposal", approvals=[{"kind": "discount", "at": "2026-12-01T10:00:00"}]),
         OWNER, "ui", NOW, "approvals.0.at"),
        (opp("proposal", owner_id=7), OWNER, "ui", NOW, "owner_id"),
        (opp("prospecting"), OWNER, "ui", NOW, "stage"),
        (opp("proposal"), {"roles": ["sales_rep"]}, "ui", NOW, "id"),
        (opp("proposal"), {"id": "a", "roles": "sales_rep"}, "ui", NOW, "roles"),
        ("O-1", OWNER, "ui", NOW, "*"),
    ],
)
def test_bad_inputs_raise_record_errors(
    policy: Policy, record: Any, actor: Any, channel: str, now: datetime, field: str
) -> None:
    with pytest.raises(RecordError) as exc:
        check_transition(policy, record, to_stage="negotiation", actor=actor, channel=channel,
                         now=now)
    assert exc.value.field == field
    with pytest.raises(RecordError):
        available_transitions(policy, record, actor=actor, channel=channel, now=now)


def test_approval_time_as_text_is_accepted(policy: Policy) -> None:
    rec = full("proposal", approvals=[{"kind": "discount", "at": "2026-12-01T10:00:00+08:00"}])
    assert check(policy, rec, "negotiation").outcome.allowed


def test_decisions_are_deterministic_and_round_trip(policy: Policy) -> None:
    for rec, to in ((full("needs_confirmed"), "proposal"), (opp("proposal"), "negotiation")):
        a = check(policy, rec, to, explain=True)
        b = check(policy, rec, to, explain=True)
        assert a.to_json() == b.to_json()
        assert Decision.from_json(a.to_json()) == a
        plain = check(policy, rec, to)
        assert plain.trace is None
        assert plain.outcome == a.outcome
        assert plain.effects == a.effects
    d = available_transitions(policy, opp("proposal"), actor=OWNER, channel="ui", now=NOW,
                              explain=True)
    assert Decision.from_json(d.to_json()) == d
    assert d.trace is not None and d.trace.steps


def test_explain_renders_locations(policy: Policy) -> None:
    d = check(policy, opp("needs_confirmed"), "proposal", explain=True)
    assert d.trace is not None
    text = d.trace.render()
    assert "stages.yaml:" in text
    assert "SKIPPED" in text and "MATCHED" in text
    assert str(d).startswith("transition: refused needs_confirmed -> proposal")


_ALNUM = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=3, max_size=12)


@given(
    extra=st.dictionaries(
        _ALNUM.map(lambda s: f"x_{s}"),
        st.one_of(st.integers(), st.text(max_size=5), st.booleans(), st.none()),
        max_size=4,
    ),
    stage=st.sampled_from(["lead_confirmed", "needs_confirmed", "proposal", "negotiation",
                           "contract"]),
    to=st.sampled_from(["needs_confirmed", "proposal", "negotiation", "contract", "won", "lost"]),
)
def test_unrelated_fields_never_change_the_decision(
    extra: dict[str, Any], stage: str, to: str
) -> None:
    pol = _POLICY
    rec = opp(stage, amount=Decimal(5))
    a = check(pol, rec, to, reason="r")
    b = check(pol, {**rec, **extra}, to, reason="r")
    assert a.to_json() == b.to_json()


_POLICY = load_policy(RULES)


# ---------------------------------------------------------------------------------------------
# the CLI request kinds
# ---------------------------------------------------------------------------------------------


def test_cli_request_kinds(policy: Policy) -> None:
    req = {
        "kind": "transition",
        "now": "2026-12-03T10:00:00+08:00",
        "opportunity": json.loads(json.dumps(full("needs_confirmed"), default=str)),
        "actor": OWNER,
        "channel": "api",
        "to_stage": "proposal",
    }
    d = policy.decide(json.dumps(req, ensure_ascii=False))
    assert d.kind == "transition"
    assert d.outcome.allowed
    assert Decision.from_json(d.to_json()) == d
    req2 = {k: v for k, v in req.items() if k != "to_stage"}
    req2["kind"] = "available_transitions"
    d2 = policy.decide(req2)
    assert isinstance(d2.outcome, AvailableTransitions)
    assert Decision.from_json(d2.to_json()) == d2
    with pytest.raises(RecordError) as exc:
        policy.decide({**req, "to_stage": 3})
    assert exc.value.field == "to_stage"
    with pytest.raises(RecordError) as exc:
        policy.decide({**req, "opportunity": "O-1"})
    assert exc.value.field == "opportunity"
    with pytest.raises(RecordError) as exc:
        policy.decide({**req, "reason": ["x"]})
    assert exc.value.field == "reason"
    with pytest.raises(RecordError) as exc:
        check(policy, full("proposal"), "negotiation", request_id=7)
    assert exc.value.field == "request_id"


# ---------------------------------------------------------------------------------------------
# compile-time checks
# ---------------------------------------------------------------------------------------------

_BASE = """
version: 1
stages:
  fields:
    amount: { type: number }
    close_date: { type: date }
    reason_code: { type: choice, values: [a, b] }
  attachment_kinds: { 需求调研表: needs survey }
  checklist: { demo: demo done }
  approvals: { discount: discount approval }
  roles: [rep, manager]
  stages:
    - { id: s1, label: 线索, initial: true }
    - { id: s2, label: 需求 }
    - { id: s3, label: 报价 }
    - { id: won, terminal: won }
    - { id: lost, terminal: lost }
  transitions:
    - id: t1
      from: s1
      to: s2
      who: { roles: [rep], relations: [owner] }
      require:
        fields: [{ field: amount, gt: 0 }, { field: close_date, not_past: true }]
        attachments: [需求调研表]
        checklist: [demo]
        approvals: [discount]
    - { id: t2, from: s2, to: s3 }
    - { id: t3, from: s3, to: won, require: { checks: [valid_revenue_split] } }
    - { id: t4, from: any_open, to: lost, require: { fields: [{ field: reason_code, in: [a] }] } }
"""


def _codes(text: str) -> list[str]:
    try:
        pol = load_policy_string(text, "t.yaml")
    except PolicyError as exc:
        return list(exc.codes)
    return [w.code for w in pol.warnings]


def test_base_policy_is_clean() -> None:
    assert _codes(_BASE) == []


def test_dump_and_reload_give_the_same_policy() -> None:
    pol = load_policy_string(_BASE, "t.yaml")
    again = load_policy_string(yaml.safe_dump(pol.dump(), allow_unicode=True), "u.yaml")
    assert again == pol
    ex = load_policy(RULES)
    assert load_policy_string(yaml.safe_dump(ex.dump(), allow_unicode=True)) == ex


@pytest.mark.parametrize(
    ("old", "new", "codes"),
    [
        ("{ id: s1, label: 线索, initial: true }", "{ id: s1, label: 线索 }", ["SR240"]),
        ("{ id: s2, label: 需求 }", "{ id: s2, label: 需求, initial: true }", ["SR240"]),
        ("{ id: lost, terminal: lost }", "{ id: lost, terminal: lost, initial: true }", ["SR240"]),
        ("{ id: t2, from: s2, to: s3 }", "{ id: t2, from: s2, to: s9 }", ["SR241"]),
        ("{ id: t2, from: s2, to: s3 }", "{ id: t2, from: [s2, sx], to: s3 }", ["SR241"]),
        ("{ id: t2, from: s2, to: s3 }", "{ id: t2, from: s2, to: s3 }\n    - { id: t5, from: won, to: s3, backward: true }", ["SR242"]),
        ("{ id: t2, from: s2, to: s3 }", "{ id: t2, from: s2, to: s3 }\n    - { id: t5, from: s2, to: s2 }", ["SR242"]),
        ("{ id: t2, from: s2, to: s3 }", "{ id: t2, from: s2, to: s3 }\n    - { id: t5, from: s2, to: s3 }", ["SR243"]),
        ("{ id: t2, from: s2, to: s3 }", "{ id: t2, from: s1, to: s3 }", ["SR245"]),
        ("{ id: t2, from: s2, to: s3 }", "{ id: t2, from: s2, to: s3 }\n    - { id: t5, from: s3, to: s1 }", ["SR245"]),
        ("{ id: t2, from: s2, to: s3 }", "{ id: t2, from: s2, to: s3, skip: true }", ["SR245"]),
        ("{ id: t2, from: s2, to: s3 }", "{ id: t2, from: s2, to: s3 }\n    - { id: t5, from: s1, to: s3, skip: true }", []),
        ("field: amount, gt: 0", "field: amuont, gt: 0", ["SR246", "SR331"]),
        ("field: close_date, not_past: true", "field: close_date, gt: 0", ["SR246"]),
        ("in: [a]", "in: [c]", ["SR246"]),
        ("{ field: amount, gt: 0 }", "{ field: amount, matches: '(' }", ["SR246"]),
        ("attachments: [需求调研表]", "attachments: [需求表]", ["SR247", "SR331"]),
        ("checklist: [demo]", "checklist: [dmeo]", ["SR247", "SR331"]),
        ("approvals: [discount]", "approvals: [discnt]", ["SR247", "SR331"]),
        ("roles: [rep]", "roles: [rpe]", ["SR248"]),
        ("{ id: t2, from: s2, to: s3 }", "{ id: t2, from: s2, to: s3, after: [{ do: notify, to: boss, message: hi }] }", ["SR248"]),
        ("{ id: t2, from: s2, to: s3 }", "{ id: t2, from: s2, to: s3, after: [{ do: notify, to: 'role:ceo', message: hi }] }", ["SR248"]),
        ("checks: [valid_revenue_split]", "checks: [valid_split]", ["SR249"]),
        ("{ id: t2, from: s2, to: s3 }", "{ id: t2, from: s2, to: s3, after: [{ do: create_task, to: owner, title: x, due: soon }] }", ["SR130"]),
        ("{ id: t2, from: s2, to: s3 }", "{ id: t2, from: s2, to: s3, after: [{ do: fax, to: owner }] }", ["SR106"]),
        ("{ id: t2, from: s2, to: s3 }", "{ id: t2, from: s2, to: s3, when: { opportunity.x: { gte: 1 } } }", ["SR120"]),
        ("{ id: t2, from: s2, to: s3 }", "{ id: t2, from: s2, to: s3 }\n    - { id: t2, from: s3, to: s2, backward: true }", ["SR200"]),
        ("{ id: t2, from: s2, to: s3 }", "{ id: t2, from: s2, to: s3, frm: s1 }", ["SR104"]),
        ("        approvals: [discount]\n", "", ["SR331"]),
    ],
)
def test_compile_checks(old: str, new: str, codes: list[str]) -> None:
    assert old in _BASE
    assert sorted(_codes(_BASE.replace(old, new, 1))) == sorted(codes)


def test_dead_end_stage_is_a_warning() -> None:
    text = _BASE.replace(
        "    - { id: lost, terminal: lost }\n", "    - { id: lost, terminal: lost }\n    - { id: s4, label: 搁置 }\n"
    ).replace("{ id: t2, from: s2, to: s3 }", "{ id: t2, from: s2, to: s3 }\n    - { id: t5, from: s3, to: s4, skip: true }")
    text = text.replace("from: any_open", "from: [s1, s2, s3]")
    assert _codes(text) == ["SR330"]
    with pytest.raises(PolicyError) as exc:
        load_policy_string(text, "t.yaml", strict=True)
    assert exc.value.codes == ("SR330",)


def test_compile_issue_is_located() -> None:
    text = _BASE.replace("attachments: [需求调研表]", "attachments: [需求表]")
    with pytest.raises(PolicyError) as exc:
        load_policy_string(text, "t.yaml")
    issue = next(i for i in exc.value.issues if i.code == "SR247")
    assert issue.location is not None and issue.location.file == "t.yaml"
    assert "需求表" in text.splitlines()[issue.location.line - 1]
    assert issue.rule_id == "t1"
    assert issue.hint is not None


def test_every_code_is_in_the_band_and_documented() -> None:
    doc = (ROOT / "docs" / "stages.md").read_text(encoding="utf-8")
    for code in STAGE_CODES:
        n = int(code[2:])
        assert 240 <= n <= 249 or 330 <= n <= 339
        assert code in doc


# ---------------------------------------------------------------------------------------------
# golden cases
# ---------------------------------------------------------------------------------------------

_CASES = sorted(GOLDEN.glob("*.yaml"))


def _load_case(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    case["_file"] = path.name
    return case


_POLICIES: dict[Path, Policy] = {}


def _case_policy(case: dict[str, Any]) -> Policy:
    path = (GOLDEN / case.get("rules", "../../../rules/stages.yaml")).resolve()
    if path not in _POLICIES:
        _POLICIES[path] = load_policy(path)
    return _POLICIES[path]


def test_golden_cases_exist() -> None:
    assert len(_CASES) >= 12


@pytest.mark.parametrize("path", _CASES, ids=[p.stem for p in _CASES])
def test_golden(path: Path) -> None:
    case = _load_case(path)
    pol = _case_policy(case)
    request = {"now": case["now"], **case["request"]}
    d = pol.decide(json.loads(json.dumps(request, default=str, ensure_ascii=False)))
    want = case["want"]
    where = f"{case['_file']} ({case.get('note', '')})"
    out = d.outcome
    if "allowed" in want:
        assert out.allowed is want["allowed"], where
    if "codes" in want:
        assert list(out.codes) == want["codes"], where
    if "subjects" in want:
        assert [f.subject for f in out.failed] == want["subjects"], where
    if "waived" in want:
        assert [f.code for f in out.waived] == want["waived"], where
    if "effects" in want:
        assert [e.kind for e in d.effects] == want["effects"], where
    if "to_label" in want:
        assert out.to_label == want["to_label"], where
    if "ready" in want:
        assert list(out.ready) == want["ready"], where
    if "stage_label" in want:
        assert out.stage_label == want["stage_label"], where
    if "error_codes" in want:
        assert [e.code for e in d.errors] == want["error_codes"], where
    assert Decision.from_json(d.to_json()) == d, where


def test_split_check_on_a_record_without_owner(policy: Policy) -> None:
    rec = full("contract", owner_id=None)
    d = check(policy, rec, "won", actor=MANAGER)
    assert d.outcome.allowed
    bad = full("contract", owner_id=None, splits=[{"rep_id": "r-east-2", "share": "99"}])
    assert check(policy, bad, "won", actor=MANAGER).outcome.codes == ("check_failed",)


def test_terminal_stage_offers_nothing(policy: Policy) -> None:
    d = available_transitions(policy, full("won"), actor=MANAGER, channel="ui", now=NOW)
    assert d.outcome.options == ()
    assert d.outcome.stage_label == "赢单"


def test_criterion_failure_is_explained(policy: Policy) -> None:
    d = check(policy, full("negotiation", customer_registered=False), "contract", explain=True)
    assert d.trace is not None
    assert d.outcome.codes == ("criterion_not_met",)
    assert d.outcome.failed[0].subject == "when"
    assert any(s.rule_id == "sign_contract" and s.status.value == "SKIPPED" for s in d.trace.steps)


_JUNK = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=4),
        st.decimals(allow_nan=True, allow_infinity=True), st.floats(), st.dates(),
        st.datetimes(), st.datetimes(timezones=st.just(UTC)),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["kind", "status", "id",
                                                                      "rep_id", "share"]), inner,
                                                     max_size=3),
    ),
    max_leaves=6,
)
_KEYS = ["owner_id", "owner_manager_id", "collaborator_ids", "attachments", "checklist",
         "approvals", "splits", "amount", "close_date", "loss_reason", "discount_pct",
         "customer_registered", "competitor", "quote_id"]


@given(
    junk=st.dictionaries(st.sampled_from(_KEYS), _JUNK, max_size=5),
    stage=st.sampled_from(["proposal", "contract", "negotiation"]),
    to=st.sampled_from(["negotiation", "contract", "won", "lost", "needs_confirmed"]),
    actor=st.one_of(st.just(OWNER), st.dictionaries(st.sampled_from(["id", "roles"]), _JUNK)),
)
def test_junk_records_give_a_decision_or_a_record_error(
    junk: dict[str, Any], stage: str, to: str, actor: Any
) -> None:
    rec = {"id": "O-1", "stage": stage, **junk}
    try:
        d = check(_POLICY, rec, to, actor=actor, reason="r")
    except RecordError:
        return
    assert isinstance(d.outcome, StageVerdict)
    d.to_json()
    available_transitions(_POLICY, rec, actor=actor, channel="ui", now=NOW).to_json()


@pytest.mark.parametrize("amount", [Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), "nan"])
def test_non_finite_amounts_are_invalid(policy: Policy, amount: Any) -> None:
    d = check(policy, full("proposal", amount=amount), "negotiation")
    assert d.outcome.codes == ("field_invalid",)


def test_labels_are_stage_labels_even_when_a_transition_has_its_own() -> None:
    pol = load_policy_string(_BASE.replace("{ id: t2, from: s2, to: s3 }",
                                           "{ id: t2, from: s2, to: s3, label: 发送报价 }"))
    sp: StagesPolicy = pol.section("stages")
    assert sp.transitions[("s2", "s3")].label == "发送报价"
    d = check_transition(pol, {"id": "O", "stage": "s2"}, to_stage="s3", actor=OWNER,
                         channel="ui", now=NOW)
    assert d.outcome.allowed and d.outcome.to_label == "报价"
    av = available_transitions(pol, {"id": "O", "stage": "s2"}, actor=OWNER, channel="ui", now=NOW)
    assert av.outcome.options[0].to_label == "报价"
