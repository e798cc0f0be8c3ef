"""Stage gates (the "blueprint"): which stage changes an opportunity may make, and with what proof.

The ``stages`` section of a rule file declares an ordered list of stages (one initial stage,
terminal ``won`` / ``lost`` stages), the transitions allowed between them, and for each
transition:

* **before** — who may execute it (roles, or a relation to the record: owner, the owner's
  manager, a collaborator) and a criterion on the record (a condition);
* **during** — the evidence it needs: required fields with typed checks, attachment kinds,
  checklist items, approvals, named checks (``valid_revenue_split``) and a reason;
* **after** — effects: field updates, notifications, tasks.

Anything not declared is forbidden: a move that skips stages or goes backwards must be declared
(``skip: true`` / ``backward: true``). Every channel (``ui``, ``api``, ``automation``,
``import``) gets exactly the same gates; the only way around them is a bypass permission named
in the section, held by the actor, allowed on the channel, and used with a reason — it is
audited. There is no implicit admin bypass.

Public functions: :func:`check_transition` (one request → a ``transition`` decision whose
outcome is a :class:`StageVerdict`) and :func:`available_transitions` (what a UI needs to
render the blueprint). A refusal is a decision listing **every** unmet requirement at once,
each with a code and the location of the requirement in the rule file; it is never an
exception. See ``docs/stages.md``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from salesrules._section import CompileContext, SectionModel, SectionSpec, did_you_mean
from salesrules.decision import (
    Assumption,
    Decision,
    Effect,
    Reason,
    RuleIssue,
    RuleRef,
    TraceBuilder,
    TraceStatus,
    _fast_decision,
    _fast_effect,
    _fast_reason,
)
from salesrules.errors import Location, RecordError
from salesrules.records import StageActor, StageOpportunity, coerce

if TYPE_CHECKING:
    from salesrules._yaml import Path
    from salesrules.calendar import Calendar, Duration
    from salesrules.conditions import Condition

__all__ = [
    "CHANNELS",
    "NAMED_CHECKS",
    "SECTION",
    "STAGE_CODES",
    "AvailableTransitions",
    "Stage",
    "StageVerdict",
    "StagesPolicy",
    "StagesSection",
    "Transition",
    "TransitionOption",
    "UnmetRequirement",
    "available_transitions",
    "check_transition",
]

Channel = Literal["ui", "api", "automation", "import"]
#: The channels a transition request can come through; all get the same gates.
CHANNELS: tuple[str, ...] = ("ui", "api", "automation", "import")
Relation = Literal["owner", "owner_manager", "collaborator"]
FieldType = Literal["text", "number", "integer", "boolean", "date", "datetime", "choice", "list"]
Move = Literal["forward", "skip", "backward", "won", "lost"]

#: ``from: any_open`` expands to every non-terminal stage (except the target).
ANY_OPEN = "any_open"

#: Rule-file issue codes of this module (errors SR240–SR249, warnings SR330–SR339).
STAGE_CODES: Mapping[str, str] = MappingProxyType(
    {
        "SR240": "there must be exactly one initial stage, and it must not be terminal",
        "SR241": "unknown stage",
        "SR242": "a transition leaves a terminal stage or goes nowhere (from == to)",
        "SR243": "duplicate transition (the same from → to declared twice)",
        "SR244": "a stage cannot be reached from the initial stage",
        "SR245": "a skip or backward move is not declared as such (or declared but is not one)",
        "SR246": "unknown field, or a field check that is invalid or does not fit the field's type",
        "SR247": "unknown attachment kind, checklist item or approval kind",
        "SR248": "unknown role, or an unknown recipient of an after-transition action",
        "SR249": "unknown named check",
        "SR330": "an open stage can never reach a terminal stage",
        "SR331": "a declared field, attachment kind, checklist item or approval is never required",
    }
)

_EMPTY: Mapping[str, Any] = MappingProxyType({})


# =============================================================================================
# Rule-file models
# =============================================================================================


class _AliasModel(SectionModel):
    """Models with YAML keys that are Python keywords (``from``, ``in``) dump by alias."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class FieldDecl(SectionModel):
    """A field of the opportunity that gates may require.

    Attributes:
        type: how the value is checked: ``text``, ``number`` (decimal), ``integer``,
            ``boolean``, ``date``, ``datetime`` (aware), ``choice`` (one of ``values``),
            ``list``.
        label: a human label (any language).
        values: the allowed values of a ``choice`` field.
    """

    type: FieldType = "text"
    label: str | None = None
    values: tuple[str, ...] | None = None


def _field_shorthand(value: Any) -> Any:
    return {"field": value} if isinstance(value, str) else value


class FieldRequirement(_AliasModel):
    """A required field and its typed checks (all must hold; an empty value is ``field_missing``)."""

    field: str
    gt: Decimal | None = None
    ge: Decimal | None = None
    lt: Decimal | None = None
    le: Decimal | None = None
    eq: str | int | bool | None = None
    in_: tuple[str | int, ...] | None = Field(default=None, alias="in")
    not_past: bool = False
    not_future: bool = False
    matches: str | None = None
    min_length: int | None = Field(default=None, ge=1)
    message: str | None = None


class Who(SectionModel):
    """Who may execute a transition: any listed role, or any listed relation to the record.

    Both empty (or ``who`` absent) means anyone who can see the record.
    """

    roles: tuple[str, ...] = ()
    relations: tuple[Relation, ...] = ()


class Requirements(SectionModel):
    """The evidence a transition needs ("during")."""

    fields: tuple[Annotated[FieldRequirement, BeforeValidator(_field_shorthand)], ...] = ()
    attachments: tuple[str, ...] = ()
    checklist: tuple[str, ...] = ()
    approvals: tuple[str, ...] = ()
    checks: tuple[str, ...] = ()
    reason: bool = False


class NotifyAction(SectionModel):
    """Notify someone after the transition (``owner``, ``owner_manager``, ``actor``,
    ``rep:ID``, ``team:ID`` or ``role:NAME``)."""

    do: Literal["notify"]
    to: str
    message: str
    template: str | None = None


class TaskAction(SectionModel):
    """Create a task after the transition, due a duration after it (business time allowed)."""

    do: Literal["create_task"]
    to: str
    title: str
    due: str | None = None


class UpdateFieldAction(SectionModel):
    """Set a field of the opportunity after the transition."""

    do: Literal["update_field"]
    field: str
    value: str | int | bool | Decimal | None


Action = Annotated[NotifyAction | TaskAction | UpdateFieldAction, Field(discriminator="do")]


class TransitionDecl(_AliasModel):
    """One allowed transition (``from`` may be a stage, a list, or ``any_open``)."""

    id: str
    from_: str | tuple[str, ...] = Field(alias="from")
    to: str
    label: str | None = None
    skip: bool = False
    backward: bool = False
    who: Who | None = None
    when: Any = None
    require: Requirements = Requirements()
    after: tuple[Action, ...] = ()


class StageDecl(SectionModel):
    """A stage: id, label (any language), initial flag, terminal kind."""

    id: str
    label: str | None = None
    initial: bool = False
    terminal: Literal["won", "lost"] | None = None
    description: str | None = None


class BypassDecl(SectionModel):
    """A named permission that lets its holder pass gates on the listed channels, with a reason."""

    channels: tuple[Channel, ...] = ("ui", "api", "automation", "import")
    description: str | None = None


class StagesSection(SectionModel):
    """The ``stages`` section: declarations, stages, transitions and bypass permissions."""

    fields: dict[str, FieldDecl] = Field(default_factory=dict)
    attachment_kinds: dict[str, str] = Field(default_factory=dict)
    checklist: dict[str, str] = Field(default_factory=dict)
    approvals: dict[str, str] = Field(default_factory=dict)
    roles: tuple[str, ...] = ()
    stages: tuple[StageDecl, ...]
    transitions: tuple[TransitionDecl, ...] = ()
    bypass: dict[str, BypassDecl] = Field(default_factory=dict)


# =============================================================================================
# Outcomes
# =============================================================================================


@dataclass(frozen=True, slots=True)
class UnmetRequirement:
    """One requirement a transition request does not meet.

    Attributes:
        code: ``unknown_stage``, ``transition_not_allowed``, ``actor_not_permitted``,
            ``criterion_not_met``, ``reason_required``, ``field_missing``, ``field_invalid``,
            ``attachment_missing``, ``checklist_unchecked``, ``approval_missing``,
            ``check_failed`` or ``bypass_reason_required``.
        subject: what is missing: a field name, attachment kind, checklist item, approval kind,
            check name, role list or stage id.
        message: a human explanation (with the actual value where there is one).
        rule_id: the transition id (or stage id) whose requirement this is.
        location: where the requirement is written in the rule file.
    """

    code: str
    subject: str
    message: str
    rule_id: str | None = None
    location: Location | None = None
    # The Reason for a refusal, prebuilt for requirements whose failure never varies (an
    # attachment, a checklist item…): not part of the value (no JSON, no equality).
    _reason: Reason | None = field(
        default=None, compare=False, repr=False, metadata={"json": False}
    )

    def __str__(self) -> str:
        return f"{self.code} {self.subject}: {self.message}"

    def as_reason(self) -> Reason:
        """The decision reason reporting this unmet requirement."""
        if self._reason is not None:
            return self._reason
        return Reason(self.code, self.message, self.rule_id, self.location)


