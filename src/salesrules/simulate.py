"""What-if analysis: replay a history through a policy, and compare two policies on it.

``simulate(policy, history)`` replays a chronological event log through the in-memory
:class:`~salesrules.host.ReferenceHost`: every event becomes the request a real CRM would put
to the policy (a new lead → ``assign``; a claim → ``claim``; a stage move → ``transition``;
a collaboration request → ``collaboration_request`` / ``approval``; a win → ``split``; a
contract event → ``contract_event``; a project status → ``project_status``), each decision's
effects are applied, and the checks the decisions ask for (``next_check_at``, ``check_again``)
are run at their time, interleaved with the events (``sweep="exact"``), or only at the
log's ``clock_tick`` events (``sweep="ticks"``, like a nightly job). The result holds the
decision log and the metrics: per rep (assigned, claimed, released, held, credited), load
fairness per period (Gini and max/min ratio), releases by reason, time to first follow-up,
stage refusals by missing requirement.

``compare(a, b, history)`` replays the same history under two policies and reports, record
by record and rep by rep, what would change: owners, release times, refused transitions,
load and credit.

The history is JSON Lines (one event per line) or CSV (columns ``id``, ``at``, ``type`` and
event fields; dotted column names such as ``lead.source`` build nested objects; cells that
start with ``{`` or ``[`` are JSON). Event types and their fields:

=========================  ===========================================================
``rep_joined``             ``rep`` (a rep record)
``rep_left``               ``rep_id``
``lead_created``           ``lead`` (a lead record), ``creator_id``
``activity_logged``        ``record`` (``lead:L-1``) or ``lead_id``, ``kind``, ``by``
``lead_claimed``           ``rep_id``, ``lead_id`` (omitted: the longest-waiting lead of
                           ``pool``)
``lead_converted``         ``lead_id``, ``customer``, ``opportunity`` (records)
``stage_change_requested`` ``opportunity_id``, ``to``, ``by``, ``evidence`` (fields set on
                           the opportunity first)
``collaboration_requested`` ``request`` (a collaboration request record)
``collaboration_approved`` ``request_id``, ``by``, ``action`` (``approve``/``reject``)
``deal_won``               ``opportunity_id``, ``amount``, ``currency``
``contract_approved`` …    ``contract`` (record), ``version``, ``verification``; also
                           ``contract_verified``, ``contract_amended``, ``contract_revoked``
``project_status``         ``contract_id``, ``status``, ``percent_complete``, ``version``
``clock_tick``             nothing (a sweep runs when ``sweep="ticks"``)
=========================  ===========================================================

An actor that is omitted (``by``) is the record's owner *at replay time*: under another
policy the owner may differ. Events that no longer make sense under the replayed policy
(an activity on a lead that was released, a conversion of a lead nobody owns) are skipped
and counted in ``skipped`` by reason. Replaying the same history with the same policy gives
identical results (no clock, no randomness, ordered containers only).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import heapq
import io
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from salesrules.errors import RecordError, SalesRulesError
from salesrules.host import UNASSIGNED, LogEntry, ReferenceHost, record_key, split_key

__all__ = [
    "CompareResult",
    "Event",
    "SimulationResult",
    "cli_compare",
    "cli_simulate",
    "compare",
    "diff_results",
    "generate_history",
    "gini",
    "read_history",
    "simulate",
    "summary_table",
    "write_history",
]

EVENT_TYPES: tuple[str, ...] = (
    "rep_joined",
    "rep_left",
    "lead_created",
    "activity_logged",
    "lead_claimed",
    "lead_converted",
    "stage_change_requested",
    "collaboration_requested",
    "collaboration_approved",
    "deal_won",
    "contract_approved",
    "contract_verified",
    "contract_amended",
    "contract_revoked",
    "project_status",
    "clock_tick",
)


# --------------------------------------------------------------------------------------------
# events
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a history: an id, a time, a type and its fields."""

    id: str
    at: datetime
    type: str
    data: Mapping[str, Any]
    line: int = 0

    def get(self, name: str, default: Any = None) -> Any:
        """A field of the event."""
        return self.data.get(name, default)


def _parse_at(value: Any, where: str) -> datetime:
    from salesrules.records import parse_datetime

    return parse_datetime(value, where, "at")


def _event(raw: Mapping[str, Any], line: int) -> Event:
    where = f"event at line {line}"
    if not isinstance(raw, Mapping):
        raise RecordError(where, "*", "an event is a JSON object")
    etype = raw.get("type")
    if etype not in EVENT_TYPES:
        from salesrules._section import did_you_mean

        hint = did_you_mean(str(etype), EVENT_TYPES)
        raise RecordError(
            where, "type", f"unknown event type {etype!r}" + (f" ({hint})" if hint else "")
        )
    at = _parse_at(raw.get("at"), where)
    ident = str(raw.get("id") or f"E{line}")
    data = {k: v for k, v in raw.items() if k not in ("id", "at", "type")}
    return Event(ident, at, str(etype), data, line)


def _csv_cell(value: str) -> Any:
    text = value.strip()
    if text == "":
        return None
    if text[0] in "{[":
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _csv_rows(text: str) -> Iterator[dict[str, Any]]:
    for row in csv.DictReader(io.StringIO(text)):
        out: dict[str, Any] = {}
        for col, cell in row.items():
            if col is None or cell is None:
                continue
            value = _csv_cell(cell)
            if value is None:
                continue
            parts = col.strip().split(".")
            target = out
            for part in parts[:-1]:
                target = target.setdefault(part, {})
            target[parts[-1]] = value
        yield out


def read_history(source: str | Path | Iterable[Mapping[str, Any]]) -> list[Event]:
    """Read a history: a ``.jsonl`` / ``.csv`` file, or an iterable of event mappings.

    Args:
        source: the file, or the events themselves.

    Returns:
        The events in chronological order (ties keep their order in the source).

    Raises:
        RecordError: an event is malformed (names the line and the field).
    """
    raws: Iterable[tuple[int, Any]]
    if isinstance(source, str | Path):
        path = Path(source)
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".csv":
            raws = ((i + 2, row) for i, row in enumerate(_csv_rows(text)))
        else:
            parsed: list[tuple[int, Any]] = []
            for i, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    parsed.append((i, json.loads(line)))
                except ValueError as exc:
                    raise RecordError(f"{path}:{i}", "*", f"not valid JSON: {exc}") from None
            raws = parsed
    else:
        raws = enumerate(source, start=1)
    events = [_event(raw, line) for line, raw in raws]
    events.sort(key=lambda e: e.at)  # stable: ties keep their order
    return events


def write_history(events: Iterable[Event | Mapping[str, Any]], path: str | Path) -> None:
    """Write events as JSON Lines (sorted keys, UTF-8)."""
    from salesrules import _serde

    with Path(path).open("w", encoding="utf-8") as fh:
        for ev in events:
            raw = (
                {"id": ev.id, "at": ev.at, "type": ev.type, **ev.data}
                if isinstance(ev, Event)
                else ev
            )
            fh.write(json.dumps(_serde.to_jsonable(raw), ensure_ascii=False, sort_keys=True))
            fh.write("\n")


# --------------------------------------------------------------------------------------------
# requests: how the reference host asks each decision kind
# --------------------------------------------------------------------------------------------


def _public(rec: Mapping[str, Any]) -> dict[str, Any]:
    """A record as the host passes it in (host bookkeeping fields stripped)."""
    return {k: v for k, v in rec.items() if not k.startswith("_")}


