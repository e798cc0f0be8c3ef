"""A small stand-in policy for replay tests: round-robin assignment, a follow-up clock, claims
with a cap, and stage moves that need one evidence field. It speaks the same request/decision
protocol as a real :class:`salesrules.policy.Policy`, so the host and the replay machinery are
tested independently of the domain modules (which have their own tests, and are exercised by
the bundled-policy tests)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from salesrules.decision import Decision, Effect, Reason
from salesrules.errors import RecordError


@dataclass(frozen=True, slots=True)
class Outcome:
    allowed: bool = True
    owner_id: str | None = None

    def summary(self) -> str:
        return f"allowed={self.allowed} owner={self.owner_id}"


def _dt(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


class FakePolicy:
    """Round robin per region (capped), release after ``follow_up_hours`` without activity."""

    def __init__(
        self, follow_up_hours: float = 24.0, cap: int = 10**9, digest: str = "fake"
    ) -> None:
        self.follow_up = timedelta(hours=follow_up_hours)
        self.cap = cap
        self.digest = f"{digest}-{follow_up_hours}-{cap}"
        self.kinds = ("assign", "check", "claim", "transition")

    def decide(self, request: Mapping[str, Any]) -> Decision[Any]:
        kind = request["kind"]
        now = _dt(request["now"])
        return getattr(self, f"_{kind}")(request, now)

    def _assign(self, req: Mapping[str, Any], now: datetime) -> Decision[Any]:
        lead = req.get("lead")
        if not lead:
            raise RecordError("request", "lead", "missing")
        key = f"lead:{lead['id']}"
        if req.get("customers"):
            owner = req["customers"][0].get("owner_id")
            if owner:
                return Decision(
                    "assign",
                    Outcome(True, owner),
                    (Reason("protected_customer", "owner"),),
                    (
                        Effect(
                            "set_owner",
                            key,
                            f"set_owner:{key}:protected",
                            {"owner_id": owner, "owner_kind": "rep"},
                        ),
                    ),
                    policy_digest=self.digest,
                )
        counts = req.get("counts") or {}
        reps = sorted(
            (
                r
                for r in req.get("roster", ())
                if r.get("region") == lead.get("region")
                and "sales_rep" in r.get("roles", ())
                and getattr(counts.get(r["id"]), "holdings", 0) < self.cap
            ),
            key=lambda r: r["id"],
        )
        state = dict(req.get("state") or {})
        if not reps:
            return Decision(
                "assign",
                Outcome(False, None),
                (Reason("all_capped", "nobody"),),
                (
                    Effect(
                        "release_to_pool",
                        key,
                        f"release_to_pool:{key}:assign",
                        {"pool": "lead_pool", "reason": "all_capped"},
                    ),
                ),
                policy_digest=self.digest,
            )
        ptr = int(state.get(lead.get("region", ""), 0))
        rep = reps[ptr % len(reps)]
        state[lead.get("region", "")] = ptr + 1
        return Decision(
            "assign",
            Outcome(True, rep["id"]),
            (Reason("round_robin", "next in turn"),),
            (
                Effect(
                    "set_owner",
                    key,
                    f"set_owner:{key}:assign",
                    {"owner_id": rep["id"], "owner_kind": "rep"},
                ),
                Effect("notify", f"rep:{rep['id']}", f"notify:{key}:assign", {"record": key}),
            ),
            state=state,
            policy_digest=self.digest,
        )

    def _check(self, req: Mapping[str, Any], now: datetime) -> Decision[Any]:
        rec = req["record"]
        rtype = rec["type"]
        key = f"{rtype}:{rec['id']}"
        if rtype != "lead":
            return Decision(
                "check", Outcome(), (Reason("not_due", "-"),), policy_digest=self.digest
            )
        acts = [a for a in req.get("activities", ()) if a.get("by") == rec.get("owner_id")]
        start = _dt(rec["owner_since"])
        last = max([_dt(a["at"]) for a in acts if _dt(a["at"]) >= start] + [start])
        deadline = last + self.follow_up
        if now >= deadline:
            return Decision(
                "check",
                Outcome(False),
                (Reason("released", "no follow-up"),),
                (
                    Effect(
                        "release_to_pool",
                        key,
                        f"release_to_pool:{key}:{deadline.isoformat()}",
                        {
                            "pool": "lead_pool",
                            "previous_owner_id": rec.get("owner_id"),
                            "reason": "follow_up",
                        },
                    ),
                ),
                policy_digest=self.digest,
            )
        return Decision(
            "check",
            Outcome(),
            (Reason("not_due", "-"),),
            next_check_at=deadline,
            policy_digest=self.digest,
        )

    def _claim(self, req: Mapping[str, Any], now: datetime) -> Decision[Any]:
        rep = req["rep"]
        key = f"lead:{req['records'][0]['id']}"
        if getattr(req.get("counts"), "holdings", 0) >= self.cap:
            return Decision(
                "claim", Outcome(False), (Reason("claim_cap", "cap"),), policy_digest=self.digest
            )
        return Decision(
            "claim",
            Outcome(True, rep["id"]),
            (Reason("claimed", "ok"),),
            (
                Effect(
                    "set_owner",
                    key,
                    f"set_owner:{key}:claim:{now.isoformat()}",
                    {"owner_id": rep["id"], "owner_kind": "rep"},
                ),
            ),
            policy_digest=self.digest,
        )

    def _transition(self, req: Mapping[str, Any], now: datetime) -> Decision[Any]:
        opp = req["opportunity"]
        need = {"proposal": "solution_scope", "needs_confirmed": "decision_maker"}.get(
            req["to_stage"]
        )
        if need and not opp.get(need):
            return Decision(
                "transition",
                Outcome(False),
                (Reason("missing_evidence", need),),
                policy_digest=self.digest,
            )
        return Decision(
            "transition", Outcome(True), (Reason("allowed", "ok"),), policy_digest=self.digest
        )