def _static(unmet: UnmetRequirement) -> UnmetRequirement:
    """Attach the prebuilt reason to a failure built once at compile time."""
    object.__setattr__(unmet, "_reason", unmet.as_reason())
    return unmet


_SET_UNMET = tuple(
    UnmetRequirement.__dict__[f].__set__
    for f in ("code", "subject", "message", "rule_id", "location", "_reason")
)


def _unmet(
    code: str, subject: str, message: str, rule_id: str | None, location: Location | None
) -> UnmetRequirement:
    """``UnmetRequirement(...)`` with its reason attached, built without the dataclass
    ``__init__`` (hot path: a refusal whose message carries the actual value)."""
    u: UnmetRequirement = object.__new__(UnmetRequirement)
    s_code, s_subject, s_message, s_rule, s_loc, s_reason = _SET_UNMET
    s_code(u, code)
    s_subject(u, subject)
    s_message(u, message)
    s_rule(u, rule_id)
    s_loc(u, location)
    s_reason(u, _fast_reason(code, message, rule_id, location))
    return u


@dataclass(frozen=True, slots=True)
class StageVerdict:
    """Whether an opportunity may move to ``to_stage`` now.

    Attributes:
        allowed: the transition may be applied (the decision's effects say how).
        opportunity_id: the opportunity's id.
        from_stage: its current stage.
        to_stage: the requested stage.
        transition_id: the declared transition, or ``None`` when there is none.
        failed: every unmet requirement (empty when allowed without a bypass).
        waived: requirements a bypass let through (empty without one).
        bypass: the bypass permission used, or ``None``.
        to_label: the target stage's label.
    """

    allowed: bool
    opportunity_id: str
    from_stage: str
    to_stage: str
    transition_id: str | None = None
    failed: tuple[UnmetRequirement, ...] = ()
    waived: tuple[UnmetRequirement, ...] = ()
    bypass: str | None = None
    to_label: str = ""

    @property
    def codes(self) -> tuple[str, ...]:
        """The codes of the unmet requirements, in order."""
        return tuple(f.code for f in self.failed)

    def summary(self) -> str:
        """One line, e.g. ``refused proposal -> negotiation (2 unmet: field_missing amount, ...)``."""
        move = f"{self.from_stage} -> {self.to_stage}"
        if self.allowed:
            if self.bypass:
                return f"allowed {move} by bypass '{self.bypass}' ({len(self.waived)} waived)"
            return f"allowed {move}"
        items = ", ".join(f"{f.code} {f.subject}" for f in self.failed)
        return f"refused {move} ({len(self.failed)} unmet: {items})"


_SET_VERDICT = tuple(
    StageVerdict.__dict__[f].__set__
    for f in (
        "allowed", "opportunity_id", "from_stage", "to_stage", "transition_id", "failed",
        "waived", "bypass", "to_label",
    )
)


def _verdict(
    allowed: bool,
    opportunity_id: str,
    from_stage: str,
    to_stage: str,
    transition_id: str | None,
    failed: tuple[UnmetRequirement, ...],
    waived: tuple[UnmetRequirement, ...],
    bypass: str | None,
    to_label: str,
) -> StageVerdict:
    """``StageVerdict(...)`` without the dataclass ``__init__`` (hot path)."""
    v: StageVerdict = object.__new__(StageVerdict)
    s_allowed, s_opp, s_from, s_to, s_tr, s_failed, s_waived, s_bypass, s_label = _SET_VERDICT
    s_allowed(v, allowed)
    s_opp(v, opportunity_id)
    s_from(v, from_stage)
    s_to(v, to_stage)
    s_tr(v, transition_id)
    s_failed(v, failed)
    s_waived(v, waived)
    s_bypass(v, bypass)
    s_label(v, to_label)
    return v


@dataclass(frozen=True, slots=True)
class TransitionOption:
    """One transition out of the current stage, with what it still needs.

    Attributes:
        transition_id: the declared transition.
        to_stage: the target stage.
        to_label: its label.
        move: ``forward``, ``skip``, ``backward``, ``won`` or ``lost``.
        ready: nothing is missing (a required reason excepted: the UI asks for it).
        missing: every unmet requirement.
        needs_reason: the transition requires a reason.
        can_bypass: the actor could pass it with a bypass permission on this channel.
    """

    transition_id: str
    to_stage: str
    to_label: str
    move: str
    ready: bool
    missing: tuple[UnmetRequirement, ...] = ()
    needs_reason: bool = False
    can_bypass: bool = False


@dataclass(frozen=True, slots=True)
class AvailableTransitions:
    """Every transition out of an opportunity's stage, for one actor on one channel.

    Attributes:
        opportunity_id: the opportunity's id.
        stage: its current stage.
        stage_label: the stage's label.
        options: one per declared transition, in rule-file order.
    """

    opportunity_id: str
    stage: str
    stage_label: str
    options: tuple[TransitionOption, ...] = ()

    @property
    def ready(self) -> tuple[str, ...]:
        """The target stages that are ready now."""
        return tuple(o.to_stage for o in self.options if o.ready)

    def summary(self) -> str:
        """One line, e.g. ``proposal: 2 transitions, ready: lost``."""
        ready = ", ".join(self.ready) or "none"
        return f"{self.stage}: {len(self.options)} transitions, ready: {ready}"


# =============================================================================================
# Compiled form
# =============================================================================================


@dataclass(frozen=True, slots=True)
class Stage:
    """A compiled stage.

    Attributes:
        id: the stage id.
        label: its label (the id when none is given).
        kind: ``open``, ``won`` or ``lost``.
        initial: whether it is the initial stage.
        ref: the stage's id and location.
    """

    id: str
    label: str
    kind: str
    initial: bool
    ref: RuleRef


class _Env:
    """What requirement checks read during one evaluation (never shared between calls)."""

    __slots__ = ("_today", "_utc", "actor", "calendar", "cond_ctx", "now", "opp", "policy")

    def __init__(
        self,
        opp: _OppView,
        actor: _ActorView,
        now: datetime,
        calendar: Calendar,
        policy: Any,
    ) -> None:
        self.opp = opp
        self.actor = actor
        self.now = now
        self.calendar = calendar
        self.policy = policy
        self.cond_ctx: Mapping[str, Any] | None = None
        self._utc: datetime | None = None
        self._today: date | None = None

    def ctx(self) -> Mapping[str, Any]:
        if self.cond_ctx is None:
            self.cond_ctx = {"opportunity": self.opp.data, "actor": self.actor.data}
        return self.cond_ctx

    def utc_now(self) -> datetime:
        if self._utc is None:
            self._utc = self.now.astimezone(UTC)
        return self._utc

    def today(self) -> date:
        """Today in the policy calendar's zone (what "not in the past" means for a date)."""
        if self._today is None:
            self._today = self.calendar.local(self.now).date()
        return self._today


class _Req:
    """A compiled requirement: ``check`` returns ``None`` when met, else what is unmet."""

    __slots__ = ("describe", "ref")

    ref: RuleRef
    describe: str

    def check(self, env: _Env) -> UnmetRequirement | None:  # pragma: no cover - abstract
        raise NotImplementedError


class _WhoReq(_Req):
    __slots__ = ("fail", "relations", "roles")

    def __init__(self, roles: frozenset[str], relations: frozenset[str], ref: RuleRef) -> None:
        self.roles = roles
        self.relations = relations
        self.ref = ref
        parts = [*(f"role {r}" for r in sorted(roles)), *sorted(relations)]
        self.describe = "who: " + " or ".join(parts)
        self.fail = _static(
            UnmetRequirement(
                "actor_not_permitted",
                ",".join(parts),
                f"only {' or '.join(parts)} may make this transition",
                ref.id,
                ref.location,
            )
        )

    def check(self, env: _Env) -> UnmetRequirement | None:
        actor = env.actor
        if self.roles:
            for role in actor.roles:
                if role in self.roles:
                    return None
        if self.relations:
            opp = env.opp
            if "owner" in self.relations and opp.owner_id == actor.id:
                return None
            if "owner_manager" in self.relations and opp.owner_manager_id == actor.id:
                return None
            if "collaborator" in self.relations and actor.id in opp.collaborators:
                return None
        return self.fail


class _CriterionReq(_Req):
    __slots__ = ("cond",)

    def __init__(self, cond: Condition, ref: RuleRef) -> None:
        self.cond = cond
        self.ref = ref
        self.describe = "criterion on the record"

    def check(self, env: _Env) -> UnmetRequirement | None:
        if self.cond(env.ctx()) is True:
            return None
        detail = self.cond.explain(env.ctx()).render()
        return UnmetRequirement(
            "criterion_not_met",
            "when",
            f"the record does not meet the transition's criterion: {detail}",
            self.ref.id,
            self.ref.location,
        )

    def issues(self, env: _Env) -> list[RuleIssue]:
        out: list[RuleIssue] = []
        if self.cond(env.ctx()) is None:
            for code, fld, message in self.cond.explain(env.ctx()).issues:
                out.append(RuleIssue(code, message, self.ref.id, self.ref.location, fld))
        return out


