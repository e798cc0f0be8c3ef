"""Business time: time zone, working hours with breaks, holidays and China's make-up workdays.

A :class:`Calendar` answers "when is N business days / hours / calendar days after T?" and
"how much working time lies between A and B?" for one time zone. It is compiled from the
``calendar`` section of a rule file (:class:`CalendarSection`, :func:`compile_calendar`) or
built directly; :data:`DEFAULT_CALENDAR` (UTC, Monday–Friday 09:00–18:00, no holidays) is used
when a policy has no ``calendar`` section.

Which days are working days, in this order (the first rule that applies wins):

1. a date in ``extra_holidays`` is closed;
2. a date in ``extra_workdays`` is open;
3. a national holiday of the configured country/subdivision (``holidays`` package, category
   ``public``, observed days included) is closed;
4. a make-up workday of that country (China's 调休 days, ``HolidayBase.weekend_workdays``) is
   open;
5. otherwise the weekday's working hours decide (a weekday without hours is closed).

An open day whose weekday has no hours of its own (a make-up Saturday) uses ``makeup_hours``,
which defaults to the hours of the first weekday, Monday to Sunday, that has any.

Exact semantics (all instants are timezone-aware; results are in the calendar's zone):

* **Working intervals** are wall-clock intervals ``[open, close)`` on each date (``24:00`` may
  close a day). Working time is the *real* elapsed time inside them, so a DST change neither
  adds nor removes working time unless an interval itself spans the change (then the interval
  is as long as the clock says it really is). A wall-clock time that does not exist (the
  spring-forward gap) is read with the offset in force before the gap, i.e. shifted later by
  the gap's length (02:30 becomes 03:30, as ``zoneinfo`` and ``java.time`` do); an ambiguous
  one (fall-back) is read as its first occurrence.
* ``is_working(t)``: ``t`` lies in some interval (the opening instant is working, the closing
  instant is not).
* ``next_opening(t)``: ``t`` itself when working, else the next opening instant.
* **Business days** (``"2 business days"``): the clock starts at ``s = next_opening(start)``
  (a start outside working hours starts at the next opening). The deadline is the same
  wall-clock time as ``s`` on the N-th working day after ``s``'s date, snapped into that day's
  working time: if that wall time is inside an interval (closing instant included) it is kept;
  if it is before the day's first opening, the first opening; if it is in a break or after
  the day's last close, the close of the latest interval that ends before it ("clamp to that
  day's close"). So Friday 17:00 + 1 business day = Monday 17:00 (Mon–Fri 09:00–18:00), and
  Saturday 10:00 + 1 business day = Tuesday 09:00 (the clock starts Monday 09:00). Zero
  business days gives ``s``.
* **Business hours / minutes**: working time is consumed from ``next_opening(start)`` across
  breaks and closed days; a deadline that lands exactly on a closing instant stays there (it
  never rolls over to the next opening or to midnight). ``between(a, add(a, d)) == d``.
* **Calendar durations** (``"90 minutes"``, ``"2 hours"``, ``"3 days"``, ``"2 weeks"`` and
  every ISO 8601 duration such as ``P3D``, ``PT8H``, ``P1DT12H``, ``P1W``, ``P1M``) ignore
  working hours. Years, months, weeks and days are wall-clock calendar arithmetic in the
  calendar's zone (``dateutil.relativedelta``: "1 day" across a DST change is the same local
  wall time the next day, i.e. 23 or 25 real hours; Jan 31 + 1 month = Feb 28/29); hours,
  minutes and seconds are real elapsed time. A compound ISO duration applies its date part
  first, then its time part.
* A naive datetime anywhere raises :class:`salesrules.errors.RecordError`.

Thread safety: a :class:`Calendar` is immutable as far as callers can see. National holidays
are computed per (country, subdivision, year) by a pure module-level function memoized with
:func:`functools.lru_cache` (thread-safe; a race at worst computes one year twice). Each
calendar also memoizes its per-date working intervals in a private dict keyed by date ordinal:
every value is a pure function of its key and of the calendar's immutable fields, a single
``dict`` get/set is atomic, the dict is never iterated, and a racing thread at worst computes
and stores an equal value, so sharing one calendar between threads is safe. The memo is
cleared when it exceeds :data:`_MEMO_LIMIT` dates.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from types import MappingProxyType
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from dateutil.relativedelta import relativedelta
from pydantic import BaseModel, ConfigDict, Field

from salesrules._section import CompileContext, SectionModel, SectionSpec
from salesrules.decision import Decision, Reason, TraceBuilder, TraceStatus
from salesrules.errors import RecordError

__all__ = [
    "DEFAULT_CALENDAR",
    "SECTION",
    "Calendar",
    "CalendarSection",
    "DeadlineOutcome",
    "Duration",
    "DurationError",
    "DurationUnit",
    "HolidaySource",
    "compile_calendar",
    "decide_deadline",
    "parse_duration",
]

# ---------------------------------------------------------------------------------------------
# Durations
# ---------------------------------------------------------------------------------------------

DurationUnit = Literal[
    "business_days",
    "business_hours",
    "business_minutes",
    "years",
    "months",
    "weeks",
    "days",
    "hours",
    "minutes",
    "seconds",
]

_BUSINESS_UNITS: frozenset[str] = frozenset({"business_days", "business_hours", "business_minutes"})
_DATE_UNITS: tuple[str, ...] = ("years", "months", "weeks", "days")
_TIME_UNITS: tuple[str, ...] = ("hours", "minutes", "seconds")
_FAST_UNITS: frozenset[str] = frozenset({"weeks", "days", "hours", "minutes", "seconds"})
_ISO_LETTER: Mapping[str, str] = MappingProxyType(
    {
        "years": "Y",
        "months": "M",
        "weeks": "W",
        "days": "D",
        "hours": "H",
        "minutes": "M",
        "seconds": "S",
    }
)
_SINGULAR: Mapping[str, str] = MappingProxyType(
    {
        "business_days": "business day",
        "business_hours": "business hour",
        "business_minutes": "business minute",
        "years": "year",
        "months": "month",
        "weeks": "week",
        "days": "day",
        "hours": "hour",
        "minutes": "minute",
        "seconds": "second",
    }
)
#: Accepted unit words (singular or plural, any case) -> unit.
_WORDS: Mapping[str, str] = MappingProxyType(
    {
        **{w: u for u, w in _SINGULAR.items()},
        **{w + "s": u for u, w in _SINGULAR.items()},
    }
)
_TEXT_RE = re.compile(r"^\s*([+-]?)\s*(\d+)\s+([A-Za-z][A-Za-z ]*?)\s*$")
_ISO_RE = re.compile(
    r"^([+-]?)P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
    r"(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$"
)
_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "working day": "business days",
        "working days": "business days",
        "workday": "business days",
        "workdays": "business days",
        "work days": "business days",
        "working hour": "business hours",
        "working hours": "business hours",
        "work hours": "business hours",
        "min": "minutes",
        "mins": "minutes",
        "h": "hours",
        "hr": "hours",
        "hrs": "hours",
        "d": "days",
        "w": "weeks",
        "wk": "weeks",
        "wks": "weeks",
        "sec": "seconds",
        "secs": "seconds",
        "s": "seconds",
        "business week": "business days (5 per week)",
        "business weeks": "business days (5 per week)",
    }
)


class DurationError(ValueError):
    """A duration text could not be parsed; ``hint`` says what would be accepted."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True, slots=True)
