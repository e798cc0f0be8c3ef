"""Who gets a new lead: routing rules, eligibility, strategies, caps, overflow, pool claims.

Two rule-file sections live here: ``pools`` (public pools 公海 and how reps claim from them)
and ``assignment`` (protected-customer routing, then ordered rules). The decide functions are
:func:`assign`, :func:`assign_many` and :func:`claim`; ``docs/assignment.md`` is the guide.

Order of evaluation for :func:`assign`:

1. **Protected customers.** When the lead's company matches a registered customer (same
   normalised name, or the same valid unified social credit code) whose protection has not
   ended (``now < protected_until``), the lead goes to that customer's owner and the creator
   gets a ``notify`` effect suggesting a collaboration request. A merely similar name is only
   flagged (``probable_duplicate``); an expired protection is noted (``protection_expired``) and
   the rules apply.
2. **Rules, first match in order.** The first rule whose ``when`` holds picks its candidates.
   When none of them is eligible, the rule's ``if_none_eligible`` says what happens: ``next``
   (keep matching the rules after it), ``default`` (the section's default), or a queue/pool.
3. **Default.** No rule decided: the section's ``default`` queue or pool (``no_rule_matched``).

A decision always names an owner: a rep, a queue or a pool.

Counting rules of caps (what a cap's ``count`` means; all counts come from the host's
:class:`~salesrules.records.RepCounts`, and a ``by_cap`` count the host supplies wins):

* ``assignments_per_period`` — timestamps in ``assigned_at`` that fall in the *same calendar
  day / ISO week (Monday–Sunday) / month as now, in the policy's time zone*; the count resets at
  local midnight (day), Monday 00:00 (week) or the 1st 00:00 (month).
* ``assignments_in_window`` — timestamps ``t`` in ``assigned_at`` with ``now - window < t <= now``
  (elapsed time; the window is a fixed length: seconds to weeks).
* ``open_backlog`` — the rep's ``open_records`` matching the cap's ``where`` condition (root
  ``record``; no condition = all of them).
* ``holdings`` — ``holdings``, minus ``won`` when ``exclude_won: true``.

A rep is under a cap while ``count < max`` (so assigning one more makes at most ``max``). Caps
listed by a rule (default: every cap of the section) must all pass, for each rep they apply to.
The counts a decision relied on are returned as assumptions (``cap:<cap>:<rep>``) so the host
can compare-and-set.

Pool claims (``claim``) check, and report *every* failed check: membership, admin
self-claim, active, the record is in the pool and listed once, the claim delay
(``now >= released_at + claim_delay``), the previous owner's cooldown, claims per local day and
per local month (counted from ``claimed_at`` in the policy's time zone; reset at local midnight /
the 1st), and the holdings cap. Cooldown boundary: with ``end: exclusive`` the previous owner
may claim again at exactly ``released_at + duration``; with ``end: inclusive`` that instant is
still inside the cooldown. A refused batch claim has no effects and changes no count.
"""

from __future__ import annotations

import bisect
import difflib
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from salesrules._section import CompileContext, SectionModel, SectionSpec, did_you_mean
from salesrules.decision import (
    Assumption,
    Decision,
    Effect,
    Reason,
    RuleIssue,
    RuleRef,
    Trace,
    TraceStatus,
    TraceStep,
)
from salesrules.errors import RecordError
from salesrules.records import (
    PoolRecord,
    RegisteredCustomer,
    RepCounts,
    RosterRep,
    coerce,
    parse_datetime,
    require_aware,
)

if TYPE_CHECKING:
    from salesrules.calendar import Calendar, Duration
    from salesrules.conditions import Condition

__all__ = [
    "ASSIGNMENT_CODES",
    "SECTIONS",
    "Assignment",
    "AssignmentPolicy",
    "AssignmentSection",
    "ClaimOutcome",
    "ClaimRefusal",
    "PoolsPolicy",
    "PoolsSection",
    "Roster",
    "assign",
    "assign_many",
    "claim",
    "normalize_company_name",
    "validate_credit_code",
]

#: Issue codes of this module (errors SR220–SR229, warnings SR310–SR319).
ASSIGNMENT_CODES: Mapping[str, str] = MappingProxyType(
    {
        "SR220": "invalid target (kind:id) or a default that is not a queue or pool",
        "SR221": "unknown team (not declared in assignment.teams)",
        "SR222": "unknown rep (not declared in assignment.reps)",
        "SR223": "unknown queue or pool",
        "SR224": "unknown cap id",
        "SR225": "a cap without a counting rule, or without the parameter its rule needs",
        "SR226": "a rule naming reps does not say what happens when none is eligible",
        "SR227": "a rolling window that is not a fixed length (business time, months, years)",
        "SR228": "the strategy needs something the rule lacks (a cap to weigh or load by)",
        "SR310": "a rule is shadowed by an earlier catch-all rule",
        "SR311": "a rule has the same condition as an earlier rule that always decides",
        "SR312": "a cap is used by no rule",
        "SR313": "a pool nobody can claim from (no members, or only admins who may not claim)",
    }
)

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _fast(cls: Any, names: tuple[str, ...]) -> Any:
    """A constructor for the frozen slotted ``cls`` that skips ``__init__`` and freezing.

    Why: a decision freezes every mapping it receives (a JSON walk per Reason, Effect,
    Assumption), and a frozen dataclass sets each field through ``object.__setattr__``; on the
    batch path that cost more than the routing itself. The values passed here are already
    frozen (``MappingProxyType`` of JSON scalars, tuples), exactly what ``__post_init__`` would
    produce, so the objects equal regularly built ones (a test checks this). The slot
    descriptors are called directly. If the class's fields ever differ from ``names``, the
    regular constructor is used.
    """
    import dataclasses

    if tuple(f.name for f in dataclasses.fields(cls)) != names or not all(
        hasattr(cls.__dict__.get(n), "__set__") for n in names
    ):
        return lambda *values: cls(*values)
    new = object.__new__
    setters = tuple(cls.__dict__[n].__set__ for n in names)
    if len(names) == 3:
        s0, s1, s2 = setters

        def make3(a: Any, b: Any, c: Any) -> Any:
            obj = new(cls)
            s0(obj, a)
            s1(obj, b)
            s2(obj, c)
            return obj

        return make3
    if len(names) == 4:
        t0, t1, t2, t3 = setters

        def make4(a: Any, b: Any, c: Any, d: Any) -> Any:
            obj = new(cls)
            t0(obj, a)
            t1(obj, b)
            t2(obj, c)
            t3(obj, d)
            return obj

        return make4

    if len(names) == 5:
        u0, u1, u2, u3, u4 = setters

        def make5(a: Any, b: Any, c: Any, d: Any, e: Any) -> Any:
            obj = new(cls)
            u0(obj, a)
            u1(obj, b)
            u2(obj, c)
            u3(obj, d)
            u4(obj, e)
            return obj

        return make5
    if len(names) == 7:
        v0, v1, v2, v3, v4, v5, v6 = setters

        def make7(a: Any, b: Any, c: Any, d: Any, e: Any, f: Any, g: Any) -> Any:
            obj = new(cls)
            v0(obj, a)
            v1(obj, b)
            v2(obj, c)
            v3(obj, d)
            v4(obj, e)
            v5(obj, f)
            v6(obj, g)
            return obj

        return make7

    def make(*values: Any) -> Any:
        obj = new(cls)
        for put, value in zip(setters, values, strict=True):
            put(obj, value)
        return obj

    return make


_new_step = _fast(TraceStep, ("status", "message", "rule_id", "location", "values"))


class _Tracer:
    """A :class:`~salesrules.decision.TraceBuilder` for flat JSON values, without the freeze walk."""

    __slots__ = ("steps",)

    def __init__(self) -> None:
        self.steps: list[TraceStep] = []

    def add(
        self,
        status: TraceStatus,
        message: str,
        rule: RuleRef | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> None:
        """Append a step; ``values`` must hold JSON scalars (or flat lists/dicts of them)."""
        self.steps.append(_new_step(
            status, message, rule.id if rule else None, rule.location if rule else None,
            _fz(dict(values)) if values else _EMPTY,
        ))

    def build(self) -> Trace:
        """Freeze the collected steps."""
        return Trace(tuple(self.steps))


_new_reason = _fast(Reason, ("code", "message", "rule_id", "location", "data"))
_new_effect = _fast(Effect, ("kind", "target", "idempotency_key", "params"))
_new_assumption = _fast(Assumption, ("key", "expected", "description"))


def _fz(value: Any) -> Any:
    """Freeze plain JSON-native data (dicts, lists, str/int/bool/None) the way decisions do."""
    if type(value) is dict:
        return MappingProxyType({k: _fz(v) for k, v in value.items()})
    if type(value) is list or type(value) is tuple:
        return tuple(_fz(v) for v in value)
    return value

# =============================================================================================
# Company identity: name normalisation and unified social credit codes (GB 32100-2015)
# =============================================================================================

_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # 31 characters: no I, O, S, V, Z
_USCC_VALUE = {c: i for i, c in enumerate(_USCC_CHARS)}
_USCC_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))  # 1, 3, 9, 27, 19, 26, 16, 17, 20, …


def validate_credit_code(code: str) -> str | None:
    """Check a unified social credit code (统一社会信用代码, GB 32100-2015).

    The code has 18 characters from ``0-9 A-H J-N P-R T-U W-Y``; the 18th is the check
    character: ``(31 - sum(value(c_i) * 3**i mod 31 for i < 17) mod 31) mod 31``. Spaces and
    hyphens are ignored and letters are upper-cased (after NFKC, so full-width input works).

    Args:
        code: the code as written.

    Returns:
        ``None`` when the code is valid, else why not (a short message).
    """
    text = _canonical_code(code)
    if len(text) != 18:
        return f"a credit code has 18 characters, got {len(text)}"
    bad = [c for c in text if c not in _USCC_VALUE]
    if bad:
        return f"character {bad[0]!r} is not allowed in a credit code"
    total = sum(_USCC_VALUE[c] * w for c, w in zip(text[:17], _USCC_WEIGHTS, strict=True))
    expected = _USCC_CHARS[(31 - total % 31) % 31]
    if text[17] != expected:
        return f"check character is {text[17]!r}, expected {expected!r}"
    return None


def _canonical_code(code: str) -> str:
    return re.sub(r"[\s\-]", "", unicodedata.normalize("NFKC", code)).upper()


_CN_SUFFIXES = (
    "股份有限公司",
    "有限责任公司",
    "集团有限公司",
    "有限公司",
    "分公司",
    "公司",
)
_CN_SUFFIX_KEEP = {"集团有限公司": "集团"}
_EN_SUFFIX = re.compile(
    r"(?:^|(?<=[\s,.]))(?:co\.?\s*,?\s*ltd|company\s+limited|corporation|incorporated|"
    r"limited|ltd|inc|corp|llc|gmbh|plc|co)\.?$"
)
_BRACKETS = re.compile(r"^\(([^()]*)\)|\(([^()]*)\)$")
_PUNCT = re.compile(r"[\s.,'\"·、，。]+")


def normalize_company_name(name: str) -> str:
    """Normalise a company name so that spelling variants of one company compare equal.

    Steps: Unicode NFKC (full-width ``ＡＢＣ`` → ``ABC``, ``（）`` → ``()``), ``【】[]`` → ``()``,
    case-fold, collapse spaces; then repeatedly strip a legal-form suffix (有限公司,
    有限责任公司, 股份有限公司, 公司, ``Co., Ltd.``, ``Inc.``, ``Corp.``, ``LLC`` …) and a
    bracketed prefix or suffix such as a city (``(北京)``); finally drop spaces and punctuation.
    English suffixes are removed only after a separator, so ``Costco`` keeps its ``co``.

    Args:
        name: the name as written.

    Returns:
        The normalised key (may be empty for a name made only of a legal form).
    """
    text = unicodedata.normalize("NFKC", name)
    text = text.replace("【", "(").replace("】", ")").replace("[", "(").replace("]", ")")
    text = re.sub(r"\s+", " ", text.casefold()).strip(" ,.")
    while True:
        before = text
        text = text.strip(" ,.")
        for suffix in _CN_SUFFIXES:
            if text.endswith(suffix) and len(text) > len(suffix):
                text = text[: -len(suffix)] + _CN_SUFFIX_KEEP.get(suffix, "")
                break
        text = _EN_SUFFIX.sub("", text).strip(" ,.") or text
        stripped = _BRACKETS.sub("", text).strip()
        if stripped:
            text = stripped
        if text == before:
            break
    return _PUNCT.sub("", text)


# =============================================================================================
# Rule-file models: the ``pools`` and ``assignment`` sections
# =============================================================================================


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RepSelector(_Model):
    """Which reps: everyone, or those in any of the listed teams / ids / roles / regions."""

    all: bool = Field(default=False, description="every rep of the roster")
    teams: tuple[str, ...] = Field(default=(), description="members of any of these teams")
    reps: tuple[str, ...] = Field(default=(), description="these rep ids")
    roles: tuple[str, ...] = Field(default=(), description="reps with any of these roles")
    regions: tuple[str, ...] = Field(default=(), description="reps of any of these regions")


class ClaimLimits(_Model):
    """How many records a rep may claim per local calendar day and month."""

    per_day: int | None = Field(default=None, ge=1, description="claims per local day")
    per_month: int | None = Field(default=None, ge=1, description="claims per local month")