class _ReasonReq(_Req):
    """Marker: the transition needs a reason (checked against the request, not the record)."""

    __slots__ = ("fail",)

    def __init__(self, ref: RuleRef) -> None:
        self.ref = ref
        self.describe = "a reason"
        self.fail = _static(
            UnmetRequirement(
                "reason_required", "reason", "this transition needs a reason", ref.id, ref.location
            )
        )

    def check(self, env: _Env) -> UnmetRequirement | None:  # pragma: no cover - not a record check
        return None


class _AttachmentReq(_Req):
    __slots__ = ("fail", "kind")

    def __init__(self, kind: str, label: str, ref: RuleRef) -> None:
        self.kind = kind
        self.ref = ref
        self.describe = f"attachment {kind}"
        what = kind if label in ("", kind) else f"{kind} ({label})"
        self.fail = _static(
            UnmetRequirement("attachment_missing", kind, f"attach a {what}", ref.id, ref.location)
        )

    def check(self, env: _Env) -> UnmetRequirement | None:
        return None if self.kind in env.opp.attachment_kinds else self.fail


class _ChecklistReq(_Req):
    __slots__ = ("fail", "item")

    def __init__(self, item: str, label: str, ref: RuleRef) -> None:
        self.item = item
        self.ref = ref
        self.describe = f"checklist {item}"
        what = item if label in ("", item) else f"{item} ({label})"
        self.fail = _static(
            UnmetRequirement("checklist_unchecked", item, f"check off {what}", ref.id, ref.location)
        )

    def check(self, env: _Env) -> UnmetRequirement | None:
        return None if env.opp.checklist.get(self.item) is True else self.fail


class _ApprovalReq(_Req):
    __slots__ = ("fail", "kind")

    def __init__(self, kind: str, label: str, ref: RuleRef) -> None:
        self.kind = kind
        self.ref = ref
        self.describe = f"approval {kind}"
        what = kind if label in ("", kind) else f"{kind} ({label})"
        self.fail = _static(
            UnmetRequirement(
                "approval_missing", kind, f"an approved {what} is needed", ref.id, ref.location
            )
        )

    def check(self, env: _Env) -> UnmetRequirement | None:
        return None if self.kind in env.opp.approved else self.fail


#: A named check: ``(policy, opportunity mapping) -> problem messages`` (empty = passes).
NamedCheckFn = Callable[[Any, Mapping[str, Any]], tuple[str, ...]]


class _NamedReq(_Req):
    __slots__ = ("fn", "name")

    def __init__(self, name: str, fn: NamedCheckFn, ref: RuleRef) -> None:
        self.name = name
        self.fn = fn
        self.ref = ref
        self.describe = f"check {name}"

    def check(self, env: _Env) -> UnmetRequirement | None:
        problems = self.fn(env.policy, env.opp.data)
        if not problems:
            return None
        return UnmetRequirement(
            "check_failed",
            self.name,
            f"{self.name}: " + "; ".join(problems),
            self.ref.id,
            self.ref.location,
        )


# -- field checks ------------------------------------------------------------------------------


def _is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list | tuple | dict | set | frozenset):
        return not value
    return False


def _as_number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None  # NaN (even signalling) is no number
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def _as_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return None
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            return None
    return None


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    if isinstance(value, datetime) and value.utcoffset() is not None:
        return value
    return None


def _short(value: Any) -> str:
    if isinstance(value, Decimal | date):
        text = str(value)
    else:
        text = repr(value) if not isinstance(value, str) else f"'{value}'"
    return text if len(text) <= 60 else text[:57] + "..."


class _FieldReq(_Req):
    """A required field with typed checks; returns the first problem found."""

    __slots__ = ("checks", "ftype", "message", "missing", "name", "ops", "values")

    def __init__(
        self,
        name: str,
        ftype: str,
        values: frozenset[str] | None,
        checks: tuple[tuple[str, Any], ...],
        message: str | None,
        label: str,
        ref: RuleRef,
    ) -> None:
        self.name = name
        self.ftype = ftype
        self.values = values
        self.checks = checks
        # each check as (function, operand): no per-call dispatch on the op name
        self.ops = tuple((_OPS[op], operand) for op, operand in checks)
        self.message = message
        self.ref = ref
        what = name if label in ("", name) else f"{name} ({label})"
        self.describe = f"field {name}" + "".join(
            f" {op}" if v is True and op.startswith("not_") else f" {op} {_short(v)}"
            for op, v in checks
        )
        self.missing = _static(
            UnmetRequirement(
                "field_missing", name, message or f"fill in {what}", ref.id, ref.location
            )
        )

    def _invalid(self, text: str) -> UnmetRequirement:
        return _unmet(
            "field_invalid",
            self.name,
            f"{self.message} ({text})" if self.message else text,
            self.ref.id,
            self.ref.location,
        )

    def check(self, env: _Env) -> UnmetRequirement | None:
        raw = env.opp.data.get(self.name)
        if raw is None:
            return self.missing
        traw = type(raw)
        if traw is str:  # as _is_empty
            if not raw.strip():
                return self.missing
        elif traw is not Decimal and traw is not int and _is_empty(raw):
            return self.missing
        ftype = self.ftype
        value: Any = raw
        if ftype in ("number", "integer"):
            if traw is Decimal:
                value = raw if raw.is_finite() else None  # as _as_number
            else:
                value = _as_number(raw)
            if value is None or (ftype == "integer" and value != value.to_integral_value()):
                return self._invalid(f"{self.name} must be a {ftype}, got {_short(raw)}")
        elif ftype == "date":
            if traw is str:  # as _as_date
                try:
                    value = date.fromisoformat(raw.strip())
                except ValueError:
                    value = None
            else:
                value = _as_date(raw)
            if value is None:
                return self._invalid(f"{self.name} must be a date (YYYY-MM-DD), got {_short(raw)}")
        elif ftype == "datetime":
            value = _as_datetime(raw)
            if value is None:
                return self._invalid(
                    f"{self.name} must be a timezone-aware datetime, got {_short(raw)}"
                )
        elif ftype == "boolean":
            if not isinstance(raw, bool):
                return self._invalid(f"{self.name} must be true or false, got {_short(raw)}")
        elif ftype == "list":
            if not isinstance(raw, list | tuple):
                return self._invalid(f"{self.name} must be a list, got {_short(raw)}")
        elif not isinstance(raw, str):  # text / choice
            return self._invalid(f"{self.name} must be text, got {_short(raw)}")
        elif self.values is not None and raw not in self.values:
            return self._invalid(
                f"{self.name} must be one of {', '.join(sorted(self.values))}, got {_short(raw)}"
            )
        for fn, operand in self.ops:
            problem = fn(self.name, operand, value, env)
            if problem is not None:
                return self._invalid(problem)
        return None


#: Which checks fit which field types (compile-time SR246 otherwise).
_CHECKS_FOR: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "text": frozenset({"eq", "in", "matches", "min_length"}),
        "choice": frozenset({"eq", "in"}),
        "number": frozenset({"gt", "ge", "lt", "le", "eq", "in"}),
        "integer": frozenset({"gt", "ge", "lt", "le", "eq", "in"}),
        "boolean": frozenset({"eq"}),
        "date": frozenset({"not_past", "not_future"}),
        "datetime": frozenset({"not_past", "not_future"}),
        "list": frozenset({"min_length"}),
    }
)


def _op_gt(name: str, operand: Any, value: Any, env: _Env) -> str | None:
    return None if value > operand else f"{name} must be > {operand}, got {value}"


def _op_ge(name: str, operand: Any, value: Any, env: _Env) -> str | None:
    return None if value >= operand else f"{name} must be >= {operand}, got {value}"


def _op_lt(name: str, operand: Any, value: Any, env: _Env) -> str | None:
    return None if value < operand else f"{name} must be < {operand}, got {value}"


def _op_le(name: str, operand: Any, value: Any, env: _Env) -> str | None:
    return None if value <= operand else f"{name} must be <= {operand}, got {value}"


def _op_eq(name: str, operand: Any, value: Any, env: _Env) -> str | None:
    ok = (value == operand and type(value) is type(operand)) or (
        isinstance(value, Decimal) and _as_number(operand) == value
    )
    return None if ok else f"{name} must be {_short(operand)}, got {_short(value)}"


def _op_in(name: str, operand: Any, value: Any, env: _Env) -> str | None:
    if isinstance(value, Decimal):
        ok = any(_as_number(o) == value for o in operand)
    else:
        ok = value in operand
    shown = ", ".join(str(o) for o in operand)
    return None if ok else f"{name} must be one of {shown}, got {_short(value)}"


def _op_not_past(name: str, operand: Any, value: Any, env: _Env) -> str | None:
    if isinstance(value, datetime):
        ok = value >= env.utc_now()
    else:
        ok = value >= env.today()
    return None if ok else f"{name} {value.isoformat()} is in the past"


def _op_not_future(name: str, operand: Any, value: Any, env: _Env) -> str | None:
    if isinstance(value, datetime):
        ok = value <= env.utc_now()
    else:
        ok = value <= env.today()
    return None if ok else f"{name} {value.isoformat()} is in the future"


