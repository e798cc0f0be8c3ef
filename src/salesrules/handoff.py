"""Delivery handoff: an approved contract becomes a project; project status flows back.

Two pure decisions, both threading a per-contract :class:`~salesrules.records.HandoffState`
that the host persists (``Decision.state``) and passes back on the next call:

* :func:`on_contract_event` — a contract was ``approved``, ``verified`` (e.g. "verify – normal
  project"), had its approval ``revoked``, or was ``amended``. At approval the delivery team
  chosen by the policy's rules is notified (before the project exists); at verification a
  ``create_project`` effect carries the template, the project lead and the fields mapped from
  contract / opportunity / customer; at revocation the project is cancelled or flagged, never
  orphaned; an amendment updates the project (or re-notifies the team).
* :func:`on_project_status` — a status snapshot from the project tool (status, percent
  complete, milestones, version or timestamp) becomes ``update_field`` effects on the CRM and,
  e.g. at completion, a cross-sell task for the sales owner.

Ordering and duplicates. Contract events are ordered by ``(version, rank)`` where ``version``
is the contract revision and the rank orders the events of one revision: ``amended`` (0) <
``approved`` (1) < ``verified`` (2) < ``revoked`` (3). An event whose key equals the last
applied one (or whose id is the last applied id) is a **duplicate**; one with a smaller key is
**stale**. Both are ``ignored`` decisions with a reason and *no* effects, and the state is
returned unchanged. Status events are ordered by ``version`` when both the event and the last
applied status have one, otherwise by ``at``; equal is a duplicate, older is stale. Every effect
carries an idempotency key derived from the contract and the event's revision, so a host that
crashed between applying effects and saving the state gets the same keys when it re-decides.

The section ``handoff`` of a rule file is documented in ``docs/handoff.md`` with every issue
code (errors SR260–SR269, warnings SR350–SR359) and reason code.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator
from pydantic_core import PydanticCustomError

from salesrules import _serde
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
)
from salesrules.errors import RecordError
from salesrules.records import (
    Contract,
    ContractEvent,
    HandoffProject,
    HandoffState,
    HandoffStatus,
    ProjectStatusEvent,
    Record,
    as_mapping,
    coerce,
    require_aware,
)

if TYPE_CHECKING:
    from salesrules.calendar import Duration
    from salesrules.conditions import Condition, RuleTable

__all__ = [
    "CODES",
    "REASONS",
    "SECTION",
    "FieldUpdate",
    "HandoffOutcome",
    "HandoffPolicy",
    "HandoffSection",
    "StatusOutcome",
    "TemplateSyntaxError",
    "decide_many",
    "on_contract_event",
    "on_project_status",
    "parse_template",
    "render_template",
    "with_project_id",
]

#: Issue codes of the ``handoff`` section and their one-line meaning.
CODES: Mapping[str, str] = MappingProxyType(
    {
        "SR260": "a mapped source field (or a field a rule reads) is not declared in `sources`",
        "SR261": "a field mapping must have exactly one of field / first / template / value / collect",
        "SR262": "invalid template pattern (unbalanced braces or a placeholder that is not a path)",
        "SR263": "a target field is not declared (project_fields / crm_fields) or has a bad root",
        "SR264": "unknown project status (not in `statuses`)",
        "SR265": "unknown delivery team",
        "SR266": "unknown project template",
        "SR267": "unknown project lead (not `team_lead`, nor a lead or member of a declared team)",
        "SR268": "a status, milestone or verification value is mapped twice",
        "SR269": "invalid task recipient (use `sales_owner` or `rep:<id>`)",
        "SR350": "a declared status has no entry in status_map (its events write only defaults)",
        "SR351": "a declared delivery team is never chosen by any rule or default",
        "SR352": "a declared project template is never chosen by any rule or default",
        "SR353": "a rule after a catch-all rule (no `when`) can never match",
        "SR354": "no default team/template: a contract no rule matches gets none",
        "SR355": "a declared project field is never mapped",
        "SR356": "a CRM field is set by no status or milestone (it always keeps its default)",
    }
)

#: Reason codes of handoff decisions and their meaning.
REASONS: Mapping[str, str] = MappingProxyType(
    {
        "team_notified": "the delivery team was told about the contract so it can prepare",
        "no_team_matched": "no team rule matched and the policy has no default team",
        "project_created": "a create_project effect was issued",
        "project_exists": "a live project already exists for this contract; nothing new created",
        "project_updated": "the project's mapped fields were re-sent after an amendment",
        "project_resumed": "a flagged project was un-flagged (approval restored / verified again)",
        "project_cancelled": "the project was cancelled (approval revoked before work started)",
        "project_flagged": "the project was flagged for a human (approval revoked after work began)",
        "team_stood_down": "the delivery team was told the approval was revoked",
        "nothing_to_revoke": "approval revoked before anyone was told; nothing to undo",
        "not_a_project": "the verification result does not create a project",
        "unknown_verification": "the verification result is not declared in the policy",
        "missing_required_field": "a required project field could not be mapped; nothing created",
        "no_template_matched": "no template rule matched and no default; nothing created",
        "no_project_lead": "no project lead could be chosen; the project tool's PMO assigns one",
        "recorded": "the event was recorded; nothing to do in this phase",
        "duplicate_event": "the event was already applied (same id or same ordering key)",
        "stale_event": "the event is older than the last applied one",
        "status_applied": "the project status was mapped to CRM updates",
        "unknown_status": "the status is not declared in the policy; reported, not guessed",
        "unknown_project": "no project was requested for this contract",
        "project_mismatch": "the status is about another (or a cancelled) project than the current one",
        "unknown_milestone": "a reported milestone has no mapping (ignored)",
        "no_task_recipient": "a task's recipient (the sales owner) is unknown",
    }
)

_CONTRACT_ROOTS = frozenset({"contract", "opportunity", "customer"})
_STATUS_ROOTS = frozenset({"event", "project"})
_CRM_ROOTS = ("opportunity", "contract", "customer")
#: Fields the status-side mappings may read (``event.*`` and ``project.*``).
_STATUS_FIELDS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "event": frozenset(
            {"id", "status", "percent_complete", "project_id", "at", "version", "contract_id"}
        ),
        "project": frozenset(
            {
                "id",
                "name",
                "template",
                "lead_id",
                "team",
                "sales_owner_id",
                "contract_id",
                "opportunity_id",
                "customer_id",
            }
        ),
    }
)
_RANK: Mapping[str, int] = MappingProxyType(
    {"amended": 0, "approved": 1, "verified": 2, "revoked": 3}
)
_TEAM_LEAD = "team_lead"
_DEFAULT_MESSAGES: Mapping[str, str] = MappingProxyType(
    {
        "approved": "Contract {contract.id} approved: prepare delivery",
        "verified": "Contract {contract.id} verified: a project is being created",
        "amended": "Contract {contract.id} amended: review the delivery plan",
        "revoked": "Contract {contract.id}: approval revoked, stand down",
    }
)

# --------------------------------------------------------------------------------------------
# rule-file model
# --------------------------------------------------------------------------------------------

Scalar = str | bool | int | float | None


def _wrap_scalar(value: Any) -> Any:
    """Let a plain scalar stand for ``{value: scalar}`` in ``set`` maps."""
    if value is None or isinstance(value, str | bool | int | float):
        return {"value": value}
    return value


class FieldSpec(SectionModel):
    """Where one value comes from: exactly one of ``field``, ``first``, ``template``, ``value``,
    ``collect``.

    * ``field: customer.name`` — one dotted path;
    * ``first: [contract.region, customer.region]`` — the first path that has a value;
    * ``template: "{customer.name}-{contract.number}"`` — text with ``{path}`` placeholders
      (``{{`` and ``}}`` for literal braces); missing if any placeholder is missing;
    * ``value: 100`` — a literal;
    * ``collect: [opportunity.owner_id, opportunity.collaborator_ids]`` — a list of the values
      (lists flattened, missing skipped, duplicates dropped, order kept).

    ``required: true`` makes a missing value block the project creation.
    """

    field: str | None = None
    first: tuple[str, ...] | None = None
    template: str | None = None
    value: Scalar = None
    collect: tuple[str, ...] | None = None
    required: bool = False

    @model_serializer(mode="wrap")
    def _keep_null_value(self, handler: SerializerFunctionWrapHandler) -> Any:
        # `value: null` (clear a field) must survive `exclude_none` dumps (Policy.dump)
        data = handler(self)
        if isinstance(data, dict) and "value" in self.model_fields_set and "value" not in data:
            data["value"] = None
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> FieldSpec:
        given = [
            k
            for k in ("field", "first", "template", "value", "collect")
            if k in self.model_fields_set
        ]
        if len(given) != 1:
            raise PydanticCustomError(
                "SR261",
                "a field mapping needs exactly one of field / first / template / value / collect"
                + (f" (got {', '.join(given)})" if given else ""),
            )
        return self


class Team(SectionModel):
    """A delivery team: id, display name, its default project lead and members."""

    id: str
    name: str = ""
    lead: str | None = None
    members: tuple[str, ...] = ()


class Template(SectionModel):
    """A project template in the project tool."""

    id: str
    name: str = ""


class TeamRule(SectionModel):
    """Choose a delivery team when ``when`` matches (no ``when``: always)."""

    id: str
    description: str = ""
    when: Any = None
    team: str


class TemplateRule(SectionModel):
    """Choose a project template when ``when`` matches (no ``when``: always)."""

    id: str
    description: str = ""
    when: Any = None
    template: str


class LeadRule(SectionModel):
    """Choose a project lead (a person id, or ``team_lead``) when ``when`` matches."""

    id: str
    description: str = ""
    when: Any = None
    lead: str


class TeamChoice(SectionModel):
    """First-match rules choosing the delivery team, and the default."""

    rules: tuple[TeamRule, ...] = ()
    default: str | None = None


class TemplateChoice(SectionModel):
    """First-match rules choosing the project template, and the default."""

    rules: tuple[TemplateRule, ...] = ()
    default: str | None = None


class LeadChoice(SectionModel):
    """First-match rules choosing the project lead; the default is the team's lead."""

    rules: tuple[LeadRule, ...] = ()
    default: str = _TEAM_LEAD