class _Replay:
    """Turns events into requests and applies the decisions through a reference host.

    Requests follow each domain's documented request format (``docs/<module>.md``). Kinds the
    policy lacks are skipped: a policy without ``assignment`` leaves new leads in the
    ``unassigned`` queue, one without ``stages`` lets every stage move through, and so on.
    """

    def __init__(self, host: ReferenceHost) -> None:
        self.host = host
        self.kinds = host.kinds
        self.policy = host.policy
        from salesrules.policy import Policy

        # A compiled Policy is called through the domain functions (a validated roster is
        # reused); anything else with ``decide(request)`` gets the same requests as JSON-style
        # mappings, as the CLI would send them.
        self.direct = isinstance(host.policy, Policy)
        self.company_index: dict[str, str] = {}  # normalized company name -> customer key
        self.transitions: dict[str, tuple[bool, tuple[str, ...]]] = {}
        self.transition_records: dict[str, str] = {}
        self.events = 0
        self._roster_obj: Any = None
        self._roster_seen = -1
        self._counts: dict[str, Any] = {}
        self._dirty: set[str] = set()
        self._assigned_at: dict[str, list[datetime]] = {}
        self._claimed_at: dict[str, list[datetime]] = {}
        self.opps_of: dict[str, list[str]] = {}
        self._count_horizon: timedelta | None = None
        self.pending: list[tuple[datetime, int, Event]] = []
        self._seq = 0
        self._checker: Any = None  # timeouts' replay-long checker (deadline memos)

    # -- helpers -----------------------------------------------------------------------
    def _rep(self, rep_id: Any) -> dict[str, Any] | None:
        return self.host.reps.get(str(rep_id)) if rep_id is not None else None

    def _roster(self) -> Any:
        """The assignment roster, validated once per roster change."""
        if self._roster_seen != self.host.roster_version:
            from salesrules.assignment import Roster

            self._roster_obj = Roster(list(self.host.reps.values()))
            self._roster_seen = self.host.roster_version
        return self._roster_obj

    def _rep_counts(self, rep_id: str, now: datetime) -> Any:
        """What the host counted for a rep (``RepCounts``), rebuilt only when it changed."""
        from salesrules.records import RepCounts

        host = self.host
        cutoff = now - self._horizon()
        assigned = self._assigned_at.get(rep_id, [])
        while assigned and assigned[0] < cutoff:
            assigned.pop(0)
        claimed = self._claimed_at.get(rep_id, [])
        month_ago = now - _COUNT_HORIZON
        while claimed and claimed[0] < month_ago:
            claimed.pop(0)
        records = host.records
        open_records = tuple(
            {"id": k[5:], "status": records[k].get("status", "new")}  # k[5:]: after "lead:"
            for k in host.holdings.get(("rep", rep_id), ())
            if k.startswith("lead:")
        )
        return RepCounts.model_construct(
            assigned_at=tuple(assigned),
            claimed_at=tuple(claimed),
            open_records=open_records,
            holdings=host.count_held(rep_id, "lead"),
            won=0,
            last_assigned_at=assigned[-1] if assigned else None,
            by_cap={},
        )

    def _horizon(self) -> timedelta:
        """How far back assignment/claim times matter: the longest cap period or window.

        Claims are counted per local day and month, so a month is always kept for them;
        assignment caps need only their longest window (older times are dropped).
        """
        if self._count_horizon is None:
            horizon = timedelta(days=1)
            caps: tuple[Any, ...] = ()
            if self.direct and self.policy.has("assignment"):
                caps = getattr(self.policy.section("assignment"), "caps", ())
            for cap in caps:
                if cap.window is not None:
                    horizon = max(horizon, cap.window)
                elif cap.period is not None:
                    horizon = max(horizon, _PERIODS.get(cap.period, _COUNT_HORIZON))
            if not self.direct:
                horizon = _COUNT_HORIZON
            self._count_horizon = horizon + timedelta(days=1)
        return self._count_horizon

    def _counts_for(self, now: datetime) -> dict[str, Any]:
        for rep_id in sorted(self._dirty):
            self._counts[rep_id] = self._rep_counts(rep_id, now)
        self._dirty.clear()
        return self._counts

    def _touch(self, *rep_ids: Any) -> None:
        for r in rep_ids:
            if r:
                self._dirty.add(str(r))

    def _after(self, decision: Any, at: datetime) -> None:
        """Keep the counts in step with the ownership changes a decision made."""
        for eff in getattr(decision, "effects", ()):
            if eff.kind in ("set_owner", "release_to_pool") and eff.target.startswith("lead:"):
                p = eff.params
                self._touch(p.get("previous_owner_id"))
                if eff.kind == "set_owner" and p.get("owner_kind", "rep") == "rep":
                    rep = str(p.get("owner_id"))
                    self._touch(rep)
                    book = self._claimed_at if p.get("pool") else self._assigned_at
                    book.setdefault(rep, []).append(at)

    def run(self, ev: Event, target: str, fn: Callable[[], Any]) -> Any:
        """Call a domain function; log and apply its decision (a bad record is noted)."""
        host = self.host
        before = host.rep_owner(target) if target else None
        try:
            decision = fn()
        except RecordError as exc:
            host.note(ev.at, ev.id, ev.type, target, f"record_error:{exc.record}.{exc.field}")
            return None
        host.record(decision, at=ev.at, event_id=ev.id, event_type=ev.type, target=target)
        self._touch(before)
        self._after(decision, ev.at)
        return decision

    def decide(self, ev: Event, request: Mapping[str, Any], target: str) -> Any:
        """Put a JSON-style request to ``Policy.decide``; log and apply the decision."""
        req = {**request, "now": ev.at}
        return self.run(ev, target, lambda: self.policy.decide(req))

    # -- tracked records (timeouts) ----------------------------------------------------
    def _tracked(self, key: str) -> dict[str, Any] | None:
        host = self.host
        rec = host.records.get(key)
        own = host.owner_of(key)
        if rec is None or own is None or own[0] != "rep":
            return None
        kind, _ = split_key(key)
        status = "open"
        if kind == "opportunity":
            stage = rec.get("stage")
            status = "won" if stage == "won" else "lost" if stage == "lost" else "open"
        out = {k: v for k, v in rec.items() if not k.startswith("_")}  # _public(rec)
        out["type"], out["status"], out["owner_id"] = kind, status, own[1]
        if kind == "lead":
            out.pop("pool", None)
        rep = host.reps.get(own[1])
        if rep is not None and rep.get("manager_id"):
            out["owner_manager_id"] = rep["manager_id"]
        if kind == "customer":
            out["open_opportunities"] = sum(
                1
                for ok in self.opps_of.get(key, ())
                if host.records.get(ok, {}).get("stage") not in ("won", "lost")
                and host.rep_owner(ok) is not None
            )
        return out

    def check(self, key: str, at: datetime, event_id: str = "", event_type: str = "sweep") -> None:
        """Ask the timeouts section whether a record is due; schedule the next check."""
        if "check" not in self.kinds:
            return
        record = self._tracked(key)
        if record is None:
            return
        host = self.host
        if self.direct and self._checker is None:
            from salesrules.timeouts import _Checker

            self._checker = _Checker(self.policy)
        checker = self._checker
        customer = None
        if record["type"] == "opportunity" and record.get("customer_id"):
            customer = host.records.get(record_key("customer", str(record["customer_id"])))
        acts = host.activities.get(key, ())
        history = host.stage_history.get(key, ())
        ev = Event(event_id, at, event_type, _EMPTY)
        self.run(
            ev,
            key,
            lambda: (
                checker.check(
                    record,
                    now=at,
                    activities=acts,
                    stage_history=history,
                    customer=customer,
                )
                if self.direct
                else self.policy.decide(
                    {
                        "kind": "check",
                        "now": at,
                        "record": record,
                        "activities": list(acts),
                        "stage_history": list(history),
                        "customer": customer,
                    }
                )
            ),
        )

    def sweep_at(self, at: datetime, event_id: str = "") -> None:
        """A nightly job: check every record whose check is due, at ``at``, in one sweep."""
        host = self.host
        keys = [key for _, key in host.pop_due(at)]
        if not keys or "check" not in self.kinds:
            return
        if not self.direct:
            for key in keys:
                self.check(key, at, event_id, "clock_tick")
            return
        from salesrules.timeouts import sweep

        items: list[tuple[str, dict[str, Any]]] = []
        for key in keys:
            record = self._tracked(key)
            if record is None:
                continue
            customer = None
            if record["type"] == "opportunity" and record.get("customer_id"):
                customer = host.records.get(record_key("customer", str(record["customer_id"])))
            items.append(
                (
                    key,
                    {
                        "record": record,
                        "activities": host.activities.get(key, ()),
                        "stage_history": host.stage_history.get(key, ()),
                        "customer": customer,
                    },
                )
            )
        done = 0
        try:
            for decision in sweep(self.policy, [item for _, item in items], at):
                key = items[done][0]
                done += 1
                before = host.rep_owner(key)
                host.record(decision, at=at, event_id=event_id, event_type="clock_tick", target=key)
                self._touch(before)
                self._after(decision, at)
        except RecordError:
            for key, _ in items[done:]:  # the bad record is noted; the others still run
                self.check(key, at, event_id, "clock_tick")

    # -- handlers ----------------------------------------------------------------------
    def on_rep_joined(self, ev: Event) -> None:
        rep = ev.get("rep")
        if isinstance(rep, Mapping) and "id" in rep:
            self.host.add_rep(rep)

    def on_rep_left(self, ev: Event) -> None:
        self.host.deactivate_rep(str(ev.get("rep_id")))

    def on_lead_created(self, ev: Event) -> None:
        host = self.host
        lead = dict(ev.get("lead") or {})
        if "id" not in lead:
            host.note(ev.at, ev.id, ev.type, "", "lead_without_id")
            return
        key = record_key("lead", str(lead["id"]))
        if ev.get("creator_id") and "creator_id" not in lead:
            lead["creator_id"] = ev.get("creator_id")
        lead.setdefault("status", "new")
        lead.setdefault("created_at", ev.at)
        host.put_record(key, lead)
        host.set_owner(key, UNASSIGNED, ev.at, "created")
        if "grade" in self.kinds:
            d = self.decide(ev, {"kind": "grade", "lead": _public(lead)}, key)
            grade = getattr(getattr(d, "outcome", None), "grade", None)
            if grade is not None:
                lead["grade"] = grade
                lead["grade_changes"] = [{"grade": grade, "at": ev.at}]
        if "assign" in self.kinds:
            from salesrules.assignment import assign

            customers = []
            ckey = self.company_index.get(_norm(lead.get("company")))
            owner = host.rep_owner(ckey) if ckey else None
            if ckey is not None and owner is not None:
                c = host.records[ckey]
                # protected while a rep owns it: until the check that may release it
                until = host.scheduled_at(ckey) or ev.at + _PROTECTION_HORIZON
                customers.append(
                    {
                        "id": c["id"],
                        "name": c.get("name") or "",
                        "owner_id": owner,
                        "credit_code": c.get("credit_code"),
                        "protected_until": max(until, ev.at + timedelta(seconds=1)),
                    }
                )
            roster = self._roster() if self.direct else list(host.reps.values())
            counts = self._counts_for(ev.at)
            state = host.get_state("assign")
            creator = lead.get("creator_id")
            creator = creator if creator in host.reps else None
            d = self.run(
                ev,
                key,
                lambda: (
                    assign(
                        self.policy,
                        _public(lead),
                        now=ev.at,
                        roster=roster,
                        creator=creator,
                        state=state,
                        counts=counts,
                        customers=customers,
                    )
                    if self.direct
                    else self.policy.decide(
                        {
                            "kind": "assign",
                            "now": ev.at,
                            "lead": _public(lead),
                            "roster": roster,
                            "creator": creator,
                            "state": state,
                            "counts": counts,
                            "customers": customers,
                        }
                    )
                ),
            )
            if d is not None and d.state:
                host.save_state("assign", "", {**state, **d.state})
        self.check(key, ev.at, ev.id, ev.type)

    def on_activity_logged(self, ev: Event) -> None:
        host = self.host
        key = ev.get("record") or (
            record_key("lead", str(ev.get("lead_id"))) if ev.get("lead_id") else None
        )
        if not isinstance(key, str) or key not in host.records:
            host.note(ev.at, ev.id, ev.type, str(key), "unknown_record")
            return
        owner = host.rep_owner(key)
        by = ev.get("by") or owner
        if owner is None or by is None:
            host.note(ev.at, ev.id, ev.type, key, "not_owned")
            return
        activity = {
            "id": ev.id,
            "record_id": split_key(key)[1],
            "kind": ev.get("kind") or "call",
            "at": ev.at,
            "by": by,
        }
        host.log_activity(key, activity, ev.at)
        rec = host.records[key]
        if key.startswith("lead:") and rec.get("status") == "new" and by == owner:
            rec["status"] = "contacted"
            self._touch(owner)
        # An activity can only start a clock or move deadlines later, so a pending check
        # (which will see the activity) is enough; check now only when none is pending.
        if not host.is_scheduled(key):
            self.check(key, ev.at, ev.id, ev.type)

    def on_lead_claimed(self, ev: Event) -> None:
        host = self.host
        rep_id = ev.get("rep_id")
        if rep_id is None or str(rep_id) not in host.reps:
            host.note(ev.at, ev.id, ev.type, "", "unknown_rep")
            return
        rep_id = str(rep_id)
        pool = str(ev.get("pool") or "lead_pool")
        lead_id = ev.get("lead_id")
        if lead_id is None:
            key = self._pick_from_pool(pool, rep_id, ev.at)
            if key is None:
                host.note(ev.at, ev.id, ev.type, "", "pool_empty")
                return
        else:
            key = record_key("lead", str(lead_id))
        own = host.owner_of(key)
        if own is None or own[0] != "pool":
            host.note(ev.at, ev.id, ev.type, key, "not_in_pool")
            return
        if "claim" not in self.kinds:
            host.note(ev.at, ev.id, ev.type, key, "no_claim_policy")
            return
        from salesrules.assignment import claim

        rec = host.records[key]
        record = {
            "id": rec["id"],
            "pool": own[1],
            "released_at": rec.get("released_at"),
            "previous_owner_id": rec.get("previous_owner_id"),
        }
        counts = self._counts_for(ev.at).get(rep_id) or self._rep_counts(rep_id, ev.at)
        rep = host.reps[rep_id]
        d = self.run(
            ev,
            key,
            lambda: (
                claim(self.policy, rep, [record], pool=own[1], now=ev.at, counts=counts)
                if self.direct
                else self.policy.decide(
                    {
                        "kind": "claim",
                        "now": ev.at,
                        "rep": rep,
                        "records": [record],
                        "pool": own[1],
                        "counts": counts,
                    }
                )
            ),
        )
        if d is not None and not getattr(d.outcome, "allowed", False):
            host.claim_refusals[ev.id] = tuple(r.code for r in d.reasons)
        elif d is not None and ev.get("follow_up_hours") is not None:
            # the claimer's first contact, relative to the claim (it exists in every replay)
            when = ev.at + timedelta(hours=float(ev.get("follow_up_hours")))
            self.later(
                Event(
                    f"{ev.id}/follow-up",
                    when,
                    "activity_logged",
                    {"record": key, "by": rep_id, "kind": ev.get("follow_up_kind") or "call"},
                )
            )
        self.check(key, ev.at, ev.id, ev.type)

    def later(self, ev: Event) -> None:
        """Schedule an event the replay itself derives (it runs in time order)."""
        self._seq += 1
        heapq.heappush(self.pending, (ev.at, self._seq, ev))

    def _pick_from_pool(self, pool: str, rep_id: str, at: datetime) -> str | None:
        """The longest-waiting lead of the pool that the rep did not release themselves."""
        for k in self.host.holdings.get(("pool", pool), ()):
            if not k.startswith("lead:"):
                continue
            rec = self.host.records[k]
            if rec.get("previous_owner_id") == rep_id:
                continue
            released = rec.get("released_at")
            if isinstance(released, datetime) and at - released < _CLAIM_SETTLE:
                return None  # the rest of the pool arrived even later
            return k
        return None

    def on_lead_converted(self, ev: Event) -> None:
        host = self.host
        lead_key = record_key("lead", str(ev.get("lead_id")))
        owner = host.rep_owner(lead_key)
        if owner is None:
            host.note(ev.at, ev.id, ev.type, lead_key, "not_owned")
            return
        lead = host.records[lead_key]
        lead["converted_at"] = ev.at
        lead["status"] = "converted"
        host.unschedule(lead_key)
        cust = dict(ev.get("customer") or {"id": f"C-{lead['id']}"})
        cust.setdefault("name", lead.get("company"))
        cust.setdefault("registered_at", ev.at)
        ckey = record_key("customer", str(cust["id"]))
        if ckey in host.records and host.rep_owner(ckey) is not None:
            host.records[ckey].update({k: v for k, v in cust.items() if k != "id"})
        else:
            host.put_record(ckey, cust)
            host.set_owner(ckey, ("rep", owner), ev.at, "converted")
        name = _norm(cust.get("name"))
        if name:
            self.company_index[name] = ckey
        # the lead's life ends here; the relationship lives on as a customer
        host.set_owner(lead_key, ("queue", "converted"), ev.at, "converted")
        self._touch(owner)
        opp = ev.get("opportunity")
        if isinstance(opp, Mapping) and "id" in opp:
            o = dict(opp)
            o.setdefault("customer_id", cust["id"])
            o.setdefault("stage", "lead_confirmed")
            o.setdefault("customer_registered", True)
            okey = record_key("opportunity", str(o["id"]))
            host.put_record(okey, o)
            host.set_owner(okey, ("rep", owner), ev.at, "converted")
            host.add_stage(
                okey,
                {
                    "id": f"{okey}@{ev.at.isoformat()}",
                    "stage": o["stage"],
                    "at": ev.at,
                    "by": owner,
                },
            )
            self.opps_of.setdefault(ckey, []).append(okey)
            self.check(okey, ev.at, ev.id, ev.type)
        self.check(ckey, ev.at, ev.id, ev.type)

    def _stage_opportunity(self, okey: str, owner: str) -> dict[str, Any]:
        host = self.host
        opp = host.records[okey]
        rep = host.reps.get(owner, {})
        collaborators = [r for r, role in host.team.get(okey, {}).items() if r != owner]
        lines = host.splits.get(okey, {}).get("revenue")
        return {
            **_public(opp),
            "owner_id": owner,
            "owner_manager_id": rep.get("manager_id"),
            "collaborator_ids": collaborators,
            "splits": [{"rep_id": x["rep_id"], "share": x["share"]} for x in lines]
            if lines
            else [{"rep_id": owner, "share": "100"}],
        }

    def on_stage_change_requested(self, ev: Event) -> None:
        self._transition(ev, str(ev.get("opportunity_id")), ev.get("to"), ev.get("evidence"))

    def _transition(self, ev: Event, opp_id: str, to: Any, evidence: Any) -> bool:
        host = self.host
        okey = record_key("opportunity", opp_id)
        opp = host.records.get(okey)
        owner = host.rep_owner(okey)
        if opp is None or owner is None:
            host.note(ev.at, ev.id, ev.type, okey, "not_owned")
            return False
        if isinstance(evidence, Mapping):
            _merge_evidence(opp, evidence)
        actor = self._rep(ev.get("by") or owner) or {"id": owner}
        self.transition_records[ev.id] = okey
        if "transition" not in self.kinds:
            host.add_stage(okey, {"id": ev.id, "stage": to, "at": ev.at, "by": actor["id"]})
            opp["stage"] = to
            self.transitions[ev.id] = (True, ())
            return True
        request = {
            "kind": "transition",
            "opportunity": self._stage_opportunity(okey, owner),
            "to_stage": to,
            "actor": {"id": actor["id"], "roles": list(actor.get("roles") or ())},
            "channel": "ui",
            "request_id": ev.id,
            "reason": ev.get("reason"),
        }
        d = self.decide(ev, request, okey)
        if d is None:
            return False
        allowed = bool(getattr(d.outcome, "allowed", False))
        missing = () if allowed else _missing_requirements(d)
        self.transitions[ev.id] = (allowed, missing)
        if allowed:
            if opp.get("stage") != to:  # a stages section without a stage_entered effect
                host.add_stage(okey, {"id": ev.id, "stage": to, "at": ev.at, "by": actor["id"]})
            if to in ("won", "lost"):
                host.unschedule(okey)
            else:
                self.check(okey, ev.at, ev.id, ev.type)
            cust = opp.get("customer_id")
            if cust and to in ("won", "lost"):
                # a closed opportunity may start the customer's own follow-up clock
                self.check(record_key("customer", str(cust)), ev.at, ev.id, ev.type)
        else:
            host.refusal(ev.at, okey, ev.id, missing)
        return allowed

    def _split_deal(self, okey: str, owner: str) -> dict[str, Any]:
        host = self.host
        opp = host.records[okey]
        lines = host.splits.get(okey, {}).get("revenue") or ()
        return {
            "id": opp["id"],
            "owner_id": owner,
            "stage": opp.get("stage"),
            "region": opp.get("region"),
            "amount": opp.get("amount"),
            "currency": opp.get("currency"),
            "split": [
                {"rep_id": x["rep_id"], "share": x["share"], "role": x.get("role") or ""}
                for x in lines
            ],
        }

    def on_collaboration_requested(self, ev: Event) -> None:
        host = self.host
        req = dict(ev.get("request") or {})
        rid = str(req.setdefault("id", ev.id))
        okey = record_key("opportunity", str(req.get("record_id")))
        owner = host.rep_owner(okey)
        if owner is None:
            host.note(ev.at, ev.id, ev.type, okey, "not_owned")
            return
        req.setdefault("owner_id", owner)
        if "collaboration_request" not in self.kinds:
            host.note(ev.at, ev.id, ev.type, okey, "no_splits_policy")
            return
        existing = [
            s
            for (scope, _), s in host.state.items()
            if scope == "collaboration" and s.get("record_id") == okey.partition(":")[2]
        ]
        request = {
            "kind": "collaboration_request",
            "request": req,
            "record": self._split_deal(okey, owner),
            "requester": self._rep(req.get("requester_id")) or {},
            "owner": self._rep(owner),
            "existing": existing,
        }
        d = self.decide(ev, request, okey)
        if d is not None:
            host.save_state("collaboration", rid, d.state)

    def on_collaboration_approved(self, ev: Event) -> None:
        host = self.host
        rid = str(ev.get("request_id"))
        state = host.get_state("collaboration", rid)
        if not state or "approval" not in self.kinds:
            host.note(ev.at, ev.id, ev.type, rid, "no_pending_request")
            return
        okey = record_key("opportunity", str(state.get("record_id")))
        owner = host.rep_owner(okey)
        if owner is None:
            host.note(ev.at, ev.id, ev.type, okey, "not_owned")
            return
        request = {
            "kind": "approval",
            "state": state,
            "action": ev.get("action") or "approve",
            "actor": self._rep(ev.get("by") or owner),
            "record": self._split_deal(okey, owner),
            "owner": self._rep(owner),
        }
        d = self.decide(ev, request, okey)
        if d is not None:
            host.save_state("collaboration", rid, d.state)

    def on_deal_won(self, ev: Event) -> None:
        host = self.host
        okey = record_key("opportunity", str(ev.get("opportunity_id")))
        opp = host.records.get(okey)
        owner = host.rep_owner(okey)
        if opp is None or owner is None:
            host.note(ev.at, ev.id, ev.type, okey, "not_owned")
            return
        if ev.get("amount") is not None:
            opp["amount"] = str(ev.get("amount"))
        if ev.get("currency") is not None:
            opp["currency"] = ev.get("currency")
        if not self._transition(ev, opp["id"], "won", ev.get("evidence")):
            return
        if "split" not in self.kinds:
            return
        deal = self._split_deal(okey, owner)
        deal["stage"] = "won"
        self.decide(ev, {"kind": "split", "deal": deal}, okey)

    def on_contract(self, ev: Event) -> None:
        host = self.host
        contract = dict(ev.get("contract") or {})
        cid = str(contract.get("id") or ev.get("contract_id"))
        ckey = record_key("contract", cid)
        prev = host.records.get(ckey, {})
        merged = {**prev, **contract, "id": cid}
        opp_key = record_key("opportunity", str(merged.get("opportunity_id")))
        owner = host.rep_owner(opp_key)
        if owner is not None:
            merged["owner_id"] = owner
        host.put_record(ckey, merged)
        if "contract_event" not in self.kinds:
            return
        opp = host.records.get(opp_key)
        cust = host.records.get(record_key("customer", str(merged.get("customer_id"))))
        request = {
            "kind": "contract_event",
            "contract": _public(merged),
            "opportunity": {
                **_public(opp),
                "owner_id": owner,
                "collaborator_ids": [r for r in host.team.get(opp_key, {}) if r != owner],
            }
            if opp
            else None,
            "customer": _public(cust) if cust else None,
            "event": {
                "id": ev.id,
                "contract_id": cid,
                "type": ev.type.removeprefix("contract_"),
                "version": ev.get("version", 0),
                "at": ev.at,
                "verification": ev.get("verification"),
            },
            "state": host.get_state("handoff", cid) or None,
        }
        d = self.decide(ev, request, ckey)
        if d is not None and d.state:
            state = dict(d.state)
            project = state.get("project")
            if isinstance(project, Mapping) and project.get("id") is None:
                state["project"] = {**project, "id": f"P-{cid}"}  # the project tool's id
            host.save_state("handoff", cid, state)

    def on_project_status(self, ev: Event) -> None:
        host = self.host
        cid = str(ev.get("contract_id"))
        if "project_status" not in self.kinds:
            return
        state = host.get_state("handoff", cid)
        status = {k: v for k, v in ev.data.items() if k != "contract_id"}
        status.update({"id": ev.id, "at": ev.at, "contract_id": cid})
        project = state.get("project") if state else None
        if isinstance(project, Mapping) and project.get("id") and "project_id" not in status:
            status["project_id"] = project["id"]
        request = {"kind": "project_status", "event": status, "state": state or None}
        d = self.decide(ev, request, record_key("contract", cid))
        if d is not None and d.state:
            host.save_state("handoff", cid, d.state)

    def on_clock_tick(self, ev: Event) -> None:
        return None

    def dispatch(self, ev: Event) -> None:
        self.events += 1
        handler = _HANDLERS.get(ev.type)
        if handler is not None:
            handler(self, ev)