def _op_matches(name: str, operand: Any, value: Any, env: _Env) -> str | None:
    return None if operand.search(value) else f"{name} does not match {operand.pattern}"


def _op_min_length(name: str, operand: Any, value: Any, env: _Env) -> str | None:
    size = len(value.strip()) if isinstance(value, str) else len(value)
    return None if size >= operand else f"{name} needs at least {operand}, got {size}"


#: Field check op -> its function (the message when it fails, else ``None``).
_OPS: Mapping[str, Callable[[str, Any, Any, _Env], str | None]] = MappingProxyType(
    {
        "gt": _op_gt, "ge": _op_ge, "lt": _op_lt, "le": _op_le, "eq": _op_eq, "in": _op_in,
        "not_past": _op_not_past, "not_future": _op_not_future, "matches": _op_matches,
        "min_length": _op_min_length,
    }
)  # fmt: skip


# -- actions -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Action:
    kind: str  # notify / create_task / update_field
    to: str | None
    params: Mapping[str, Any]
    due: Duration | None
    index: int


@dataclass(frozen=True, slots=True)
class Transition:
    """A compiled transition (one per declared ``from`` stage).

    Attributes:
        id: the transition id.
        from_stage: the source stage.
        to_stage: the target stage.
        move: ``forward``, ``skip``, ``backward``, ``won`` or ``lost``.
        ref: id and location of the declaration.
        label: the transition's label (the target's label when none is given).
        needs_reason: whether a reason is required.
    """

    id: str
    from_stage: str
    to_stage: str
    move: str
    ref: RuleRef
    label: str
    needs_reason: bool
    who: _WhoReq | None
    criterion: _CriterionReq | None
    gates: tuple[_Req, ...]
    reason_req: _ReasonReq | None
    actions: tuple[_Action, ...]


@dataclass(frozen=True, slots=True)
class StagesPolicy:
    """The compiled ``stages`` section: an immutable stage graph with its gates.

    Attributes:
        stages: stage id → :class:`Stage`, in rule-file order.
        initial: the initial stage id.
        transitions: ``(from, to)`` → :class:`Transition`.
        outgoing: stage id → its transitions, in rule-file order.
        bypass: permission → the channels it may be used on.
        calendar: the policy's calendar (for task due dates and "not in the past").
    """

    stages: Mapping[str, Stage]
    initial: str
    transitions: Mapping[tuple[str, str], Transition]
    outgoing: Mapping[str, tuple[Transition, ...]]
    bypass: Mapping[str, frozenset[str]]
    calendar: Calendar

    def label(self, stage: str) -> str:
        """The label of ``stage`` (the id itself when unknown or unlabelled)."""
        found = self.stages.get(stage)
        return found.label if found else stage

    def path_exists(self, a: str, b: str) -> bool:
        """Whether ``b`` can be reached from ``a`` through declared transitions."""
        seen = {a}
        todo = [a]
        while todo:
            for tr in self.outgoing.get(todo.pop(), ()):
                if tr.to_stage == b:
                    return True
                if tr.to_stage not in seen:
                    seen.add(tr.to_stage)
                    todo.append(tr.to_stage)
        return a == b


# =============================================================================================
# Named checks (hook points other modules fill)
# =============================================================================================


def _split_lines(opp: Mapping[str, Any]) -> Any:
    lines = opp.get("splits")
    if isinstance(lines, Mapping):  # tolerate {"lines": [...]}
        lines = lines.get("lines")
    return lines


def _fallback_revenue_split(lines: Any, owner_id: str | None) -> tuple[str, ...]:
    """The declared requirement when ``salesrules.splits`` offers no validator.

    Lines ``[{rep_id, share}]`` with distinct reps, decimal shares in (0, 100] (floats refused),
    summing to exactly 100 (``Decimal``), the owner holding a line when the record has one.
    """
    if not isinstance(lines, list | tuple) or not lines:
        return ("empty_split: the opportunity has no revenue split lines",)
    problems: list[str] = []
    total = Decimal(0)
    seen: set[str] = set()
    for i, line in enumerate(lines):
        if isinstance(line, BaseModel):
            line = line.model_dump()
        if not isinstance(line, Mapping):
            problems.append(f"invalid_share: lines[{i}] is not a split line")
            continue
        rep = line.get("rep_id")
        if not isinstance(rep, str) or not rep:
            problems.append(f"missing_rep_id: lines[{i}] has no rep id")
        elif rep in seen:
            problems.append(f"duplicate_member: {rep} appears twice")
        else:
            seen.add(rep)
        share = _as_number(line.get("share"))
        if share is None:
            problems.append(f"invalid_share: lines[{i}].share is not a decimal")
            continue
        if not Decimal(0) < share <= Decimal(100):
            problems.append(f"share_out_of_range: lines[{i}].share {share} is outside 0-100")
        total += share
    if owner_id and owner_id not in seen:
        problems.append(f"owner_missing: the owner {owner_id} holds no line")
    if total != Decimal(100):
        problems.append(f"total_not_100: the shares total {total}, not 100")
    return tuple(problems)


def _check_revenue_split(policy: Any, opp: Mapping[str, Any]) -> tuple[str, ...]:
    lines = _split_lines(opp)
    owner = opp.get("owner_id")
    owner_id = owner if isinstance(owner, str) else None
    try:
        from salesrules import splits
    except ImportError:  # pragma: no cover - the module ships with the package
        splits = None  # type: ignore[assignment]
    validate = getattr(splits, "validate_revenue_split", None)
    if validate is None:
        return _fallback_revenue_split(lines, owner_id)
    section = None
    has = getattr(policy, "has", None)
    if callable(has) and has("splits"):
        section = policy.section("splits")
    if lines is None:
        lines = ()
    if not isinstance(lines, list | tuple):
        return ("empty_split: the opportunity's splits are not a list of lines",)
    problems = validate(lines, owner_id=owner_id or "", section=section)
    # Without an owner on the record there is nobody who must hold a line.
    return tuple(
        f"{p.code}: {p.message}"
        for p in problems
        if owner_id is not None or p.code != "owner_missing"
    )


#: Named checks a transition can require (``require: {checks: [valid_revenue_split]}``).
NAMED_CHECKS: Mapping[str, NamedCheckFn] = MappingProxyType(
    {"valid_revenue_split": _check_revenue_split}
)


# =============================================================================================
# Compile
# =============================================================================================


