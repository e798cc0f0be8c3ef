"""Sweep seeded open records through the example company's release clocks.

Records (leads, customers, opportunities with a few activities and stage changes each) are
generated lazily from a seed, so memory measures the sweep, not the data. The same records are
also run through a hand-written baseline — a straightforward per-record deadline check with
the same calendar (``Calendar.add`` per clock, no rules, no decisions) — to give a ratio.

Run: ``python benchmarks/bench_timeouts.py [--records N] [--seed S]``.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
import tracemalloc
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from salesrules import timeouts
from salesrules.calendar import parse_duration
from salesrules.policy import load_policy

ROOT = Path(__file__).resolve().parent.parent
CST = timezone(timedelta(hours=8))
NOW = datetime(2026, 11, 20, 0, 5, tzinfo=CST)
STAGES = ("lead_confirmed", "needs_confirmed", "proposal", "negotiation", "contract")
KINDS = ("call", "visit", "email", "meeting", "email_opened")


def records(n: int, seed: int) -> Iterator[dict[str, Any]]:
    """Yield ``n`` sweep items (plain dicts), deterministically from ``seed``.

    The mix looks like a nightly sweep of a live CRM: 60% leads owned for up to three days,
    20% registered customers, 20% opportunities; a few activities each, most records within
    their deadlines, some in their warning period, a few overdue.
    """
    rnd = random.Random(seed)
    day = 86400
    for i in range(n):
        owner = f"r-{rnd.randrange(40)}"
        roll = rnd.random()
        if roll < 0.6:
            age = rnd.randrange(3 * day)
            last = rnd.randrange(min(age, 2 * day) + 1)
        elif roll < 0.8:
            age = rnd.randrange(200 * day)
            last = rnd.randrange(min(age, 32 * day) + 1)
        else:
            age = rnd.randrange(170 * day)
            last = rnd.randrange(min(age, 25 * day) + 1)
        since = NOW - timedelta(seconds=age)
        acts = [
            {"id": f"A{i}-{j}", "record_id": f"R{i}", "kind": rnd.choice(KINDS), "by": owner,
             "at": NOW - timedelta(seconds=last + rnd.randrange(day))}
            for j in range(rnd.randrange(4))
        ]
        if roll < 0.6:
            rec = {"id": f"L{i}", "type": "lead", "owner_id": owner, "owner_since": since,
                   "grade": rnd.choice("ABC")}
            yield {"record": rec, "activities": acts}
        elif roll < 0.8:
            rec = {"id": f"C{i}", "type": "customer", "owner_id": owner, "owner_since": since,
                   "open_opportunities": rnd.randrange(2), "has_active_contract": False,
                   "open_receivables": 0}
            yield {"record": rec, "activities": acts}
        else:
            k = rnd.randrange(len(STAGES))
            entered = NOW - timedelta(seconds=last)
            hist = [{"stage": STAGES[s], "at": entered - timedelta(days=7 * (k - s))}
                    for s in range(k + 1)]
            rec = {"id": f"O{i}", "type": "opportunity", "owner_id": owner,
                   "owner_since": since, "customer_id": f"C{i}"}
            yield {"record": rec, "activities": acts, "stage_history": hist,
                   "customer": {"id": f"C{i}", "has_active_contract": False,
                                "open_receivables": 0}}


def baseline(items: Iterator[dict[str, Any]], cal: Any) -> tuple[int, int]:
    """A hand-written per-record check: the obvious loop a host would write."""
    lead_d = {g: parse_duration(f"{n} business days") for g, n in (("A", 1), ("B", 2), ("C", 3))}
    conv = parse_duration("10 business days")
    cust = parse_duration("30 days")
    stage_d = parse_duration("15 business days")
    overall = parse_duration("180 days")
    follow = {"call", "visit", "meeting"}
    released = checked = 0
    for item in items:
        rec = item["record"]
        since = rec["owner_since"]
        fu = [a["at"] for a in item.get("activities", ()) if a["kind"] in follow
              and since <= a["at"] <= NOW]
        if rec["type"] == "lead":
            deadlines = [cal.add(max([since, *fu]), lead_d[rec["grade"]])]
            if fu:
                deadlines.append(cal.add(min(fu), conv))
        elif rec["type"] == "customer":
            deadlines = [cal.add(max([since, *fu]), cust)] if not rec["open_opportunities"] else [NOW + timedelta(days=1)]
        else:
            entered = max(since, item["stage_history"][-1]["at"])
            deadlines = [cal.add(entered, stage_d), cal.add(since, overall)]
        checked += 1
        if min(deadlines) <= NOW:
            released += 1
    return checked, released


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print throughput, peak memory and the ratio to the baseline."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-tracemalloc", action="store_true",
                    help="skip the traced run (tracemalloc slows Python down)")
    args = ap.parse_args(argv)
    policy = load_policy(ROOT / "rules")
    n = args.records

    # CPU time (process_time) is what one core spends; wall time is shown too, since a
    # loaded machine stretches it.
    w0, t0 = time.perf_counter(), time.process_time()
    counts = {"none": 0, "warn": 0, "release": 0}
    for d in timeouts.sweep(policy, records(n, args.seed), NOW):
        counts[d.outcome.action] += 1
    t_sweep, w_sweep = time.process_time() - t0, time.perf_counter() - w0

    w0, t0 = time.perf_counter(), time.process_time()
    entries = {"none": 0, "warn": 0, "release": 0}
    for e in timeouts.sweep_entries(policy, records(n, args.seed), NOW):
        entries[e.action] += 1
    t_entries, w_entries = time.process_time() - t0, time.perf_counter() - w0
    if entries != counts:  # pragma: no cover - the two forms must agree
        raise SystemExit(f"sweep_entries disagrees with sweep: {entries} != {counts}")

    t0 = time.process_time()
    b_checked, b_released = baseline(records(n, args.seed), policy.calendar)
    t_base = time.process_time() - t0

    t0 = time.process_time()
    for _ in records(n, args.seed):
        pass
    t_gen = time.process_time() - t0

    print(f"records            {n:,}")
    print(f"outcomes           {counts}")
    print(f"sweep              {n / t_sweep:,.0f} records/s CPU ({t_sweep:.2f} s CPU, "
          f"{w_sweep:.2f} s wall; generation included, alone {t_gen:.2f} s)")
    print(f"sweep excl. gen    {n / max(t_sweep - t_gen, 1e-9):,.0f} records/s CPU")
    print(f"sweep_entries      {n / t_entries:,.0f} records/s CPU ({t_entries:.2f} s CPU, "
          f"{w_entries:.2f} s wall); excl. gen {n / max(t_entries - t_gen, 1e-9):,.0f}/s")
    print(f"baseline           {b_checked / t_base:,.0f} records/s CPU ({t_base:.2f} s; "
          f"{b_released:,} due)")
    print(f"ratio sweep/base   {t_sweep / t_base:.2f}x the baseline's CPU time "
          f"({(t_sweep - t_gen) / max(t_base - t_gen, 1e-9):.2f}x without generation)")
    print(f"ratio entries/base {t_entries / t_base:.2f}x "
          f"({(t_entries - t_gen) / max(t_base - t_gen, 1e-9):.2f}x without generation)")
    maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if sys.platform == "darwin":  # bytes there, kilobytes on Linux
        maxrss_mb /= 1024
    print(f"ru_maxrss          {maxrss_mb:,.0f} MB (whole process)")

    if not args.no_tracemalloc:
        small = min(max(n // 10, 1000), 20_000)
        peaks = []
        for size in (small, small * 2):
            tracemalloc.start()
            for _ in timeouts.sweep(policy, records(size, args.seed), NOW):
                pass
            for _ in timeouts.sweep_entries(policy, records(size, args.seed), NOW):
                pass
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
        print(f"traced peak        {peaks[0] / 1e6:.1f} MB for {small:,} records, "
              f"{peaks[1] / 1e6:.1f} MB for {small * 2:,} (streaming: should not double)")


if __name__ == "__main__":
    main()
