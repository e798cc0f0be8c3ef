"""Lead grading and release clocks: follow-up, conversion, per-stage protection, overall.

Two sections of a rule file live here:

* ``grading`` — lead grades from completeness: grades are listed best first; a lead gets the
  first grade whose ``require``-d fields are all present (not null, not blank, not an empty
  list) and whose optional ``when`` condition matches. :func:`grade` says which grade, and which
  missing fields (or failed condition) kept the lead from the next grade up.
* ``timeouts`` — clocks that release a record (lead, registered customer, opportunity) back to
  a public pool when its owner does not act in time. :func:`check` evaluates one record at
  ``now``; :func:`sweep` evaluates many, lazily (a generator), and :func:`sweep_all` collects a
  sweep into one ``sweep`` decision.

Clock semantics (stated once; ``docs/timeouts.md`` has the long form):

* **Anchors.** Every clock starts no earlier than the current owner's *ownership start*
  (``owner_since``, or the start of the last uninterrupted run of that owner in the ownership
  history) — never at the record's creation, so a customer created 60 days ago and claimed
  yesterday is not released today. ``follow_up`` clocks with ``restart_on_follow_up: true``
  restart at each qualifying follow-up (the anchor is the later of ownership start and the last
  qualifying follow-up); without it the first qualifying follow-up meets the clock.
  ``conversion`` clocks start at ownership start or at the first qualifying follow-up
  (``start``) and are met by ``converted_at``. ``stage`` clocks start at the entry into the
  current stage (the last stage-history entry for it), or at ownership start if that is later.
  ``overall`` clocks start at ownership start and are met by a win.
* **Qualifying follow-up**: an activity whose ``kind`` is listed in ``follow_up.activities``,
  at or after ownership start and at or before ``now`` (with ``by_owner_only``, logged by the
  owner). Activities in the future of ``now`` are ignored. An activity logged after a deadline
  but before the check still counts: the release happens at the first check after the
  deadline, and what happened before that check is taken into account.
* **Deadlines** are ``calendar.add(anchor, duration)`` in the policy's calendar (business or
  calendar time, as the duration says); ``due: end_of_day`` moves a deadline to the end of its
  local day (24:00). A clock is *overdue* at ``now >= deadline`` (the deadline instant itself
  is late) and *warning* at ``warn_at <= now < deadline``.
* **Grade change mid-clock** (``grade_change``, required): ``restart`` restarts the clock at the
  last grade change after its anchor, with the new grade's duration; ``keep_stricter`` keeps
  the earliest deadline among the grades the lead had since the anchor. Either way a
  ``grade_changed`` reason says what happened.
* **Extensions** (``extensions``): each extension granted on the record (its ``extensions``
  count, capped at ``max_per_record``) moves the deadlines of the extendable clocks by
  ``length``. **Locks** (``locks``): a locked record is held unless its owner holds more locks
  than ``max_per_rep``. **Exemptions**: a won record is never released; ``exemptions`` rules are
  conditions on ``record`` and ``customer`` (an active contract, open receivables …). Holds are
  evaluated only when a clock is in warning or overdue, and every hold that prevents a warning
  or a release is a reason.
* **Outcome**: ``release`` when a clock is overdue and nothing holds the record (the overdue
  clock with the earliest deadline is the one released for; ties by rule order), ``warn``
  when a clock is in its warning period, else ``none``. ``next_check_at`` is the earliest
  future ``warn_at`` or deadline among the clocks still running — the first moment the outcome
  can change without new data — or ``None`` when time alone cannot change it.
* **Release effects**: ``release_to_pool`` for the record (and for its customer when the scope
  is ``opportunity_and_customer``), ``start_cooldown`` for the previous owner (until deadline
  + ``cooldown``), ``notify`` as configured and ``audit``. Their idempotency keys derive from
  the record and the owner's tenure, so releasing twice is one release.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from salesrules._section import CompileContext, SectionModel, SectionSpec
from salesrules.calendar import Calendar, Duration
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
from salesrules.errors import RecordError
from salesrules.records import (
    Activity,
    OwnershipChange,
    StageChange,
    TrackedRecord,
    as_mapping,
    coerce,
)

if TYPE_CHECKING:
    from salesrules.conditions import Condition

__all__ = [
    "SECTIONS",
    "CheckInput",
    "CheckOutcome",
    "ClockStatus",
    "GradeOutcome",
    "GradingPolicy",
    "GradingSection",
    "ReleaseOutcome",
    "SweepEntry",
    "SweepOutcome",
    "TimeoutsPolicy",
    "TimeoutsSection",
    "check",
    "grade",
    "sweep",
    "sweep_all",
    "sweep_entries",
]

#: Issue codes of this module (``docs/timeouts.md`` documents each).
CODES: Mapping[str, str] = MappingProxyType(
    {
        "SR230": "a timeout rule names a stage the stages section does not define",
        "SR231": "a timeout rule names a pool the pools section does not define",
        "SR232": "a clock names a grade the grading section does not define",
        "SR233": "a clock lacks its durations (within / by_grade / stages) or has the wrong ones",
        "SR234": "a clock option does not fit its type or record type",
        "SR235": "warn_before in business days needs clock durations in business days",
        "SR236": "grading: a grade requires no field and has no condition but is not the last",
        "SR320": "a warning is not earlier than its deadline (warn_before >= duration)",
        "SR321": "a grade has no follow-up duration and the clock has no default (within)",
        "SR322": "an extension applies to no clock",
        "SR323": "timeouts.cooldown overrides a pool's own previous-owner cooldown",
    }
)

RecordType = Literal["lead", "customer", "opportunity"]
Action = Literal["none", "warn", "release"]
ClockState = Literal["running", "warning", "overdue", "met", "not_started"]
Scope = Literal["record", "opportunity", "opportunity_and_customer"]

_CONDITION_ROOTS = frozenset({"record", "customer"})


# ---------------------------------------------------------------------------------------------
# Rule-file models
# ---------------------------------------------------------------------------------------------


class GradeRule(SectionModel):
    """One grade: the fields a lead must have (and an optional condition) to earn it."""

    id: str = Field(description="the grade, e.g. 'A'")
    description: str = ""
    require: tuple[str, ...] = Field(
        default=(), description="lead fields (dotted paths) that must be present and non-blank"
    )
    when: Any = Field(default=None, description="an extra condition on `lead`")


class GradingSection(SectionModel):
    """The ``grading`` section: grades best first; the first one a lead satisfies is its grade."""

    grades: tuple[GradeRule, ...] = Field(min_length=1)
    default: str | None = Field(
        default=None, description="grade of a lead that satisfies none (default: ungraded)"
    )


class FollowUpSpec(SectionModel):
    """Which activities count as a follow-up."""

    activities: tuple[str, ...] = Field(
        min_length=1, description="activity kinds that count, e.g. [call, visit]"
    )
    by_owner_only: bool = Field(
        default=False, description="count only activities logged by the current owner"
    )


class ScopeRule(SectionModel):
    """Choose what an overdue opportunity releases: first matching rule wins."""

    id: str
    when: Any = Field(description="condition on `record` (the opportunity) and `customer`")
    scope: Literal["opportunity", "opportunity_and_customer"]


class ReleaseSpec(SectionModel):
    """Where an overdue record goes, and (for opportunities) whether its customer goes too."""

    pool: str
    scope: Scope = Field(
        default="record",
        description="record (the record itself), opportunity, or opportunity_and_customer",
    )
    scope_rules: tuple[ScopeRule, ...] = Field(
        default=(), description="first match chooses the scope; `scope` is the default"
    )


class ClockRule(SectionModel):
    """One clock: what it applies to, when it starts, how long it runs, where a miss goes."""

    id: str
    description: str = ""
    type: Literal["follow_up", "conversion", "stage", "overall"]
    applies_to: Literal["lead", "customer", "opportunity"]
    within: str | None = Field(default=None, description="duration (default for by_grade)")
    by_grade: dict[str, str] = Field(default_factory=dict, description="grade -> duration")
    stages: dict[str, str] = Field(default_factory=dict, description="stage id -> duration")
    start: Literal["ownership_start", "first_follow_up"] | None = Field(
        default=None, description="conversion clocks: what starts the clock"
    )
    restart_on_follow_up: bool | None = Field(
        default=None,
        description="follow_up clocks: restart at each follow-up (true) or stop at the first",
    )
    due: Literal["exact", "end_of_day"] = "exact"
    warn_before: str | None = None
    extendable: bool = True
    when: Any = Field(default=None, description="the clock applies only when this matches")
    release: ReleaseSpec


class ExemptionRule(SectionModel):
    """A condition that holds a record (no warning, no release) while it matches."""

    id: str
    description: str = ""
    applies_to: tuple[Literal["lead", "customer", "opportunity"], ...] = Field(
        default=("lead", "customer", "opportunity"), description="record types it can hold"
    )
    when: Any


class LockSpec(SectionModel):
    """Locks: a locked record is not released while its owner is within the lock limit."""

    max_per_rep: int = Field(ge=0)


class ExtensionSpec(SectionModel):
    """Extensions: each granted one moves deadlines by ``length``, up to a cap per record."""

    max_per_record: int = Field(ge=0)
    length: str


class NotifySpec(SectionModel):
    """Who is notified of a warning and of a release."""

    warn: tuple[Literal["owner", "manager"], ...] = ("owner",)
    release: tuple[Literal["owner", "manager"], ...] = ("owner", "manager")


class TimeoutsSection(SectionModel):
    """The ``timeouts`` section: follow-up rules, clocks, holds and release settings."""

    follow_up: FollowUpSpec
    grade_change: Literal["restart", "keep_stricter"] = Field(
        description="what a grade change does to a running clock (required: no implicit default)"
    )
    cooldown: str | None = Field(
        default=None,
        description="previous owner's re-claim cooldown after a release (default: the pool's "
        "previous_owner_cooldown)",
    )
    notify: NotifySpec = NotifySpec()
    exemptions: tuple[ExemptionRule, ...] = ()
    locks: LockSpec | None = None
    extensions: ExtensionSpec | None = None
    clocks: tuple[ClockRule, ...] = Field(min_length=1)


# ---------------------------------------------------------------------------------------------
# Compiled forms
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Grade:
    id: str
    rank: int
    require: tuple[tuple[str, ...], ...]
    require_text: tuple[str, ...]
    when: Condition | None
    ref: RuleRef


@dataclass(frozen=True, slots=True)
class GradingPolicy:
    """The compiled ``grading`` section (grades best first)."""

    grades: tuple[_Grade, ...]
    default: str | None

    @property
    def grade_ids(self) -> tuple[str, ...]:
        """Grade ids, best first (the default grade last when set)."""
        ids = tuple(g.id for g in self.grades)
        return ids + ((self.default,) if self.default and self.default not in ids else ())


@dataclass(frozen=True, slots=True)
class _Clock:
    id: str
    ref: RuleRef
    type: str
    applies_to: str
    within: Duration | None
    by_grade: Mapping[str, Duration]
    stages: Mapping[str, Duration]
    start: str
    restart: bool
    end_of_day: bool
    warn: Duration | None
    extendable: bool
    when: Condition | None
    pool: str
    scope: str
    scope_rules: tuple[tuple[Condition, str, RuleRef], ...]


@dataclass(frozen=True, slots=True)
class TimeoutsPolicy:
    """The compiled ``timeouts`` section."""

    clocks: tuple[_Clock, ...]
    by_type: Mapping[str, tuple[_Clock, ...]]
    follow_up_kinds: frozenset[str]
    by_owner_only: bool
    grade_change: str
    cooldown: Duration | None
    pool_cooldowns: Mapping[str, Duration]
    notify_warn: tuple[str, ...]
    notify_release: tuple[str, ...]
    exemptions: tuple[tuple[Condition, RuleRef, frozenset[str]], ...]
    max_locks: int | None
    max_extensions: int
    extension: Duration | None
    grading: GradingPolicy | None
    calendar: Calendar
    won_stages: frozenset[str] = frozenset({"won"})
    lost_stages: frozenset[str] = frozenset({"lost"})
    #: Per-date working-hour tables of ``calendar`` (pure functions of the immutable
    #: calendar, bounded, shared by every check and sweep of this compiled policy).
    days: _DayTable = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "days", _DayTable(self.calendar))


def _dotted(text: str) -> tuple[str, ...]:
    return tuple(p for p in text.split(".") if p)


def _compile_grading(model: GradingSection, ctx: CompileContext) -> GradingPolicy:
    base = ("grading",)
    ctx.check_unique_ids(
        ((g.id, (*base, "grades", i)) for i, g in enumerate(model.grades)), "grade"
    )
    grades: list[_Grade] = []
    last = len(model.grades) - 1
    for i, g in enumerate(model.grades):
        path = (*base, "grades", i)
        when = None
        if g.when is not None:
            when = ctx.condition(g.when, (*path, "when"), roots=frozenset({"lead"}), rule_id=g.id)
        require = tuple(_dotted(f.removeprefix("lead.")) for f in g.require)
        if not require and when is None and i != last:
            ctx.error(
                "SR236",
                f"grade '{g.id}' requires nothing, so the grades after it can never be given",
                path,
                rule_id=g.id,
                hint="list required fields, add a `when`, or move it last",
            )
        grades.append(_Grade(g.id, i, require, g.require, when, ctx.rule_ref(g.id, path)))
    return GradingPolicy(tuple(grades), model.default)


def _names_in(model: Any, key: str) -> frozenset[str] | None:
    """Ids of the items of another section (``pools``/``stages``), read defensively."""
    if model is None:
        return None
    root = getattr(model, "root", None)
    if isinstance(model, BaseModel) and root is not None:  # a RootModel: the root is the data
        data = root.model_dump() if isinstance(root, BaseModel) else root
    else:
        data = model.model_dump() if isinstance(model, BaseModel) else model
    if isinstance(data, Mapping) and key in data and root is None:
        data = data[key]
    items: Iterable[Any]
    if isinstance(data, Mapping):
        items = [{"id": k, **(v if isinstance(v, Mapping) else {})} for k, v in data.items()]
    elif isinstance(data, list | tuple):
        items = data
    else:
        return None
    names: set[str] = set()
    for item in items:
        if isinstance(item, str):
            names.add(item)
        elif isinstance(item, Mapping):
            for k in ("id", "name"):
                if isinstance(item.get(k), str):
                    names.add(item[k])
                    break
    return frozenset(names)


def _terminal_stages(model: Any) -> dict[str, frozenset[str]]:
    """Won and lost stage ids from the stages section (default: ``won`` and ``lost``)."""
    data = model.model_dump() if isinstance(model, BaseModel) else model
    items = data.get("stages") if isinstance(data, Mapping) else None
    if not isinstance(items, list | tuple):
        return {}
    won = {i["id"] for i in items if isinstance(i, Mapping) and i.get("terminal") == "won"}
    lost = {i["id"] for i in items if isinstance(i, Mapping) and i.get("terminal") == "lost"}
    return {"won_stages": frozenset(won), "lost_stages": frozenset(lost)}


def _pool_cooldowns(model: Any) -> dict[str, Duration]:
    """Each pool's ``previous_owner_cooldown.duration`` from the pools section, when valid."""
    from salesrules.calendar import DurationError, parse_duration

    root = getattr(model, "root", model)
    if isinstance(root, BaseModel):
        root = root.model_dump()
    out: dict[str, Duration] = {}
    if not isinstance(root, Mapping):
        return out
    for name, spec in root.items():
        cd = getattr(spec, "previous_owner_cooldown", None)
        if isinstance(spec, Mapping):
            cd = spec.get("previous_owner_cooldown")
        text = cd.get("duration") if isinstance(cd, Mapping) else getattr(cd, "duration", None)
        if isinstance(text, str):
            try:
                d = parse_duration(text)
            except DurationError:
                continue
            if d.is_positive:
                out[str(name)] = d
    return out


