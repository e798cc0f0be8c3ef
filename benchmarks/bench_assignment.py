"""Assignment benchmark: seeded leads through a 200-rule table, 300 reps in 20 pools.

The workload: 20 regions × 10 rules each (9 rules on ``source in`` a set and an
``employees`` band, then a region-only rule), each rule sending its leads round robin to one
of 20 teams of 15 reps (every 15th rep inactive), under two caps the host counts
(``daily_new`` per local day and ``open_backlog``, passed as ``by_cap`` counts). When a
team is capped the lead overflows to the public pool (``all_capped``); a lead from an unknown
region goes to the default pool (``no_rule_matched``).

It prints leads per second for:

* ``baseline``  a straightforward hand-written Python first match (linear scan) + round robin
  with caps, producing only the owner ids;
* ``sr``        ``salesrules.assignment.assign_many`` (explain off): full decisions with
  reasons, effects, assumptions and state;
* ``sr_explain`` the same with ``explain=True`` (a trace per decision);

with the share of that CPU time spent in the cyclic garbage collector, and the ratios between
them, after checking that all three choose the same owner for every lead. Usage::

    python benchmarks/bench_assignment.py [--leads 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import bisect
import gc
import random
import statistics
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from salesrules.assignment import Roster, assign_many
from salesrules.policy import load_policy_string

REGIONS = [f"region_{i:02d}" for i in range(20)]
SOURCES = ["web", "referral", "partner", "event", "cold_call", "paid_search", "social", "email"]
EDGES = [1, 10, 50, 200, 500, 1000, 5000, 10000]
TEAMS = [f"team_{i:02d}" for i in range(20)]
SEED = 20261203
DAILY_MAX = 300
BACKLOG_MAX = 320


def make_rules(seed: int = SEED) -> list[dict[str, Any]]:
    """200 rules: per region, 9 specific ones then a region-only one."""
    rng = random.Random(seed)
    rules: list[dict[str, Any]] = []
    for r, region in enumerate(REGIONS):
        for k in range(9):
            lo = rng.randrange(len(EDGES) - 1)
            hi = min(len(EDGES) - 1, lo + rng.randint(1, 3))
            rules.append({
                "id": f"{region}-{k}",
                "region": region,
                "sources": sorted(rng.sample(SOURCES, rng.randint(1, 3))),
                "lo": EDGES[lo],
                "hi": EDGES[hi],
                "team": TEAMS[rng.randrange(len(TEAMS))],
            })
        rules.append({"id": f"{region}-all", "region": region, "sources": None, "lo": None,
                      "hi": None, "team": TEAMS[r]})
    return rules


def policy_yaml(rules: list[dict[str, Any]]) -> str:
    lines = [
        "version: 1",
        "calendar: {timezone: Asia/Shanghai}",
        "pools:",
        "  lead_pool: {members: {all: true}}",
        "assignment:",
        f"  teams: [{', '.join(TEAMS)}]",
        "  default: pool:lead_pool",
        "  caps:",
        f"    daily_new: {{count: assignments_per_period, period: day, max: {DAILY_MAX}}}",
        f"    open_backlog: {{count: open_backlog, max: {BACKLOG_MAX}}}",
        "  rules:",
    ]
    for rule in rules:
        when = [f"lead.region: {rule['region']}"]
        if rule["sources"] is not None:
            when.append(f"lead.source: {{in: [{', '.join(rule['sources'])}]}}")
            when.append(f"lead.employees: {{ge: {rule['lo']}, lt: {rule['hi']}}}")
        lines.append(f"    - id: {rule['id']}")
        lines.append(f"      when: {{{', '.join(when)}}}")
        lines.append(f"      to: team:{rule['team']}")
        lines.append("      if_none_eligible: pool:lead_pool")
    return "\n".join(lines) + "\n"


def make_roster() -> list[dict[str, Any]]:
    reps = []
    for t, team in enumerate(TEAMS):
        for k in range(15):
            reps.append({
                "id": f"rep_{t:02d}_{k:02d}",
                "manager_id": f"mgr_{t:02d}",
                "teams": [team],
                "roles": ["sales_rep"],
                "active": k != 7,
            })
    return reps


def make_leads(n: int, seed: int = SEED) -> list[dict[str, Any]]:
    rng = random.Random(seed + 1)
    leads = []
    for i in range(n):
        region = rng.choice(REGIONS) if rng.random() > 0.01 else "unknown"
        leads.append({
            "id": f"L{i:06d}",
            "region": region,
            "source": rng.choice(SOURCES),
            "employees": rng.randrange(1, 20000),
            "creator_id": "rep_00_00",
        })
    return leads


def make_counts(roster: list[dict[str, Any]]) -> dict[str, Any]:
    return {r["id"]: {"by_cap": {"daily_new": 0, "open_backlog": 0}} for r in roster}


# -- the hand-written baseline ---------------------------------------------------------------


def baseline(rules: list[dict[str, Any]], roster: list[dict[str, Any]],
             leads: list[dict[str, Any]]) -> list[str]:
    """First match by a linear scan, then round robin over sorted active members under caps."""
    compiled = [
        (r["region"], frozenset(r["sources"]) if r["sources"] else None, r["lo"], r["hi"],
         r["team"])
        for r in rules
    ]
    members: dict[str, list[str]] = {}
    active = {r["id"]: r["active"] for r in roster}
    for r in roster:
        for t in r["teams"]:
            members.setdefault(t, []).append(r["id"])
    for t in members:
        members[t].sort()
    daily = dict.fromkeys(active, 0)
    backlog = dict.fromkeys(active, 0)
    last: dict[str, str] = {}
    out = []
    for lead in leads:
        region, source, emp = lead["region"], lead["source"], lead["employees"]
        team = None
        for reg, sources, lo, hi, tm in compiled:
            if reg == region and (sources is None or (source in sources and lo <= emp < hi)):
                team = tm
                break
        if team is None:
            out.append("lead_pool")
            continue
        order = members[team]
        n = len(order)
        start = bisect.bisect_right(order, last[team]) if team in last else 0
        owner = "lead_pool"
        for k in range(n):
            rid = order[(start + k) % n]
            if active[rid] and daily[rid] < DAILY_MAX and backlog[rid] < BACKLOG_MAX:
                owner = rid
                last[team] = rid
                daily[rid] += 1
                backlog[rid] += 1
                break
        out.append(owner)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--explain-leads", type=int, default=0,
                        help="leads for the explain run (default: same as --leads)")
    args = parser.parse_args(argv)

    rules = make_rules()
    roster_data = make_roster()
    leads = make_leads(args.leads)
    t0 = time.perf_counter()
    policy = load_policy_string(policy_yaml(rules), "bench.yaml")
    build_s = time.perf_counter() - t0
    roster = Roster(roster_data)
    now = datetime(2026, 12, 3, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))

    def run_baseline() -> list[str]:
        return baseline(rules, roster_data, leads)

    def run_sr(explain: bool, subset: list[dict[str, Any]]) -> list[str]:
        decisions = assign_many(policy, subset, now=now, roster=roster,
                                counts=make_counts(roster_data), explain=explain)
        return [d.outcome.owner_id for d in decisions]

    n_explain = args.explain_leads or args.leads
    timings: dict[str, float] = {}
    results: dict[str, list[str]] = {}
    # CPU time spent in the cyclic garbage collector per run (every decision is a handful of
    # container objects the GC tracks, so a large batch pays for full collections too).
    in_gc: dict[str, list[float]] = {}
    gc_start: list[float] = []

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_start.append(time.process_time())
        elif gc_start:
            in_gc.setdefault(current[0], []).append(time.process_time() - gc_start.pop())

    current = [""]
    gc_share: dict[str, float] = {}
    gc.callbacks.append(on_gc)
    for name, fn, n in (
        ("baseline", run_baseline, len(leads)),
        ("sr", lambda: run_sr(False, leads), len(leads)),
        ("sr_explain", lambda: run_sr(True, leads[:n_explain]), n_explain),
    ):
        times = []
        for _ in range(args.runs):
            gc.collect()
            current[0] = name
            t = time.process_time()
            results[name] = fn()
            times.append(time.process_time() - t)
            current[0] = ""
        timings[name] = n / statistics.median(times)
        gc_share[name] = sum(in_gc.get(name, ())) / sum(times)
    gc.callbacks.remove(on_gc)
    if results["sr"] != results["baseline"]:
        raise SystemExit("salesrules and the baseline disagree")
    if results["sr_explain"] != results["baseline"][:n_explain]:
        raise SystemExit("explain changed the owners")
    overflow = sum(1 for o in results["sr"] if o == "lead_pool")
    print(f"policy build {build_s * 1000:.0f} ms; {len(rules)} rules, {len(roster_data)} reps in "
          f"{len(TEAMS)} pools; {len(leads)} leads, {overflow} to the pool")
    for name, rate in timings.items():
        print(f"{name:11s} {rate:12,.0f} leads/s  ({gc_share[name]:.0%} of it in the GC)")
    print(f"sr / baseline          {timings['sr'] / timings['baseline']:.2f}x")
    print(f"explain slowdown       {timings['sr'] / timings['sr_explain']:.2f}x")


if __name__ == "__main__":
    main()
