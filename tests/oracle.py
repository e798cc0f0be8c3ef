"""Naive, obviously correct reference implementations that property tests compare against.

Each helper adds its oracle as a clearly named function; keep them slow and simple.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any


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


# ---------------------------------------------------------------------------------------------
# conditions: a tree-walking evaluator over the *raw* spec (re-parsed on every call)
# ---------------------------------------------------------------------------------------------

_COND_OPS = {
    "eq", "ne", "in", "not_in", "lt", "le", "gt", "ge", "between",
    "exists", "missing", "contains", "starts_with", "ends_with", "matches",
}  # fmt: skip


def cond_type_class(v: Any) -> str | None:
    """Return the type class of a value the way the spec defines it (None = no class)."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, str):
        return "str"
    if isinstance(v, Decimal):
        return None if v.is_nan() else "num"
    if isinstance(v, float):
        return None if v != v else "num"
    if isinstance(v, int):
        return "num"
    if isinstance(v, datetime):
        return "datetime" if v.tzinfo is not None and v.utcoffset() is not None else None
    if isinstance(v, date):
        return "date"
    if isinstance(v, list | tuple | set | frozenset):
        return "list"
    return None


def cond_lookup(ctx: Mapping[str, Any], path: str) -> Any:
    """Walk a dotted path through nested mappings; None when any step is absent."""
    cur: Any = ctx
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _same_scalar_eq(a: Any, b: Any) -> bool | None:
    ca, cb = cond_type_class(a), cond_type_class(b)
    if ca is None or ca != cb or ca == "list":
        return None
    return bool(a == b)


def _member(x: Any, seq: Any) -> bool | None:
    """Kleene membership of x in a literal operand list (unknown if no element of x's class)."""
    cx = cond_type_class(x)
    if cx is None or cx == "list":
        return None
    same = [e for e in seq if cond_type_class(e) == cx]
    if not same:
        return None
    return any(e == x for e in same)


def _list_contains(seq: Any, x: Any) -> bool:
    cx = cond_type_class(x)
    return any(cond_type_class(e) == cx and e == x for e in seq)


def cond_leaf(op: str, actual: Any, operand: Any, *, is_ref: bool) -> bool | None:
    """Evaluate one comparison from first principles."""
    if op == "exists":
        return (actual is not None) == operand
    if op == "missing":
        return (actual is None) == operand
    if actual is None or (is_ref and operand is None):
        return None
    ca = cond_type_class(actual)
    if op in ("in", "not_in"):
        if is_ref:
            if cond_type_class(operand) != "list" or ca in (None, "list"):
                return None
            r: bool | None = _list_contains(operand, actual)
        else:
            r = _member(actual, operand)
        return r if r is None or op == "in" else not r
    if op == "contains":
        if ca == "str":
            return operand in actual if cond_type_class(operand) == "str" else None
        if ca == "list" and cond_type_class(operand) not in (None, "list"):
            return _list_contains(actual, operand)
        return None
    if op in ("starts_with", "ends_with"):
        if ca != "str" or cond_type_class(operand) != "str":
            return None
        return actual.startswith(operand) if op == "starts_with" else actual.endswith(operand)
    if op == "matches":
        if ca != "str":
            return None
        return re.search(operand, actual) is not None
    if op == "between":
        lo, hi = operand
        if ca != cond_type_class(lo) or ca not in ("str", "num", "date", "datetime"):
            return None
        return bool(lo <= actual <= hi)
    if op == "eq":
        return _same_scalar_eq(actual, operand)
    if op == "ne":
        r = _same_scalar_eq(actual, operand)
        return None if r is None else not r
    # lt le gt ge
    if ca != cond_type_class(operand) or ca not in ("str", "num", "date", "datetime"):
        return None
    return {
        "lt": actual < operand,
        "le": actual <= operand,
        "gt": actual > operand,
        "ge": actual >= operand,
    }[op]


def cond_and(results: Sequence[bool | None]) -> bool | None:
    """Kleene conjunction."""
    if any(r is False for r in results):
        return False
    if any(r is None for r in results):
        return None
    return True


def cond_or(results: Sequence[bool | None]) -> bool | None:
    """Kleene disjunction."""
    if any(r is True for r in results):
        return True
    if any(r is None for r in results):
        return None
    return False


def _cond_operand(ctx: Mapping[str, Any], operand: Any) -> tuple[Any, bool]:
    if isinstance(operand, Mapping) and set(operand) == {"ref"}:
        return cond_lookup(ctx, operand["ref"]), True
    return operand, False


def cond_eval(spec: Any, ctx: Mapping[str, Any]) -> bool | None:
    """Evaluate a (valid) condition spec against ``ctx`` by walking the raw spec."""
    if isinstance(spec, list | tuple):
        return cond_and([cond_eval(s, ctx) for s in spec])
    if "field" in spec:
        if "ref" in spec:
            operand, is_ref = cond_lookup(ctx, spec["ref"]), True
        else:
            operand, is_ref = _cond_operand(ctx, spec.get("value", True))
        return cond_leaf(spec["op"], cond_lookup(ctx, spec["field"]), operand, is_ref=is_ref)
    results: list[bool | None] = []
    for key, val in spec.items():
        if key == "all":
            results.append(cond_and([cond_eval(s, ctx) for s in val]))
        elif key == "any":
            results.append(cond_or([cond_eval(s, ctx) for s in val]))
        elif key == "not":
            r = cond_eval(val, ctx)
            results.append(None if r is None else not r)
        elif isinstance(val, Mapping) and set(val) != {"ref"}:
            actual = cond_lookup(ctx, key)
            for op, operand in val.items():
                o, is_ref = _cond_operand(ctx, operand)
                results.append(cond_leaf(op, actual, o, is_ref=is_ref))
        else:
            o, is_ref = _cond_operand(ctx, val)
            results.append(cond_leaf("eq", cond_lookup(ctx, key), o, is_ref=is_ref))
    return cond_and(results)


def table_first(specs: Sequence[Any], ctx: Mapping[str, Any]) -> tuple[int | None, tuple[int, ...]]:
    """Brute-force first match: (index of the first True row or None, unknown rows before it)."""
    unknown: list[int] = []
    for i, spec in enumerate(specs):
        r = cond_eval(spec, ctx)
        if r is True:
            return i, tuple(unknown)
        if r is None:
            unknown.append(i)
    return None, tuple(unknown)


def table_all(specs: Sequence[Any], ctx: Mapping[str, Any]) -> tuple[list[int], tuple[int, ...]]:
    """Brute-force collect: (indices of True rows, indices of unknown rows)."""
    results = [cond_eval(s, ctx) for s in specs]
    return (
        [i for i, r in enumerate(results) if r is True],
        tuple(i for i, r in enumerate(results) if r is None),
    )