_EMPTY: Mapping[str, Any] = {}

_PERIODS = {"day": timedelta(days=1), "week": timedelta(days=7), "month": timedelta(days=31)}

#: A customer with no pending check stays protected this long (the host re-asks at each lead).
_PROTECTION_HORIZON = timedelta(days=365)

#: How far back the host keeps assignment and claim times (covers day/week/month caps).
_COUNT_HORIZON = timedelta(days=32)

#: A scripted claim without a lead id skips leads released less than this long ago (pools
#: usually hold new entries back for a while; the policy still decides on the claim).
_CLAIM_SETTLE = timedelta(hours=2)


def _merge_evidence(opp: dict[str, Any], evidence: Mapping[str, Any]) -> None:
    """Set evidence on an opportunity: lists (attachments, approvals) grow, mappings merge."""
    for k, v in evidence.items():
        cur = opp.get(k)
        if isinstance(v, list) and isinstance(cur, list | tuple):
            opp[k] = [*cur, *(x for x in v if x not in cur)]
        elif isinstance(v, Mapping) and isinstance(cur, Mapping):
            opp[k] = {**cur, **v}
        else:
            opp[k] = v


_HANDLERS: dict[str, Callable[[_Replay, Event], None]] = {
    "rep_joined": _Replay.on_rep_joined,
    "rep_left": _Replay.on_rep_left,
    "lead_created": _Replay.on_lead_created,
    "activity_logged": _Replay.on_activity_logged,
    "lead_claimed": _Replay.on_lead_claimed,
    "lead_converted": _Replay.on_lead_converted,
    "stage_change_requested": _Replay.on_stage_change_requested,
    "collaboration_requested": _Replay.on_collaboration_requested,
    "collaboration_approved": _Replay.on_collaboration_approved,
    "deal_won": _Replay.on_deal_won,
    "contract_approved": _Replay.on_contract,
    "contract_verified": _Replay.on_contract,
    "contract_amended": _Replay.on_contract,
    "contract_revoked": _Replay.on_contract,
    "project_status": _Replay.on_project_status,
    "clock_tick": _Replay.on_clock_tick,
}