class Sources(SectionModel):
    """The record fields the mapping and the rules may read (dotted sub-paths; ``id`` always)."""

    contract: tuple[str, ...] = ()
    opportunity: tuple[str, ...] = ()
    customer: tuple[str, ...] = ()


class Verification(SectionModel):
    """Which verification results of a ``verified`` event create a project."""

    create_project: tuple[str, ...] = ("normal_project",)
    no_project: tuple[str, ...] = ()


class Stakeholders(SectionModel):
    """Who on the sales side is a stakeholder of the project."""

    sales_owner: FieldSpec
    collaborators: FieldSpec | None = None


class Revocation(SectionModel):
    """What a revoked approval does to an existing project.

    ``cancel_when``: statuses (last reported) in which the project is cancelled;
    ``no_status``: what to do when the project tool has reported nothing yet;
    ``otherwise``: what to do in any other status (``flag`` = keep it, ask a human).
    """

    cancel_when: tuple[str, ...] = ()
    no_status: Literal["cancel", "flag"]
    otherwise: Literal["cancel", "flag"]


class CrmField(SectionModel):
    """A CRM field the status mapping may write, with the value it has when no rule sets it."""

    default: Scalar = None


class TaskSpec(SectionModel):
    """A task to create when a status is applied (e.g. a cross-sell follow-up)."""

    id: str
    to: str = "sales_owner"
    title: str
    due: str | None = None


class StatusRule(SectionModel):
    """The CRM updates (and tasks) for one project status."""

    status: str
    set: dict[str, FieldSpec] = Field(default_factory=dict)
    tasks: tuple[TaskSpec, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _wrap(cls, data: Any) -> Any:
        return _wrap_set(data)


class MilestoneRule(SectionModel):
    """The CRM updates made while a milestone is reported done."""

    milestone: str
    set: dict[str, FieldSpec] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _wrap(cls, data: Any) -> Any:
        return _wrap_set(data)


def _wrap_set(data: Any) -> Any:
    if isinstance(data, dict) and isinstance(data.get("set"), dict):
        data = dict(data)
        data["set"] = {k: _wrap_scalar(v) for k, v in data["set"].items()}
    return data


class HandoffSection(SectionModel):
    """The ``handoff`` section: teams, templates, rules, the field mapping, the status mapping."""

    sources: Sources = Sources()
    teams: tuple[Team, ...] = ()
    templates: tuple[Template, ...] = ()
    verification: Verification = Verification()
    delivery_team: TeamChoice = TeamChoice()
    template: TemplateChoice = TemplateChoice()
    project_lead: LeadChoice = LeadChoice()
    project_fields: tuple[str, ...] = ()
    mapping: dict[str, FieldSpec] = Field(default_factory=dict)
    stakeholders: Stakeholders | None = None
    messages: dict[Literal["approved", "verified", "amended", "revoked"], str] = Field(
        default_factory=dict
    )
    revocation: Revocation
    statuses: tuple[str, ...] = ()
    crm_fields: dict[str, CrmField] = Field(default_factory=dict)
    status_map: tuple[StatusRule, ...] = ()
    milestones: tuple[MilestoneRule, ...] = ()


# --------------------------------------------------------------------------------------------
# templates and value sources (compiled)
# --------------------------------------------------------------------------------------------

_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)+$")

#: A parsed template: literal text (``False``) and dotted paths (``True``), in order.
TemplateParts = tuple[tuple[bool, str], ...]


class TemplateSyntaxError(ValueError):
    """A template pattern is malformed."""


def parse_template(text: str) -> TemplateParts:
    """Parse ``"{customer.name}-{contract.number}"`` into literal and path parts.

    Args:
        text: the pattern; ``{{`` and ``}}`` stand for literal braces.

    Returns:
        The parts, literal text as ``(False, text)`` and placeholders as ``(True, path)``.

    Raises:
        TemplateSyntaxError: an unbalanced brace or a placeholder that is not a dotted path.
    """
    parts: list[tuple[bool, str]] = []
    buf: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "{}" and text[i : i + 2] in ("{{", "}}"):
            buf.append(ch)
            i += 2
            continue
        if ch == "}":
            raise TemplateSyntaxError(f"unmatched '}}' at position {i}")
        if ch == "{":
            end = text.find("}", i + 1)
            if end < 0:
                raise TemplateSyntaxError(f"unclosed '{{' at position {i}")
            path = text[i + 1 : end].strip()
            if not _PATH.match(path):
                raise TemplateSyntaxError(
                    f"placeholder {{{path}}} is not a dotted field path such as customer.name"
                )
            if buf:
                parts.append((False, "".join(buf)))
                buf = []
            parts.append((True, path))
            i = end + 1
            continue
        buf.append(ch)
        i += 1
    if buf:
        parts.append((False, "".join(buf)))
    return tuple(parts)


def _lookup(ctx: Mapping[str, Any], path: str) -> Any:
    node: Any = ctx
    for part in path.split("."):
        if isinstance(node, Mapping):
            node = node.get(part)
        else:
            return None
        if node is None:
            return None
    return node


def _text(value: Any) -> str | None:
    """Render a value into template text; ``None`` when it cannot be (missing or a container)."""
    if value is None or isinstance(value, Mapping | list | tuple | set | frozenset):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def render_template(
    parts: TemplateParts | str, ctx: Mapping[str, Any]
) -> tuple[str | None, tuple[str, ...]]:
    """Render a template against records by substituting dotted paths (no ``str.format``).

    Args:
        parts: a parsed template or its text.
        ctx: root name -> record mapping.

    Returns:
        ``(text, missing)``: the text, or ``None`` when a placeholder is missing or not a
        scalar, and the paths that were missing.

    Raises:
        TemplateSyntaxError: the text is malformed (only when ``parts`` is text).
    """
    if isinstance(parts, str):
        parts = parse_template(parts)
    out: list[str] = []
    missing: list[str] = []
    for is_path, chunk in parts:
        if not is_path:
            out.append(chunk)
            continue
        text = _text(_lookup(ctx, chunk))
        if text is None:
            missing.append(chunk)
        else:
            out.append(text)
    if missing:
        return None, tuple(missing)
    return "".join(out), ()


@dataclass(frozen=True, slots=True)
class _Source:
    """A compiled :class:`FieldSpec`."""

    kind: str
    paths: tuple[str, ...] = ()
    parts: TemplateParts = ()
    value: Any = None
    required: bool = False

    def resolve(self, ctx: Mapping[str, Any]) -> tuple[Any, tuple[str, ...]]:
        """Return ``(value or None, missing paths)``."""
        if self.kind == "value":
            return self.value, ()
        if self.kind == "field":
            v = _lookup(ctx, self.paths[0])
            return (v, ()) if v is not None else (None, self.paths)
        if self.kind == "first":
            for p in self.paths:
                v = _lookup(ctx, p)
                if v is not None:
                    return v, ()
            return None, self.paths
        if self.kind == "template":
            return render_template(self.parts, ctx)
        items: list[Any] = []
        for p in self.paths:
            v = _lookup(ctx, p)
            seq = v if isinstance(v, list | tuple) else () if v is None else (v,)
            for item in seq:
                if item is not None and item not in items:
                    items.append(item)
        return tuple(items), ()