class Duration:
    """A parsed duration: an amount of one unit, business time or calendar time.

    Compound ISO 8601 durations (``P1DT12H``) keep their further components in ``rest``,
    largest unit first; all components share the sign of ``amount``.

    Attributes:
        unit: the (largest) unit.
        amount: how many of ``unit``; zero and negative amounts parse (see ``is_positive``).
        business: whether this counts working time (business days/hours/minutes).
        rest: further calendar components of a compound ISO duration, e.g. ``(("hours", 12),)``.
        iso: whether it was written in ISO 8601 form (``str`` then gives ISO back).
    """

    unit: DurationUnit
    amount: int
    business: bool = False
    rest: tuple[tuple[DurationUnit, int], ...] = ()
    iso: bool = False

    def __post_init__(self) -> None:
        if (self.unit in _BUSINESS_UNITS) != self.business:
            raise ValueError(f"unit {self.unit!r} does not match business={self.business}")
        if self.business and (self.rest or self.iso):
            raise ValueError("business durations have a single component and no ISO form")

    @property
    def components(self) -> tuple[tuple[DurationUnit, int], ...]:
        """All components, largest first: ``((unit, amount), *rest)``."""
        return ((self.unit, self.amount), *self.rest)

    @property
    def is_positive(self) -> bool:
        """Whether the duration is longer than zero (the policy accepts only these: SR201)."""
        return self.amount > 0 or any(n > 0 for _, n in self.rest)

    @property
    def business_seconds(self) -> int:
        """The working time of a business-hours/minutes duration, in seconds (0 otherwise)."""
        if self.unit == "business_hours":
            return self.amount * 3600
        if self.unit == "business_minutes":
            return self.amount * 60
        return 0

    def __str__(self) -> str:
        if self.iso:
            return _iso_text(self)
        word = _SINGULAR[self.unit]
        return f"{self.amount} {word}" if abs(self.amount) == 1 else f"{self.amount} {word}s"


def _iso_text(d: Duration) -> str:
    sign = "-" if d.amount < 0 or any(n < 0 for _, n in d.rest) else ""
    parts = dict(d.components)
    date_part = "".join(f"{abs(parts[u])}{_ISO_LETTER[u]}" for u in _DATE_UNITS if u in parts)
    time_part = "".join(f"{abs(parts[u])}{_ISO_LETTER[u]}" for u in _TIME_UNITS if u in parts)
    return f"{sign}P{date_part}" + (f"T{time_part}" if time_part else "")


