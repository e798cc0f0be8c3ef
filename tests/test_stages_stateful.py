"""Stateful test of the stage gates against a naive oracle read straight from the rule file.

Random sequences of evidence edits and transition attempts, by random actors on random
channels, applied the way a host applies decisions. Invariants:

* an opportunity only ever moves along a declared transition (never a forbidden skip/back move);
* every move it made had, at that moment, all the evidence its transition required — checked by
  an independent, obviously-correct reading of ``rules/stages.yaml`` — unless a bypass was used
  (and then: the actor held the permission, on an allowed channel, with a reason, audited);
* for an actor without the bypass permission the verdict is identical on every channel;
* the engine's verdict equals the oracle's (both directions), and ``available_transitions``
  agrees with ``check_transition``.
"""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from salesrules.policy import load_policy
from salesrules.stages import available_transitions, check_transition

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules" / "stages.yaml"
POLICY = load_policy(RULES)
RAW: dict[str, Any] = yaml.safe_load(RULES.read_text(encoding="utf-8"))["stages"]
CHANNELS = ("ui", "api", "automation", "import")
CST = timezone(timedelta(hours=8))
START = datetime(2026, 12, 1, 9, 0, tzinfo=CST)

ACTORS: dict[str, dict[str, Any]] = {
    "owner": {"id": "r-east-1", "roles": ["sales_rep"]},
    "manager": {"id": "m-east", "roles": ["sales_manager"]},
    "collaborator": {"id": "r-east-2", "roles": ["sales_rep"]},
    "stranger": {"id": "r-north-1", "roles": ["sales_rep"]},
    "vp": {"id": "vp-sales", "roles": ["sales_vp"]},
    "admin": {"id": "it-admin", "roles": ["admin", "sales_manager"]},
    "migrator": {"id": "ops-1", "roles": [], "permissions": ["data_migration"]},
}

#: Good and bad values for every piece of evidence (None = absent).
EVIDENCE: dict[str, list[Any]] = {
    "decision_maker": ["李总", "", None],
    "budget_confirmed": [True, False, None],
    "amount": [Decimal("500000"), Decimal("0"), "12.5", None],
    "close_date": ["2026-12-31", "2026-11-01", None],
    "solution_scope": ["ERP", None],
    "quote_id": ["Q-1", None],
    "discount_pct": [Decimal("10"), Decimal("45"), None],
    "competitor": ["某友商", None],
    "contract_no": ["HT-1", None],
    "loss_reason": ["价格", "不知道", None],
    "customer_registered": [True, False, None],
}
KINDS = ["需求调研表", "方案书", "报价单", "合同扫描件"]
ITEMS = ["kickoff_call", "demo_done", "legal_review"]
APPROVALS = ["discount", "contract"]
SPLITS = [
    [{"rep_id": "r-east-1", "share": "60"}, {"rep_id": "r-east-2", "share": "40"}],
    [{"rep_id": "r-east-1", "share": "60"}, {"rep_id": "r-east-2", "share": "30"}],
    None,
]


# ---------------------------------------------------------------------------------------------
# the oracle: a plain reading of the YAML, no compiled objects
# ---------------------------------------------------------------------------------------------


def _oracle_transition(frm: str, to: str) -> dict[str, Any] | None:
    stages = {s["id"]: s for s in RAW["stages"]}
    if frm not in stages or stages[frm].get("terminal"):
        return None
    for t in RAW["transitions"]:
        srcs = t["from"]
        if srcs == "any_open":
            srcs = [s for s, d in stages.items() if not d.get("terminal") and s != t["to"]]
        elif isinstance(srcs, str):
            srcs = [srcs]
        if frm in srcs and t["to"] == to:
            return dict(t)
    return None


def _num(v: Any) -> Decimal | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        return Decimal(str(v))
    except ArithmeticError:
        return None


def _field_ok(spec: Any, rec: dict[str, Any], today: date) -> bool:
    if isinstance(spec, str):
        spec = {"field": spec}
    name = spec["field"]
    value = rec.get(name)
    if value is None or value == "":
        return False
    ftype = RAW["fields"][name]["type"]
    if ftype == "number" and _num(value) is None:
        return False
    if ftype == "choice" and value not in RAW["fields"][name]["values"]:
        return False
    for op in ("gt", "ge", "le"):
        if op in spec:
            n, bound = _num(value), Decimal(str(spec[op]))
            assert n is not None
            if (op == "gt" and not n > bound) or (op == "ge" and not n >= bound) or (
                op == "le" and not n <= bound
            ):
                return False
    if "eq" in spec and value != spec["eq"]:
        return False
    return not (spec.get("not_past") and date.fromisoformat(value) < today)