def _compile_timeouts(model: TimeoutsSection, ctx: CompileContext) -> TimeoutsPolicy:
    base = ("timeouts",)
    ctx.check_unique_ids(
        ((c.id, (*base, "clocks", i)) for i, c in enumerate(model.clocks)), "clock"
    )
    ctx.check_unique_ids(
        ((e.id, (*base, "exemptions", i)) for i, e in enumerate(model.exemptions)), "exemption"
    )
    grading: GradingPolicy | None = ctx.compiled("grading")
    grade_ids = frozenset(grading.grade_ids) if grading is not None else None
    pools = _names_in(ctx.model("pools"), "pools")
    stages = _names_in(ctx.model("stages"), "stages")
    clocks = [_compile_clock(c, (*base, "clocks", i), ctx, grade_ids, pools, stages)
              for i, c in enumerate(model.clocks)]
    cooldown = (
        ctx.duration(model.cooldown, (*base, "cooldown")) if model.cooldown is not None else None
    )
    pool_cooldowns = _pool_cooldowns(ctx.model("pools"))
    if cooldown is not None:
        for pool in sorted({c.pool for c in clocks}):
            theirs = pool_cooldowns.get(pool)
            if theirs is not None and theirs != cooldown:
                ctx.warn("SR323", f"timeouts.cooldown ({cooldown}) overrides pool '{pool}''s "
                         f"previous_owner_cooldown ({theirs}) for releases",
                         (*base, "cooldown"),
                         hint="keep one: drop timeouts.cooldown to use the pool's")
    exemptions = tuple(
        (
            ctx.condition(e.when, (*base, "exemptions", i, "when"), roots=_CONDITION_ROOTS,
                          rule_id=e.id),
            ctx.rule_ref(e.id, (*base, "exemptions", i)),
            frozenset(e.applies_to),
        )
        for i, e in enumerate(model.exemptions)
    )
    extension = None
    max_ext = 0
    if model.extensions is not None:
        extension = ctx.duration(model.extensions.length, (*base, "extensions", "length"))
        max_ext = model.extensions.max_per_record
        if not any(c.extendable for c in model.clocks):
            ctx.warn("SR322", "no clock is extendable, so extensions change nothing",
                     (*base, "extensions"))
    by_type: dict[str, tuple[_Clock, ...]] = {
        t: tuple(c for c in clocks if c.applies_to == t)
        for t in ("lead", "customer", "opportunity")
    }
    return TimeoutsPolicy(
        clocks=tuple(clocks),
        by_type=MappingProxyType(by_type),
        follow_up_kinds=frozenset(model.follow_up.activities),
        by_owner_only=model.follow_up.by_owner_only,
        grade_change=model.grade_change,
        cooldown=cooldown,
        pool_cooldowns=MappingProxyType(pool_cooldowns),
        notify_warn=model.notify.warn,
        notify_release=model.notify.release,
        exemptions=exemptions,
        max_locks=model.locks.max_per_rep if model.locks is not None else None,
        max_extensions=max_ext,
        extension=extension,
        grading=grading,
        calendar=ctx.calendar,
        **_terminal_stages(ctx.model("stages")),
    )


def _compile_clock(
    c: ClockRule,
    path: tuple[str | int, ...],
    ctx: CompileContext,
    grade_ids: frozenset[str] | None,
    pools: frozenset[str] | None,
    stages: frozenset[str] | None,
) -> _Clock:
    rid = c.id
    within = ctx.duration(c.within, (*path, "within"), rule_id=rid) if c.within else None
    by_grade: dict[str, Duration] = {}
    for g, text in c.by_grade.items():
        d = ctx.duration(text, (*path, "by_grade", g), rule_id=rid)
        if d is not None:
            by_grade[g] = d
        if grade_ids is not None and g not in grade_ids:
            ctx.error("SR232", f"clock '{rid}' names unknown grade '{g}'",
                      (*path, "by_grade", g), rule_id=rid, key=True,
                      hint=f"grades are: {', '.join(sorted(grade_ids))}")
    stage_d: dict[str, Duration] = {}
    for s, text in c.stages.items():
        d = ctx.duration(text, (*path, "stages", s), rule_id=rid)
        if d is not None:
            stage_d[s] = d
        if stages is not None and s not in stages:
            from salesrules._section import did_you_mean

            ctx.error("SR230", f"clock '{rid}' names unknown stage '{s}'",
                      (*path, "stages", s), rule_id=rid, key=True,
                      hint=did_you_mean(s, stages) or f"stages are: {', '.join(sorted(stages))}")
    # durations by type
    if c.type == "stage":
        if not c.stages:
            ctx.error("SR233", f"stage clock '{rid}' needs `stages` (stage -> duration)",
                      path, rule_id=rid)
        if c.within or c.by_grade:
            ctx.error("SR233", f"stage clock '{rid}' takes `stages`, not `within`/`by_grade`",
                      path, rule_id=rid)
        if c.applies_to != "opportunity":
            ctx.error("SR234", f"stage clock '{rid}' applies to opportunities only",
                      (*path, "applies_to"), rule_id=rid)
    else:
        if c.stages:
            ctx.error("SR233", f"clock '{rid}' of type {c.type} takes no `stages`",
                      (*path, "stages"), rule_id=rid, key=True)
        if not c.within and not c.by_grade:
            ctx.error("SR233", f"clock '{rid}' needs `within` or `by_grade`", path, rule_id=rid)
        if c.by_grade and c.type not in ("follow_up", "conversion"):
            ctx.error("SR233", "`by_grade` applies to follow_up and conversion clocks only",
                      (*path, "by_grade"), rule_id=rid, key=True)
        if c.by_grade and grade_ids is not None and not c.within:
            for g in sorted(grade_ids - set(c.by_grade)):
                ctx.warn("SR321", f"grade '{g}' has no duration in clock '{rid}' and there is "
                         "no `within` default: such leads have no clock",
                         (*path, "by_grade"), rule_id=rid)
    if c.type == "conversion" and c.applies_to != "lead":
        ctx.error("SR234", f"conversion clock '{rid}' applies to leads only",
                  (*path, "applies_to"), rule_id=rid)
    if c.start is not None and c.type != "conversion":
        ctx.error("SR234", "`start` is for conversion clocks", (*path, "start"), rule_id=rid,
                  key=True)
    if c.restart_on_follow_up is not None and c.type != "follow_up":
        ctx.error("SR234", "`restart_on_follow_up` is for follow_up clocks",
                  (*path, "restart_on_follow_up"), rule_id=rid, key=True)
    if c.type == "conversion" and c.start is None:
        ctx.error("SR234", f"conversion clock '{rid}' must say when it starts "
                  "(`start: ownership_start` or `start: first_follow_up`)", path, rule_id=rid)
    if c.type == "follow_up" and c.restart_on_follow_up is None:
        ctx.error("SR234", f"follow_up clock '{rid}' must say whether each follow-up restarts it "
                  "(`restart_on_follow_up: true|false`)", path, rule_id=rid)
    # release
    rel = c.release
    if pools is not None and rel.pool not in pools:
        from salesrules._section import did_you_mean

        ctx.error("SR231", f"clock '{rid}' releases to unknown pool '{rel.pool}'",
                  (*path, "release", "pool"), rule_id=rid,
                  hint=did_you_mean(rel.pool, pools) or f"pools are: {', '.join(sorted(pools))}")
    scopes = {rel.scope, *(r.scope for r in rel.scope_rules)}
    if c.applies_to != "opportunity" and scopes - {"record"}:
        ctx.error("SR234", "only opportunity clocks can release `opportunity`/"
                  "`opportunity_and_customer`", (*path, "release"), rule_id=rid)
    ctx.check_unique_ids(
        ((r.id, (*path, "release", "scope_rules", i)) for i, r in enumerate(rel.scope_rules)),
        "scope rule",
    )
    scope_rules = tuple(
        (
            ctx.condition(r.when, (*path, "release", "scope_rules", i, "when"),
                          roots=_CONDITION_ROOTS, rule_id=r.id),
            r.scope,
            ctx.rule_ref(r.id, (*path, "release", "scope_rules", i)),
        )
        for i, r in enumerate(rel.scope_rules)
    )
    # warning
    warn = None
    if c.warn_before is not None:
        warn = ctx.duration(c.warn_before, (*path, "warn_before"), rule_id=rid)
        durations = [d for d in (within, *by_grade.values(), *stage_d.values()) if d is not None]
        if warn is not None:
            if warn.unit == "business_days" and any(d.unit != "business_days" for d in durations):
                ctx.error("SR235", "warn_before in business days needs durations in business "
                          "days", (*path, "warn_before"), rule_id=rid,
                          hint="use business hours, or calendar time, for the warning")
            for d in durations:
                if _not_shorter(warn, d):
                    ctx.warn("SR320", f"warning {warn} before a deadline of {d} comes at or "
                             "before the clock starts", (*path, "warn_before"), rule_id=rid)
                    break
    when = None
    if c.when is not None:
        when = ctx.condition(c.when, (*path, "when"), roots=_CONDITION_ROOTS, rule_id=rid)
    return _Clock(
        id=rid,
        ref=ctx.rule_ref(rid, path),
        type=c.type,
        applies_to=c.applies_to,
        within=within,
        by_grade=MappingProxyType(by_grade),
        stages=MappingProxyType(stage_d),
        start=c.start or "ownership_start",
        restart=bool(c.restart_on_follow_up),
        end_of_day=c.due == "end_of_day",
        warn=warn,
        extendable=c.extendable,
        when=when,
        pool=rel.pool,
        scope="opportunity" if rel.scope == "record" and c.applies_to == "opportunity"
        else rel.scope,
        scope_rules=scope_rules,
    )