def parse_duration(text: str) -> Duration:
    """Parse a duration such as ``"2 business days"``, ``"90 minutes"`` or ``"P1DT12H"``.

    Text forms are ``<integer> <unit>`` with units ``business day(s)``, ``business hour(s)``,
    ``business minute(s)``, ``second(s)``, ``minute(s)``, ``hour(s)``, ``day(s)``, ``week(s)``,
    ``month(s)``, ``year(s)`` (any case); ISO 8601 forms are ``PnYnMnWnDTnHnMnS`` with integer
    components (an optional leading sign applies to the whole). ISO durations are calendar time.

    Args:
        text: the duration text.

    Returns:
        The parsed duration; zero and negative amounts are returned (check ``is_positive``).

    Raises:
        DurationError: the text is not a duration; ``hint`` suggests the accepted form.
    """
    if not isinstance(text, str):
        raise DurationError(
            f"a duration must be text, not {type(text).__name__}",
            "write e.g. '2 business days' or 'PT8H'",
        )
    stripped = text.strip()
    if not stripped:
        raise DurationError("empty duration", "write e.g. '2 business days' or 'PT8H'")
    upper = stripped.upper()
    if upper.lstrip("+-").startswith("P"):
        return _parse_iso(stripped, upper)
    m = _TEXT_RE.match(stripped)
    if m is None:
        hint = "write '<whole number> <unit>', e.g. '2 business days', '90 minutes' or 'P1DT12H'"
        if re.match(r"^\s*[+-]?\d+[.,]\d", stripped):
            hint = "amounts are whole numbers: use a smaller unit (e.g. '90 minutes')"
        elif re.match(r"^\s*[+-]?\d+[A-Za-z]", stripped):
            hint = "put a space between the number and the unit (e.g. '2 hours')"
        raise DurationError(f"invalid duration {text!r}", hint)
    sign, digits, word = m.groups()
    key = " ".join(word.lower().split())
    unit = _WORDS.get(key)
    if unit is None:
        alias = _ALIASES.get(key)
        if alias is not None:
            hint = f"did you mean '{digits} {alias}'?"
        else:
            close = difflib.get_close_matches(key, list(_WORDS), n=1, cutoff=0.6)
            hint = (
                f"did you mean '{digits} {close[0]}'?"
                if close
                else "units: business days/hours/minutes, seconds, minutes, hours, days, "
                "weeks, months, years"
            )
        raise DurationError(f"unknown duration unit {word!r} in {text!r}", hint)
    amount = -int(digits) if sign == "-" else int(digits)
    return Duration(cast(DurationUnit, unit), amount, business=unit in _BUSINESS_UNITS)


def _parse_iso(text: str, upper: str) -> Duration:
    m = _ISO_RE.match(upper)
    if m is None:
        hint = "ISO 8601 durations look like P3D, PT8H, P1DT12H or P1W (whole numbers only)"
        if "," in upper or "." in upper:
            hint = "fractions are not supported: use a smaller unit (PT90M, not PT1.5H)"
        elif re.match(r"^[+-]?P\d+[HS]", upper):
            hint = "hours, minutes and seconds come after 'T' (PT8H)"
        raise DurationError(f"invalid ISO 8601 duration {text!r}", hint)
    sign = -1 if m.group(1) == "-" else 1
    units: tuple[DurationUnit, ...] = (
        "years",
        "months",
        "weeks",
        "days",
        "hours",
        "minutes",
        "seconds",
    )
    comps = [
        (u, sign * int(g)) for u, g in zip(units, m.groups()[1:], strict=True) if g is not None
    ]
    (unit, amount), *rest = comps
    return Duration(unit, amount, business=False, rest=tuple(rest), iso=True)


# ---------------------------------------------------------------------------------------------
# Calendar
# ---------------------------------------------------------------------------------------------

#: One working interval: (open, close) as microseconds since local midnight, wall clock.
Interval = tuple[int, int]
DayHours = tuple[Interval, ...]

_US_PER_MIN = 60_000_000
_DAY_US = 24 * 60 * _US_PER_MIN
_MEMO_LIMIT = 100_000
_WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ONE_US = timedelta(microseconds=1)


@functools.lru_cache(maxsize=1024)
def _national_days(
    country: str, subdivision: str | None, year: int
) -> tuple[frozenset[int], frozenset[int]]:
    """Closed and make-up-working date ordinals of one year (pure; memoized, thread-safe)."""
    import holidays

    # Substituted days are registered while the *next* year is populated (a late-December
    # make-up day belongs to next January's holiday), so populate both and keep this year.
    table = holidays.country_holidays(country, subdiv=subdivision, years=(year, year + 1))
    closed = frozenset(d.toordinal() for d in table if d.year == year)
    makeup = frozenset(
        d.toordinal() for d in getattr(table, "weekend_workdays", ()) if d.year == year
    )
    return closed, makeup


def _parse_clock(text: str) -> int | None:
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if m is None:
        return None
    h, mi = int(m.group(1)), int(m.group(2))
    if mi >= 60 or h > 24 or (h == 24 and mi != 0):
        return None
    return (h * 60 + mi) * _US_PER_MIN


def _clock_text(us: int) -> str:
    minutes = us // _US_PER_MIN
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def parse_intervals(items: tuple[str, ...] | list[str]) -> DayHours:
    """Parse ``["09:00-12:00", "13:30-18:00"]`` into sorted, non-overlapping intervals.

    Args:
        items: intervals written ``HH:MM-HH:MM`` (``24:00`` may end one).

    Returns:
        The intervals as microseconds since local midnight, sorted.

    Raises:
        ValueError: an interval is malformed, ends before it starts, or overlaps another.
    """
    out: list[Interval] = []
    for item in items:
        start_text, sep, end_text = str(item).partition("-")
        start, end = _parse_clock(start_text), _parse_clock(end_text)
        if not sep or start is None or end is None:
            raise ValueError(f"invalid interval {item!r}: write 'HH:MM-HH:MM', e.g. '09:00-12:00'")
        if end <= start:
            raise ValueError(
                f"interval {item!r} ends before it starts (overnight shifts: split them)"
            )
        out.append((start, end))
    out.sort()
    for (s1, e1), (s2, e2) in itertools.pairwise(out):
        if s2 < e1:
            raise ValueError(
                f"intervals {_clock_text(s1)}-{_clock_text(e1)} and "
                f"{_clock_text(s2)}-{_clock_text(e2)} overlap"
            )
    return tuple(out)


def _check_aware(t: object, what: str) -> datetime:
    if not isinstance(t, datetime):
        record, _, fld = what.partition(".")
        raise RecordError(record, fld or what, f"expected a datetime, got {type(t).__name__}")
    if t.tzinfo is None or t.utcoffset() is None:
        record, _, fld = what.partition(".")
        raise RecordError(
            record,
            fld or what,
            f"naive datetime {t.isoformat()}: give a time zone (e.g. {t.isoformat()}+08:00)",
        )
    return t