def _oracle(rec: dict[str, Any], to: str, actor: dict[str, Any], reason: str | None,
            today: date) -> bool:
    """Whether the transition is allowed without any bypass."""
    t = _oracle_transition(rec["stage"], to)
    if t is None:
        return False
    who = t.get("who")
    if who:
        ok = bool(set(who.get("roles", [])) & set(actor.get("roles", [])))
        rel = set(who.get("relations", []))
        ok = ok or ("owner" in rel and actor["id"] == rec["owner_id"])
        ok = ok or ("owner_manager" in rel and actor["id"] == rec["owner_manager_id"])
        ok = ok or ("collaborator" in rel and actor["id"] in rec["collaborator_ids"])
        if not ok:
            return False
    if "when" in t and rec.get("customer_registered") is not True:  # the only criterion used
        return False
    req = t.get("require", {})
    if not all(_field_ok(f, rec, today) for f in req.get("fields", [])):
        return False
    kinds = {a["kind"] for a in rec.get("attachments", [])}
    if not set(req.get("attachments", [])) <= kinds:
        return False
    if not all(rec.get("checklist", {}).get(i) is True for i in req.get("checklist", [])):
        return False
    approved = {a["kind"] for a in rec.get("approvals", []) if a.get("status") == "approved"}
    if not set(req.get("approvals", [])) <= approved:
        return False
    if "valid_revenue_split" in req.get("checks", []):
        lines = rec.get("splits") or []
        if not lines or sum(Decimal(x["share"]) for x in lines) != 100:
            return False
    return not (req.get("reason") and not (reason and reason.strip()))


# ---------------------------------------------------------------------------------------------
# the machine
# ---------------------------------------------------------------------------------------------

STAGE_IDS = [s["id"] for s in RAW["stages"]] + ["closed_won"]
PIPELINE = [s["id"] for s in RAW["stages"] if s.get("terminal") != "lost"]
NEXT = "<next>"  # the next pipeline stage: most random targets are refused, so bias forward