_ROUGH_SECONDS: Mapping[str, int] = MappingProxyType(
    {
        "business_days": 8 * 3600,
        "business_hours": 3600,
        "business_minutes": 60,
        "years": 365 * 86400,
        "months": 30 * 86400,
        "weeks": 7 * 86400,
        "days": 86400,
        "hours": 3600,
        "minutes": 60,
        "seconds": 1,
    }
)


def _not_shorter(warn: Duration, d: Duration) -> bool:
    """Whether a warning lead time is at least the clock's duration (a lint, so approximate
    when units differ; exact for equal units)."""
    if warn.unit == d.unit and not warn.rest and not d.rest:
        return warn.amount >= d.amount
    rough = {"business_days": 24 * 3600} if warn.business != d.business else {}

    def secs(x: Duration) -> int:
        return sum(n * rough.get(u, _ROUGH_SECONDS[u]) for u, n in x.components)

    return secs(warn) >= secs(d)


# ---------------------------------------------------------------------------------------------
# Outcomes
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GradeOutcome:
    """A lead's grade and what kept it from the next grade up.

    Attributes:
        record: the lead's id (``None`` when it has none).
        grade: the grade (the default grade, or ``None`` when ungraded).
        next_grade: the next better grade, if any.
        missing_for_next: required fields of ``next_grade`` the lead lacks.
        next_condition_failed: whether ``next_grade``'s ``when`` condition did not match.
    """

    record: str | None
    grade: str | None
    next_grade: str | None = None
    missing_for_next: tuple[str, ...] = ()
    next_condition_failed: bool = False

    def summary(self) -> str:
        """One line: ``grade B (A needs: budget)``."""
        text = f"grade {self.grade}" if self.grade else "ungraded"
        if self.next_grade:
            need = list(self.missing_for_next)
            if self.next_condition_failed:
                need.append("its condition")
            text += f" ({self.next_grade} needs: {', '.join(need) or '-'})"
        return text


@dataclass(frozen=True, slots=True)
class ClockStatus:
    """One clock of one record at ``now``.

    Attributes:
        clock: the clock rule's id.
        type: ``follow_up``, ``conversion``, ``stage`` or ``overall``.
        state: ``running``, ``warning``, ``overdue``, ``met`` or ``not_started``.
        anchor_kind: what started it: ``ownership_start``, ``last_follow_up``,
            ``first_follow_up``, ``stage_entry`` or ``grade_change``; for a met clock, what
            met it (``follow_up``, ``conversion``).
        anchor: when it started (``None`` when not started).
        duration: the duration applied (text), ``None`` when not started.
        deadline: when it runs out (extensions and ``end_of_day`` applied).
        warn_at: when its warning starts, or ``None``.
        remaining_seconds: elapsed seconds from ``now`` to the deadline (negative when
            overdue), ``None`` without a deadline.
        grade: the grade whose duration applies (grade-based clocks).
        stage: the stage whose duration applies (stage clocks).
        extensions: how many extensions moved the deadline.
    """

    clock: str
    type: str
    state: ClockState
    anchor_kind: str
    anchor: datetime | None = None
    duration: str | None = None
    deadline: datetime | None = None
    warn_at: datetime | None = None
    remaining_seconds: int | None = None
    grade: str | None = None
    stage: str | None = None
    extensions: int = 0


@dataclass(frozen=True, slots=True)
class ReleaseOutcome:
    """What a release does: which records go to which pool, and why.

    Attributes:
        clock: the overdue clock released for.
        pool: the pool the records go to.
        scope: ``record``, ``opportunity`` or ``opportunity_and_customer``.
        records: the released records (``opportunity:O-1``, ``customer:C-1``).
        previous_owner_id: the owner they are released from.
        deadline: the missed deadline (the release takes effect as of it).
        cooldown_until: end of the previous owner's re-claim cooldown, if any.
        scope_rule: the scope rule that chose the scope, if any.
    """

    clock: str
    pool: str
    scope: str
    records: tuple[str, ...]
    previous_owner_id: str | None
    deadline: datetime
    cooldown_until: datetime | None = None
    scope_rule: str | None = None


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    """The result of checking one record's clocks at ``now``.

    Attributes:
        record: ``lead:L-1`` / ``customer:C-1`` / ``opportunity:O-1``.
        action: ``none``, ``warn`` or ``release``.
        clocks: every clock that applies, in rule order.
        release: what is released when ``action == "release"``.
        warnings: ids of the clocks in their warning period (when ``action == "warn"``).
        held_by: ids of what held the record (``won``, an exemption id, ``lock``).
        next_check_at: the earliest moment the outcome can change without new data.
    """

    record: str
    action: Action
    clocks: tuple[ClockStatus, ...] = ()
    release: ReleaseOutcome | None = None
    warnings: tuple[str, ...] = ()
    held_by: tuple[str, ...] = ()
    next_check_at: datetime | None = None

    def summary(self) -> str:
        """One line: ``lead:L-1 release to lead_pool (lead-follow-up)``."""
        if self.release is not None:
            return (
                f"{self.record} release to {self.release.pool} ({self.release.clock}; "
                f"{self.release.scope})"
            )
        if self.action == "warn":
            return f"{self.record} warn ({', '.join(self.warnings)})"
        held = f" (held by {', '.join(self.held_by)})" if self.held_by else ""
        return f"{self.record} nothing to do{held}"


@dataclass(frozen=True, slots=True)
class SweepEntry:
    """One record's result in a sweep.

    Attributes:
        record: the record (``lead:L-1``).
        action: ``none``, ``warn`` or ``release``.
        next_check_at: its next check time.
        clock: the clock released for or warned about (first one), if any.
        pool: the pool released to, if any.
        scope: the release scope, if any.
        deadline: that clock's deadline, if any.
    """

    record: str
    action: Action
    next_check_at: datetime | None = None
    clock: str | None = None
    pool: str | None = None
    scope: str | None = None
    deadline: datetime | None = None


@dataclass(frozen=True, slots=True)
class SweepOutcome:
    """A collected sweep: releases, warnings and next check times, deterministically ordered.

    Attributes:
        checked: how many records were checked.
        releases: records to release, by deadline then record.
        warnings: records to warn about, by deadline then record.
        next_checks: every record with a next check time, by that time then record.
        next_check_at: the earliest of them (when the host should sweep next).
    """

    checked: int
    releases: tuple[SweepEntry, ...] = ()
    warnings: tuple[SweepEntry, ...] = ()
    next_checks: tuple[SweepEntry, ...] = ()
    next_check_at: datetime | None = None

    def summary(self) -> str:
        """One line: ``1000 checked, 3 releases, 5 warnings``."""
        return (
            f"{self.checked} checked, {len(self.releases)} releases, "
            f"{len(self.warnings)} warnings"
        )


# Fast constructors for hot paths: set the slots directly (skipping the frozen dataclass
# ``__init__``); every field is given, so the result equals the regular constructor's.
_new = object.__new__
_S_STATUS = tuple(ClockStatus.__dict__[f].__set__ for f in (
    "clock", "type", "state", "anchor_kind", "anchor", "duration", "deadline", "warn_at",
    "remaining_seconds", "grade", "stage", "extensions"))
_S_OUTCOME = tuple(CheckOutcome.__dict__[f].__set__ for f in (
    "record", "action", "clocks", "release", "warnings", "held_by", "next_check_at"))
_S_ENTRY = tuple(SweepEntry.__dict__[f].__set__ for f in (
    "record", "action", "next_check_at", "clock", "pool", "scope", "deadline"))
_S_NEXT = Decision.__dict__["next_check_at"].__set__


def _status(clock: str, type_: str, state: ClockState, anchor_kind: str,
            anchor: datetime | None = None, duration: str | None = None,
            deadline: datetime | None = None, warn_at: datetime | None = None,
            remaining: int | None = None, grade_: str | None = None,
            stage: str | None = None, extensions: int = 0) -> ClockStatus:
    s: ClockStatus = _new(ClockStatus)
    a, b, c, d, e, f, g, h, i, j, k, m = _S_STATUS
    a(s, clock)
    b(s, type_)
    c(s, state)
    d(s, anchor_kind)
    e(s, anchor)
    f(s, duration)
    g(s, deadline)
    h(s, warn_at)
    i(s, remaining)
    j(s, grade_)
    k(s, stage)
    m(s, extensions)
    return s


def _outcome(record: str, action: Action, clocks: tuple[ClockStatus, ...] = (),
             release: ReleaseOutcome | None = None, warnings: tuple[str, ...] = (),
             held_by: tuple[str, ...] = (), next_check_at: datetime | None = None,
             ) -> CheckOutcome:
    o: CheckOutcome = _new(CheckOutcome)
    a, b, c, d, e, f, g = _S_OUTCOME
    a(o, record)
    b(o, action)
    c(o, clocks)
    d(o, release)
    e(o, warnings)
    f(o, held_by)
    g(o, next_check_at)
    return o


def _sweep_entry(record: str, action: Action, next_check_at: datetime | None = None,
                 clock: str | None = None, pool: str | None = None, scope: str | None = None,
                 deadline: datetime | None = None) -> SweepEntry:
    o: SweepEntry = _new(SweepEntry)
    a, b, c, d, e, f, g = _S_ENTRY
    a(o, record)
    b(o, action)
    c(o, next_check_at)
    d(o, clock)
    e(o, pool)
    f(o, scope)
    g(o, deadline)
    return o


def _check_decision(outcome: CheckOutcome, reasons: tuple[Reason, ...],
                    effects: tuple[Effect, ...] = (), assumptions: tuple[Assumption, ...] = (),
                    next_check_at: datetime | None = None, errors: tuple[RuleIssue, ...] = (),
                    trace: Any = None, digest: str = "") -> Decision[CheckOutcome]:
    """``Decision(kind="check", ...)``; ``reasons``/``effects`` hold frozen values already."""
    d = _fast_decision("check", outcome, reasons, effects, assumptions, errors, trace, digest)
    if next_check_at is not None:
        _S_NEXT(d, next_check_at)
    return d


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


# ---------------------------------------------------------------------------------------------
# Grading
# ---------------------------------------------------------------------------------------------


def _present(data: Mapping[str, Any], path: tuple[str, ...]) -> bool:
    node: Any = data
    for part in path:
        if type(node) is dict or isinstance(node, Mapping):
            node = node.get(part)
        else:
            node = getattr(node, part, None)
        if node is None:
            return False
    t = type(node)
    if t is str:
        return bool(node.strip())
    if t is list or t is tuple or t is dict:
        return bool(node)
    if isinstance(node, str):
        return bool(node.strip())
    if isinstance(node, list | tuple | set | frozenset | dict):
        return bool(node)
    return True


def _lead_mapping(lead: Any, what: str = "lead") -> dict[str, Any]:
    if isinstance(lead, BaseModel):
        return as_mapping(lead)
    if isinstance(lead, Mapping):
        return dict(lead)
    raise RecordError(what, "*", f"expected a record (mapping), got {type(lead).__name__}")


def _grade_of(
    g: GradingPolicy, lead: Mapping[str, Any]
) -> tuple[int | None, list[tuple[_Grade, tuple[str, ...], bool | None]]]:
    """Index of the grade earned (or None) and, per grade tried, (missing, condition)."""
    tried: list[tuple[_Grade, tuple[str, ...], bool | None]] = []
    ctx = {"lead": lead}
    for i, rule in enumerate(g.grades):
        missing = tuple(
            text for path, text in zip(rule.require, rule.require_text, strict=True)
            if not _present(lead, path)
        )
        cond = rule.when(ctx) if rule.when is not None else True
        tried.append((rule, missing, cond))
        if not missing and cond is True:
            return i, tried
    return None, tried


