"""Peer rules benchmark: first-match lead assignment through ``salesrules`` tables.

Reproduces the workload of ``shared/bench/peers`` (``workload.py``: N equality / set /
range conjunction rules plus a catch-all, 100,000 seeded leads) and prints leads/s for:

* ``linear``   a hand-written linear scan of closures (the peers' ``impl_plain_linear.py``);
* ``hand_idx`` a hand-written region index (the peers' ``impl_plain_indexed.py``);
* ``sr``       ``salesrules.conditions.RuleTable.first`` (explain off);
* ``sr_trace`` ``RuleTable.first_explained`` (explain on: the per-row trace is recorded
  compactly and rendered lazily; ``sr_render`` also renders every skipped row's reason, on a
  sample of leads, to show what a fully materialized trace costs);
* ``zen``      zen-engine ``ZenEngine.evaluate`` (only when ``zen-engine`` is installed).

Every implementation's decisions are checked against ``workload.reference_match``.

This measures the condition compiler and the table index directly (``compile_condition`` +
``RuleTable``); the full YAML -> Policy -> ``assign`` path is measured by the assignment
benchmark.

Usage::

    python benchmarks/bench_rules.py [--rules 200,2000] [--leads 100000] [--runs 3]

The peers folder is ``<repo>/../shared/bench/peers`` or ``$SALESRULES_PEERS``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from salesrules.conditions import RuleTable, compile_condition

ROOTS = frozenset({"lead"})


def _import_workload() -> Any:
    here = Path(__file__).resolve().parent.parent
    candidates = [here.parent / "shared" / "bench" / "peers"]
    env = os.environ.get("SALESRULES_PEERS")
    if env:
        candidates.insert(0, Path(env))
    for folder in candidates:
        if (folder / "workload.py").is_file():
            sys.path.insert(0, str(folder))
            import workload  # type: ignore[import-not-found]

            return workload
    raise SystemExit(
        "bench_rules: cannot find the peer workload (workload.py); looked in "
        + ", ".join(str(c) for c in candidates)
        + ". Set SALESRULES_PEERS to the shared/bench/peers folder."
    )


wl = _import_workload()


# --- (d) hand-written linear scan, as impl_plain_linear.py -------------------------------------
def compile_rule(rule: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    """Return a closure lead -> bool testing only the fields the rule constrains."""
    region, sources, industry = rule["region"], rule["sources"], rule["industry"]
    lo, hi = rule["emp_min"], rule["emp_max"]
    srcs = frozenset(sources) if sources is not None else None
    checks: list[Callable[[dict[str, Any]], bool]] = []
    if region is not None:
        checks.append(lambda ld: ld["region"] == region)
    if srcs is not None:
        checks.append(lambda ld: ld["source"] in srcs)
    if industry is not None:
        checks.append(lambda ld: ld["industry"] == industry)
    if lo is not None and hi is not None:
        checks.append(lambda ld: lo <= ld["employee_count"] < hi)
    elif lo is not None:
        checks.append(lambda ld: ld["employee_count"] >= lo)
    elif hi is not None:
        checks.append(lambda ld: ld["employee_count"] < hi)
    if not checks:
        return lambda ld: True
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        a, b = checks
        return lambda ld: a(ld) and b(ld)
    if len(checks) == 3:
        a, b, c = checks
        return lambda ld: a(ld) and b(ld) and c(ld)
    a, b, c, d = checks
    return lambda ld: a(ld) and b(ld) and c(ld) and d(ld)


def build_linear(rules: list[dict[str, Any]]) -> Any:
    return [(compile_rule(r), r["name"]) for r in wl.by_priority(rules)]


def decide_linear(table: Any, leads: list[dict[str, Any]]) -> list[str | None]:
    out: list[str | None] = []
    append = out.append
    for lead in leads:
        for pred, name in table:
            if pred(lead):
                append(name)
                break
        else:
            append(None)
    return out


# --- (e) hand-written region index, as impl_plain_indexed.py -----------------------------------
def build_hand_index(rules: list[dict[str, Any]]) -> Any:
    ordered = wl.by_priority(rules)
    wildcard = [(i, r) for i, r in enumerate(ordered) if r["region"] is None]
    buckets = {}
    for reg in sorted({r["region"] for r in ordered if r["region"] is not None}):
        members = [(i, r) for i, r in enumerate(ordered) if r["region"] == reg] + wildcard
        members.sort(key=lambda t: t[0])
        buckets[reg] = [(compile_rule(dict(r, region=None)), r["name"]) for _, r in members]
    fallback = [(compile_rule(r), r["name"]) for _, r in wildcard]
    return buckets, fallback


def decide_hand_index(engine: Any, leads: list[dict[str, Any]]) -> list[str | None]:
    buckets, fallback = engine
    get = buckets.get
    out: list[str | None] = []
    append = out.append
    for lead in leads:
        for pred, name in get(lead["region"], fallback):
            if pred(lead):
                append(name)
                break
        else:
            append(None)
    return out


# --- salesrules ---------------------------------------------------------------------------------
def to_condition_spec(rule: dict[str, Any]) -> dict[str, Any]:
    """Translate one canonical peer rule into salesrules condition syntax (shorthand form)."""
    spec: dict[str, Any] = {}
    if rule["region"] is not None:
        spec["lead.region"] = rule["region"]
    if rule["sources"] is not None:
        spec["lead.source"] = {"in": list(rule["sources"])}
    if rule["industry"] is not None:
        spec["lead.industry"] = rule["industry"]
    emp: dict[str, Any] = {}
    if rule["emp_min"] is not None:
        emp["ge"] = rule["emp_min"]
    if rule["emp_max"] is not None:
        emp["lt"] = rule["emp_max"]
    if emp:
        spec["lead.employee_count"] = emp
    return spec


def build_salesrules(rules: list[dict[str, Any]]) -> RuleTable[str]:
    rows = [
        (compile_condition(to_condition_spec(r), roots=ROOTS), r["name"])
        for r in wl.by_priority(rules)
    ]
    return RuleTable(rows)


def decide_sr(table: RuleTable[str], leads: list[dict[str, Any]]) -> list[str | None]:
    first = table.first
    out: list[str | None] = []
    append = out.append
    for lead in leads:
        m = first({"lead": lead})
        append(m[1] if m is not None else None)
    return out


def decide_sr_trace(table: RuleTable[str], leads: list[dict[str, Any]]) -> list[str | None]:
    first = table.first_explained
    out: list[str | None] = []
    append = out.append
    for lead in leads:
        m, trace = first({"lead": lead})
        len(trace)
        append(m[1] if m is not None else None)
    return out


def decide_sr_render(table: RuleTable[str], leads: list[dict[str, Any]]) -> list[str | None]:
    first = table.first_explained
    out: list[str | None] = []
    append = out.append
    for lead in leads:
        m, trace = first({"lead": lead})
        for row in trace:
            row.render()
        append(m[1] if m is not None else None)
    return out


# --- zen (optional) -----------------------------------------------------------------------------
def build_zen(rules: list[dict[str, Any]], trace: bool) -> Any:
    sys_path_peers = Path(wl.__file__).parent
    sys.path.insert(0, str(sys_path_peers))
    import impl_zen  # type: ignore[import-not-found]

    return impl_zen.build(rules, {"mode": "engine", "trace": "1" if trace else "0"}), impl_zen


def decide_zen(engine: Any, leads: list[dict[str, Any]]) -> list[str | None]:
    eng, mod = engine
    result: list[str | None] = mod.decide_all(eng, leads)
    return result


def _time(
    fn: Callable[[Any, list[dict[str, Any]]], list[str | None]],
    engine: Any,
    leads: list[dict[str, Any]],
    runs: int,
    warmup: int,
) -> tuple[float, list[str | None]]:
    fn(engine, leads[:warmup])
    rates = []
    decisions: list[str | None] = []
    for _ in range(runs):
        gc.collect()
        t0 = time.perf_counter()
        decisions = fn(engine, leads)
        rates.append(len(leads) / (time.perf_counter() - t0))
    return statistics.median(rates), decisions


def main() -> None:
    """Run the benchmark and print one table per rule count (and JSON with ``--json``)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--rules", default="200,2000", help="comma-separated rule counts")
    ap.add_argument("--leads", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=5_000)
    ap.add_argument("--render-sample", type=int, default=5_000, help="leads for sr_render")
    ap.add_argument("--no-zen", action="store_true", help="skip zen-engine even if installed")
    ap.add_argument("--json", help="append one JSON line per rule count to this file")
    args = ap.parse_args()

    try:
        import zen  # type: ignore[import-not-found]  # noqa: F401

        have_zen = not args.no_zen
    except ImportError:
        have_zen = False

    leads = wl.make_leads(args.leads)
    ok = True
    for n in (int(x) for x in args.rules.split(",")):
        rules = wl.make_rules(n)
        ordered = wl.by_priority(rules)
        expected = []
        for lead in leads:
            for r in ordered:
                if wl.reference_match(r, lead):
                    expected.append(r["name"])
                    break
            else:
                expected.append(None)
        t0 = time.perf_counter()
        table = build_salesrules(rules)
        build_s = time.perf_counter() - t0
        impls: list[tuple[str, Any, Any, list[dict[str, Any]]]] = [
            ("linear", decide_linear, build_linear(rules), leads),
            ("hand_idx", decide_hand_index, build_hand_index(rules), leads),
            ("sr", decide_sr, table, leads),
            ("sr_trace", decide_sr_trace, table, leads),
            ("sr_render", decide_sr_render, table, leads[: args.render_sample]),
        ]
        if have_zen:
            impls.append(("zen", decide_zen, build_zen(rules, False), leads))
            impls.append(("zen_trace", decide_zen, build_zen(rules, True), leads[:20_000]))
        rates: dict[str, float] = {}
        for name, fn, engine, data in impls:
            rate, got = _time(fn, engine, data, args.runs, min(args.warmup, len(data)))
            rates[name] = rate
            if got != expected[: len(data)]:
                bad = sum(1 for a, b in zip(got, expected, strict=False) if a != b)
                print(f"  !! {name}: {bad} decisions differ from reference_match")
                ok = False
        base = rates["linear"]
        print(
            f"\nrules={n} leads={len(leads)} runs={args.runs} (median)  "
            f"salesrules build {build_s * 1000:.0f} ms  index={table.describe()['indexed_columns']}"
        )
        print(f"{'impl':<10} {'leads/s':>12} {'x linear':>9} {'x hand_idx':>10}")
        for name, rate in rates.items():
            print(
                f"{name:<10} {rate:>12,.0f} {rate / base:>9.2f} {rate / rates['hand_idx']:>10.2f}"
            )
        if args.json:
            with open(args.json, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"rules": n, "leads": len(leads), "rates": rates}) + "\n")
    if not ok:
        raise SystemExit(1)
    print("\nall decisions agree with workload.reference_match")


if __name__ == "__main__":
    main()