def _norm(name: Any) -> str:
    return "".join(str(name).split()).lower() if name else ""


def _missing_requirements(decision: Any) -> tuple[str, ...]:
    """What a refused transition lacked: failed gates' ids/codes, else the reason codes."""
    outcome = decision.outcome
    out: list[str] = []
    for attr in ("failed_gates", "missing", "failures"):
        for item in getattr(outcome, attr, ()) or ():
            label = None
            for name in ("requirement", "field", "id", "code", "name"):
                label = getattr(item, name, None) or (
                    item.get(name) if isinstance(item, Mapping) else None
                )
                if label:
                    break
            out.append(str(label or item))
        if out:
            return tuple(out)
    return tuple(r.code for r in decision.reasons)


# --------------------------------------------------------------------------------------------
# replay
# --------------------------------------------------------------------------------------------


class _Progress:
    """A minimal stderr progress bar (only when asked, or when stderr is a terminal)."""

    def __init__(self, total: int, label: str, enabled: bool | None) -> None:
        self.total = max(total, 1)
        self.label = label
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.last = -1.0

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last < 0.2 and done < self.total:
            return
        self.last = now
        frac = done / self.total
        bar = "#" * int(frac * 30)
        sys.stderr.write(f"\r{self.label} [{bar:<30}] {done}/{self.total} ({frac:.0%})")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def simulate(
    policy: Any,
    history: str | Path | Iterable[Event | Mapping[str, Any]],
    *,
    reps: Iterable[Mapping[str, Any]] = (),
    sweep: str = "exact",
    keep_log: bool = True,
    period: str = "month",
    until: datetime | None = None,
    progress: bool | None = False,
    label: str = "replay",
    audit: bool = False,
) -> SimulationResult:
    """Replay a history through a policy with the in-memory reference host.

    Args:
        policy: a compiled :class:`~salesrules.policy.Policy` (or a path to load).
        history: a ``.jsonl``/``.csv`` file, or events (mappings or :class:`Event`).
        reps: an initial roster (the history may add reps with ``rep_joined``).
        sweep: ``"exact"`` runs each requested check at its time; ``"ticks"`` only at the
            history's ``clock_tick`` events.
        keep_log: keep every decision (turn off to save memory on very long replays).
        period: the fairness period: ``month``, ``week`` or ``day``.
        until: run the checks due up to this time after the last event (default: the last
            event's time).
        progress: show a progress bar on stderr (``None``: only when stderr is a terminal).
        label: the progress bar's label.
        audit: check the host's bookkeeping after every event (every record held by exactly
            one owner, counts equal to holdings); problems land in
            ``totals["invariant_problems"]`` with the event that revealed them. Slow: for tests.

    Returns:
        The decision log and the metrics.

    Raises:
        RecordError: the history is malformed.
        PolicyError: ``policy`` is a path that does not load.
    """
    if isinstance(policy, str | Path):
        from salesrules.policy import load_policy

        policy = load_policy(policy)
    if sweep not in ("exact", "ticks"):
        raise RecordError("simulate", "sweep", "sweep is 'exact' or 'ticks'")
    events = _as_events(history)
    host = ReferenceHost(policy, reps, keep_log=keep_log, period=period)
    replay = _Replay(host)
    bar = _Progress(len(events), label, progress)
    audit_problems: list[str] = []
    started = time.perf_counter()
    try:
        for i, ev in enumerate(events):
            _run_due(replay, ev.at, inclusive=True, checks=sweep == "exact")
            replay.dispatch(ev)
            if sweep == "ticks" and ev.type == "clock_tick":
                replay.sweep_at(ev.at, ev.id)
            if audit and not audit_problems:
                audit_problems.extend(f"after {ev.id}: {p}" for p in host.check_invariants())
            if i % 512 == 0:
                bar.update(i)
        end = until or (events[-1].at if events else None)
        if end is not None:
            _run_due(replay, end, inclusive=True, checks=sweep == "exact")
        bar.update(len(events))
    finally:
        bar.close()
    elapsed = time.perf_counter() - started
    result = SimulationResult._build(policy, host, replay, events, elapsed)
    result.totals["invariant_problems"] = audit_problems + result.totals["invariant_problems"]
    return result


