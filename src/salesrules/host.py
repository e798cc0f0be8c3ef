"""The in-memory reference host: what a CRM does with salesrules decisions, in a few dicts.

A real host owns the data, calls the library when something happens, and applies each
decision's effects. :class:`ReferenceHost` does exactly that in memory, so it serves as the
executable specification of the effect vocabulary (``docs/architecture.md``), as the engine
of :mod:`salesrules.simulate` (what-if replay), and as a host for examples.

It holds reps, leads, customers, opportunities, contracts, projects; who owns each record
(a rep, a queue or a pool, exactly one at every moment); ownership and stage history;
counters of assignments per rep and period; cooldowns; the persisted decision state
(round-robin pointers, collaboration and handoff state); and a schedule of the checks the
decisions asked for (``next_check_at`` and ``check_again``).

Effects are applied idempotently (an idempotency key is applied once). Unknown effect kinds
are counted, never fatal. The host never reads the clock: every call takes ``now``.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from salesrules.decision import Decision, Effect

__all__ = ["LogEntry", "Owner", "ReferenceHost", "record_key", "split_key"]

#: Who owns a record: ``(owner_kind, owner_id)`` with kind ``rep``, ``queue`` or ``pool``.
Owner = tuple[str, str]

UNASSIGNED: Owner = ("queue", "unassigned")


def record_key(kind: str, ident: str) -> str:
    """The host's key of a record: ``lead:L-1``."""
    return f"{kind}:{ident}"


def split_key(key: str) -> tuple[str, str]:
    """Split ``lead:L-1`` into ``("lead", "L-1")``."""
    kind, _, ident = key.partition(":")
    return kind, ident