def _grade_index(g: GradingPolicy, lead: Mapping[str, Any]) -> int | None:
    """``_grade_of(g, lead)[0]`` without collecting what each grade misses."""
    ctx: dict[str, Any] | None = None
    for i, rule in enumerate(g.grades):
        for path in rule.require:
            if not _present(lead, path):
                break
        else:
            if rule.when is None:
                return i
            if ctx is None:
                ctx = {"lead": lead}
            if rule.when(ctx) is True:
                return i
    return None


def _grading(policy: Any) -> GradingPolicy:
    if not _has(policy, "grading"):
        raise RecordError("policy", "grading", "this policy has no 'grading' section")
    g: GradingPolicy = policy.section("grading")
    return g


def _has(policy: Any, name: str) -> bool:
    has = getattr(policy, "has", None)
    return bool(has(name)) if callable(has) else False


def grade(policy: Any, lead: Any, explain: bool = False) -> Decision[GradeOutcome]:
    """Grade a lead by the completeness rules of the policy's ``grading`` section.

    Args:
        policy: a loaded :class:`~salesrules.policy.Policy` with a ``grading`` section.
        lead: the lead, as a mapping or a record model (custom fields are read).
        explain: build a trace of every grade tried.

    Returns:
        A ``grade`` decision: the grade, and in the reasons the fields (or the condition) that
        kept the lead from the next grade up.

    Raises:
        RecordError: the policy has no grading section, or ``lead`` is not a record.
    """
    g = _grading(policy)
    data = _lead_mapping(lead)
    ident = data.get("id")
    record = str(ident) if ident is not None else None
    idx, tried = _grade_of(g, data)
    reasons: list[Reason] = []
    errors: list[RuleIssue] = []
    tb = TraceBuilder() if explain else None
    for rule, missing, cond in tried:
        if cond is None and rule.when is not None:
            for code, fld, msg in rule.when.explain({"lead": data}).issues:
                errors.append(RuleIssue(code, msg, rule.ref.id, rule.ref.location, fld))
        if tb is not None:
            ok = not missing and cond is True
            tb.add(
                TraceStatus.MATCHED if ok else TraceStatus.SKIPPED,
                f"grade {rule.id}: " + ("all requirements met" if ok else
                                        ("missing " + ", ".join(missing) if missing else
                                         "condition did not match")),
                rule.ref,
                {"missing": list(missing), "condition": cond},
            )
    if idx is not None:
        got: str | None = g.grades[idx].id
        rule = g.grades[idx]
        reasons.append(Reason("graded", f"grade {got}: required fields present", rule.ref.id,
                              rule.ref.location, {"grade": got}))
    elif g.default is not None:
        got = g.default
        reasons.append(Reason("graded", f"grade {got} (default: no grade's requirements met)",
                              data={"grade": got, "default": True}))
    else:
        got = None
        reasons.append(Reason("ungraded", "no grade's requirements are met"))
    nxt_index = (idx - 1) if idx is not None else len(g.grades) - 1
    nxt_grade: str | None = None
    missing_next: tuple[str, ...] = ()
    cond_failed = False
    if nxt_index >= 0:
        rule, missing_next, cond = tried[nxt_index]
        nxt_grade = rule.id
        cond_failed = cond is not True
        if missing_next:
            reasons.append(Reason(
                "missing_for_next_grade",
                f"grade {rule.id} also needs: {', '.join(missing_next)}",
                rule.ref.id, rule.ref.location,
                {"grade": rule.id, "missing": list(missing_next)},
            ))
        if cond_failed:
            reasons.append(Reason(
                "condition_failed_for_next_grade",
                f"grade {rule.id}: its condition did not match",
                rule.ref.id, rule.ref.location, {"grade": rule.id},
            ))
    return Decision(
        kind="grade",
        outcome=GradeOutcome(record, got, nxt_grade, missing_next, cond_failed),
        reasons=tuple(reasons),
        errors=tuple(errors),
        trace=tb.build() if tb is not None else None,
        policy_digest=str(getattr(policy, "digest", "")),
    )


# ---------------------------------------------------------------------------------------------
# Input normalization (one path for check and sweep; dicts are validated cheaply)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckInput:
    """One record to check with everything that matters: histories and its customer.

    Attributes:
        record: a :class:`~salesrules.records.TrackedRecord` or a mapping of one.
        activities: the record's activities (models or mappings with ``id``, ``record_id``,
            ``kind``, ``at``, optional ``by``).
        stage_history: stage changes (``stage``, ``at``), any order.
        ownership_history: ownership changes (``owner_id``, ``at``), any order.
        customer: the opportunity's customer (mapping or model), for conditions.
    """

    record: Any
    activities: Sequence[Any] = ()
    stage_history: Sequence[Any] = ()
    ownership_history: Sequence[Any] = ()
    customer: Any = None


class _Facts:
    """A record reduced to what the clocks need (built once per record)."""

    __slots__ = (
        "converted_at",
        "customer",
        "customer_id",
        "extensions",
        "first_follow_up",
        "grade",
        "grade_changes",
        "id",
        "last_follow_up",
        "lock_count",
        "locked",
        "manager_id",
        "mapping",
        "model",
        "owner_id",
        "owner_since",
        "stage",
        "stage_entered",
        "status",
        "target",
        "type",
    )

    type: str
    id: str
    target: str
    owner_id: str | None
    owner_since: datetime | None
    manager_id: str | None
    status: str
    grade: str | None
    grade_changes: tuple[tuple[datetime, str], ...]
    stage: str | None
    stage_entered: datetime | None
    converted_at: datetime | None
    customer_id: str | None
    locked: bool
    lock_count: int | None
    extensions: int
    first_follow_up: datetime | None
    last_follow_up: datetime | None
    model: Any
    mapping: Any
    customer: Any


_RECORD_KEYS = frozenset({"type", "owner_id", "owner_since", "owner_manager_id", "created_at",
                          "status", "grade", "grade_changes", "stage", "stage_entered_at",
                          "converted_at", "customer_id", "locked", "owner_lock_count",
                          "extensions"})


def _aware(value: Any) -> datetime | None:
    """A cheap check: an aware datetime (or ISO text of one), else ``None`` (caller falls back)."""
    if type(value) is datetime:
        return value if value.tzinfo is not None and value.utcoffset() is not None else None
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return dt if dt.tzinfo is not None else None
    if isinstance(value, datetime):
        return value if value.utcoffset() is not None else None
    return None


def _opt_time(d: Mapping[str, Any], key: str) -> tuple[bool, datetime | None]:
    v = d.get(key)
    if v is None:
        return True, None
    t = _aware(v)
    return t is not None, t


def _facts_from_mapping(d: Mapping[str, Any]) -> _Facts | None:
    """Cheap validation of a dict record; ``None`` means 'not clearly valid, use pydantic'."""
    get = d.get
    rid, typ = get("id"), get("type")
    if type(rid) is not str or typ not in ("lead", "customer", "opportunity"):
        return None
    status = get("status", "open")
    if status not in ("open", "won", "lost"):
        return None
    times: list[datetime | None] = []
    for key in ("owner_since", "stage_entered_at", "converted_at", "created_at"):
        v = get(key)
        if v is not None and (type(v) is not datetime or v.tzinfo is None
                              or v.utcoffset() is None):
            v = _aware(v)
            if v is None:
                return None
        times.append(v)
    owner, manager, grade_, stage, cust = (get("owner_id"), get("owner_manager_id"),
                                           get("grade"), get("stage"), get("customer_id"))
    for v in (owner, manager, grade_, stage, cust):
        if v is not None and type(v) is not str:
            return None
    locked = get("locked", False)
    lock_count = get("owner_lock_count")
    ext = get("extensions", 0)
    if type(locked) is not bool or type(ext) is not int or ext < 0:
        return None
    if lock_count is not None and (type(lock_count) is not int or lock_count < 0):
        return None
    gcs = get("grade_changes")
    changes: list[tuple[datetime, str]] = []
    if gcs:
        for gc in gcs:
            if not isinstance(gc, Mapping) or type(gc.get("grade")) is not str \
                    or set(gc) - {"grade", "at"}:
                return None
            at = _aware(gc.get("at"))
            if at is None:
                return None
            changes.append((at, gc["grade"]))
        changes.sort(key=lambda x: x[0])
    f = _Facts()
    f.owner_since, f.stage_entered, f.converted_at = times[0], times[1], times[2]
    f.type, f.id, f.target = typ, rid, f"{typ}:{rid}"
    f.owner_id, f.manager_id, f.status = owner, manager, status
    f.grade, f.stage, f.customer_id = grade_, stage, cust
    f.locked, f.lock_count, f.extensions = locked, lock_count, ext
    f.grade_changes = tuple(changes)
    f.model, f.mapping = None, d
    return f


def _facts_from_model(r: TrackedRecord) -> _Facts:
    f = _Facts()
    f.type, f.id, f.target = r.type, r.id, f"{r.type}:{r.id}"
    f.owner_id, f.owner_since, f.manager_id = r.owner_id, r.owner_since, r.owner_manager_id
    f.status, f.grade, f.stage = r.status, r.grade, r.stage
    f.stage_entered, f.converted_at, f.customer_id = r.stage_entered_at, r.converted_at, r.customer_id
    f.locked, f.lock_count, f.extensions = r.locked, r.owner_lock_count, r.extensions
    f.grade_changes = tuple(sorted(((c.at, c.grade) for c in r.grade_changes), key=lambda x: x[0]))
    f.model, f.mapping = r, None
    return f


def _record_facts(record: Any) -> _Facts:
    if isinstance(record, TrackedRecord):
        return _facts_from_model(record)
    if isinstance(record, Mapping):
        fast = _facts_from_mapping(record)
        if fast is not None:
            return fast
    model = coerce(TrackedRecord, record, "record")  # raises a RecordError naming the field
    return _facts_from_model(model)


def _items(seq: Any, name: str) -> Sequence[Any]:
    if seq is None:
        return ()
    if type(seq) is list or type(seq) is tuple:
        return seq
    if isinstance(seq, Mapping | str | bytes) or not hasattr(seq, "__iter__"):
        raise RecordError(name, "*", "expected a list of records")
    return seq if isinstance(seq, list | tuple) else tuple(seq)


def _activity_times(
    acts: Sequence[Any], f: _Facts, t: TimeoutsPolicy, base: datetime, now: datetime
) -> None:
    """Set the first and last qualifying follow-up in [base, now]."""
    kinds = t.follow_up_kinds
    owner_only = t.by_owner_only
    owner = f.owner_id
    first: datetime | None = None
    last: datetime | None = None
    for i, a in enumerate(acts):
        if type(a) is dict and type(a.get("kind")) is str and type(a.get("id")) is str \
                and type(a.get("record_id")) is str:
            kind, by = a["kind"], a.get("by")
            at_ = a.get("at")
            if type(at_) is not datetime or at_.tzinfo is None or (
                    by is not None and type(by) is not str):
                at_ = _aware(at_)
                if at_ is None or (by is not None and type(by) is not str):
                    m = coerce(Activity, a, f"{f.target} activities[{i}]")
                    kind, at_, by = m.kind, m.at, m.by
            at = at_
        elif isinstance(a, Activity):
            kind, at, by = a.kind, a.at, a.by
        elif (isinstance(a, Mapping) and type(a.get("kind")) is str
              and type(a.get("id")) is str and type(a.get("record_id")) is str):
            kind, by = a["kind"], a.get("by")
            at_ = _aware(a.get("at"))
            if at_ is None or (by is not None and type(by) is not str):
                m = coerce(Activity, a, f"{f.target} activities[{i}]")
                kind, at_, by = m.kind, m.at, m.by
            at = at_
        else:
            m = coerce(Activity, a, f"{f.target} activities[{i}]")
            kind, at, by = m.kind, m.at, m.by
        if kind not in kinds or at > now or at < base:
            continue
        if owner_only and by != owner:
            continue
        if first is None or at < first:
            first = at
        if last is None or at > last:
            last = at
    f.first_follow_up, f.last_follow_up = first, last