def _as_events(history: str | Path | Iterable[Event | Mapping[str, Any]]) -> list[Event]:
    if isinstance(history, str | Path):
        return read_history(history)
    items = list(history)
    if all(isinstance(e, Event) for e in items):
        evs = [e for e in items if isinstance(e, Event)]
        return sorted(evs, key=lambda e: e.at)
    return read_history([e if not isinstance(e, Event) else _event_dict(e) for e in items])


def _event_dict(ev: Event) -> dict[str, Any]:
    return {"id": ev.id, "at": ev.at, "type": ev.type, **ev.data}


def _run_due(replay: _Replay, until: datetime, *, inclusive: bool, checks: bool = True) -> None:
    host = replay.host
    pending = replay.pending
    while True:
        due = host.next_due() if checks else None
        nxt = pending[0][0] if pending else None
        if nxt is not None and (due is None or nxt < due):
            if nxt > until or (not inclusive and nxt == until):
                return
            replay.dispatch(heapq.heappop(pending)[2])
            continue
        if due is None or due > until or (not inclusive and due == until):
            return
        for at, key in host.pop_due(due):
            replay.check(key, at)


# --------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------


def gini(values: Sequence[float | int]) -> float:
    """The Gini coefficient of non-negative values (0 = perfectly even, →1 = one holds all).

    Args:
        values: the loads (e.g. leads assigned per rep in a period).

    Returns:
        The coefficient; 0.0 for an empty or all-zero list.
    """
    xs = sorted(float(v) for v in values)
    n = len(xs)
    total = sum(xs)
    if n == 0 or total == 0:
        return 0.0
    weighted = sum((i + 1) * x for i, x in enumerate(xs))
    return (2.0 * weighted) / (n * total) - (n + 1.0) / n


