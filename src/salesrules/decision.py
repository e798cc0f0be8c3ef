"""Decision, Reason, Effect, Assumption and Trace: the answer every salesrules call returns.

A :class:`Decision` says what was decided (``outcome``), why (``reasons``), what the host must
do (``effects``, each with an idempotency key), what it assumed about the world that concurrent
writers could change (``assumptions``, for compare-and-set), the state to persist (``state``),
when to look again (``next_check_at``), which rules could not be evaluated for this record
(``errors``), an optional ``trace`` (only with ``explain=True``) and the ``policy_digest``.

Decisions are immutable, serialize to JSON and back (``to_json`` / ``from_json``), print as one
readable line (``str``) and explain themselves at length (``explain``).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from salesrules import _serde
from salesrules.errors import Location, RecordError

__all__ = [
    "Assumption",
    "Decision",
    "Effect",
    "Reason",
    "RuleIssue",
    "RuleRef",
    "Trace",
    "TraceStatus",
    "TraceStep",
]

T = TypeVar("T")

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _frozen(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if not value:
        return _EMPTY
    frozen: Mapping[str, Any] = _serde.freeze_json(value)
    return frozen


@dataclass(frozen=True, slots=True)
class RuleRef:
    """A rule's id and where it is written."""

    id: str
    location: Location | None = None

    def __str__(self) -> str:
        return f"{self.id} ({self.location})" if self.location else self.id


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a decision came out as it did: a stable code, a message, and the rule behind it."""

    code: str
    message: str
    rule_id: str | None = None
    location: Location | None = None
    data: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", _frozen(self.data))

    def __str__(self) -> str:
        rule = f" [{self.rule_id}]" if self.rule_id else ""
        return f"{self.code}{rule}: {self.message}"


@dataclass(frozen=True, slots=True)
class RuleIssue:
    """A rule that could not be evaluated for this record (missing field, type mismatch)."""

    code: str
    message: str
    rule_id: str | None = None
    location: Location | None = None
    field: str | None = None

    def __str__(self) -> str:
        rule = f" [{self.rule_id}]" if self.rule_id else ""
        return f"{self.code}{rule}: {self.message}"


@dataclass(frozen=True, slots=True)
class Effect:
    """Something the host must do to apply a decision; ``idempotency_key`` makes it safe twice.

    ``kind`` is a verb such as ``set_owner``, ``release_to_pool``, ``notify``, ``create_project``,
    ``update_field`` or ``check_again``; ``target`` names the record (``lead:L-1``); ``params``
    holds JSON values only (amounts as decimal strings, times as ISO 8601).
    """

    kind: str
    target: str
    idempotency_key: str
    params: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", _frozen(self.params))

    def __str__(self) -> str:
        return f"{self.kind}({self.target})"


@dataclass(frozen=True, slots=True)
class Assumption:
    """A fact the decision relied on that a concurrent writer could change.

    The host applies the decision with compare-and-set: if the current value under ``key`` is
    no longer ``expected``, it re-decides instead of applying.
    """

    key: str
    expected: Any
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "expected", _serde.freeze_json(self.expected))


class TraceStatus(StrEnum):
    """What happened at one step of an evaluation."""

    MATCHED = "MATCHED"
    SKIPPED = "SKIPPED"
    ERRORED = "ERRORED"
    NOTE = "NOTE"


@dataclass(frozen=True, slots=True)
class TraceStep:
    """One row of a trace: a status, the rule it concerns, a message and the values looked at."""

    status: TraceStatus
    message: str
    rule_id: str | None = None
    location: Location | None = None
    values: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", _frozen(self.values))

    def render(self) -> str:
        """Render as ``file:line  STATUS  rule  message``."""
        where = str(self.location) if self.location else "-"
        rule = self.rule_id or "-"
        return f"{where}  {self.status.value}  {rule}  {self.message}"


@dataclass(frozen=True, slots=True)
class Trace:
    """An ordered explanation of how a decision was reached (built only with ``explain=True``)."""

    steps: tuple[TraceStep, ...] = ()

    def render(self) -> str:
        """Render one step per line."""
        return "\n".join(step.render() for step in self.steps)


class TraceBuilder:
    """Collects trace steps during one evaluation; never shared between calls."""

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
        """Append a step."""
        self.steps.append(
            TraceStep(
                status,
                message,
                rule.id if rule else None,
                rule.location if rule else None,
                values or _EMPTY,
            )
        )

    def build(self) -> Trace:
        """Freeze the collected steps."""
        return Trace(tuple(self.steps))


@dataclass(frozen=True, slots=True)
class Decision(Generic[T]):
    """The answer to one question put to a policy. A refusal is a Decision, not an exception."""

    kind: str
    outcome: T
    reasons: tuple[Reason, ...] = ()
    effects: tuple[Effect, ...] = ()
    assumptions: tuple[Assumption, ...] = ()
    state: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    next_check_at: datetime | None = None
    errors: tuple[RuleIssue, ...] = ()
    trace: Trace | None = None
    policy_digest: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", _frozen(self.state))

    @property
    def reason_codes(self) -> tuple[str, ...]:
        """The codes of the reasons, in order."""
        return tuple(r.code for r in self.reasons)

    def __str__(self) -> str:
        outcome = _one_line(self.outcome)
        parts = [f"{self.kind}: {outcome}"]
        if self.reasons:
            parts.append("because " + ", ".join(str(r.code) for r in self.reasons))
        if self.effects:
            parts.append("effects " + ", ".join(str(e) for e in self.effects))
        if self.next_check_at is not None:
            parts.append(f"next check {self.next_check_at.isoformat()}")
        if self.errors:
            parts.append(f"{len(self.errors)} rule error(s)")
        return "; ".join(parts)

    def explain(self) -> str:
        """Return a multi-line, human-readable account of the decision."""
        lines = [str(self)]
        for r in self.reasons:
            where = f" at {r.location}" if r.location else ""
            lines.append(f"  reason {r}{where}")
        for e in self.effects:
            params = json.dumps(_serde.to_jsonable(e.params), ensure_ascii=False, sort_keys=True)
            lines.append(f"  effect {e.kind} {e.target} {params} key={e.idempotency_key}")
        for a in self.assumptions:
            expected = json.dumps(_serde.to_jsonable(a.expected), ensure_ascii=False, sort_keys=True)
            lines.append(f"  assumes {a.key} == {expected} {a.description}".rstrip())
        for err in self.errors:
            lines.append(f"  error {err}")
        if self.trace is not None:
            lines.append("  trace:")
            lines.extend("    " + row for row in self.trace.render().splitlines())
        if self.policy_digest:
            lines.append(f"  policy {self.policy_digest[:12]}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Return the decision as JSON-ready values."""
        data: dict[str, Any] = _serde.to_jsonable(self)
        return data

    def to_json(self, *, indent: int | None = None) -> str:
        """Serialize deterministically (sorted keys): equal decisions give identical bytes."""
        if indent is None:
            return _serde.dumps(self)
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False, indent=indent)

    @classmethod
    def from_json(cls, text: str | Mapping[str, Any], outcome_type: Any = None) -> Decision[Any]:
        """Rebuild a decision from :meth:`to_json` output.

        Args:
            text: the JSON text, or the already-parsed dict.
            outcome_type: the outcome's type; by default looked up from the decision kind.

        Returns:
            The decision, equal to the one serialized.

        Raises:
            RecordError: the JSON is not a decision.
        """
        try:
            data = json.loads(text) if isinstance(text, str) else dict(text)
            kind = data["kind"]
            tp = outcome_type if outcome_type is not None else outcome_type_for(kind)
            raw = dict(data)
            raw["outcome"] = None
            base: Decision[Any] = _serde.from_jsonable(Decision, raw)
            outcome = _serde.from_jsonable(tp, data["outcome"])
        except (ValueError, KeyError, TypeError) as exc:
            raise RecordError("decision", "json", f"not a decision: {exc}") from None
        return Decision(
            kind=base.kind,
            outcome=outcome,
            reasons=base.reasons,
            effects=base.effects,
            assumptions=base.assumptions,
            state=base.state,
            next_check_at=base.next_check_at,
            errors=base.errors,
            trace=base.trace,
            policy_digest=base.policy_digest,
        )