def _history(seq: Sequence[Any], model: type[Any], f: _Facts, name: str,
             key: str) -> list[tuple[datetime, Any]]:
    """Validate a history (cheaply for dicts) into ``(at, value)`` sorted by time."""
    nullable = key == "owner_id"
    out: list[tuple[datetime, Any]] = []
    for i, h in enumerate(seq):
        if isinstance(h, model):
            out.append((h.at, getattr(h, key)))
            continue
        if isinstance(h, Mapping) and key in h:
            at = _aware(h.get("at"))
            v = h[key]
            if at is not None and (type(v) is str or (nullable and v is None)):
                out.append((at, v))
                continue
        m = coerce(model, h, f"{f.target} {name}[{i}]")
        out.append((m.at, getattr(m, key)))
    out.sort(key=lambda x: x[0])
    return out


def _tenure_start(f: _Facts, hist: list[tuple[datetime, Any]], now: datetime) -> datetime:
    start: datetime | None = None
    for at, owner in reversed([h for h in hist if h[0] <= now]):
        if owner != f.owner_id:
            break
        start = at
    if start is None:
        raise RecordError(
            f.target, "owner_since",
            "the current owner's ownership start is unknown: pass owner_since or an "
            "ownership_history whose last entry is the current owner",
        )
    return start


def _prepare(
    t: TimeoutsPolicy, inp: CheckInput, now: datetime
) -> _Facts:
    return _prepare_parts(t, inp.record, inp.activities, inp.stage_history,
                          inp.ownership_history, inp.customer, now)


def _prepare_parts(t: TimeoutsPolicy, record: Any, activities: Any, stage_history: Any,
                   ownership_history: Any, customer: Any, now: datetime) -> _Facts:
    f = _record_facts(record)
    f.customer = customer
    acts = _items(activities, f"{f.target} activities")
    stages = _items(stage_history, f"{f.target} stage_history")
    owners = _items(ownership_history, f"{f.target} ownership_history")
    if f.owner_id is not None and f.owner_since is None:
        f.owner_since = _tenure_start(
            f, _history(owners, OwnershipChange, f, "ownership_history", "owner_id"), now)
    elif owners:
        _history(owners, OwnershipChange, f, "ownership_history", "owner_id")  # validate
    if stages:
        hist = _history(stages, StageChange, f, "stage_history", "stage")
        past = [h for h in hist if h[0] <= now]
        if f.stage is None and past:
            f.stage = past[-1][1]
        for at, st in reversed(past):
            if st == f.stage:
                f.stage_entered = at
                break
    if f.owner_since is not None:
        _activity_times(acts, f, t, f.owner_since, now)
    else:
        f.first_follow_up = f.last_follow_up = None
    return f


# ---------------------------------------------------------------------------------------------
# Clock arithmetic (one helper per check/sweep call; caches live only as long as the call)
# ---------------------------------------------------------------------------------------------


#: One working interval of a date: wall open, wall close, UTC open, UTC close, and whether
#: wall time and real time advance together inside it (no UTC offset change).
_Row = tuple[timedelta, timedelta, datetime, datetime, bool]


class _DayTable:
    """Per-date working hours of one calendar, memoized (bounded).

    Every entry is a pure function of the (immutable) calendar, so one table is shared by all
    checks and sweeps of a compiled policy: concurrent users can only write equal values, and
    a memo that fills up is simply cleared.
    """

    __slots__ = ("_days", "_plans", "_targets", "_walls", "cal", "texts", "zone")

    _LIMIT = 4096

    def __init__(self, cal: Calendar) -> None:
        self.cal = cal
        self.zone = ZoneInfo(cal.timezone)
        self._days: dict[int, tuple[tuple[datetime, datetime], ...]] = {}
        self._walls: dict[int, tuple[tuple[int, int], ...]] = {}
        self._targets: dict[tuple[int, int], int] = {}
        self._plans: dict[tuple[int, int], tuple[tuple[_Row, ...], tuple[_Row, ...]]] = {}
        #: ``str(duration)`` of the policy's durations (a handful of compiled values)
        self.texts: dict[Duration, str] = {}

    def wall(self, ordinal: int) -> tuple[tuple[int, int], ...]:
        hit = self._walls.get(ordinal)
        if hit is None:
            out = []
            for s, e in self.cal.hours_on(date.fromordinal(ordinal)):
                a = ((s.hour * 60 + s.minute) * 60 + s.second) * 1_000_000 + s.microsecond
                b = 86_400_000_000 if e is None else (
                    ((e.hour * 60 + e.minute) * 60 + e.second) * 1_000_000 + e.microsecond)
                out.append((a, b))
            hit = tuple(out)
            if len(self._walls) >= self._LIMIT:
                self._walls.clear()
            self._walls[ordinal] = hit
        return hit

    def intervals(self, ordinal: int) -> tuple[tuple[datetime, datetime], ...]:
        hit = self._days.get(ordinal)
        if hit is None:
            day = date.fromordinal(ordinal)
            out = []
            for s, e in self.cal.hours_on(day):
                a = datetime.combine(day, s, self.zone).astimezone(UTC)
                b = (datetime.combine(day + timedelta(days=1), time(0), self.zone) if e is None
                     else datetime.combine(day, e, self.zone)).astimezone(UTC)
                out.append((a, b))
            hit = tuple(out)
            if len(self._days) >= self._LIMIT:
                self._days.clear()
            self._days[ordinal] = hit
        return hit

    def target(self, ordinal: int, n: int) -> int:
        """The date ``n`` working days after ``ordinal``."""
        key = (ordinal, n)
        hit = self._targets.get(key)
        if hit is None:
            t, left = ordinal, n
            while left:
                t += 1
                if self.wall(t):
                    left -= 1
            hit = t
            if len(self._targets) >= self._LIMIT:
                self._targets.clear()
            self._targets[key] = hit
        return hit

    def _rows(self, o: int) -> tuple[_Row, ...]:
        out = []
        zone = self.zone
        for (ws, we), (us, ue) in zip(self.wall(o), self.intervals(o), strict=True):
            a, b = timedelta(microseconds=ws), timedelta(microseconds=we)
            same = us.astimezone(zone).utcoffset() == ue.astimezone(
                zone).utcoffset()  # no DST change in [open, close]
            out.append((a, b, us, ue, same and ue - us == b - a))
        return tuple(out)

    def plan(self, ordinal: int, n: int) -> tuple[tuple[_Row, ...], tuple[_Row, ...]]:
        """Per (date, n): that date's intervals and the target date's, both as
        ``(wall open, wall close, utc open, utc close, exact)`` where ``exact`` means no UTC
        offset change inside the interval (so wall and real time advance together)."""
        key = (ordinal, n)
        hit = self._plans.get(key)
        if hit is None:
            hit = (self._rows(ordinal), self._rows(self.target(ordinal, n)))
            if len(self._plans) >= self._LIMIT:
                self._plans.clear()
            self._plans[key] = hit
        return hit


class _Clockwork:
    """Deadline arithmetic on the policy's calendar.

    Business days and plain calendar days/weeks are computed here from the calendar's
    per-date working hours (``Calendar.hours_on``, memoized in a :class:`_DayTable` that may
    be shared), following ``Calendar.add``'s documented semantics exactly (a property test
    compares the two); everything else is delegated to ``Calendar.add``. The per-instant memos
    live as long as this object (one call) and are bounded, so a sweep's memory does not grow
    with its size.
    """

    __slots__ = ("_adds", "_bdays", "_tails", "_texts", "_warns", "cal", "days", "remember",
                 "zone")

    _LIMIT = 4096
    _RLIMIT = 1 << 16

    def __init__(self, cal: Calendar, days: _DayTable | None = None,
                 remember: bool = False) -> None:
        self.cal = cal
        self.days = days if days is not None and days.cal is cal else _DayTable(cal)
        self.zone = self.days.zone
        self._adds: dict[tuple[datetime, Duration], datetime] = {}
        self._texts = self.days.texts
        #: with ``remember`` (a replay: the same record is checked again and again with the
        #: same anchors), business-day deadlines and warning times are memoized per instant too
        self.remember = remember
        self._bdays: dict[tuple[datetime, int], datetime] = {}
        self._warns: dict[tuple[datetime, Duration, datetime, Duration], datetime] = {}
        #: (clock id, anchor, id(duration), extensions) -> (duration, deadline, warn_at, base)
        self._tails: dict[tuple[str, datetime, int, int],
                          tuple[Duration, datetime, datetime | None, datetime]] = {}

    def add(self, start: datetime, d: Duration) -> datetime:
        unit = d.unit
        if unit == "business_days":
            if self.remember:
                key2 = (start, d.amount)
                out2 = self._bdays.get(key2)
                if out2 is None:
                    if len(self._bdays) >= self._RLIMIT:
                        self._bdays.clear()
                    out2 = self._bdays[key2] = self._add_days_fast(start, d.amount)
                return out2
            return self._add_days_fast(start, d.amount)
        if (unit == "days" or unit == "weeks") and not d.rest:
            local = start.astimezone(self.zone).replace(tzinfo=None)
            n = d.amount * 7 if unit == "weeks" else d.amount
            out = (local + timedelta(days=n)).replace(tzinfo=self.zone)
            return out.astimezone(UTC).astimezone(self.zone)
        key = (start, d)
        hit = self._adds.get(key)
        if hit is None:
            if len(self._adds) >= self._LIMIT:
                self._adds.clear()
            hit = self._adds[key] = self.cal.add(start, d)
        return hit

    def _opening(self, u: datetime) -> datetime:
        ordinal = u.astimezone(self.zone).toordinal()
        intervals = self.days.intervals
        for _ in range(3660):
            for s, e in intervals(ordinal):
                if u < e:
                    return s if u < s else u
            ordinal += 1
        return u  # pragma: no cover - ten years without working time

    def _add_days_fast(self, start: datetime, n: int) -> datetime:
        if n <= 0:
            return self._add_days(start, n)
        zone = self.zone
        plan = self.days.plan
        ordinal = start.astimezone(zone).toordinal()
        for _ in range(3660):  # find the clock's effective start: the next opening
            here, there = plan(ordinal, n)
            for ws, _we, us, ue, exact in here:
                if start < ue:
                    if not exact:
                        return self._add_days(start, n)
                    wall = ws + (start - us) if start > us else ws
                    target = there[0][0]
                    if wall >= target:
                        for s2, e2, _u2, _v2, _x2 in there:
                            if wall < s2:
                                break
                            target = wall if wall <= e2 else e2
                    for s2, e2, u2, _v2, exact2 in there:
                        if s2 <= target <= e2:
                            if exact2:
                                return (u2 + (target - s2)).astimezone(zone)
                            break
                    return self._add_days(start, n)
            ordinal += 1
        return self._add_days(start, n)  # pragma: no cover - ten years without working time

    def _add_days(self, start: datetime, n: int) -> datetime:
        if n < 0:
            return self.cal.add(start, Duration("business_days", n, True))
        zone = self.zone
        eff = self._opening(start.astimezone(UTC)).astimezone(zone)
        if n == 0:
            return eff
        target_day = self.days.target(eff.toordinal(), n)
        wall = ((eff.hour * 60 + eff.minute) * 60 + eff.second) * 1_000_000 + eff.microsecond
        hours = self.days.wall(target_day)
        target = hours[0][0]
        if wall >= target:
            for s, e in hours:
                if wall < s:
                    break
                target = wall if wall <= e else e
        local = datetime.fromordinal(target_day) + timedelta(microseconds=target)
        return local.replace(tzinfo=zone).astimezone(UTC).astimezone(zone)

    def text(self, d: Duration) -> str:
        hit = self._texts.get(d)
        if hit is None:
            if len(self._texts) >= self._LIMIT:
                self._texts.clear()
            hit = self._texts[d] = str(d)
        return hit

    def add_n(self, start: datetime, d: Duration, n: int) -> datetime:
        for _ in range(n):
            start = self.add(start, d)
        return start

    def end_of_day(self, t: datetime) -> datetime:
        local = t.astimezone(self.zone)
        if local.hour == 0 and local.minute == 0 and local.second == 0 and not local.microsecond:
            return local
        nxt = datetime.combine(local.date() + timedelta(days=1), time(0), self.zone)
        return nxt.astimezone(UTC).astimezone(self.zone)

    def minus_business(self, t: datetime, seconds: int) -> datetime:
        """The instant ``w`` with exactly ``seconds`` of working time in ``[w, t)``."""
        remaining = timedelta(seconds=seconds)
        intervals = self.days.intervals
        u = t.astimezone(UTC)
        ordinal = t.astimezone(self.zone).toordinal()
        floor = ordinal - 3660  # ten years without working time: give up at the clock start
        while ordinal > floor:
            for s, e in reversed(intervals(ordinal)):
                if s >= u:
                    continue
                hi = e if e < u else u
                avail = hi - s
                if remaining <= avail:
                    return (hi - remaining).astimezone(self.zone)
                remaining -= avail
                u = s
            ordinal -= 1
        return u.astimezone(self.zone)

    def warn_at(self, anchor: datetime, d: Duration, deadline: datetime,
                warn: Duration) -> datetime:
        if self.remember:
            key = (anchor, d, deadline, warn)
            hit = self._warns.get(key)
            if hit is None:
                if len(self._warns) >= self._RLIMIT:
                    self._warns.clear()
                hit = self._warns[key] = self._warn_at(anchor, d, deadline, warn)
            return hit
        return self._warn_at(anchor, d, deadline, warn)

    def _warn_at(self, anchor: datetime, d: Duration, deadline: datetime,
                 warn: Duration) -> datetime:
        if warn.unit == d.unit and not warn.rest and not d.rest:
            left = d.amount - warn.amount
            if left <= 0:
                return self.cal.next_opening(anchor) if d.business else anchor
            return self.add(anchor, Duration(d.unit, left, d.business))
        if not warn.business:
            neg = Duration(warn.unit, -warn.amount, False,
                           tuple((u, -n) for u, n in warn.rest), warn.iso)
            return self.cal.add(deadline, neg)
        return self.minus_business(deadline, warn.business_seconds)