def _compile(model: StagesSection, ctx: CompileContext) -> StagesPolicy:
    root: Path = ("stages",)
    issues_before = len(ctx.issues)
    ctx.check_unique_ids(
        ((s.id, (*root, "stages", i)) for i, s in enumerate(model.stages)), "stage"
    )
    ctx.check_unique_ids(
        ((t.id, (*root, "transitions", i)) for i, t in enumerate(model.transitions)), "transition"
    )
    stages: dict[str, Stage] = {}
    for i, s in enumerate(model.stages):
        if s.id in stages:
            continue
        if s.id == ANY_OPEN:
            ctx.error("SR241", f"'{ANY_OPEN}' is reserved", (*root, "stages", i, "id"), rule_id=s.id)
        kind = s.terminal or "open"
        stages[s.id] = Stage(
            s.id, s.label or s.id, kind, s.initial, ctx.rule_ref(s.id, (*root, "stages", i))
        )
    initials = [(i, s) for i, s in enumerate(model.stages) if s.initial]
    initial = initials[0][1].id if initials else (model.stages[0].id if model.stages else "")
    if len(initials) != 1:
        where = (*root, "stages", initials[1][0], "initial") if initials else (*root, "stages")
        ctx.error(
            "SR240",
            f"there must be exactly one initial stage, found {len(initials)}",
            where,
            hint="mark the first stage of the pipeline with `initial: true`",
        )
    elif initials[0][1].terminal is not None:
        ctx.error(
            "SR240",
            f"the initial stage '{initial}' cannot be terminal",
            (*root, "stages", initials[0][0], "terminal"),
            rule_id=initial,
        )
    # Order for skip/backward detection: position among stages that are not `lost`.
    ordered = [s.id for s in model.stages if s.terminal != "lost"]
    pos = {sid: n for n, sid in enumerate(ordered)}
    open_stages = [sid for sid, st in stages.items() if st.kind == "open"]

    used: dict[str, set[str]] = {"field": set(), "attachment": set(), "checklist": set(),
                                 "approval": set()}
    roles = set(model.roles)
    transitions: dict[tuple[str, str], Transition] = {}
    pair_path: dict[tuple[str, str], Path] = {}
    outgoing: dict[str, list[Transition]] = {sid: [] for sid in stages}
    for ti, t in enumerate(model.transitions):
        tpath: Path = (*root, "transitions", ti)
        ref = ctx.rule_ref(t.id, tpath)
        to_ok = t.to in stages
        if not to_ok:
            ctx.error(
                "SR241", f"unknown stage '{t.to}'", (*tpath, "to"), rule_id=t.id,
                hint=did_you_mean(t.to, stages) or f"stages are: {', '.join(stages)}",
            )
        sources: list[tuple[str, Path]] = []
        if isinstance(t.from_, str):
            if t.from_ == ANY_OPEN:
                sources = [(s, (*tpath, "from")) for s in open_stages if s != t.to]
            else:
                sources = [(t.from_, (*tpath, "from"))]
        else:
            sources = [(s, (*tpath, "from", k)) for k, s in enumerate(t.from_)]
        gates, who, criterion, reason_req = _compile_gates(t, tpath, ref, model, ctx, used, roles)
        actions = _compile_actions(t, tpath, ctx, roles)
        declared_skipback = computed = False
        for src, spath in sources:
            if src not in stages:
                ctx.error(
                    "SR241", f"unknown stage '{src}'", spath, rule_id=t.id,
                    hint=did_you_mean(src, stages) or f"stages are: {', '.join(stages)}",
                )
                continue
            if not to_ok:
                continue
            if stages[src].kind != "open":
                ctx.error(
                    "SR242",
                    f"transition '{t.id}' leaves the terminal stage '{src}'",
                    spath, rule_id=t.id, hint="terminal stages (won, lost) have no way out",
                )
                continue
            if src == t.to:
                ctx.error("SR242", f"transition '{t.id}' goes from '{src}' to itself", spath,
                          rule_id=t.id)
                continue
            move = _move(src, t.to, stages, pos)
            if move == "skip" and not t.skip:
                ctx.error(
                    "SR245", f"'{src}' -> '{t.to}' skips stages", (*tpath, "to"), rule_id=t.id,
                    hint="declare `skip: true` on the transition if skipping is intended",
                )
            elif move == "backward" and not t.backward:
                ctx.error(
                    "SR245", f"'{src}' -> '{t.to}' moves backwards", (*tpath, "to"), rule_id=t.id,
                    hint="declare `backward: true` (and consider `require: {reason: true}`)",
                )
            computed = True
            declared_skipback = declared_skipback or move in ("skip", "backward")
            if (src, t.to) in transitions:
                first = ctx.location(pair_path[(src, t.to)])
                line = f" (first at line {first.line})" if first else ""
                ctx.error(
                    "SR243", f"duplicate transition '{src}' -> '{t.to}'{line}", spath,
                    rule_id=t.id, hint="declare each from -> to once",
                )
                continue
            tr = Transition(
                id=t.id,
                from_stage=src,
                to_stage=t.to,
                move=move,
                ref=ref,
                label=t.label or stages[t.to].label,
                needs_reason=t.require.reason,
                who=who,
                criterion=criterion,
                gates=gates,
                reason_req=reason_req,
                actions=actions,
            )
            transitions[(src, t.to)] = tr
            pair_path[(src, t.to)] = spath
            outgoing[src].append(tr)
        for flag in ("skip", "backward"):
            if getattr(t, flag) and computed and not declared_skipback:
                ctx.error(
                    "SR245", f"transition '{t.id}' declares `{flag}: true` but is no {flag}",
                    (*tpath, flag), rule_id=t.id, key=True,
                )

    # With an unknown stage the graph is incomplete: reachability would only add noise.
    if not any(i.code == "SR241" for i in ctx.issues[issues_before:]):
        _check_graph(model, stages, initial, outgoing, ctx)
    _check_unused(model, used, ctx)
    bypass = {perm: frozenset(b.channels) for perm, b in model.bypass.items()}
    return StagesPolicy(
        stages=MappingProxyType(stages),
        initial=initial,
        transitions=MappingProxyType(transitions),
        outgoing=MappingProxyType({k: tuple(v) for k, v in outgoing.items()}),
        bypass=MappingProxyType(bypass),
        calendar=ctx.calendar,
    )


def _move(src: str, dst: str, stages: Mapping[str, Stage], pos: Mapping[str, int]) -> str:
    kind = stages[dst].kind
    if kind == "lost":
        return "lost"
    delta = pos[dst] - pos[src]
    if delta < 0:
        return "backward"
    if delta > 1:
        return "skip"
    return "won" if kind == "won" else "forward"


def _compile_gates(
    t: TransitionDecl,
    tpath: Path,
    ref: RuleRef,
    model: StagesSection,
    ctx: CompileContext,
    used: dict[str, set[str]],
    roles: set[str],
) -> tuple[tuple[_Req, ...], _WhoReq | None, _CriterionReq | None, _ReasonReq | None]:
    who: _WhoReq | None = None
    if t.who is not None:
        for k, role in enumerate(t.who.roles):
            if role not in roles:
                ctx.error(
                    "SR248", f"unknown role '{role}'", (*tpath, "who", "roles", k), rule_id=t.id,
                    hint=did_you_mean(role, roles) or "declare it under `roles:`",
                )
        if t.who.roles or t.who.relations:
            who = _WhoReq(
                frozenset(t.who.roles),
                frozenset(t.who.relations),
                ctx.rule_ref(t.id, (*tpath, "who")),
            )
    criterion: _CriterionReq | None = None
    if t.when is not None:
        cond = ctx.condition(
            t.when, (*tpath, "when"), roots=frozenset({"opportunity", "actor"}), rule_id=t.id
        )
        criterion = _CriterionReq(cond, ctx.rule_ref(t.id, (*tpath, "when")))
    req = t.require
    rpath: Path = (*tpath, "require")
    gates: list[_Req] = []
    for k, f in enumerate(req.fields):
        fpath: Path = (*rpath, "fields", k)
        decl = model.fields.get(f.field)
        if decl is None:
            ctx.error(
                "SR246", f"unknown field '{f.field}'", fpath, rule_id=t.id,
                hint=did_you_mean(f.field, model.fields) or "declare it under `fields:`",
            )
            continue
        used["field"].add(f.field)
        checks = _field_checks(f, decl, fpath, t.id, ctx)
        values = frozenset(decl.values) if decl.type == "choice" and decl.values else None
        if decl.type == "choice" and not decl.values:
            ctx.error("SR246", f"choice field '{f.field}' declares no values",
                      ("stages", "fields", f.field), rule_id=t.id)
        gates.append(
            _FieldReq(f.field, decl.type, values, checks, f.message, decl.label or "",
                      ctx.rule_ref(t.id, fpath))
        )
    tables: tuple[tuple[str, str, Mapping[str, str], type[_Req]], ...] = (
        ("attachments", "attachment", model.attachment_kinds, _AttachmentReq),
        ("checklist", "checklist", model.checklist, _ChecklistReq),
        ("approvals", "approval", model.approvals, _ApprovalReq),
    )
    for key, what, declared, cls in tables:
        for k, item in enumerate(getattr(req, key)):
            ipath: Path = (*rpath, key, k)
            if item not in declared:
                section_key = "attachment_kinds" if key == "attachments" else key
                ctx.error(
                    "SR247", f"unknown {what} '{item}'", ipath, rule_id=t.id,
                    hint=did_you_mean(item, declared) or f"declare it under `{section_key}:`",
                )
                continue
            used[what].add(item)
            gates.append(cls(item, declared[item], ctx.rule_ref(t.id, ipath)))  # type: ignore[call-arg]
    for k, name in enumerate(req.checks):
        fn = NAMED_CHECKS.get(name)
        if fn is None:
            ctx.error(
                "SR249", f"unknown check '{name}'", (*rpath, "checks", k), rule_id=t.id,
                hint=did_you_mean(name, NAMED_CHECKS)
                or f"checks are: {', '.join(NAMED_CHECKS)}",
            )
            continue
        gates.append(_NamedReq(name, fn, ctx.rule_ref(t.id, (*rpath, "checks", k))))
    reason_req = _ReasonReq(ctx.rule_ref(t.id, (*rpath, "reason"))) if req.reason else None
    return tuple(gates), who, criterion, reason_req


def _field_checks(
    f: FieldRequirement, decl: FieldDecl, fpath: Path, rule_id: str, ctx: CompileContext
) -> tuple[tuple[str, Any], ...]:
    allowed = _CHECKS_FOR[decl.type]
    out: list[tuple[str, Any]] = []
    spec: list[tuple[str, Any, str]] = [
        ("gt", f.gt, "gt"), ("ge", f.ge, "ge"), ("lt", f.lt, "lt"), ("le", f.le, "le"),
        ("eq", f.eq, "eq"), ("in", f.in_, "in"),
        ("not_past", f.not_past or None, "not_past"),
        ("not_future", f.not_future or None, "not_future"),
        ("matches", f.matches, "matches"), ("min_length", f.min_length, "min_length"),
    ]
    for op, operand, key in spec:
        if operand is None:
            continue
        if op not in allowed:
            ctx.error(
                "SR246",
                f"check '{op}' does not fit the {decl.type} field '{f.field}'",
                (*fpath, key), rule_id=rule_id, key=True,
                hint=f"a {decl.type} field accepts: {', '.join(sorted(allowed)) or 'no checks'}",
            )
            continue
        if op == "matches":
            try:
                operand = re.compile(operand)
            except re.error as exc:
                ctx.error("SR246", f"invalid regular expression: {exc}", (*fpath, key),
                          rule_id=rule_id)
                continue
        if op == "in" and decl.type == "choice" and decl.values:
            for k, v in enumerate(operand):
                if v not in decl.values:
                    ctx.error("SR246", f"'{v}' is not a value of the choice field '{f.field}'",
                              (*fpath, key, k), rule_id=rule_id)
        if op == "in":
            operand = tuple(operand)
        if op in ("not_past", "not_future"):
            operand = True
        out.append((op, operand))
    return tuple(out)