def _one_line(outcome: Any) -> str:
    text = getattr(outcome, "summary", None)
    if callable(text):
        return str(text())
    return str(outcome)


#: Decision kind -> "module:Type" of its outcome. Static; domain modules are imported lazily.
OUTCOME_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "deadline": "salesrules.calendar:DeadlineOutcome",
        "assign": "salesrules.assignment:Assignment",
        "claim": "salesrules.assignment:ClaimOutcome",
        "grade": "salesrules.timeouts:GradeOutcome",
        "check": "salesrules.timeouts:CheckOutcome",
        "sweep": "salesrules.timeouts:SweepOutcome",
        "transition": "salesrules.stages:StageVerdict",
        "available_transitions": "salesrules.stages:AvailableTransitions",
        "collaboration_request": "salesrules.splits:RequestVerdict",
        "approval": "salesrules.splits:ApprovalOutcome",
        "split": "salesrules.splits:SplitOutcome",
        "contract_event": "salesrules.handoff:HandoffOutcome",
        "project_status": "salesrules.handoff:StatusOutcome",
    }
)


def outcome_type_for(kind: str) -> Any:
    """Return the outcome type registered for a decision kind (``Any`` when unknown)."""
    target = OUTCOME_TYPES.get(kind)
    if target is None:
        return Any
    module, _, name = target.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return Any