def _quantile(xs: Sequence[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    idx = min(len(s) - 1, max(0, round(q * (len(s) - 1))))
    return s[idx]


def _fmt_dec(amounts: Mapping[str, Decimal]) -> str:
    parts = [f"{v} {k}".strip() for k, v in sorted(amounts.items()) if v != 0]
    return ", ".join(parts) or "0"


@dataclass
class SimulationResult:
    """What a replay produced: the decision log, final ownership and the metrics.

    ``reps`` has one row per rep; ``fairness`` one row per period; ``releases_by_reason``
    maps a reason to a count; ``follow_up`` summarizes hours to first follow-up;
    ``refusals_by_requirement`` counts refused transitions by what they lacked.
    """

    policy_digest: str
    events: int
    decisions: int
    elapsed_seconds: float
    log: list[LogEntry]
    reps: list[dict[str, Any]]
    fairness: list[dict[str, Any]]
    releases: list[dict[str, Any]]
    releases_by_reason: dict[str, int]
    follow_up: dict[str, Any]
    refusals: list[dict[str, Any]]
    refusals_by_requirement: dict[str, int]
    owners: dict[str, tuple[str, str]]
    first_release: dict[str, datetime]
    transitions: dict[str, tuple[bool, tuple[str, ...]]]
    transition_records: dict[str, str]
    skipped: dict[str, int]
    effects: dict[str, int]
    unknown_effects: dict[str, int]
    totals: dict[str, Any]
    host: ReferenceHost = field(repr=False)

    @classmethod
    def _build(
        cls,
        policy: Any,
        host: ReferenceHost,
        replay: _Replay,
        events: Sequence[Event],
        elapsed: float,
    ) -> SimulationResult:
        follow: dict[str, list[float]] = {}
        for _, rep_id, h in host.first_follow_up:
            follow.setdefault(rep_id, []).append(h)
        rows = []
        for rep_id in sorted(host.stats):
            st = host.stats[rep_id]
            rep_rec: Mapping[str, Any] = host.reps.get(rep_id, {})
            hrs = follow.get(rep_id, [])
            rows.append(
                {
                    "rep_id": rep_id,
                    "region": rep_rec.get("region"),
                    "team": (rep_rec.get("teams") or [None])[0],
                    "assigned": st.assigned,
                    "claimed": st.claimed,
                    "released": st.released,
                    "held_leads": host.count_held(rep_id, "lead"),
                    "held_customers": host.count_held(rep_id, "customer"),
                    "held_opportunities": host.count_held(rep_id, "opportunity"),
                    "held_peak": st.held_peak,
                    "credited": {k: v for k, v in st.credited.items() if v != 0},
                    "overlay": {k: v for k, v in st.overlay.items() if v != 0},
                    "follow_up_median_hours": statistics.median(hrs) if hrs else None,
                }
            )
        fair_reps = _fairness_population(host)
        fairness = []
        for bucket in sorted(host.period_counts):
            counts = host.period_counts[bucket]
            loads = [counts.get(r, 0) for r in fair_reps] if fair_reps else list(counts.values())
            lo = min(loads) if loads else 0
            hi = max(loads) if loads else 0
            fairness.append(
                {
                    "period": bucket,
                    "reps": len(loads),
                    "load": sum(loads),
                    "mean": (sum(loads) / len(loads)) if loads else 0.0,
                    "min": lo,
                    "max": hi,
                    "gini": round(gini(loads), 6),
                    "max_min_ratio": (hi / lo) if lo else None,
                }
            )
        releases = [
            {"at": at, "record": key, "rep_id": rep, "reason": reason}
            for at, key, rep, reason in host.releases
        ]
        by_reason: dict[str, int] = {}
        first_release: dict[str, datetime] = {}
        for at, key, _, reason in host.releases:
            by_reason[reason] = by_reason.get(reason, 0) + 1
            first_release.setdefault(key, at)
        hours = [h for _, _, h in host.first_follow_up]
        spells = sum(1 for _, _, _, how in host.assignments)
        follow_up = {
            "followed_up": len(hours),
            "assignments": spells,
            "median_hours": statistics.median(hours) if hours else None,
            "p90_hours": _quantile(hours, 0.9),
            "mean_hours": (sum(hours) / len(hours)) if hours else None,
        }
        refusals = [
            {"at": at, "record": key, "event_id": eid, "missing": list(missing)}
            for at, key, eid, missing in host.refusals
        ]
        by_req: dict[str, int] = {}
        for *_, missing in host.refusals:
            for m in missing or ("unspecified",):
                by_req[m] = by_req.get(m, 0) + 1
        owner_kinds: dict[str, int] = {}
        for key, own in host.owner.items():
            if key.startswith("lead:"):
                owner_kinds[own[0] if own[1] != "converted" else "converted"] = (
                    owner_kinds.get(own[0] if own[1] != "converted" else "converted", 0) + 1
                )
        totals = {
            "events": len(events),
            "decisions": host.decisions,
            "leads": sum(1 for k in host.records if k.startswith("lead:")),
            "leads_by_holder": dict(sorted(owner_kinds.items())),
            "assigned": sum(r["assigned"] for r in rows),
            "claimed": sum(r["claimed"] for r in rows),
            "released": len(host.releases),
            "refused_transitions": len(host.refusals),
            "transitions": len(replay.transitions),
            "projects": sum(1 for p in host.projects.values() if p.get("state") == "live"),
            "invariant_problems": host.check_invariants(),
        }
        return cls(
            policy_digest=str(getattr(policy, "digest", "")),
            events=len(events),
            decisions=host.decisions,
            elapsed_seconds=elapsed,
            log=host.log,
            reps=rows,
            fairness=fairness,
            releases=releases,
            releases_by_reason=dict(sorted(by_reason.items())),
            follow_up=follow_up,
            refusals=refusals,
            refusals_by_requirement=dict(sorted(by_req.items(), key=lambda kv: (-kv[1], kv[0]))),
            owners=dict(host.owner),
            first_release=first_release,
            transitions=dict(replay.transitions),
            transition_records=dict(replay.transition_records),
            skipped=dict(sorted(host.skipped.items())),
            effects=dict(sorted(host.effect_counts.items())),
            unknown_effects=dict(sorted(host.unknown_effects.items())),
            totals=totals,
            host=host,
        )

    def fingerprint(self) -> str:
        """A sha256 of the decision log and final ownership: equal replays give equal prints."""
        h = hashlib.sha256()
        for entry in self.log:
            d = entry.decision
            h.update(
                f"{entry.at.isoformat()}|{entry.event_id}|{entry.target}|{entry.note}|".encode()
            )
            if d is not None:
                h.update(d.to_json().encode())
            h.update(b"\n")
        for key in sorted(self.owners):
            h.update(f"{key}={self.owners[key]}\n".encode())
        return h.hexdigest()

    def decision_log(self) -> Iterator[dict[str, Any]]:
        """The decision log as JSON-ready dicts, in order."""
        for entry in self.log:
            yield entry.to_dict()

    def write(self, out: str | Path) -> list[Path]:
        """Write the full logs to a folder: decisions.jsonl, reps.csv, fairness.csv, releases.csv,
        refusals.csv and summary.json.

        Args:
            out: the folder (created if missing).

        Returns:
            The files written.
        """
        from salesrules import _serde

        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        p = folder / "decisions.jsonl"
        with p.open("w", encoding="utf-8") as fh:
            for entry in self.log:
                fh.write(json.dumps(entry.to_dict(), ensure_ascii=False, sort_keys=True) + "\n")
        files.append(p)
        for name, rows in (
            ("reps", self.reps),
            ("fairness", self.fairness),
            ("releases", self.releases),
            ("refusals", self.refusals),
        ):
            p = folder / f"{name}.csv"
            _write_csv(p, [_serde.to_jsonable(r) for r in rows])
            files.append(p)
        p = folder / "summary.json"
        p.write_text(
            json.dumps(_serde.to_jsonable(self.summary_dict()), ensure_ascii=False, indent=2),
            encoding="utf-8",
        )
        files.append(p)
        return files

    def summary_dict(self) -> dict[str, Any]:
        """The headline metrics as a dict."""
        return {
            "policy_digest": self.policy_digest,
            "totals": self.totals,
            "releases_by_reason": self.releases_by_reason,
            "follow_up": self.follow_up,
            "refusals_by_requirement": self.refusals_by_requirement,
            "fairness": self.fairness,
            "skipped": self.skipped,
            "effects": self.effects,
            "unknown_effects": self.unknown_effects,
        }

    def to_frames(self) -> dict[str, Any]:
        """The results as pandas DataFrames (needs the ``frames`` extra).

        Returns:
            ``{"reps", "fairness", "releases", "refusals", "log"}`` → DataFrame.

        Raises:
            ImportError: pandas is not installed (``pip install salesrules[frames]``).
        """
        pd = _pandas()
        log_rows = [
            {
                "seq": e.seq,
                "at": e.at,
                "event_id": e.event_id,
                "event_type": e.event_type,
                "kind": e.kind,
                "target": e.target,
                "summary": str(e.decision) if e.decision is not None else e.note,
                "reasons": ",".join(e.decision.reason_codes) if e.decision is not None else "",
            }
            for e in self.log
        ]
        reps = [
            {**r, "credited": _total(r["credited"]), "overlay": _total(r["overlay"])}
            for r in self.reps
        ]
        return {
            "reps": pd.DataFrame(reps),
            "fairness": pd.DataFrame(self.fairness),
            "releases": pd.DataFrame(self.releases, columns=["at", "record", "rep_id", "reason"]),
            "refusals": pd.DataFrame(
                self.refusals, columns=["at", "record", "event_id", "missing"]
            ),
            "log": pd.DataFrame(log_rows),
        }

    def summary(self) -> str:
        """The summary table (see :func:`summary_table`)."""
        return summary_table(self)


def _total(amounts: Mapping[str, Decimal]) -> float:
    return float(sum(amounts.values(), Decimal(0)))


def _fairness_population(host: ReferenceHost) -> list[str]:
    reps = [
        r["id"]
        for r in host.reps.values()
        if "sales_rep" in (r.get("roles") or ()) and r.get("active", True)
    ]
    return sorted(reps)


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    cols: list[str] = []
    for row in rows:
        for k in row:
            if k not in cols:
                cols.append(k)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    k: json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v
                    for k, v in row.items()
                }
            )