# ---------------------------------------------------------------------------------------------
# Checking
# ---------------------------------------------------------------------------------------------


class _Eval:
    """Per-clock result; the :class:`ClockStatus` is built only when a decision needs it."""

    __slots__ = ("_args", "_status", "base_deadline", "clock", "deadline", "n_ext", "note",
                 "state", "warn_at")

    def __init__(self, clock: _Clock, state: ClockState, args: tuple[Any, ...] | None,
                 status: ClockStatus | None, deadline: datetime | None = None,
                 warn_at: datetime | None = None, base_deadline: datetime | None = None,
                 note: Reason | None = None, n_ext: int = 0) -> None:
        self.clock = clock
        self.state = state
        self._args = args
        self._status = status
        self.deadline = deadline
        self.warn_at = warn_at
        self.base_deadline = base_deadline
        self.note = note
        self.n_ext = n_ext

    @property
    def status(self) -> ClockStatus:
        if self._status is None:
            self._status = _status(*(self._args or ()))
        return self._status


def _settled(c: _Clock, status: ClockStatus) -> _Eval:
    return _Eval(c, status.state, None, status)


def _grade_at(changes: tuple[tuple[datetime, str], ...], at: datetime) -> str | None:
    found = None
    for t, g in changes:
        if t <= at:
            found = g
        else:
            break
    if found is None and changes:
        return changes[0][1]
    return found


def _current_grade(t: TimeoutsPolicy, f: _Facts, now: datetime) -> str | None:
    if f.grade is not None:
        return f.grade
    if f.grade_changes:
        return _grade_at(f.grade_changes, now)
    if t.grading is not None:
        idx = _grade_index(t.grading, _mapping(f))
        return t.grading.grades[idx].id if idx is not None else t.grading.default
    return None


def _mapping(f: _Facts) -> Any:
    if f.mapping is None:
        f.mapping = as_mapping(f.model)
    return f.mapping


def _tail(c: _Clock, t: TimeoutsPolicy, cw: _Clockwork, anchor: datetime, d: Duration,
          deadline: datetime, n_ext: int) -> tuple[datetime, datetime | None, datetime]:
    """A clock's deadline, warning time and deadline before extensions, from its anchor,
    duration and plain deadline (``cw.add(anchor, d)``)."""
    warn_at = cw.warn_at(anchor, d, deadline, c.warn) if c.warn is not None else None
    base_deadline = deadline
    if n_ext and t.extension is not None:
        deadline = cw.add_n(deadline, t.extension, n_ext)
        if warn_at is not None:
            warn_at = cw.add_n(warn_at, t.extension, n_ext)
    if c.end_of_day:
        deadline = cw.end_of_day(deadline)
        base_deadline = cw.end_of_day(base_deadline)
    return deadline, warn_at, base_deadline


def _eval_clock(c: _Clock, f: _Facts, t: TimeoutsPolicy, now: datetime,
                cw: _Clockwork) -> _Eval | None:
    base = f.owner_since
    if base is None:  # pragma: no cover - unowned records never get here
        return None
    grade_: str | None = None
    stage: str | None = None
    note: Reason | None = None
    ctype = c.type
    if ctype == "follow_up":
        if not c.restart:
            if f.first_follow_up is not None:
                return _settled(c, _status(c.id, ctype, "met", "follow_up",
                                           f.first_follow_up))
            anchor, kind = base, "ownership_start"
        elif f.last_follow_up is not None:
            anchor, kind = f.last_follow_up, "last_follow_up"
        else:
            anchor, kind = base, "ownership_start"
    elif ctype == "conversion":
        if f.converted_at is not None and f.converted_at <= now:
            return _settled(c, _status(c.id, ctype, "met", "conversion", f.converted_at))
        if c.start == "first_follow_up":
            if f.first_follow_up is None:
                return _settled(c, _status(c.id, ctype, "not_started", "first_follow_up"))
            anchor, kind = f.first_follow_up, "first_follow_up"
        else:
            anchor, kind = base, "ownership_start"
    elif ctype == "stage":
        stage = f.stage
        if stage is None or stage not in c.stages:
            return None
        entered = f.stage_entered
        if entered is not None and entered > base:
            anchor, kind = entered, "stage_entry"
        else:
            anchor, kind = base, "ownership_start"
    else:
        anchor, kind = base, "ownership_start"

    d: Duration | None
    if stage is not None:  # a stage clock (only those set `stage`)
        d = c.stages[stage]
        deadline = cw.add(anchor, d)
    elif c.by_grade:
        grade_ = _current_grade(t, f, now)
        d = c.by_grade.get(grade_, c.within) if grade_ is not None else c.within
        if d is None:
            return None
        deadline = cw.add(anchor, d)
        later = [(at, g) for at, g in f.grade_changes if anchor < at <= now] \
            if f.grade_changes else None
        if later:
            start_grade = _grade_at(f.grade_changes, anchor)
            if t.grade_change == "restart":
                at, g = later[-1]
                grade_ = f.grade or g
                d = c.by_grade.get(grade_, c.within)
                if d is None:
                    return None
                anchor, kind = at, "grade_change"
                deadline = cw.add(anchor, d)
                note = Reason("grade_changed",
                              f"{c.id}: grade changed {start_grade} -> {grade_} at "
                              f"{at.isoformat()}; the clock restarted", c.ref.id, c.ref.location,
                              {"clock": c.id, "from": start_grade, "to": grade_,
                               "at": at, "rule": "restart"})
            else:
                best_d, best = d, deadline
                seen = {grade_}
                for other in (start_grade, *(g2 for _, g2 in later)):
                    if other in seen:
                        continue
                    seen.add(other)
                    dg = c.by_grade.get(other, c.within) if other is not None else c.within
                    if dg is None:
                        continue
                    dl = cw.add(anchor, dg)
                    if dl < best:
                        best, best_d, grade_ = dl, dg, other
                d, deadline = best_d, best
                note = Reason("grade_changed",
                              f"{c.id}: grade changed since the clock started; keeping the "
                              f"stricter deadline of grade {grade_}", c.ref.id, c.ref.location,
                              {"clock": c.id, "from": start_grade, "to": later[-1][1],
                               "at": later[-1][0], "rule": "keep_stricter", "applied": grade_})
    else:
        d = c.within
        if d is None:  # pragma: no cover - compile guarantees a duration
            return None
        deadline = cw.add(anchor, d)
    if d is None:  # pragma: no cover - every branch above sets a duration or returns
        return None
    n_ext = 0
    if f.extensions and c.extendable and t.extension is not None and t.max_extensions:
        n_ext = min(f.extensions, t.max_extensions)
    if cw.remember:
        key = (c.id, anchor, id(d), n_ext)
        hit = cw._tails.get(key)
        if hit is None or hit[0] is not d:
            if len(cw._tails) >= cw._RLIMIT:
                cw._tails.clear()
            hit = cw._tails[key] = (d, *_tail(c, t, cw, anchor, d, deadline, n_ext))
        deadline, warn_at, base_deadline = hit[1], hit[2], hit[3]
    else:
        deadline, warn_at, base_deadline = _tail(c, t, cw, anchor, d, deadline, n_ext)
    if now >= deadline:
        state: ClockState = "overdue"
    elif warn_at is not None and now >= warn_at:
        state = "warning"
    else:
        state = "running"
    args = (
        c.id, ctype, state, kind, anchor, cw.text(d), deadline, warn_at,
        int((deadline - now).total_seconds()),  # toward zero, negative when overdue
        grade_, stage, n_ext,
    )
    return _Eval(c, state, args, None, deadline, warn_at, base_deadline, note, n_ext)


def _ctx(f: _Facts) -> dict[str, Any]:
    rec = _mapping(f)
    if f.stage is not None and rec.get("stage") != f.stage:  # the stage read from the history
        rec = {**rec, "stage": f.stage}
    if f.customer is not None:
        cust = _lead_mapping(f.customer, f"{f.target} customer")
    elif f.type == "customer":
        cust = rec
    else:
        cust = {}
    return {"record": rec, "customer": cust}


def _issues(cond: Condition, ctx: Mapping[str, Any], ref: RuleRef) -> list[RuleIssue]:
    return [RuleIssue(code, msg, ref.id, ref.location, fld)
            for code, fld, msg in cond.explain(ctx).issues]


def _holds(t: TimeoutsPolicy, f: _Facts, reasons: list[Reason], errors: list[RuleIssue],
           tb: TraceBuilder | None) -> list[str]:
    held: list[str] = []
    if f.locked:
        if t.max_locks is None or f.lock_count is None or f.lock_count <= t.max_locks:
            held.append("lock")
            reasons.append(Reason("locked", f"{f.target} is locked by its owner",
                                  data={"owner_locks": f.lock_count, "max": t.max_locks}))
        else:
            reasons.append(Reason(
                "lock_limit_exceeded",
                f"{f.target} is locked but its owner holds {f.lock_count} locks "
                f"(max {t.max_locks}); the lock does not hold",
                data={"owner_locks": f.lock_count, "max": t.max_locks}))
    if t.exemptions:
        ctx = _ctx(f)
        for cond, ref, types in t.exemptions:
            if f.type not in types:
                continue
            r = cond(ctx)
            if r is True:
                held.append(ref.id)
                reasons.append(Reason("exempt", f"exemption {ref.id} holds {f.target}",
                                      ref.id, ref.location))
            elif r is None:
                errors.extend(_issues(cond, ctx, ref))
            if tb is not None:
                tb.add(TraceStatus.MATCHED if r is True else
                       TraceStatus.ERRORED if r is None else TraceStatus.SKIPPED,
                       f"exemption {ref.id}: {cond.explain(ctx).render()}", ref)
    return held


def _scope(c: _Clock, f: _Facts, errors: list[RuleIssue],
           tb: TraceBuilder | None) -> tuple[str, RuleRef | None]:
    if c.scope_rules:
        ctx = _ctx(f)
        for cond, scope, ref in c.scope_rules:
            r = cond(ctx)
            if tb is not None:
                tb.add(TraceStatus.MATCHED if r is True else
                       TraceStatus.ERRORED if r is None else TraceStatus.SKIPPED,
                       f"scope rule {ref.id} -> {scope}: {cond.explain(ctx).render()}", ref)
            if r is True:
                return scope, ref
            if r is None:
                errors.extend(_issues(cond, ctx, ref))
    return c.scope, None