def _compile_actions(
    t: TransitionDecl, tpath: Path, ctx: CompileContext, roles: set[str]
) -> tuple[_Action, ...]:
    out: list[_Action] = []
    for k, a in enumerate(t.after):
        apath: Path = (*tpath, "after", k)
        if isinstance(a, NotifyAction):
            _check_target(a.to, (*apath, "to"), t.id, ctx, roles)
            params: dict[str, Any] = {"message": a.message}
            if a.template:
                params["template"] = a.template
            out.append(_Action("notify", a.to, MappingProxyType(params), None, k))
        elif isinstance(a, TaskAction):
            _check_target(a.to, (*apath, "to"), t.id, ctx, roles)
            due = ctx.duration(a.due, (*apath, "due"), rule_id=t.id) if a.due else None
            out.append(_Action("create_task", a.to, MappingProxyType({"title": a.title}), due, k))
        else:
            value = str(a.value) if isinstance(a.value, Decimal) else a.value
            out.append(
                _Action("update_field", None,
                        MappingProxyType({"field": a.field, "value": value}), None, k)
            )
    return tuple(out)


_TARGET = re.compile(r"^(owner|owner_manager|actor|(rep|team|role):.+)$")


def _check_target(
    to: str, path: Path, rule_id: str, ctx: CompileContext, roles: set[str]
) -> None:
    if not _TARGET.match(to):
        ctx.error(
            "SR248", f"unknown recipient '{to}'", path, rule_id=rule_id,
            hint="use owner, owner_manager, actor, rep:ID, team:ID or role:NAME",
        )
    elif to.startswith("role:") and to[5:] not in roles:
        ctx.error(
            "SR248", f"unknown role '{to[5:]}'", path, rule_id=rule_id,
            hint=did_you_mean(to[5:], roles) or "declare it under `roles:`",
        )


def _check_graph(
    model: StagesSection,
    stages: Mapping[str, Stage],
    initial: str,
    outgoing: Mapping[str, list[Transition]],
    ctx: CompileContext,
) -> None:
    if initial not in stages:
        return
    reach = {initial}
    todo = [initial]
    while todo:
        for tr in outgoing[todo.pop()]:
            if tr.to_stage not in reach:
                reach.add(tr.to_stage)
                todo.append(tr.to_stage)
    # reverse reachability from terminal stages
    incoming: dict[str, set[str]] = {s: set() for s in stages}
    for src, trs in outgoing.items():
        for tr in trs:
            incoming[tr.to_stage].add(src)
    ends = {s for s, st in stages.items() if st.kind != "open"}
    can_end = set(ends)
    todo = list(ends)
    while todo:
        for src in incoming[todo.pop()]:
            if src not in can_end:
                can_end.add(src)
                todo.append(src)
    seen: set[str] = set()
    for i, s in enumerate(model.stages):
        if s.id in seen:
            continue
        seen.add(s.id)
        if s.id not in reach:
            ctx.error(
                "SR244", f"stage '{s.id}' cannot be reached from the initial stage '{initial}'",
                ("stages", "stages", i, "id"), rule_id=s.id,
                hint="add a transition into it, or remove it",
            )
        elif s.id not in can_end:
            ctx.warn(
                "SR330", f"stage '{s.id}' can never reach a terminal stage",
                ("stages", "stages", i, "id"), rule_id=s.id,
                hint="add a transition toward won or lost (e.g. `from: any_open, to: lost`)",
            )


def _check_unused(model: StagesSection, used: Mapping[str, set[str]], ctx: CompileContext) -> None:
    tables: tuple[tuple[str, str, Iterable[str]], ...] = (
        ("field", "fields", model.fields),
        ("attachment", "attachment_kinds", model.attachment_kinds),
        ("checklist", "checklist", model.checklist),
        ("approval", "approvals", model.approvals),
    )
    for what, key, names in tables:
        for name in names:
            if name not in used[what]:
                ctx.warn(
                    "SR331", f"{what} '{name}' is declared but no transition requires it",
                    ("stages", key, name), key=True,
                )


# =============================================================================================
# Runtime: reading records fast
# =============================================================================================


class _OppView:
    """The parts of an opportunity gates read (validated once per call)."""

    __slots__ = (
        "approved",
        "attachment_kinds",
        "checklist",
        "collaborators",
        "data",
        "id",
        "owner_id",
        "owner_manager_id",
        "stage",
    )

    def __init__(
        self,
        data: Mapping[str, Any],
        ident: str,
        stage: str,
        owner_id: str | None,
        owner_manager_id: str | None,
        collaborators: Sequence[str],
        kinds: set[str],
        checklist: Mapping[str, Any],
        approved: set[str],
    ) -> None:
        # The values were read (and checked) by _fast_opportunity; the sets are private to
        # this one evaluation.
        self.data = data
        self.id = ident
        self.stage = stage
        self.owner_id = owner_id
        self.owner_manager_id = owner_manager_id
        self.collaborators = collaborators
        self.attachment_kinds = kinds
        self.checklist = checklist
        self.approved = approved


class _ActorView:
    __slots__ = ("data", "id", "permissions", "roles")

    def __init__(
        self, data: Mapping[str, Any], ident: str, roles: Any, permissions: Any
    ) -> None:
        self.data = data
        self.id: str = ident
        # Short sequences: membership tests beat building sets on every call.
        self.roles: Sequence[str] = roles or ()
        self.permissions: Sequence[str] = permissions or ()


def _str_seq(v: Any) -> bool:
    if v is None:
        return True
    if type(v) is not list and type(v) is not tuple:
        return False
    for x in v:  # noqa: SIM110 - a plain loop beats all() (and set passes) on short lists
        if type(x) is not str:
            return False
    return True


_SEQ = (list, tuple)


def _attachment_kinds(atts: Sequence[Any]) -> set[str] | None:
    """The kinds of a list of attachments, or ``None`` when one is not what pydantic accepts."""
    kinds: set[str] = set()
    for a in atts:
        if type(a) is dict and len(a) == 1:  # the usual {"kind": ...}: nothing else to check
            kind = a.get("kind")
            if type(kind) is str:
                kinds.add(kind)
                continue
        if type(a) is not dict and not isinstance(a, Mapping):
            return None
        kind = a.get("kind")
        ident = a.get("id")
        if type(kind) is not str or (ident is not None and type(ident) is not str):
            return None
        if "name" in a and type(a["name"]) is not str:
            return None
        kinds.add(kind)
    return kinds


def _fast_opportunity(data: Any) -> _OppView | None:
    """Read a plain mapping exactly as pydantic would accept it, or ``None`` (use pydantic)."""
    if type(data) is not dict and not isinstance(data, Mapping):
        return None
    get = data.get
    ident = get("id")
    stage = get("stage")
    if type(ident) is not str or type(stage) is not str:
        return None
    owner = get("owner_id")
    if owner is not None and type(owner) is not str:
        return None
    manager = get("owner_manager_id")
    if manager is not None and type(manager) is not str:
        return None
    collaborators = get("collaborator_ids")
    if collaborators is not None and not _str_seq(collaborators):
        return None
    atts = get("attachments")
    kinds: set[str] | None
    if atts is None:
        kinds = set()
    else:
        if type(atts) not in _SEQ:
            return None
        kinds = _attachment_kinds(atts)
        if kinds is None:
            return None
    checklist = get("checklist")
    if checklist is not None:
        if type(checklist) is dict or isinstance(checklist, Mapping):
            for k, v in checklist.items():
                if type(k) is not str or type(v) is not bool:
                    return None
        else:
            return None
    approved: set[str] = set()
    apps = get("approvals")
    if apps is not None:
        if type(apps) not in _SEQ:
            return None
        for a in apps:
            if type(a) is not dict and not isinstance(a, Mapping):
                return None
            kind = a.get("kind")
            status = a.get("status", "approved")
            if type(kind) is not str or type(status) is not str:
                return None
            by = a.get("by")
            if by is not None and type(by) is not str:
                return None
            at = a.get("at")
            if at is not None and not (isinstance(at, datetime) and at.utcoffset() is not None):
                return None
            if status == "approved":
                approved.add(kind)
    return _OppView(
        data, ident, stage, owner, manager, collaborators or (), kinds, checklist or _EMPTY,
        approved,
    )


def _read_opportunity(data: Any) -> _OppView:
    view = None if isinstance(data, BaseModel) else _fast_opportunity(data)
    if view is None:
        # The slow path: pydantic validates (and raises RecordError naming the field).
        view = _fast_opportunity(coerce(StageOpportunity, data, "opportunity").model_dump())
        if view is None:  # pragma: no cover - a validated record always reads fast
            raise RecordError("opportunity", "*", "could not read the opportunity")
    return view


