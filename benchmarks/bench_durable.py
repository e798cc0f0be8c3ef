"""Peer workload through the durable-rules backend vs the pure RuleTable vs a linear scan.

Builds the first-match lead-assignment table of ``shared/bench/peers/workload.py`` (N equality
/ set / range conjunction rules plus a catch-all) and prints leads/s and ratios for:

* ``linear``  a plain linear scan of the compiled conditions (``Condition.matches``);
* ``sr``      ``salesrules.conditions.RuleTable.first`` (indexed);
* ``durable`` ``salesrules.backends.durable.DurableTable.first`` (durable-rules C Rete engine).

Every engine's decisions are checked against the pure table's. Needs the ``durable`` extra
(CPython 3.11/3.12).

Usage::

    python benchmarks/bench_durable.py [--rules 200] [--leads 20000] [--runs 3]

The peers folder is ``<repo>/../shared/bench/peers`` or ``$SALESRULES_PEERS``.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

# The peer workload loader and the rule translation are bench_rules.py's: one source of truth
# for how the canonical peer rules become salesrules conditions.
from bench_rules import ROOTS, to_condition_spec
from bench_rules import wl as _WORKLOAD

from salesrules.backends.durable import DurableTable
from salesrules.conditions import RuleTable, compile_condition


def decide(first: Callable[[Any], Any], leads: list[dict[str, Any]]) -> list[str | None]:
    out: list[str | None] = []
    append = out.append
    for lead in leads:
        m = first({"lead": lead})
        append(m[1] if m is not None else None)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", type=int, default=200)
    ap.add_argument("--leads", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    wl = _WORKLOAD
    rules = wl.by_priority(wl.make_rules(args.rules))
    leads = wl.make_leads(args.leads)
    rows = [(compile_condition(to_condition_spec(r), roots=ROOTS), r["name"]) for r in rules]

    t0 = time.perf_counter()
    table = RuleTable(rows)
    build_sr = time.perf_counter() - t0
    t0 = time.perf_counter()
    durable = DurableTable.from_table(table)
    build_durable = time.perf_counter() - t0
    conds = [(c, p) for c, p in rows]

    def linear(ctx: Any) -> Any:
        for i, (c, p) in enumerate(conds):
            if c.matches(ctx):
                return i, p
        return None

    engines: dict[str, Callable[[Any], Any]] = {
        "linear": linear,
        "sr": table.first,
        "durable": durable.first,
    }
    want = decide(table.first, leads)
    rates: dict[str, float] = {}
    for name, first in engines.items():
        decide(first, leads[:1000])  # warm-up
        times = []
        for _ in range(args.runs):
            gc.collect()
            t0 = time.perf_counter()
            got = decide(first, leads)
            times.append(time.perf_counter() - t0)
            assert got == want, f"{name} disagrees with RuleTable.first"
        rates[name] = len(leads) / statistics.median(times)
    result = {
        "rules": args.rules,
        "leads": len(leads),
        "build_s": {"sr": round(build_sr, 4), "durable": round(build_durable, 4)},
        "leads_per_s": {k: round(v) for k, v in rates.items()},
        "durable_over_sr": round(rates["durable"] / rates["sr"], 3),
        "durable_over_linear": round(rates["durable"] / rates["linear"], 3),
        "sr_over_linear": round(rates["sr"] / rates["linear"], 3),
        "durable": {k: v for k, v in durable.describe().items() if k != "pure_rows"},
        "durable_pure_rows": len(durable.describe()["pure_rows"]),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
