"""Benchmark: allocate the credit of seeded won deals among 1–6 members.

Usage::

    python benchmarks/bench_splits.py [--deals N] [--seed S]

Each deal has a ``Decimal`` amount in CNY (fen precision, up to ¥10 million, 5 % refunds) and
1–6 members whose percentage shares (whole or with two decimals) total 100. The library's
``allocate`` (integer minor units, largest remainder, ties by rep id) is timed against a
hand-written baseline — the naive way: ``Decimal`` division per member, quantize down, then
hand out the leftover cents by largest remainder — in the same run, on the same deals, and
the two are checked to agree on every deal.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import time
import timeit
from collections.abc import Callable
from decimal import ROUND_DOWN, Decimal

from salesrules.splits import allocate

CENT = Decimal("0.01")
REPS = [f"r-{i:03d}" for i in range(200)]
CHUNK = 10_000
HUNDRED = Decimal(100)


def make_deals(n: int, seed: int) -> list[tuple[Decimal, dict[str, Decimal]]]:
    """Seeded won deals: (amount, {rep_id: share %}) with shares totalling exactly 100."""
    rnd = random.Random(seed)
    deals = []
    for _ in range(n):
        units = rnd.randrange(1, 10**9)
        if rnd.random() < 0.05:
            units = -units
        amount = Decimal(units).scaleb(-2)
        k = rnd.randint(1, 6)
        if rnd.random() < 0.5:  # whole percentages
            cuts = sorted(rnd.sample(range(1, 100), k - 1))
            scale = 1
        else:  # basis points
            cuts = sorted(rnd.sample(range(1, 10000), k - 1))
            scale = 100
        bounds = [0, *cuts, 100 * scale]
        reps = rnd.sample(REPS, k)
        shares = {
            rep: Decimal(bounds[i + 1] - bounds[i]).scaleb(-2 if scale == 100 else 0)
            for i, rep in enumerate(reps)
        }
        deals.append((amount, shares))
    return deals


def naive_allocate(amount: Decimal, shares: dict[str, Decimal]) -> dict[str, Decimal]:
    """The baseline: Decimal arithmetic throughout, largest remainder, ties by rep id."""
    sign = -1 if amount < 0 else 1
    whole = abs(amount)
    total = sum(shares.values())
    exact = {rep: whole * share / total for rep, share in shares.items()}
    parts = {rep: x.quantize(CENT, rounding=ROUND_DOWN) for rep, x in exact.items()}
    left = int((whole - sum(parts.values())) / CENT)
    for rep in sorted(shares, key=lambda r: (-(exact[r] - parts[r]), r))[:left]:
        parts[rep] += CENT
    return {rep: sign * part for rep, part in parts.items()}


def _timed(
    fn: Callable[[Decimal, dict[str, Decimal]], object],
    deals: list[tuple[Decimal, dict[str, Decimal]]],
) -> float:
    """CPU seconds to allocate every deal (results dropped; GC paused, as timeit does).

    CPU time (``process_time``), not wall time: on a shared, loaded machine wall time mostly
    measures the other processes.
    """
    gc.disable()
    try:
        t0 = time.process_time()
        for amount, shares in deals:
            fn(amount, shares)
        return time.process_time() - t0
    finally:
        gc.enable()


def ours(amount: Decimal, shares: dict[str, Decimal]) -> dict[str, Decimal]:
    """The library call being measured."""
    return allocate(amount, shares, "CNY")


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print deals/s for both implementations and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20261203)
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    deals = make_deals(args.deals, args.seed)
    gc.collect()
    gc.freeze()  # the deals are long-lived: keep them out of the collector's way
    print(f"generated {len(deals):,} deals in {time.perf_counter() - t0:.1f}s")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    calib = min(timeit.repeat("sum(range(100))", number=20000, repeat=5)) / 20000 * 1e6
    print(f"machine: load average {load:.1f}; sum(range(100)) takes {calib:.2f} us")

    # Interleave the two in chunks (alternating which goes first) so that a change in machine
    # load during the run affects both alike; the ratio is the robust figure.
    n = len(deals)
    t_ours = t_base = 0.0
    for k, start in enumerate(range(0, n, CHUNK)):
        chunk = deals[start : start + CHUNK]
        if k % 2:
            t_base += _timed(naive_allocate, chunk)
            t_ours += _timed(ours, chunk)
        else:
            t_ours += _timed(ours, chunk)
            t_base += _timed(naive_allocate, chunk)
    print(f"salesrules.allocate : {n / t_ours:>12,.0f} deals/s  ({t_ours:.2f}s cpu)")
    print(f"naive Decimal LR    : {n / t_base:>12,.0f} deals/s  ({t_base:.2f}s cpu)")
    print(f"speed-up            : {t_base / t_ours:.2f}x")

    mismatches = 0
    conserved = True
    for amount, shares in deals:
        got = allocate(amount, shares, "CNY")
        mismatches += got != naive_allocate(amount, shares)
        conserved = conserved and sum(got.values()) == amount
    print(
        f"identical results   : {mismatches == 0} ({mismatches} mismatches); sums exact: {conserved}"
    )


if __name__ == "__main__":
    main()