def _read_actor(data: Any) -> _ActorView:
    if type(data) is dict or isinstance(data, Mapping):
        get = data.get
        ident = get("id")
        if type(ident) is str:
            roles = get("roles")
            if (
                roles is None
                or (type(roles) is list and len(roles) == 1 and type(roles[0]) is str)
                or _str_seq(roles)
            ):
                permissions = get("permissions")
                if permissions is None or _str_seq(permissions):
                    return _ActorView(data, ident, roles, permissions)
    dumped = coerce(StageActor, data, "actor").model_dump()
    return _ActorView(dumped, dumped["id"], dumped.get("roles"), dumped.get("permissions"))


def _resolve(policy: Any) -> tuple[StagesPolicy, str]:
    if isinstance(policy, StagesPolicy):
        return policy, ""
    section = getattr(policy, "section", None)
    if section is None:
        raise RecordError("policy", "policy", "expected a Policy (or a compiled StagesPolicy)")
    compiled = section("stages")
    if not isinstance(compiled, StagesPolicy):  # pragma: no cover - defensive
        raise RecordError("policy", "stages", "the 'stages' section did not compile")
    return compiled, str(getattr(policy, "digest", ""))


def _check_now(now: Any) -> datetime:
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise RecordError(
            "now", "now", "a timezone-aware datetime is required (e.g. 2026-12-03T09:00:00+08:00)"
        )
    return now


def _check_channel(channel: Any) -> str:
    if channel not in CHANNELS:
        raise RecordError(
            "request", "channel", f"unknown channel {channel!r}; use one of {', '.join(CHANNELS)}"
        )
    return str(channel)


# =============================================================================================
# Runtime: deciding
# =============================================================================================


def _gates(
    tr: Transition,
    env: _Env,
    tb: TraceBuilder | None,
    errors: list[RuleIssue],
) -> list[UnmetRequirement]:
    failed: list[UnmetRequirement] = []
    if tb is None and tr.criterion is None:  # the hot path: no trace, no criterion
        if tr.who is not None:
            miss = tr.who.check(env)
            if miss is not None:
                failed.append(miss)
        for req in tr.gates:
            miss = req.check(env)
            if miss is not None:
                failed.append(miss)
        return failed
    if tr.who is not None:
        miss = tr.who.check(env)
        if miss is not None:
            failed.append(miss)
        if tb is not None:
            _trace_req(tb, tr.who, miss, env)
    if tr.criterion is not None:
        miss = tr.criterion.check(env)
        if miss is not None:
            failed.append(miss)
            errors.extend(tr.criterion.issues(env))
        if tb is not None:
            _trace_req(tb, tr.criterion, miss, env)
    for req in tr.gates:
        miss = req.check(env)
        if miss is not None:
            failed.append(miss)
        if tb is not None:
            _trace_req(tb, req, miss, env)
    return failed


def _trace_req(tb: TraceBuilder, req: _Req, miss: UnmetRequirement | None, env: _Env) -> None:
    values: dict[str, Any] = {}
    if isinstance(req, _FieldReq):
        raw = env.opp.data.get(req.name)
        values[req.name] = raw if isinstance(raw, str | int | bool | Decimal) or raw is None else str(raw)
    if isinstance(req, _WhoReq):
        values = {"actor": env.actor.id, "roles": sorted(env.actor.roles)}
    if miss is None:
        tb.add(TraceStatus.MATCHED, f"{req.describe}: met", req.ref, values)
    else:
        tb.add(TraceStatus.SKIPPED, f"{req.describe}: {miss.code} - {miss.message}", req.ref, values)


def _bypass_for(sp: StagesPolicy, actor: _ActorView, channel: str) -> str | None:
    if not sp.bypass or not actor.permissions:
        return None
    for perm, channels in sp.bypass.items():  # rule-file order: the first one held wins
        if perm in actor.permissions and channel in channels:
            return perm
    return None


def _refuse(
    opp: _OppView, to_stage: str, failed: tuple[UnmetRequirement, ...], sp: StagesPolicy,
    transition_id: str | None,
) -> StageVerdict:
    return _verdict(
        False, opp.id, opp.stage, to_stage, transition_id, failed, (), None, sp.label(to_stage)
    )


def check_transition(
    policy: Any,
    opportunity: StageOpportunity | Mapping[str, Any],
    *,
    to_stage: str,
    actor: StageActor | Mapping[str, Any],
    channel: str,
    now: datetime,
    reason: str | None = None,
    request_id: str | None = None,
    explain: bool = False,
) -> Decision[StageVerdict]:
    """Check whether ``opportunity`` may move to ``to_stage`` now, listing every unmet gate.

    The verdict is the same on every channel unless the actor holds a bypass permission named
    in the section for that channel: then, with a ``reason``, unmet requirements are waived
    (listed in ``waived``) and an ``audit`` effect is emitted; without a reason the request is
    refused with ``bypass_reason_required``. A bypass never opens an undeclared transition.

    Args:
        policy: a loaded :class:`~salesrules.policy.Policy` with a ``stages`` section (or a
            compiled :class:`StagesPolicy`).
        opportunity: the opportunity (a :class:`~salesrules.records.StageOpportunity` or a
            mapping): ``id``, ``stage``, owner and relations, custom fields, ``attachments``,
            ``checklist``, ``approvals``, ``splits``.
        to_stage: the requested stage id.
        actor: who asks (a :class:`~salesrules.records.StageActor` or a mapping).
        channel: ``ui``, ``api``, ``automation`` or ``import``.
        now: the current instant (timezone-aware).
        reason: why (required by backward moves that declare it, and by any bypass).
        request_id: a stable id of the request, used in effect idempotency keys (default:
            ``now``).
        explain: build a trace of every gate.

    Returns:
        A ``transition`` decision. When allowed, its effects update the stage, record the
        stage entry (``stage_entered``, which starts the new stage's clocks) and apply the
        transition's ``after`` actions.

    Raises:
        RecordError: ``now`` is naive, the channel is unknown, a record is malformed, or the
            opportunity's current stage is not in the policy.
    """
    sp, digest = _resolve(policy)
    # the checks of _check_now / _check_channel / _read_opportunity, inlined for the usual case
    if type(now) is not datetime or now.tzinfo is None or now.utcoffset() is None:
        now = _check_now(now)
    if type(channel) is not str or channel not in CHANNELS:
        channel = _check_channel(channel)
    if type(opportunity) is dict:  # (the ABC check of BaseModel costs more than the read)
        opp = _fast_opportunity(opportunity)
    else:
        opp = None if isinstance(opportunity, BaseModel) else _fast_opportunity(opportunity)
    if opp is None:
        opp = _read_opportunity(opportunity)
    who = _read_actor(actor)
    if not isinstance(to_stage, str):
        raise RecordError("request", "to_stage", "expected a stage id")
    if opp.stage not in sp.stages:
        raise RecordError(
            f"opportunity {opp.id!r}", "stage", f"stage {opp.stage!r} is not in the policy"
        )
    if reason is not None and not isinstance(reason, str):
        raise RecordError("request", "reason", "expected text")
    if request_id is not None and not isinstance(request_id, str):
        raise RecordError("request", "request_id", "expected text")
    has_reason = bool(reason and reason.strip())
    tb = TraceBuilder() if explain else None
    errors: list[RuleIssue] = []

    target = sp.stages.get(to_stage)
    tr = sp.transitions.get((opp.stage, to_stage)) if target is not None else None
    if tr is None:
        current = sp.stages[opp.stage]
        if target is None:
            miss = _unmet(
                "unknown_stage", to_stage, f"there is no stage {to_stage!r}",
                current.ref.id, current.ref.location,
            )
        else:
            why = "is terminal" if current.kind != "open" else f"has no transition to {to_stage}"
            miss = _unmet(
                "transition_not_allowed", to_stage,
                f"{current.label} ({opp.stage}) {why}",
                current.ref.id, current.ref.location,
            )
        if tb is not None:
            tb.add(TraceStatus.SKIPPED, miss.message, current.ref, {"to_stage": to_stage})
        verdict = _refuse(opp, to_stage, (miss,), sp, None)
        return _fast_decision(
            "transition",
            verdict,
            (miss.as_reason(),),
            trace=tb.build() if tb is not None else None,
            policy_digest=digest,
        )

    if tb is not None:
        tb.add(TraceStatus.MATCHED, f"transition {tr.from_stage} -> {tr.to_stage} ({tr.move})",
               tr.ref, {"channel": channel})
    env = _Env(opp, who, now, sp.calendar, policy)
    failed = _gates(tr, env, tb, errors)
    if tr.reason_req is not None and not has_reason:
        failed.append(tr.reason_req.fail)
        if tb is not None:
            tb.add(TraceStatus.SKIPPED, "reason: missing", tr.reason_req.ref)

    bypass: str | None = None
    if failed:
        bypass = _bypass_for(sp, who, channel)
        if bypass is None:
            return _refused(opp, tr, tuple(failed), sp, tb, errors, digest)
        if not has_reason:
            failed.append(
                UnmetRequirement(
                    "bypass_reason_required", bypass,
                    f"using the bypass permission '{bypass}' needs a reason",
                    tr.id, tr.ref.location,
                )
            )
            if tb is not None:
                tb.add(TraceStatus.SKIPPED, f"bypass {bypass}: no reason given", tr.ref)
            return _refused(opp, tr, tuple(failed), sp, tb, errors, digest)
        if tb is not None:
            tb.add(TraceStatus.NOTE, f"bypass {bypass} waives {len(failed)} requirement(s)",
                   tr.ref, {"channel": channel, "reason": reason})

    verdict = _verdict(
        True, opp.id, opp.stage, to_stage, tr.id, (), tuple(failed), bypass, sp.label(to_stage)
    )
    effects = _effects(sp, tr, opp, who, channel, now, reason if has_reason else None,
                       request_id, bypass, tuple(failed))
    if bypass is None:
        reasons: tuple[Reason, ...] = (
            _fast_reason("transition_allowed",
                         f"{tr.from_stage} -> {tr.to_stage}: every gate is met",
                         tr.id, tr.ref.location),
        )
    else:
        reasons = (
            Reason("bypassed", f"bypass '{bypass}' waived {len(failed)} requirement(s)",
                   tr.id, tr.ref.location,
                   {"permission": bypass, "waived": [f.code for f in failed]}),
        )
    return _fast_decision(
        "transition",
        verdict,
        reasons,
        effects,
        (
            Assumption(
                f"opportunity:{opp.id}.stage",
                opp.stage,
                "the stage has not changed since the check",
            ),
        ),
        tuple(errors) if errors else (),
        tb.build() if tb is not None else None,
        digest,
    )


