"""A seeded generator of a realistic year of the case-study company's CRM activity.

Used by :func:`salesrules.simulate.generate_history`, the benchmark and the bundled sample
(``examples/data/history-sample.jsonl``). The same arguments always give the same events.

The company (see ``docs/architecture.md``): four regions (华东, 华北, 华南, 西南), one team per
region (``team-east`` …) split into squads, a manager per region, a sales VP; leads from the
web, phone, events, referrals and partners, created by reps or by the system; a grade that
depends on how complete the lead is; follow-ups after a delay that depends on the rep and the
grade (some never come); conversions into a registered customer with an opportunity that
moves stage by stage (sometimes without its evidence), collaboration requests on large
deals, wins with amounts, contracts approved and verified, project status reports; reps
claiming from the public pool; a daily ``clock_tick``.
"""

from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

__all__ = ["REGIONS", "STAGES", "generate", "roster"]

TZ = ZoneInfo("Asia/Shanghai")

#: region → (team id, manager id, rep id prefix)
REGIONS: dict[str, tuple[str, str, str]] = {
    "华东": ("team-east", "m-east", "r-east"),
    "华北": ("team-north", "m-north", "r-north"),
    "华南": ("team-south", "m-south", "r-south"),
    "西南": ("team-southwest", "m-southwest", "r-southwest"),
}
_REGION_WEIGHTS = (0.36, 0.28, 0.22, 0.14)

STAGES: tuple[str, ...] = (
    "lead_confirmed",
    "needs_confirmed",
    "proposal",
    "negotiation",
    "contract",
    "won",
)

#: Evidence a stage move carries (merged into the opportunity when the move is requested),
#: as ``rules/stages.yaml`` asks for it.
EVIDENCE: dict[str, dict[str, Any]] = {
    "needs_confirmed": {
        "decision_maker": "信息中心主任",
        "budget_confirmed": True,
        "attachments": [{"kind": "需求调研表"}],
        "checklist": {"kickoff_call": True},
    },
    "proposal": {
        "solution_scope": "平台建设与定制开发",
        "attachments": [{"kind": "方案书"}, {"kind": "报价单"}],
        "checklist": {"demo_done": True},
    },
    "negotiation": {
        "quote_id": "Q",
        "discount_pct": "8",
        "competitor": "友商",
        "approvals": [{"kind": "discount", "status": "approved"}],
    },
    "contract": {
        "contract_no": "HT",
        "attachments": [{"kind": "合同扫描件"}],
        "checklist": {"legal_review": True},
        "approvals": [{"kind": "contract", "status": "approved"}],
    },
}

_SOURCES = (
    ("web", 0.32),
    ("phone", 0.18),
    ("visit", 0.15),
    ("referral", 0.15),
    ("event", 0.1),
    ("partner", 0.08),
    ("key_account_hotline", 0.02),
)
_FIRST_CONTACT = ("call", "call", "call", "visit", "meeting", "email")
_INDUSTRIES = ("金融", "政府", "制造", "能源", "教育", "医疗")
_COMPANY_A = (
    "华信",
    "中科",
    "东方",
    "长城",
    "天元",
    "金桥",
    "博远",
    "启明",
    "瑞达",
    "恒通",
    "泰和",
    "新世纪",
    "国泰",
    "中联",
    "海纳",
    "星河",
    "鼎盛",
    "汇智",
    "云帆",
    "广源",
)
_COMPANY_B = ("科技", "信息", "软件", "电力", "银行", "证券", "制造", "能源", "数据", "智能")
_COMPANY_C = ("有限公司", "股份有限公司", "集团")
_CITIES = ("上海", "杭州", "南京", "北京", "天津", "济南", "广州", "深圳", "成都", "重庆", "昆明")


