"""Benchmark the what-if replay: a generated year of the case-study company.

Generates (seeded) ≈200 reps and ≈50,000 leads with the activities, conversions, stage moves,
collaborations, wins, contracts and project reports around them, replays the year through the
bundled policy (``rules/``), then compares the bundled policy with a variant (grade A gets 2
business days instead of 1) on the same history.

Reports events per second, decisions per second, peak memory (max RSS) and the compare time
as a ratio to one replay. Aim: the year in under 30 s on one core, the comparison of two
policies in under twice that.

    python benchmarks/bench_simulate.py                 # the full year
    python benchmarks/bench_simulate.py --leads 5000    # a quicker look
    python benchmarks/bench_simulate.py --json out.json # machine-readable figures
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from salesrules.policy import load_policy  # noqa: E402
from salesrules.simulate import compare, generate_history, read_history, simulate  # noqa: E402


def _rss_mb() -> float:
    # ru_maxrss is in KiB on Linux, bytes on macOS
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def _variant(rules: Path) -> Path:
    folder = Path(tempfile.mkdtemp()) / "rules"
    shutil.copytree(rules, folder)
    t = folder / "timeouts.yaml"
    text = t.read_text(encoding="utf-8")
    t.write_text(text.replace("A: 1 business day,", "A: 2 business days,"), encoding="utf-8")
    return folder


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--reps", type=int, default=200)
    p.add_argument("--leads", type=int, default=50_000)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--sweep", choices=("exact", "ticks"), default="exact")
    p.add_argument("--keep-log", action="store_true", help="keep the decision log in memory")
    p.add_argument("--no-compare", action="store_true")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--json", help="write the figures to this file")
    args = p.parse_args(argv)

    rules = ROOT / "rules"
    policy = load_policy(rules)
    t0 = time.perf_counter()
    raw = generate_history(args.seed, reps=args.reps, leads=args.leads, days=args.days)
    events = read_history(raw)
    del raw
    gen = time.perf_counter() - t0
    rss_before = _rss_mb()
    print(
        f"history: {len(events)} events ({args.leads} leads, {args.reps} reps, "
        f"{args.days} days), generated and parsed in {gen:.1f} s"
    )

    t0, c0 = time.perf_counter(), time.process_time()
    res = simulate(
        policy, events, sweep=args.sweep, keep_log=args.keep_log, progress=args.progress or None
    )
    replay = time.perf_counter() - t0
    replay_cpu = time.process_time() - c0
    rss_replay = _rss_mb()
    figures = {
        "events": len(events),
        "decisions": res.decisions,
        "replay_seconds": round(replay, 2),
        "replay_cpu_seconds": round(replay_cpu, 2),
        "events_per_second": round(len(events) / replay),
        "events_per_cpu_second": round(len(events) / replay_cpu),
        "decisions_per_second": round(res.decisions / replay),
        "peak_rss_mb": round(rss_replay, 1),
        "rss_before_replay_mb": round(rss_before, 1),
        "released": res.totals["released"],
        "assigned": res.totals["assigned"],
        "invariant_problems": len(res.totals["invariant_problems"]),
        "sweep": args.sweep,
        "keep_log": args.keep_log,
    }
    print(
        f"replay: {replay:.1f} s wall, {replay_cpu:.1f} s CPU; "
        f"{figures['events_per_second']} events/s ({figures['events_per_cpu_second']} per CPU "
        f"second), {figures['decisions_per_second']} decisions/s, {res.decisions} decisions, "
        f"peak RSS {rss_replay:.0f} MB",
        flush=True,
    )
    if not args.no_compare:
        variant = load_policy(_variant(rules))
        t0, c0 = time.perf_counter(), time.process_time()
        diff = compare(
            policy,
            variant,
            events,
            sweep=args.sweep,
            keep_log=args.keep_log,
            progress=args.progress or None,
        )
        cmp_s = time.perf_counter() - t0
        cmp_cpu = time.process_time() - c0
        figures.update(
            compare_seconds=round(cmp_s, 2),
            compare_ratio=round(cmp_s / replay, 2),
            compare_cpu_seconds=round(cmp_cpu, 2),
            compare_cpu_ratio=round(cmp_cpu / replay_cpu, 2),
            records_with_another_owner=len(diff.owner_changes),
            releases_changed=len(diff.release_changes),
            peak_rss_mb=round(_rss_mb(), 1),
        )
        print(
            f"compare: {cmp_s:.1f} s wall, {cmp_cpu:.1f} s CPU = {cmp_cpu / replay_cpu:.2f} x "
            "one replay (CPU); "
            f"{len(diff.owner_changes)} records with another owner, "
            f"{len(diff.release_changes)} releases changed; peak RSS {_rss_mb():.0f} MB"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