@dataclass(frozen=True, slots=True)
class Calendar:
    """A business calendar: time zone, weekly working hours, holidays and make-up workdays.

    Build one with :meth:`from_hours` or from a rule file (:func:`compile_calendar`). See the
    module docstring for the exact semantics of every method.

    Attributes:
        timezone: the IANA zone name, e.g. ``"Asia/Shanghai"``.
        weekly: seven tuples of working intervals, Monday first (microseconds since midnight).
        country: ISO country code for national holidays (``holidays`` package), or ``None``.
        subdivision: the country's subdivision code, or ``None``.
        extra_holidays: dates closed whatever else applies.
        extra_workdays: dates open whatever else applies (except ``extra_holidays``).
        makeup_hours: hours of an open day whose weekday has none; ``None`` = first non-empty
            weekday's hours.
    """

    timezone: str
    weekly: tuple[DayHours, ...]
    country: str | None = None
    subdivision: str | None = None
    extra_holidays: frozenset[date] = frozenset()
    extra_workdays: frozenset[date] = frozenset()
    makeup_hours: DayHours | None = None
    _zone: ZoneInfo = field(init=False, repr=False, compare=False, hash=False)
    _makeup: DayHours = field(init=False, repr=False, compare=False, hash=False)
    _closed: frozenset[int] = field(init=False, repr=False, compare=False, hash=False)
    _opened: frozenset[int] = field(init=False, repr=False, compare=False, hash=False)
    _memo: dict[int, tuple[DayHours, tuple[tuple[datetime, datetime], ...]]] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __repr__(self) -> str:
        week = ", ".join(
            f"{name}={'+'.join(f'{_clock_text(s)}-{_clock_text(e)}' for s, e in day)}"
            for name, day in zip(_WEEKDAYS, self.weekly, strict=True)
            if day
        )
        extra = ""
        if self.country:
            extra += f", holidays={self.country}" + (
                f"-{self.subdivision}" if self.subdivision else ""
            )
        if self.extra_holidays:
            extra += f", extra_holidays={len(self.extra_holidays)}"
        if self.extra_workdays:
            extra += f", extra_workdays={len(self.extra_workdays)}"
        return f"Calendar({self.timezone!r}, {week}{extra})"

    def __post_init__(self) -> None:
        if len(self.weekly) != 7:
            raise ValueError("weekly must hold seven days of hours, Monday first")
        for day in (*self.weekly, *((self.makeup_hours,) if self.makeup_hours else ())):
            for (s1, e1), nxt in zip(day, (*day[1:], None), strict=False):
                if not 0 <= s1 < e1 <= _DAY_US or (nxt is not None and nxt[0] < e1):
                    raise ValueError(f"invalid or unsorted working intervals: {day!r}")
        if not any(self.weekly):
            raise ValueError("a calendar needs working hours on at least one weekday")
        makeup = self.makeup_hours or next(day for day in self.weekly if day)
        sets = {
            "_zone": ZoneInfo(self.timezone),
            "_makeup": makeup,
            "_closed": frozenset(d.toordinal() for d in self.extra_holidays),
            "_opened": frozenset(d.toordinal() for d in self.extra_workdays),
            "_memo": {},
        }
        for name, value in sets.items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_hours(
        cls,
        timezone: str = "UTC",
        hours: Mapping[str, list[str] | tuple[str, ...]] | None = None,
        *,
        country: str | None = None,
        subdivision: str | None = None,
        extra_holidays: frozenset[date] | set[date] | tuple[date, ...] = frozenset(),
        extra_workdays: frozenset[date] | set[date] | tuple[date, ...] = frozenset(),
        makeup_hours: list[str] | tuple[str, ...] | None = None,
    ) -> Calendar:
        """Build a calendar from rule-file style hours, e.g. ``{"mon-fri": ["09:00-18:00"]}``.

        Args:
            timezone: IANA zone name.
            hours: weekday key (``mon``..``sun`` or a range ``mon-fri``) -> intervals; default
                Monday–Friday 09:00–18:00.
            country: ISO country code for national holidays, or ``None``.
            subdivision: subdivision code, or ``None``.
            extra_holidays: dates that are closed.
            extra_workdays: dates that are open.
            makeup_hours: intervals for open days whose weekday has no hours.

        Returns:
            The calendar.

        Raises:
            ValueError: bad hours, keys or zone.
        """
        spec = hours if hours is not None else {"mon-fri": ["09:00-18:00"]}
        weekly: list[DayHours] = [()] * 7
        for key, items in spec.items():
            days = _weekday_keys(key)
            if days is None:
                raise ValueError(f"unknown weekday key {key!r}")
            parsed = parse_intervals(list(items))
            for d in days:
                if weekly[d]:
                    raise ValueError(f"weekday {_WEEKDAYS[d]!r} is given twice")
                weekly[d] = parsed
        return cls(
            timezone,
            tuple(weekly),
            country,
            subdivision,
            frozenset(extra_holidays),
            frozenset(extra_workdays),
            parse_intervals(list(makeup_hours)) if makeup_hours else None,
        )

    # -- days ------------------------------------------------------------------------------
    def _wall(self, ordinal: int) -> DayHours:
        """Working intervals (wall clock) of a date ordinal; pure in the calendar's fields."""
        if ordinal in self._closed:
            return ()
        own = self.weekly[(ordinal - 1) % 7]
        if ordinal in self._opened:
            return own or self._makeup
        if self.country is not None:
            closed, makeup = _national_days(
                self.country, self.subdivision, date.fromordinal(ordinal).year
            )
            if ordinal in closed:
                return ()
            if ordinal in makeup:
                return own or self._makeup
        return own

    def _day(self, ordinal: int) -> tuple[DayHours, tuple[tuple[datetime, datetime], ...]]:
        """Wall intervals and the same intervals as UTC instants (memoized per instance)."""
        hit = self._memo.get(ordinal)
        if hit is not None:
            return hit
        wall = self._wall(ordinal)
        if wall:
            midnight = datetime.fromordinal(ordinal)
            zone = self._zone
            instants = tuple(
                (
                    _to_utc(midnight + timedelta(microseconds=s), zone),
                    _to_utc(midnight + timedelta(microseconds=e), zone),
                )
                for s, e in wall
            )
        else:
            instants = ()
        value = (wall, instants)
        memo = self._memo
        if len(memo) >= _MEMO_LIMIT:
            memo.clear()
        memo[ordinal] = value
        return value

    def is_working_day(self, day: date) -> bool:
        """Whether a date has any working hours (holidays and make-up workdays applied).

        Args:
            day: a calendar date (a datetime's date part is used as is, not converted).

        Returns:
            ``True`` when the date has working intervals.
        """
        if isinstance(day, datetime):
            day = day.date()
        return bool(self._day(day.toordinal())[0])

    def hours_on(self, day: date) -> tuple[tuple[time, time | None], ...]:
        """The working intervals of a date as wall-clock times (``None`` closes at 24:00).

        Args:
            day: the date.

        Returns:
            ``((open, close), ...)`` in order; empty on a closed day.
        """
        return tuple(
            (_us_to_time(s), None if e == _DAY_US else _us_to_time(e))
            for s, e in self._day(day.toordinal())[0]
        )

    # -- instants --------------------------------------------------------------------------
    def local(self, t: datetime, *, what: str = "now") -> datetime:
        """Return ``t`` in the calendar's zone.

        Args:
            t: an aware datetime.
            what: ``"record.field"`` (or one word) naming ``t`` in a ``RecordError``.

        Returns:
            The same instant, expressed in the calendar's zone.

        Raises:
            RecordError: ``t`` is naive.
        """
        return _check_aware(t, what).astimezone(self._zone)

    def is_working(self, t: datetime, *, what: str = "now") -> bool:
        """Whether ``t`` lies inside working hours (opening instant in, closing instant out).

        Args:
            t: an aware datetime.
            what: names ``t`` in a ``RecordError``.

        Returns:
            ``True`` inside a working interval.

        Raises:
            RecordError: ``t`` is naive.
        """
        u = _check_aware(t, what).astimezone(UTC)
        ordinal = u.astimezone(self._zone).toordinal()
        return any(s <= u < e for s, e in self._day(ordinal)[1])

    def next_opening(self, t: datetime, *, what: str = "now") -> datetime:
        """Return ``t`` when it is working time, else the next opening instant.

        Args:
            t: an aware datetime.
            what: names ``t`` in a ``RecordError``.

        Returns:
            The earliest working instant at or after ``t``, in the calendar's zone.

        Raises:
            RecordError: ``t`` is naive.
        """
        u = _check_aware(t, what).astimezone(UTC)
        return self._opening_utc(u).astimezone(self._zone)

    def _opening_utc(self, u: datetime) -> datetime:
        ordinal = u.astimezone(self._zone).toordinal()
        while True:
            for s, e in self._day(ordinal)[1]:
                if u < e:
                    return s if u < s else u
            ordinal += 1

    def add(self, start: datetime, duration: Duration | str, *, what: str = "start") -> datetime:
        """Return the instant ``duration`` after ``start`` (see the module docstring).

        Args:
            start: an aware datetime.
            duration: a :class:`Duration` or its text (``"2 business days"``, ``"P1D"``).
            what: names ``start`` in a ``RecordError``.

        Returns:
            The deadline, in the calendar's zone. Business results are inside working hours
            or exactly at a closing instant.

        Raises:
            RecordError: ``start`` is naive.
            DurationError: ``duration`` is text that does not parse.
            ValueError: a negative business duration (business time only runs forward).
        """
        if isinstance(duration, str):
            duration = parse_duration(duration)
        u = _check_aware(start, what).astimezone(UTC)
        if duration.business:
            if duration.amount < 0:
                raise ValueError("a business duration cannot be negative")
            if duration.unit == "business_days":
                return self._add_days(u, duration.amount)
            return self._add_seconds(u, timedelta(seconds=duration.business_seconds))
        return self._add_calendar(u, duration)

    def _add_days(self, u: datetime, n: int) -> datetime:
        zone = self._zone
        local = u.astimezone(zone)
        ordinal = local.toordinal()
        memo = self._memo
        day = self._day
        # The effective start: ``u`` itself when working, else the next opening; ``wall`` is
        # its wall-clock time of day (microseconds), the time the deadline day keeps.
        wall = -1
        while wall < 0:
            hours, instants = memo.get(ordinal) or day(ordinal)
            for (ws, _), (s, e) in zip(hours, instants, strict=True):
                if u < e:
                    if u < s:
                        wall, u = ws, s
                    else:
                        wall = (
                            (local.hour * 60 + local.minute) * 60 + local.second
                        ) * 1_000_000 + local.microsecond
                    break
            else:
                ordinal += 1
        if n == 0:
            return u.astimezone(zone)
        while n:
            ordinal += 1
            if (memo.get(ordinal) or day(ordinal))[0]:
                n -= 1
        hours, instants = memo.get(ordinal) or day(ordinal)
        index, target = 0, hours[0][0]
        if wall >= target:
            for i, (s_wall, e_wall) in enumerate(hours):
                if wall < s_wall:
                    break
                index, target = i, (wall if wall <= e_wall else e_wall)
        s_wall, e_wall = hours[index]
        s_utc, e_utc = instants[index]
        if e_utc - s_utc == timedelta(microseconds=e_wall - s_wall):
            # No clock change inside this interval: offset from its opening instant.
            return (s_utc + timedelta(microseconds=target - s_wall)).astimezone(zone)
        naive = datetime.fromordinal(ordinal) + timedelta(microseconds=target)
        return _to_utc(naive, zone).astimezone(zone)

    def _add_seconds(self, u: datetime, remaining: timedelta) -> datetime:
        zone = self._zone
        ordinal = u.astimezone(zone).toordinal()
        cur = u
        while True:
            for s, e in self._day(ordinal)[1]:
                if e <= cur:
                    continue
                if cur < s:
                    cur = s
                avail = e - cur
                if remaining <= avail:
                    return (cur + remaining).astimezone(zone)
                remaining -= avail
                cur = e
            ordinal += 1

    def _add_calendar(self, u: datetime, d: Duration) -> datetime:
        zone = self._zone
        if not d.rest and d.unit in _FAST_UNITS:  # the common single-unit forms, quickly
            delta = timedelta(**{d.unit: d.amount})
            if d.unit in _TIME_UNITS:
                return (u + delta).astimezone(zone)
            return _to_utc(u.astimezone(zone).replace(tzinfo=None) + delta, zone).astimezone(zone)
        parts = dict(d.components)
        date_delta = relativedelta(
            years=parts.get("years", 0),
            months=parts.get("months", 0),
            weeks=parts.get("weeks", 0),
            days=parts.get("days", 0),
        )
        result = u
        if date_delta:
            local = u.astimezone(zone).replace(tzinfo=None)
            result = _to_utc(local + date_delta, zone)
        clock = timedelta(
            hours=parts.get("hours", 0),
            minutes=parts.get("minutes", 0),
            seconds=parts.get("seconds", 0),
        )
        return (result + clock).astimezone(zone)

    def between(
        self, a: datetime, b: datetime, *, what: tuple[str, str] = ("start", "end")
    ) -> timedelta:
        """Return the working time between two instants (negative when ``b`` is before ``a``).

        Args:
            a: an aware datetime.
            b: an aware datetime.
            what: names of ``a`` and ``b`` for a ``RecordError``.

        Returns:
            The real elapsed time of ``[a, b)`` that lies inside working intervals.

        Raises:
            RecordError: ``a`` or ``b`` is naive.
        """
        ua = _check_aware(a, what[0]).astimezone(UTC)
        ub = _check_aware(b, what[1]).astimezone(UTC)
        if ub < ua:
            return -self._between(ub, ua)
        return self._between(ua, ub)

    def _between(self, ua: datetime, ub: datetime) -> timedelta:
        zone = self._zone
        ordinal = ua.astimezone(zone).toordinal()
        last = ub.astimezone(zone).toordinal()
        total = timedelta(0)
        while ordinal <= last:
            for s, e in self._day(ordinal)[1]:
                lo = s if s > ua else ua
                hi = e if e < ub else ub
                if hi > lo:
                    total += hi - lo
            ordinal += 1
        return total

    def working_days_after(self, day: date, n: int) -> date:
        """Return the ``n``-th working day after ``day`` (``n >= 1``; ``day`` itself not counted).

        Args:
            day: the date to count from.
            n: how many working days to step.

        Returns:
            The date reached.
        """
        ordinal = day.toordinal()
        while n > 0:
            ordinal += 1
            if self._day(ordinal)[0]:
                n -= 1
        return date.fromordinal(ordinal)