@dataclass(frozen=True, slots=True)
class _Choice:
    value: str
    ref: RuleRef


@dataclass(frozen=True, slots=True)
class _Task:
    id: str
    to: str
    title: _Source
    due: Duration | None


@dataclass(frozen=True, slots=True)
class _StatusMap:
    status: str
    sets: tuple[tuple[str, _Source], ...]
    tasks: tuple[_Task, ...]
    ref: RuleRef


@dataclass(frozen=True, slots=True)
class HandoffPolicy:
    """The compiled ``handoff`` section (immutable)."""

    teams: Mapping[str, Team]
    templates: Mapping[str, Template]
    team_rules: RuleTable[_Choice]
    team_default: _Choice | None
    template_rules: RuleTable[_Choice]
    template_default: _Choice | None
    lead_rules: RuleTable[_Choice]
    lead_default: _Choice
    create_for: frozenset[str]
    no_project_for: frozenset[str]
    mapping: tuple[tuple[str, _Source], ...]
    sales_owner: _Source | None
    collaborators: _Source | None
    messages: Mapping[str, _Source]
    cancel_when: frozenset[str]
    no_status: str
    otherwise: str
    statuses: frozenset[str]
    crm_defaults: tuple[tuple[str, Any], ...]
    status_map: Mapping[str, _StatusMap]
    milestones: Mapping[str, tuple[tuple[str, _Source], ...]]
    calendar: Any = field(default=None, compare=False)


# --------------------------------------------------------------------------------------------
# compile
# --------------------------------------------------------------------------------------------


class _Compiler:
    def __init__(self, model: HandoffSection, ctx: CompileContext) -> None:
        self.m = model
        self.ctx = ctx
        declared: dict[str, set[str]] = {
            root: {"id", *getattr(model.sources, root)} for root in _CONTRACT_ROOTS
        }
        self.declared = declared

    # -- field checks ----------------------------------------------------------------------
    def check_path(
        self, path: str, at: tuple[Any, ...], roots: frozenset[str], rule_id: str | None = None
    ) -> None:
        root, _, rest = path.partition(".")
        if root not in roots or not rest:
            self.ctx.error(
                "SR260",
                f"'{path}' does not start with one of: {', '.join(sorted(roots))}",
                at,
                rule_id=rule_id,
                hint=did_you_mean(root, roots),
            )
            return
        if roots is _STATUS_ROOTS:
            known: set[str] | frozenset[str] = _STATUS_FIELDS[root]
        else:
            known = self.declared[root]
        segs = rest.split(".")
        if any(".".join(segs[:k]) in known for k in range(1, len(segs) + 1)):
            return
        self.ctx.error(
            "SR260",
            f"field '{path}' is not declared in sources.{root}"
            if roots is not _STATUS_ROOTS
            else f"field '{path}' is not a {root} field",
            at,
            rule_id=rule_id,
            hint=did_you_mean(rest, known) or f"declared: {', '.join(sorted(known))}",
        )

    def source(
        self,
        spec: FieldSpec,
        at: tuple[Any, ...],
        roots: frozenset[str],
        rule_id: str | None = None,
    ) -> _Source:
        kind = next(
            k
            for k in ("field", "first", "template", "value", "collect")
            if k in spec.model_fields_set
        )
        if kind == "value":
            return _Source("value", value=spec.value, required=spec.required)
        if kind == "template":
            text = spec.template or ""
            try:
                parts = parse_template(text)
            except TemplateSyntaxError as exc:
                self.ctx.error("SR262", str(exc), (*at, "template"), rule_id=rule_id)
                return _Source("template", parts=((False, text),), required=spec.required)
            for is_path, chunk in parts:
                if is_path:
                    self.check_path(chunk, (*at, "template"), roots, rule_id)
            return _Source("template", parts=parts, required=spec.required)
        if kind == "field":
            paths: tuple[str, ...] = (spec.field or "",)
            for p in paths:
                self.check_path(p, (*at, "field"), roots, rule_id)
        else:
            paths = (spec.first if kind == "first" else spec.collect) or ()
            for i, p in enumerate(paths):
                self.check_path(p, (*at, kind, i), roots, rule_id)
        return _Source(kind, paths=paths, required=spec.required)

    def text_template(
        self, text: str, at: tuple[Any, ...], roots: frozenset[str], rule_id: str | None = None
    ) -> _Source:
        try:
            parts = parse_template(text)
        except TemplateSyntaxError as exc:
            self.ctx.error("SR262", str(exc), at, rule_id=rule_id)
            return _Source("template", parts=((False, text),))
        for is_path, chunk in parts:
            if is_path:
                self.check_path(chunk, at, roots, rule_id)
        return _Source("template", parts=parts)

    def condition(self, when: Any, at: tuple[Any, ...], rule_id: str) -> Condition:
        from salesrules.conditions import TRUE

        if when is None:
            return TRUE
        cond = self.ctx.condition(when, at, roots=_CONTRACT_ROOTS, rule_id=rule_id)
        for f in sorted(cond.fields):
            self.check_path(f, at, _CONTRACT_ROOTS, rule_id)
        return cond

    # -- rule tables -----------------------------------------------------------------------
    def table(
        self,
        rules: Sequence[TeamRule | TemplateRule | LeadRule],
        key: str,
        attr: str,
        check: Callable[[str, tuple[Any, ...], str | None], None],
    ) -> RuleTable[_Choice]:
        from salesrules.conditions import RuleTable

        rows: list[tuple[Condition, _Choice]] = []
        self.ctx.check_unique_ids(
            ((r.id, ("handoff", key, "rules", i)) for i, r in enumerate(rules)), "rule"
        )
        catch_all: str | None = None
        for i, r in enumerate(rules):
            at = ("handoff", key, "rules", i)
            if catch_all is not None:
                self.ctx.warn(
                    "SR353",
                    f"rule '{r.id}' comes after the catch-all rule '{catch_all}' and can never match",
                    at,
                    rule_id=r.id,
                    hint="move it before the catch-all, or give the catch-all a `when`",
                )
            cond = self.condition(r.when, (*at, "when"), r.id)
            if r.when is None and catch_all is None:
                catch_all = r.id
            value = getattr(r, attr)
            check(value, (*at, attr), r.id)
            rows.append((cond, _Choice(value, self.ctx.rule_ref(r.id, at))))
        return RuleTable(rows)