def _iso(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def _decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return Decimal(0)


@dataclass(slots=True)
class LogEntry:
    """One decision taken during a replay, with the event that caused it."""

    seq: int
    at: datetime
    event_id: str
    event_type: str
    kind: str
    target: str
    decision: Decision[Any] | None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the decision in full)."""
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "event_id": self.event_id,
            "event_type": self.event_type,
            "kind": self.kind,
            "target": self.target,
            "note": self.note,
            "decision": self.decision.to_dict() if self.decision is not None else None,
        }


@dataclass(slots=True)
class RepStats:
    """Per-rep counters kept while effects are applied."""

    assigned: int = 0
    claimed: int = 0
    released: int = 0
    held_peak: int = 0
    credited: dict[str, Decimal] = field(default_factory=dict)
    overlay: dict[str, Decimal] = field(default_factory=dict)


class ReferenceHost:
    """An in-memory CRM that applies salesrules decisions exactly as a real host would.

    Args:
        policy: the compiled policy (anything with ``decide(request)`` and ``kinds``).
        reps: the initial roster (rep records as mappings).
        keep_log: keep every decision in :attr:`log` (turn off for long benchmark runs).
        period: how assignment counters are bucketed for fairness (``month``, ``week``,
            ``day``).
    """

    def __init__(
        self,
        policy: Any,
        reps: Iterable[Mapping[str, Any]] = (),
        *,
        keep_log: bool = True,
        period: str = "month",
    ) -> None:
        self.policy = policy
        self.kinds: frozenset[str] = frozenset(getattr(policy, "kinds", ()))
        self.keep_log = keep_log
        self.period = period
        self.reps: dict[str, dict[str, Any]] = {}
        self.records: dict[str, dict[str, Any]] = {}  # "lead:L-1" -> record fields
        self.owner: dict[str, Owner] = {}
        self.holdings: dict[Owner, dict[str, None]] = {}  # ordered sets
        self.ownership_history: dict[str, list[tuple[datetime, Owner, str]]] = {}
        self.stage_history: dict[str, list[dict[str, Any]]] = {}
        self.activities: dict[str, list[dict[str, Any]]] = {}
        self.cooldowns: dict[tuple[str, str], datetime] = {}
        self.cooldowns_by_rep: dict[str, dict[str, datetime]] = {}
        self.claims_by_rep: dict[str, list[tuple[datetime, str]]] = {}
        self.projects: dict[str, dict[str, Any]] = {}
        self.team: dict[str, dict[str, str]] = {}
        self.access: dict[str, dict[str, str]] = {}
        self.splits: dict[str, dict[str, Any]] = {}
        self.credited_splits: dict[str, bool] = {}
        self.state: dict[tuple[str, str], Mapping[str, Any]] = {}
        self.applied: set[str] = set()
        self.effect_counts: dict[str, int] = {}
        self.unknown_effects: dict[str, int] = {}
        self.releases: list[tuple[datetime, str, str, str]] = []  # (at, record, rep, reason)
        self.assignments: list[tuple[datetime, str, str, str]] = []  # (at, record, rep, how)
        self.claim_refusals: dict[str, tuple[str, ...]] = {}
        self.refusals: list[tuple[datetime, str, str, tuple[str, ...]]] = []
        self.skipped: dict[str, int] = {}
        self.stats: dict[str, RepStats] = {}
        self.period_counts: dict[str, dict[str, int]] = {}
        self.first_follow_up: list[tuple[str, str, float]] = []  # (record, rep, hours)
        self._spell_start: dict[str, tuple[str, datetime]] = {}  # record -> (rep, since)
        self._schedule: list[tuple[datetime, int, str]] = []
        self._scheduled: dict[str, datetime] = {}
        self._seq = 0
        self._counts: dict[tuple[str, str, str], int] = {}
        self.roster_version = 0
        self.log: list[LogEntry] = []
        self.decisions = 0
        for rep in reps:
            self.add_rep(rep)

    # -- roster ----------------------------------------------------------------------------
    def add_rep(self, rep: Mapping[str, Any]) -> None:
        """Add or update a rep."""
        data = dict(rep)
        self.reps[str(data["id"])] = data
        self.roster_version += 1
        self.stats.setdefault(str(data["id"]), RepStats())

    def deactivate_rep(self, rep_id: str) -> None:
        """Mark a rep inactive (they stay in the roster; assignment skips them)."""
        if rep_id in self.reps:
            self.reps[rep_id] = {**self.reps[rep_id], "active": False}
            self.roster_version += 1

    def rep_stats(self, rep_id: str) -> RepStats:
        """The counters of a rep (created on first use)."""
        stats = self.stats.get(rep_id)
        if stats is None:
            stats = self.stats[rep_id] = RepStats()
        return stats

    # -- records and ownership -------------------------------------------------------------
    def put_record(self, key: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace a record (``key`` like ``lead:L-1``)."""
        rec = dict(data)
        self.records[key] = rec
        return rec

    def get_record(self, key: str) -> dict[str, Any] | None:
        """The record's current fields, or ``None``."""
        return self.records.get(key)

    def owner_of(self, key: str) -> Owner | None:
        """Who owns a record now, or ``None`` when the host does not know the record."""
        return self.owner.get(key)

    def rep_owner(self, key: str) -> str | None:
        """The owning rep's id, or ``None`` when a queue or pool holds the record."""
        own = self.owner.get(key)
        return own[1] if own is not None and own[0] == "rep" else None

    def held_by(self, owner: Owner, kind: str | None = None) -> list[str]:
        """The records an owner holds now (optionally only of one kind), in arrival order."""
        keys = list(self.holdings.get(owner, ()))
        if kind is None:
            return keys
        prefix = kind + ":"
        return [k for k in keys if k.startswith(prefix)]

    def first_held(self, owner: Owner, kind: str) -> str | None:
        """The record of ``kind`` an owner has held longest (e.g. the head of a pool)."""
        prefix = kind + ":"
        return next((k for k in self.holdings.get(owner, ()) if k.startswith(prefix)), None)

    def count_held(self, rep_id: str, kind: str = "lead") -> int:
        """How many records of ``kind`` a rep holds now."""
        return self._counts.get(("rep", rep_id, kind), 0)

    def count_owner(self, owner: Owner, kind: str = "lead") -> int:
        """How many records of ``kind`` an owner (rep, queue or pool) holds now."""
        return self._counts.get((owner[0], owner[1], kind), 0)

    def set_owner(self, key: str, owner: Owner, at: datetime, reason: str = "") -> None:
        """Move a record to a new owner (every record has exactly one owner at a time)."""
        old = self.owner.get(key)
        if old == owner:
            return
        rkind = key.partition(":")[0]
        counts = self._counts
        if old is not None:
            self.holdings.get(old, {}).pop(key, None)
            ck = (old[0], old[1], rkind)
            counts[ck] = counts.get(ck, 1) - 1
        self.owner[key] = owner
        self.holdings.setdefault(owner, {})[key] = None
        ck = (owner[0], owner[1], rkind)
        counts[ck] = counts.get(ck, 0) + 1
        rec = self.records.get(key)
        if rec is not None:
            rec["owner_id"] = owner[1]
            rec["owner_kind"] = owner[0]
            rec["owner_since"] = at
        self.ownership_history.setdefault(key, []).append((at, owner, reason))
        if owner[0] == "rep":
            stats = self.rep_stats(owner[1])
            held = counts[ck]
            if rkind == "lead" and held > stats.held_peak:
                stats.held_peak = held
            if rkind == "lead":
                self._spell_start[key] = (owner[1], at)
        else:
            self._spell_start.pop(key, None)

    # -- state -----------------------------------------------------------------------------
    def get_state(self, scope: str, ident: str = "") -> Mapping[str, Any]:
        """The persisted decision state for a scope (``{}`` when none)."""
        return self.state.get((scope, ident), {})

    def save_state(self, scope: str, ident: str, state: Mapping[str, Any]) -> None:
        """Persist a decision's new state (an empty state keeps the old one)."""
        if state:
            self.state[(scope, ident)] = state

    # -- schedule --------------------------------------------------------------------------
    def schedule(self, key: str, at: datetime) -> None:
        """Ask to check ``key`` again at ``at`` (a later request replaces an earlier one)."""
        self._scheduled[key] = at
        self._seq += 1
        heapq.heappush(self._schedule, (at, self._seq, key))

    def scheduled_at(self, key: str) -> datetime | None:
        """When the pending check of ``key`` is due (``None`` when none is pending)."""
        return self._scheduled.get(key)

    def is_scheduled(self, key: str) -> bool:
        """Whether a check of ``key`` is pending."""
        return key in self._scheduled

    def unschedule(self, key: str) -> None:
        """Forget the pending check of ``key``."""
        self._scheduled.pop(key, None)

    def next_due(self) -> datetime | None:
        """When the earliest pending check is due (``None`` when nothing is scheduled)."""
        while self._schedule:
            at, _, key = self._schedule[0]
            if self._scheduled.get(key) == at:
                return at
            heapq.heappop(self._schedule)  # stale: replaced or cancelled
        return None

    def pop_due(self, until: datetime) -> list[tuple[datetime, str]]:
        """Remove and return every check due at or before ``until``, earliest first."""
        out: list[tuple[datetime, str]] = []
        while self._schedule and self._schedule[0][0] <= until:
            at, _, key = heapq.heappop(self._schedule)
            if self._scheduled.get(key) == at:
                del self._scheduled[key]
                out.append((at, key))
        return out

    # -- deciding --------------------------------------------------------------------------
    def decide(
        self,
        request: Mapping[str, Any],
        *,
        at: datetime,
        event_id: str = "",
        event_type: str = "",
        target: str = "",
    ) -> Decision[Any]:
        """Put a request to the policy, log the decision and apply its effects.

        Args:
            request: the request (``kind`` and records); ``now`` is set to ``at``.
            at: the moment of the decision.
            event_id: the event that caused it (for the log).
            event_type: the event's type (for the log).
            target: the record the decision is about.

        Returns:
            The decision (already applied).
        """
        req = dict(request)
        req.setdefault("now", at)
        decision: Decision[Any] = self.policy.decide(req)
        self.decisions += 1
        if self.keep_log:
            self.log.append(
                LogEntry(len(self.log), at, event_id, event_type, decision.kind, target, decision)
            )
        self.apply(decision, at, source=decision.kind, target=target)
        return decision

    def record(
        self,
        decision: Decision[Any],
        *,
        at: datetime,
        event_id: str = "",
        event_type: str = "",
        target: str = "",
    ) -> Decision[Any]:
        """Log and apply a decision the caller obtained itself (e.g. from a domain function)."""
        self.decisions += 1
        if self.keep_log:
            self.log.append(
                LogEntry(len(self.log), at, event_id, event_type, decision.kind, target, decision)
            )
        self.apply(decision, at, source=decision.kind, target=target)
        return decision

    def note(self, at: datetime, event_id: str, event_type: str, target: str, note: str) -> None:
        """Log an event that led to no decision (skipped, or handled by the host alone)."""
        self.skipped[note] = self.skipped.get(note, 0) + 1
        if self.keep_log:
            self.log.append(
                LogEntry(len(self.log), at, event_id, event_type, "", target, None, note)
            )

    # -- effects ---------------------------------------------------------------------------
    def apply(
        self, decision: Decision[Any], at: datetime, *, source: str = "", target: str = ""
    ) -> None:
        """Apply a decision's effects (each idempotency key once) and its ``next_check_at``."""
        for effect in decision.effects:
            key = effect.idempotency_key
            if key:
                if key in self.applied:
                    continue
                self.applied.add(key)
            self.apply_effect(effect, at, source=source)
        if decision.next_check_at is not None and target:
            self.schedule(target, decision.next_check_at)

    def apply_effect(self, effect: Effect, at: datetime, *, source: str = "") -> None:
        """Apply one effect of the vocabulary; unknown kinds are counted."""
        kind = effect.kind
        self.effect_counts[kind] = self.effect_counts.get(kind, 0) + 1
        handler = _EFFECTS.get(kind)
        if handler is None:
            self.unknown_effects[kind] = self.unknown_effects.get(kind, 0) + 1
            return
        handler(self, effect, at, source)

    def _eff_set_owner(self, effect: Effect, at: datetime, source: str) -> None:
        p = effect.params
        owner_id = p.get("owner_id")
        kind = str(p.get("owner_kind") or "rep")
        if owner_id is None:
            owner: Owner = UNASSIGNED
        else:
            owner = (kind, str(owner_id))
        key = effect.target
        if key not in self.records:
            self.records[key] = {"id": split_key(key)[1]}
        how = "claimed" if source == "claim" or p.get("pool") else "assigned"
        if self.owner.get(key) == owner:
            return
        self.set_owner(key, owner, at, how)
        rec = self.records[key]
        rec.pop("released_at", None)
        rec.pop("pool", None)
        if owner[0] == "rep" and key.startswith("lead:"):
            stats = self.rep_stats(owner[1])
            if how == "claimed":
                stats.claimed += 1
                self.claims_by_rep.setdefault(owner[1], []).append((at, key))
            else:
                stats.assigned += 1
            self.assignments.append((at, key, owner[1], how))
            bucket = _period(at, self.period)
            counts = self.period_counts.setdefault(bucket, {})
            counts[owner[1]] = counts.get(owner[1], 0) + 1

    def _eff_release(self, effect: Effect, at: datetime, source: str) -> None:
        p = effect.params
        key = effect.target
        pool = str(p.get("pool") or "pool")
        previous = p.get("previous_owner_id") or self.rep_owner(key) or ""
        reason = str(p.get("clock") or p.get("reason") or "released")
        rec = self.records.get(key)
        if rec is None:
            rec = self.records[key] = {"id": split_key(key)[1]}
        if self.owner.get(key) == ("pool", pool):
            return
        self.set_owner(key, ("pool", pool), at, f"released:{reason}")
        rec["released_at"] = at
        rec["previous_owner_id"] = previous or None
        rec["pool"] = pool
        if previous:
            self.rep_stats(str(previous)).released += 1
        self.releases.append((at, key, str(previous), reason))
        self.unschedule(key)

    def _eff_cooldown(self, effect: Effect, at: datetime, source: str) -> None:
        p = effect.params
        until = _iso(p.get("until"))
        if until is not None:
            rep = split_key(effect.target)[1]
            what = str(p.get("record") or p.get("pool") or "")
            self.cooldowns[(rep, what)] = until
            self.cooldowns_by_rep.setdefault(rep, {})[what] = until

    def _eff_update_field(self, effect: Effect, at: datetime, source: str) -> None:
        rec = self.records.setdefault(effect.target, {"id": split_key(effect.target)[1]})
        name = effect.params.get("field")
        if isinstance(name, str):
            rec[name] = effect.params.get("value")

    def _eff_team(self, effect: Effect, at: datetime, source: str) -> None:
        rep = effect.params.get("rep_id")
        if rep is not None:
            role = str(effect.params.get("role") or effect.params.get("access") or "member")
            self.team.setdefault(effect.target, {})[str(rep)] = role

    def _eff_share(self, effect: Effect, at: datetime, source: str) -> None:
        rep = effect.params.get("rep_id")
        if rep is not None:
            self.access.setdefault(effect.target, {})[str(rep)] = str(
                effect.params.get("access") or "read"
            )

    def _eff_split(self, effect: Effect, at: datetime, source: str) -> None:
        p = effect.params
        kind = str(p.get("kind") or "revenue")
        lines = list(p.get("lines") or ())
        previous = self.splits.setdefault(effect.target, {}).get(kind)
        # A new split replaces the old one: take the old credit back first.
        if self.credited_splits.get(effect.target):
            for line in previous or ():
                self._credit(line, kind, sign=-1)
        self.splits[effect.target][kind] = lines
        if source != "split":
            # an agreed split (approval) is remembered; credit comes with the won deal's split
            for line in previous or ():
                self._credit(line, kind, sign=1)
            return
        self.credited_splits[effect.target] = True
        for line in lines:
            self._credit(line, kind, sign=1)

    def _credit(self, line: Mapping[str, Any], kind: str, *, sign: int) -> None:
        rep = line.get("rep_id")
        if rep is None or line.get("amount") is None:
            return
        stats = self.rep_stats(str(rep))
        book = stats.credited if kind == "revenue" else stats.overlay
        cur = str(line.get("currency") or "")
        book[cur] = book.get(cur, Decimal(0)) + sign * _decimal(line.get("amount"))

    def _eff_project(self, effect: Effect, at: datetime, source: str) -> None:
        # A contract can have a cancelled project and a new one: projects are keyed by their
        # creation key (later effects name it as ``project_key``), not by the contract.
        key = effect.idempotency_key if effect.kind == "create_project" else None
        key = key or effect.params.get("project_key") or effect.target
        proj = self.projects.setdefault(
            key, {"state": "none", "contract": effect.target, "history": []}
        )
        verb = effect.kind.removesuffix("_project")
        state = {"create": "live", "cancel": "cancelled", "flag": "flagged"}.get(verb)
        if verb == "update" and effect.params.get("flagged") is False:
            state = "live"  # un-flagged: approval restored or verified again
        if state is not None:
            proj["state"] = state
        for k, v in effect.params.items():
            proj[k] = v
        proj["history"].append((at, effect.kind))

    def _eff_stage_entered(self, effect: Effect, at: datetime, source: str) -> None:
        p = effect.params
        when = _iso(p.get("at")) or at
        self.add_stage(
            effect.target,
            {
                "id": f"{effect.target}@{when.isoformat()}",
                "stage": p.get("stage"),
                "at": when,
                "by": p.get("by"),
            },
        )

    def _eff_check_again(self, effect: Effect, at: datetime, source: str) -> None:
        when = _iso(effect.params.get("at"))
        if when is not None:
            self.schedule(effect.target, when)

    def _eff_count_only(self, effect: Effect, at: datetime, source: str) -> None:
        return None

    # -- activity --------------------------------------------------------------------------
    def log_activity(self, key: str, activity: Mapping[str, Any], at: datetime) -> None:
        """Record an activity on a record; the first by the current owner is a follow-up."""
        acts = self.activities.setdefault(key, [])
        acts.append(dict(activity))
        rec = self.records.get(key)
        if rec is not None:
            rec["last_activity_at"] = at
            rec["activity_count"] = rec.get("activity_count", 0) + 1
        spell = self._spell_start.get(key)
        if spell is not None and activity.get("by") in (None, spell[0]):
            hours = (at - spell[1]).total_seconds() / 3600.0
            self.first_follow_up.append((key, spell[0], hours))
            del self._spell_start[key]

    def add_stage(self, key: str, entry: Mapping[str, Any]) -> None:
        """Append to an opportunity's stage history and set its stage."""
        self.stage_history.setdefault(key, []).append(dict(entry))
        rec = self.records.get(key)
        if rec is not None:
            rec["stage"] = entry.get("stage")
            rec["stage_entered_at"] = entry.get("at")

    def refusal(self, at: datetime, key: str, event_id: str, missing: Iterable[str]) -> None:
        """Count a refused stage transition and what it was missing."""
        self.refusals.append((at, key, event_id, tuple(missing)))

    # -- invariants ------------------------------------------------------------------------
    def check_invariants(self) -> list[str]:
        """Problems with the host's bookkeeping (empty when every record has one owner)."""
        problems: list[str] = []
        seen: dict[str, Owner] = {}
        for owner, keys in self.holdings.items():
            for key in keys:
                if key in seen:
                    problems.append(f"{key} is held by {seen[key]} and {owner}")
                seen[key] = owner
        for key, owner in self.owner.items():
            if seen.get(key) != owner:
                problems.append(f"{key}: owner {owner} but held by {seen.get(key)}")
        if len(seen) != len(self.owner):
            problems.append(f"{len(seen)} held records but {len(self.owner)} owned records")
        for (okind, oid, rkind), n in self._counts.items():
            actual = sum(
                1 for k in self.holdings.get((okind, oid), ()) if k.startswith(rkind + ":")
            )
            if actual != n:
                problems.append(f"{okind}:{oid} holds {actual} {rkind}s but counts {n}")
        return problems


def _period(at: datetime, period: str) -> str:
    if period == "day":
        return at.date().isoformat()
    if period == "week":
        year, week, _ = at.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{at.year:04d}-{at.month:02d}"


_EFFECTS: dict[str, Any] = {
    "set_owner": ReferenceHost._eff_set_owner,
    "release_to_pool": ReferenceHost._eff_release,
    "start_cooldown": ReferenceHost._eff_cooldown,
    "update_field": ReferenceHost._eff_update_field,
    "add_team_member": ReferenceHost._eff_team,
    "share_access": ReferenceHost._eff_share,
    "record_split": ReferenceHost._eff_split,
    "create_project": ReferenceHost._eff_project,
    "cancel_project": ReferenceHost._eff_project,
    "flag_project": ReferenceHost._eff_project,
    "update_project": ReferenceHost._eff_project,
    "check_again": ReferenceHost._eff_check_again,
    "stage_entered": ReferenceHost._eff_stage_entered,
    "notify": ReferenceHost._eff_count_only,
    "create_task": ReferenceHost._eff_count_only,
    "audit": ReferenceHost._eff_count_only,
}