def _to_utc(local_naive: datetime, zone: ZoneInfo) -> datetime:
    """Read a naive wall-clock time in ``zone`` (gap: shifted later by the gap; fold: first)."""
    return local_naive.replace(tzinfo=zone).astimezone(UTC)


def _us_to_time(us: int) -> time:
    seconds, micro = divmod(us, 1_000_000)
    minutes, sec = divmod(seconds, 60)
    return time(minutes // 60, minutes % 60, sec, micro)


def _weekday_suggestion(key: str) -> str | None:
    """The nearest valid weekday key (each end of a range corrected on its own)."""
    parts = [p.strip() for p in key.lower().split("-")]
    fixed: list[str] = []
    for part in parts[:2]:
        close = difflib.get_close_matches(part[:3], _WEEKDAYS, n=1, cutoff=0.5)
        if not close:
            return None
        fixed.append(close[0])
    suggestion = "-".join(fixed)
    return suggestion if _weekday_keys(suggestion) is not None else None


def _weekday_keys(key: str) -> tuple[int, ...] | None:
    k = key.strip().lower()
    if k in _WEEKDAYS:
        return (_WEEKDAYS.index(k),)
    first, sep, last = k.partition("-")
    if sep and first in _WEEKDAYS and last in _WEEKDAYS:
        i, j = _WEEKDAYS.index(first), _WEEKDAYS.index(last)
        if i <= j:
            return tuple(range(i, j + 1))
    return None


#: The calendar used when a policy has no ``calendar`` section: UTC, Mon–Fri 09:00–18:00.
DEFAULT_CALENDAR: Calendar = Calendar.from_hours("UTC", {"mon-fri": ["09:00-18:00"]})

# ---------------------------------------------------------------------------------------------
# The ``calendar`` section of a rule file
# ---------------------------------------------------------------------------------------------


class HolidaySource(BaseModel):
    """National holidays from the ``holidays`` package: a country and an optional subdivision."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    country: str = Field(description="ISO 3166-1 alpha-2 code, e.g. CN, DE, US")
    subdivision: str | None = Field(
        default=None, description="e.g. BY for Bavaria, CA for California"
    )


def _default_hours() -> dict[str, tuple[str, ...]]:
    return {"mon-fri": ("09:00-18:00",)}


class CalendarSection(SectionModel):
    """The ``calendar`` section: zone, working hours, holidays, extra holidays and workdays."""

    timezone: str = Field(default="UTC", description="IANA time zone, e.g. Asia/Shanghai")
    working_hours: dict[str, tuple[str, ...]] = Field(
        default_factory=_default_hours,
        description="weekday (mon..sun) or range (mon-fri) -> intervals 'HH:MM-HH:MM'; "
        "a weekday not listed is closed",
    )
    holidays: HolidaySource | None = Field(
        default=None, description="national holidays; China's make-up workdays count as open"
    )
    extra_holidays: tuple[date, ...] = Field(default=(), description="dates that are closed")
    extra_workdays: tuple[date, ...] = Field(default=(), description="dates that are open")
    makeup_hours: tuple[str, ...] | None = Field(
        default=None,
        description="hours of an open day whose weekday has none (a make-up Saturday); "
        "default: the first listed weekday's hours",
    )


def compile_calendar(model: CalendarSection, ctx: CompileContext) -> Calendar:
    """Compile the ``calendar`` section, reporting SR131/SR132/SR133 through ``ctx``.

    Args:
        model: the validated section.
        ctx: the compile context (problems are reported there, never raised).

    Returns:
        The calendar; after an error, a best-effort calendar (the policy fails to load anyway).
    """
    base = ("calendar",)
    zone = model.timezone
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        names = sorted(available_timezones())
        by_lower = {n.lower(): n for n in names}
        close = difflib.get_close_matches(zone, names, n=1, cutoff=0.5)
        exact = by_lower.get(zone.lower())
        hint = f"did you mean '{exact or close[0]}'?" if exact or close else None
        ctx.error(
            "SR131",
            f"unknown time zone '{zone}'",
            (*base, "timezone"),
            hint=hint or "use an IANA name such as 'Asia/Shanghai' or 'Europe/Berlin'",
        )
        zone = "UTC"

    weekly: list[DayHours] = [()] * 7
    hours_bad = False
    for key, items in model.working_hours.items():
        path = (*base, "working_hours", key)
        days = _weekday_keys(key)
        if days is None:
            suggestion = _weekday_suggestion(key)
            ctx.error(
                "SR132",
                f"unknown weekday key '{key}'",
                path,
                key=True,
                hint=f"did you mean '{suggestion}'?"
                if suggestion
                else "use mon..sun or a forward range like mon-fri",
            )
            hours_bad = True
            continue
        parsed = _compile_intervals(items, path, ctx)
        hours_bad = hours_bad or (not parsed and bool(items))
        for d in days:
            if weekly[d]:
                ctx.error(
                    "SR132", f"weekday '{_WEEKDAYS[d]}' has hours given twice", path, key=True
                )
            weekly[d] = parsed
    if not any(weekly) and not hours_bad:
        ctx.error(
            "SR132",
            "no working hours on any weekday",
            (*base, "working_hours"),
            hint="e.g. working_hours: { mon-fri: ['09:00-18:00'] }",
        )
    makeup: DayHours | None = None
    if model.makeup_hours is not None:
        makeup = _compile_intervals(model.makeup_hours, (*base, "makeup_hours"), ctx) or None

    country = subdivision = None
    if model.holidays is not None:
        country, subdivision = _check_holidays(model.holidays, ctx)

    both = sorted(set(model.extra_holidays) & set(model.extra_workdays))
    for clash in both:
        ctx.error(
            "SR132",
            f"{clash.isoformat()} is both an extra holiday and an extra workday",
            (*base, "extra_workdays", model.extra_workdays.index(clash)),
        )

    if not any(weekly):
        weekly = list(DEFAULT_CALENDAR.weekly)
    return Calendar(
        zone,
        tuple(weekly),
        country,
        subdivision,
        frozenset(model.extra_holidays),
        frozenset(model.extra_workdays),
        makeup,
    )


def _compile_intervals(
    items: tuple[str, ...], path: tuple[Any, ...], ctx: CompileContext
) -> DayHours:
    try:
        return parse_intervals(list(items))
    except ValueError as exc:
        ctx.error(
            "SR132",
            str(exc),
            path,
            hint="intervals are 'HH:MM-HH:MM', in order, not overlapping, e.g. ['09:00-12:00', '13:30-18:00']",
        )
        return ()


def _check_holidays(src: HolidaySource, ctx: CompileContext) -> tuple[str | None, str | None]:
    import holidays

    supported = holidays.list_supported_countries(include_aliases=True)
    country = src.country.strip().upper()
    path = ("calendar", "holidays")
    if country not in supported:
        close = difflib.get_close_matches(country, list(supported), n=1, cutoff=0.5)
        ctx.error(
            "SR133",
            f"unknown country '{src.country}' for holidays",
            (*path, "country"),
            hint=f"did you mean '{close[0]}'?"
            if close
            else "use an ISO 3166-1 alpha-2 code such as CN",
        )
        return None, None
    subdivision = src.subdivision
    if subdivision is not None:
        try:
            holidays.country_holidays(country, subdiv=subdivision, years=2000)
        except (NotImplementedError, ValueError):
            options = supported[country]
            close = difflib.get_close_matches(subdivision.upper(), options, n=1, cutoff=0.5)
            ctx.error(
                "SR133",
                f"unknown subdivision '{subdivision}' of {country} for holidays",
                (*path, "subdivision"),
                hint=f"did you mean '{close[0]}'?"
                if close
                else (
                    f"known: {', '.join(options[:12])}"
                    if options
                    else f"{country} has no subdivisions"
                ),
            )
            return country, None
    return country, subdivision


# ---------------------------------------------------------------------------------------------
# The ``deadline`` request kind
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeadlineOutcome:
    """When a clock of a given duration, started at ``start``, runs out.

    Attributes:
        start: the start as given (in the calendar's zone).
        effective_start: where the clock really starts (the next opening for business time).
        duration: the duration's canonical text.
        business: whether the duration counts working time.
        deadline: when it runs out.
        overdue: whether ``now`` is at or after the deadline.
        remaining_seconds: time left from ``now`` to the deadline (working time for business
            durations, elapsed time otherwise), whole seconds toward zero; negative when overdue.
    """

    start: datetime
    effective_start: datetime
    duration: str
    business: bool
    deadline: datetime
    overdue: bool
    remaining_seconds: int

    def summary(self) -> str:
        """One line: ``deadline <iso> (<duration> from <start>)``."""
        state = "overdue" if self.overdue else f"{self.remaining_seconds}s left"
        return f"deadline {self.deadline.isoformat()} ({self.duration} from {self.start.isoformat()}; {state})"


def _request_time(request: Mapping[str, Any], key: str, default: datetime | None) -> datetime:
    raw = request.get(key)
    if raw is None:
        if default is None:
            raise RecordError("request", key, "missing")
        return default
    if isinstance(raw, datetime):
        value = raw
    elif isinstance(raw, str):
        try:
            value = datetime.fromisoformat(raw)
        except ValueError:
            raise RecordError("request", key, f"not an ISO 8601 datetime: {raw!r}") from None
    else:
        raise RecordError(
            "request", key, f"expected an ISO 8601 datetime, got {type(raw).__name__}"
        )
    return _check_aware(value, f"request.{key}")


def decide_deadline(
    policy: Any, request: Mapping[str, Any], now: datetime, explain: bool = False
) -> Decision[DeadlineOutcome]:
    """Compute a deadline with the policy's calendar (the ``deadline`` request kind).

    The request is ``{"kind": "deadline", "start": ISO (default: now), "duration": "2 business
    days"}``.

    Args:
        policy: a policy with ``.calendar`` and ``.digest``.
        request: the request mapping.
        now: the current instant (aware).
        explain: build a trace.

    Returns:
        A ``deadline`` decision whose ``next_check_at`` is the deadline.

    Raises:
        RecordError: ``now``/``start`` naive or malformed, or the duration invalid.
    """
    cal: Calendar = policy.calendar
    now = _check_aware(now, "now")
    start = _request_time(request, "start", now)
    text = request.get("duration")
    if not isinstance(text, str):
        raise RecordError(
            "request", "duration", "expected a duration text such as '2 business days'"
        )
    try:
        duration = parse_duration(text)
    except DurationError as exc:
        hint = f" ({exc.hint})" if exc.hint else ""
        raise RecordError("request", "duration", f"{exc}{hint}") from None
    if not duration.is_positive:
        raise RecordError("request", "duration", f"duration '{text}' must be positive")
    local_start = cal.local(start)
    effective = cal.next_opening(start) if duration.business else local_start
    deadline = cal.add(start, duration)
    # Subtract and compare in UTC: datetimes sharing a tzinfo do wall-clock arithmetic.
    now_utc, deadline_utc = now.astimezone(UTC), deadline.astimezone(UTC)
    remaining = cal.between(now, deadline) if duration.business else deadline_utc - now_utc
    outcome = DeadlineOutcome(
        start=local_start,
        effective_start=effective,
        duration=str(duration),
        business=duration.business,
        deadline=deadline,
        overdue=now_utc >= deadline_utc,
        remaining_seconds=int(remaining.total_seconds()),
    )
    shifted = effective.astimezone(UTC) != start.astimezone(UTC)
    reason = Reason(
        "deadline_computed",
        f"{duration} from {local_start.isoformat()} ends {deadline.isoformat()}"
        + (f" (clock starts at the next opening {effective.isoformat()})" if shifted else ""),
        data={
            "duration": str(duration),
            "timezone": cal.timezone,
            "start_outside_hours": shifted,
        },
    )
    trace = None
    if explain:
        tb = TraceBuilder()
        tb.add(TraceStatus.NOTE, f"calendar {cal.timezone}", values={"timezone": cal.timezone})
        if shifted:
            tb.add(
                TraceStatus.NOTE,
                f"start {local_start.isoformat()} is outside working hours; clock starts "
                f"{effective.isoformat()}",
            )
        tb.add(
            TraceStatus.MATCHED,
            f"{duration} ({'business' if duration.business else 'calendar'} time) -> "
            f"{deadline.isoformat()}",
            values={"deadline": deadline.isoformat(), "now": now.isoformat()},
        )
        trace = tb.build()
    return Decision(
        kind="deadline",
        outcome=outcome,
        reasons=(reason,),
        next_check_at=deadline,
        trace=trace,
        policy_digest=str(getattr(policy, "digest", "")),
    )


SECTION = SectionSpec(
    name="calendar",
    model=CalendarSection,
    compile=compile_calendar,
    kinds=MappingProxyType({"deadline": decide_deadline}),
    description="business calendar: time zone, working hours, holidays, make-up workdays",
)