class HoldingsLimit(_Model):
    """A cap on what a rep holds after the claim."""

    max: int = Field(ge=0, description="records a rep may hold, the claimed ones included")
    exclude_won: bool = Field(description="whether won customers are left out of the count")


class CooldownSpec(_Model):
    """How long the previous owner must wait before claiming a released record back."""

    duration: str = Field(description="e.g. '3 days' (counted from released_at)")
    end: Literal["inclusive", "exclusive"] = Field(
        description="exclusive: claimable again at exactly released_at + duration; "
        "inclusive: that instant is still in the cooldown"
    )


class PoolSpec(_Model):
    """One public pool (公海): who may claim from it, limits, cooldown and claim delay."""

    name: str = Field(default="", description="display name, e.g. 线索公海")
    record: Literal["lead", "customer"] = Field(default="lead", description="what it holds")
    members: RepSelector = Field(description="who may claim from the pool")
    admins: RepSelector = Field(default_factory=RepSelector, description="pool admins")
    admins_can_claim: bool = Field(
        default=True, description="false: admins may not claim for themselves"
    )
    claims: ClaimLimits = Field(default_factory=ClaimLimits)
    holdings: HoldingsLimit | None = None
    previous_owner_cooldown: CooldownSpec | None = None
    claim_delay: str | None = Field(
        default=None, description="a newly released record is claimable after this delay"
    )


class PoolsSection(RootModel[dict[str, PoolSpec]]):
    """The ``pools`` section: pool id → pool."""

    model_config = ConfigDict(frozen=True)


class CapSpec(_Model):
    """A per-rep cap, with its counting rule (see the module docstring)."""

    count: (
        Literal["assignments_per_period", "assignments_in_window", "open_backlog", "holdings"]
        | None
    ) = Field(default=None, description="the counting rule (required)")
    period: Literal["day", "week", "month"] | None = Field(
        default=None, description="for assignments_per_period"
    )
    window: str | None = Field(default=None, description="for assignments_in_window, e.g. '24 hours'")
    where: Any = Field(default=None, description="for open_backlog: condition on `record`")
    exclude_won: bool | None = Field(default=None, description="for holdings")
    max: int = Field(ge=0, description="the rep is under the cap while count < max")
    per_rep: dict[str, int] = Field(default_factory=dict, description="rep id → its own max")
    applies_to: RepSelector | None = Field(default=None, description="default: every rep")


class RuleSpec(_Model):
    """One routing rule: when it applies, whom it names, how it picks, and the overflow."""

    id: str
    description: str = ""
    when: Any = Field(default=None, description="condition on lead/creator; absent = always")
    to: str | tuple[str, ...] = Field(
        description="team:ID, rep:ID, creator, same_superior (a list unions them), "
        "or queue:ID / pool:ID"
    )
    same_superior: bool = Field(
        default=False, description="candidates must share the creator's manager"
    )
    same_region: bool = Field(default=False, description="candidate.region must equal lead.region")
    eligible: Any = Field(
        default=None, description="extra condition on candidate (roots lead, creator, candidate)"
    )
    strategy: Literal["round_robin", "least_loaded", "weighted", "creator_first"] = "round_robin"
    rotation: str | None = Field(
        default=None, description="state key of the pointer (default: the target text)"
    )
    load_by: str | None = Field(default=None, description="least_loaded: the cap measuring load")
    weight_by: str | None = Field(default=None, description="weighted: the cap giving weights")
    caps: tuple[str, ...] | None = Field(default=None, description="default: every cap")
    if_none_eligible: str | None = Field(
        default=None, description="next | default | queue:ID | pool:ID"
    )


class ProtectionSpec(_Model):
    """Routing of a lead whose company is a protected registered customer to its owner."""

    company_field: str = Field(default="company", description="lead field with the company name")
    credit_code_field: str = Field(default="credit_code", description="lead field with the USCC")
    similar_threshold: float = Field(
        default=0.85, gt=0, le=1, description="flag names at least this similar (0..1]"
    )
    caps: Literal["ignore", "enforce"] = Field(
        description="ignore: the owner gets the lead even over a cap; enforce: a capped "
        "owner falls back to the rules"
    )
    notify_creator: bool = Field(default=True, description="suggest a collaboration request")


class AssignmentSection(SectionModel):
    """The ``assignment`` section: declared names, caps, protection, rules and the default."""

    match: Literal["first_match"] = Field(
        default="first_match", description="the first rule whose `when` holds decides"
    )
    teams: tuple[str, ...] = Field(default=(), description="team ids rules may name")
    reps: tuple[str, ...] = Field(default=(), description="rep ids rules and caps may name")
    queues: tuple[str, ...] = Field(default=(), description="queue ids rules may name")
    default: str = Field(description="queue:ID or pool:ID when no rule decides")
    caps: dict[str, CapSpec] = Field(default_factory=dict)
    protection: ProtectionSpec | None = None
    rules: tuple[RuleSpec, ...] = ()


# =============================================================================================
# Compiled forms
# =============================================================================================