def _compile(model: HandoffSection, ctx: CompileContext) -> HandoffPolicy:
    c = _Compiler(model, ctx)
    teams = {t.id: t for t in model.teams}
    templates = {t.id: t for t in model.templates}
    ctx.check_unique_ids(
        ((t.id, ("handoff", "teams", i)) for i, t in enumerate(model.teams)), "team"
    )
    ctx.check_unique_ids(
        ((t.id, ("handoff", "templates", i)) for i, t in enumerate(model.templates)), "template"
    )
    people = {p for t in model.teams for p in (t.lead, *t.members) if p}

    def check_team(value: str, at: tuple[Any, ...], rule_id: str | None) -> None:
        if value not in teams:
            ctx.error(
                "SR265",
                f"unknown delivery team '{value}'",
                at,
                rule_id=rule_id,
                hint=did_you_mean(value, teams) or f"declared teams: {', '.join(teams) or 'none'}",
            )

    def check_template(value: str, at: tuple[Any, ...], rule_id: str | None) -> None:
        if value not in templates:
            ctx.error(
                "SR266",
                f"unknown project template '{value}'",
                at,
                rule_id=rule_id,
                hint=did_you_mean(value, templates)
                or f"declared templates: {', '.join(templates) or 'none'}",
            )

    def check_lead(value: str, at: tuple[Any, ...], rule_id: str | None) -> None:
        if value != _TEAM_LEAD and value not in people:
            ctx.error(
                "SR267",
                f"unknown project lead '{value}'",
                at,
                rule_id=rule_id,
                hint=did_you_mean(value, [_TEAM_LEAD, *sorted(people)])
                or "use `team_lead` or a lead/member of a declared team",
            )

    def default(
        value: str | None, key: str, check: Callable[[str, tuple[Any, ...], str | None], None]
    ) -> _Choice | None:
        if value is None:
            return None
        at = ("handoff", key, "default")
        check(value, at, None)
        return _Choice(value, ctx.rule_ref("default", at))

    team_rules = c.table(model.delivery_team.rules, "delivery_team", "team", check_team)
    template_rules = c.table(model.template.rules, "template", "template", check_template)
    lead_rules = c.table(model.project_lead.rules, "project_lead", "lead", check_lead)
    team_default = default(model.delivery_team.default, "delivery_team", check_team)
    template_default = default(model.template.default, "template", check_template)
    lead_default = default(model.project_lead.default, "project_lead", check_lead)
    if team_default is None:
        ctx.warn(
            "SR354",
            "no default delivery team: a contract no rule matches notifies nobody",
            ("handoff", "delivery_team"),
            hint="add `default: <team id>`",
        )
    if template_default is None:
        ctx.warn(
            "SR354",
            "no default template: a contract no rule matches gets no project",
            ("handoff", "template"),
            hint="add `default: <template id>`",
        )
    used_teams = {r.team for r in model.delivery_team.rules} | {model.delivery_team.default}
    for i, t in enumerate(model.teams):
        if t.id not in used_teams:
            ctx.warn(
                "SR351", f"delivery team '{t.id}' is never chosen", ("handoff", "teams", i, "id")
            )
    used_templates = {r.template for r in model.template.rules} | {model.template.default}
    for i, tp in enumerate(model.templates):
        if tp.id not in used_templates:
            ctx.warn(
                "SR352", f"template '{tp.id}' is never chosen", ("handoff", "templates", i, "id")
            )

    # verification
    create_for = frozenset(model.verification.create_project)
    no_project_for = frozenset(model.verification.no_project)
    for i, v in enumerate(model.verification.no_project):
        if v in create_for:
            ctx.error(
                "SR268",
                f"verification '{v}' is in both create_project and no_project",
                ("handoff", "verification", "no_project", i),
            )

    # project mapping
    targets = set(model.project_fields)
    mapping: list[tuple[str, _Source]] = []
    at: tuple[Any, ...]
    for name, spec in model.mapping.items():
        at = ("handoff", "mapping", name)
        if name not in targets:
            ctx.error(
                "SR263",
                f"project field '{name}' is not declared in project_fields",
                at,
                key=True,
                hint=did_you_mean(name, targets),
            )
        mapping.append((name, c.source(spec, at, _CONTRACT_ROOTS)))
    for i, name in enumerate(model.project_fields):
        if name not in model.mapping:
            ctx.warn(
                "SR355", f"project field '{name}' is never mapped", ("handoff", "project_fields", i)
            )
    sales_owner = collaborators = None
    if model.stakeholders is not None:
        sales_owner = c.source(
            model.stakeholders.sales_owner,
            ("handoff", "stakeholders", "sales_owner"),
            _CONTRACT_ROOTS,
        )
        if model.stakeholders.collaborators is not None:
            collaborators = c.source(
                model.stakeholders.collaborators,
                ("handoff", "stakeholders", "collaborators"),
                _CONTRACT_ROOTS,
            )
    custom: dict[str, str] = {str(k): v for k, v in model.messages.items()}
    messages = {
        event: c.text_template(
            custom.get(event, text),
            ("handoff", "messages", event) if event in model.messages else ("handoff",),
            _CONTRACT_ROOTS,
        )
        for event, text in _DEFAULT_MESSAGES.items()
    }

    # statuses
    statuses = frozenset(model.statuses)

    def check_status(value: str, at: tuple[Any, ...]) -> None:
        if value not in statuses:
            ctx.error(
                "SR264",
                f"unknown project status '{value}'",
                at,
                hint=did_you_mean(value, statuses)
                or f"declared statuses: {', '.join(model.statuses) or 'none'}",
            )

    for i, s in enumerate(model.revocation.cancel_when):
        check_status(s, ("handoff", "revocation", "cancel_when", i))
    crm_defaults: list[tuple[str, Any]] = []
    for name, spec_f in model.crm_fields.items():
        root, _, rest = name.partition(".")
        if root not in _CRM_ROOTS or not rest:
            ctx.error(
                "SR263",
                f"CRM field '{name}' must be written as <record>.<field>, record one of "
                f"{', '.join(_CRM_ROOTS)}",
                ("handoff", "crm_fields", name),
                key=True,
            )
        crm_defaults.append((name, _serde.to_jsonable(spec_f.default)))
    crm_defaults.sort()
    crm_names = set(model.crm_fields)
    written: set[str] = set()

    def sets(
        raw: Mapping[str, FieldSpec], at: tuple[Any, ...], rule_id: str | None
    ) -> tuple[tuple[str, _Source], ...]:
        out: list[tuple[str, _Source]] = []
        for target, spec in raw.items():
            if target not in crm_names:
                ctx.error(
                    "SR263",
                    f"CRM field '{target}' is not declared in crm_fields",
                    (*at, target),
                    key=True,
                    rule_id=rule_id,
                    hint=did_you_mean(target, crm_names),
                )
            written.add(target)
            out.append((target, c.source(spec, (*at, target), _STATUS_ROOTS, rule_id)))
        return tuple(sorted(out, key=lambda kv: kv[0]))

    status_map: dict[str, _StatusMap] = {}
    for i, rule in enumerate(model.status_map):
        at = ("handoff", "status_map", i)
        check_status(rule.status, (*at, "status"))
        if rule.status in status_map:
            ctx.error(
                "SR268",
                f"status '{rule.status}' is mapped twice",
                (*at, "status"),
                rule_id=rule.status,
            )
        ctx.check_unique_ids(((t.id, (*at, "tasks", j)) for j, t in enumerate(rule.tasks)), "task")
        tasks: list[_Task] = []
        for j, task in enumerate(rule.tasks):
            tat = (*at, "tasks", j)
            if task.to != "sales_owner" and not (task.to.startswith("rep:") and len(task.to) > 4):
                ctx.error(
                    "SR269",
                    f"task recipient '{task.to}' is not `sales_owner` or `rep:<id>`",
                    (*tat, "to"),
                    rule_id=task.id,
                )
            due = (
                ctx.duration(task.due, (*tat, "due"), rule_id=task.id)
                if task.due is not None
                else None
            )
            tasks.append(
                _Task(
                    task.id,
                    task.to,
                    c.text_template(task.title, (*tat, "title"), _STATUS_ROOTS, task.id),
                    due,
                )
            )
        status_map.setdefault(
            rule.status,
            _StatusMap(
                rule.status,
                sets(rule.set, (*at, "set"), rule.status),
                tuple(tasks),
                ctx.rule_ref(rule.status, at),
            ),
        )
    for i, s in enumerate(model.statuses):
        if s not in status_map:
            ctx.warn(
                "SR350",
                f"status '{s}' has no entry in status_map: its events write only defaults",
                ("handoff", "statuses", i),
            )
    milestones: dict[str, tuple[tuple[str, _Source], ...]] = {}
    for i, ms in enumerate(model.milestones):
        at = ("handoff", "milestones", i)
        if ms.milestone in milestones:
            ctx.error("SR268", f"milestone '{ms.milestone}' is mapped twice", (*at, "milestone"))
        milestones.setdefault(ms.milestone, sets(ms.set, (*at, "set"), ms.milestone))
    for name in model.crm_fields:
        if name not in written:
            ctx.warn(
                "SR356",
                f"CRM field '{name}' is set by no status or milestone",
                ("handoff", "crm_fields", name),
                key=True,
            )

    return HandoffPolicy(
        teams=MappingProxyType(teams),
        templates=MappingProxyType(templates),
        team_rules=team_rules,
        team_default=team_default,
        template_rules=template_rules,
        template_default=template_default,
        lead_rules=lead_rules,
        lead_default=lead_default or _Choice(_TEAM_LEAD, RuleRef("default")),
        create_for=create_for,
        no_project_for=no_project_for,
        mapping=tuple(mapping),
        sales_owner=sales_owner,
        collaborators=collaborators,
        messages=MappingProxyType(messages),
        cancel_when=frozenset(model.revocation.cancel_when),
        no_status=model.revocation.no_status,
        otherwise=model.revocation.otherwise,
        statuses=statuses,
        crm_defaults=tuple(crm_defaults),
        status_map=MappingProxyType(status_map),
        milestones=MappingProxyType(milestones),
        calendar=ctx.calendar,
    )


# --------------------------------------------------------------------------------------------
# outcomes
# --------------------------------------------------------------------------------------------

HandoffAction = Literal[
    "notified",
    "project_created",
    "project_exists",
    "project_updated",
    "project_resumed",
    "project_cancelled",
    "project_flagged",
    "stood_down",
    "not_a_project",
    "recorded",
    "blocked",
    "ignored",
]


