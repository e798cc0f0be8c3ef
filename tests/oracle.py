"""Naive, obviously correct reference implementations that property tests compare against.

Each helper adds its oracle as a clearly named function; keep them slow and simple.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from fractions import Fraction


def splits_exact_allocation(
    amount: Decimal, shares: Mapping[str, Decimal | int], exponent: int
) -> dict[str, Decimal]:
    """Largest-remainder allocation computed with exact fractions (the splits oracle).

    Each rep's exact part is ``amount × share / Σ shares`` as a ``Fraction`` of minor units;
    everyone gets its part truncated toward zero, and the leftover units go one each to the
    largest fractional remainders, ties to the smallest rep id. Negative amounts mirror.
    """
    unit = Fraction(1, 10**exponent)
    total_units = Fraction(amount) / unit
    assert total_units.denominator == 1
    sign = -1 if total_units < 0 else 1
    units = abs(int(total_units))
    weight_sum = sum(Fraction(w) for w in shares.values())
    exact = {rep: units * Fraction(w) / weight_sum for rep, w in shares.items()}
    floors = {rep: int(x) for rep, x in exact.items()}  # int() truncates; x >= 0 here
    left = units - sum(floors.values())
    ranked = sorted(shares, key=lambda rep: (-(exact[rep] - floors[rep]), rep))
    for rep in ranked[:left]:
        floors[rep] += 1
    q = Decimal(1).scaleb(-exponent)
    return {rep: (Decimal(sign * floors[rep]) * q) for rep in shares}
