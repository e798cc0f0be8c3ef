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
import io
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
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
    """Turns events into requests and applies the decisions through a reference host."""

    def __init__(self, host: ReferenceHost) -> None:
        self.host = host
        self.kinds = host.kinds
        self.company_index: dict[str, str] = {}  # normalized company name -> customer key
        self.transitions: dict[str, tuple[bool, tuple[str, ...]]] = {}
        self.events = 0
        self._roster: list[dict[str, Any]] = []
        self._roster_seen = -1

    # -- helpers -----------------------------------------------------------------------
    def _rep(self, rep_id: Any) -> dict[str, Any] | None:
        return self.host.reps.get(str(rep_id)) if rep_id is not None else None

    def _active_reps(self) -> list[dict[str, Any]]:
        if self._roster_seen != self.host.roster_version:
            self._roster = [r for r in self.host.reps.values() if r.get("active", True)]
            self._roster_seen = self.host.roster_version
        return self._roster

    def _candidates(self) -> list[dict[str, Any]]:
        count = self.host.count_held
        return [{**rep, "open_leads": count(rep["id"], "lead")} for rep in self._active_reps()]

    def decide(self, ev: Event, request: Mapping[str, Any], target: str) -> Any:
        try:
            return self.host.decide(
                request, at=ev.at, event_id=ev.id, event_type=ev.type, target=target
            )
        except RecordError as exc:
            self.host.note(ev.at, ev.id, ev.type, target, f"record_error:{exc.field}")
            return None

    def check(self, key: str, at: datetime, event_id: str = "", event_type: str = "sweep") -> None:
        """Ask the policy whether a record is due (the timeouts ``check`` kind)."""
        if "check" not in self.kinds:
            return
        rec = self.host.records.get(key)
        own = self.host.owner_of(key)
        if rec is None or own is None or own[0] != "rep":
            return  # pools and queues run no protection clocks
        kind, _ = split_key(key)
        request = {
            "kind": "check",
            kind: _public(rec),
            "record_type": kind,
            "activities": self.host.activities.get(key, []),
            "stage_history": self.host.stage_history.get(key, []),
            "owner": self._rep(own[1]),
        }
        try:
            self.host.decide(request, at=at, event_id=event_id, event_type=event_type, target=key)
        except RecordError as exc:
            self.host.note(at, event_id, event_type, key, f"record_error:{exc.field}")

    # -- handlers ----------------------------------------------------------------------
    def on_rep_joined(self, ev: Event) -> None:
        rep = ev.get("rep")
        if isinstance(rep, Mapping) and "id" in rep:
            self.host.add_rep(rep)

    def on_rep_left(self, ev: Event) -> None:
        self.host.deactivate_rep(str(ev.get("rep_id")))

    def on_lead_created(self, ev: Event) -> None:
        lead = dict(ev.get("lead") or {})
        if "id" not in lead:
            self.host.note(ev.at, ev.id, ev.type, "", "lead_without_id")
            return
        key = record_key("lead", str(lead["id"]))
        lead.setdefault("created_at", ev.at)
        self.host.put_record(key, lead)
        self.host.set_owner(key, UNASSIGNED, ev.at, "created")
        creator = self._rep(ev.get("creator_id") or lead.get("creator_id"))
        if "assign" in self.kinds:
            request: dict[str, Any] = {
                "kind": "assign",
                "lead": _public(lead),
                "creator": creator,
                "reps": self._candidates(),
                "state": self.host.get_state("assign"),
            }
            customer = self.company_index.get(_norm(lead.get("company")))
            if customer is not None:
                request["customers"] = [
                    {
                        **_public(self.host.records[customer]),
                        "owner_id": self.host.rep_owner(customer),
                    }
                ]
            d = self.decide(ev, request, key)
            if d is not None:
                self.host.save_state("assign", "", d.state)
        self.check(key, ev.at, ev.id, ev.type)

    def on_activity_logged(self, ev: Event) -> None:
        key = ev.get("record") or (
            record_key("lead", str(ev.get("lead_id"))) if ev.get("lead_id") else None
        )
        if not isinstance(key, str) or key not in self.host.records:
            self.host.note(ev.at, ev.id, ev.type, str(key), "unknown_record")
            return
        owner = self.host.rep_owner(key)
        by = ev.get("by") or owner
        if owner is None or by is None:
            self.host.note(ev.at, ev.id, ev.type, key, "not_owned")
            return
        activity = {
            "id": ev.id,
            "record_id": split_key(key)[1],
            "kind": ev.get("kind") or "call",
            "at": ev.at,
            "by": by,
        }
        self.host.log_activity(key, activity, ev.at)
        self.check(key, ev.at, ev.id, ev.type)

    def on_lead_claimed(self, ev: Event) -> None:
        rep_id = ev.get("rep_id")
        if rep_id is None or str(rep_id) not in self.host.reps:
            self.host.note(ev.at, ev.id, ev.type, "", "unknown_rep")
            return
        lead_id = ev.get("lead_id")
        if lead_id is None:
            pool = str(ev.get("pool") or "lead_pool")
            head = self.host.first_held(("pool", pool), "lead")
            if head is None:
                self.host.note(ev.at, ev.id, ev.type, "", "pool_empty")
                return
            key = head
        else:
            key = record_key("lead", str(lead_id))
        own = self.host.owner_of(key)
        if own is None or own[0] != "pool":
            self.host.note(ev.at, ev.id, ev.type, key, "not_in_pool")
            return
        if "claim" not in self.kinds:
            self.host.note(ev.at, ev.id, ev.type, key, "no_claim_policy")
            return
        rec = self.host.records[key]
        request = {
            "kind": "claim",
            "lead": _public(rec),
            "rep": self.host.reps[str(rep_id)],
            "pool": own[1],
            "claims": [
                {"at": at, "lead_id": split_key(k)[1]}
                for at, k in self.host.claims_by_rep.get(str(rep_id), [])[-50:]
            ],
            "cooldowns": [
                {"record": rec_id, "until": until}
                for rec_id, until in self.host.cooldowns_by_rep.get(str(rep_id), {}).items()
                if until > ev.at
            ],
            "ownership_history": [
                {"owner_id": o[1], "at": at, "reason": why}
                for at, o, why in self.host.ownership_history.get(key, [])
            ],
            "open_leads": self.host.count_held(str(rep_id), "lead"),
        }
        self.decide(ev, request, key)
        self.check(key, ev.at, ev.id, ev.type)

    def on_lead_converted(self, ev: Event) -> None:
        lead_key = record_key("lead", str(ev.get("lead_id")))
        owner = self.host.rep_owner(lead_key)
        if owner is None:
            self.host.note(ev.at, ev.id, ev.type, lead_key, "not_owned")
            return
        lead = self.host.records[lead_key]
        if lead.get("converted"):
            self.host.note(ev.at, ev.id, ev.type, lead_key, "already_converted")
            return
        lead["converted"] = True
        lead["converted_at"] = ev.at
        self.host.unschedule(lead_key)
        cust = dict(ev.get("customer") or {"id": f"C-{lead['id']}"})
        cust.setdefault("name", lead.get("company"))
        cust.setdefault("registered_at", ev.at)
        ckey = record_key("customer", str(cust["id"]))
        self.host.put_record(ckey, cust)
        self.host.set_owner(ckey, ("rep", owner), ev.at, "converted")
        name = _norm(cust.get("name"))
        if name:
            self.company_index[name] = ckey
        # the lead leaves the owner's lead holdings: it lives on as a customer
        self.host.set_owner(lead_key, ("queue", "converted"), ev.at, "converted")
        self.check(ckey, ev.at, ev.id, ev.type)
        opp = ev.get("opportunity")
        if isinstance(opp, Mapping) and "id" in opp:
            o = dict(opp)
            o.setdefault("customer_id", cust["id"])
            o.setdefault("stage", "lead_confirmed")
            okey = record_key("opportunity", str(o["id"]))
            self.host.put_record(okey, o)
            self.host.set_owner(okey, ("rep", owner), ev.at, "converted")
            self.host.add_stage(okey, {"stage": o["stage"], "at": ev.at, "by": owner})
            self.check(okey, ev.at, ev.id, ev.type)

    def on_stage_change_requested(self, ev: Event) -> None:
        okey = record_key("opportunity", str(ev.get("opportunity_id")))
        opp = self.host.records.get(okey)
        owner = self.host.rep_owner(okey)
        if opp is None or owner is None:
            self.host.note(ev.at, ev.id, ev.type, okey, "not_owned")
            return
        evidence = ev.get("evidence") or {}
        if isinstance(evidence, Mapping):
            opp.update(evidence)
        actor = self._rep(ev.get("by") or owner) or {"id": owner}
        to = ev.get("to")
        if "transition" not in self.kinds:
            self.host.add_stage(okey, {"stage": to, "at": ev.at, "by": actor["id"]})
            self.transitions[ev.id] = (True, ())
            return
        request = {
            "kind": "transition",
            "opportunity": {**_public(opp), "owner_id": owner},
            "to": to,
            "actor": actor,
            "stage_history": self.host.stage_history.get(okey, []),
        }
        d = self.decide(ev, request, okey)
        if d is None:
            return
        allowed = bool(getattr(d.outcome, "allowed", False))
        missing = () if allowed else _missing_requirements(d)
        self.transitions[ev.id] = (allowed, missing)
        if allowed:
            self.host.add_stage(okey, {"stage": to, "at": ev.at, "by": actor["id"]})
            self.check(okey, ev.at, ev.id, ev.type)
        else:
            self.host.refusal(ev.at, okey, ev.id, missing)

    def on_collaboration_requested(self, ev: Event) -> None:
        req = dict(ev.get("request") or {})
        rid = str(req.get("id") or ev.id)
        okey = record_key("opportunity", str(req.get("record_id")))
        owner = self.host.rep_owner(okey)
        if owner is None:
            self.host.note(ev.at, ev.id, ev.type, okey, "not_owned")
            return
        req.setdefault("owner_id", owner)
        if "collaboration_request" not in self.kinds:
            self.host.note(ev.at, ev.id, ev.type, okey, "no_splits_policy")
            return
        request = {
            "kind": "collaboration_request",
            "request": req,
            "record": {**_public(self.host.records[okey]), "owner_id": owner},
            "requester": self._rep(req.get("requester_id")),
            "owner": self._rep(owner),
        }
        d = self.decide(ev, request, okey)
        if d is not None:
            self.host.save_state("collaboration", rid, d.state)

    def on_collaboration_approved(self, ev: Event) -> None:
        rid = str(ev.get("request_id"))
        state = self.host.get_state("collaboration", rid)
        if not state or "approval" not in self.kinds:
            self.host.note(ev.at, ev.id, ev.type, rid, "no_pending_request")
            return
        request = {
            "kind": "approval",
            "state": state,
            "approver": self._rep(ev.get("by")),
            "action": ev.get("action") or "approve",
        }
        d = self.decide(ev, request, record_key("opportunity", str(state.get("record_id"))))
        if d is not None:
            self.host.save_state("collaboration", rid, d.state)

    def on_deal_won(self, ev: Event) -> None:
        okey = record_key("opportunity", str(ev.get("opportunity_id")))
        opp = self.host.records.get(okey)
        owner = self.host.rep_owner(okey)
        if opp is None or owner is None:
            self.host.note(ev.at, ev.id, ev.type, okey, "not_owned")
            return
        if ev.get("amount") is not None:
            opp["amount"] = str(ev.get("amount"))
        if ev.get("currency") is not None:
            opp["currency"] = ev.get("currency")
        opp["won"] = True
        self.host.add_stage(okey, {"stage": "won", "at": ev.at, "by": owner})
        self.host.unschedule(okey)
        if "split" not in self.kinds:
            return
        approved = [
            s
            for (scope, _), s in self.host.state.items()
            if scope == "collaboration"
            and s.get("record_id") == opp["id"]
            and s.get("status") == "approved"
        ]
        request = {
            "kind": "split",
            "deal": {**_public(opp), "owner_id": owner},
            "collaborations": approved,
        }
        self.decide(ev, request, okey)

    def on_contract(self, ev: Event) -> None:
        contract = dict(ev.get("contract") or {})
        cid = str(contract.get("id") or ev.get("contract_id"))
        ckey = record_key("contract", cid)
        if contract:
            prev = self.host.records.get(ckey, {})
            self.host.put_record(ckey, {**prev, **contract, "id": cid})
        if "contract_event" not in self.kinds:
            return
        request = {
            "kind": "contract_event",
            "contract": _public(self.host.records.get(ckey, {"id": cid})),
            "event": {
                "id": ev.id,
                "contract_id": cid,
                "type": ev.type.removeprefix("contract_"),
                "version": ev.get("version", 0),
                "at": ev.at,
                "verification": ev.get("verification"),
            },
            "state": self.host.get_state("handoff", cid),
        }
        d = self.decide(ev, request, ckey)
        if d is not None:
            self.host.save_state("handoff", cid, d.state)

    def on_project_status(self, ev: Event) -> None:
        cid = str(ev.get("contract_id"))
        if "project_status" not in self.kinds:
            return
        status = dict(ev.data)
        status.update({"id": ev.id, "at": ev.at, "contract_id": cid})
        request = {
            "kind": "project_status",
            "event": status,
            "state": self.host.get_state("handoff", cid),
        }
        d = self.decide(ev, request, record_key("contract", cid))
        if d is not None:
            self.host.save_state("handoff", cid, d.state)

    def on_clock_tick(self, ev: Event) -> None:
        return None

    def dispatch(self, ev: Event) -> None:
        self.events += 1
        handler = _HANDLERS.get(ev.type)
        if handler is not None:
            handler(self, ev)


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
    started = time.perf_counter()
    try:
        for i, ev in enumerate(events):
            if sweep == "exact":
                _run_due(replay, ev.at, inclusive=True)
            replay.dispatch(ev)
            if sweep == "ticks" and ev.type == "clock_tick":
                _run_due(replay, ev.at, inclusive=True)
            if i % 512 == 0:
                bar.update(i)
        end = until or (events[-1].at if events else None)
        if end is not None and sweep == "exact":
            _run_due(replay, end, inclusive=True)
        bar.update(len(events))
    finally:
        bar.close()
    elapsed = time.perf_counter() - started
    return SimulationResult._build(policy, host, replay, events, elapsed)


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