def _pandas() -> Any:
    try:
        import pandas as pd  # type: ignore[import-untyped,unused-ignore]
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("DataFrames need pandas: pip install 'salesrules[frames]'") from exc
    return pd


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["-" if v is None else str(v) for v in r] for r in rows]
    widths = [max(_width(row[i]) for row in cells) for i in range(len(headers))]
    out = []
    for n, row in enumerate(cells):
        out.append("  ".join(_pad(c, w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _width(text: str) -> int:
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def _num(x: float | None, digits: int = 1) -> str | None:
    return None if x is None else f"{x:.{digits}f}"


def summary_table(result: SimulationResult, *, top: int = 10) -> str:
    """A plain-text summary of a replay (for the CLI, the README and notebooks).

    Args:
        result: the replay.
        top: how many reps to list (by leads assigned, then id).

    Returns:
        Several small aligned tables.
    """
    t = result.totals
    lines = [
        f"replay of {result.events} events with policy {result.policy_digest[:12]}: "
        f"{result.decisions} decisions",
        "",
        _table(
            ["leads", "assigned", "claimed", "released", "transitions", "refused", "projects"],
            [
                [
                    t["leads"],
                    t["assigned"],
                    t["claimed"],
                    t["released"],
                    t["transitions"],
                    t["refused_transitions"],
                    t["projects"],
                ]
            ],
        ),
    ]
    if t.get("leads_by_holder"):
        lines += [
            "",
            "leads now held by: " + ", ".join(f"{k} {v}" for k, v in t["leads_by_holder"].items()),
        ]
    if result.releases_by_reason:
        lines += ["", _table(["release reason", "count"], list(result.releases_by_reason.items()))]
    fu = result.follow_up
    if fu["followed_up"]:
        lines += [
            "",
            f"first follow-up: {fu['followed_up']} of {fu['assignments']} assignments; "
            f"median {_num(fu['median_hours'])} h, p90 {_num(fu['p90_hours'])} h",
        ]
    if result.refusals_by_requirement:
        lines += [
            "",
            _table(["refused for", "count"], list(result.refusals_by_requirement.items())[:top]),
        ]
    if result.fairness:
        lines += [
            "",
            _table(
                ["period", "reps", "load", "min", "max", "gini", "max/min"],
                [
                    [
                        f["period"],
                        f["reps"],
                        f["load"],
                        f["min"],
                        f["max"],
                        f"{f['gini']:.3f}",
                        _num(f["max_min_ratio"], 2),
                    ]
                    for f in result.fairness
                ],
            ),
        ]
    busiest = sorted(result.reps, key=lambda r: (-r["assigned"], r["rep_id"]))[:top]
    if busiest and any(r["assigned"] or r["claimed"] for r in busiest):
        lines += [
            "",
            _table(
                ["rep", "assigned", "claimed", "released", "held", "credited"],
                [
                    [
                        r["rep_id"],
                        r["assigned"],
                        r["claimed"],
                        r["released"],
                        r["held_leads"],
                        _fmt_dec(r["credited"]),
                    ]
                    for r in busiest
                ],
            ),
        ]
    if result.skipped:
        lines += ["", "skipped events: " + ", ".join(f"{k} {v}" for k, v in result.skipped.items())]
    if result.unknown_effects:
        lines += ["", "effects the host does not know: " + ", ".join(result.unknown_effects)]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# compare
# --------------------------------------------------------------------------------------------


@dataclass
class CompareResult:
    """What policy B would have changed relative to policy A on the same history."""

    a: SimulationResult
    b: SimulationResult
    owner_changes: list[dict[str, Any]]
    release_changes: list[dict[str, Any]]
    transition_changes: list[dict[str, Any]]
    rep_changes: list[dict[str, Any]]
    fairness: list[dict[str, Any]]

    @property
    def identical(self) -> bool:
        """Whether the two policies decided the same everywhere that is measured."""
        return not (
            self.owner_changes
            or self.release_changes
            or self.transition_changes
            or self.rep_changes
        )

    def summary(self, *, top: int = 10, timings: bool = True) -> str:
        """A plain-text report of the differences (``timings=False`` for reproducible text)."""
        a, b = self.a, self.b
        lines = [
            f"compare A={a.policy_digest[:12]} and B={b.policy_digest[:12]} on {a.events} events",
        ]
        if timings:
            lines.append(f"replay A {a.elapsed_seconds:.2f} s, B {b.elapsed_seconds:.2f} s")
        if self.identical:
            lines.append(
                "no differences: every owner, release, transition, load and credit is the same"
            )
            return "\n".join(lines)
        ch: dict[str, int] = {}
        for r in self.release_changes:
            ch[r["change"]] = ch.get(r["change"], 0) + 1
        lines += [
            "",
            _table(
                [
                    "records with another owner",
                    "releases changed",
                    "transitions changed",
                    "reps changed",
                ],
                [
                    [
                        len(self.owner_changes),
                        len(self.release_changes),
                        len(self.transition_changes),
                        len(self.rep_changes),
                    ]
                ],
            ),
        ]
        if ch:
            lines += ["", "releases: " + ", ".join(f"{k} {v}" for k, v in sorted(ch.items()))]
        ta, tb = a.totals, b.totals
        lines += [
            "",
            _table(
                ["", "A", "B", "delta"],
                [
                    [name, ta[name], tb[name], tb[name] - ta[name]]
                    for name in (
                        "assigned",
                        "claimed",
                        "released",
                        "refused_transitions",
                        "projects",
                    )
                ],
            ),
        ]
        if self.fairness:
            lines += [
                "",
                _table(
                    ["period", "gini A", "gini B", "max/min A", "max/min B"],
                    [
                        [
                            f["period"],
                            f"{f['gini_a']:.3f}",
                            f"{f['gini_b']:.3f}",
                            _num(f["ratio_a"], 2),
                            _num(f["ratio_b"], 2),
                        ]
                        for f in self.fairness
                    ],
                ),
            ]
        if self.rep_changes:
            rows = sorted(self.rep_changes, key=lambda r: (-abs(r["assigned_delta"]), r["rep_id"]))
            lines += [
                "",
                _table(
                    [
                        "rep",
                        "assigned A",
                        "assigned B",
                        "released A",
                        "released B",
                        "credit A",
                        "credit B",
                    ],
                    [
                        [
                            r["rep_id"],
                            r["assigned_a"],
                            r["assigned_b"],
                            r["released_a"],
                            r["released_b"],
                            r["credited_a"],
                            r["credited_b"],
                        ]
                        for r in rows[:top]
                    ],
                ),
            ]
        if self.transition_changes:
            lines += [
                "",
                _table(
                    ["event", "opportunity", "A", "B", "B lacks"],
                    [
                        [
                            t["event_id"],
                            t["record"],
                            _verdict(t["allowed_a"]),
                            _verdict(t["allowed_b"]),
                            ", ".join(t["missing_b"]),
                        ]
                        for t in self.transition_changes[:top]
                    ],
                ),
            ]
        if self.owner_changes:
            lines += [
                "",
                _table(
                    ["record", "owner A", "owner B"],
                    [[o["record"], o["owner_a"], o["owner_b"]] for o in self.owner_changes[:top]],
                ),
            ]
        return "\n".join(lines)

    def to_frames(self) -> dict[str, Any]:
        """The differences as pandas DataFrames (needs the ``frames`` extra)."""
        pd = _pandas()
        return {
            "owners": pd.DataFrame(self.owner_changes, columns=["record", "owner_a", "owner_b"]),
            "releases": pd.DataFrame(
                self.release_changes, columns=["record", "released_a", "released_b", "change"]
            ),
            "transitions": pd.DataFrame(
                self.transition_changes,
                columns=["event_id", "record", "allowed_a", "allowed_b", "missing_a", "missing_b"],
            ),
            "reps": pd.DataFrame(self.rep_changes),
            "fairness": pd.DataFrame(self.fairness),
        }

    def write(self, out: str | Path) -> list[Path]:
        """Write both replays (``a/``, ``b/``) and the differences as CSV files."""
        from salesrules import _serde

        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        files = self.a.write(folder / "a") + self.b.write(folder / "b")
        for name, rows in (
            ("owner_changes", self.owner_changes),
            ("release_changes", self.release_changes),
            ("transition_changes", self.transition_changes),
            ("rep_changes", self.rep_changes),
            ("fairness", self.fairness),
        ):
            p = folder / f"{name}.csv"
            _write_csv(p, [_serde.to_jsonable(r) for r in rows])
            files.append(p)
        return files


def _verdict(allowed: bool | None) -> str:
    return "not asked" if allowed is None else ("allowed" if allowed else "refused")


def _owner_text(owner: tuple[str, str] | None) -> str | None:
    return None if owner is None else f"{owner[0]}:{owner[1]}"


def compare(
    a: Any,
    b: Any,
    history: str | Path | Iterable[Event | Mapping[str, Any]],
    *,
    reps: Iterable[Mapping[str, Any]] = (),
    sweep: str = "exact",
    keep_log: bool = True,
    period: str = "month",
    progress: bool | None = False,
) -> CompareResult:
    """Replay one history under two policies and report what B changes relative to A.

    Args:
        a: the current policy (or a path).
        b: the proposed policy (or a path).
        history: the history (read once, replayed twice).
        reps: the initial roster.
        sweep: see :func:`simulate`.
        keep_log: keep both decision logs.
        period: the fairness period.
        progress: show progress bars on stderr.

    Returns:
        The differences record by record and rep by rep, with both replays.
    """
    events = _as_events(history)
    roster = list(reps)
    ra = simulate(
        a,
        events,
        reps=roster,
        sweep=sweep,
        keep_log=keep_log,
        period=period,
        progress=progress,
        label="replay A",
    )
    rb = simulate(
        b,
        events,
        reps=roster,
        sweep=sweep,
        keep_log=keep_log,
        period=period,
        progress=progress,
        label="replay B",
    )
    return diff_results(ra, rb)


def diff_results(ra: SimulationResult, rb: SimulationResult) -> CompareResult:
    """Compare two replays of the same history (see :func:`compare`)."""
    owner_changes = []
    for key in sorted(set(ra.owners) | set(rb.owners)):
        oa, ob = ra.owners.get(key), rb.owners.get(key)
        if oa != ob:
            owner_changes.append(
                {"record": key, "owner_a": _owner_text(oa), "owner_b": _owner_text(ob)}
            )
    release_changes = []
    for key in sorted(set(ra.first_release) | set(rb.first_release)):
        ta, tb = ra.first_release.get(key), rb.first_release.get(key)
        if ta == tb:
            continue
        if ta is None:
            change = "only_b"
        elif tb is None:
            change = "only_a"
        else:
            change = "earlier" if tb < ta else "later"
        release_changes.append(
            {"record": key, "released_a": ta, "released_b": tb, "change": change}
        )
    transition_changes = []
    events_a = ra.transition_records
    events_b = rb.transition_records
    for eid in sorted(set(ra.transitions) | set(rb.transitions)):
        va, vb = ra.transitions.get(eid), rb.transitions.get(eid)
        if va == vb:
            continue
        transition_changes.append(
            {
                "event_id": eid,
                "record": events_a.get(eid) or events_b.get(eid) or "",
                "allowed_a": va[0] if va else None,
                "allowed_b": vb[0] if vb else None,
                "missing_a": list(va[1]) if va else [],
                "missing_b": list(vb[1]) if vb else [],
            }
        )
    rows_a = {r["rep_id"]: r for r in ra.reps}
    rows_b = {r["rep_id"]: r for r in rb.reps}
    rep_changes = []
    for rep in sorted(set(rows_a) | set(rows_b)):
        xa, xb = rows_a.get(rep, {}), rows_b.get(rep, {})
        fields = ("assigned", "claimed", "released", "held_leads", "held_customers")
        same = all(xa.get(f, 0) == xb.get(f, 0) for f in fields) and xa.get(
            "credited", {}
        ) == xb.get("credited", {})
        if same:
            continue
        row: dict[str, Any] = {"rep_id": rep}
        for f in fields:
            row[f"{f}_a"] = xa.get(f, 0)
            row[f"{f}_b"] = xb.get(f, 0)
        row["assigned_delta"] = row["assigned_b"] - row["assigned_a"]
        row["credited_a"] = _fmt_dec(xa.get("credited", {}))
        row["credited_b"] = _fmt_dec(xb.get("credited", {}))
        rep_changes.append(row)
    fa = {f["period"]: f for f in ra.fairness}
    fb = {f["period"]: f for f in rb.fairness}
    fairness = [
        {
            "period": p,
            "gini_a": fa.get(p, {}).get("gini", 0.0),
            "gini_b": fb.get(p, {}).get("gini", 0.0),
            "ratio_a": fa.get(p, {}).get("max_min_ratio"),
            "ratio_b": fb.get(p, {}).get("max_min_ratio"),
        }
        for p in sorted(set(fa) | set(fb))
    ]
    return CompareResult(
        ra, rb, owner_changes, release_changes, transition_changes, rep_changes, fairness
    )


# --------------------------------------------------------------------------------------------
# plots (the ``plot`` extra)
# --------------------------------------------------------------------------------------------


def plot_load(results: Mapping[str, SimulationResult], ax: Any = None) -> Any:
    """Plot the distribution of leads assigned per rep, one histogram per replay.

    Args:
        results: label → replay (e.g. ``{"current": a, "proposed": b}``).
        ax: a matplotlib axis (a new figure when omitted).

    Returns:
        The axis.
    """
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    for label, res in results.items():
        pop = set(_fairness_population(res.host)) or {r["rep_id"] for r in res.reps}
        loads = [r["assigned"] + r["claimed"] for r in res.reps if r["rep_id"] in pop]
        ax.hist(loads, bins=20, alpha=0.5, label=label)
    ax.set_xlabel("leads assigned or claimed per rep")
    ax.set_ylabel("reps")
    ax.set_title("Load distribution")
    ax.legend()
    return ax


def plot_releases(results: Mapping[str, SimulationResult], ax: Any = None) -> Any:
    """Plot releases per month, one line per replay.

    Args:
        results: label → replay.
        ax: a matplotlib axis (a new figure when omitted).

    Returns:
        The axis.
    """
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    for label, res in results.items():
        months: dict[str, int] = {}
        for r in res.releases:
            m = r["at"].strftime("%Y-%m")
            months[m] = months.get(m, 0) + 1
        xs = sorted(months)
        ax.plot(xs, [months[m] for m in xs], marker="o", label=label)
    ax.set_xlabel("month")
    ax.set_ylabel("releases to the pool")
    ax.set_title("Releases over time")
    ax.legend()
    return ax


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("plots need matplotlib: pip install 'salesrules[plot]'") from exc
    return plt


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("history", help="the event log (.jsonl or .csv)")
    p.add_argument("--out", help="write the full logs to this folder")
    p.add_argument(
        "--sweep",
        choices=("exact", "ticks"),
        default="exact",
        help="run checks at their time (exact) or at clock_tick events (ticks)",
    )
    p.add_argument("--period", choices=("month", "week", "day"), default="month")
    p.add_argument("--roster", help="a JSON file with {'reps': [...]} added before the history")
    p.add_argument(
        "--progress",
        action="store_true",
        default=None,
        help="show a progress bar on stderr (default: only on a terminal)",
    )
    p.add_argument("--no-log", action="store_true", help="keep no decision log (saves memory)")


def _roster(path: str | None) -> list[dict[str, Any]]:
    if not path:
        return []
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    reps = data.get("reps", data) if isinstance(data, Mapping) else data
    return list(reps)


def _run_cli(fn: Callable[[], int], prog: str) -> int:
    try:
        return fn()
    except KeyboardInterrupt:
        sys.stderr.write(f"\n{prog}: interrupted\n")
        return 130
    except SalesRulesError as exc:
        sys.stderr.write(f"{prog}: {exc}\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"{prog}: {exc}\n")
        return 1


def cli_simulate(argv: Sequence[str] | None = None) -> int:
    """The ``salesrules simulate POLICY HISTORY`` command.

    Args:
        argv: the arguments after ``simulate``.

    Returns:
        0 on success, 1 on a broken policy or history, 2 on usage errors, 130 when interrupted.
    """
    parser = argparse.ArgumentParser(
        prog="salesrules simulate", description="Replay a history through a policy."
    )
    parser.add_argument("policy", help="rule file or folder")
    _common_args(parser)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)

    def run() -> int:
        from salesrules import _serde

        res = simulate(
            args.policy,
            args.history,
            reps=_roster(args.roster),
            sweep=args.sweep,
            keep_log=not args.no_log,
            period=args.period,
            progress=args.progress,
        )
        if args.json:
            print(json.dumps(_serde.to_jsonable(res.summary_dict()), ensure_ascii=False, indent=2))
        else:
            print(summary_table(res))
        if args.out:
            files = res.write(args.out)
            sys.stderr.write(f"wrote {len(files)} files to {args.out}\n")
        return 0

    return _run_cli(run, "salesrules simulate")


def cli_compare(argv: Sequence[str] | None = None) -> int:
    """The ``salesrules compare POLICY_A POLICY_B HISTORY`` command.

    Args:
        argv: the arguments after ``compare``.

    Returns:
        0 on success (differences are not an error), 1 on a broken input, 2 on usage errors,
        130 when interrupted.
    """
    parser = argparse.ArgumentParser(
        prog="salesrules compare", description="Compare two policies on the same history."
    )
    parser.add_argument("policy_a", help="the current rule file or folder")
    parser.add_argument("policy_b", help="the proposed rule file or folder")
    _common_args(parser)
    parser.add_argument("--top", type=int, default=10, help="rows per table")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)

    def run() -> int:
        res = compare(
            args.policy_a,
            args.policy_b,
            args.history,
            reps=_roster(args.roster),
            sweep=args.sweep,
            keep_log=not args.no_log,
            period=args.period,
            progress=args.progress,
        )
        print(res.summary(top=args.top))
        if args.out:
            files = res.write(args.out)
            sys.stderr.write(f"wrote {len(files)} files to {args.out}\n")
        return 0

    return _run_cli(run, "salesrules compare")


# --------------------------------------------------------------------------------------------
# the generated history
# --------------------------------------------------------------------------------------------


def generate_history(seed: int = 0, **kwargs: Any) -> list[dict[str, Any]]:
    """Generate a seeded, realistic history of the case-study company (see ``_history``).

    Args:
        seed: the random seed (the same seed gives the same history).
        **kwargs: ``reps`` (≈200), ``leads`` (≈50,000), ``start`` (ISO date), ``days`` (365)
            and the rates documented in :func:`salesrules._history.generate`.

    Returns:
        The events, chronological, as JSON-ready dicts.
    """
    from salesrules._history import generate

    return generate(seed, **kwargs)