def _recipients(who: tuple[str, ...], f: _Facts) -> list[str]:
    out: list[str] = []
    for w in who:
        rep = f.owner_id if w == "owner" else f.manager_id
        if rep is not None and rep not in out:
            out.append(rep)
    return out


def _release(t: TimeoutsPolicy, f: _Facts, ev: _Eval, cw: _Clockwork, reasons: list[Reason],
             errors: list[RuleIssue], tb: TraceBuilder | None,
             ) -> tuple[ReleaseOutcome, list[Effect], list[Assumption]]:
    c = ev.clock
    deadline = ev.deadline
    if deadline is None:  # pragma: no cover - only overdue clocks (with deadlines) get here
        raise RuntimeError(f"clock {c.id} released without a deadline")
    scope, scope_ref = _scope(c, f, errors, tb)
    records = [f.target]
    if scope == "opportunity_and_customer":
        if f.customer_id is not None:
            records.append(f"customer:{f.customer_id}")
        else:
            errors.append(RuleIssue("missing_field", "the opportunity has no customer_id, so "
                                    "only the opportunity is released", c.ref.id,
                                    c.ref.location, "record.customer_id"))
    owner = f.owner_id
    tenure = f"{owner}@{f.owner_since.isoformat() if f.owner_since else '-'}"
    cooldown = t.cooldown if t.cooldown is not None else t.pool_cooldowns.get(c.pool)
    cooldown_until = cw.add(deadline, cooldown) if cooldown is not None else None
    why = f"clock {c.id} overdue since {deadline.isoformat()}"
    effects: list[Effect] = []
    dl_iso = deadline.isoformat()
    for target in records:
        effects.append(_fast_effect(
            "release_to_pool", target, f"release_to_pool:{target}:{tenure}",
            MappingProxyType({"pool": c.pool, "previous_owner_id": owner, "reason": why,
                              "clock": c.id, "deadline": dl_iso})))
    if cooldown_until is not None and owner is not None:
        until_iso = cooldown_until.isoformat()
        for target in records:
            effects.append(_fast_effect(
                "start_cooldown", f"rep:{owner}", f"start_cooldown:rep:{owner}:{target}@{tenure}",
                MappingProxyType({"record": target, "pool": c.pool, "until": until_iso})))
    for rep in _recipients(t.notify_release, f):
        effects.append(_fast_effect(
            "notify", f"rep:{rep}", f"notify:rep:{rep}:release:{f.target}@{tenure}",
            MappingProxyType({"message": f"{', '.join(records)} released to {c.pool}: {why}",
                              "record": f.target, "template": "timeout_release"})))
    for target in records:
        effects.append(_fast_effect(
            "audit", target, f"audit:{target}:release@{tenure}",
            MappingProxyType({"action": "release", "actor": "salesrules", "reason": why,
                              "previous_owner_id": owner})))
    reasons.append(Reason(
        "released", f"{', '.join(records)} released to {c.pool} ({scope})", c.ref.id,
        c.ref.location, {"clock": c.id, "pool": c.pool, "scope": scope,
                         "scope_rule": scope_ref.id if scope_ref else None}))
    assumptions = [Assumption(f"{f.target}.owner_id", owner, "still owned by the same rep"),
                   Assumption(f"{f.target}.owner_since", f.owner_since,
                              "the same tenure")]
    if c.type in ("follow_up", "conversion"):
        assumptions.append(Assumption(f"{f.target}.last_follow_up_at", f.last_follow_up,
                                      "no newer qualifying follow-up"))
    if c.type == "conversion":
        assumptions.append(Assumption(f"{f.target}.converted_at", None, "not converted"))
    if c.type == "stage":
        assumptions.append(Assumption(f"{f.target}.stage", f.stage, "stage unchanged"))
    out = ReleaseOutcome(c.id, c.pool, scope, tuple(records), owner, deadline, cooldown_until,
                         scope_ref.id if scope_ref else None)
    return out, effects, assumptions


_ON_TIME = Reason("on_time", "every clock is within its deadline")


def _decide(t: TimeoutsPolicy, f: _Facts, now: datetime, cw: _Clockwork, explain: bool,
            digest: str) -> Decision[CheckOutcome]:
    tb = TraceBuilder() if explain else None
    if f.stage is not None and f.status == "open":  # a terminal stage closes the record too
        if f.stage in t.won_stages:
            f.status = "won"
        elif f.stage in t.lost_stages:
            f.status = "lost"
    if f.status == "lost":
        return _check_decision(_outcome(f.target, "none"),
                               (_fast_reason("closed", f"{f.target} is lost: no clock runs"),),
                               trace=tb.build() if tb else None, digest=digest)
    if f.status == "won":
        return _check_decision(_outcome(f.target, "none", held_by=("won",)),
                               (_fast_reason("won", f"{f.target} is won: never released"),),
                               trace=tb.build() if tb else None, digest=digest)
    if f.type == "lead" and f.converted_at is not None and f.converted_at <= now:
        return _check_decision(
            _outcome(f.target, "none"),
            (_fast_reason("converted", f"{f.target} was converted: its clocks stopped"),),
            trace=tb.build() if tb else None, digest=digest)
    if f.owner_id is None:
        return _check_decision(
            _outcome(f.target, "none"),
            (_fast_reason("unowned", f"{f.target} has no owner: no clock runs"),),
            trace=tb.build() if tb else None, digest=digest)
    evals: list[_Eval] = []
    errors: list[RuleIssue] = []
    reasons: list[Reason] = []
    for c in t.by_type.get(f.type, ()):
        if c.when is not None:
            ctx = _ctx(f)
            r = c.when(ctx)
            if r is None:
                errors.extend(_issues(c.when, ctx, c.ref))
            if r is not True:
                if tb is not None:
                    tb.add(TraceStatus.SKIPPED, f"clock {c.id} does not apply", c.ref)
                continue
        ev = _eval_clock(c, f, t, now, cw)
        if ev is None:
            if tb is not None:
                tb.add(TraceStatus.SKIPPED, f"clock {c.id}: no duration applies", c.ref)
            continue
        evals.append(ev)
        if ev.note is not None:
            reasons.append(ev.note)
        if tb is not None:
            s = ev.status
            tb.add(TraceStatus.MATCHED if s.state in ("warning", "overdue") else TraceStatus.NOTE,
                   f"clock {c.id}: {s.state}; anchor {s.anchor_kind} "
                   f"{s.anchor.isoformat() if s.anchor else '-'}; duration {s.duration}; "
                   f"deadline {s.deadline.isoformat() if s.deadline else '-'}",
                   c.ref, {"warn_at": s.warn_at, "now": now, "grade": s.grade,
                           "stage": s.stage})
    overdue = [e for e in evals if e.state == "overdue"]
    warning = [e for e in evals if e.state == "warning"]
    statuses = tuple(e.status for e in evals)
    effects: list[Effect] = []
    assumptions: list[Assumption] = []
    release: ReleaseOutcome | None = None
    warned: tuple[str, ...] = ()
    held: tuple[str, ...] = ()
    action: Action = "none"
    nxt: datetime | None = None
    if overdue or warning:
        for e in (*overdue, *warning):
            dl_iso = _iso(e.deadline)
            reasons.append(_fast_reason(
                e.state, f"clock {e.clock.id} {'overdue since' if e.state == 'overdue' else 'due'}"
                f" {dl_iso or '-'}",
                e.clock.ref.id, e.clock.ref.location,
                MappingProxyType({"clock": e.clock.id, "deadline": dl_iso})))
        held = tuple(_holds(t, f, reasons, errors, tb))
    if overdue and not held:
        first = min(overdue, key=lambda e: (e.deadline, evals.index(e)))
        release, effects, assumptions = _release(t, f, first, cw, reasons, errors, tb)
        action = "release"
    if action == "none" and not held:
        ext_notes = [e for e in evals if e.n_ext and e.base_deadline is not None
                     and e.base_deadline <= now and e.state != "overdue"] if f.extensions else ()
        for e in ext_notes:
            reasons.append(Reason(
                "extended", f"clock {e.clock.id}: {e.n_ext} extension(s) moved its "
                f"deadline to {e.deadline.isoformat() if e.deadline else '-'}",
                e.clock.ref.id, e.clock.ref.location,
                {"clock": e.clock.id, "extensions": e.n_ext}))
        if f.extensions > t.max_extensions and any(e.n_ext for e in evals):
            reasons.append(Reason(
                "extension_cap_reached", f"{f.extensions} extensions granted, "
                f"{t.max_extensions} count", data={"granted": f.extensions,
                                                     "max": t.max_extensions}))
        if warning:
            action = "warn"
            warned = tuple(e.clock.id for e in warning)
            for e in warning:
                dl_iso = _iso(e.deadline)
                dl = dl_iso or "-"
                for rep in _recipients(t.notify_warn, f):
                    effects.append(_fast_effect(
                        "notify", f"rep:{rep}", f"notify:rep:{rep}:warn:{e.clock.id}:"
                        f"{f.target}:{dl}",
                        MappingProxyType({
                            "message": f"{f.target}: {e.clock.id} runs out at {dl}",
                            "record": f.target, "template": "timeout_warning",
                            "clock": e.clock.id, "deadline": dl_iso})))
        for e in evals:
            if e.state == "running":
                cand = e.warn_at if e.warn_at is not None and e.warn_at > now else e.deadline
            elif e.state == "warning":
                cand = e.deadline
            else:
                continue
            if cand is not None and (nxt is None or cand < nxt):
                nxt = cand
        if not evals:
            reasons.append(Reason("no_clock", f"no clock applies to {f.target}"))
        elif action == "none":
            reasons.append(_ON_TIME)
    out = _outcome(f.target, action, statuses, release, warned, held, nxt)
    return _check_decision(
        out, tuple(reasons), tuple(effects), tuple(assumptions), nxt, tuple(errors),
        tb.build() if tb is not None else None, digest,
    )


def _lean_entry(t: TimeoutsPolicy, f: _Facts, now: datetime,
                cw: _Clockwork, act: bool = True) -> SweepEntry | None:
    """The sweep entry of a record without building its decision (equal to
    ``_entry(_decide(...))``); ``None`` when the full decision is needed (a terminal stage, a
    clock condition that could not be evaluated, or, unless ``act``, a clock in its warning
    period or overdue)."""
    if f.status == "open" and (f.stage in t.won_stages or f.stage in t.lost_stages):
        return None
    if (f.status != "open" or f.owner_id is None
            or (f.type == "lead" and f.converted_at is not None and f.converted_at <= now)):
        return _sweep_entry(f.target, "none")
    nxt: datetime | None = None
    first_over: _Eval | None = None
    first_warn: _Eval | None = None
    for c in t.by_type.get(f.type, ()):
        if c.when is not None:
            r = c.when(_ctx(f))
            if r is None:
                return None
            if r is not True:
                continue
        e = _eval_clock(c, f, t, now, cw)
        if e is None:
            continue
        state = e.state
        if state == "running":
            w = e.warn_at
            cand = w if w is not None and w > now else e.deadline
        elif state == "warning":
            if first_warn is None:
                first_warn = e
            cand = e.deadline
        elif state == "overdue":
            # the earliest deadline, the first such clock on a tie (as ``_decide``)
            if first_over is None or (e.deadline is not None and first_over.deadline is not None
                                      and e.deadline < first_over.deadline):
                first_over = e
            continue
        else:  # met, not_started
            continue
        if cand is not None and (nxt is None or cand < nxt):
            nxt = cand
    if first_over is None and first_warn is None:
        return _sweep_entry(f.target, "none", nxt)
    if not act:
        return None
    if _lean_held(t, f):
        return _sweep_entry(f.target, "none")
    if first_over is not None:
        c = first_over.clock
        return _sweep_entry(f.target, "release", None, c.id, c.pool, _lean_scope(c, f),
                            first_over.deadline)
    if first_warn is None:  # pragma: no cover - one of the two is set here
        return None
    return _sweep_entry(f.target, "warn", nxt, first_warn.clock.id,
                        deadline=first_warn.deadline)


def _lean_held(t: TimeoutsPolicy, f: _Facts) -> bool:
    """Whether :func:`_holds` holds the record (its reasons and errors aside)."""
    if f.locked and (t.max_locks is None or f.lock_count is None
                     or f.lock_count <= t.max_locks):
        return True
    if t.exemptions:
        ctx: dict[str, Any] | None = None
        for cond, _ref, types in t.exemptions:
            if f.type not in types:
                continue
            if ctx is None:
                ctx = _ctx(f)
            if cond(ctx) is True:
                return True
    return False


