"""Calendar benchmark: ``Calendar.add`` throughput against a naive day-by-day baseline.

Prints adds/second for ``"2 business days"``, ``"16 business hours"`` and ``"3 days"`` with a
China calendar (Asia/Shanghai, Mon–Fri 09:00–12:00 + 13:30–18:00, national holidays with 调休
make-up workdays), next to a naive implementation measured in the same run: it walks day by
day, asks a ``holidays`` object whether each date is a holiday or a make-up workday and builds
each day's working intervals afresh (no memo). Every naive result is checked against
``Calendar.add``. The ratio column is salesrules / naive.

Usage::

    python benchmarks/bench_calendar.py [--adds 200000] [--runs 3]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import holidays

from salesrules.calendar import Calendar, Duration, parse_duration

ZONE = ZoneInfo("Asia/Shanghai")
#: Working intervals in minutes since midnight.
HOURS = ((9 * 60, 12 * 60), (13 * 60 + 30, 18 * 60))


class Naive:
    """The straightforward implementation a host would write first (day-by-day, no memo)."""

    def __init__(self) -> None:
        self.table = holidays.country_holidays("CN", years=range(2024, 2029))

    def _working(self, d: date) -> bool:
        if d in self.table:
            return False
        if d.weekday() >= 5:
            return d in self.table.weekend_workdays
        return True

    def _intervals(self, d: date) -> list[tuple[datetime, datetime]]:
        if not self._working(d):
            return []
        midnight = datetime(d.year, d.month, d.day)
        return [
            (
                (midnight + timedelta(minutes=s)).replace(tzinfo=ZONE).astimezone(UTC),
                (midnight + timedelta(minutes=e)).replace(tzinfo=ZONE).astimezone(UTC),
            )
            for s, e in HOURS
        ]

    def _opening(self, u: datetime) -> datetime:
        d = u.astimezone(ZONE).date()
        while True:
            for s, e in self._intervals(d):
                if u < e:
                    return max(s, u)
            d += timedelta(days=1)

    def add_days(self, start: datetime, n: int) -> datetime:
        eff = self._opening(start.astimezone(UTC)).astimezone(ZONE)
        d = eff.date()
        while n:
            d += timedelta(days=1)
            if self._working(d):
                n -= 1
        wall = timedelta(
            hours=eff.hour, minutes=eff.minute, seconds=eff.second, microseconds=eff.microsecond
        )
        target = timedelta(minutes=HOURS[0][0])
        for s, e in HOURS:
            if wall >= timedelta(minutes=s):
                target = min(wall, timedelta(minutes=e))
        local = datetime(d.year, d.month, d.day) + target
        return local.replace(tzinfo=ZONE).astimezone(UTC).astimezone(ZONE)

    def add_hours(self, start: datetime, hours: int) -> datetime:
        remaining = timedelta(hours=hours)
        cur = start.astimezone(UTC)
        d = cur.astimezone(ZONE).date()
        while True:
            for s, e in self._intervals(d):
                if e <= cur:
                    continue
                cur = max(cur, s)
                if remaining <= e - cur:
                    return (cur + remaining).astimezone(ZONE)
                remaining -= e - cur
                cur = e
            d += timedelta(days=1)

    def add_calendar_days(self, start: datetime, n: int) -> datetime:
        local = start.astimezone(ZONE).replace(tzinfo=None) + timedelta(days=n)
        return local.replace(tzinfo=ZONE).astimezone(UTC).astimezone(ZONE)


def _rate(fn: Callable[[datetime], datetime], starts: list[datetime], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        for s in starts:
            fn(s)
        best = min(best, time.perf_counter() - t0)
    return len(starts) / best


def main() -> None:
    """Run the benchmark and print one row per duration."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adds", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    cal = Calendar.from_hours(
        "Asia/Shanghai", {"mon-fri": ["09:00-12:00", "13:30-18:00"]}, country="CN"
    )
    naive = Naive()
    rng = random.Random(7)
    base = datetime(2025, 1, 1, tzinfo=UTC)
    span = 2 * 365 * 24 * 3600
    starts = [base + timedelta(seconds=rng.randrange(span)) for _ in range(args.adds)]

    cases: list[tuple[str, Duration, Callable[[datetime], datetime]]] = [
        ("2 business days", parse_duration("2 business days"), lambda s: naive.add_days(s, 2)),
        (
            "16 business hours",
            parse_duration("16 business hours"),
            lambda s: naive.add_hours(s, 16),
        ),
        ("3 days", parse_duration("3 days"), lambda s: naive.add_calendar_days(s, 3)),
    ]
    for _, duration, slow in cases:  # warm up (holiday tables, memo) and check agreement
        for s in starts[:20_000]:
            want, got = slow(s), cal.add(s, duration)
            if want != got or want.utcoffset() != got.utcoffset():
                raise SystemExit(
                    f"mismatch for {duration} from {s}: naive {want}, salesrules {got}"
                )

    print(f"{'duration':<20} {'salesrules adds/s':>18} {'naive adds/s':>14} {'ratio':>7}")
    for name, duration, slow in cases:
        fast_rate = _rate(lambda s, d=duration: cal.add(s, d), starts, args.runs)  # type: ignore[misc]
        slow_rate = _rate(slow, starts, args.runs)
        print(f"{name:<20} {fast_rate:>18,.0f} {slow_rate:>14,.0f} {fast_rate / slow_rate:>6.1f}x")


if __name__ == "__main__":
    main()