@dataclass(frozen=True, slots=True)
class HandoffOutcome:
    """What a contract event led to.

    Attributes:
        contract_id: the contract.
        event_id: the event decided.
        event: ``approved``, ``verified``, ``revoked`` or ``amended``.
        action: what was decided (``notified``, ``project_created``, ``ignored`` …).
        applied: whether the event changed the handoff state (``False`` for ignored, blocked).
        team: the delivery team chosen (or remembered), if any.
        template: the project template chosen at project creation.
        project_lead: the project lead chosen at project creation.
        project_key: the idempotency key of the contract's current project, if any.
    """

    contract_id: str
    event_id: str
    event: str
    action: HandoffAction
    applied: bool
    team: str | None = None
    template: str | None = None
    project_lead: str | None = None
    project_key: str | None = None

    def summary(self) -> str:
        """One line: ``approved C-1: notified team delivery-east``."""
        text = f"{self.event} {self.contract_id}: {self.action}"
        if self.action == "notified" and self.team:
            text += f" team {self.team}"
        if self.action == "project_created":
            text += f" template {self.template} lead {self.project_lead or '-'}"
        return text


@dataclass(frozen=True, slots=True)
class FieldUpdate:
    """One CRM field written by a status event (``value`` is a JSON value)."""

    target: str
    field: str
    value: Any