def _lean_scope(c: _Clock, f: _Facts) -> str:
    """The scope :func:`_scope` chooses (its trace and errors aside)."""
    if c.scope_rules:
        ctx = _ctx(f)
        for cond, scope, _ref in c.scope_rules:
            if cond(ctx) is True:
                return scope
    return c.scope


def _entry(d: Decision[CheckOutcome]) -> SweepEntry:
    o = d.outcome
    if o.release is not None:
        r = o.release
        return _sweep_entry(o.record, o.action, o.next_check_at, r.clock, r.pool, r.scope,
                            r.deadline)
    if o.action == "warn":
        st = next(c for c in o.clocks if c.clock == o.warnings[0])
        return _sweep_entry(o.record, o.action, o.next_check_at, st.clock,
                            deadline=st.deadline)
    return _sweep_entry(o.record, o.action, o.next_check_at)


def _timeouts(policy: Any) -> TimeoutsPolicy:
    if not _has(policy, "timeouts"):
        raise RecordError("policy", "timeouts", "this policy has no 'timeouts' section")
    t: TimeoutsPolicy = policy.section("timeouts")
    return t


def _now(now: Any) -> datetime:
    if not isinstance(now, datetime):
        raise RecordError("now", "now", f"expected an aware datetime, got {type(now).__name__}")
    if now.tzinfo is None or now.utcoffset() is None:
        raise RecordError("now", "now", "naive datetime: a timezone-aware value is required")
    return now


def check(
    policy: Any,
    record: Any,
    *,
    now: datetime,
    activities: Sequence[Any] = (),
    stage_history: Sequence[Any] = (),
    ownership_history: Sequence[Any] = (),
    customer: Any = None,
    explain: bool = False,
) -> Decision[CheckOutcome]:
    """Check one record's clocks at ``now``: nothing to do, warn, or release.

    Args:
        policy: a loaded policy with a ``timeouts`` section.
        record: a :class:`~salesrules.records.TrackedRecord` or a mapping of one.
        now: the current instant (timezone-aware).
        activities: the record's activities (models or mappings).
        stage_history: the opportunity's stage changes.
        ownership_history: the record's ownership changes (used when ``owner_since`` is
            absent).
        customer: the opportunity's customer, for exemption and scope conditions.
        explain: build a trace.

    Returns:
        A ``check`` decision whose outcome lists every clock, the action and, for a release,
        the pool and scope; ``next_check_at`` is when to check again.

    Raises:
        RecordError: ``now`` is naive, or a record is invalid (names the record and field).
    """
    t = _timeouts(policy)
    now = _now(now)
    inp = CheckInput(record, activities, stage_history, ownership_history, customer)
    f = _prepare(t, inp, now)
    return _decide(t, f, now, _Clockwork(t.calendar, t.days), explain,
                   str(getattr(policy, "digest", "")))


class _Checker:
    """:func:`check` for many calls over time (a replay): the deadline memos live as long as
    this object, whose owner keeps it for one replay. Decisions equal :func:`check`'s."""

    __slots__ = ("cw", "digest", "t")

    def __init__(self, policy: Any) -> None:
        self.t = _timeouts(policy)
        self.cw = _Clockwork(self.t.calendar, self.t.days, remember=True)
        self.digest = str(getattr(policy, "digest", ""))

    def check(self, record: Any, *, now: datetime, activities: Sequence[Any] = (),
              stage_history: Sequence[Any] = (), ownership_history: Sequence[Any] = (),
              customer: Any = None) -> Decision[CheckOutcome]:
        """As :func:`check` (without a trace)."""
        t = self.t
        now = _now(now)
        inp = CheckInput(record, activities, stage_history, ownership_history, customer)
        return _decide(t, _prepare(t, inp, now), now, self.cw, False, self.digest)


_ITEM_KEYS = frozenset({"record", "activities", "stage_history", "ownership_history",
                        "customer"})


def _prepare_item(t: TimeoutsPolicy, item: Any, now: datetime) -> _Facts:
    """``_prepare(t, _as_input(item), now)`` without building the :class:`CheckInput` of a
    plain dict item."""
    if type(item) is dict and "record" in item and "type" not in item \
            and _ITEM_KEYS.issuperset(item):
        get = item.get
        return _prepare_parts(t, item["record"], get("activities") or (),
                              get("stage_history") or (), get("ownership_history") or (),
                              get("customer"), now)
    return _prepare(t, _as_input(item), now)


def _as_input(item: Any) -> CheckInput:
    if type(item) is dict and "record" in item and "type" not in item \
            and _ITEM_KEYS.issuperset(item):
        return CheckInput(item["record"], item.get("activities") or (),
                          item.get("stage_history") or (), item.get("ownership_history") or (),
                          item.get("customer"))
    if isinstance(item, CheckInput):
        return item
    if isinstance(item, Mapping) and "record" in item and "type" not in item:
        if not _ITEM_KEYS.issuperset(item):
            extra = set(item) - _ITEM_KEYS
            raise RecordError("sweep item", sorted(extra)[0], "unknown key in a sweep item")
        return CheckInput(item["record"], item.get("activities") or (),
                          item.get("stage_history") or (), item.get("ownership_history") or (),
                          item.get("customer"))
    return CheckInput(item)


def sweep(policy: Any, items: Iterable[Any], now: datetime) -> Iterator[Decision[CheckOutcome]]:
    """Check many records at one ``now``, lazily: one ``check`` decision per item, in order.

    Each item is a :class:`CheckInput`, a mapping ``{"record": ..., "activities": [...],
    "stage_history": [...], "ownership_history": [...], "customer": ...}``, or a bare record.
    The results equal calling :func:`check` one by one; memory does not grow with the number
    of records swept (only a bounded deadline memo is kept for the call).

    Args:
        policy: a loaded policy with a ``timeouts`` section.
        items: the records to check (any iterable, e.g. a generator over a database cursor).
        now: the current instant (timezone-aware).

    Yields:
        One ``check`` decision per item.

    Raises:
        RecordError: ``now`` is naive, or an item is invalid (names the record and field).
    """
    t = _timeouts(policy)
    now = _now(now)
    cw = _Clockwork(t.calendar, t.days)
    digest = str(getattr(policy, "digest", ""))
    for item in items:
        yield _decide(t, _prepare_item(t, item, now), now, cw, False, digest)


def sweep_entries(policy: Any, items: Iterable[Any], now: datetime) -> Iterator[SweepEntry]:
    """Check many records at one ``now`` and yield only each one's :class:`SweepEntry`.

    The schedule-only form of :func:`sweep` for a frequent job: per record, the action
    (``none`` / ``warn`` / ``release``), the next check time and, for a warning or a release,
    the clock, pool, scope and deadline — equal to what :func:`sweep`'s decisions say, but a
    record with nothing to do costs no decision. Call :func:`check` (or use :func:`sweep_all`)
    for the effects of the records to act on. Lazy; memory does not grow with the sweep.

    Args:
        policy: a loaded policy with a ``timeouts`` section.
        items: the records to check (as for :func:`sweep`).
        now: the current instant (timezone-aware).

    Yields:
        One entry per item, in order.

    Raises:
        RecordError: ``now`` is naive, or an item is invalid.
    """
    t = _timeouts(policy)
    now = _now(now)
    cw = _Clockwork(t.calendar, t.days)
    digest = str(getattr(policy, "digest", ""))
    for item in items:
        f = _prepare_item(t, item, now)
        entry = _lean_entry(t, f, now, cw)
        yield entry if entry is not None else _entry(_decide(t, f, now, cw, False, digest))


def sweep_all(policy: Any, items: Iterable[Any], now: datetime) -> Decision[SweepOutcome]:
    """Run :func:`sweep` and collect it into one ``sweep`` decision.

    Releases and warnings are ordered by deadline, then record; next checks by time, then
    record; the effects are those of the releases, then of the warnings, in that order.

    Args:
        policy: a loaded policy with a ``timeouts`` section.
        items: the records to check.
        now: the current instant (timezone-aware).

    Returns:
        A ``sweep`` decision with a :class:`SweepOutcome`; ``next_check_at`` is the earliest
        next check of any record.

    Raises:
        RecordError: ``now`` is naive, or an item is invalid.
    """
    releases: list[tuple[SweepEntry, tuple[Effect, ...]]] = []
    warnings: list[tuple[SweepEntry, tuple[Effect, ...]]] = []
    nexts: list[SweepEntry] = []
    errors: list[RuleIssue] = []
    t = _timeouts(policy)
    now = _now(now)
    cw = _Clockwork(t.calendar, t.days)
    digest = str(getattr(policy, "digest", ""))
    n = 0
    for item in items:
        n += 1
        f = _prepare_item(t, item, now)
        entry = _lean_entry(t, f, now, cw, act=False)
        if entry is None:
            d = _decide(t, f, now, cw, False, digest)
            errors.extend(d.errors)
            entry = _entry(d)
            if entry.action == "release":
                releases.append((entry, d.effects))
            elif entry.action == "warn":
                warnings.append((entry, d.effects))
        if entry.next_check_at is not None:
            nexts.append(entry)

    def key(x: tuple[SweepEntry, tuple[Effect, ...]]) -> tuple[datetime, str]:
        e = x[0]
        return (e.deadline or now, e.record)

    releases.sort(key=key)
    warnings.sort(key=key)
    nexts.sort(key=lambda e: (e.next_check_at or now, e.record))
    effects = tuple(eff for _, effs in (*releases, *warnings) for eff in effs)
    nxt = nexts[0].next_check_at if nexts else None
    reasons = (Reason("swept", f"{n} records checked: {len(releases)} to release, "
                      f"{len(warnings)} to warn", data={"checked": n}),)
    return Decision(
        kind="sweep",
        outcome=SweepOutcome(n, tuple(e for e, _ in releases), tuple(e for e, _ in warnings),
                             tuple(nexts), nxt),
        reasons=reasons, effects=effects, next_check_at=nxt, errors=tuple(errors),
        policy_digest=str(getattr(policy, "digest", "")),
    )


# ---------------------------------------------------------------------------------------------
# CLI request kinds
# ---------------------------------------------------------------------------------------------


def _req_list(request: Mapping[str, Any], key: str) -> Sequence[Any]:
    v = request.get(key, ())
    if v is None:
        return ()
    if not isinstance(v, list | tuple):
        raise RecordError("request", key, "expected a list")
    return v


def _decide_grade(policy: Any, request: Mapping[str, Any], now: datetime,
                  explain: bool) -> Decision[GradeOutcome]:
    lead = request.get("lead", request.get("record"))
    if not isinstance(lead, Mapping):
        raise RecordError("request", "lead", "expected the lead as a JSON object")
    return grade(policy, lead, explain=explain)


def _decide_check(policy: Any, request: Mapping[str, Any], now: datetime,
                  explain: bool) -> Decision[CheckOutcome]:
    record = request.get("record")
    if not isinstance(record, Mapping):
        raise RecordError("request", "record", "expected the record as a JSON object")
    cust = request.get("customer")
    if cust is not None and not isinstance(cust, Mapping):
        raise RecordError("request", "customer", "expected a JSON object")
    return check(policy, record, now=now, activities=_req_list(request, "activities"),
                 stage_history=_req_list(request, "stage_history"),
                 ownership_history=_req_list(request, "ownership_history"), customer=cust,
                 explain=explain)


def _decide_sweep(policy: Any, request: Mapping[str, Any], now: datetime,
                  explain: bool) -> Decision[SweepOutcome]:
    return sweep_all(policy, _req_list(request, "items"), now)


SECTIONS: tuple[SectionSpec, ...] = (
    SectionSpec(
        name="grading",
        model=GradingSection,
        compile=_compile_grading,
        kinds=MappingProxyType({"grade": _decide_grade}),
        description="lead grades from completeness",
    ),
    SectionSpec(
        name="timeouts",
        model=TimeoutsSection,
        compile=_compile_timeouts,
        kinds=MappingProxyType({"check": _decide_check, "sweep": _decide_sweep}),
        after=("calendar", "grading", "pools", "stages"),
        description="follow-up, conversion, per-stage protection and overall release clocks",
    ),
)