# -- private fast constructors ------------------------------------------------------------------
# Hot paths (stage gates) build many decisions. These set the slots directly, skipping the
# dataclass ``__init__`` (one ``object.__setattr__`` per field) and ``__post_init__``; the caller
# guarantees that mappings are already frozen JSON (``_EMPTY`` or a ``MappingProxyType`` of
# JSON-native values, as ``freeze_json`` would return), so the result equals the regular one.

_new = object.__new__
_SET_DECISION = tuple(
    Decision.__dict__[f].__set__
    for f in (
        "kind", "outcome", "reasons", "effects", "assumptions", "state", "next_check_at",
        "errors", "trace", "policy_digest",
    )
)
_SET_REASON = tuple(
    Reason.__dict__[f].__set__
    for f in ("code", "message", "rule_id", "location", "data")
)
_SET_EFFECT = tuple(
    Effect.__dict__[f].__set__
    for f in ("kind", "target", "idempotency_key", "params")
)


def _fast_decision(
    kind: str,
    outcome: Any,
    reasons: tuple[Reason, ...],
    effects: tuple[Effect, ...] = (),
    assumptions: tuple[Assumption, ...] = (),
    errors: tuple[RuleIssue, ...] = (),
    trace: Trace | None = None,
    policy_digest: str = "",
) -> Decision[Any]:
    """``Decision(...)`` with an empty state and no next check (private, hot paths only)."""
    d: Decision[Any] = _new(Decision)
    s_kind, s_out, s_rsn, s_eff, s_asm, s_state, s_next, s_err, s_trace, s_dig = _SET_DECISION
    s_kind(d, kind)
    s_out(d, outcome)
    s_rsn(d, reasons)
    s_eff(d, effects)
    s_asm(d, assumptions)
    s_state(d, _EMPTY)
    s_next(d, None)
    s_err(d, errors)
    s_trace(d, trace)
    s_dig(d, policy_digest)
    return d


def _fast_reason(
    code: str,
    message: str,
    rule_id: str | None = None,
    location: Location | None = None,
    data: Mapping[str, Any] = _EMPTY,
) -> Reason:
    """``Reason(...)`` whose ``data`` is already frozen JSON (private, hot paths only)."""
    r: Reason = _new(Reason)
    s_code, s_msg, s_rule, s_loc, s_data = _SET_REASON
    s_code(r, code)
    s_msg(r, message)
    s_rule(r, rule_id)
    s_loc(r, location)
    s_data(r, data if data else _EMPTY)
    return r


def _fast_effect(
    kind: str, target: str, idempotency_key: str, params: Mapping[str, Any]
) -> Effect:
    """``Effect(...)`` whose ``params`` are already frozen JSON (private, hot paths only)."""
    e: Effect = _new(Effect)
    s_kind, s_target, s_key, s_params = _SET_EFFECT
    s_kind(e, kind)
    s_target(e, target)
    s_key(e, idempotency_key)
    s_params(e, params if params else _EMPTY)
    return e