@dataclass(frozen=True, slots=True)
class StatusOutcome:
    """What a project status event led to.

    Attributes:
        contract_id: the contract the project belongs to.
        event_id: the event decided.
        status: the reported status.
        action: ``applied``, ``ignored`` or ``unknown_status``.
        applied: whether the status was applied to the CRM.
        project_id: the project's id, when known.
        updates: the CRM fields written (only those whose value changed).
        tasks: the ids of the tasks created.
    """

    contract_id: str
    event_id: str
    status: str
    action: Literal["applied", "ignored", "unknown_status"]
    applied: bool
    project_id: str | None = None
    updates: tuple[FieldUpdate, ...] = ()
    tasks: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line: ``status completed of C-1: applied (3 updates)``."""
        text = f"status {self.status} of {self.contract_id}: {self.action}"
        if self.applied:
            text += f" ({len(self.updates)} updates, {len(self.tasks)} tasks)"
        return text


# --------------------------------------------------------------------------------------------
# deciding
# --------------------------------------------------------------------------------------------


def _handoff(policy: Any) -> HandoffPolicy:
    if isinstance(policy, HandoffPolicy):
        return policy
    compiled: HandoffPolicy = policy.section("handoff")
    return compiled


def _digest(policy: Any) -> str:
    return str(getattr(policy, "digest", ""))


def _state(raw: Any, contract_id: str | None) -> HandoffState | None:
    if raw is None or (isinstance(raw, Mapping) and not raw):
        return None
    state = coerce(HandoffState, raw, "handoff state")
    if contract_id is not None and state.contract_id != contract_id:
        raise RecordError(
            "handoff state",
            "contract_id",
            f"state is for contract {state.contract_id!r}, the event for {contract_id!r}",
        )
    return state


def _state_dict(state: HandoffState | None) -> Mapping[str, Any]:
    if state is None:
        return {}
    data: dict[str, Any] = state.model_dump(mode="json")
    return data


def with_project_id(state: Mapping[str, Any] | HandoffState, project_id: str) -> dict[str, Any]:
    """Record the project tool's id in a handoff state once the host created the project.

    Args:
        state: the state from the decision that issued ``create_project``.
        project_id: the id the project tool returned.

    Returns:
        The new state (JSON-ready) to persist.

    Raises:
        RecordError: the state is invalid or holds no project.
    """
    st = coerce(HandoffState, state, "handoff state")
    if st.project is None:
        raise RecordError("handoff state", "project", "no project was requested for this contract")
    new = st.model_copy(update={"project": st.project.model_copy(update={"id": project_id})})
    data: dict[str, Any] = new.model_dump(mode="json")
    return data


class _Run:
    """Collects reasons, effects, rule issues and trace steps for one decision."""

    def __init__(self, explain: bool) -> None:
        self.reasons: list[Reason] = []
        self.effects: list[Effect] = []
        self.errors: list[RuleIssue] = []
        self.trace: TraceBuilder | None = TraceBuilder() if explain else None

    def reason(self, code: str, message: str, ref: RuleRef | None = None, **data: Any) -> None:
        self.reasons.append(
            Reason(code, message, ref.id if ref else None, ref.location if ref else None, data)
        )
        if self.trace is not None:
            self.trace.add(TraceStatus.NOTE, f"{code}: {message}", ref)

    def effect(self, kind: str, target: str, key: str, **params: Any) -> None:
        self.effects.append(Effect(kind, target, key, params))

    def choose(
        self, table: RuleTable[_Choice], default: _Choice | None, ctx: Mapping[str, Any], what: str
    ) -> _Choice | None:
        if self.trace is None:
            hit, unknown = table.first_with_unknowns(ctx)
            for i in unknown:
                self._issues(table.rows[i][0], table.rows[i][1].ref, ctx)
        else:
            hit = None
            for i, (cond, choice) in enumerate(table.rows):
                ex = cond.explain(ctx)
                if ex.result is True:
                    hit = (i, choice)
                    self.trace.add(
                        TraceStatus.MATCHED, f"{what} {choice.value}: {ex.render()}", choice.ref
                    )
                    break
                status = TraceStatus.ERRORED if ex.result is None else TraceStatus.SKIPPED
                self.trace.add(status, f"{what}: {ex.render()}", choice.ref)
                if ex.result is None:
                    self._issues(cond, choice.ref, ctx)
        if hit is not None:
            return hit[1]
        if default is not None and self.trace is not None:
            self.trace.add(TraceStatus.MATCHED, f"{what} {default.value} (default)", default.ref)
        return default

    def _issues(self, cond: Condition, ref: RuleRef, ctx: Mapping[str, Any]) -> None:
        for code, fld, message in cond.explain(ctx).issues:
            self.errors.append(RuleIssue(code, message, ref.id, ref.location, fld))

    def missing(self, paths: Sequence[str], what: str) -> None:
        for p in paths:
            self.errors.append(
                RuleIssue("missing_field", f"{p} is missing (for {what})", None, None, p)
            )


def _ctx(
    contract: Contract, opportunity: Mapping[str, Any], customer: Mapping[str, Any]
) -> dict[str, Any]:
    return {"contract": as_mapping(contract), "opportunity": opportunity, "customer": customer}


def _record(data: Any, name: str) -> dict[str, Any]:
    if data is None:
        return {}
    return as_mapping(coerce(Record, data, name))


def on_contract_event(
    policy: Any,
    event: ContractEvent | Mapping[str, Any],
    *,
    contract: Contract | Mapping[str, Any],
    opportunity: Any = None,
    customer: Any = None,
    state: HandoffState | Mapping[str, Any] | None = None,
    now: datetime,
    explain: bool = False,
) -> Decision[HandoffOutcome]:
    """Decide what a contract event means for delivery.

    Args:
        policy: a :class:`~salesrules.policy.Policy` with a ``handoff`` section (or the compiled
            :class:`HandoffPolicy`).
        event: the contract event (``approved``, ``verified``, ``revoked``, ``amended``).
        contract: the contract as it is now.
        opportunity: its opportunity (any record with an ``id``; ``None`` when there is none).
        customer: its customer (any record with an ``id``).
        state: the handoff state persisted for this contract (``None``/``{}`` the first time).
        now: the decision time (timezone-aware).
        explain: build a trace.

    Returns:
        A decision whose outcome is a :class:`HandoffOutcome`, whose ``effects`` the host applies
        (each with an idempotency key), and whose ``state`` the host persists.

    Raises:
        RecordError: a record, the state or ``now`` is invalid, or the event is for another
            contract.
    """
    require_aware(now)
    hp = _handoff(policy)
    ev = coerce(ContractEvent, event, "contract_event")
    con = coerce(Contract, contract, "contract")
    if ev.contract_id != con.id:
        raise RecordError(
            f"contract_event {ev.id!r}",
            "contract_id",
            f"the event is for contract {ev.contract_id!r}, the contract given is {con.id!r}",
        )
    opp = _record(opportunity, "opportunity")
    cust = _record(customer, "customer")
    prev = _state(state, con.id)
    return _ContractDecision(hp, _digest(policy), ev, con, opp, cust, prev, explain).decide()


class _ContractDecision:
    """One contract-event decision: the inputs, the collector, and one handler per event type."""

    def __init__(
        self,
        hp: HandoffPolicy,
        digest: str,
        ev: ContractEvent,
        con: Contract,
        opp: dict[str, Any],
        cust: dict[str, Any],
        prev: HandoffState | None,
        explain: bool,
    ) -> None:
        self.hp = hp
        self.digest = digest
        self.ev = ev
        self.cid = con.id
        self.prev = prev
        self.st = prev or HandoffState(contract_id=con.id)
        self.run = _Run(explain)
        self.ctx = _ctx(con, opp, cust)
        self.advanced = self.st.model_copy(
            update={
                "version": ev.version,
                "rank": _RANK[ev.type],
                "last_event": ev.type,
                "last_event_id": ev.id,
                "opportunity_id": self.st.opportunity_id or con.opportunity_id or opp.get("id"),
                "customer_id": self.st.customer_id or con.customer_id or cust.get("id"),
            }
        )
        project = self.st.project
        #: the contract's current project, unless there is none or it was cancelled
        self.project = project if project is not None and project.state != "cancelled" else None
        self.tag = f"contract:{con.id}@v{ev.version}/{ev.type}"

    # -- building blocks ---------------------------------------------------------------------
    def finish(
        self,
        action: HandoffAction,
        new: HandoffState | None,
        *,
        team: str | None = None,
        template: str | None = None,
        lead: str | None = None,
        chosen: bool = False,
    ) -> Decision[HandoffOutcome]:
        """Build the decision; ``new`` is the advanced state (``None``: not applied)."""
        final = new if new is not None else self.prev
        project = final.project if final is not None else None
        outcome = HandoffOutcome(
            contract_id=self.cid,
            event_id=self.ev.id,
            event=self.ev.type,
            action=action,
            applied=new is not None,
            team=team if chosen else (final.team if final else None),
            template=template,
            project_lead=lead,
            project_key=project.key if project and project.state != "cancelled" else None,
        )
        run = self.run
        return Decision(
            kind="contract_event",
            outcome=outcome,
            reasons=tuple(run.reasons),
            effects=tuple(run.effects),
            assumptions=(
                Assumption(
                    f"handoff:{self.cid}:contract_order",
                    [self.st.version, self.st.rank],
                    "the last applied contract event (version, rank) when this was decided",
                ),
            ),
            state=_state_dict(final),
            errors=tuple(run.errors),
            trace=run.trace.build() if run.trace is not None else None,
            policy_digest=self.digest,
        )

    def notify(self, team: str, message: str) -> None:
        """Tell a delivery team, with the policy's message for ``message``."""
        text, missing = self.hp.messages[message].resolve(self.ctx)
        self.run.missing(missing, f"the {message} message")
        self.run.effect(
            "notify",
            f"team:{team}",
            f"notify:team:{team}:{self.tag}",
            message=text if text is not None else f"contract {self.cid}: {message}",
            record=f"contract:{self.cid}",
            template=f"handoff_{message}",
        )

    def choose_team(self) -> _Choice | None:
        """The delivery team the rules choose (``None``, with a reason, when none)."""
        choice = self.run.choose(self.hp.team_rules, self.hp.team_default, self.ctx, "team")
        if choice is None:
            self.run.reason(
                "no_team_matched", "no delivery-team rule matched and there is no default"
            )
        return choice

    def project_effect(self, kind: str, project: HandoffProject, key: str, **params: Any) -> None:
        """An effect on the existing project, always naming it by key and (when known) id."""
        self.run.effect(
            kind,
            f"contract:{self.cid}",
            f"{kind}:contract:{self.cid}:{key}",
            project_key=project.key,
            project_id=project.id,
            **params,
        )

    def with_project(self, project: HandoffProject, **update: Any) -> HandoffState:
        return self.advanced.model_copy(update={**update, "project": project})

    # -- the decision --------------------------------------------------------------------------
    def decide(self) -> Decision[HandoffOutcome]:
        prev, ev, run = self.prev, self.ev, self.run
        if prev is not None:
            last = (prev.version, prev.rank)
            key = (ev.version, _RANK[ev.type])
            if ev.id == prev.last_event_id or key == last:
                run.reason(
                    "duplicate_event",
                    f"event {ev.id} ({ev.type} v{ev.version}) was already applied",
                    last_event_id=prev.last_event_id,
                )
                return self.finish("ignored", None)
            if key < last:
                run.reason(
                    "stale_event",
                    f"{ev.type} v{ev.version} is older than the last applied "
                    f"{prev.last_event} v{prev.version}",
                    last_version=prev.version,
                    last_event=prev.last_event,
                )
                return self.finish("ignored", None)
        handler = {
            "approved": self.approved,
            "verified": self.verified,
            "revoked": self.revoked,
            "amended": self.amended,
        }[ev.type]
        return handler()

    def resume(self, project: HandoffProject, why: str, message: str) -> Decision[HandoffOutcome]:
        """Un-flag a flagged project (never a second project)."""
        self.project_effect(
            "update_project",
            project,
            f"v{self.ev.version}/{self.ev.type}",
            flagged=False,
            reason=why,
        )
        self.run.reason("project_resumed", message)
        live = project.model_copy(update={"state": "live"})
        return self.finish("project_resumed", self.with_project(live, phase="project"))

    def approved(self) -> Decision[HandoffOutcome]:
        project = self.project
        if project is not None:
            if project.state == "flagged":
                return self.resume(
                    project,
                    "approval_restored",
                    "approval restored: the flagged project is un-flagged",
                )
            self.run.reason("project_exists", f"project {project.key} already exists")
            return self.finish("project_exists", self.advanced)
        choice = self.choose_team()
        if choice is None:
            new = self.advanced.model_copy(update={"phase": "notified", "team": None})
            return self.finish("recorded", new)
        self.notify(choice.value, "approved")
        self.run.reason(
            "team_notified",
            f"delivery team {choice.value} told to prepare",
            choice.ref,
            team=choice.value,
        )
        new = self.advanced.model_copy(update={"phase": "notified", "team": choice.value})
        return self.finish("notified", new, team=choice.value, chosen=True)

    def verified(self) -> Decision[HandoffOutcome]:
        hp, st, run, project = self.hp, self.st, self.run, self.project
        verification = self.ev.verification
        if verification in hp.no_project_for:
            run.reason(
                "not_a_project",
                f"verification {verification!r} creates no project",
                verification=verification,
            )
            new = self.advanced.model_copy(update={"phase": "not_a_project"})
            if project is not None:
                self.project_effect(
                    "flag_project", project, f"v{self.ev.version}", reason="not_a_project"
                )
                run.reason(
                    "project_flagged",
                    f"project {project.key} flagged: the contract is not a project",
                )
                flagged = project.model_copy(update={"state": "flagged"})
                new = new.model_copy(update={"project": flagged})
            elif st.phase == "notified" and st.team:
                self.notify(st.team, "revoked")
                run.reason("team_stood_down", f"delivery team {st.team} told there is no project")
            return self.finish("not_a_project", new)
        if verification not in hp.create_for:
            run.reason(
                "unknown_verification",
                f"verification {verification!r} is not declared in the policy",
                verification=verification,
            )
            return self.finish("ignored", None)
        if project is not None:
            if project.state == "flagged":
                return self.resume(
                    project, "verified_again", "verified again: the flagged project is un-flagged"
                )
            run.reason("project_exists", f"project {project.key} already exists; no second project")
            return self.finish(
                "project_exists", self.advanced.model_copy(update={"phase": "project"})
            )
        return self.create()

    def revoked(self) -> Decision[HandoffOutcome]:
        hp, st, run, project = self.hp, self.st, self.run, self.project
        if project is not None:
            last = st.status.status if st.status is not None else None
            if last is None:
                action = hp.no_status
            else:
                action = "cancel" if last in hp.cancel_when else hp.otherwise
            kind = "cancel_project" if action == "cancel" else "flag_project"
            self.project_effect(
                kind, project, f"v{self.ev.version}", reason="approval_revoked", last_status=last
            )
            code: Literal["project_cancelled", "project_flagged"] = (
                "project_cancelled" if action == "cancel" else "project_flagged"
            )
            run.reason(
                code,
                f"approval revoked with project status {last or 'none reported'}: {action}",
                last_status=last,
            )
            if st.team:
                self.notify(st.team, "revoked")
            after = project.model_copy(
                update={"state": "cancelled" if action == "cancel" else "flagged"}
            )
            update: dict[str, Any] = {"phase": "revoked"}
            if action == "cancel" and project.id is not None:
                update["cancelled_project_ids"] = (*st.cancelled_project_ids, project.id)
            return self.finish(code, self.with_project(after, **update))
        revoked = self.advanced.model_copy(update={"phase": "revoked"})
        if st.phase == "notified" and st.team:
            self.notify(st.team, "revoked")
            run.reason(
                "team_stood_down", f"delivery team {st.team} told to stand down", team=st.team
            )
            return self.finish("stood_down", revoked)
        run.reason("nothing_to_revoke", "approval revoked before any team or project was involved")
        return self.finish("recorded", revoked)

    def amended(self) -> Decision[HandoffOutcome]:
        st, run, project, version = self.st, self.run, self.project, self.ev.version
        if project is not None:
            fields, _missing, _blocked = _map_fields(self.hp, self.ctx, run)
            self.project_effect("update_project", project, f"v{version}/amended", fields=fields)
            run.reason("project_updated", f"project {project.key} updated from contract v{version}")
            updated = project.model_copy(update={"version": version})
            return self.finish("project_updated", self.with_project(updated))
        if st.phase == "notified":
            choice = self.choose_team()
            if choice is None:
                return self.finish("recorded", self.advanced.model_copy(update={"team": None}))
            self.notify(choice.value, "amended")
            run.reason(
                "team_notified",
                f"delivery team {choice.value} told about the amendment",
                choice.ref,
                team=choice.value,
            )
            new = self.advanced.model_copy(update={"team": choice.value})
            return self.finish("notified", new, team=choice.value, chosen=True)
        run.reason("recorded", f"amendment v{version} recorded (phase {st.phase})")
        return self.finish("recorded", self.advanced)

    def create(self) -> Decision[HandoffOutcome]:
        """Map the fields, choose template, team and lead, and issue ``create_project``."""
        hp, st, run, ctx, ev = self.hp, self.st, self.run, self.ctx, self.ev
        fields, _missing, blocked = _map_fields(hp, ctx, run)
        template = run.choose(hp.template_rules, hp.template_default, ctx, "template")
        if blocked or template is None:
            if blocked:
                run.reason(
                    "missing_required_field",
                    f"required project field(s) missing: {', '.join(blocked)}",
                    fields=blocked,
                )
            if template is None:
                run.reason(
                    "no_template_matched", "no template rule matched and there is no default"
                )
            return self.finish("blocked", None)
        team = self.choose_team()
        team_id = team.value if team is not None else None
        lead = run.choose(hp.lead_rules, hp.lead_default, ctx, "lead") or hp.lead_default
        if lead.value == _TEAM_LEAD:
            known = hp.teams.get(team_id) if team_id is not None else None
            lead_id = known.lead if known is not None else None
        else:
            lead_id = lead.value
        if lead_id is None:
            run.reason("no_project_lead", "no project lead could be chosen; the PMO assigns one")
        owner, stakeholders = self.stakeholders()
        if team is not None and team.value != st.team:
            # approval is implied when verification arrives first; a changed team is told anew
            self.notify(team.value, "approved" if st.phase != "notified" else "verified")
            run.reason(
                "team_notified",
                f"delivery team {team.value} told to prepare",
                team.ref,
                team=team.value,
            )
        pkey = f"create_project:contract:{self.cid}:v{ev.version}"
        run.effect(
            "create_project",
            f"contract:{self.cid}",
            pkey,
            template=template.value,
            template_name=hp.templates[template.value].name,
            lead_id=lead_id,
            team=team_id,
            fields=fields,
            stakeholders=stakeholders,
            contract_version=ev.version,
            opportunity_id=self.advanced.opportunity_id,
            customer_id=self.advanced.customer_id,
        )
        run.reason(
            "project_created",
            f"project from template {template.value}",
            template.ref,
            template=template.value,
            lead=lead_id,
        )
        project = HandoffProject(
            key=pkey,
            state="live",
            name=_text(fields.get("name")),
            template=template.value,
            lead_id=lead_id,
            version=ev.version,
        )
        new = self.with_project(
            project,
            phase="project",
            team=team_id or st.team,
            sales_owner_id=owner or st.sales_owner_id,
            status=None,
        )
        return self.finish(
            "project_created",
            new,
            team=team_id,
            template=template.value,
            lead=lead_id,
            chosen=True,
        )

    def stakeholders(self) -> tuple[str | None, list[dict[str, str]]]:
        """The sales owner and the de-duplicated stakeholder list (owner first)."""
        hp, run = self.hp, self.run
        out: list[dict[str, str]] = []
        owner: str | None = None
        if hp.sales_owner is not None:
            value, gone = hp.sales_owner.resolve(self.ctx)
            run.missing(gone, "the sales owner")
            owner = _text(value)
            if owner:
                out.append({"rep_id": owner, "role": "sales_owner"})
        if hp.collaborators is not None:
            value, _gone = hp.collaborators.resolve(self.ctx)
            items = value if isinstance(value, tuple) else () if value is None else (value,)
            for item in items:
                rep = _text(item)
                if rep and all(s["rep_id"] != rep for s in out):
                    out.append({"rep_id": rep, "role": "collaborator"})
        return owner, out