class StageGateMachine(RuleBasedStateMachine):
    """A host that applies stage decisions to one opportunity."""

    def __init__(self) -> None:
        super().__init__()
        self.rec: dict[str, Any] = {}
        self.now = START
        self.path: list[tuple[str, str, bool]] = []  # (from, to, bypassed)
        self.history: list[dict[str, Any]] = []

    @initialize()
    def start(self) -> None:
        self.rec = {
            "id": "O-1",
            "stage": "lead_confirmed",
            "owner_id": "r-east-1",
            "owner_manager_id": "m-east",
            "collaborator_ids": ["r-east-2"],
            "attachments": [],
            "checklist": {},
            "approvals": [],
        }

    # -- evidence edits ----------------------------------------------------------------------
    @rule(name=st.sampled_from(sorted(EVIDENCE)), data=st.data())
    def set_field(self, name: str, data: st.DataObject) -> None:
        value = data.draw(st.sampled_from(EVIDENCE[name]))
        if value is None:
            self.rec.pop(name, None)
        else:
            self.rec[name] = value

    @rule(kind=st.sampled_from(KINDS), add=st.booleans())
    def attachment(self, kind: str, add: bool) -> None:
        atts = [a for a in self.rec["attachments"] if a["kind"] != kind]
        if add:
            atts.append({"kind": kind, "name": f"{kind}.pdf"})
        self.rec["attachments"] = atts

    @rule(item=st.sampled_from(ITEMS), value=st.booleans())
    def checklist(self, item: str, value: bool) -> None:
        self.rec["checklist"] = {**self.rec["checklist"], item: value}

    @rule(kind=st.sampled_from(APPROVALS), status=st.sampled_from(["approved", "pending", None]))
    def approval(self, kind: str, status: str | None) -> None:
        apps = [a for a in self.rec["approvals"] if a["kind"] != kind]
        if status is not None:
            apps.append({"kind": kind, "status": status})
        self.rec["approvals"] = apps

    @rule(i=st.integers(0, len(SPLITS) - 1))
    def splits(self, i: int) -> None:
        if SPLITS[i] is None:
            self.rec.pop("splits", None)
        else:
            self.rec["splits"] = SPLITS[i]

    @rule()
    def gather_all_evidence(self) -> None:
        """A diligent rep: every good value, attachment, checked item and approval at once."""
        for name, values in EVIDENCE.items():
            self.rec[name] = values[0]
        self.rec["attachments"] = [{"kind": k} for k in KINDS]
        self.rec["checklist"] = dict.fromkeys(ITEMS, True)
        self.rec["approvals"] = [{"kind": k, "status": "approved"} for k in APPROVALS]
        self.rec["splits"] = SPLITS[0]

    # -- transition attempts -----------------------------------------------------------------
    @rule(
        to=st.sampled_from([NEXT, NEXT, *STAGE_IDS]),
        who=st.sampled_from(["owner", "owner", "manager", *sorted(ACTORS)]),
        channel=st.sampled_from(CHANNELS),
        reason=st.sampled_from([None, "", "客户需求变更"]),
    )
    def attempt(self, to: str, who: str, channel: str, reason: str | None) -> None:
        self._attempt(to, who, channel, reason)

    @rule(
        who=st.sampled_from(["owner", "manager", "migrator"]),
        channel=st.sampled_from(CHANNELS),
        reason=st.sampled_from([None, "迁移"]),
    )
    def push_forward(self, who: str, channel: str, reason: str | None) -> None:
        if who == "owner":  # a diligent owner; the others push whatever is there
            self.gather_all_evidence()
        self._attempt(NEXT, who, channel, reason)

    def _attempt(self, to: str, who: str, channel: str, reason: str | None) -> None:
        self.now += timedelta(hours=5)
        if to == NEXT:
            here = self.rec["stage"]
            to = PIPELINE[PIPELINE.index(here) + 1] if here in PIPELINE[:-1] else "lost"
        actor = ACTORS[who]
        before = copy.deepcopy(self.rec)
        d = check_transition(POLICY, self.rec, to_stage=to, actor=actor, channel=channel,
                             now=self.now, reason=reason)
        assert self.rec == before, "the library never changes the host's record"
        v = d.outcome
        today = self.now.astimezone(UTC).date()  # rules/stages.yaml alone: UTC calendar
        expected = _oracle(self.rec, to, actor, reason, today)

        has_bypass = "data_migration" in actor.get("permissions", [])
        if not has_bypass:
            for other in CHANNELS:
                o = check_transition(POLICY, self.rec, to_stage=to, actor=actor, channel=other,
                                     now=self.now, reason=reason).outcome
                assert o == v, f"verdict differs between {channel} and {other}"
            assert v.allowed is expected
        else:
            declared = _oracle_transition(self.rec["stage"], to) is not None
            bypass_ok = channel == "import" and bool(reason and reason.strip())
            assert v.allowed is (expected or (declared and bypass_ok))

        # available_transitions agrees with check_transition
        if _oracle_transition(self.rec["stage"], to) is not None:
            av = available_transitions(POLICY, self.rec, actor=actor, channel=channel,
                                       now=self.now).outcome
            opt = next(o for o in av.options if o.to_stage == to)
            assert opt.missing == tuple(
                f for f in (v.failed or v.waived) if f.code not in (
                    "reason_required", "bypass_reason_required")
            )

        event("allowed" if v.allowed else "refused")
        if not v.allowed:
            assert v.failed
            assert d.effects == ()
            return
        # apply like a host: update the stage, append to the history
        assert v.failed == ()
        assert _oracle_transition(self.rec["stage"], to) is not None
        if v.bypass is None:
            assert expected, "allowed without the evidence the transition requires"
            assert "audit" not in [e.kind for e in d.effects]
        else:
            assert has_bypass and channel == "import" and reason and reason.strip()
            assert [e.kind for e in d.effects].count("audit") == 1
        stage_effects = [e for e in d.effects if e.kind == "update_field"
                         and e.params["field"] == "stage"]
        assert len(stage_effects) == 1
        entered = next(e for e in d.effects if e.kind == "stage_entered")
        assert entered.params["previous_stage"] == self.rec["stage"]
        event(f"moved to {to}" + (" by bypass" if v.bypass else ""))
        self.path.append((self.rec["stage"], to, v.bypass is not None))
        self.history.append(dict(entered.params))
        self.rec["stage"] = stage_effects[0].params["value"]

    # -- invariants --------------------------------------------------------------------------
    @invariant()
    def path_follows_the_graph(self) -> None:
        stage = "lead_confirmed"
        for frm, to, _ in self.path:
            assert frm == stage
            assert _oracle_transition(frm, to) is not None
            stage = to
        if self.rec:
            assert self.rec["stage"] == stage
            assert POLICY.section("stages").path_exists("lead_confirmed", stage)

    @invariant()
    def history_matches_the_path(self) -> None:
        assert [(h["previous_stage"], h["stage"]) for h in self.history] == [
            (f, t) for f, t, _ in self.path
        ]


StageGateMachine.TestCase.settings = settings(
    max_examples=50, stateful_step_count=40, deadline=None
)
TestStageGates = StageGateMachine.TestCase