def roster(reps: int = 200) -> list[dict[str, Any]]:
    """The generated roster: a VP, one manager per region and ``reps`` reps across regions.

    The first reps of each region have the ids of ``examples/data/roster.json``
    (``r-east-1`` …), so the bundled policy's rules apply to the generated company too.
    """
    out: list[dict[str, Any]] = [
        {
            "id": "vp-sales",
            "name": "高总",
            "manager_id": None,
            "region": None,
            "teams": ["sales_leadership"],
            "roles": ["sales_vp", "finance_approver"],
            "active": True,
        }
    ]
    for region, (team, manager, _) in REGIONS.items():
        out.append(
            {
                "id": manager,
                "name": f"{region}经理",
                "manager_id": "vp-sales",
                "region": region,
                "teams": [team],
                "roles": ["sales_manager", "pool_admin"],
                "active": True,
            }
        )
    n_regions = len(REGIONS)
    per_region = [max(1, round(reps * w)) for w in _REGION_WEIGHTS]
    per_region[0] += reps - sum(per_region)
    for (region, (team, manager, prefix)), count in zip(REGIONS.items(), per_region, strict=True):
        for i in range(1, count + 1):
            squad = f"{team}-{(i - 1) // 8 + 1}"
            out.append(
                {
                    "id": f"{prefix}-{i}",
                    "name": f"{region}销售{i}",
                    "manager_id": manager,
                    "region": region,
                    "teams": [team, squad],
                    "roles": ["sales_rep"],
                    "active": True,
                }
            )
    del n_regions
    return out


def _evidence(stage: str, n: int, amount: int, at: datetime) -> dict[str, Any]:
    ev: dict[str, Any] = {
        k: (list(v) if isinstance(v, list) else v) for k, v in EVIDENCE.get(stage, {}).items()
    }
    if stage == "proposal":
        ev["close_date"] = (at + timedelta(days=150)).date().isoformat()
    if stage == "negotiation":
        ev["quote_id"] = f"Q-{n:06d}"
        ev["close_date"] = (at + timedelta(days=90)).date().isoformat()
    if stage == "contract":
        ev["contract_no"] = f"HT-{n:06d}"
    return ev


def _weighted(rng: random.Random, items: tuple[tuple[str, float], ...]) -> str:
    x = rng.random()
    acc = 0.0
    for name, w in items:
        acc += w
        if x < acc:
            return name
    return items[-1][0]