def _json(value: Any) -> Any:
    """Plain JSON (Decimal as string, dates ISO); what the state and the effects hold."""
    return _serde.to_jsonable(value)


def _map_fields(
    hp: HandoffPolicy, ctx: Mapping[str, Any], run: _Run
) -> tuple[dict[str, Any], list[str], list[str]]:
    """Resolve the project mapping: ``(fields, missing names, missing required names)``."""
    fields: dict[str, Any] = {}
    missing: list[str] = []
    blocked: list[str] = []
    for name, src in hp.mapping:
        value, gone = src.resolve(ctx)
        if value is None:
            run.missing(gone, f"project field {name}")
            missing.append(name)
            if src.required:
                blocked.append(name)
            continue
        fields[name] = value
    return fields, missing, blocked


def _status_order(ev: ProjectStatusEvent, last: HandoffStatus) -> int:
    """-1 older, 0 same, 1 newer than the last applied status (version first, else time)."""
    if ev.version is not None and last.version is not None:
        a: Any = ev.version
        b: Any = last.version
    else:
        a, b = ev.at, last.at
    return int(a > b) - int(a < b)


def on_project_status(
    policy: Any,
    event: ProjectStatusEvent | Mapping[str, Any],
    *,
    state: HandoffState | Mapping[str, Any] | None,
    now: datetime,
    explain: bool = False,
) -> Decision[StatusOutcome]:
    """Map a project status snapshot from the project tool to CRM updates.

    Every applied status writes each declared CRM field whose value changes: the status's value,
    a done milestone's value, or the field's default — so the CRM always reflects exactly the
    newest applied snapshot, whatever arrived before it.

    Args:
        policy: a :class:`~salesrules.policy.Policy` with a ``handoff`` section (or the compiled
            :class:`HandoffPolicy`).
        event: the status event (status, percent complete, milestones, version or time).
        state: the handoff state persisted for the event's contract.
        now: the decision time (timezone-aware).
        explain: build a trace.

    Returns:
        A decision whose outcome is a :class:`StatusOutcome`, with ``update_field`` and
        ``create_task`` effects and the new ``state``.

    Raises:
        RecordError: the event, the state or ``now`` is invalid, or the state is for another
            contract.
    """
    require_aware(now)
    hp = _handoff(policy)
    ev = coerce(ProjectStatusEvent, event, "project_status")
    prev = _state(state, ev.contract_id)
    run = _Run(explain)
    cid = ev.contract_id

    def finish(
        action: Literal["applied", "ignored", "unknown_status"],
        new: HandoffState | None,
        updates: tuple[FieldUpdate, ...] = (),
        tasks: tuple[str, ...] = (),
    ) -> Decision[StatusOutcome]:
        final = new if new is not None else prev
        project = final.project if final is not None else None
        last = prev.status if prev is not None else None
        return Decision(
            kind="project_status",
            outcome=StatusOutcome(
                contract_id=cid,
                event_id=ev.id,
                status=ev.status,
                action=action,
                applied=new is not None,
                project_id=(project.id if project else None) or ev.project_id,
                updates=updates,
                tasks=tasks,
            ),
            reasons=tuple(run.reasons),
            effects=tuple(run.effects),
            assumptions=(
                Assumption(
                    f"handoff:{cid}:status_event",
                    last.event_id if last else None,
                    "the last applied status event when this was decided",
                ),
            ),
            state=_state_dict(final),
            errors=tuple(run.errors),
            trace=run.trace.build() if run.trace is not None else None,
            policy_digest=_digest(policy),
        )

    project = prev.project if prev is not None else None
    if prev is None or project is None:
        run.reason("unknown_project", f"no project was requested for contract {cid}")
        return finish("ignored", None)
    refused = _refuse_status(hp, ev, prev, project, run)
    if refused is not None:
        return finish(refused, None)

    ctx = {"event": as_mapping(ev), "project": _project_view(prev, project, ev)}
    rule = hp.status_map.get(ev.status)
    if rule is not None and run.trace is not None:
        run.trace.add(TraceStatus.MATCHED, f"status {ev.status}", rule.ref)
    values = _crm_values(hp, rule, ev, ctx, run)
    before = prev.status.crm if prev.status is not None else {}
    updates = _field_updates(values, before, prev, ev, run)
    tasks = _tasks(hp, rule, prev, ev, ctx, run)
    run.reason(
        "status_applied",
        f"status {ev.status} applied ({len(updates)} field(s) changed)",
        rule.ref if rule else None,
        status=ev.status,
    )
    if project.id is None and ev.project_id is not None:
        project = project.model_copy(update={"id": ev.project_id})  # learnt from the tool
    applied = HandoffStatus(
        status=ev.status, event_id=ev.id, at=ev.at, version=ev.version, crm={**before, **values}
    )
    new = prev.model_copy(update={"project": project, "status": applied})
    return finish("applied", new, updates, tasks)


