"""Stage gates (the blueprint): a refused stage change lists its missing evidence, then passes.

张伟 (r-east-1) owns opportunity O-1 of 杭州市数据局 in 需求确认 and asks, through the API, to move it
to 方案报价. The blueprint in ``rules/stages.yaml`` wants a solution scope, a positive amount, a
close date that is not in the past, the 方案书 and 报价单 attachments and a finished demo. The first
request is refused with every missing piece at once; once the evidence is there the same request
is allowed, and the decision tells the host what to do (update the stage, record the stage entry
that starts the new stage's clock, notify the manager). An import by the migration account gets
exactly the same gates unless it uses its bypass permission, with a reason, which is audited.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import salesrules
from salesrules.decision import Decision
from salesrules.stages import available_transitions, check_transition

RULES = Path(__file__).resolve().parent.parent / "rules"
NOW = datetime.fromisoformat("2026-12-03T10:00:00+08:00")
OWNER = {"id": "r-east-1", "name": "张伟", "roles": ["sales_rep"]}
MIGRATOR = {"id": "ops-1", "name": "数据迁移", "permissions": ["data_migration"]}


def _show(title: str, decision: Decision[Any]) -> None:
    verdict = decision.outcome
    print(f"== {title}")
    print(f"   {verdict.summary()}")
    for f in verdict.failed:
        where = f"{Path(f.location.file).name}:{f.location.line}" if f.location else "-"
        print(f"   - {f.code:<20} {f.subject:<14} {f.message}  ({where})")
    for e in decision.effects:
        params = ", ".join(f"{k}={v}" for k, v in sorted(e.params.items()))
        print(f"   > {e.kind} {e.target}: {params}")


def main() -> None:
    """Print a refused transition, the same one allowed with evidence, and an audited bypass."""
    policy = salesrules.load_policy(RULES)
    opportunity: dict[str, Any] = {
        "id": "O-1",
        "name": "杭州市数据局 数据中台二期",
        "stage": "needs_confirmed",
        "owner_id": "r-east-1",
        "owner_manager_id": "m-east",
        "amount": Decimal("0"),
        "close_date": "2026-11-30",
    }
    refused = check_transition(
        policy, opportunity, to_stage="proposal", actor=OWNER, channel="api", now=NOW
    )
    _show("需求确认 -> 方案报价, without evidence", refused)

    listed = available_transitions(policy, opportunity, actor=OWNER, channel="ui", now=NOW)
    print(f"== what the UI shows: {listed.outcome.summary()}")
    for option in listed.outcome.options:
        missing = ", ".join(f"{m.code}:{m.subject}" for m in option.missing) or "nothing"
        print(f"   {option.to_label} ({option.move}) missing: {missing}")

    opportunity.update(
        amount=Decimal("1200000"),
        close_date="2026-12-31",
        solution_scope="数据中台二期：数据治理 + 指标平台",
        attachments=[{"kind": "方案书", "name": "方案书-v3.pdf"}, {"kind": "报价单"}],
        checklist={"demo_done": True},
    )
    allowed = check_transition(
        policy, opportunity, to_stage="proposal", actor=OWNER, channel="api", now=NOW,
        request_id="evt-1001",
    )
    _show("the same request with its evidence", allowed)

    closed = {**opportunity, "stage": "contract"}
    gated = check_transition(
        policy, closed, to_stage="won", actor=MIGRATOR, channel="import", now=NOW
    )
    _show("an import closing a migrated deal, no reason", gated)
    bypassed = check_transition(
        policy, closed, to_stage="won", actor=MIGRATOR, channel="import", now=NOW,
        reason="旧系统 2019 年已赢单，数据迁移", request_id="import-7",
    )
    _show("the same import with its bypass permission and a reason", bypassed)


if __name__ == "__main__":
    main()