def _run_due(replay: _Replay, until: datetime, *, inclusive: bool) -> None:
    host = replay.host
    while True:
        due = host.next_due()
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
        for _, rep, hours in host.first_follow_up:
            follow.setdefault(rep, []).append(hours)
        rows = []
        for rep_id in sorted(host.stats):
            st = host.stats[rep_id]
            rep = host.reps.get(rep_id, {})
            hrs = follow.get(rep_id, [])
            rows.append(
                {
                    "rep_id": rep_id,
                    "region": rep.get("region"),
                    "team": (rep.get("teams") or [None])[0],
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
                    "assigned": sum(loads),
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
        import pandas as pd
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
                ["period", "reps", "assigned", "min", "max", "gini", "max/min"],
                [
                    [
                        f["period"],
                        f["reps"],
                        f["assigned"],
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

    def summary(self, *, top: int = 10) -> str:
        """A plain-text report of the differences."""
        a, b = self.a, self.b
        lines = [
            f"compare A={a.policy_digest[:12]} and B={b.policy_digest[:12]} on {a.events} events",
            f"replay A {a.elapsed_seconds:.2f} s, B {b.elapsed_seconds:.2f} s",
        ]
        if self.identical:
            lines.append(
                "no differences: every owner, release, transition, load and credit is the same"
            )
            return "\n".join(lines)
        ch = {}
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
    return "-" if allowed is None else ("allowed" if allowed else "refused")


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
    events_a = {e.event_id: e.target for e in ra.log if e.event_type == "stage_change_requested"}
    events_b = {e.event_id: e.target for e in rb.log if e.event_type == "stage_change_requested"}
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