def _refuse_status(
    hp: HandoffPolicy,
    ev: ProjectStatusEvent,
    prev: HandoffState,
    project: HandoffProject,
    run: _Run,
) -> Literal["ignored", "unknown_status"] | None:
    """Why a status event is not applied (with its reason), or ``None`` when it is."""
    if project.state == "cancelled":
        run.reason(
            "project_cancelled", f"project {project.key} was cancelled; its status is not applied"
        )
        return "ignored"
    if ev.project_id is not None and (
        ev.project_id != project.id
        if project.id is not None
        else ev.project_id in prev.cancelled_project_ids
    ):
        run.reason(
            "project_mismatch",
            f"status of project {ev.project_id}, the contract's project is {project.id}",
            project_id=ev.project_id,
            current=project.id,
        )
        return "ignored"
    last = prev.status
    if last is not None:
        order = _status_order(ev, last)
        if ev.id == last.event_id or order == 0:
            run.reason(
                "duplicate_event",
                f"status event {ev.id} was already applied",
                last_event_id=last.event_id,
            )
            return "ignored"
        if order < 0:
            run.reason(
                "stale_event",
                f"status {ev.status} is older than the applied {last.status}",
                last_event_id=last.event_id,
                last_status=last.status,
            )
            return "ignored"
    if ev.status not in hp.statuses:
        run.reason(
            "unknown_status",
            f"status {ev.status!r} is not declared in the policy",
            status=ev.status,
        )
        return "unknown_status"
    return None


def _project_view(
    prev: HandoffState, project: HandoffProject, ev: ProjectStatusEvent
) -> dict[str, Any]:
    """What status-side specs read as ``project.*``."""
    return {
        "id": project.id or ev.project_id,
        "name": project.name,
        "template": project.template,
        "lead_id": project.lead_id,
        "team": prev.team,
        "sales_owner_id": prev.sales_owner_id,
        "contract_id": prev.contract_id,
        "opportunity_id": prev.opportunity_id,
        "customer_id": prev.customer_id,
    }


def _crm_values(
    hp: HandoffPolicy,
    rule: _StatusMap | None,
    ev: ProjectStatusEvent,
    ctx: Mapping[str, Any],
    run: _Run,
) -> dict[str, Any]:
    """Every declared CRM field: its default, then the status's value, then done milestones'."""
    values: dict[str, Any] = dict(hp.crm_defaults)
    sets: list[tuple[tuple[str, _Source], ...]] = [rule.sets] if rule is not None else []
    for ms in ev.milestones:
        if not ms.done:
            continue
        found = hp.milestones.get(ms.id)
        if found is None:
            run.reason("unknown_milestone", f"milestone {ms.id!r} has no mapping", milestone=ms.id)
        else:
            sets.append(found)
    for group in sets:
        for target, src in group:
            value, gone = src.resolve(ctx)
            run.missing(gone, target)
            values[target] = _json(value)
    return values


def _field_updates(
    values: Mapping[str, Any],
    before: Mapping[str, Any],
    prev: HandoffState,
    ev: ProjectStatusEvent,
    run: _Run,
) -> tuple[FieldUpdate, ...]:
    """``update_field`` effects for the fields whose value changes, in field order."""
    cid = prev.contract_id
    ids = {"opportunity": prev.opportunity_id, "contract": cid, "customer": prev.customer_id}
    order_tag = f"v{ev.version}" if ev.version is not None else ev.at.isoformat()
    updates: list[FieldUpdate] = []
    for name in sorted(values):
        value = values[name]
        if name in before and _json(before[name]) == value:
            continue
        root, _, fld = name.partition(".")
        rid = ids.get(root)
        if rid is None:
            message = f"{root} id unknown: cannot write {name}"
            run.errors.append(RuleIssue("missing_field", message, ev.status, None, f"{root}.id"))
            continue
        target = f"{root}:{rid}"
        run.effect(
            "update_field",
            target,
            f"update_field:{target}:{fld}@contract:{cid}/status:{order_tag}",
            field=fld,
            value=value,
        )
        updates.append(FieldUpdate(target, fld, _serde.freeze_json(value)))
    return tuple(updates)


def _tasks(
    hp: HandoffPolicy,
    rule: _StatusMap | None,
    prev: HandoffState,
    ev: ProjectStatusEvent,
    ctx: Mapping[str, Any],
    run: _Run,
) -> tuple[str, ...]:
    """``create_task`` effects of the status (one per contract, status and task)."""
    if rule is None:
        return ()
    cid = prev.contract_id
    record = f"opportunity:{prev.opportunity_id}" if prev.opportunity_id else f"contract:{cid}"
    out: list[str] = []
    for task in rule.tasks:
        rep = prev.sales_owner_id if task.to == "sales_owner" else task.to[4:]
        if not rep:
            run.reason(
                "no_task_recipient", f"task {task.id}: the sales owner is unknown", task=task.id
            )
            continue
        title, gone = task.title.resolve(ctx)
        run.missing(gone, f"task {task.id}")
        due = hp.calendar.add(ev.at, task.due) if task.due is not None else None
        run.effect(
            "create_task",
            f"rep:{rep}",
            f"create_task:rep:{rep}:contract:{cid}/{ev.status}/{task.id}",
            record=record,
            title=title if title is not None else task.id,
            due=due.isoformat() if due is not None else None,
        )
        out.append(task.id)
    return tuple(out)


# --------------------------------------------------------------------------------------------
# batch form
# --------------------------------------------------------------------------------------------


def decide_many(
    policy: Any,
    requests: Iterable[Mapping[str, Any]],
    *,
    states: Mapping[str, Mapping[str, Any]] | None = None,
) -> Iterator[Decision[Any]]:
    """Decide a stream of ``contract_event`` / ``project_status`` requests, in order.

    Each request has the shape of a ``salesrules decide`` request. A request without a
    ``state`` key uses the state the previous decision left for its contract (or ``states``),
    so a webhook log for many contracts replays like a host that persists every state. The
    results are exactly those of calling :func:`on_contract_event` / :func:`on_project_status`
    one by one; contracts are independent, so the stream can be partitioned by contract id.

    Args:
        policy: the policy (or the compiled :class:`HandoffPolicy`).
        requests: the requests (mappings with ``kind``, ``now``, ``event`` …).
        states: initial states by contract id.

    Yields:
        One decision per request.

    Raises:
        RecordError: a request is malformed (the generator stops there).
    """
    from salesrules.records import parse_datetime

    known: dict[str, Mapping[str, Any] | None] = dict(states or {})
    handlers = SECTION.kinds
    for i, request in enumerate(requests):
        kind = request.get("kind")
        handler = handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            raise RecordError(f"request[{i}]", "kind", f"not a handoff request kind: {kind!r}")
        event = request.get("event")
        cid = event.get("contract_id") if isinstance(event, Mapping) else None
        if not isinstance(cid, str):
            raise RecordError(f"request[{i}]", "event.contract_id", "a contract id is required")
        if "state" not in request:
            request = {**request, "state": known.get(cid)}
        now = parse_datetime(request.get("now"), f"request[{i}]", "now")
        explain = request.get("explain", False) is True
        decision = handler(policy, request, now, explain)
        known[cid] = decision.state
        yield decision


# --------------------------------------------------------------------------------------------
# CLI request kinds
# --------------------------------------------------------------------------------------------


def _decide_contract_request(
    policy: Any, request: Mapping[str, Any], now: datetime, explain: bool
) -> Decision[Any]:
    for name in ("event", "contract"):
        if request.get(name) is None:
            raise RecordError("request", name, f"a contract_event request needs '{name}'")
    return on_contract_event(
        policy,
        request["event"],
        contract=request["contract"],
        opportunity=request.get("opportunity"),
        customer=request.get("customer"),
        state=request.get("state"),
        now=now,
        explain=explain,
    )


def _decide_status_request(
    policy: Any, request: Mapping[str, Any], now: datetime, explain: bool
) -> Decision[Any]:
    if request.get("event") is None:
        raise RecordError("request", "event", "a project_status request needs 'event'")
    return on_project_status(
        policy, request["event"], state=request.get("state"), now=now, explain=explain
    )


SECTION = SectionSpec(
    name="handoff",
    model=HandoffSection,
    compile=_compile,
    kinds=MappingProxyType(
        {"contract_event": _decide_contract_request, "project_status": _decide_status_request}
    ),
    after=("calendar",),
    description="delivery handoff: contract events -> project; project status -> CRM",
)
