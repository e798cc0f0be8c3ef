"""Collaboration requests, their approval, and exact credit splits (the ``splits`` section).

Need 2 of the case study as one flow::

    validate_request ──submittable──► state "submitted"
    decide_approval  ──approve (each step in order) / reject / withdraw / expire──►
                       approved: add_team_member + share_access + record_split effects
    split            ──won deal──► credit allocated by the agreed split ratios (line by line)

**Rounding rule** (the one place it is defined; ``docs/splits.md`` repeats it):

1. An amount is converted to an integer number of the currency's minor units (CNY/USD/EUR 2,
   JPY 0, KWD/BHD 3 …; overridable with ``splits.currencies``). An amount finer than the minor
   unit is refused (``RecordError``), never rounded silently.
2. Each member's exact part is ``amount × share / total_of_shares``. Every member first gets
   the exact part rounded toward zero; the minor units left over (fewer than the number of
   members) go one each to the members with the **largest remainders**; equal remainders are
   broken by **rep id** in ascending code-point order (never by list position), so
   permuting the members changes nobody's part.
3. A negative amount (refund, credit note) is allocated as the mirror image of its absolute
   value: ``allocate(-x) == -allocate(x)`` part by part.
4. Therefore the parts always sum exactly to the amount, and each part is within one minor
   unit of its exact share. Overlay splits have no total: each overlay part is rounded on
   its own, to the nearest minor unit, halves away from zero.

Everything here is pure: no I/O, no clock (``now`` is an argument), ``Decimal`` money only.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field

from salesrules._section import CompileContext, SectionModel, SectionSpec, did_you_mean
from salesrules._yaml import Marks
from salesrules.calendar import DEFAULT_CALENDAR, Calendar, Duration
from salesrules.conditions import Condition
from salesrules.decision import (
    Assumption,
    Decision,
    Effect,
    Reason,
    RuleIssue,
    RuleRef,
    TraceBuilder,
    TraceStatus,
)
from salesrules.errors import RecordError
from salesrules.records import (
    ApprovalRecord,
    CollaborationRequest,
    CollaborationState,
    Rep,
    SplitDeal,
    SplitLine,
    as_mapping,
    coerce,
    coerce_many,
    require_aware,
)

__all__ = [
    "CODES",
    "DEFAULT_SPLITS",
    "MINOR_UNITS",
    "SECTION",
    "ApprovalOutcome",
    "LineAllocation",
    "Part",
    "Problem",
    "RepTotal",
    "RequestVerdict",
    "SplitOutcome",
    "SplitShare",
    "SplitsPolicy",
    "SplitsSection",
    "add_member",
    "allocate",
    "allocate_minor",
    "decide_approval",
    "default_split",
    "minor_unit",
    "remove_member",
    "split",
    "split_many",
    "validate_request",
    "validate_revenue_split",
]

#: Rule-file codes of this module (errors SR250–SR259, warnings SR340–SR349).
CODES: Mapping[str, str] = MappingProxyType(
    {
        "SR250": "the default revenue split does not total exactly 100",
        "SR251": "the default revenue split has no 'owner' share",
        "SR252": "request.min_share is greater than request.max_share",
        "SR253": "a share bound is out of range (revenue 0–100, overlay 0–1000)",
        "SR254": "invalid approval step (owner, owner_manager, role:NAME or rep:ID)",
        "SR255": "invalid currency code (three capital letters) or unknown default currency",
        "SR256": "a share has more decimal places than revenue.share_precision",
        "SR257": "the same approver appears in two approval steps",
        "SR258": "'owner' is reserved and cannot be a collaborator role",
        "SR259": "a closed (won or lost) stage is listed as eligible for requests",
        "SR340": "a stage id is not defined in the stages section",
        "SR341": "max_collaborators can never be reached with this min_share",
        "SR342": "a default-split role can never be requested (its share always stays with the owner)",
        "SR343": "a required field is listed twice or is always required anyway",
    }
)

#: Minor units (decimal places) of common currencies; extend or override with
#: ``splits.currencies`` in the policy.
MINOR_UNITS: Mapping[str, int] = MappingProxyType(
    {
        "CNY": 2, "USD": 2, "EUR": 2, "GBP": 2, "HKD": 2, "TWD": 2, "SGD": 2, "AUD": 2,
        "CAD": 2, "CHF": 2, "INR": 2, "MYR": 2, "THB": 2,
        "JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0,
        "KWD": 3, "BHD": 3, "OMR": 3, "JOD": 3, "TND": 3, "LYD": 3, "IQD": 3,
    }
)  # fmt: skip

_MAX_EXP = 6
_QUANT: tuple[Decimal, ...] = tuple(Decimal(1).scaleb(-e) for e in range(_MAX_EXP + 1))
_SCALE: tuple[Decimal, ...] = tuple(Decimal(10**e) for e in range(_MAX_EXP + 1))
_HUNDRED = Decimal(100)
_ZERO = Decimal(0)
_MAX_ADJUSTED = 20  # amounts up to 10^21: exact under Decimal's default 28-digit context

# --------------------------------------------------------------------------------------------
# money: minor units and allocation
# --------------------------------------------------------------------------------------------


def minor_unit(currency: str, overrides: Mapping[str, int] | None = None) -> int:
    """Return the number of decimal places of ``currency``'s minor unit.

    Args:
        currency: an ISO 4217 code such as ``"CNY"``.
        overrides: extra or replacement entries (a policy's ``splits.currencies``).

    Returns:
        The minor unit exponent (``2`` for CNY, ``0`` for JPY, ``3`` for KWD).

    Raises:
        RecordError: the currency is unknown.
    """
    if overrides and currency in overrides:
        return overrides[currency]
    exp = MINOR_UNITS.get(currency)
    if exp is None:
        raise RecordError(
            "amount",
            "currency",
            f"unknown currency {currency!r}: add it under splits.currencies (code: decimals)",
        )
    return exp


def _to_decimal(value: Any) -> Decimal | None:
    """A finite ``Decimal`` from a Decimal, int or decimal text; ``None`` for anything else."""
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, bool | float):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str):
        try:
            d = Decimal(value.strip())
        except InvalidOperation:
            return None
        return d if d.is_finite() else None
    return None


def _money(value: Any, record: str, field: str) -> Decimal:
    d = _to_decimal(value)
    if d is None:
        why = (
            "floats are refused (they have already lost cents)" if isinstance(value, float) else ""
        )
        raise RecordError(
            record, field, f"amount must be a decimal string, int or Decimal {why}".rstrip()
        )
    return d


def _to_minor(amount: Decimal, exp: int, currency: str, record: str, field: str) -> int:
    if amount.adjusted() > _MAX_ADJUSTED:
        raise RecordError(record, field, f"amount {amount} is too large")
    scaled = amount * _SCALE[exp]
    units = int(scaled)
    if units != scaled:
        raise RecordError(
            record,
            field,
            f"amount {amount} has more decimal places than {currency} allows ({exp})",
        )
    return units


def _largest_remainder(total: int, weights: Sequence[int], wsum: int) -> list[int]:
    """Allocate ``total`` minor units by integer ``weights`` given in tie-break order."""
    neg = total < 0
    t = -total if neg else total
    parts: list[int] = []
    rems: list[int] = []
    for w in weights:
        q, r = divmod(t * w, wsum)
        parts.append(q)
        rems.append(r)
    left = t - sum(parts)
    if left:
        # sorted(reverse=True) is stable: equal remainders keep tie-break (rep id) order
        for i in sorted(range(len(rems)), key=rems.__getitem__, reverse=True)[:left]:
            parts[i] += 1
    if neg:
        return [-p for p in parts]
    return parts


def _int_weights(values: Sequence[Decimal | int]) -> list[int]:
    """Scale exact non-negative shares to integers with the same ratios."""
    if all(type(v) is int for v in values):
        return list(values)  # type: ignore[arg-type]
    ratios = [v.as_integer_ratio() for v in values]
    den = math.lcm(*(d for _, d in ratios))
    return [n * (den // d) for n, d in ratios]


def _share_items(shares: Any) -> list[tuple[str, Any]]:
    if isinstance(shares, Mapping):
        return list(shares.items())
    if isinstance(shares, str | bytes) or not isinstance(shares, Iterable):
        raise RecordError("shares", "shares", "expected a mapping rep_id -> share")
    out: list[tuple[str, Any]] = []
    for i, item in enumerate(shares):
        if isinstance(item, SplitLine):
            out.append((item.rep_id, item.share))
        elif isinstance(item, Mapping):
            out.append((item.get("rep_id"), item.get("share")))  # type: ignore[arg-type]
        elif isinstance(item, tuple) and len(item) == 2:
            out.append(item)
        else:
            raise RecordError("shares", f"[{i}]", "expected (rep_id, share) pairs")
    return out


def _checked_weights(shares: Any) -> tuple[list[str], list[int]]:
    """Rep ids sorted ascending and their integer weights (validated)."""
    items = _share_items(shares)
    if not items:
        raise RecordError("shares", "shares", "at least one member is needed")
    values: list[Decimal | int] = []
    ids: list[str] = []
    for rep_id, share in items:
        if not isinstance(rep_id, str) or not rep_id:
            raise RecordError(
                "shares", "rep_id", f"a rep id must be a non-empty string: {rep_id!r}"
            )
        if type(share) is int:
            v: Decimal | int = share
        else:
            d = _to_decimal(share)
            if d is None:
                raise RecordError(
                    "shares", rep_id, f"share must be a decimal string, int or Decimal: {share!r}"
                )
            v = d
        if v < 0:
            raise RecordError("shares", rep_id, f"share must not be negative: {share}")
        ids.append(rep_id)
        values.append(v)
    if len(set(ids)) != len(ids):
        raise RecordError("shares", "rep_id", "the same rep appears twice")
    weights = _int_weights(values)
    if not any(weights):
        raise RecordError("shares", "shares", "at least one share must be positive")
    order = sorted(range(len(ids)), key=ids.__getitem__)
    return [ids[i] for i in order], [weights[i] for i in order]


def allocate_minor(total: int, shares: Mapping[str, int | Decimal]) -> dict[str, int]:
    """Allocate an integer number of minor units by shares (largest remainder, ties by rep id).

    Args:
        total: the amount in minor units (may be negative: mirrored).
        shares: rep id → non-negative share (any scale; only the ratios count).

    Returns:
        rep id → minor units, in the order of ``shares``; the values sum to ``total``.

    Raises:
        RecordError: no positive share, a negative share, or a bad rep id.
    """
    if isinstance(total, bool) or not isinstance(total, int):
        raise RecordError("amount", "total", "the total must be an int number of minor units")
    ids, weights = _checked_weights(shares)
    parts = _largest_remainder(total, weights, sum(weights))
    by_id = dict(zip(ids, parts, strict=True))
    return {rep_id: by_id[rep_id] for rep_id, _ in _share_items(shares)}


def allocate(
    amount: Decimal | int | str,
    shares: Mapping[str, Decimal | int | str] | Iterable[Any],
    currency: str,
    *,
    minor_units: Mapping[str, int] | None = None,
) -> dict[str, Decimal]:
    """Split ``amount`` exactly among reps in proportion to their shares.

    The rounding rule: convert to integer minor units; give each rep its exact part rounded
    toward zero; hand the leftover units one each to the largest remainders, ties broken by
    rep id (ascending), never by list position; a negative amount mirrors the positive one.
    The parts sum exactly to ``amount`` and each is within one minor unit of its exact share.

    Examples: ¥99.99 at 75/25 → 74.99 / 25.00; ¥100.00 in thirds → 33.34 / 33.33 / 33.33
    (the extra cent to the smallest rep id); ¥0.01 at 33/67 → 0.00 / 0.01.

    Args:
        amount: a ``Decimal`` (or int, or decimal text; floats are refused).
        shares: rep id → share (percentages or any non-negative weights; only ratios count),
            or a sequence of ``(rep_id, share)`` pairs / ``SplitLine``s.
        currency: the ISO code that fixes the minor unit.
        minor_units: currency → decimals overrides (a policy's ``splits.currencies``).

    Returns:
        rep id → amount (a ``Decimal`` with exactly the currency's decimals), in input order.

    Raises:
        RecordError: a float or malformed amount, an amount finer than the minor unit, an
            unknown currency, a negative share, no positive share, or a duplicate rep id.
    """
    exp = minor_units.get(currency) if minor_units else None
    if exp is None:
        exp = MINOR_UNITS.get(currency)
        if exp is None:
            exp = minor_unit(currency, minor_units)  # raises: unknown currency
    fast = _allocate_fast(amount, shares, exp)
    if fast is not None:
        return fast
    # the careful path: same result, and a RecordError naming the first bad input
    total = _to_minor(_money(amount, "amount", "amount"), exp, currency, "amount", "amount")
    ids, weights = _checked_weights(shares)
    parts = _largest_remainder(total, weights, sum(weights))
    q = _QUANT[exp]
    by_id = {rep_id: Decimal(p) * q for rep_id, p in zip(ids, parts, strict=True)}
    return {rep_id: by_id[rep_id] for rep_id, _ in _share_items(shares)}


_UNIT_LIMIT = 10**22


def _allocate_fast(amount: Any, shares: Any, exp: int) -> dict[str, Decimal] | None:
    """:func:`allocate` for well-formed input (a Decimal amount, a dict of Decimal/int shares).

    Integer arithmetic on minor units (this is the hot path of crediting). Returns ``None``
    whenever anything is unusual, so that the careful path reports it. Exactness: a product
    ``amount × 10^exp`` that Decimal had to round has at least 28 integer digits, so the
    ``_UNIT_LIMIT`` check sends it to the careful path, which refuses it.
    """
    if type(amount) is not Decimal or type(shares) is not dict or not shares:
        return None
    # plain loops: for 1-6 members they beat set-building passes (issuperset(map(...)))
    for rep_id, v in shares.items():
        tv = type(v)
        if (tv is not Decimal and tv is not int) or type(rep_id) is not str or not rep_id:
            return None
    try:
        scaled = amount * _SCALE[exp]
        total = int(scaled)
        if total != scaled or not -_UNIT_LIMIT < total < _UNIT_LIMIT:
            return None
        ratios: list[tuple[int, int]] = []
        den = 1
        for v in shares.values():
            ratio = v.as_integer_ratio()
            if ratio[0] < 0:
                return None
            d = ratio[1]
            if d != 1 and den % d:
                den = math.lcm(den, d)
            ratios.append(ratio)
    except (ValueError, OverflowError):  # NaN, infinity
        return None
    nums = [n for n, _ in ratios] if den == 1 else [n * (den // d) for n, d in ratios]
    wsum = sum(nums)
    if wsum <= 0:
        return None
    unit = _QUANT[exp]
    if len(ratios) == 1 and ratios[0][0] > 0:
        # one member takes everything (``unit * -(-total)`` is ``unit * total``)
        return dict.fromkeys(shares, unit * total)
    t = -total if total < 0 else total
    parts: list[int] = []
    rems: list[int] = []
    for w in nums:
        q, r = divmod(t * w, wsum)
        parts.append(q)
        rems.append(r)
    left = t - sum(parts)
    if left == 1:  # the common case: one leftover unit
        top = max(rems)
        if rems.count(top) == 1:
            parts[rems.index(top)] += 1
        else:  # a tie: the smallest rep id among the largest remainders
            ids = list(shares)
            parts[ids.index(min([r for r, x in zip(ids, rems, strict=True) if x == top]))] += 1
    elif left:
        # largest remainder first; equal remainders by rep id (never by position). A stable
        # sort on the remainder alone picks the same members unless a tie straddles the cut
        # (left < members always), which only the full (remainder, rep id) order settles.
        order = sorted(range(len(rems)), key=rems.__getitem__, reverse=True)
        if rems[order[left - 1]] == rems[order[left]]:
            ids = list(shares)
            ranked = sorted(zip([-x for x in rems], ids, range(len(ids)), strict=True))
            order = [i for _, _, i in ranked]
        for i in order[:left]:
            parts[i] += 1
    if total < 0:
        return {rep_id: unit * -p for rep_id, p in zip(shares, parts, strict=True)}
    return {rep_id: unit * p for rep_id, p in zip(shares, parts, strict=True)}


def _overlay_part(total: int, weight: int, wsum: int) -> int:
    """Round ``total × weight / wsum`` to the nearest int, halves away from zero."""
    neg = total < 0
    t = -total if neg else total
    q, r = divmod(t * weight, wsum)
    if 2 * r >= wsum:
        q += 1
    return -q if neg else q


# --------------------------------------------------------------------------------------------
# split lines: validation and membership
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a split or a request: a stable code, a message and the field."""

    code: str
    message: str
    field: str = ""
    rep_id: str | None = None


def _line_parts(item: Any) -> tuple[Any, Any, str]:
    """``(rep_id, raw share, role)`` of a split line given as a model or a mapping."""
    if isinstance(item, SplitLine):
        return item.rep_id, item.share, item.role
    if isinstance(item, Mapping):
        role = item.get("role")
        return item.get("rep_id"), item.get("share"), role if isinstance(role, str) else ""
    if isinstance(item, BaseModel):
        return _line_parts(item.model_dump())
    return None, None, ""


def _check_lines(
    lines: Sequence[Any], *, upper: Decimal, kind: str
) -> tuple[list[Problem], list[tuple[str, Decimal]]]:
    problems: list[Problem] = []
    parsed: list[tuple[str, Decimal]] = []
    seen: set[str] = set()
    if isinstance(lines, Mapping | str | bytes) or not isinstance(lines, Iterable):
        return [Problem("empty_split", "a split must be a list of lines", "lines")], parsed
    if not lines:
        problems.append(Problem("empty_split", f"the {kind} split has no lines", "lines"))
    for i, item in enumerate(lines):
        rep_id, raw, _ = _line_parts(item)
        at = f"lines[{i}]"
        if not isinstance(rep_id, str) or not rep_id.strip():
            problems.append(Problem("missing_rep_id", f"{at} has no rep id", f"{at}.rep_id"))
            continue
        share = _to_decimal(raw)
        if share is None:
            why = "a float (use a decimal string)" if isinstance(raw, float) else repr(raw)
            problems.append(
                Problem("invalid_share", f"{rep_id}: share is {why}", f"{at}.share", rep_id)
            )
        elif share < 0 or share > upper:
            problems.append(
                Problem(
                    "share_out_of_range",
                    f"{rep_id}: share {share} is outside 0–{upper} %",
                    f"{at}.share",
                    rep_id,
                )
            )
        if rep_id in seen:
            problems.append(
                Problem("duplicate_member", f"{rep_id} appears twice", f"{at}.rep_id", rep_id)
            )
        seen.add(rep_id)
        if share is not None:
            parsed.append((rep_id, share))
    return problems, parsed


def validate_revenue_split(
    lines: Sequence[Mapping[str, Any] | SplitLine],
    *,
    owner_id: str,
    section: SplitsPolicy | None = None,
) -> tuple[Problem, ...]:
    """Check a revenue split: every problem at once; an empty tuple means it is valid.

    Rules: at least one line; each line has a rep id and a share that is a ``Decimal``
    (floats refused) within 0–100 %; no rep twice; the owner holds a line; the shares total
    exactly 100 (exact decimal arithmetic). With ``section``: at most ``revenue.max_members``
    lines and every non-owner share at least ``revenue.min_share``.

    Args:
        lines: split lines (``SplitLine`` or mappings with ``rep_id`` and ``share``).
        owner_id: the record's owner.
        section: the compiled ``splits`` section for the policy's limits (optional).

    Returns:
        The problems, each with a code (``empty_split``, ``missing_rep_id``, ``invalid_share``,
        ``duplicate_member``, ``share_out_of_range``, ``owner_missing``, ``total_not_100``,
        ``too_many_members``, ``share_below_minimum``), a message and the field.
    """
    if isinstance(lines, Mapping | str | bytes) or not isinstance(lines, Sequence) or not lines:
        return (Problem("empty_split", "the revenue split has no lines", "lines"),)
    problems, parsed = _check_lines(lines, upper=_HUNDRED, kind="revenue")
    if owner_id not in {_line_parts(x)[0] for x in lines}:
        problems.append(
            Problem(
                "owner_missing",
                f"the owner {owner_id} must hold a revenue share",
                "lines",
                owner_id,
            )
        )
    if len(parsed) == len(lines):
        total = sum((s for _, s in parsed), _ZERO)
        if total != _HUNDRED:
            problems.append(
                Problem("total_not_100", f"the shares total {total}, not exactly 100", "lines")
            )
    if section is not None:
        if section.revenue_max_members is not None and len(lines) > section.revenue_max_members:
            problems.append(
                Problem(
                    "too_many_members",
                    f"{len(lines)} members; at most {section.revenue_max_members} are allowed",
                    "lines",
                )
            )
        for i, (rep_id, share) in enumerate(parsed):
            if rep_id != owner_id and share < section.revenue_min_share:
                problems.append(
                    Problem(
                        "share_below_minimum",
                        f"{rep_id}: share {share} is below the minimum {section.revenue_min_share}",
                        f"lines[{i}].share",
                        rep_id,
                    )
                )
    return tuple(problems)


def _validate_overlay(lines: Sequence[Any], upper: Decimal) -> tuple[Problem, ...]:
    problems, _ = _check_lines(lines, upper=upper, kind="overlay")
    return tuple(problems)


def _as_lines(lines: Iterable[Any], name: str = "split") -> list[SplitLine]:
    out: list[SplitLine] = []
    for i, item in enumerate(lines):
        rep_id, raw, role = _line_parts(item)
        share = _to_decimal(raw) if raw is not None else None
        if not isinstance(rep_id, str) or not rep_id or (raw is not None and share is None):
            raise RecordError(name, f"[{i}]", "a split line needs a rep_id and a decimal share")
        out.append(SplitLine(rep_id=rep_id, share=share, role=role))
    return out


def add_member(
    lines: Iterable[Mapping[str, Any] | SplitLine],
    rep_id: str,
    share: Decimal | int | str,
    *,
    owner_id: str,
    role: str = "collaborator",
) -> tuple[SplitLine, ...]:
    """Add a member to a revenue split, taking the share from the owner's.

    An empty split means the owner holds 100 %.

    Args:
        lines: the current revenue split.
        rep_id: the new member.
        share: the new member's share in percent.
        owner_id: the record's owner.
        role: the new member's team role.

    Returns:
        The new split (owner first if the owner was added implicitly; otherwise input order
        with the new member last).

    Raises:
        RecordError: the rep is already a member, is the owner, the share is not a positive
            decimal, or the owner's share is smaller than ``share``.
    """
    current = _as_lines(lines) or [SplitLine(rep_id=owner_id, share=_HUNDRED, role="owner")]
    amount = _to_decimal(share)
    if amount is None or amount <= 0:
        raise RecordError("split", "share", f"share must be a positive decimal: {share!r}")
    if rep_id == owner_id or any(x.rep_id == rep_id for x in current):
        raise RecordError("split", "rep_id", f"{rep_id} is already in the split")
    out: list[SplitLine] = []
    found = False
    for line in current:
        if line.rep_id == owner_id:
            found = True
            have = line.share if line.share is not None else _ZERO
            if have < amount:
                raise RecordError(
                    "split", "share", f"the owner holds {have} %, less than the {amount} % asked"
                )
            line = SplitLine(rep_id=line.rep_id, share=have - amount, role=line.role or "owner")
        out.append(line)
    if not found:
        raise RecordError("split", "owner_id", f"the owner {owner_id} holds no line")
    out.append(SplitLine(rep_id=rep_id, share=amount, role=role))
    return tuple(out)


def remove_member(
    lines: Iterable[Mapping[str, Any] | SplitLine], rep_id: str, *, owner_id: str
) -> tuple[SplitLine, ...]:
    """Remove a member from a revenue split; the member's share returns to the owner.

    Args:
        lines: the current revenue split.
        rep_id: the member to remove.
        owner_id: the record's owner (who can never be removed).

    Returns:
        The new split, without ``rep_id``.

    Raises:
        RecordError: ``rep_id`` is the owner, is not in the split, or the owner holds no line.
    """
    current = _as_lines(lines)
    if rep_id == owner_id:
        raise RecordError("split", "rep_id", "the owner cannot be removed from a revenue split")
    gone = [x for x in current if x.rep_id == rep_id]
    if not gone:
        raise RecordError("split", "rep_id", f"{rep_id} is not in the split")
    if not any(x.rep_id == owner_id for x in current):
        raise RecordError("split", "owner_id", f"the owner {owner_id} holds no line")
    back = sum((x.share or _ZERO for x in gone), _ZERO)
    return tuple(
        SplitLine(rep_id=x.rep_id, share=(x.share or _ZERO) + back, role=x.role)
        if x.rep_id == owner_id
        else x
        for x in current
        if x.rep_id != rep_id
    )


# --------------------------------------------------------------------------------------------
# the rule-file section
# --------------------------------------------------------------------------------------------


def _percent(value: Any) -> Any:
    # YAML writes 33.5 as a float; its shortest repr is the decimal the author typed.
    if isinstance(value, bool):
        raise ValueError("a share must be a number, not true/false")
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


Percent = Annotated[Decimal, BeforeValidator(_percent)]


class EligibilityRule(SectionModel):
    """A condition a record must meet for collaboration (roots: record, requester, request, owner)."""

    id: str
    when: Any
    message: str = ""


class FinanceApproval(SectionModel):
    """After close, an approval additionally needs an approver holding this role."""

    require_role: str = Field(min_length=1)


class RequestRules(SectionModel):
    """What a collaboration request must contain and when it may be filed."""

    required_fields: tuple[str, ...] = ("share", "contribution")
    roles: tuple[str, ...] = ("collaborator",)
    kinds: tuple[Literal["revenue", "overlay"], ...] = ("revenue",)
    min_share: Percent = Decimal(0)
    max_share: Percent = Decimal(100)
    max_collaborators: int | None = Field(default=None, ge=0)
    stages: tuple[str, ...] | None = None
    eligible: tuple[EligibilityRule, ...] = ()
    expires_after: str | None = None


class ApprovalRules(SectionModel):
    """Who approves a request, in which order, and what happens after the deal closed."""

    steps: tuple[str | tuple[str, ...], ...] = ("owner",)
    after_close: Literal["refuse"] | FinanceApproval = "refuse"
    allow_self_approval: bool = False
    access: Literal["read", "edit"] = "read"


class RevenueRules(SectionModel):
    """Revenue splits: shares 0–100 % totalling exactly 100."""

    default: dict[str, Percent] = Field(default_factory=lambda: {"owner": Decimal(100)})
    max_members: int | None = Field(default=None, ge=1)
    min_share: Percent = Decimal(0)
    share_precision: int = Field(default=2, ge=0, le=6)


class OverlayRules(SectionModel):
    """Overlay splits: shares 0–1000 % with no total."""

    max_share: Percent = Decimal(1000)


class SplitsSection(SectionModel):
    """The ``splits`` section: collaboration requests, approval, split rules and currencies."""

    currencies: dict[str, int] = Field(default_factory=dict)
    default_currency: str | None = None
    won_stages: tuple[str, ...] = ("won",)
    lost_stages: tuple[str, ...] = ("lost",)
    request: RequestRules = Field(default_factory=RequestRules)
    approval: ApprovalRules = Field(default_factory=ApprovalRules)
    revenue: RevenueRules = Field(default_factory=RevenueRules)
    overlay: OverlayRules = Field(default_factory=OverlayRules)


@dataclass(frozen=True, slots=True)
class _Approver:
    kind: Literal["owner", "owner_manager", "role", "rep"]
    value: str = ""

    def text(self) -> str:
        return f"{self.kind}:{self.value}" if self.value else self.kind


@dataclass(frozen=True, slots=True)
class _Eligibility:
    id: str
    condition: Condition
    ref: RuleRef
    message: str


_CORE_FIELDS: tuple[str, ...] = ("requester_id", "record_id", "role")


@dataclass(frozen=True, slots=True)
class SplitsPolicy:
    """The compiled ``splits`` section (immutable)."""

    minor_units: Mapping[str, int]
    default_currency: str | None
    won_stages: frozenset[str]
    lost_stages: frozenset[str]
    required_fields: tuple[str, ...]
    roles: frozenset[str]
    kinds: frozenset[str]
    min_share: Decimal
    max_share: Decimal
    max_collaborators: int | None
    stages: frozenset[str] | None
    eligible: tuple[_Eligibility, ...]
    expires_after: Duration | None
    steps: tuple[tuple[_Approver, ...], ...]
    finance_role: str | None
    allow_self_approval: bool
    access: str
    default_shares: tuple[tuple[str, Decimal], ...]
    revenue_max_members: int | None
    revenue_min_share: Decimal
    share_precision: int
    overlay_max_share: Decimal
    calendar: Calendar
    refs: Mapping[str, RuleRef]

    @property
    def closed_stages(self) -> frozenset[str]:
        """Stages in which a deal is closed (won or lost)."""
        return self.won_stages | self.lost_stages

    def currency_exponent(self, currency: str) -> int:
        """Decimal places of ``currency`` under this policy (``RecordError`` if unknown)."""
        return minor_unit(currency, self.minor_units)


def _parse_step(text: str) -> _Approver | None:
    if text in ("owner", "owner_manager"):
        return _Approver(text)  # type: ignore[arg-type]
    kind, sep, value = text.partition(":")
    if sep and kind in ("role", "rep") and value.strip():
        return _Approver(kind, value.strip())  # type: ignore[arg-type]
    return None


def _decimals(d: Decimal) -> int:
    exp = d.as_tuple().exponent
    return -exp if isinstance(exp, int) and exp < 0 else 0


def _stage_ids(model: Any) -> set[str] | None:
    """Best-effort stage ids of the stages section (``None`` when unknown)."""
    stages = getattr(model, "stages", None) if model is not None else None
    if stages is None:
        return None
    ids: set[str] = set()
    items = stages.items() if isinstance(stages, Mapping) else enumerate(stages)
    for key, value in items:
        ident = getattr(value, "id", None)
        if isinstance(ident, str):
            ids.add(ident)
        elif isinstance(key, str):
            ids.add(key)
    return ids or None


def _compile(model: SplitsSection, ctx: CompileContext) -> SplitsPolicy:
    base = ("splits",)
    minor = dict(MINOR_UNITS)
    for code, exp in model.currencies.items():
        if len(code) != 3 or not code.isalpha() or not code.isupper():
            ctx.error(
                "SR255",
                f"'{code}' is not a currency code",
                (*base, "currencies", code),
                key=True,
                hint="use ISO 4217 codes such as CNY",
            )
        if not 0 <= exp <= _MAX_EXP:
            ctx.error(
                "SR255",
                f"{code}: {exp} decimal places is out of range 0–{_MAX_EXP}",
                (*base, "currencies", code),
            )
        else:
            minor[code] = exp
    if model.default_currency is not None and model.default_currency not in minor:
        ctx.error(
            "SR255",
            f"unknown default currency '{model.default_currency}'",
            (*base, "default_currency"),
            hint=did_you_mean(model.default_currency, minor) or "add it under currencies",
        )

    req = model.request
    rp = (*base, "request")
    for name in ("min_share", "max_share"):
        value = getattr(req, name)
        top = Decimal(1000) if "overlay" in req.kinds else _HUNDRED
        if value < 0 or value > top:
            ctx.error("SR253", f"request.{name} {value} is outside 0–{top}", (*rp, name))
    if req.min_share > req.max_share:
        ctx.error(
            "SR252", f"min_share {req.min_share} > max_share {req.max_share}", (*rp, "min_share")
        )
    seen_fields: set[str] = set()
    for i, name in enumerate(req.required_fields):
        if name in seen_fields or name in _CORE_FIELDS:
            ctx.warn(
                "SR343",
                f"required field '{name}' is listed twice or always required",
                (*rp, "required_fields", i),
            )
        seen_fields.add(name)
    for i, role in enumerate(req.roles):
        if role == "owner":
            ctx.error("SR258", "'owner' cannot be a collaborator role", (*rp, "roles", i))
    if (
        req.max_collaborators
        and req.min_share > 0
        and "revenue" in req.kinds
        and req.max_collaborators * req.min_share > _HUNDRED
    ):
        ctx.warn(
            "SR341",
            f"{req.max_collaborators} collaborators × {req.min_share} % exceed 100 %",
            (*rp, "max_collaborators"),
        )
    closed = set(model.won_stages) | set(model.lost_stages)
    known = _stage_ids(ctx.model("stages"))
    for i, stage in enumerate(req.stages or ()):
        if stage in closed:
            ctx.error(
                "SR259", f"stage '{stage}' is closed and cannot take requests", (*rp, "stages", i)
            )
        elif known is not None and stage not in known:
            ctx.warn(
                "SR340",
                f"unknown stage '{stage}'",
                (*rp, "stages", i),
                hint=did_you_mean(stage, known),
            )
    if known is not None:
        for key in ("won_stages", "lost_stages"):
            for i, stage in enumerate(getattr(model, key)):
                if stage not in known:
                    ctx.warn(
                        "SR340",
                        f"unknown stage '{stage}'",
                        (*base, key, i),
                        hint=did_you_mean(stage, known),
                    )
    eligible: list[_Eligibility] = []
    ctx.check_unique_ids(
        ((r.id, (*rp, "eligible", i)) for i, r in enumerate(req.eligible)), "eligibility rule"
    )
    for i, rule in enumerate(req.eligible):
        path = (*rp, "eligible", i)
        cond = ctx.condition(
            rule.when,
            (*path, "when"),
            roots=frozenset({"record", "requester", "request", "owner"}),
            rule_id=rule.id,
        )
        eligible.append(_Eligibility(rule.id, cond, ctx.rule_ref(rule.id, path), rule.message))
    expires = ctx.duration(req.expires_after, (*rp, "expires_after")) if req.expires_after else None

    ap = (*base, "approval")
    steps: list[tuple[_Approver, ...]] = []
    seen_approvers: set[_Approver] = set()
    if not model.approval.steps:
        ctx.error("SR254", "at least one approval step is needed", (*ap, "steps"))
    for i, step in enumerate(model.approval.steps):
        texts = (step,) if isinstance(step, str) else step
        parsed: list[_Approver] = []
        if not texts:
            ctx.error("SR254", "an approval step names nobody", (*ap, "steps", i))
        for j, text in enumerate(texts):
            at: tuple[str | int, ...] = (
                (*ap, "steps", i) if isinstance(step, str) else (*ap, "steps", i, j)
            )
            approver = _parse_step(text)
            if approver is None:
                ctx.error(
                    "SR254",
                    f"invalid approver '{text}'",
                    at,
                    hint=did_you_mean(text, ["owner", "owner_manager"])
                    or "use owner, owner_manager, role:NAME or rep:ID",
                )
                continue
            if approver in seen_approvers:
                ctx.error("SR257", f"approver '{text}' appears in two steps", at)
            seen_approvers.add(approver)
            parsed.append(approver)
        steps.append(tuple(parsed))
    after = model.approval.after_close
    finance = after.require_role if isinstance(after, FinanceApproval) else None

    rv = (*base, "revenue")
    precision = model.revenue.share_precision
    default = model.revenue.default
    if "owner" not in default:
        ctx.error(
            "SR251",
            "the default split needs an 'owner' share",
            (*rv, "default"),
            hint="e.g. default: {owner: 70, collaborator: 30}",
        )
    total = sum(default.values(), _ZERO)
    if default and total != _HUNDRED:
        ctx.error("SR250", f"the default split totals {total}, not exactly 100", (*rv, "default"))
    for role, share in default.items():
        if share < 0 or share > _HUNDRED:
            ctx.error(
                "SR253",
                f"default share of '{role}' {share} is outside 0–100",
                (*rv, "default", role),
            )
        if _decimals(share) > precision:
            ctx.error(
                "SR256",
                f"default share {share} has more than {precision} decimals",
                (*rv, "default", role),
            )
        if role != "owner" and role not in req.roles:
            ctx.warn(
                "SR342",
                f"role '{role}' is not a request role; its share stays with the owner",
                (*rv, "default", role),
                key=True,
            )
    for name, value in (("min_share", req.min_share), ("max_share", req.max_share)):
        if _decimals(value) > precision:
            ctx.error(
                "SR256", f"request.{name} {value} has more than {precision} decimals", (*rp, name)
            )
    if not 0 <= model.revenue.min_share <= _HUNDRED:
        ctx.error(
            "SR253",
            f"revenue.min_share {model.revenue.min_share} is outside 0–100",
            (*rv, "min_share"),
        )
    if not 0 <= model.overlay.max_share <= 1000:
        ctx.error(
            "SR253",
            f"overlay.max_share {model.overlay.max_share} is outside 0–1000",
            (*base, "overlay", "max_share"),
        )

    refs = {
        "required_fields": ctx.rule_ref("request.required_fields", (*rp, "required_fields")),
        "roles": ctx.rule_ref("request.roles", (*rp, "roles")),
        "kinds": ctx.rule_ref("request.kinds", (*rp, "kinds")),
        "min_share": ctx.rule_ref("request.min_share", (*rp, "min_share")),
        "max_share": ctx.rule_ref("request.max_share", (*rp, "max_share")),
        "max_collaborators": ctx.rule_ref("request.max_collaborators", (*rp, "max_collaborators")),
        "stages": ctx.rule_ref("request.stages", (*rp, "stages")),
        "steps": ctx.rule_ref("approval.steps", (*ap, "steps")),
        "after_close": ctx.rule_ref("approval.after_close", (*ap, "after_close")),
        "default": ctx.rule_ref("revenue.default", (*rv, "default")),
        "revenue": ctx.rule_ref("revenue", rv),
    }
    return SplitsPolicy(
        minor_units=MappingProxyType(minor),
        default_currency=model.default_currency,
        won_stages=frozenset(model.won_stages),
        lost_stages=frozenset(model.lost_stages),
        required_fields=tuple(
            dict.fromkeys(f for f in req.required_fields if f not in _CORE_FIELDS)
        ),
        roles=frozenset(req.roles),
        kinds=frozenset(req.kinds),
        min_share=req.min_share,
        max_share=req.max_share,
        max_collaborators=req.max_collaborators,
        stages=frozenset(req.stages) if req.stages is not None else None,
        eligible=tuple(eligible),
        expires_after=expires,
        steps=tuple(steps),
        finance_role=finance,
        allow_self_approval=model.approval.allow_self_approval,
        access=model.approval.access,
        default_shares=tuple(default.items()),
        revenue_max_members=model.revenue.max_members,
        revenue_min_share=model.revenue.min_share,
        share_precision=precision,
        overlay_max_share=model.overlay.max_share,
        calendar=ctx.calendar,
        refs=MappingProxyType(refs),
    )


def _default_policy() -> SplitsPolicy:
    return _compile(SplitsSection(), CompileContext(Marks(), {}, DEFAULT_CALENDAR))


#: The built-in defaults (used when a Policy has no ``splits`` section).
DEFAULT_SPLITS: SplitsPolicy = _default_policy()


def _resolve(policy: Any) -> tuple[SplitsPolicy, str]:
    if isinstance(policy, SplitsPolicy):
        return policy, ""
    if policy is None:
        return DEFAULT_SPLITS, ""
    has = getattr(policy, "has", None)
    if callable(has) and not has("splits"):
        return DEFAULT_SPLITS, str(getattr(policy, "digest", ""))
    get = getattr(policy, "section", None)
    section = get("splits") if callable(get) else None
    if not isinstance(section, SplitsPolicy):
        raise RecordError("policy", "splits", "the policy's splits section is not compiled")
    return section, str(getattr(policy, "digest", ""))


# --------------------------------------------------------------------------------------------
# default split by role
# --------------------------------------------------------------------------------------------


def default_split(
    policy: Any, members: Iterable[Mapping[str, Any] | SplitLine], *, owner_id: str
) -> tuple[tuple[SplitLine, ...], tuple[Problem, ...]]:
    """Give shares to a team from the policy's default split by role.

    Each role's percentage is divided equally among the members holding it (by largest
    remainder at ``revenue.share_precision`` decimals, ties by rep id); the owner always holds
    the ``owner`` share; the share of a role nobody holds goes to the owner.

    Args:
        policy: a ``Policy`` or a compiled ``SplitsPolicy``.
        members: the team (``rep_id`` and ``role``; shares are ignored).
        owner_id: the record's owner.

    Returns:
        ``(lines, problems)``: the split (owner first) and ``no_default_share`` problems for
        members whose role has no default share.
    """
    sec, _ = _resolve(policy)
    table = dict(sec.default_shares)
    by_role: dict[str, list[str]] = {}
    problems: list[Problem] = []
    order: list[str] = [owner_id]
    roles: dict[str, str] = {owner_id: "owner"}
    for i, item in enumerate(members):
        rep_id, _, role = _line_parts(item)
        if not isinstance(rep_id, str) or not rep_id.strip():
            problems.append(
                Problem("missing_rep_id", f"members[{i}] has no rep id", f"members[{i}].rep_id")
            )
            continue
        if rep_id == owner_id:
            continue
        if rep_id in roles:
            problems.append(
                Problem(
                    "duplicate_member", f"{rep_id} appears twice", f"members[{i}].rep_id", rep_id
                )
            )
            continue
        if role == "owner" or role not in table:
            problems.append(
                Problem(
                    "no_default_share",
                    f"{rep_id}: role {role!r} has no default share",
                    f"members[{i}].role",
                    rep_id,
                )
            )
            continue
        by_role.setdefault(role, []).append(rep_id)
        roles[rep_id] = role
        order.append(rep_id)
    unit = _QUANT[sec.share_precision]
    shares: dict[str, Decimal] = {owner_id: table.get("owner", _ZERO)}
    for role, pct in table.items():
        if role == "owner":
            continue
        holders = by_role.get(role)
        if not holders:
            shares[owner_id] += pct
            continue
        units = _to_minor(pct, sec.share_precision, "%", "policy", "revenue.default")
        parts = allocate_minor(units, dict.fromkeys(holders, 1))
        for rep_id, p in parts.items():
            shares[rep_id] = Decimal(p) * unit
    lines = tuple(SplitLine(rep_id=r, share=shares[r], role=roles[r]) for r in order)
    return lines, tuple(problems)


# --------------------------------------------------------------------------------------------
# outcomes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestVerdict:
    """Whether a collaboration request may be submitted, with every problem found."""

    submittable: bool
    request_id: str
    record_id: str | None = None
    requester_id: str | None = None
    role: str | None = None
    share: Decimal | None = None
    kind: str = "revenue"
    problems: tuple[Problem, ...] = ()
    next_approvers: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line: submittable, or refused with the problem codes."""
        if self.submittable:
            who = ", ".join(self.next_approvers) or "nobody"
            return f"request {self.request_id} submittable (next approver: {who})"
        codes = ", ".join(dict.fromkeys(p.code for p in self.problems))
        return f"request {self.request_id} refused ({codes})"


@dataclass(frozen=True, slots=True)
class SplitShare:
    """A member's share in a split (percent) and team role."""

    rep_id: str
    share: Decimal
    role: str = ""


@dataclass(frozen=True, slots=True)
class ApprovalOutcome:
    """What an approval action did to a collaboration request."""

    request_id: str
    action: str
    accepted: bool
    status: str
    previous_status: str
    step: int
    steps_total: int
    next_approvers: tuple[str, ...] = ()
    split: tuple[SplitShare, ...] = ()

    def summary(self) -> str:
        """One line: the action, whether it was accepted, and the resulting status."""
        verb = "accepted" if self.accepted else "refused"
        nxt = f", next: {', '.join(self.next_approvers)}" if self.next_approvers else ""
        return f"{self.action} {verb}: request {self.request_id} {self.status}{nxt}"


@dataclass(frozen=True, slots=True)
class Part:
    """One rep's part of one deal line."""

    rep_id: str
    share: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class LineAllocation:
    """How one deal line's amount was allocated."""

    line_id: str
    currency: str
    amount: Decimal
    parts: tuple[Part, ...]


@dataclass(frozen=True, slots=True)
class RepTotal:
    """A rep's total credit in one currency."""

    rep_id: str
    currency: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class SplitOutcome:
    """The credit of a deal: who gets what, line by line and in total per currency.

    ``status`` is ``credited`` (won and valid), ``open`` (not won yet: shares only),
    ``lost`` (nobody is credited) or ``invalid`` (see ``problems``).
    """

    deal_id: str
    kind: str
    status: Literal["credited", "open", "lost", "invalid"]
    shares: tuple[SplitShare, ...] = ()
    lines: tuple[LineAllocation, ...] = ()
    totals: tuple[RepTotal, ...] = ()
    problems: tuple[Problem, ...] = ()

    @property
    def credited(self) -> bool:
        """Whether credit was allocated."""
        return self.status == "credited"

    def summary(self) -> str:
        """One line: the status and each rep's totals."""
        if self.status != "credited":
            codes = ", ".join(dict.fromkeys(p.code for p in self.problems))
            return f"{self.kind} split of {self.deal_id}: {self.status}" + (
                f" ({codes})" if codes else ""
            )
        parts = ", ".join(f"{t.rep_id} {t.amount} {t.currency}" for t in self.totals)
        return f"{self.kind} split of {self.deal_id}: {parts}"


# --------------------------------------------------------------------------------------------
# collaboration requests
# --------------------------------------------------------------------------------------------


def _filled(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, list | tuple | dict | set | frozenset):
        return bool(value)
    return True


def _field_value(request: CollaborationRequest, name: str) -> Any:
    data = as_mapping(request)
    node: Any = data
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _targets(approvers: Sequence[_Approver], owner_id: str, owner: Rep | None) -> tuple[str, ...]:
    out: list[str] = []
    for a in approvers:
        if a.kind == "owner":
            out.append(f"rep:{owner_id}")
        elif a.kind == "owner_manager":
            if owner is not None and owner.id == owner_id and owner.manager_id:
                out.append(f"rep:{owner.manager_id}")
            else:
                out.append(f"manager_of:{owner_id}")
        elif a.kind == "role":
            out.append(f"role:{a.value}")
        else:
            out.append(f"rep:{a.value}")
    return tuple(dict.fromkeys(out))


def _current_split(record: SplitDeal) -> tuple[SplitLine, ...]:
    if record.split:
        return record.split
    if record.owner_id:
        return (SplitLine(rep_id=record.owner_id, share=_HUNDRED, role="owner"),)
    return ()


def _decision_ctx(
    record: SplitDeal, requester: Rep, request: CollaborationRequest, owner: Rep | None
) -> dict[str, Any]:
    return {
        "record": as_mapping(record),
        "requester": as_mapping(requester),
        "request": as_mapping(request),
        "owner": as_mapping(owner) if owner is not None else {},
    }


def validate_request(
    policy: Any,
    request: Mapping[str, Any] | CollaborationRequest,
    *,
    record: Mapping[str, Any] | SplitDeal,
    requester: Mapping[str, Any] | Rep,
    existing: Iterable[Mapping[str, Any] | CollaborationState] = (),
    owner: Mapping[str, Any] | Rep | None = None,
    now: datetime,
    explain: bool = False,
) -> Decision[RequestVerdict]:
    """Decide whether a collaboration request may be submitted; report every problem at once.

    Checks, all of them every time: the always-required fields (``requester_id``,
    ``record_id``, ``role``) and the policy's ``request.required_fields`` (``share`` and
    ``contribution`` by default, custom fields allowed) are filled; the ids match the records;
    the share is a decimal within ``request.min_share``–``max_share`` with at most
    ``revenue.share_precision`` decimals and (revenue) no more than the owner still holds,
    counting other pending requests; the role and kind are allowed; the requester is active,
    not the owner, not already in the split, has no pending or approved request on the record;
    the record is owned, open, in an eligible stage and meets every ``request.eligible`` rule;
    the number of collaborators (members + pending requests) is below ``max_collaborators``.

    Args:
        policy: a ``Policy`` or a compiled ``SplitsPolicy``.
        request: the filled-in form (``CollaborationRequest`` or a mapping with ``id``).
        record: the record asked about (``SplitDeal``: ``owner_id``, ``stage``, ``split`` …).
        requester: the rep filing the request.
        existing: other requests on the record (persisted ``CollaborationState``s).
        owner: the owner's ``Rep`` (to name the owner's manager as the next approver).
        now: the current time (timezone-aware).
        explain: build a trace.

    Returns:
        A decision whose outcome is a :class:`RequestVerdict`. When submittable, ``state`` is
        the request's initial ``CollaborationState`` (status ``submitted``), and the effects
        notify the first approver(s), audit the submission and ask to check again at expiry.

    Raises:
        RecordError: a naive ``now`` or a malformed record (not a missing form field).
    """
    sec, digest = _resolve(policy)
    now = require_aware(now)
    req = coerce(CollaborationRequest, request, "request")
    deal = coerce(SplitDeal, record, "record")
    who = coerce(Rep, requester, "requester")
    boss = coerce(Rep, owner, "owner") if owner is not None else None
    others = tuple(
        o for o in coerce_many(CollaborationState, existing, "existing") if o.record_id == deal.id
    )
    trace = TraceBuilder() if explain else None
    problems: list[Problem] = []
    reasons_extra: dict[int, RuleRef] = {}
    issues: list[RuleIssue] = []

    def add(code: str, message: str, field: str = "", ref: str | RuleRef | None = None) -> None:
        problems.append(Problem(code, message, field))
        rr = sec.refs.get(ref) if isinstance(ref, str) else ref
        if rr is not None:
            reasons_extra[len(problems) - 1] = rr
        if trace is not None:
            trace.add(TraceStatus.SKIPPED, f"{code}: {message}", rr)

    # -- required fields ----------------------------------------------------------------
    for name in _CORE_FIELDS + sec.required_fields:
        if not _filled(_field_value(req, name)):
            add("missing_field", f"'{name}' is required", name, "required_fields")
    requester_id = req.requester_id if isinstance(req.requester_id, str) else None
    record_id = req.record_id if isinstance(req.record_id, str) else None
    if req.requester_id is not None and requester_id is None:
        add("invalid_field", "requester_id must be a string", "requester_id")
    if req.record_id is not None and record_id is None:
        add("invalid_field", "record_id must be a string", "record_id")
    if requester_id and requester_id != who.id:
        add(
            "requester_mismatch",
            f"the form names {requester_id}, the requester is {who.id}",
            "requester_id",
        )
    if record_id and record_id != deal.id:
        add("record_mismatch", f"the form names {record_id}, the record is {deal.id}", "record_id")
    owner_id = deal.owner_id
    if not owner_id:
        add("no_owner", f"record {deal.id} has no owner: claim it instead", "owner_id")
    elif _filled(req.owner_id) and req.owner_id != owner_id:
        add(
            "owner_changed",
            f"the form names owner {req.owner_id}, the owner is now {owner_id}",
            "owner_id",
        )

    kind = req.kind if _filled(req.kind) else "revenue"
    if kind not in ("revenue", "overlay"):
        add("invalid_field", f"kind must be revenue or overlay, not {kind!r}", "kind")
    elif kind not in sec.kinds:
        add("kind_not_allowed", f"{kind} requests are not allowed", "kind", "kinds")
    role = req.role if isinstance(req.role, str) and req.role.strip() else None
    if req.role is not None and not isinstance(req.role, str):
        add("invalid_field", "role must be a string", "role")
    elif role is not None and role not in sec.roles:
        add("role_not_allowed", f"role {role!r} is not one of {sorted(sec.roles)}", "role", "roles")

    share: Decimal | None = None
    if req.share is not None:
        share = _to_decimal(req.share)
        if share is None:
            why = (
                "a float (use a decimal string)"
                if isinstance(req.share, float)
                else repr(req.share)
            )
            add("invalid_field", f"share is {why}", "share")
        elif share <= 0:
            add("invalid_field", f"share must be positive, not {share}", "share")
            share = None
        elif _decimals(share) > sec.share_precision:
            add(
                "invalid_field",
                f"share {share} has more than {sec.share_precision} decimals",
                "share",
            )
            share = None
    elif "share" not in sec.required_fields:
        share = dict(sec.default_shares).get(role) if role is not None else None
        if share is None and role is not None:
            add(
                "missing_field",
                f"'share' is required: role {role!r} has no default share",
                "share",
                "default",
            )
    if share is not None:
        if share < sec.min_share:
            add(
                "share_below_minimum",
                f"share {share} is below the minimum {sec.min_share}",
                "share",
                "min_share",
            )
        if share > sec.max_share:
            add(
                "share_above_maximum",
                f"share {share} is above the maximum {sec.max_share}",
                "share",
                "max_share",
            )
        if kind == "revenue" and owner_id:
            held = sum(
                (x.share or _ZERO for x in _current_split(deal) if x.rep_id == owner_id), _ZERO
            )
            pending = sum(
                (
                    o.share
                    for o in others
                    if o.status == "submitted" and o.kind == "revenue" and o.request_id != req.id
                ),
                _ZERO,
            )
            if share > held - pending:
                add(
                    "share_exceeds_owner",
                    f"the owner has {held - pending} % left to give, {share} % asked",
                    "share",
                )

    # -- eligibility ----------------------------------------------------------------------
    if not who.active:
        add("requester_inactive", f"{who.id} is not active", "requester_id")
    if owner_id and who.id == owner_id:
        add("own_record", "you own this record: no collaboration request is needed", "requester_id")
    members = {x.rep_id for x in (*deal.split, *deal.overlay)}
    if who.id in members and who.id != owner_id:
        add("already_member", f"{who.id} is already in the split", "requester_id")
    if any(
        o.requester_id == who.id
        and o.status in ("submitted", "approved")
        and o.request_id != req.id
        for o in others
    ):
        add("duplicate_request", f"{who.id} already has a request on this record", "requester_id")
    if sec.max_collaborators is not None:
        team = {m for m in members if m != owner_id}
        team |= {
            o.requester_id for o in others if o.status == "submitted" and o.request_id != req.id
        }
        team.discard(who.id)
        if len(team) >= sec.max_collaborators:
            add(
                "too_many_collaborators",
                f"{len(team)} collaborators already (at most {sec.max_collaborators})",
                "record_id",
                "max_collaborators",
            )
    if deal.stage is not None and deal.stage in sec.closed_stages:
        add("record_closed", f"the record is closed ({deal.stage})", "record_id", "stages")
    elif sec.stages is not None:
        if deal.stage is None:
            issues.append(
                RuleIssue(
                    "missing_field",
                    "record.stage is missing",
                    "request.stages",
                    sec.refs["stages"].location,
                    "record.stage",
                )
            )
            add("stage_not_eligible", "the record's stage is unknown", "record_id", "stages")
        elif deal.stage not in sec.stages:
            add(
                "stage_not_eligible",
                f"stage {deal.stage!r} takes no requests",
                "record_id",
                "stages",
            )
    if sec.eligible:
        cctx = _decision_ctx(deal, who, req, boss)
        for rule in sec.eligible:
            result = rule.condition(cctx)
            if result is True:
                if trace is not None:
                    trace.add(TraceStatus.MATCHED, "eligible", rule.ref)
                continue
            why = rule.message or f"the record does not meet '{rule.id}'"
            if result is None:
                for code, field, msg in rule.condition.explain(cctx).issues:
                    issues.append(RuleIssue(code, msg, rule.id, rule.ref.location, field))
            elif trace is not None:
                trace.add(TraceStatus.NOTE, rule.condition.explain(cctx).render(), rule.ref)
            add("not_eligible", why, "record_id", rule.ref)

    ok = not problems
    request_id = req.id
    nxt: tuple[str, ...] = ()
    effects: list[Effect] = []
    state: dict[str, Any] = {}
    next_check: datetime | None = None
    reasons: list[Reason] = []
    complete = bool(owner_id and role is not None and share is not None and requester_id)
    if ok and not complete:  # pragma: no cover - defensive: each gap above adds a problem
        add("invalid_field", "the request is incomplete", "")
        ok = False
    if ok and owner_id and role is not None and share is not None and requester_id:
        nxt = _targets(_steps(sec, deal)[0], owner_id, boss) if sec.steps else ()
        expires = sec.calendar.add(now, sec.expires_after) if sec.expires_after else None
        state = CollaborationState(
            request_id=request_id,
            record_id=deal.id,
            requester_id=who.id,
            owner_id=owner_id,
            role=role,
            share=share,
            kind=kind,
            status="submitted",
            step=0,
            submitted_at=now,
            expires_at=expires,
        ).model_dump(mode="json")
        target = f"opportunity:{deal.id}"
        for t in nxt:
            effects.append(
                Effect(
                    "notify",
                    t,
                    f"notify:{t}:{request_id}:0",
                    {
                        "message": f"collaboration request {request_id} from {who.id} awaits approval",
                        "record": target,
                        "template": "collaboration_request",
                    },
                )
            )
        effects.append(
            Effect(
                "audit",
                target,
                f"audit:{target}:{request_id}:submitted",
                {
                    "action": "collaboration_submitted",
                    "actor": who.id,
                    "reason": f"{role} {share} % ({kind})",
                },
            )
        )
        if expires is not None:
            effects.append(
                Effect(
                    "check_again",
                    target,
                    f"check_again:{target}:{request_id}:{expires.isoformat()}",
                    {"at": expires.isoformat()},
                )
            )
            next_check = expires
        reasons.append(Reason("submittable", "every required field is filled and valid"))
    for i, p in enumerate(problems):
        rr = reasons_extra.get(i)
        reasons.append(
            Reason(
                p.code,
                p.message,
                rr.id if rr else None,
                rr.location if rr else None,
                {"field": p.field},
            )
        )
    verdict = RequestVerdict(
        submittable=ok,
        request_id=request_id,
        record_id=deal.id,
        requester_id=who.id,
        role=role,
        share=share,
        kind=kind,
        problems=tuple(problems),
        next_approvers=nxt,
    )
    pending_ids = sorted(o.request_id for o in others if o.status == "submitted")
    assumptions = (
        Assumption(f"opportunity:{deal.id}.owner_id", owner_id, "the owner has not changed"),
        Assumption(f"opportunity:{deal.id}.stage", deal.stage, "the stage has not changed"),
        Assumption(
            f"opportunity:{deal.id}.pending_collaboration_requests",
            pending_ids,
            "no other request was filed meanwhile (shares and the collaborator cap count them)",
        ),
    )
    return Decision(
        kind="collaboration_request",
        outcome=verdict,
        reasons=tuple(reasons),
        effects=tuple(effects),
        assumptions=assumptions if ok else (),
        state=state,
        next_check_at=next_check,
        errors=tuple(issues),
        trace=trace.build() if trace is not None else None,
        policy_digest=digest,
    )


# --------------------------------------------------------------------------------------------
# approval flow
# --------------------------------------------------------------------------------------------

Action = Literal["approve", "reject", "withdraw", "expire"]
_ACTIONS = ("approve", "reject", "withdraw", "expire")


def _steps(sec: SplitsPolicy, deal: SplitDeal) -> tuple[tuple[_Approver, ...], ...]:
    """The approval steps for ``deal`` now: a closed deal adds the finance step (if any)."""
    steps = sec.steps
    if deal.stage in sec.closed_stages and sec.finance_role is not None:
        fin = _Approver("role", sec.finance_role)
        if not steps or steps[-1] != (fin,):
            steps = (*steps, (fin,))
    return steps


def _may_act(a: _Approver, actor: Rep, deal: SplitDeal, owner: Rep | None) -> bool | None:
    if a.kind == "owner":
        return actor.id == deal.owner_id
    if a.kind == "owner_manager":
        if owner is None or owner.id != deal.owner_id:
            return None
        return owner.manager_id is not None and actor.id == owner.manager_id
    if a.kind == "role":
        return a.value in actor.roles
    return actor.id == a.value


def decide_approval(
    policy: Any,
    state: Mapping[str, Any] | CollaborationState,
    action: str,
    *,
    actor: Mapping[str, Any] | Rep | None,
    record: Mapping[str, Any] | SplitDeal,
    owner: Mapping[str, Any] | Rep | None = None,
    now: datetime,
    explain: bool = False,
) -> Decision[ApprovalOutcome]:
    """Decide one action on a submitted collaboration request (a pure state machine).

    States: ``submitted`` → ``approved`` | ``rejected`` | ``withdrawn`` | ``expired`` (final).
    ``approve``/``reject`` are for the current step's approver (``owner``, ``owner_manager``,
    ``role:NAME``, ``rep:ID`` — from ``approval.steps``, in order; one step may list several
    alternatives); nobody approves a step twice in a row nor their own request (unless
    ``allow_self_approval``). ``withdraw`` is for the requester. ``expire`` succeeds once
    ``expires_at`` has passed; any action after that time expires the request instead.
    A closed deal follows ``approval.after_close``: ``refuse`` refuses approval; a
    ``require_role`` adds a final step for that role, and the rebooked credit is audited.
    The final approval adds the requester to the record's team, shares access and records
    the agreed split (the requester's share taken from the owner's).

    Args:
        policy: a ``Policy`` or a compiled ``SplitsPolicy``.
        state: the request's persisted ``CollaborationState``.
        action: ``approve``, ``reject``, ``withdraw`` or ``expire``.
        actor: the rep acting (``None`` for the system, e.g. ``expire``).
        record: the record as it is now (owner, stage, current split).
        owner: the owner's ``Rep`` (needed for an ``owner_manager`` step).
        now: the current time (timezone-aware).
        explain: build a trace.

    Returns:
        A decision whose outcome is an :class:`ApprovalOutcome`; ``state`` is the new state
        (unchanged when refused, except that an overdue request becomes ``expired``).

    Raises:
        RecordError: a naive ``now``, an unknown action, or malformed records.
    """
    sec, digest = _resolve(policy)
    now = require_aware(now)
    st = coerce(CollaborationState, state, "state")
    deal = coerce(SplitDeal, record, "record")
    who = coerce(Rep, actor, "actor") if actor is not None else None
    boss = coerce(Rep, owner, "owner") if owner is not None else None
    if action not in _ACTIONS:
        raise RecordError("request", "action", f"unknown action {action!r} (one of {_ACTIONS})")
    if deal.id != st.record_id:
        raise RecordError("record", "id", f"the request is about {st.record_id}, not {deal.id}")
    trace = TraceBuilder() if explain else None
    steps = _steps(sec, deal)
    target = f"opportunity:{deal.id}"
    rid = st.request_id
    actor_id = who.id if who is not None else "system"
    reasons: list[Reason] = []
    effects: list[Effect] = []
    issues: list[RuleIssue] = []
    new = st
    accepted = False
    split_lines: tuple[SplitShare, ...] = ()

    def refuse(code: str, message: str, ref: RuleRef | None = None) -> None:
        reasons.append(
            Reason(code, message, ref.id if ref else None, ref.location if ref else None)
        )
        if trace is not None:
            trace.add(TraceStatus.SKIPPED, f"{code}: {message}", ref)

    def audit(what: str, why: str, extra: Mapping[str, Any] | None = None) -> None:
        params = {
            "action": what,
            "actor": actor_id,
            "reason": why,
            "request_id": rid,
            **(extra or {}),
        }
        effects.append(Effect("audit", target, f"audit:{target}:{rid}:{what}:{new.step}", params))

    def notify(t: str, message: str, key: str) -> None:
        effects.append(
            Effect(
                "notify",
                t,
                f"notify:{t}:{rid}:{key}",
                {
                    "message": message,
                    "record": target,
                    "template": "collaboration_" + key.split(":")[0],
                },
            )
        )

    overdue = st.expires_at is not None and now >= st.expires_at
    if st.status != "submitted":
        refuse("not_pending", f"the request is already {st.status}")
    elif overdue:
        new = st.model_copy(update={"status": "expired"})
        accepted = action == "expire"
        if accepted:
            reasons.append(Reason("expired", f"no decision by {st.expires_at}"))
        else:
            refuse("expired", f"the request expired at {st.expires_at}")
        audit("collaboration_expired", "no decision in time")
        notify(f"rep:{st.requester_id}", f"collaboration request {rid} expired", "expired")
    elif action == "expire":
        refuse(
            "not_expired",
            "the request has not expired" if st.expires_at else "the request has no expiry",
        )
    elif who is None:
        refuse("no_actor", f"{action} needs an actor")
    elif not who.active:
        refuse("actor_inactive", f"{who.id} is not active")
    elif action == "withdraw":
        if who.id != st.requester_id:
            refuse("not_requester", "only the requester may withdraw the request")
        else:
            new = st.model_copy(update={"status": "withdrawn"})
            accepted = True
            reasons.append(Reason("withdrawn", f"{who.id} withdrew the request"))
            audit("collaboration_withdrawn", "withdrawn by the requester")
    elif deal.owner_id != st.owner_id:
        refuse(
            "owner_changed",
            f"the owner changed from {st.owner_id} to {deal.owner_id}: "
            "the request must be filed again",
        )
    elif st.step >= len(steps):
        refuse("no_step", "no approval step is pending")
    else:
        step = steps[st.step]
        ref = sec.refs["after_close"] if st.step >= len(sec.steps) else sec.refs["steps"]
        verdicts = [_may_act(a, who, deal, boss) for a in step]
        if True not in verdicts and None in verdicts:
            issues.append(
                RuleIssue(
                    "missing_field",
                    "the owner's record (manager_id) is needed",
                    "approval.steps",
                    sec.refs["steps"].location,
                    "owner",
                )
            )
        closed = deal.stage in sec.closed_stages
        if True not in verdicts:
            expected = ", ".join(a.text() for a in step)
            refuse("not_approver", f"{who.id} may not act on step {st.step + 1} ({expected})", ref)
        elif who.id == st.requester_id and not sec.allow_self_approval:
            refuse("self_approval", "the requester cannot approve their own request", ref)
        elif st.approvals and st.approvals[-1].by == who.id and action == "approve":
            refuse("already_approved", f"{who.id} approved the previous step", ref)
        elif action == "reject":
            new = st.model_copy(update={"status": "rejected"})
            accepted = True
            reasons.append(
                Reason("rejected", f"{who.id} rejected the request", ref.id, ref.location)
            )
            audit("collaboration_rejected", f"rejected at step {st.step + 1}")
            notify(
                f"rep:{st.requester_id}", f"collaboration request {rid} was rejected", "rejected"
            )
        elif closed and sec.finance_role is None:
            ar = sec.refs["after_close"]
            refuse(
                "deal_closed",
                f"the deal is closed ({deal.stage}); booked credit is not changed",
                ar,
            )
        else:
            record_step = ApprovalRecord(
                step=st.step, approver=" | ".join(a.text() for a in step), by=who.id, at=now
            )
            approvals = (*st.approvals, record_step)
            if st.step + 1 < len(steps):
                new = st.model_copy(update={"step": st.step + 1, "approvals": approvals})
                accepted = True
                nxt = _targets(steps[st.step + 1], deal.owner_id or "", boss)
                reasons.append(
                    Reason(
                        "step_approved",
                        f"step {st.step + 1} approved by {who.id}",
                        ref.id,
                        ref.location,
                    )
                )
                audit("collaboration_step_approved", f"step {st.step + 1} of {len(steps)}")
                for t in nxt:
                    notify(
                        t,
                        f"collaboration request {rid} awaits your approval",
                        f"request:{st.step + 1}",
                    )
            else:
                lines, problem = _agreed(sec, deal, st)
                if problem is not None:
                    refuse(problem.code, problem.message, sec.refs["revenue"])
                else:
                    new = st.model_copy(
                        update={"status": "approved", "step": st.step + 1, "approvals": approvals}
                    )
                    accepted = True
                    split_lines = tuple(
                        SplitShare(x.rep_id, x.share or _ZERO, x.role) for x in lines
                    )
                    reasons.append(
                        Reason("approved", f"approved by {who.id}", ref.id, ref.location)
                    )
                    effects.extend(_approval_effects(sec, deal, st, lines, closed))
                    if closed:
                        reasons.append(
                            Reason(
                                "credit_rebooked",
                                f"the deal is closed ({deal.stage}); credit rebooked "
                                f"with {sec.finance_role} approval",
                                sec.refs["after_close"].id,
                                sec.refs["after_close"].location,
                            )
                        )
                        audit(
                            "credit_rebooked",
                            f"approved after close by {who.id}",
                            {
                                "previous": [
                                    {"rep_id": x.rep_id, "share": str(x.share)}
                                    for x in _current_split(deal)
                                ]
                            },
                        )
                    audit("collaboration_approved", f"all {len(steps)} step(s) approved")
                    notify(
                        f"rep:{st.requester_id}",
                        f"collaboration request {rid} was approved",
                        "approved",
                    )
    pending = new.status == "submitted" and new.step < len(steps)
    nxt_all = _targets(steps[new.step], deal.owner_id or "", boss) if pending else ()
    outcome = ApprovalOutcome(
        request_id=rid,
        action=action,
        accepted=accepted,
        status=new.status,
        previous_status=st.status,
        step=new.step,
        steps_total=len(steps),
        next_approvers=nxt_all,
        split=split_lines,
    )
    assumptions = (
        Assumption(
            f"collaboration:{rid}.status", st.status, "nobody acted on the request meanwhile"
        ),
        Assumption(f"collaboration:{rid}.step", st.step),
        Assumption(f"opportunity:{deal.id}.owner_id", deal.owner_id),
    )
    changed = new is not st
    return Decision(
        kind="approval",
        outcome=outcome,
        reasons=tuple(reasons),
        effects=tuple(effects),
        assumptions=assumptions if changed else (),
        state=new.model_dump(mode="json"),
        errors=tuple(issues),
        trace=trace.build() if trace is not None else None,
        policy_digest=digest,
    )


def _agreed(
    sec: SplitsPolicy, deal: SplitDeal, st: CollaborationState
) -> tuple[tuple[SplitLine, ...], Problem | None]:
    """The split after approval (requester added), or the problem that prevents it."""
    if st.kind == "overlay":
        if any(x.rep_id == st.requester_id for x in deal.overlay):
            return (), Problem("already_member", f"{st.requester_id} is already in the overlay")
        lines = (*deal.overlay, SplitLine(rep_id=st.requester_id, share=st.share, role=st.role))
        bad = _validate_overlay(lines, sec.overlay_max_share)
        return lines, bad[0] if bad else None
    try:
        lines = add_member(
            _current_split(deal), st.requester_id, st.share, owner_id=st.owner_id, role=st.role
        )
    except RecordError as exc:
        code = "already_member" if exc.field == "rep_id" else "share_exceeds_owner"
        return (), Problem(code, exc.detail, exc.field)
    bad = validate_revenue_split(lines, owner_id=st.owner_id, section=sec)
    return lines, bad[0] if bad else None


def _approval_effects(
    sec: SplitsPolicy,
    deal: SplitDeal,
    st: CollaborationState,
    lines: Sequence[SplitLine],
    closed: bool,
) -> list[Effect]:
    target = f"opportunity:{deal.id}"
    rid = st.request_id
    won = deal.stage in sec.won_stages
    amounts: dict[str, tuple[Decimal, str]] = {}
    if won and deal.amount is not None and not deal.lines:
        currency = deal.currency or sec.default_currency
        if currency is not None:
            parts = (
                allocate(
                    deal.amount,
                    [(x.rep_id, x.share or _ZERO) for x in lines],
                    currency,
                    minor_units=sec.minor_units,
                )
                if st.kind == "revenue"
                else {}
            )
            amounts = {k: (v, currency) for k, v in parts.items()}
    split_params: dict[str, Any] = {
        "kind": st.kind,
        "lines": [
            {
                "rep_id": x.rep_id,
                "share": str(x.share),
                "role": x.role,
                "amount": str(amounts[x.rep_id][0]) if x.rep_id in amounts else None,
                "currency": amounts[x.rep_id][1] if x.rep_id in amounts else None,
            }
            for x in lines
        ],
        "request_id": rid,
    }
    if closed:
        split_params["rebook"] = True
        split_params["previous"] = [
            {"rep_id": x.rep_id, "share": str(x.share)}
            for x in (_current_split(deal) if st.kind == "revenue" else deal.overlay)
        ]
    return [
        Effect(
            "add_team_member",
            target,
            f"add_team_member:{target}:{rid}",
            {"rep_id": st.requester_id, "role": st.role, "access": sec.access},
        ),
        Effect(
            "share_access",
            target,
            f"share_access:{target}:{rid}",
            {"rep_id": st.requester_id, "access": sec.access},
        ),
        Effect("record_split", target, f"record_split:{target}:{rid}", split_params),
    ]


# --------------------------------------------------------------------------------------------
# crediting a deal
# --------------------------------------------------------------------------------------------


def _deal_lines(sec: SplitsPolicy, deal: SplitDeal) -> list[tuple[str, Decimal, str]]:
    name = f"deal {deal.id!r}"
    if deal.lines:
        out = []
        for i, line in enumerate(deal.lines):
            currency = line.currency or deal.currency or sec.default_currency
            if currency is None:
                raise RecordError(name, f"lines.{i}.currency", "a currency is required")
            out.append((line.id or str(i), line.amount, currency))
        return out
    if deal.amount is None:
        raise RecordError(name, "amount", "a won deal needs an amount or lines")
    currency = deal.currency or sec.default_currency
    if currency is None:
        raise RecordError(name, "currency", "a currency is required (or splits.default_currency)")
    return [("", deal.amount, currency)]


def _split_hash(lines: Sequence[LineAllocation]) -> str:
    text = json.dumps(
        [
            [
                x.line_id,
                x.currency,
                str(x.amount),
                [[p.rep_id, str(p.share), str(p.amount)] for p in x.parts],
            ]
            for x in lines
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def split(
    policy: Any,
    deal: Mapping[str, Any] | SplitDeal,
    members: Iterable[Mapping[str, Any] | SplitLine] | None = None,
    *,
    kind: Literal["revenue", "overlay"] = "revenue",
    now: datetime,
    explain: bool = False,
) -> Decision[SplitOutcome]:
    """Allocate a deal's credit by its split: only a won deal is credited.

    The members are ``members`` if given, else the deal's ``split`` (revenue) or ``overlay``;
    an empty revenue split means the owner holds 100 %. When no member has a share, shares come
    from the policy's default split by role (:func:`default_split`). A lost deal credits nobody
    (status ``lost``); an open one gives the shares only (``open``); an invalid split gives its
    problems (``invalid``). A won deal is allocated line by line (each ``lines`` entry, or
    ``amount`` in ``currency``) with :func:`allocate` (revenue) or independent rounding
    (overlay), and totalled per rep per currency.

    Args:
        policy: a ``Policy`` or a compiled ``SplitsPolicy``.
        deal: the deal (``SplitDeal``: ``owner_id``, ``stage``, ``amount``/``currency`` or
            ``lines``, ``split``).
        members: the split lines to use instead of the deal's.
        kind: ``revenue`` (total exactly 100 %) or ``overlay`` (each 0–1000 %, no total).
        now: the current time (timezone-aware).
        explain: build a trace.

    Returns:
        A decision whose outcome is a :class:`SplitOutcome`; a credited one has a
        ``record_split`` effect with the per-rep totals.

    Raises:
        RecordError: a naive ``now``, a malformed deal, a won deal without amount or currency,
            an amount finer than its currency's minor unit, or an unknown currency.
    """
    sec, digest = _resolve(policy)
    now = require_aware(now)
    d = coerce(SplitDeal, deal, "deal")
    if kind not in ("revenue", "overlay"):
        raise RecordError("request", "split_kind", "kind must be revenue or overlay")
    trace = TraceBuilder() if explain else None
    owner_id = d.owner_id or ""
    if members is not None and (
        isinstance(members, str | bytes | Mapping) or not isinstance(members, Iterable)
    ):
        raise RecordError("request", "members", "members must be a list of split lines")
    raw: list[Any] = (
        list(members) if members is not None else list(d.split if kind == "revenue" else d.overlay)
    )
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping | BaseModel):
            raise RecordError("members", f"[{i}]", f"a split line must be an object, not {item!r}")
    if kind == "revenue" and not raw and owner_id:
        raw = [SplitLine(rep_id=owner_id, share=_HUNDRED, role="owner")]
    problems: list[Problem] = []
    if raw and all(_line_parts(x)[1] is None for x in raw) and kind == "revenue":
        if not owner_id:
            problems.append(Problem("owner_missing", "the deal has no owner", "owner_id"))
        lines_t, extra = default_split(sec, raw, owner_id=owner_id)
        problems.extend(extra)
        raw = list(lines_t)
        if trace is not None:
            trace.add(
                TraceStatus.NOTE, "shares from the default split by role", sec.refs["default"]
            )
    if d.stage in sec.lost_stages:
        outcome = SplitOutcome(d.id, kind, "lost")
        return Decision(
            "split",
            outcome,
            (Reason("deal_lost", f"the deal is {d.stage}: nobody is credited"),),
            trace=trace.build() if trace else None,
            policy_digest=digest,
        )
    if kind == "revenue":
        if not owner_id and not problems:
            problems.append(Problem("owner_missing", "the deal has no owner", "owner_id"))
        problems.extend(
            validate_revenue_split(raw, owner_id=owner_id, section=sec) if owner_id else ()
        )
    else:
        problems.extend(_validate_overlay(raw, sec.overlay_max_share))
    shares = tuple(
        SplitShare(rep, _to_decimal(s) or _ZERO, role)
        for rep, s, role in (_line_parts(x) for x in raw)
        if isinstance(rep, str) and rep and _to_decimal(s) is not None
    )
    if problems:
        outcome = SplitOutcome(d.id, kind, "invalid", shares, problems=tuple(problems))
        reasons = tuple(Reason(p.code, p.message, data={"field": p.field}) for p in problems)
        return Decision(
            "split", outcome, reasons, trace=trace.build() if trace else None, policy_digest=digest
        )
    if d.stage not in sec.won_stages:
        outcome = SplitOutcome(d.id, kind, "open", shares)
        return Decision(
            "split",
            outcome,
            (Reason("not_won", f"stage {d.stage!r} is not won: no credit yet"),),
            trace=trace.build() if trace else None,
            policy_digest=digest,
        )
    allocations: list[LineAllocation] = []
    totals: dict[tuple[str, str], int] = {}
    ids = [s.rep_id for s in shares]
    weights = _int_weights([s.share for s in shares])
    wsum = sum(weights)
    order = sorted(range(len(ids)), key=ids.__getitem__)
    for line_id, amount, currency in _deal_lines(sec, d):
        exp = sec.currency_exponent(currency)
        units = _to_minor(amount, exp, currency, f"deal {d.id!r}", f"line {line_id or 'amount'}")
        if kind == "revenue" and wsum:
            parts_sorted = _largest_remainder(units, [weights[i] for i in order], wsum)
            minor = dict(zip((ids[i] for i in order), parts_sorted, strict=True))
        else:
            minor = {}
            for s in shares:
                num, den = s.share.as_integer_ratio()
                minor[s.rep_id] = _overlay_part(units, num, den * 100)
        q = _QUANT[exp]
        allocations.append(
            LineAllocation(
                line_id,
                currency,
                amount,
                tuple(Part(s.rep_id, s.share, Decimal(minor[s.rep_id]) * q) for s in shares),
            )
        )
        for s in shares:
            key = (currency, s.rep_id)
            totals[key] = totals.get(key, 0) + minor[s.rep_id]
        if trace is not None:
            trace.add(
                TraceStatus.NOTE,
                f"line {line_id or '-'}: {amount} {currency} allocated",
                values={s.rep_id: str(Decimal(minor[s.rep_id]) * q) for s in shares},
            )
    rep_totals = tuple(
        RepTotal(rep, cur, Decimal(units) * _QUANT[sec.currency_exponent(cur)])
        for (cur, rep), units in sorted(totals.items())
    )
    outcome = SplitOutcome(d.id, kind, "credited", shares, tuple(allocations), rep_totals)
    target = f"opportunity:{d.id}"
    share_of = {s.rep_id: s.share for s in shares}
    effect = Effect(
        "record_split",
        target,
        f"record_split:{target}:{kind}:{_split_hash(allocations)}",
        {
            "kind": kind,
            "lines": [
                {
                    "rep_id": t.rep_id,
                    "share": str(share_of[t.rep_id]),
                    "amount": str(t.amount),
                    "currency": t.currency,
                }
                for t in rep_totals
            ],
            "items": [
                {
                    "line_id": a.line_id,
                    "currency": a.currency,
                    "parts": [{"rep_id": p.rep_id, "amount": str(p.amount)} for p in a.parts],
                }
                for a in allocations
            ],
        },
    )
    return Decision(
        "split",
        outcome,
        (Reason("credited", f"the deal is {d.stage}: credit allocated"),),
        (effect,),
        trace=trace.build() if trace else None,
        policy_digest=digest,
    )


def split_many(
    policy: Any,
    deals: Iterable[Mapping[str, Any] | SplitDeal],
    *,
    kind: Literal["revenue", "overlay"] = "revenue",
    now: datetime,
) -> Iterator[Decision[SplitOutcome]]:
    """Split many deals, each with its own ``split`` (a generator; same as one by one).

    Args:
        policy: a ``Policy`` or a compiled ``SplitsPolicy``.
        deals: the deals.
        kind: ``revenue`` or ``overlay``.
        now: the current time (timezone-aware).

    Yields:
        One decision per deal, in order.
    """
    for deal in deals:
        yield split(policy, deal, kind=kind, now=now)


# --------------------------------------------------------------------------------------------
# CLI request kinds
# --------------------------------------------------------------------------------------------


def _decide_request(
    policy: Any, request: Mapping[str, Any], now: datetime, explain: bool
) -> Decision[RequestVerdict]:
    if not isinstance(request.get("request"), Mapping):
        raise RecordError("request", "request", "the collaboration request (an object) is required")
    return validate_request(
        policy,
        request["request"],
        record=request.get("record") or {},
        requester=request.get("requester") or {},
        existing=request.get("existing") or (),
        owner=request.get("owner"),
        now=now,
        explain=explain,
    )


def _decide_approval(
    policy: Any, request: Mapping[str, Any], now: datetime, explain: bool
) -> Decision[ApprovalOutcome]:
    action = request.get("action")
    if not isinstance(action, str):
        raise RecordError("request", "action", f"one of {_ACTIONS} is required")
    return decide_approval(
        policy,
        request.get("state") or {},
        action,
        actor=request.get("actor"),
        record=request.get("record") or {},
        owner=request.get("owner"),
        now=now,
        explain=explain,
    )


def _decide_split(
    policy: Any, request: Mapping[str, Any], now: datetime, explain: bool
) -> Decision[SplitOutcome]:
    kind = request.get("split_kind", "revenue")
    if kind not in ("revenue", "overlay"):
        raise RecordError("request", "split_kind", "must be revenue or overlay")
    return split(
        policy,
        request.get("deal") or {},
        request.get("members"),
        kind=kind,
        now=now,
        explain=explain,
    )


SECTION = SectionSpec(
    name="splits",
    model=SplitsSection,
    compile=_compile,
    kinds=MappingProxyType(
        {
            "collaboration_request": _decide_request,
            "approval": _decide_approval,
            "split": _decide_split,
        }
    ),
    after=("calendar", "stages"),
    description="collaboration requests, approval flow, split rules and rounding",
)