def _working_instant(rng: random.Random, day: date) -> datetime:
    minute = rng.randrange(9 * 60, 18 * 60)
    return datetime.combine(day, time(minute // 60, minute % 60, rng.randrange(60)), TZ)


def _later(rng: random.Random, at: datetime, hours: float) -> datetime:
    """``at`` plus roughly ``hours`` of working time (skipping nights and weekends)."""
    t = at + timedelta(hours=hours)
    if t.hour >= 19 or t.hour < 8:
        t = (t + timedelta(hours=14)).replace(hour=9 + rng.randrange(4), minute=rng.randrange(60))
    while t.weekday() >= 5:
        t += timedelta(days=1)
    return t


def generate(
    seed: int = 0,
    *,
    reps: int = 200,
    leads: int = 50_000,
    start: str = "2026-01-05",
    days: int = 365,
    follow_up_rate: float = 0.86,
    conversion_rate: float = 0.22,
    win_rate: float = 0.3,
    evidence_missing_rate: float = 0.12,
    collaboration_rate: float = 0.1,
    claims_per_day: float = 30.0,
    ticks: bool = True,
) -> list[dict[str, Any]]:
    """Generate the events of ``days`` days of the company's CRM, chronologically.

    Args:
        seed: the random seed.
        reps: number of sales reps (managers and the VP come on top).
        leads: number of leads created over the period.
        start: the first day (ISO date).
        days: length of the period.
        follow_up_rate: share of leads that ever get a follow-up.
        conversion_rate: share of followed-up leads converted to a registered customer.
        win_rate: share of opportunities that reach a win.
        evidence_missing_rate: share of stage moves requested without their evidence.
        collaboration_rate: share of opportunities with a collaboration request.
        claims_per_day: pool claims per working day.
        ticks: add a daily ``clock_tick`` (02:00) for hosts that sweep once a day.

    Returns:
        JSON-ready event dicts (``id``, ``at`` ISO text, ``type`` and fields).
    """
    rng = random.Random(seed)  # noqa: S311 - a reproducible sample, not security
    team = roster(reps)
    sales = [r for r in team if "sales_rep" in r["roles"]]
    by_region: dict[str, list[dict[str, Any]]] = {}
    for r in sales:
        by_region.setdefault(r["region"], []).append(r)
    # Some reps are slow to follow up, some quick: a per-rep speed factor.
    speed = {r["id"]: rng.lognormvariate(0, 0.5) for r in sales}
    first = date.fromisoformat(start)
    workdays = [
        first + timedelta(days=i) for i in range(days) if (first + timedelta(days=i)).weekday() < 5
    ]
    events: list[tuple[datetime, int, dict[str, Any]]] = []
    seq = 0

    def emit(at: datetime, etype: str, **fields: Any) -> None:
        nonlocal seq
        seq += 1
        events.append(
            (at, seq, {"id": f"E{seq:07d}", "at": at.isoformat(), "type": etype, **fields})
        )

    t0 = datetime.combine(first, time(0, 0), TZ)
    for rep in team:
        emit(t0, "rep_joined", rep=rep)
    companies: list[str] = []
    regions = tuple(REGIONS)
    for n in range(1, leads + 1):
        day = workdays[min(len(workdays) - 1, int(rng.random() * len(workdays)))]
        at = _working_instant(rng, day)
        region = rng.choices(regions, weights=_REGION_WEIGHTS)[0]
        source = _weighted(rng, _SOURCES)
        if companies and rng.random() < 0.06:
            company = rng.choice(companies)  # the same company again (撞单)
        else:
            company = (
                rng.choice(_CITIES)
                + rng.choice(_COMPANY_A)
                + rng.choice(_COMPANY_B)
                + rng.choice(_COMPANY_C)
            )
            if rng.random() < 0.5:
                company = f"{company}{n % 97}"
            companies.append(company)
        creator = (
            rng.choice(by_region[region]) if source in ("visit", "event", "referral") else None
        )
        completeness = rng.random()
        lead: dict[str, Any] = {
            "id": f"L-{n:06d}",
            "company": company,
            "source": source,
            "region": region,
            "industry": rng.choice(_INDUSTRIES),
            "contact": "联系人" if completeness > 0.15 else None,
            "need": rng.choice(("数据平台", "核心系统改造", "移动办公", "运维外包"))
            if completeness > 0.6
            else None,
            "phone": f"13{rng.randrange(10**9):09d}" if completeness > 0.3 else None,
            "email": f"contact{n}@example.cn" if completeness > 0.55 else None,
            "employees": rng.choice((20, 80, 300, 1200, 5000)) if completeness > 0.45 else None,
            "budget": str(rng.choice((50_000, 200_000, 800_000))) if completeness > 0.75 else None,
        }
        lead = {k: v for k, v in lead.items() if v is not None}
        emit(at, "lead_created", lead=lead, creator_id=creator["id"] if creator else None)
        if rng.random() >= follow_up_rate:
            continue
        # hours to the first follow-up: fast for complete leads, slow for sparse ones
        owner_speed = speed[rng.choice(by_region[region])["id"]]
        base = 4.0 + 30.0 * (1.0 - completeness)
        delay = rng.lognormvariate(0, 0.9) * base * owner_speed
        t = _later(rng, at, delay)
        emit(
            t,
            "activity_logged",
            record=f"lead:{lead['id']}",
            kind=rng.choice(("call", "visit", "wechat", "email")),
        )
        for _ in range(rng.randrange(3)):
            t = _later(rng, t, rng.uniform(8, 120))
            emit(
                t,
                "activity_logged",
                record=f"lead:{lead['id']}",
                kind=rng.choice(("call", "email", "visit")),
            )
        if rng.random() >= conversion_rate:
            continue
        t = _later(rng, t, rng.uniform(4, 24 * 6))
        opp_id = f"O-{n:06d}"
        amount = rng.choice((80_000, 150_000, 300_000, 600_000, 1_200_000, 3_000_000))
        emit(
            t,
            "lead_converted",
            lead_id=lead["id"],
            customer={
                "id": f"C-{n:06d}",
                "name": company,
                "region": region,
                "industry": lead["industry"],
            },
            opportunity={
                "id": opp_id,
                "name": f"{company} 项目",
                "amount": str(amount),
                "currency": "CNY",
                "region": region,
            },
        )
        wins = rng.random() < win_rate
        reach = len(STAGES) - 1 if wins else rng.randrange(1, len(STAGES) - 1)
        for stage in STAGES[1:reach]:
            t = _later(rng, t, rng.uniform(24, 24 * 12))
            evidence = _evidence(stage, n, amount, t)
            if rng.random() < evidence_missing_rate:
                evidence.pop(rng.choice(sorted(evidence)))
                emit(
                    t, "stage_change_requested", opportunity_id=opp_id, to=stage, evidence=evidence
                )
                if rng.random() >= 0.7:  # the rep gives up on the move for now
                    break
                t = _later(rng, t, rng.uniform(4, 48))  # fixes it and asks again
                evidence = _evidence(stage, n, amount, t)
            emit(t, "stage_change_requested", opportunity_id=opp_id, to=stage, evidence=evidence)
            if stage == "proposal" and amount >= 600_000 and rng.random() < collaboration_rate * 3:
                helper = rng.choice(sales)
                rid = f"CR-{n:06d}"
                share = rng.choice(("20", "30", "40"))
                emit(
                    _later(rng, t, 2),
                    "collaboration_requested",
                    request={
                        "id": rid,
                        "requester_id": helper["id"],
                        "record_id": opp_id,
                        "share": share,
                        "role": "presales",
                        "kind": "revenue",
                        "contribution": "技术方案与演示",
                        "customer_contact": "信息中心",
                    },
                )
                emit(
                    _later(rng, t, 8), "collaboration_approved", request_id=rid, action="approve"
                )  # by the owner
                emit(
                    _later(rng, t, 30),
                    "collaboration_approved",
                    request_id=rid,
                    by=REGIONS[region][1],
                    action="approve",
                )
        if not wins:
            if rng.random() < 0.5:
                t = _later(rng, t, rng.uniform(24, 24 * 20))
                emit(
                    t,
                    "stage_change_requested",
                    opportunity_id=opp_id,
                    to="lost",
                    evidence={"loss_reason": rng.choice(("价格", "竞品", "预算不足"))},
                    reason="客户另选方案",
                )
            continue
        t = _later(rng, t, rng.uniform(24, 24 * 20))
        emit(t, "deal_won", opportunity_id=opp_id, amount=str(amount), currency="CNY")
        cid = f"K-{n:06d}"
        contract = {
            "id": cid,
            "number": f"HT-{n:06d}",
            "opportunity_id": opp_id,
            "customer_id": f"C-{n:06d}",
            "amount": str(amount),
            "currency": "CNY",
            "region": region,
            "product_line": rng.choice(("platform", "custom", "data")),
        }
        t = _later(rng, t, rng.uniform(8, 72))
        emit(t, "contract_approved", contract=contract, version=1)
        t = _later(rng, t, rng.uniform(2, 48))
        normal = rng.random() < 0.9
        emit(
            t,
            "contract_verified",
            contract=contract,
            version=1,
            verification="normal_project" if normal else "not_a_project",
        )
        if normal:
            for status, pct in (("in_progress", "30"), ("in_progress", "70"), ("completed", "100")):
                t = _later(rng, t, rng.uniform(24 * 10, 24 * 40))
                emit(t, "project_status", contract_id=cid, status=status, percent_complete=pct)
    # pool claims: a rep asks for the longest-waiting lead of the pool
    for day in workdays:
        for _ in range(int(rng.expovariate(1 / claims_per_day)) if claims_per_day else 0):
            rep = rng.choice(sales)
            follow = round(rng.lognormvariate(1.0, 1.0), 2) if rng.random() < 0.85 else None
            emit(
                _working_instant(rng, day),
                "lead_claimed",
                rep_id=rep["id"],
                pool="lead_pool",
                follow_up_hours=follow,
            )
    if ticks:
        for i in range(days + 1):
            d = first + timedelta(days=i)
            emit(datetime.combine(d, time(2, 0), TZ), "clock_tick")
    events.sort(key=lambda e: (e[0], e[1]))
    return [e[2] for e in events]