def _refused(
    opp: _OppView, tr: Transition, failed: tuple[UnmetRequirement, ...], sp: StagesPolicy,
    tb: TraceBuilder | None, errors: list[RuleIssue], digest: str,
) -> Decision[StageVerdict]:
    to_stage = tr.to_stage
    return _fast_decision(
        "transition",
        _verdict(
            False, opp.id, opp.stage, to_stage, tr.id, failed, (), None, sp.label(to_stage)
        ),
        tuple([f._reason or f.as_reason() for f in failed]),
        errors=tuple(errors) if errors else (),
        trace=tb.build() if tb is not None else None,
        policy_digest=digest,
    )


def _recipient(to: str, opp: _OppView, actor: _ActorView) -> str | None:
    if to == "owner":
        return f"rep:{opp.owner_id}" if opp.owner_id else None
    if to == "owner_manager":
        return f"rep:{opp.owner_manager_id}" if opp.owner_manager_id else None
    if to == "actor":
        return f"rep:{actor.id}"
    return to


def _effects(
    sp: StagesPolicy,
    tr: Transition,
    opp: _OppView,
    actor: _ActorView,
    channel: str,
    now: datetime,
    reason: str | None,
    request_id: str | None,
    bypass: str | None,
    waived: tuple[UnmetRequirement, ...],
) -> tuple[Effect, ...]:
    target = f"opportunity:{opp.id}"
    at = now.isoformat()
    event = f"{tr.id}@{request_id or at}"
    # Every param below is text: built as frozen JSON directly (no freeze_json copy).
    out = [
        _fast_effect("update_field", target, f"update_field:{target}:stage:{event}",
                     MappingProxyType({"field": "stage", "value": tr.to_stage})),
        _fast_effect(
            "stage_entered",
            target,
            f"stage_entered:{target}:{event}",
            MappingProxyType(
                {"stage": tr.to_stage, "previous_stage": tr.from_stage, "at": at,
                 "by": actor.id, "channel": channel, "transition": tr.id}
            ),
        ),
    ]
    for a in tr.actions:
        key = f"{a.kind}:{target}:{event}:{a.index}"
        if a.kind == "update_field":
            out.append(Effect("update_field", target, key, a.params))
            continue
        rcpt = _recipient(a.to or "", opp, actor)
        if rcpt is None:
            continue  # no owner manager on the record: nobody to notify
        params = dict(a.params)
        params["record"] = target
        # notify / create_task params are text (message, template, title, record, due)
        if a.kind == "create_task":
            if a.due is not None:
                params["due"] = sp.calendar.add(now, a.due).isoformat()
            out.append(_fast_effect("create_task", rcpt, key, MappingProxyType(params)))
        else:
            out.append(_fast_effect("notify", rcpt, key, MappingProxyType(params)))
    if bypass is not None:
        out.append(
            Effect(
                "audit", target, f"audit:{target}:{event}",
                {"action": "stage_gate_bypass", "actor": actor.id, "reason": reason,
                 "permission": bypass, "channel": channel, "transition": tr.id,
                 "waived": [f"{f.code}:{f.subject}" for f in waived]},
            )
        )
    return tuple(out)


def available_transitions(
    policy: Any,
    opportunity: StageOpportunity | Mapping[str, Any],
    *,
    actor: StageActor | Mapping[str, Any],
    channel: str,
    now: datetime,
    explain: bool = False,
) -> Decision[AvailableTransitions]:
    """List every transition out of the opportunity's stage with what each still needs.

    A required reason is not counted as missing (``needs_reason`` tells the UI to ask for
    one); everything else is exactly what :func:`check_transition` would report.

    Args:
        policy: a loaded policy with a ``stages`` section (or a compiled :class:`StagesPolicy`).
        opportunity: the opportunity (record or mapping).
        actor: who looks (record or mapping).
        channel: ``ui``, ``api``, ``automation`` or ``import``.
        now: the current instant (timezone-aware).
        explain: build a trace of every gate.

    Returns:
        An ``available_transitions`` decision.

    Raises:
        RecordError: ``now`` is naive, the channel is unknown, a record is malformed, or the
            opportunity's current stage is not in the policy.
    """
    sp, digest = _resolve(policy)
    now = _check_now(now)
    channel = _check_channel(channel)
    opp = _read_opportunity(opportunity)
    who = _read_actor(actor)
    if opp.stage not in sp.stages:
        raise RecordError(
            f"opportunity {opp.id!r}", "stage", f"stage {opp.stage!r} is not in the policy"
        )
    tb = TraceBuilder() if explain else None
    errors: list[RuleIssue] = []
    env = _Env(opp, who, now, sp.calendar, policy)
    can_bypass = _bypass_for(sp, who, channel) is not None
    options: list[TransitionOption] = []
    for tr in sp.outgoing.get(opp.stage, ()):
        if tb is not None:
            tb.add(TraceStatus.NOTE, f"transition {tr.from_stage} -> {tr.to_stage}", tr.ref)
        missing = tuple(_gates(tr, env, tb, errors))
        options.append(
            TransitionOption(
                transition_id=tr.id,
                to_stage=tr.to_stage,
                to_label=sp.label(tr.to_stage),
                move=tr.move,
                ready=not missing,
                missing=missing,
                needs_reason=tr.needs_reason,
                can_bypass=can_bypass,
            )
        )
    outcome = AvailableTransitions(
        opportunity_id=opp.id,
        stage=opp.stage,
        stage_label=sp.label(opp.stage),
        options=tuple(options),
    )
    ready = [o.to_stage for o in options if o.ready]
    return Decision(
        kind="available_transitions",
        outcome=outcome,
        reasons=(
            Reason(
                "transitions_listed",
                f"{len(options)} transition(s) out of {opp.stage}; ready: {', '.join(ready) or 'none'}",
                data={"ready": ready},
            ),
        ),
        errors=tuple(_dedupe(errors)),
        trace=tb.build() if tb is not None else None,
        policy_digest=digest,
    )


def _dedupe(items: Iterable[RuleIssue]) -> list[RuleIssue]:
    seen: dict[RuleIssue, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)


# =============================================================================================
# CLI request kinds
# =============================================================================================


def _request_text(request: Mapping[str, Any], key: str, *, optional: bool = False) -> Any:
    value = request.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise RecordError("request", key, "expected text" + ("" if optional else " (required)"))
    return value


def _decide_transition_request(
    policy: Any, request: Mapping[str, Any], now: datetime, explain: bool
) -> Decision[StageVerdict]:
    """The ``transition`` request kind: ``{opportunity, actor, to_stage, channel, reason?}``."""
    return check_transition(
        policy,
        _request_record(request, "opportunity"),
        to_stage=_request_text(request, "to_stage"),
        actor=_request_record(request, "actor"),
        channel=request.get("channel", "api"),
        now=now,
        reason=_request_text(request, "reason", optional=True),
        request_id=_request_text(request, "request_id", optional=True),
        explain=explain,
    )


def _decide_available_request(
    policy: Any, request: Mapping[str, Any], now: datetime, explain: bool
) -> Decision[AvailableTransitions]:
    """The ``available_transitions`` request kind: ``{opportunity, actor, channel}``."""
    return available_transitions(
        policy,
        _request_record(request, "opportunity"),
        actor=_request_record(request, "actor"),
        channel=request.get("channel", "api"),
        now=now,
        explain=explain,
    )


def _request_record(request: Mapping[str, Any], key: str) -> Any:
    value = request.get(key)
    if not isinstance(value, Mapping):
        raise RecordError("request", key, "expected an object")
    # JSON has no datetimes: approvals' `at` arrive as text and are parsed by the slow path.
    return value


SECTION = SectionSpec(
    name="stages",
    model=StagesSection,
    compile=_compile,
    kinds=MappingProxyType(
        {"transition": _decide_transition_request, "available_transitions": _decide_available_request}
    ),
    after=("calendar",),
    description="the blueprint: stages, transitions, evidence, bypass",
)