OwnerKind = Literal["rep", "queue", "pool"]
_REP_KINDS = frozenset({"team", "rep", "creator", "same_superior"})


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed target: ``kind`` is team, rep, creator, same_superior, queue or pool."""

    kind: str
    ident: str | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.ident}" if self.ident else self.kind


@dataclass(frozen=True, slots=True)
class Selector:
    """A compiled :class:`RepSelector`."""

    all: bool
    teams: frozenset[str]
    reps: frozenset[str]
    roles: frozenset[str]
    regions: frozenset[str]

    def matches(self, rep: RosterRep) -> bool:
        """Whether ``rep`` is selected."""
        return (
            self.all
            or rep.id in self.reps
            or (rep.region is not None and rep.region in self.regions)
            or not self.teams.isdisjoint(rep.teams)
            or not self.roles.isdisjoint(rep.roles)
        )

    @property
    def empty(self) -> bool:
        """Whether it selects nobody whatever the roster."""
        return not (self.all or self.teams or self.reps or self.roles or self.regions)


def _selector(spec: RepSelector) -> Selector:
    return Selector(
        spec.all,
        frozenset(spec.teams),
        frozenset(spec.reps),
        frozenset(spec.roles),
        frozenset(spec.regions),
    )


@dataclass(frozen=True, slots=True)
class CompiledPool:
    """A compiled pool."""

    id: str
    name: str
    record: str
    members: Selector
    admins: Selector
    admins_can_claim: bool
    per_day: int | None
    per_month: int | None
    holdings_max: int | None
    holdings_exclude_won: bool
    cooldown: Duration | None
    cooldown_inclusive: bool
    claim_delay: Duration | None
    ref: RuleRef | None = None


@dataclass(frozen=True, slots=True)
class PoolsPolicy:
    """The compiled ``pools`` section."""

    pools: Mapping[str, CompiledPool]
    calendar: Calendar


@dataclass(frozen=True, slots=True)
class CompiledCap:
    """A compiled cap."""

    id: str
    count: str
    period: str | None
    window: timedelta | None
    where: Condition | None
    exclude_won: bool
    max: int
    per_rep: Mapping[str, int]
    applies_to: Selector | None
    ref: RuleRef

    def limit(self, rep_id: str) -> int:
        """The max for ``rep_id`` (its override, else the cap's)."""
        return self.per_rep.get(rep_id, self.max)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A compiled rule."""

    id: str
    ref: RuleRef
    when: Condition | None
    targets: tuple[Target, ...]
    terminal: Target | None
    same_superior: bool
    same_region: bool
    eligible: Condition | None
    strategy: str
    rotation: str
    rotation_by_superior: bool  # one pointer per creator's superior (same_superior targets)
    index: int  # position in the rule list
    caps: tuple[CompiledCap, ...]
    load_cap: CompiledCap | None
    weight_cap: CompiledCap | None
    overflow: Target | None  # None = next rule; Target("default") = the section default


@dataclass(frozen=True, slots=True)
class CompiledProtection:
    """The compiled protection settings."""

    company_field: str
    credit_code_field: str
    similar_threshold: float
    enforce_caps: bool
    notify_creator: bool


@dataclass(frozen=True, slots=True)
class AssignmentPolicy:
    """The compiled ``assignment`` section (immutable; shared by every decision)."""

    rules: tuple[CompiledRule, ...]
    default: Target
    caps: tuple[CompiledCap, ...]
    protection: CompiledProtection | None
    pools: Mapping[str, CompiledPool]
    calendar: Calendar
    table: Any = field(default=None, compare=False)  # conditions.RuleTable over the rules


# =============================================================================================
# Compilation
# =============================================================================================


def _parse_target(text: str) -> Target | None:
    text = text.strip()
    if text in ("creator", "same_superior"):
        return Target(text)
    kind, sep, ident = text.partition(":")
    if sep and kind in ("team", "rep", "queue", "pool") and ident.strip():
        return Target(kind, ident.strip())
    return None


def _compile_pools(model: PoolsSection, ctx: CompileContext) -> PoolsPolicy:
    pools: dict[str, CompiledPool] = {}
    for pid, spec in model.root.items():
        path: tuple[str | int, ...] = ("pools", pid)
        cooldown = None
        if spec.previous_owner_cooldown is not None:
            cooldown = ctx.duration(
                spec.previous_owner_cooldown.duration,
                (*path, "previous_owner_cooldown", "duration"),
            )
        delay = None
        if spec.claim_delay is not None:
            delay = ctx.duration(spec.claim_delay, (*path, "claim_delay"))
        members, admins = _selector(spec.members), _selector(spec.admins)
        if members.empty or (not spec.admins_can_claim and members == admins):
            ctx.warn(
                "SR313",
                f"nobody can claim from pool '{pid}'",
                (*path, "members"),
                hint="list member teams/roles/reps, or `all: true`",
            )
        pools[pid] = CompiledPool(
            id=pid,
            name=spec.name or pid,
            record=spec.record,
            members=members,
            admins=admins,
            admins_can_claim=spec.admins_can_claim,
            per_day=spec.claims.per_day,
            per_month=spec.claims.per_month,
            holdings_max=spec.holdings.max if spec.holdings else None,
            holdings_exclude_won=bool(spec.holdings and spec.holdings.exclude_won),
            cooldown=cooldown,
            cooldown_inclusive=bool(
                spec.previous_owner_cooldown and spec.previous_owner_cooldown.end == "inclusive"
            ),
            claim_delay=delay,
            ref=ctx.rule_ref(pid, path),
        )
    return PoolsPolicy(MappingProxyType(pools), ctx.calendar)


_FIXED_UNITS: Mapping[str, int] = MappingProxyType(
    {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400, "weeks": 604800}
)


def _fixed_length(duration: Duration) -> timedelta | None:
    if duration.business:
        return None
    seconds = 0
    for unit, amount in duration.components:
        factor = _FIXED_UNITS.get(str(unit))
        if factor is None:
            return None
        seconds += factor * amount
    return timedelta(seconds=seconds)


class _Checker:
    """Reference checks shared by caps, rules and the default."""

    def __init__(
        self, model: AssignmentSection, ctx: CompileContext, pools: Mapping[str, Any]
    ) -> None:
        self.ctx = ctx
        self.teams = set(model.teams)
        self.reps = set(model.reps)
        self.queues = set(model.queues)
        self.pools = pools

    def selector(self, spec: RepSelector, path: tuple[str | int, ...], rule_id: str | None) -> None:
        for i, team in enumerate(spec.teams):
            self.name("team", team, (*path, "teams", i), rule_id)
        for i, rep in enumerate(spec.reps):
            self.name("rep", rep, (*path, "reps", i), rule_id)

    def name(self, kind: str, ident: str, path: tuple[str | int, ...], rule_id: str | None) -> bool:
        known, code, where = {
            "team": (self.teams, "SR221", "assignment.teams"),
            "rep": (self.reps, "SR222", "assignment.reps"),
            "queue": (self.queues, "SR223", "assignment.queues"),
            "pool": (set(self.pools), "SR223", "the pools section"),
        }[kind]
        if ident in known:
            return True
        listed = ", ".join(sorted(known)[:8]) or "none"
        hint = did_you_mean(ident, known) or f"declare it in {where} (declared: {listed})"
        self.ctx.error(code, f"unknown {kind} '{ident}'", path, rule_id=rule_id, hint=hint)
        return False

    def target(self, text: str, path: tuple[str | int, ...], rule_id: str | None) -> Target | None:
        target = _parse_target(text)
        if target is None:
            self.ctx.error(
                "SR220",
                f"invalid target '{text}'",
                path,
                rule_id=rule_id,
                hint="use team:ID, rep:ID, creator, same_superior, queue:ID or pool:ID",
            )
            return None
        if target.ident is not None and not self.name(target.kind, target.ident, path, rule_id):
            return None
        return target


def _compile_caps(
    model: AssignmentSection, ctx: CompileContext, check: _Checker
) -> dict[str, CompiledCap]:
    caps: dict[str, CompiledCap] = {}
    for cid, spec in model.caps.items():
        path: tuple[str | int, ...] = ("assignment", "caps", cid)
        ok = True
        window = None
        if spec.count is None:
            ctx.error(
                "SR225",
                f"cap '{cid}' has no counting rule",
                path,
                hint="add count: assignments_per_period | assignments_in_window | "
                "open_backlog | holdings",
            )
            ok = False
        elif spec.count == "assignments_per_period" and spec.period is None:
            ctx.error("SR225", f"cap '{cid}' counts per period but names no period", path,
                      hint="add period: day | week | month")
            ok = False
        elif spec.count == "assignments_in_window":
            if spec.window is None:
                ctx.error("SR225", f"cap '{cid}' counts in a window but names no window", path,
                          hint="add window: '24 hours'")
                ok = False
            else:
                duration = ctx.duration(spec.window, (*path, "window"))
                window = _fixed_length(duration) if duration is not None else None
                if duration is not None and window is None:
                    ctx.error(
                        "SR227",
                        f"window '{spec.window}' of cap '{cid}' is not a fixed length",
                        (*path, "window"),
                        hint="use seconds, minutes, hours, days or weeks of elapsed time",
                    )
                ok = ok and window is not None
        elif spec.count == "holdings" and spec.exclude_won is None:
            ctx.error("SR225", f"cap '{cid}' counts holdings but does not say whether won "
                      "customers count", path, hint="add exclude_won: true | false")
            ok = False
        where = None
        if spec.where is not None:
            where = ctx.condition(spec.where, (*path, "where"), roots=frozenset({"record"}))
        for rep in spec.per_rep:
            check.name("rep", rep, (*path, "per_rep", rep), None)
        if spec.applies_to is not None:
            check.selector(spec.applies_to, (*path, "applies_to"), None)
        if not ok or spec.count is None:
            continue
        caps[cid] = CompiledCap(
            id=cid,
            count=spec.count,
            period=spec.period,
            window=window,
            where=where,
            exclude_won=bool(spec.exclude_won),
            max=spec.max,
            per_rep=MappingProxyType(dict(spec.per_rep)),
            applies_to=_selector(spec.applies_to) if spec.applies_to is not None else None,
            ref=ctx.rule_ref(cid, path),
        )
    return caps


def _compile_assignment(model: AssignmentSection, ctx: CompileContext) -> AssignmentPolicy:
    pools_compiled: PoolsPolicy | None = ctx.compiled("pools")
    pools: Mapping[str, CompiledPool | None] = pools_compiled.pools if pools_compiled else _EMPTY
    if pools_compiled is None and ctx.model("pools") is not None:
        pools = dict.fromkeys(ctx.model("pools").root)  # broken pools: names still known
    check = _Checker(model, ctx, pools)
    caps = _compile_caps(model, ctx, check)
    used_caps: set[str] = set()

    default = check.target(model.default, ("assignment", "default"), None)
    if default is not None and default.kind not in ("queue", "pool"):
        ctx.error("SR220", f"the default must be a queue or a pool, not '{model.default}'",
                  ("assignment", "default"), hint="e.g. default: pool:lead_pool")
        default = None

    ctx.check_unique_ids((r.id, ("assignment", "rules", i)) for i, r in enumerate(model.rules))
    rules: list[CompiledRule] = []
    catch_all: str | None = None
    deciding_whens: dict[str, str] = {}
    for i, spec in enumerate(model.rules):
        path: tuple[str | int, ...] = ("assignment", "rules", i)
        rid = spec.id
        if catch_all is not None:
            ctx.warn("SR310", f"rule '{rid}' is shadowed by the earlier catch-all '{catch_all}'",
                     (*path, "id"), rule_id=rid,
                     hint=f"move it before '{catch_all}' or give '{catch_all}' a condition")
        when_key = json.dumps(spec.when, sort_keys=True, ensure_ascii=False, default=str)
        if spec.when is not None and when_key in deciding_whens and catch_all is None:
            ctx.warn("SR311", f"rule '{rid}' has the same condition as '{deciding_whens[when_key]}'"
                     ", which always decides", (*path, "when"), rule_id=rid)
        when = ctx.condition(spec.when, (*path, "when"), rule_id=rid) if spec.when is not None else None
        texts = (spec.to,) if isinstance(spec.to, str) else spec.to
        parsed = [check.target(t, (*path, "to") if isinstance(spec.to, str) else (*path, "to", j), rid)
                  for j, t in enumerate(texts)]
        targets = tuple(t for t in parsed if t is not None and t.kind in _REP_KINDS)
        terminals = [t for t in parsed if t is not None and t.kind not in _REP_KINDS]
        terminal = None
        if terminals and (len(parsed) > 1):
            ctx.error("SR220", "a queue or pool target stands alone (not in a list with reps)",
                      (*path, "to"), rule_id=rid)
        elif terminals:
            terminal = terminals[0]
        eligible = None
        if spec.eligible is not None:
            eligible = ctx.condition(spec.eligible, (*path, "eligible"),
                                     roots=frozenset({"lead", "creator", "candidate"}), rule_id=rid)
        cap_ids = tuple(model.caps) if spec.caps is None else spec.caps
        rule_caps: list[CompiledCap] = []
        for j, cid in enumerate(cap_ids):
            if cid in caps:
                rule_caps.append(caps[cid])
                used_caps.add(cid)
            elif cid not in model.caps:
                ctx.error("SR224", f"unknown cap '{cid}'", (*path, "caps", j), rule_id=rid,
                          hint=did_you_mean(cid, model.caps) or "caps are declared in assignment.caps")

        def cap_ref(cid: str | None, key: str) -> CompiledCap | None:
            if cid is None:
                return None
            if cid not in model.caps:
                ctx.error("SR224", f"unknown cap '{cid}'", (*path, key), rule_id=rid,  # noqa: B023
                          hint=did_you_mean(cid, model.caps))
                return None
            used_caps.add(cid)
            return caps.get(cid)

        load_cap = cap_ref(spec.load_by, "load_by")
        weight_cap = cap_ref(spec.weight_by, "weight_by")
        if spec.strategy == "least_loaded" and spec.load_by is None:
            load_cap = rule_caps[0] if rule_caps else None
            if load_cap is None:
                ctx.error("SR228", f"rule '{rid}' is least_loaded but has no cap to measure load",
                          (*path, "strategy"), rule_id=rid, hint="add load_by: <cap id>")
        overflow: Target | None = Target("default")
        if targets:
            if spec.if_none_eligible is None:
                ctx.error("SR226", f"rule '{rid}' does not say what happens when no candidate "
                          "is eligible", (*path, "to"), rule_id=rid,
                          hint="add if_none_eligible: next | default | pool:ID | queue:ID")
            elif spec.if_none_eligible == "next":
                overflow = None
            elif spec.if_none_eligible != "default":
                t = check.target(spec.if_none_eligible, (*path, "if_none_eligible"), rid)
                if t is not None and t.kind not in ("queue", "pool"):
                    ctx.error("SR226", "if_none_eligible must be next, default, queue:ID or pool:ID",
                              (*path, "if_none_eligible"), rule_id=rid)
                    t = None
                overflow = t or Target("default")
        decides = terminal is not None or overflow is not None
        if spec.when is None and decides and catch_all is None:
            catch_all = rid
        if spec.when is not None and decides:
            deciding_whens.setdefault(when_key, rid)
        rules.append(
            CompiledRule(
                id=rid,
                ref=ctx.rule_ref(rid, path),
                when=when,
                targets=targets,
                terminal=terminal,
                same_superior=spec.same_superior,
                same_region=spec.same_region,
                eligible=eligible,
                strategy=spec.strategy,
                rotation=spec.rotation or ",".join(str(t) for t in targets),
                rotation_by_superior=spec.rotation is None
                and any(t.kind == "same_superior" for t in targets),
                index=i,
                caps=tuple(rule_caps),
                load_cap=load_cap,
                weight_cap=weight_cap,
                overflow=overflow,
            )
        )
    for cid in caps:
        if cid not in used_caps:
            ctx.warn("SR312", f"cap '{cid}' is used by no rule", ("assignment", "caps", cid),
                     key=True)
    protection = None
    if model.protection is not None:
        p = model.protection
        protection = CompiledProtection(
            p.company_field, p.credit_code_field, p.similar_threshold, p.caps == "enforce",
            p.notify_creator,
        )
    compiled_rules = tuple(rules)
    return AssignmentPolicy(
        rules=compiled_rules,
        default=default or Target("queue", "unassigned"),
        caps=tuple(caps.values()),
        protection=protection,
        pools=MappingProxyType({k: v for k, v in pools.items() if v is not None}),
        calendar=ctx.calendar,
        table=_build_table(compiled_rules),
    )


def _build_table(rules: tuple[CompiledRule, ...]) -> Any:
    """Build the indexed first-match table over the rules (catch-alls match always)."""
    from salesrules.conditions import TRUE, RuleTable

    return RuleTable([(r.when if r.when is not None else TRUE, i) for i, r in enumerate(rules)])


# =============================================================================================
# Inputs: roster, counts, customers
# =============================================================================================


def _rep_record(data: Any, name: str) -> RosterRep:
    return coerce(RosterRep, data, name)


class Roster:
    """The reps assignment chooses from, validated once and indexed by id, team and manager.

    Build it once per roster change and pass it to many calls (``assign`` also accepts a plain
    list of reps and builds one per call). Member order is by rep id, so a rotation does not
    drift when the host lists reps in another order.
    """

    __slots__ = ("_by_id", "_by_manager", "_by_team", "_maps", "reps")

    reps: tuple[RosterRep, ...]

    def __init__(self, reps: Iterable[RosterRep | Mapping[str, Any]]) -> None:
        """Validate the reps.

        Args:
            reps: rep records (pydantic or dicts).

        Raises:
            RecordError: a rep is invalid, or two reps share an id.
        """
        if isinstance(reps, Mapping | str | bytes):
            raise RecordError("roster", "*", "expected a list of reps")
        items = tuple(_rep_record(r, f"roster[{i}]") for i, r in enumerate(reps))
        by_id: dict[str, RosterRep] = {}
        teams: dict[str, list[str]] = {}
        managers: dict[str, list[str]] = {}
        for i, rep in enumerate(items):
            if rep.id in by_id:
                raise RecordError(f"roster[{i}]", "id", f"rep id {rep.id!r} appears twice")
            by_id[rep.id] = rep
            for team in rep.teams:
                teams.setdefault(team, []).append(rep.id)
            if rep.manager_id is not None:
                managers.setdefault(rep.manager_id, []).append(rep.id)
        self.reps = items
        self._by_id = MappingProxyType(by_id)
        self._by_team = MappingProxyType({k: tuple(sorted(v)) for k, v in teams.items()})
        self._by_manager = MappingProxyType({k: tuple(sorted(v)) for k, v in managers.items()})
        self._maps = MappingProxyType(
            {r.id: MappingProxyType(r.model_dump()) for r in items}
        )

    @classmethod
    def of(cls, roster: Roster | Iterable[Any]) -> Roster:
        """Return ``roster`` if it is a :class:`Roster`, else build one."""
        return roster if isinstance(roster, Roster) else cls(roster)

    def get(self, rep_id: str) -> RosterRep | None:
        """The rep with this id, or ``None``."""
        return self._by_id.get(rep_id)

    def mapping(self, rep_id: str) -> Mapping[str, Any]:
        """The rep as a plain mapping (what conditions read)."""
        return self._maps.get(rep_id, _EMPTY)

    def team(self, team: str) -> tuple[str, ...]:
        """Ids of the team's members, sorted."""
        return self._by_team.get(team, ())

    def reports_of(self, manager_id: str) -> tuple[str, ...]:
        """Ids of the reps whose manager is ``manager_id``, sorted."""
        return self._by_manager.get(manager_id, ())

    def __len__(self) -> int:
        return len(self.reps)


class _Load:
    """One rep's counts during a decision (a working copy; the host's data is never changed)."""

    __slots__ = ("assigned_at", "by_cap", "cache", "claimed_at", "holdings", "last", "open", "won")

    def __init__(self, counts: RepCounts | None) -> None:
        c = counts or _NO_COUNTS
        self.assigned_at: list[datetime] = list(c.assigned_at)
        self.claimed_at: tuple[datetime, ...] = c.claimed_at
        self.open: list[Mapping[str, Any]] = list(c.open_records)
        self.holdings = c.holdings
        self.won = c.won
        self.last: datetime | None = c.last_assigned_at
        self.by_cap: dict[str, int] = dict(c.by_cap)
        self.cache: dict[str, int] = {}


_NO_COUNTS = RepCounts()


class _Loads:
    """Lazily validated counts for the reps a decision looks at."""

    __slots__ = ("_loads", "_raw")

    def __init__(self, counts: Mapping[str, Any] | None) -> None:
        if counts is not None and not isinstance(counts, Mapping):
            raise RecordError("counts", "*", "expected a mapping of rep id to counts")
        self._raw: Mapping[str, Any] = counts or _EMPTY
        self._loads: dict[str, _Load] = {}

    def get(self, rep_id: str) -> _Load:
        load = self._loads.get(rep_id)
        if load is None:
            raw = self._raw.get(rep_id)
            load = _Load(coerce(RepCounts, raw, f"counts[{rep_id!r}]") if raw is not None else None)
            self._loads[rep_id] = load
        return load


def _period_bounds(local: datetime, period: str) -> tuple[datetime, datetime]:
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        start = day
        nxt = day.date() + timedelta(days=1)
    elif period == "week":
        first = day.date() - timedelta(days=day.weekday())
        start = datetime.combine(first, day.timetz())
        nxt = first + timedelta(days=7)
    else:
        first = day.date().replace(day=1)
        start = datetime.combine(first, day.timetz())
        nxt = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
    return start, datetime.combine(nxt, day.timetz())


class _Clock:
    """``now`` with its local period bounds, computed once per decision (or batch)."""

    __slots__ = ("_bounds", "local", "now")

    def __init__(self, now: datetime, calendar: Calendar) -> None:
        self.now = now
        self.local = calendar.local(now)
        self._bounds: dict[str, tuple[datetime, datetime]] = {}

    def bounds(self, period: str) -> tuple[datetime, datetime]:
        b = self._bounds.get(period)
        if b is None:
            b = self._bounds[period] = _period_bounds(self.local, period)
        return b


def _count(cap: CompiledCap, load: _Load, clock: _Clock) -> int:
    """The rep's count under ``cap`` (see the module docstring for each counting rule)."""
    n = load.by_cap.get(cap.id)
    if n is not None:
        return n
    n = load.cache.get(cap.id)
    if n is not None:
        return n
    kind = cap.count
    if kind == "assignments_per_period":
        lo, hi = clock.bounds(cap.period or "day")
        n = sum(1 for t in load.assigned_at if lo <= t < hi)
    elif kind == "assignments_in_window":
        lo = clock.now - (cap.window or timedelta(0))
        n = sum(1 for t in load.assigned_at if lo < t <= clock.now)
    elif kind == "open_backlog":
        where = cap.where
        n = (
            len(load.open)
            if where is None
            else sum(1 for r in load.open if where({"record": r}) is True)
        )
    else:
        n = load.holdings - (load.won if cap.exclude_won else 0)
    load.cache[cap.id] = n
    return n


def _record_assignment(
    caps: tuple[CompiledCap, ...], load: _Load, lead: Mapping[str, Any], now: datetime
) -> None:
    """Update a rep's working counts after it receives ``lead`` (the documented host update)."""
    for cap in caps:
        delta = 1
        if cap.count == "open_backlog" and cap.where is not None:
            delta = 1 if cap.where({"record": lead}) is True else 0
        if cap.id in load.by_cap:
            load.by_cap[cap.id] += delta
        elif cap.id in load.cache:
            load.cache[cap.id] += delta
    load.assigned_at.append(now)
    load.open.append(lead)
    load.holdings += 1
    load.last = now


@dataclass(frozen=True, slots=True)
class _Customer:
    record: RegisteredCustomer
    norm: str
    code: str | None  # canonical, valid code (None when absent or malformed)
    code_error: str | None


class _CustomerIndex:
    """Registered customers by normalised name and by credit code."""

    __slots__ = ("all", "by_code", "by_name")

    def __init__(self, customers: Iterable[Any] | None) -> None:
        if customers is not None and isinstance(customers, Mapping | str | bytes):
            raise RecordError("customers", "*", "expected a list of registered customers")
        self.all: list[_Customer] = []
        self.by_name: dict[str, list[_Customer]] = {}
        self.by_code: dict[str, list[_Customer]] = {}
        for i, raw in enumerate(customers or ()):
            rec = coerce(RegisteredCustomer, raw, f"customers[{i}]")
            code = error = None
            if rec.credit_code:
                error = validate_credit_code(rec.credit_code)
                code = None if error else _canonical_code(rec.credit_code)
            c = _Customer(rec, normalize_company_name(rec.name) if rec.name else "", code, error)
            self.all.append(c)
            if c.norm:
                self.by_name.setdefault(c.norm, []).append(c)
            if code:
                self.by_code.setdefault(code, []).append(c)


# =============================================================================================
# Outcomes
# =============================================================================================


@dataclass(frozen=True, slots=True)
class Assignment:
    """Who owns a new lead: a rep, a queue or a pool, and the reason code behind it.

    Attributes:
        lead_id: the lead.
        owner_id: the rep, queue or pool id.
        owner_kind: ``rep``, ``queue`` or ``pool``.
        code: the deciding reason code (``protected_customer``, ``rule_matched``,
            ``no_rule_matched``, ``no_eligible_rep``, ``all_capped``).
        rule_id: the deciding rule (``None`` for the default or protection).
        strategy: how the rep was picked (``None`` unless a rule picked a rep).
        customer_id: the protected customer whose owner got the lead.
    """

    lead_id: str
    owner_id: str
    owner_kind: OwnerKind
    code: str
    rule_id: str | None = None
    strategy: str | None = None
    customer_id: str | None = None

    def summary(self) -> str:
        """One line: ``lead L-1 -> rep:r-east-1 (rule_matched by east-web)``."""
        by = f" by {self.rule_id}" if self.rule_id else ""
        return f"lead {self.lead_id} -> {self.owner_kind}:{self.owner_id} ({self.code}{by})"


_new_assignment = _fast(
    Assignment, ("lead_id", "owner_id", "owner_kind", "code", "rule_id", "strategy", "customer_id")
)


@dataclass(frozen=True, slots=True)
class ClaimRefusal:
    """One reason a claim is refused; ``record_id`` is ``None`` for rep-level reasons."""

    code: str
    message: str
    record_id: str | None = None


@dataclass(frozen=True, slots=True)
class ClaimOutcome:
    """Whether a rep may claim the records (all or nothing) and, if not, every reason why.

    Attributes:
        allowed: whether the whole batch may be claimed.
        rep_id: the claiming rep.
        pool: the pool claimed from.
        record_ids: the records asked for, in request order.
        refusals: every failed check (empty when allowed).
    """

    allowed: bool
    rep_id: str
    pool: str
    record_ids: tuple[str, ...]
    refusals: tuple[ClaimRefusal, ...] = ()

    def summary(self) -> str:
        """One line: ``r-1 claims 2 from lead_pool: allowed`` or the refusal codes."""
        verdict = "allowed" if self.allowed else "refused (" + ", ".join(
            sorted({r.code for r in self.refusals})) + ")"
        return f"{self.rep_id} claims {len(self.record_ids)} from {self.pool}: {verdict}"


# =============================================================================================
# Deciding an assignment
# =============================================================================================

_Exclusion = tuple[str, str, Mapping[str, Any]]  # (code, message, data)
_CapRow = tuple["CompiledCap", str, int, str, str]  # (cap, id, rep's max, key, description)
_FILTER_CODES = frozenset({"not_same_superior", "not_in_region", "condition_failed"})
_MIN_TIME = datetime(1, 1, 1, tzinfo=__import__("datetime").timezone.utc)
_STR_FIELDS = ("source", "region", "company", "credit_code", "creator_id")


class _Env:
    """What a decision reads besides the lead: built once per call, or once per batch."""

    __slots__ = ("ap", "cap_rows", "clock", "customers", "digest", "excl", "loads",
                 "none_by_rep", "none_memo", "owner_params", "reasons", "reasons1", "rep_static",
                 "roster", "rr_keys", "state", "steps", "team_cache", "when_paths")

    def __init__(
        self,
        ap: AssignmentPolicy,
        digest: str,
        roster: Roster,
        loads: _Loads,
        customers: _CustomerIndex,
        clock: _Clock,
        state: Mapping[str, Any],
    ) -> None:
        self.ap = ap
        self.digest = digest
        self.roster = roster
        self.loads = loads
        self.customers = customers
        self.clock = clock
        self.state = state
        self.team_cache: dict[int, tuple[str, ...]] = {}
        self.owner_params: dict[tuple[str, str], Mapping[str, Any]] = {}
        # rep -> rule index -> exclusion, for rules whose exclusions do not depend on the lead
        # or the creator: valid until the rep's counts change (dropped on every assignment).
        self.excl: dict[str, dict[int, _Exclusion | None]] = {}
        # rule index -> (pointer it was computed for, every candidate excluded): a rotation that
        # found nobody eligible, valid while none of the candidates' counts change (the entries
        # are dropped with ``excl`` on an assignment to any of them, through ``none_by_rep``).
        self.none_memo: dict[int, tuple[str | None, list[tuple[str, _Exclusion]]]] = {}
        self.none_by_rep: dict[str, set[int]] = {}
        # rep -> its exclusion that depends only on the roster and ``now`` (fixed per call).
        self.rep_static: dict[str, _Exclusion | None] = {}
        # (id of a caps tuple held by ``ap``, rep) -> the caps that apply to the rep, with their
        # id, the rep's max and the assumption key and description.
        self.cap_rows: dict[tuple[int, str], tuple[_CapRow, ...]] = {}
        self.rr_keys: dict[int, str] = {}  # rule index -> "rr:<rotation>" (not per superior)
        # Reasons are immutable: equal ones built for earlier leads of the batch are reused.
        # Keyed by what they depend on; an int key (rule index) holds the memoised skipped list
        # of ``none_memo`` with the reason built for it.
        self.reasons: dict[Any, Any] = {}
        self.reasons1: dict[Any, tuple[Reason, ...]] = {}  # the same, as a decision's reasons
        # Trace steps are immutable too: explain reuses equal ones (keyed by what they show).
        self.steps: dict[Any, Any] = {}
        self.when_paths: dict[int, tuple[tuple[str, ...], ...]] = {}  # rule index -> paths

    def release(self, rep_id: str) -> None:
        """Forget what was memoised about ``rep_id``'s eligibility (its counts changed)."""
        self.excl.pop(rep_id, None)
        rules = self.none_by_rep.pop(rep_id, None)
        if rules:
            memo = self.none_memo
            for index in rules:
                memo.pop(index, None)


def _lead_mapping(lead: Any, text_fields: frozenset[str]) -> Mapping[str, Any]:
    """Validate a lead cheaply (no pydantic for dicts): a string id, aware datetimes, and
    text in the fields assignment reads as text (``text_fields``)."""
    if type(lead) is dict:
        m: Mapping[str, Any] = lead
    elif isinstance(lead, BaseModel):
        m = lead.model_dump()
    elif isinstance(lead, Mapping):
        m = lead
    else:
        raise RecordError("lead", "*", f"expected a mapping or a record, got {type(lead).__name__}")
    ident = m.get("id")
    if type(ident) is not str or not ident:
        raise RecordError("lead", "id", "a lead needs a non-empty string id")
    for key, value in m.items():
        kind = type(value)
        if kind is str or value is None:
            continue
        if key in text_fields:
            raise RecordError(f"lead {ident!r}", str(key), f"expected text, got {kind.__name__}")
        if kind is not int and isinstance(value, datetime) and value.utcoffset() is None:
            raise RecordError(
                f"lead {ident!r}", str(key), "naive datetime: a timezone-aware value is required"
            )
    return m


def _text_fields(ap: AssignmentPolicy) -> frozenset[str]:
    fields = set(_STR_FIELDS)
    if ap.protection is not None:
        fields.update((ap.protection.company_field, ap.protection.credit_code_field))
    return frozenset(fields)


def _creator_mapping(roster: Roster, lead: Mapping[str, Any], creator: Any) -> Mapping[str, Any]:
    if creator is None:
        creator = lead.get("creator_id")
        if creator is None:
            return _EMPTY
    if isinstance(creator, str):
        found = roster.mapping(creator)
        return found if found else MappingProxyType({"id": creator})
    if isinstance(creator, BaseModel):
        return creator.model_dump()
    if isinstance(creator, Mapping):
        if not isinstance(creator.get("id"), str):
            raise RecordError("creator", "id", "the creator needs a string id")
        return creator
    raise RecordError("creator", "*", "expected a rep id, a mapping or a Rep")


def _cooldowns(raw: Mapping[str, Any] | None) -> Mapping[str, datetime]:
    if not raw:
        return _EMPTY
    if not isinstance(raw, Mapping):
        raise RecordError("cooldowns", "*", "expected a mapping of rep id to an ISO datetime")
    return {str(k): parse_datetime(v, "cooldowns", str(k)) for k, v in raw.items()}


def _issues(cond: Condition, ctx: Mapping[str, Any], ref: RuleRef) -> list[RuleIssue]:
    return [
        RuleIssue(code, message, ref.id, ref.location, fld)
        for code, fld, message in cond.explain(ctx).issues
    ]


def _candidates(env: _Env, index: int, rule: CompiledRule, creator: Mapping[str, Any]) -> tuple[str, ...]:
    cached = env.team_cache.get(index)
    if cached is not None:
        return cached
    ids: set[str] = set()
    creator_bound = False
    roster = env.roster
    for t in rule.targets:
        if t.kind == "team":
            ids.update(roster.team(t.ident or ""))
        elif t.kind == "rep":
            ids.add(t.ident or "")
        elif t.kind == "creator":
            creator_bound = True
            if creator.get("id"):
                ids.add(creator["id"])
        else:
            creator_bound = True
            manager = creator.get("manager_id")
            if isinstance(manager, str):
                ids.update(roster.reports_of(manager))
    out = tuple(sorted(ids))
    if not creator_bound:
        env.team_cache[index] = out
    return out


def _caps_for(caps: tuple[CompiledCap, ...], rep: RosterRep) -> Iterator[CompiledCap]:
    for cap in caps:
        if cap.applies_to is None or cap.applies_to.matches(rep):
            yield cap


def _cap_rows(env: _Env, caps: tuple[CompiledCap, ...], rep: RosterRep) -> tuple[_CapRow, ...]:
    """The caps of ``caps`` that apply to ``rep`` (cached per call / batch)."""
    rows = env.cap_rows.get((id(caps), rep.id))
    if rows is None:
        rid = rep.id
        rows = env.cap_rows[(id(caps), rid)] = tuple(
            (cap, cap.id, cap.limit(rid), f"cap:{cap.id}:{rid}", f"{cap.id} count of {rid}")
            for cap in caps
            if cap.applies_to is None or cap.applies_to.matches(rep)
        )
    return rows


def _cap_assumptions(env: _Env, caps: tuple[CompiledCap, ...], rep_id: str) -> list[Assumption]:
    """The counts the decision relied on for ``rep_id``, one assumption per applicable cap."""
    rep = env.roster.get(rep_id)
    if rep is None:
        return []
    load = env.loads.get(rep_id)
    by_cap = load.by_cap
    out: list[Assumption] = []
    for cap, cid, _limit, key, description in _cap_rows(env, caps, rep):
        n = by_cap.get(cid)
        if n is None:
            n = _count(cap, load, env.clock)
        out.append(_new_assumption(key, n, description))
    return out


def _rep_exclusion(env: _Env, rep_id: str) -> _Exclusion | None:
    """The exclusions that depend only on the rep and ``now`` (cached per call / batch)."""
    try:
        return env.rep_static[rep_id]
    except KeyError:
        pass
    rep = env.roster.get(rep_id)
    ex: _Exclusion | None = None
    if rep is None:
        ex = ("not_in_roster", f"{rep_id} is not in the roster", _EMPTY)
    elif not rep.active:
        ex = ("inactive", f"{rep_id} is inactive", _EMPTY)
    else:
        now = env.clock.now
        if rep.availability and not any(w.start <= now < w.end for w in rep.availability):
            ex = ("unavailable", f"{rep_id} is outside its availability windows", _EMPTY)
        else:
            for w in rep.away:
                if w.start <= now < w.end:
                    ex = ("unavailable", f"{rep_id} is away until {w.end.isoformat()}",
                          {"until": w.end.isoformat()})
                    break
    env.rep_static[rep_id] = ex
    return ex


def _exclusion(
    env: _Env,
    rule: CompiledRule | None,
    caps: tuple[CompiledCap, ...],
    rep_id: str,
    lead: Mapping[str, Any],
    creator: Mapping[str, Any],
    cooldowns: Mapping[str, datetime],
    errors: list[RuleIssue] | None,
) -> _Exclusion | None:
    """Why ``rep_id`` may not receive the lead under ``rule`` (``None`` = eligible)."""
    static = _rep_exclusion(env, rep_id)
    if static is not None:
        return static
    rep = env.roster.get(rep_id)
    if rep is None:  # not reached: not_in_roster is a static exclusion
        return ("not_in_roster", f"{rep_id} is not in the roster", _EMPTY)
    if cooldowns:
        until = cooldowns.get(rep_id)
        if until is not None and env.clock.now < until:
            return ("cooldown",
                    f"{rep_id} is in a cooldown for this lead until {until.isoformat()}",
                    {"until": until.isoformat()})
    if rule is not None:
        if rule.same_superior:
            manager = creator.get("manager_id")
            if manager is None or rep.manager_id != manager:
                return ("not_same_superior",
                        f"{rep_id} reports to {rep.manager_id}, the creator to {manager}",
                        {"manager_id": rep.manager_id, "creator_manager_id": manager})
        if rule.same_region:
            region = lead.get("region")
            if region is None or rep.region != region:
                return ("not_in_region", f"{rep_id} is in {rep.region}, the lead in {region}",
                        {"region": rep.region, "lead_region": region})
        if rule.eligible is not None:
            ctx = {"lead": lead, "creator": creator, "candidate": env.roster.mapping(rep_id)}
            ok = rule.eligible(ctx)
            if ok is not True:
                if ok is None and errors is not None:
                    errors.extend(_issues(rule.eligible, ctx, rule.ref))
                return ("condition_failed", f"{rep_id} fails the rule's eligible condition", _EMPTY)
    if caps:
        load = env.loads.get(rep_id)
        by_cap = load.by_cap
        for cap, cid, limit, _key, _description in _cap_rows(env, caps, rep):
            n = by_cap.get(cid)
            if n is None:
                n = _count(cap, load, env.clock)
            if n >= limit:
                return ("capped", f"{rep_id} is at cap {cid}: {n} of {limit}",
                        {"cap": cid, "count": n, "max": limit})
    return None


#: (chosen rep or None, skipped candidates with why, tie-break text, state changes, assumptions)
_Pick = tuple[str | None, list[tuple[str, _Exclusion]], str, Mapping[str, Any], list[Assumption]]


def _rotation(rule: CompiledRule, creator: Mapping[str, Any]) -> str:
    """The rotation key: the rule's, per creator's superior for ``same_superior`` targets."""
    if rule.rotation_by_superior:
        return f"{rule.rotation}@{creator.get('manager_id')}"
    return rule.rotation


def _rr_state(state: Mapping[str, Any], key: str) -> tuple[str | None, int]:
    """The rotation pointer ``(last rep, version)`` stored under ``key`` (validated)."""
    raw = state.get(key)
    if raw is None:
        return None, 0
    if type(raw) is MappingProxyType:  # the hot path: state this library returned
        last, version = raw.get("last"), raw.get("version", 0)
        if (last is None or type(last) is str) and type(version) is int:
            return last, version
    if type(raw) is not MappingProxyType and not isinstance(raw, Mapping):
        raise RecordError("state", key, "expected {last, version}")
    last, version = raw.get("last"), raw.get("version", 0)
    if (last is not None and not isinstance(last, str)) or not isinstance(version, int):
        raise RecordError("state", key, "expected {last: rep id, version: int}")
    return last, version


def _checked(
    env: _Env,
    rule: CompiledRule,
    memo: dict[str, dict[int, _Exclusion | None]] | None,
    rid: str,
    lead: Mapping[str, Any],
    creator: Mapping[str, Any],
    cooldowns: Mapping[str, datetime],
    errors: list[RuleIssue],
) -> _Exclusion | None:
    """:func:`_exclusion` through the batch memo (``memo`` is ``None`` when it may not be used)."""
    if memo is None:
        return _exclusion(env, rule, rule.caps, rid, lead, creator, cooldowns, errors)
    per = memo.get(rid)
    if per is None:
        per = memo[rid] = {}
    elif rule.index in per:
        return per[rule.index]
    ex = per[rule.index] = _exclusion(env, rule, rule.caps, rid, lead, creator, cooldowns, errors)
    return ex


def _pick(
    env: _Env,
    rule: CompiledRule,
    order: tuple[str, ...],
    lead: Mapping[str, Any],
    creator: Mapping[str, Any],
    cooldowns: Mapping[str, datetime],
    errors: list[RuleIssue],
) -> _Pick:
    """Choose among ``order`` with the rule's strategy (deterministic)."""
    caps = rule.caps
    skipped: list[tuple[str, _Exclusion]] = []
    strategy = rule.strategy
    memo = env.excl if not cooldowns and not (
        rule.same_superior or rule.same_region or rule.eligible is not None) else None
    index = rule.index

    creator_id = None
    if strategy == "creator_first":
        cid = creator.get("id")
        if isinstance(cid, str) and cid in order:
            ex = _checked(env, rule, memo, cid, lead, creator, cooldowns, errors)
            if ex is None:
                return (cid, skipped, "creator keeps own lead (under cap)", {}, [])
            skipped.append((cid, ex))
            creator_id = cid
    if strategy == "round_robin" or strategy == "creator_first":
        if rule.rotation_by_superior:
            key = "rr:" + _rotation(rule, creator)
        else:
            key = env.rr_keys.get(index) or env.rr_keys.setdefault(index, "rr:" + rule.rotation)
        state = env.state
        last, version = _rr_state(state, key)
        # A rotation of a lead-independent rule that found nobody eligible finds the same
        # again while the pointer and every candidate's counts are unchanged.
        whole = memo is not None and creator_id is None and env.team_cache.get(index) is order
        if whole:
            seen = env.none_memo.get(index)
            if seen is not None and seen[0] == last:
                return (None, seen[1], "", {}, [])
        n = len(order)
        start = bisect.bisect_right(order, last) if last is not None else 0
        for k in range(n):
            rid = order[(start + k) % n]
            if rid == creator_id:
                continue
            if memo is None:
                ex = _exclusion(env, rule, caps, rid, lead, creator, cooldowns, errors)
            else:
                per = memo.get(rid)
                if per is None:
                    ex = _exclusion(env, rule, caps, rid, lead, creator, cooldowns, errors)
                    memo[rid] = {index: ex}
                elif index in per:
                    ex = per[index]
                else:
                    ex = per[index] = _exclusion(env, rule, caps, rid, lead, creator, cooldowns,
                                                 errors)
            if ex is None:
                return (
                    rid,
                    skipped,
                    f"round robin: next after {last}" if last else "round robin: first in order",
                    {key: MappingProxyType({"last": rid, "version": version + 1})},
                    [_new_assumption(f"state:{key}", version, "rotation pointer version")],
                )
            skipped.append((rid, ex))
        if whole:
            env.none_memo[index] = (last, skipped)
            by_rep = env.none_by_rep
            for rid in order:
                rules = by_rep.get(rid)
                if rules is None:
                    by_rep[rid] = {index}
                else:
                    rules.add(index)
        return (None, skipped, "", {}, [])
    eligible: list[str] = []
    for rid in order:
        ex = _checked(env, rule, memo, rid, lead, creator, cooldowns, errors)
        if ex is None:
            eligible.append(rid)
        else:
            skipped.append((rid, ex))
    if not eligible:
        return (None, skipped, "", {}, [])
    if strategy == "least_loaded":
        cap = rule.load_cap

        def load_key(rid: str) -> tuple[int, datetime, str]:
            load = env.loads.get(rid)
            n = _count(cap, load, env.clock) if cap is not None else load.holdings
            return (n, load.last or _MIN_TIME, rid)

        chosen = min(eligible, key=load_key)
        measure = cap.id if cap is not None else "holdings"
        return (chosen, skipped, f"least loaded by {measure}; ties by longest since last "
                     "assignment, then id", {}, [])
    # weighted: smooth weighted round robin (deterministic; ties by id)
    key = "wrr:" + _rotation(rule, creator)
    raw = env.state.get(key) or _EMPTY
    if not isinstance(raw, Mapping):
        raise RecordError("state", key, "expected a mapping of rep id to current weight")
    current = {r: v for r, v in raw.items() if r in order and isinstance(v, int)}
    weights: dict[str, int] = {}
    for rid in eligible:
        rep = env.roster.get(rid)
        if rule.weight_cap is not None:
            weights[rid] = rule.weight_cap.limit(rid)
        else:
            weights[rid] = rep.capacity if rep is not None and rep.capacity is not None else 1
    positive = [r for r in eligible if weights[r] > 0]
    for rid in eligible:
        if weights[rid] <= 0:
            skipped.append((rid, ("zero_weight", f"{rid} has weight 0", _EMPTY)))
    if not positive:
        return (None, skipped, "", {}, [])
    total = sum(weights[r] for r in positive)
    for rid in positive:
        current[rid] = current.get(rid, 0) + weights[rid]
    best = max(current[r] for r in positive)
    chosen = min(r for r in positive if current[r] == best)
    current[chosen] -= total
    return (
        chosen,
        skipped,
        f"smooth weighted round robin (weights {', '.join(f'{r}={weights[r]}' for r in positive)})",
        {key: MappingProxyType(dict(sorted(current.items())))},
        [Assumption(f"state:{key}", dict(sorted(raw.items())), "weighted rotation state")],
    )


def _similar(a: str, b: str, threshold: float) -> float | None:
    """Similarity of two normalised names when they look like one company, else ``None``.

    Flagged: a ``difflib`` ratio of at least ``threshold``, or one name (2+ characters)
    contained in the other (华为 / 华为技术). Equal names are matches, not similarities.
    """
    if not a or not b or a == b:
        return None
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    contained = len(short) >= 2 and short in long_
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    if not contained and (
        matcher.real_quick_ratio() < threshold or matcher.quick_ratio() < threshold
    ):
        return None
    ratio = matcher.ratio()
    return round(ratio, 3) if contained or ratio >= threshold else None


def _protection(
    env: _Env,
    lead: Mapping[str, Any],
    lead_id: str,
    creator: Mapping[str, Any],
    reasons: list[Reason],
    errors: list[RuleIssue],
    tb: _Tracer | None,
) -> tuple[str, _Customer, str, list[Assumption]] | None:
    """Route to a protected customer's owner: ``(owner, customer, how, assumptions)`` or None."""
    p = env.ap.protection
    if p is None:
        return None
    now = env.clock.now
    raw_code = lead.get(p.credit_code_field)
    code = None
    if raw_code:
        problem = validate_credit_code(raw_code)
        if problem:
            reasons.append(Reason(
                "invalid_credit_code",
                f"lead {lead_id}: credit code {raw_code!r} is malformed ({problem}); "
                "not used for matching",
                data={"field": p.credit_code_field, "value": raw_code},
            ))
        else:
            code = _canonical_code(raw_code)
    name = lead.get(p.company_field)
    norm = normalize_company_name(name) if name else ""
    if not env.customers.all:
        return None
    matches: dict[str, tuple[_Customer, str]] = {}
    if code:
        for c in env.customers.by_code.get(code, ()):
            matches[c.record.id] = (c, "credit_code")
    if norm:
        for c in env.customers.by_name.get(norm, ()):
            matches.setdefault(c.record.id, (c, "name"))
    if not matches:
        if norm:
            found = []
            for c in env.customers.all:
                score = _similar(norm, c.norm, p.similar_threshold)
                if score is not None:
                    found.append((-score, c.record.id, c))
            for neg, _, c in sorted(found)[:3]:
                reasons.append(Reason(
                    "probable_duplicate",
                    f"company {name!r} is similar to registered customer {c.record.id} "
                    f"({c.record.name!r}); not routed",
                    data={"customer_id": c.record.id, "similarity": str(-neg)},
                ))
        if tb is not None:
            tb.add(TraceStatus.NOTE, "no registered customer matches the lead's company",
                   values={"company": name, "normalized": norm, "credit_code": raw_code})
        return None
    ordered = sorted(matches.values(), key=lambda m: (m[1] != "credit_code", m[0].record.id))
    for c, _how in ordered:
        if c.code_error and c.record.credit_code:
            errors.append(RuleIssue(
                "invalid_credit_code",
                f"customer {c.record.id}: credit code {c.record.credit_code!r} is malformed "
                f"({c.code_error}); matched by name only",
                None, None, "credit_code",
            ))
    live = [m for m in ordered if m[0].record.protected_until is not None
            and now < m[0].record.protected_until]
    if not live:
        for c, how in ordered:
            until = c.record.protected_until
            when = until.isoformat() if until else "never protected"
            reasons.append(Reason(
                "protection_expired",
                f"customer {c.record.id} matches by {how} but its protection ended ({when}); "
                "the rules apply",
                data={"customer_id": c.record.id, "protected_until": when},
            ))
            if tb is not None:
                tb.add(TraceStatus.SKIPPED, f"protection_expired: customer {c.record.id} "
                       f"({how}) protected until {when}", values={"now": now.isoformat()})
        return None
    c, how = live[0]
    owner = c.record.owner_id
    caps = env.ap.caps if env.ap.protection and env.ap.protection.enforce_caps else ()
    ex = _exclusion(env, None, caps, owner, lead, creator, _EMPTY, errors)
    if ex is not None:
        reasons.append(Reason(
            "protected_owner_ineligible",
            f"customer {c.record.id} is protected but its owner cannot take the lead: {ex[1]}",
            data={"customer_id": c.record.id, "owner_id": owner, "exclusion": ex[0], **ex[2]},
        ))
        if tb is not None:
            tb.add(TraceStatus.SKIPPED, f"protected owner {owner} excluded: {ex[0]}",
                   values=dict(ex[2]))
        return None
    assumptions = [
        Assumption(f"customer:{c.record.id}:owner_id", owner, "protected customer's owner"),
        Assumption(f"customer:{c.record.id}:protected_until",
                   c.record.protected_until.isoformat() if c.record.protected_until else None,
                   "end of protection"),
    ]
    assumptions.extend(_cap_assumptions(env, caps, owner))
    return owner, c, how, assumptions


_ABSENT = object()


def _when_key(env: _Env, rule: CompiledRule, ctx: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """The values ``rule.when`` reads from ``ctx``, typed, or ``None`` when not all plain.

    A condition's explanation is a function of the values at the paths it reads
    (``Condition.fields``), so it can be rendered once per distinct key. Only text, bool and
    None values found in mappings make a key (their repr is fixed by type and value); numbers
    are left out as they rarely repeat (amounts, head counts), so the lookup would not pay.
    """
    cond = rule.when
    if cond is None:
        return None
    paths = env.when_paths.get(rule.index)
    if paths is None:
        paths = env.when_paths[rule.index] = tuple(
            tuple(p.split(".")) for p in sorted(cond.fields)
        )
    out: list[Any] = []
    for path in paths:
        v: Any = ctx
        for seg in path:
            if type(v) is dict or isinstance(v, Mapping):
                v = v.get(seg, _ABSENT)
            else:
                return None
        t = type(v)
        if t is str or t is bool or v is None:
            out.append(t)
            out.append(v)
        else:
            return None
    return tuple(out)


def _trace_rules(
    tb: _Tracer, rules: tuple[CompiledRule, ...], table_trace: Any, start: int,
    env: _Env | None = None,
) -> None:
    """Trace why the rules before the match did not match.

    Rows the table's index ruled out (their equality/range fields differ from the lead's) are
    summarised in one step; every row whose condition was actually evaluated gets its own step
    with the deciding comparison and the actual value.
    """
    n = len(table_trace)
    cands = getattr(table_trace, "_cands", 0)
    if cands:
        below = cands & ((1 << n) - 1)
        indices = []
        while below:
            low = below & -below
            indices.append(low.bit_length() - 1)
            below ^= low
    else:
        indices = list(range(n))
    steps = tb.steps
    cache = env.steps if env is not None else None
    for i in indices:
        row = table_trace[i]
        ref = rules[start + i].ref
        status = TraceStatus.ERRORED if row.result is None else TraceStatus.SKIPPED
        steps.append(_new_step(status, f"did not match: {row.render()}", ref.id, ref.location,
                               _EMPTY))
    quiet = n - len(indices)
    if quiet:
        step = cache.get(quiet) if cache is not None else None
        if step is None:
            step = _new_step(TraceStatus.NOTE, f"{quiet} other earlier rule(s) did not match on "
                             "their indexed fields (equality/range on the lead or creator)",
                             None, None, _EMPTY)
            if cache is not None:
                cache[quiet] = step
        steps.append(step)


def _first_from(
    rules: tuple[CompiledRule, ...], ctx: Mapping[str, Any], start: int
) -> tuple[int | None, list[int]]:
    unknown: list[int] = []
    for i in range(start, len(rules)):
        cond = rules[i].when
        r = True if cond is None else cond(ctx)
        if r is True:
            return i, unknown
        if r is None:
            unknown.append(i)
    return None, unknown


def _decide(
    env: _Env,
    lead: Mapping[str, Any],
    creator: Mapping[str, Any],
    cooldowns: Mapping[str, datetime],
    explain: bool,
) -> Decision[Assignment]:
    """Decide one lead against ``env`` (no mutation of ``env`` except caches)."""
    ap = env.ap
    lead_id: str = lead["id"]
    reasons: list[Reason] = []
    errors: list[RuleIssue] = []
    tb = _Tracer() if explain else None
    if tb is not None:
        values: Any = env.steps.get("created")  # the same for every lead of a batch
        if values is None:
            values = env.steps["created"] = _fz(
                {"now": env.clock.now.isoformat(), "timezone": ap.calendar.timezone})
        tb.steps.append(_new_step(
            TraceStatus.NOTE, f"lead {lead_id} created by {creator.get('id') or 'unknown'}",
            None, None, values))

    protected = (
        _protection(env, lead, lead_id, creator, reasons, errors, tb)
        if ap.protection is not None else None
    )
    if protected is not None:
        owner, cust, how, assumptions = protected
        reasons.append(Reason(
            "protected_customer",
            f"the company matches protected customer {cust.record.id} by {how} (protected "
            f"until {cust.record.protected_until.isoformat() if cust.record.protected_until else '-'})"
            f"; the lead goes to its owner {owner}",
            data={"customer_id": cust.record.id, "matched_by": how, "owner_id": owner},
        ))
        effects = [_set_owner(lead_id, owner, "rep")]
        cid = creator.get("id")
        if ap.protection is not None and ap.protection.notify_creator and cid and cid != owner:
            effects.append(Effect(
                "notify",
                f"rep:{cid}",
                f"notify:rep:{cid}:collaboration_request:{lead_id}",
                {
                    "message": f"{cust.record.name or cust.record.id} is protected and owned by "
                    f"{owner}; file a collaboration request to work on it together",
                    "record": f"lead:{lead_id}",
                    "template": "collaboration_request_suggested",
                    "customer_id": cust.record.id,
                    "owner_id": owner,
                },
            ))
        if tb is not None:
            tb.add(TraceStatus.MATCHED, f"protected customer {cust.record.id} ({how}) -> {owner}",
                   values={"customer": cust.record.name, "owner_id": owner})
        return _finish(env, Assignment(lead_id, owner, "rep", "protected_customer",
                                       customer_id=cust.record.id),
                       reasons, errors, assumptions, _EMPTY, effects, tb)

    ctx = {"lead": lead, "creator": creator}
    rules = ap.rules
    start = 0
    while True:
        if start == 0:
            if tb is not None:
                match, ttrace = ap.table.first_explained(ctx)
                unknown: Sequence[int] = ttrace.unknown_rows()
                _trace_rules(tb, rules, ttrace, 0, env)
                index = None if match is None else match[0]
            else:
                match, unknown = ap.table.first_with_unknowns(ctx)
                index = None if match is None else match[0]
        else:
            index, unknown = _first_from(rules, ctx, start)
            if tb is not None:
                for i in range(start, len(rules) if index is None else index):
                    cond = rules[i].when
                    if cond is not None:
                        tb.add(TraceStatus.SKIPPED, f"did not match: {cond.explain(ctx).render()}",
                               rules[i].ref)
        for i in unknown:
            cond = rules[i].when
            if cond is not None:
                errors.extend(_issues(cond, ctx, rules[i].ref))
        if index is None:
            target = ap.default
            reasons.append(Reason(
                "no_rule_matched",
                f"no rule decided; the lead goes to the default {target}",
                data={"default": str(target)},
            ))
            if tb is not None:
                tb.add(TraceStatus.NOTE, f"default -> {target}")
            return _finish(env, Assignment(lead_id, target.ident or "", _kind(target),
                                           "no_rule_matched"),
                           reasons, errors, [], _EMPTY, [_set_owner(lead_id, target.ident or "",
                                                                    _kind(target))], tb)
        rule = rules[index]
        if tb is not None:
            vk = _when_key(env, rule, ctx)
            step = env.steps.get(("match", index, vk)) if vk is not None else None
            if step is None:
                step = _new_step(TraceStatus.MATCHED,
                                 f"rule matched: {rule.when.explain(ctx).render()}"
                                 if rule.when is not None else "rule matched (no condition)",
                                 rule.ref.id, rule.ref.location, _EMPTY)
                if vk is not None:
                    env.steps[("match", index, vk)] = step
            tb.steps.append(step)
        if rule.terminal is not None:
            target = rule.terminal
            reasons.append(Reason("rule_matched", f"rule {rule.id} sends the lead to {target}",
                                  rule.id, rule.ref.location, {"target": str(target)}))
            return _finish(env, Assignment(lead_id, target.ident or "", _kind(target),
                                           "rule_matched", rule.id),
                           reasons, errors, [], _EMPTY,
                           [_set_owner(lead_id, target.ident or "", _kind(target))], tb)
        order = env.team_cache.get(index) or _candidates(env, index, rule, creator)
        chosen, skipped, tie_break, pick_state, pick_assumptions = _pick(
            env, rule, order, lead, creator, cooldowns, errors
        )
        if tb is not None:
            _trace_candidates_memo(env, tb, rule, order, chosen, tie_break, skipped)
        if chosen is not None:
            rep_id = chosen
            # The reason depends only on these; an equal one built earlier is reused.
            rkey = (index, rep_id, tie_break, len(order),
                    tuple([(r, ex[0]) for r, ex in skipped]) if skipped else None)
            reason = env.reasons.get(rkey)
            if reason is None:
                data: dict[str, Any] = {"strategy": rule.strategy, "tie_break": tie_break,
                                        "candidates": len(order)}
                if skipped:
                    data["skipped"] = MappingProxyType({r: ex[0] for r, ex in skipped})
                reason = env.reasons[rkey] = _new_reason(
                    "rule_matched",
                    f"rule {rule.id} picks {rep_id} by {rule.strategy}",
                    rule.id, rule.ref.location, MappingProxyType(data),
                )
            reasons.append(reason)
            assumptions = pick_assumptions
            if rule.caps:
                assumptions = [*_cap_assumptions(env, rule.caps, rep_id), *assumptions]
            return _finish(env, _new_assignment(lead_id, rep_id, "rep", "rule_matched", rule.id,
                                                rule.strategy, None),
                           reasons, errors, assumptions, pick_state,
                           [_set_owner(lead_id, rep_id, "rep", env)], tb)
        # all_capped: the reps the rule really targets (those past its filters: same superior,
        # same region, eligible condition) exist and every one of them is capped.
        overflow = rule.overflow
        reason = _none_reason(env, rule, order, skipped)
        code = reason.code
        reasons.append(reason)
        if overflow is None:
            start = index + 1
            continue
        target = ap.default if overflow.kind == "default" else overflow
        if tb is not None:
            tb.add(TraceStatus.NOTE, f"{code}: overflow -> {target}", rule.ref)
        return _finish(env, Assignment(lead_id, target.ident or "", _kind(target), code, rule.id),
                       reasons, errors, [], _EMPTY,
                       [_set_owner(lead_id, target.ident or "", _kind(target))], tb)


def _none_reason(
    env: _Env,
    rule: CompiledRule,
    order: tuple[str, ...],
    skipped: list[tuple[str, _Exclusion]],
) -> Reason:
    """The ``all_capped`` / ``no_eligible_rep`` reason when none of ``order`` is eligible.

    ``all_capped``: the reps the rule really targets (those past its filters: same superior,
    same region, eligible condition) exist and every one of them is capped. The reason built
    for a memoised rotation (``env.none_memo``) is kept with it.
    """
    index = rule.index
    seen = env.reasons.get(index)  # (the memoised skipped list, its reason)
    if seen is not None and seen[0] is skipped:
        cached: Reason = seen[1]
        return cached
    targeted = [ex[0] for _, ex in skipped if ex[0] not in _FILTER_CODES]
    all_capped = bool(targeted) and all(code == "capped" for code in targeted)
    code = "all_capped" if all_capped else "no_eligible_rep"
    excluded = {r: ex[0] for r, ex in skipped}
    overflow = rule.overflow
    where = "the next rules" if overflow is None else str(
        env.ap.default if overflow.kind == "default" else overflow)
    reason: Reason = _new_reason(
        code,
        f"rule {rule.id}: none of {len(order)} candidate(s) is eligible; trying {where}",
        rule.id, rule.ref.location,
        _fz({"candidates": len(order), "excluded": excluded}),
    )
    memo = env.none_memo.get(index)
    if memo is not None and memo[1] is skipped:
        env.reasons[index] = (skipped, reason)
    return reason


def _decide_plain(env: _Env, lead: Mapping[str, Any], creator: Mapping[str, Any]) -> Any:
    """:func:`_decide` without explain, cooldowns or protection, for the common shape.

    Handles a lead whose first matching rule (with no unknown rows before it) is a round robin
    over a fixed, lead-independent candidate list (no ``same_superior`` / ``same_region`` /
    ``eligible``), with the candidates already resolved for this batch; everything else goes
    through :func:`_decide`. It builds the same values :func:`_decide` builds (the batch memos
    are the same), with fewer calls and allocations.
    """
    match, unknown = env.ap.table.first_with_unknowns({"lead": lead, "creator": creator})
    if match is None or unknown:
        return _decide(env, lead, creator, _EMPTY, False)
    index = match[0]
    rule: CompiledRule = env.ap.rules[index]
    order = env.team_cache.get(index)
    if (order is None or rule.strategy != "round_robin" or rule.terminal is not None
            or rule.rotation_by_superior or rule.same_superior or rule.same_region
            or rule.eligible is not None):
        return _decide(env, lead, creator, _EMPTY, False)
    key = env.rr_keys.get(index) or env.rr_keys.setdefault(index, "rr:" + rule.rotation)
    state = env.state
    last, version = _rr_state(state, key)
    lead_id: str = lead["id"]
    seen = env.none_memo.get(index)
    if seen is not None and seen[0] == last:
        skipped = seen[1]
    else:
        caps = rule.caps
        memo = env.excl
        skipped = []
        n = len(order)
        start = bisect.bisect_right(order, last) if last is not None else 0
        static = env.rep_static
        counted: list[int] | None = None  # the chosen rep's counts, when computed here
        for k in range(n):
            rid = order[(start + k) % n]
            per = memo.get(rid)
            if per is not None and index in per:
                ex = per[index]
            else:
                # _exclusion for a rule without filters and no cooldowns, keeping the counts
                ex = static[rid] if rid in static else _rep_exclusion(env, rid)
                if ex is None and caps:
                    rep = env.roster.get(rid)
                    if rep is None:  # pragma: no cover - a static exclusion
                        ex = _exclusion(env, rule, caps, rid, lead, creator, _EMPTY, None)
                    else:
                        load = env.loads.get(rid)
                        by_cap = load.by_cap
                        counted = []
                        rows = env.cap_rows.get((id(caps), rid)) or _cap_rows(env, caps, rep)
                        for cap, cid, limit, _key, _description in rows:
                            c = by_cap.get(cid)
                            if c is None:
                                c = _count(cap, load, env.clock)
                            if c >= limit:
                                ex = ("capped", f"{rid} is at cap {cid}: {c} of {limit}",
                                      {"cap": cid, "count": c, "max": limit})
                                break
                            counted.append(c)
                if per is None:
                    memo[rid] = {index: ex}
                else:
                    per[index] = ex
            if ex is not None:
                skipped.append((rid, ex))
                counted = None
                continue
            # rid is chosen
            tie_break = f"round robin: next after {last}" if last else "round robin: first in order"
            rkey = (index, rid, tie_break, n,
                    tuple([(r, e[0]) for r, e in skipped]) if skipped else None)
            reasons = env.reasons1.get(rkey)
            if reasons is None:
                reason = env.reasons.get(rkey)
                if reason is None:
                    data: dict[str, Any] = {"strategy": "round_robin", "tie_break": tie_break,
                                            "candidates": n}
                    if skipped:
                        data["skipped"] = MappingProxyType({r: e[0] for r, e in skipped})
                    reason = env.reasons[rkey] = _new_reason(
                        "rule_matched", f"rule {rule.id} picks {rid} by round_robin",
                        rule.id, rule.ref.location, MappingProxyType(data),
                    )
                reasons = env.reasons1[rkey] = (reason,)
            assumptions: list[Assumption] = []
            if caps:
                if counted is None:
                    assumptions = _cap_assumptions(env, caps, rid)
                else:  # the counts just checked, for the caps in ``rows`` (unchanged since)
                    assumptions = [_new_assumption(row[3], c, row[4])
                                   for row, c in zip(rows, counted, strict=True)]
            assumptions.append(_new_assumption(f"state:{key}", version,
                                               "rotation pointer version"))
            params = env.owner_params.get((rid, "rep"))
            effect = (_set_owner(lead_id, rid, "rep", env) if params is None else _new_effect(
                "set_owner", f"lead:{lead_id}", f"set_owner:lead:{lead_id}:assign", params))
            return _new_decision(
                "assign",
                _new_assignment(lead_id, rid, "rep", "rule_matched", rule.id, "round_robin",
                                None),
                reasons,
                (effect,),
                tuple(assumptions),
                MappingProxyType({key: MappingProxyType({"last": rid, "version": version + 1})}),
                None,
                (),
                None,
                env.digest,
            )
        env.none_memo[index] = (last, skipped)
        by_rep = env.none_by_rep
        for rid in order:
            rules = by_rep.get(rid)
            if rules is None:
                by_rep[rid] = {index}
            else:
                rules.add(index)
    overflow = rule.overflow
    if overflow is None:
        return _decide(env, lead, creator, _EMPTY, False)
    reason = _none_reason(env, rule, order, skipped)
    reasons = env.reasons1.get(index)
    if reasons is None or reasons[0] is not reason:
        reasons = env.reasons1[index] = (reason,)
    target = env.ap.default if overflow.kind == "default" else overflow
    owner = target.ident or ""
    kind = _kind(target)
    return _new_decision(
        "assign",
        _new_assignment(lead_id, owner, kind, reason.code, rule.id, None, None),
        reasons,
        (_set_owner(lead_id, owner, kind, env),),
        (),
        _EMPTY,
        None,
        (),
        None,
        env.digest,
    )


def _kind(target: Target) -> OwnerKind:
    return "pool" if target.kind == "pool" else "queue" if target.kind == "queue" else "rep"


def _set_owner(
    lead_id: str, owner: str, kind: OwnerKind, env: _Env | None = None
) -> Effect:
    cache = env.owner_params if env is not None else None
    params = cache.get((owner, kind)) if cache is not None else None
    if params is None:
        params = MappingProxyType({"owner_id": owner, "owner_kind": kind,
                                   "previous_owner_id": None})
        if cache is not None:
            cache[(owner, kind)] = params
    effect: Effect = _new_effect(
        "set_owner", f"lead:{lead_id}", f"set_owner:lead:{lead_id}:assign", params
    )
    return effect


def _trace_candidates_memo(
    env: _Env,
    tb: _Tracer,
    rule: CompiledRule,
    order: tuple[str, ...],
    chosen: str | None,
    tie_break: str,
    skipped: list[tuple[str, _Exclusion]],
) -> None:
    """:func:`_trace_candidates`, reusing the steps built for an equal situation earlier.

    The steps depend only on the rule, its candidates, the chosen rep, the tie-break text and
    the exclusions met (code, message and data): that is the key.
    """
    cache = env.steps
    seen = cache.get(("none", rule.index)) if chosen is None else None
    if seen is not None and seen[0] is skipped:  # a memoised all-excluded rotation
        tb.steps.extend(seen[1])
        return
    try:
        key: Any = (
            "cands", rule.index, None if env.team_cache.get(rule.index) is order else order,
            chosen, tie_break,
            tuple([(r, ex[0], ex[1], tuple(ex[2].items())) for r, ex in skipped]),
        )
        steps = cache.get(key)
    except TypeError:  # unhashable data: build without the cache
        key, steps = None, None
    if steps is None:
        local = _Tracer()
        _trace_candidates(local, rule, order, chosen, tie_break, dict(skipped))
        steps = tuple(local.steps)
        if key is not None:
            cache[key] = steps
    if chosen is None:
        memo = env.none_memo.get(rule.index)
        if memo is not None and memo[1] is skipped:
            cache[("none", rule.index)] = (skipped, steps)
    tb.steps.extend(steps)


def _trace_candidates(
    tb: _Tracer,
    rule: CompiledRule,
    order: tuple[str, ...],
    chosen: str | None,
    tie_break: str,
    known: Mapping[str, _Exclusion],
) -> None:
    """One step per candidate: chosen, excluded (with why), eligible, or not reached.

    Only what the strategy evaluated is reported as such: a rotation stops at the first eligible
    candidate, so the ones after it are "not reached" (not evaluated) rather than re-checked.
    """
    if not order:
        tb.add(TraceStatus.NOTE, "the rule's targets name no rep in the roster", rule.ref,
               {"targets": ",".join(str(t) for t in rule.targets)})
    rotation = rule.strategy in ("round_robin", "creator_first")
    ref = rule.ref
    steps = tb.steps
    unreached: list[str] = []
    for rid in order:
        if rid == chosen:
            steps.append(_new_step(TraceStatus.MATCHED, f"candidate {rid} chosen: {tie_break}",
                                   ref.id, ref.location, _EMPTY))
            continue
        ex = known.get(rid)
        if ex is not None:
            values = MappingProxyType({"code": ex[0], **ex[2]})
            steps.append(_new_step(TraceStatus.SKIPPED,
                                   f"candidate {rid} excluded: {ex[0]} — {ex[1]}",
                                   ref.id, ref.location, values))
        elif rotation:
            unreached.append(rid)
        else:
            steps.append(_new_step(TraceStatus.NOTE,
                                   f"candidate {rid} eligible, not chosen ({rule.strategy})",
                                   ref.id, ref.location, _EMPTY))
    if unreached:
        steps.append(_new_step(TraceStatus.NOTE,
                               f"candidates not reached (the rotation stopped at {chosen}): "
                               + ", ".join(unreached),
                               ref.id, ref.location, _EMPTY))


def _finish(
    env: _Env,
    outcome: Assignment,
    reasons: list[Reason],
    errors: list[RuleIssue],
    assumptions: list[Assumption],
    state: Mapping[str, Any],
    effects: list[Effect],
    tb: _Tracer | None,
) -> Decision[Assignment]:
    decision: Decision[Assignment] = _new_decision(
        "assign",
        outcome,
        tuple(reasons),
        tuple(effects),
        tuple(assumptions),
        (MappingProxyType(state) if type(state) is dict else MappingProxyType(dict(state)))
        if state else _EMPTY,
        None,
        tuple(errors),
        tb.build() if tb is not None else None,
        env.digest,
    )
    return decision


_DECISION_FIELDS = ("kind", "outcome", "reasons", "effects", "assumptions", "state",
                    "next_check_at", "errors", "trace", "policy_digest")


def _decision_maker() -> Any:
    import dataclasses

    if tuple(f.name for f in dataclasses.fields(Decision)) != _DECISION_FIELDS:
        return lambda *values: Decision(*values)
    new = object.__new__
    s = tuple(Decision.__dict__[n].__set__ for n in _DECISION_FIELDS)

    def make(kind: Any, outcome: Any, reasons: Any, effects: Any, assumptions: Any, state: Any,
             next_check_at: Any, errors: Any, trace: Any, digest: Any) -> Any:
        obj = new(Decision)
        s[0](obj, kind)
        s[1](obj, outcome)
        s[2](obj, reasons)
        s[3](obj, effects)
        s[4](obj, assumptions)
        s[5](obj, state)
        s[6](obj, next_check_at)
        s[7](obj, errors)
        s[8](obj, trace)
        s[9](obj, digest)
        return obj

    return make


_new_decision = _decision_maker()


# =============================================================================================
# Public decide functions
# =============================================================================================


def _section(policy: Any) -> tuple[AssignmentPolicy, str]:
    if isinstance(policy, AssignmentPolicy):
        return policy, ""
    section = policy.section("assignment")
    return section, str(getattr(policy, "digest", ""))


def _state(state: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if state is None:
        return _EMPTY
    if not isinstance(state, Mapping):
        raise RecordError("state", "*", "expected a mapping (the state returned by decisions)")
    return state


def assign(
    policy: Any,
    lead: Any,
    *,
    now: datetime,
    roster: Roster | Iterable[Any],
    creator: Any = None,
    state: Mapping[str, Any] | None = None,
    counts: Mapping[str, Any] | None = None,
    customers: Iterable[Any] | None = None,
    cooldowns: Mapping[str, Any] | None = None,
    explain: bool = False,
) -> Decision[Assignment]:
    """Decide who owns a new lead (a rep, a queue or a pool) and why.

    Args:
        policy: a :class:`~salesrules.policy.Policy` with an ``assignment`` section.
        lead: the lead (a mapping or :class:`~salesrules.records.Lead`); needs ``id``.
        now: the current instant (timezone-aware).
        roster: the reps (a :class:`Roster`, or a list of reps / dicts).
        creator: the creator (rep id, mapping or Rep); default: ``lead.creator_id``.
        state: the persisted state (rotation pointers) from earlier decisions' ``state``.
        counts: rep id → :class:`~salesrules.records.RepCounts` (or a dict of its fields).
        customers: registered customers (:class:`~salesrules.records.RegisteredCustomer`).
        cooldowns: rep id → ISO datetime until which that rep may not receive this lead.
        explain: build a trace.

    Returns:
        An ``assign`` decision; ``state`` holds the changed state entries to merge.

    Raises:
        RecordError: ``now`` is naive, or an input record is invalid.
    """
    now = require_aware(now)
    ap, digest = _section(policy)
    lead_map = _lead_mapping(lead, _text_fields(ap))
    ros = Roster.of(roster)
    env = _Env(ap, digest, ros, _Loads(counts), _CustomerIndex(customers), _Clock(now, ap.calendar),
               _state(state))
    return _decide(env, lead_map, _creator_mapping(ros, lead_map, creator), _cooldowns(cooldowns),
                   explain)


def assign_many(
    policy: Any,
    leads: Iterable[Any],
    *,
    now: datetime,
    roster: Roster | Iterable[Any],
    state: Mapping[str, Any] | None = None,
    counts: Mapping[str, Any] | None = None,
    customers: Iterable[Any] | None = None,
    explain: bool = False,
) -> list[Decision[Assignment]]:
    """Assign many leads in order, threading state and counts as the host would.

    The result equals calling :func:`assign` once per lead (each lead's creator is its
    ``creator_id``), merging each decision's ``state`` into the state and updating the chosen
    rep's counts as ``docs/assignment.md`` describes (append ``now`` to ``assigned_at``, add the
    lead to ``open_records``, ``holdings + 1``, ``last_assigned_at = now``, ``+1`` on each
    ``by_cap`` count the lead counts for). Inputs are validated once (the roster, each rep's
    counts on first use, customers); leads are checked cheaply.

    Args:
        policy: the policy.
        leads: the leads, in order.
        now: the current instant (aware), the same for the whole batch.
        roster: the reps.
        state: the persisted state.
        counts: rep id → counts.
        customers: registered customers (indexed once).
        explain: build a trace for every decision.

    Returns:
        One decision per lead, in order.

    Raises:
        RecordError: ``now`` is naive or an input is invalid.
    """
    now = require_aware(now)
    ap, digest = _section(policy)
    ros = Roster.of(roster)
    working: dict[str, Any] = dict(_state(state))
    env = _Env(ap, digest, ros, _Loads(counts), _CustomerIndex(customers),
               _Clock(now, ap.calendar), working)
    caps = ap.caps
    out: list[Decision[Assignment]] = []
    append = out.append
    text_fields = _text_fields(ap)
    plain = not explain and ap.protection is None
    creators: dict[str, Mapping[str, Any]] = {}  # creator id -> its mapping (fixed per roster)
    for lead in leads:
        lead_map = _lead_mapping(lead, text_fields)
        cid = lead_map.get("creator_id")
        creator = creators.get(cid) if type(cid) is str else None
        if creator is None:
            creator = _creator_mapping(ros, lead_map, None)
            if type(cid) is str:
                creators[cid] = creator
        decision = (_decide_plain(env, lead_map, creator) if plain
                    else _decide(env, lead_map, creator, _EMPTY, explain))
        append(decision)
        if decision.state:
            working.update(decision.state)
        outcome = decision.outcome
        if outcome.owner_kind == "rep":
            owner = outcome.owner_id
            _record_assignment(caps, env.loads.get(owner), lead_map, now)
            env.release(owner)
    return out


def claim(
    policy: Any,
    rep: Any,
    records: Iterable[Any],
    *,
    pool: str,
    now: datetime,
    counts: RepCounts | Mapping[str, Any] | None = None,
    roster: Roster | Iterable[Any] | None = None,
    explain: bool = False,
) -> Decision[ClaimOutcome]:
    """Decide whether ``rep`` may claim ``records`` from ``pool`` (all or nothing).

    Args:
        policy: a policy with a ``pools`` section.
        rep: the claiming rep (a rep id resolved through ``roster``, a mapping or a Rep).
        records: the pool records (:class:`~salesrules.records.PoolRecord`) to claim.
        pool: the pool id.
        now: the current instant (aware).
        counts: the rep's :class:`~salesrules.records.RepCounts` (``claimed_at``, ``holdings``,
            ``won``).
        roster: needed only when ``rep`` is an id.
        explain: build a trace.

    Returns:
        A ``claim`` decision. Allowed: one ``set_owner`` effect per record and the counts it
        relied on as assumptions. Refused: every reason, no effects (no counter moves).

    Raises:
        RecordError: ``now`` naive, an unknown pool, or an invalid input.
    """
    now = require_aware(now)
    pools_policy: PoolsPolicy = policy.section("pools")
    spec = pools_policy.pools.get(pool)
    if spec is None:
        raise RecordError("claim", "pool", f"unknown pool {pool!r} (known: "
                          f"{', '.join(sorted(pools_policy.pools)) or 'none'})")
    if isinstance(rep, str):
        if roster is None:
            raise RecordError("claim", "rep", "a rep id needs a roster to resolve it")
        found = Roster.of(roster).get(rep)
        if found is None:
            raise RecordError("claim", "rep", f"rep {rep!r} is not in the roster")
        rep_rec = found
    else:
        rep_rec = _rep_record(rep, "rep")
    if isinstance(records, Mapping | str | bytes):
        raise RecordError("claim", "records", "expected a list of pool records")
    items = [coerce(PoolRecord, r, f"records[{i}]") for i, r in enumerate(records)]
    load = coerce(RepCounts, counts, "counts") if counts is not None else _NO_COUNTS
    clock = _Clock(now, pools_policy.calendar)
    cal = pools_policy.calendar
    tb = _Tracer() if explain else None
    refusals: list[ClaimRefusal] = []
    reasons: list[Reason] = []
    location = spec.ref.location if spec.ref is not None else None

    def refuse(code: str, message: str, record_id: str | None = None, **data: Any) -> None:
        refusals.append(ClaimRefusal(code, message, record_id))
        reasons.append(Reason(code, message, pool, location,
                              {"record_id": record_id, **data} if record_id else data))
        if tb is not None:
            tb.add(TraceStatus.SKIPPED, f"{code}: {message}", values=data)

    ok = tb.add if tb is not None else None
    n = len(items)
    if n == 0:
        refuse("empty_claim", "no record to claim")
    if not spec.members.matches(rep_rec):
        refuse("not_pool_member", f"{rep_rec.id} is not a member of pool {pool}")
    elif ok:
        ok(TraceStatus.MATCHED, f"{rep_rec.id} is a member of pool {pool}")
    if not spec.admins_can_claim and spec.admins.matches(rep_rec):
        refuse("admin_self_claim", f"{rep_rec.id} administers pool {pool} and may not claim "
               "for itself")
    if not rep_rec.active:
        refuse("inactive", f"{rep_rec.id} is inactive")
    seen: set[str] = set()
    for rec in items:
        if rec.id in seen:
            refuse("duplicate_record", f"{rec.id} is listed twice", rec.id)
            continue
        seen.add(rec.id)
        if rec.pool != pool:
            refuse("not_in_pool", f"{rec.id} is in pool {rec.pool}, not {pool}", rec.id,
                   record_pool=rec.pool)
            continue
        if spec.claim_delay is not None and rec.released_at is not None:
            opens = cal.add(rec.released_at, spec.claim_delay, what=f"records.{rec.id}.released_at")
            if now < opens:
                refuse("claim_delay", f"{rec.id} entered the pool at "
                       f"{rec.released_at.isoformat()}; claimable from {opens.isoformat()}",
                       rec.id, claimable_at=opens.isoformat())
        if (spec.cooldown is not None and rec.previous_owner_id == rep_rec.id
                and rec.released_at is not None):
            until = cal.add(rec.released_at, spec.cooldown, what=f"records.{rec.id}.released_at")
            blocked = now <= until if spec.cooldown_inclusive else now < until
            if blocked:
                end = "inclusive" if spec.cooldown_inclusive else "exclusive"
                refuse("previous_owner_cooldown", f"{rep_rec.id} released {rec.id} at "
                       f"{rec.released_at.isoformat()}; cooldown until {until.isoformat()} "
                       f"({end})", rec.id, until=until.isoformat(), end=end)
    day_lo, day_hi = clock.bounds("day")
    month_lo, month_hi = clock.bounds("month")
    today = sum(1 for t in load.claimed_at if day_lo <= t < day_hi)
    month = sum(1 for t in load.claimed_at if month_lo <= t < month_hi)
    assumptions: list[Assumption] = []
    if spec.per_day is not None:
        assumptions.append(Assumption(f"claims_today:{rep_rec.id}", today,
                                      f"claims on {day_lo.date().isoformat()} ({cal.timezone})"))
        if today + n > spec.per_day:
            refuse("daily_claim_limit", f"{rep_rec.id} has claimed {today} today; {n} more "
                   f"exceeds {spec.per_day}", count=today, requested=n, max=spec.per_day)
    if spec.per_month is not None:
        assumptions.append(Assumption(f"claims_month:{rep_rec.id}", month,
                                      f"claims in {month_lo.strftime('%Y-%m')} ({cal.timezone})"))
        if month + n > spec.per_month:
            refuse("monthly_claim_limit", f"{rep_rec.id} has claimed {month} this month; {n} "
                   f"more exceeds {spec.per_month}", count=month, requested=n,
                   max=spec.per_month)
    if spec.holdings_max is not None:
        held = load.holdings - (load.won if spec.holdings_exclude_won else 0)
        assumptions.append(Assumption(f"holdings:{rep_rec.id}", held,
                                      "records held" + (" (won excluded)"
                                                        if spec.holdings_exclude_won else "")))
        if held + n > spec.holdings_max:
            refuse("holdings_cap", f"{rep_rec.id} holds {held}; {n} more exceeds "
                   f"{spec.holdings_max}", count=held, requested=n, max=spec.holdings_max)
    allowed = not refusals
    effects: list[Effect] = []
    if allowed:
        for rec in items:
            target = f"{spec.record}:{rec.id}"
            anchor = rec.released_at.isoformat() if rec.released_at else pool
            effects.append(Effect(
                "set_owner", target, f"set_owner:{target}:claim:{anchor}",
                {"owner_id": rep_rec.id, "owner_kind": "rep", "previous_owner_id": None,
                 "pool": pool},
            ))
            assumptions.append(Assumption(f"{target}:pool", pool, "still in the pool"))
        reasons.append(Reason("claim_allowed", f"{rep_rec.id} may claim {n} record(s) from "
                              f"{pool}", pool, location, {"count": n}))
        if tb is not None:
            tb.add(TraceStatus.MATCHED, f"claim allowed: {n} record(s)")
    outcome = ClaimOutcome(allowed, rep_rec.id, pool, tuple(r.id for r in items),
                           tuple(refusals))
    return Decision(
        kind="claim",
        outcome=outcome,
        reasons=tuple(reasons),
        effects=tuple(effects),
        assumptions=tuple(assumptions) if allowed else (),
        trace=tb.build() if tb is not None else None,
        policy_digest=str(getattr(policy, "digest", "")),
    )


# =============================================================================================
# CLI request kinds and the section specs
# =============================================================================================


def _request_list(request: Mapping[str, Any], key: str, required: bool = False) -> list[Any]:
    value = request.get(key)
    if value is None:
        if required:
            raise RecordError("request", key, "missing")
        return []
    if not isinstance(value, list):
        raise RecordError("request", key, "expected a list")
    return value


def _request_map(request: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = request.get(key)
    if value is not None and not isinstance(value, Mapping):
        raise RecordError("request", key, "expected an object")
    return value


def _decide_assign_request(
    policy: Any, request: Mapping[str, Any], now: datetime, explain: bool
) -> Decision[Assignment]:
    """``{"kind": "assign", "lead": {...}, "roster": [...], "creator": id|{...}, "state",
    "counts", "customers", "cooldowns"}``."""
    lead = request.get("lead")
    if not isinstance(lead, Mapping):
        raise RecordError("request", "lead", "expected the lead as an object")
    return assign(
        policy,
        lead,
        now=now,
        roster=_request_list(request, "roster", required=True),
        creator=request.get("creator"),
        state=_request_map(request, "state"),
        counts=_request_map(request, "counts"),
        customers=_request_list(request, "customers"),
        cooldowns=_request_map(request, "cooldowns"),
        explain=explain,
    )


def _decide_claim_request(
    policy: Any, request: Mapping[str, Any], now: datetime, explain: bool
) -> Decision[ClaimOutcome]:
    """``{"kind": "claim", "rep": id|{...}, "pool": id, "records": [...], "counts": {...},
    "roster": [...]}``."""
    pool = request.get("pool")
    if not isinstance(pool, str):
        raise RecordError("request", "pool", "expected the pool id")
    rep = request.get("rep")
    if rep is None:
        raise RecordError("request", "rep", "missing")
    roster = request.get("roster")
    return claim(
        policy,
        rep,
        _request_list(request, "records", required=True),
        pool=pool,
        now=now,
        counts=_request_map(request, "counts"),
        roster=roster if isinstance(roster, list) else None,
        explain=explain,
    )


SECTIONS: tuple[SectionSpec, ...] = (
    SectionSpec(
        name="pools",
        model=PoolsSection,
        compile=_compile_pools,
        kinds=MappingProxyType({"claim": _decide_claim_request}),
        after=("calendar",),
        description="public pools (公海): members, admins, claim limits, cooldowns, claim delay",
    ),
    SectionSpec(
        name="assignment",
        model=AssignmentSection,
        compile=_compile_assignment,
        kinds=MappingProxyType({"assign": _decide_assign_request}),
        after=("calendar", "pools"),
        description="lead routing: protected customers, ordered rules, strategies, caps",
    ),
)
