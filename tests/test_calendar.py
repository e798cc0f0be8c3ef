"""Tests of salesrules.calendar: worked cases, durations, the rule-file section, properties."""

from __future__ import annotations

import pickle
import threading
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import assume, given
from hypothesis import strategies as st

from salesrules.calendar import (
    DEFAULT_CALENDAR,
    SECTION,
    Calendar,
    CalendarSection,
    DeadlineOutcome,
    Duration,
    DurationError,
    compile_calendar,
    decide_deadline,
    parse_duration,
)
from salesrules.decision import Decision
from salesrules.errors import Issue, PolicyError, RecordError
from salesrules.policy import load_policy_string

SH = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
NY = ZoneInfo("America/New_York")

#: Mon–Fri 09:00–18:00 in Shanghai with a lunch break and China's holidays (调休 included).
CN = Calendar.from_hours("Asia/Shanghai", {"mon-fri": ["09:00-12:00", "13:30-18:00"]}, country="CN")
PLAIN = Calendar.from_hours("Asia/Shanghai", {"mon-fri": ["09:00-18:00"]})


def sh(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SH)


# -------------------------------------------------------------------------------------------
# Worked cases
# -------------------------------------------------------------------------------------------

WORKED = [
    # (note, calendar, start, duration, expected)
    (
        "Friday 17:00 + 1 business day = Monday 17:00",
        PLAIN,
        sh(2026, 12, 4, 17),
        "1 business day",
        sh(2026, 12, 7, 17),
    ),
    (
        "Friday 17:00 + 2 business days = Tuesday 17:00",
        PLAIN,
        sh(2026, 12, 4, 17),
        "2 business days",
        sh(2026, 12, 8, 17),
    ),
    (
        "a lead assigned on Saturday starts Monday 09:00",
        PLAIN,
        sh(2026, 12, 5, 10),
        "1 business day",
        sh(2026, 12, 8, 9),
    ),
    (
        "a lead assigned on Saturday, 4 business hours",
        PLAIN,
        sh(2026, 12, 5, 10),
        "4 business hours",
        sh(2026, 12, 7, 13),
    ),
    (
        "Friday 19:00 (after close) starts at the next opening",
        PLAIN,
        sh(2026, 12, 4, 19),
        "1 business day",
        sh(2026, 12, 8, 9),
    ),
    (
        "a full day of business hours ends at the close, not at midnight",
        PLAIN,
        sh(2026, 12, 7, 9),
        "9 business hours",
        sh(2026, 12, 7, 18),
    ),
    (
        "business hours ending at the lunch break stay at 12:00",
        CN,
        sh(2026, 12, 7, 9),
        "3 business hours",
        sh(2026, 12, 7, 12),
    ),
    (
        "business hours skip the lunch break",
        CN,
        sh(2026, 12, 7, 11),
        "2 business hours",
        sh(2026, 12, 7, 14, 30),
    ),
    (
        "a start inside the break starts at 13:30",
        CN,
        sh(2026, 12, 7, 12, 15),
        "30 business minutes",
        sh(2026, 12, 7, 14),
    ),
    (
        "business hours carry over the weekend",
        CN,
        sh(2026, 12, 4, 17),
        "2 business hours",
        sh(2026, 12, 7, 10),
    ),
    (
        "zero business days is the effective start",
        PLAIN,
        sh(2026, 12, 5, 10),
        "0 business days",
        sh(2026, 12, 7, 9),
    ),
    # China's National Day 2025: Oct 1–8 closed; Sun Sep 28 and Sat Oct 11 are make-up workdays.
    (
        "National Day 2025 week is skipped",
        CN,
        sh(2025, 9, 30, 10),
        "1 business day",
        sh(2025, 10, 9, 10),
    ),
    (
        "make-up Sunday 2025-09-28 is a working day",
        CN,
        sh(2025, 9, 26, 10),
        "1 business day",
        sh(2025, 9, 28, 10),
    ),
    (
        "make-up Saturday 2025-10-11 is a working day",
        CN,
        sh(2025, 10, 10, 16),
        "1 business day",
        sh(2025, 10, 11, 16),
    ),
    (
        "a lead assigned in the holiday starts on Oct 9",
        CN,
        sh(2025, 10, 5, 10),
        "4 business hours",
        sh(2025, 10, 9, 14, 30),
    ),
    # 2026: Oct 1–7 closed; Sun Sep 20 and Sat Oct 10 are make-up workdays.
    (
        "National Day 2026 week is skipped",
        CN,
        sh(2026, 9, 30, 9, 30),
        "1 business day",
        sh(2026, 10, 8, 9, 30),
    ),
    (
        "make-up Saturday 2026-10-10",
        CN,
        sh(2026, 10, 9, 17),
        "1 business day",
        sh(2026, 10, 10, 17),
    ),
    # Calendar time ignores working hours.
    ("3 days is calendar time", CN, sh(2025, 9, 30, 10), "3 days", sh(2025, 10, 3, 10)),
    ("P1DT12H", CN, sh(2026, 12, 3, 11), "P1DT12H", sh(2026, 12, 4, 23)),
    ("P1W", CN, sh(2026, 12, 3, 11), "P1W", sh(2026, 12, 10, 11)),
    ("PT8H", CN, sh(2026, 12, 3, 11), "PT8H", sh(2026, 12, 3, 19)),
    ("90 minutes", CN, sh(2026, 12, 3, 11), "90 minutes", sh(2026, 12, 3, 12, 30)),
    ("2 weeks", CN, sh(2026, 12, 3, 11), "2 weeks", sh(2026, 12, 17, 11)),
    ("P1M clamps to the month end", CN, sh(2026, 1, 31, 11), "P1M", sh(2026, 2, 28, 11)),
]


@pytest.mark.parametrize(
    ("cal", "start", "duration", "expected"),
    [pytest.param(c, s, d, e, id=n) for n, c, s, d, e in WORKED],
)
def test_worked_cases(cal: Calendar, start: datetime, duration: str, expected: datetime) -> None:
    got = cal.add(start, duration)
    assert got == expected
    assert got.tzinfo == cal.local(start).tzinfo
    assert str(got.tzinfo) == cal.timezone


def test_start_in_another_zone_is_converted() -> None:
    start = datetime(2026, 12, 4, 9, tzinfo=UTC)  # Friday 17:00 in Shanghai
    assert PLAIN.add(start, "1 business day") == sh(2026, 12, 7, 17)


def test_china_holiday_dates_come_from_the_holidays_package() -> None:
    for day in (date(2025, 10, d) for d in range(1, 9)):
        assert not CN.is_working_day(day)
    assert CN.is_working_day(date(2025, 9, 28))  # Sunday, make-up workday
    assert CN.is_working_day(date(2025, 10, 11))  # Saturday, make-up workday
    assert CN.is_working_day(date(2025, 10, 9))
    assert not CN.is_working_day(date(2025, 10, 12))  # an ordinary Sunday
    assert not PLAIN.is_working_day(date(2025, 9, 28))  # no holidays configured
    assert CN.is_working(sh(2025, 9, 28, 10))
    assert not CN.is_working(sh(2025, 10, 2, 10))


def test_shorter_next_day_clamps_to_its_close() -> None:
    cal = Calendar.from_hours("Europe/Berlin", {"mon-thu": ["09:00-18:00"], "fri": ["09:00-15:00"]})
    thu = datetime(2026, 12, 3, 17, tzinfo=BERLIN)
    assert cal.add(thu, "1 business day") == datetime(2026, 12, 4, 15, tzinfo=BERLIN)
    fri = datetime(2026, 12, 4, 14, 59, tzinfo=BERLIN)
    assert cal.add(fri, "1 business day") == datetime(2026, 12, 7, 14, 59, tzinfo=BERLIN)


def test_target_day_break_clamps_back_to_the_break_start() -> None:
    cal = Calendar.from_hours(
        "Asia/Shanghai", {"mon": ["09:00-18:00"], "tue": ["09:00-12:00", "14:00-18:00"]}
    )
    assert cal.add(sh(2026, 12, 7, 12, 30), "1 business day") == sh(2026, 12, 8, 12)
    assert cal.add(sh(2026, 12, 7, 14), "1 business day") == sh(2026, 12, 8, 14)


def test_target_day_opening_later_moves_up_to_its_opening() -> None:
    cal = Calendar.from_hours("Asia/Shanghai", {"mon": ["08:00-18:00"], "tue": ["10:00-18:00"]})
    assert cal.add(sh(2026, 12, 7, 8, 30), "1 business day") == sh(2026, 12, 8, 10)


def test_extra_holidays_and_workdays() -> None:
    cal = Calendar.from_hours(
        "Asia/Shanghai",
        {"mon-fri": ["09:00-18:00"]},
        extra_holidays={date(2026, 12, 31)},
        extra_workdays={date(2026, 12, 27)},  # a Sunday
        makeup_hours=["10:00-16:00"],
    )
    assert not cal.is_working_day(date(2026, 12, 31))
    assert cal.is_working_day(date(2026, 12, 27))
    assert cal.hours_on(date(2026, 12, 27)) == ((time(10), time(16)),)
    assert cal.add(sh(2026, 12, 30, 17), "1 business day") == sh(2027, 1, 1, 17)
    # Friday 17:00 -> the extra Sunday workday, clamped to its 16:00 close.
    assert cal.add(sh(2026, 12, 25, 17), "1 business day") == sh(2026, 12, 27, 16)


def test_extra_holiday_beats_extra_workday_and_national_makeup() -> None:
    cal = Calendar.from_hours(
        "Asia/Shanghai",
        {"mon-fri": ["09:00-18:00"]},
        country="CN",
        extra_holidays={date(2025, 9, 28)},
    )
    assert not cal.is_working_day(date(2025, 9, 28))
    cal2 = Calendar.from_hours(
        "Asia/Shanghai",
        {"mon-fri": ["09:00-18:00"]},
        country="CN",
        extra_workdays={date(2025, 10, 2)},
    )
    assert cal2.is_working_day(date(2025, 10, 2))


def test_makeup_day_uses_first_weekday_hours_by_default() -> None:
    assert CN.hours_on(date(2025, 9, 28)) == ((time(9), time(12)), (time(13, 30), time(18)))


def test_next_opening_and_is_working() -> None:
    assert CN.next_opening(sh(2026, 12, 7, 12, 30)) == sh(2026, 12, 7, 13, 30)
    assert CN.next_opening(sh(2026, 12, 7, 10)) == sh(2026, 12, 7, 10)
    assert CN.next_opening(sh(2026, 12, 7, 18)) == sh(2026, 12, 8, 9)
    assert CN.next_opening(sh(2026, 12, 5, 3)) == sh(2026, 12, 7, 9)
    assert CN.is_working(sh(2026, 12, 7, 9))  # opening instant is working
    assert not CN.is_working(sh(2026, 12, 7, 12))  # closing instant is not
    assert not CN.is_working(sh(2026, 12, 5, 10))


def test_between() -> None:
    a, b = sh(2026, 12, 4, 17), sh(2026, 12, 7, 10)  # Fri 17:00 -> Mon 10:00
    assert CN.between(a, b) == timedelta(hours=2)
    assert CN.between(b, a) == -timedelta(hours=2)
    assert CN.between(a, a) == timedelta(0)
    assert CN.between(sh(2026, 12, 7, 0), sh(2026, 12, 8, 0)) == timedelta(hours=7, minutes=30)


def test_hours_until_24_00() -> None:
    cal = Calendar.from_hours("UTC", {"mon-sun": ["00:00-24:00"]})
    start = datetime(2026, 12, 7, 12, tzinfo=UTC)
    assert cal.add(start, "12 business hours") == datetime(2026, 12, 8, tzinfo=UTC)
    assert cal.between(start, start + timedelta(days=3)) == timedelta(days=3)
    assert cal.hours_on(date(2026, 12, 7)) == ((time(0), None),)


# -------------------------------------------------------------------------------------------
# DST
# -------------------------------------------------------------------------------------------


def test_dst_spring_forward_berlin_business_hours() -> None:
    # 2026-03-29 (Sunday) 02:00 -> 03:00 in Berlin; open every day 09:00–18:00.
    cal = Calendar.from_hours("Europe/Berlin", {"mon-sun": ["09:00-18:00"]})
    sat = datetime(2026, 3, 28, 17, tzinfo=BERLIN)
    got = cal.add(sat, "2 business hours")
    assert got == datetime(2026, 3, 29, 10, tzinfo=BERLIN)
    assert got.utcoffset() == timedelta(hours=2)
    assert got.astimezone(UTC) - sat == timedelta(hours=16)  # real time: the night lost an hour
    assert cal.between(sat, got) == timedelta(hours=2)  # working time did not
    assert cal.add(sat, "1 business day") == datetime(2026, 3, 29, 17, tzinfo=BERLIN)


def test_dst_fall_back_berlin_business_hours() -> None:
    cal = Calendar.from_hours("Europe/Berlin", {"mon-sun": ["09:00-18:00"]})
    sat = datetime(2026, 10, 24, 17, tzinfo=BERLIN)
    got = cal.add(sat, "10 business hours")
    assert got == datetime(2026, 10, 25, 18, tzinfo=BERLIN)
    assert got.utcoffset() == timedelta(hours=1)
    assert cal.between(sat, got) == timedelta(hours=10)
    assert cal.between(
        datetime(2026, 10, 24, tzinfo=BERLIN), datetime(2026, 10, 27, tzinfo=BERLIN)
    ) == timedelta(hours=27)


def test_dst_round_the_clock_counts_real_time() -> None:
    cal = Calendar.from_hours("Europe/Berlin", {"mon-sun": ["00:00-24:00"]})
    sat = datetime(2026, 3, 28, 12, tzinfo=BERLIN)
    # 24 working hours of real time across the lost hour end at 13:00 local.
    assert cal.add(sat, "24 business hours") == datetime(2026, 3, 29, 13, tzinfo=BERLIN)
    # "1 day" is the same wall time the next day (23 real hours).
    assert cal.add(sat, "1 day") == datetime(2026, 3, 29, 12, tzinfo=BERLIN)
    assert cal.add(sat, "P1D").astimezone(UTC) - sat == timedelta(hours=23)
    assert cal.add(sat, "24 hours") == datetime(2026, 3, 29, 13, tzinfo=BERLIN)
    assert cal.add(sat, "1 business day") == datetime(2026, 3, 29, 12, tzinfo=BERLIN)
    assert cal.between(
        datetime(2026, 3, 29, tzinfo=BERLIN), datetime(2026, 3, 30, tzinfo=BERLIN)
    ) == timedelta(hours=23)


def test_dst_new_york() -> None:
    cal = Calendar.from_hours("America/New_York", {"mon-fri": ["09:00-17:00"]}, country="US")
    fri = datetime(2026, 3, 6, 16, tzinfo=NY)  # DST starts Sunday 2026-03-08
    assert cal.add(fri, "1 business day") == datetime(2026, 3, 9, 16, tzinfo=NY)
    assert cal.add(fri, "2 business hours") == datetime(2026, 3, 9, 10, tzinfo=NY)
    # Thanksgiving 2026-11-26 is a federal holiday.
    assert not cal.is_working_day(date(2026, 11, 26))
    wed = datetime(2026, 11, 25, 12, tzinfo=NY)
    assert cal.add(wed, "1 business day") == datetime(2026, 11, 27, 12, tzinfo=NY)


# -------------------------------------------------------------------------------------------
# Naive datetimes
# -------------------------------------------------------------------------------------------

NAIVE = datetime(2026, 12, 7, 10)


@pytest.mark.parametrize(
    "call",
    [
        lambda: CN.add(NAIVE, "1 business day"),
        lambda: CN.add(NAIVE, "P1D"),
        lambda: CN.between(NAIVE, sh(2026, 12, 7, 10)),
        lambda: CN.between(sh(2026, 12, 7, 10), NAIVE),
        lambda: CN.is_working(NAIVE),
        lambda: CN.next_opening(NAIVE),
        lambda: CN.local(NAIVE),
    ],
)
def test_naive_datetimes_raise_record_error(call: Any) -> None:
    with pytest.raises(RecordError):
        call()


def test_record_error_names_what() -> None:
    with pytest.raises(RecordError) as info:
        CN.add(NAIVE, "1 business day", what="lead.assigned_at")
    assert (info.value.record, info.value.field) == ("lead", "assigned_at")
    with pytest.raises(RecordError) as info2:
        CN.is_working(NAIVE)
    assert info2.value.record == "now"


def test_negative_business_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        CN.add(sh(2026, 12, 7, 10), Duration("business_days", -1, business=True))


# -------------------------------------------------------------------------------------------
# Durations
# -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "unit", "amount", "business", "canonical"),
    [
        ("1 business day", "business_days", 1, True, "1 business day"),
        ("2 business days", "business_days", 2, True, "2 business days"),
        ("2  Business  Days", "business_days", 2, True, "2 business days"),
        ("4 business hours", "business_hours", 4, True, "4 business hours"),
        ("30 business minutes", "business_minutes", 30, True, "30 business minutes"),
        ("90 minutes", "minutes", 90, False, "90 minutes"),
        ("2 hours", "hours", 2, False, "2 hours"),
        ("1 hours", "hours", 1, False, "1 hour"),
        ("3 days", "days", 3, False, "3 days"),
        ("2 weeks", "weeks", 2, False, "2 weeks"),
        ("1 month", "months", 1, False, "1 month"),
        ("0 days", "days", 0, False, "0 days"),
        ("-2 days", "days", -2, False, "-2 days"),
        ("P3D", "days", 3, False, "P3D"),
        ("PT8H", "hours", 8, False, "PT8H"),
        ("P1W", "weeks", 1, False, "P1W"),
        ("p1w", "weeks", 1, False, "P1W"),
        ("PT90M", "minutes", 90, False, "PT90M"),
        ("P1Y2M", "years", 1, False, "P1Y2M"),
        ("-P1D", "days", -1, False, "-P1D"),
    ],
)
def test_parse_duration_good(
    text: str, unit: str, amount: int, business: bool, canonical: str
) -> None:
    d = parse_duration(text)
    assert (d.unit, d.amount, d.business) == (unit, amount, business)
    assert str(d) == canonical
    assert parse_duration(str(d)) == d


def test_parse_compound_iso() -> None:
    d = parse_duration("P1DT12H")
    assert d.components == (("days", 1), ("hours", 12))
    assert str(d) == "P1DT12H"
    assert d.is_positive
    assert parse_duration("P1DT12H30M15S").components == (
        ("days", 1),
        ("hours", 12),
        ("minutes", 30),
        ("seconds", 15),
    )


@pytest.mark.parametrize(
    ("text", "positive"),
    [("1 business day", True), ("0 business hours", False), ("-3 days", False), ("PT0S", False)],
)
def test_is_positive(text: str, positive: bool) -> None:
    assert parse_duration(text).is_positive is positive


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "banana",
        "2",
        "days",
        "1.5 hours",
        "2h",
        "2 working days",
        "3 dayz",
        "2 business weeks",
        "P",
        "PT",
        "P1.5D",
        "P8H",
        "PT1D",
        "P1D2",
        "1 day and 2 hours",
    ],
)
def test_parse_duration_bad(text: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(text)
    assert info.value.hint
    assert isinstance(info.value, ValueError)


def test_parse_duration_rejects_non_text() -> None:
    with pytest.raises(DurationError):
        parse_duration(3)  # type: ignore[arg-type]


def test_duration_consistency_is_checked() -> None:
    with pytest.raises(ValueError, match="business"):
        Duration("days", 1, business=True)


# -------------------------------------------------------------------------------------------
# Calendar object
# -------------------------------------------------------------------------------------------


def test_default_calendar() -> None:
    assert DEFAULT_CALENDAR.timezone == "UTC"
    assert DEFAULT_CALENDAR.country is None
    mon = date(2026, 12, 7)
    assert DEFAULT_CALENDAR.hours_on(mon) == ((time(9), time(18)),)
    assert not DEFAULT_CALENDAR.is_working_day(date(2026, 12, 5))


def test_calendar_is_frozen_hashable_and_picklable() -> None:
    again = Calendar.from_hours(
        "Asia/Shanghai", {"mon-fri": ["09:00-12:00", "13:30-18:00"]}, country="CN"
    )
    assert again == CN
    assert hash(again) == hash(CN)
    with pytest.raises(AttributeError):
        CN.timezone = "UTC"  # type: ignore[misc]
    copy = pickle.loads(pickle.dumps(CN))  # noqa: S301 - our own bytes
    assert copy == CN
    assert copy.add(sh(2025, 9, 30, 10), "1 business day") == sh(2025, 10, 9, 10)


@pytest.mark.parametrize(
    "hours",
    [
        {"mon": ["09:00-12:00", "11:00-13:00"]},
        {"mon": ["18:00-09:00"]},
        {"mon": ["9-18"]},
        {"mon": ["09:00-25:00"]},
        {"funday": ["09:00-18:00"]},
        {"fri-mon": ["09:00-18:00"]},
        {"mon-fri": ["09:00-18:00"], "fri": ["10:00-12:00"]},
        {},
    ],
)
def test_from_hours_rejects_bad_hours(hours: dict[str, list[str]]) -> None:
    with pytest.raises(ValueError):
        Calendar.from_hours("UTC", hours)


def test_concurrent_use_gives_the_same_answers() -> None:
    reference = Calendar.from_hours("Asia/Shanghai", {"mon-fri": ["09:00-18:00"]}, country="CN")
    cal = Calendar.from_hours("Asia/Shanghai", {"mon-fri": ["09:00-18:00"]}, country="CN")
    starts = [sh(2025, 1, 1, 8) + timedelta(hours=7 * i) for i in range(400)]
    expected = [reference.add(s, "3 business days") for s in starts]
    results: list[list[datetime]] = []

    def work() -> None:
        results.append([cal.add(s, "3 business days") for s in starts])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r == expected for r in results)


# -------------------------------------------------------------------------------------------
# The rule-file section
# -------------------------------------------------------------------------------------------


class FakeContext:
    """Records ``error`` calls like CompileContext does."""

    def __init__(self) -> None:
        self.issues: list[Issue] = []
        self.paths: list[tuple[Any, ...]] = []

    def error(self, code: str, message: str, path: tuple[Any, ...], **kw: Any) -> None:
        self.issues.append(Issue(code, message, None, kw.get("rule_id"), kw.get("hint")))
        self.paths.append(path)

    @property
    def codes(self) -> list[str]:
        return [i.code for i in self.issues]


def _compile(**data: Any) -> tuple[Calendar, FakeContext]:
    ctx = FakeContext()
    cal = compile_calendar(CalendarSection.model_validate(data), ctx)  # type: ignore[arg-type]
    return cal, ctx


def test_compile_full_section() -> None:
    cal, ctx = _compile(
        timezone="Asia/Shanghai",
        working_hours={"mon-fri": ["09:00-12:00", "13:30-18:00"]},
        holidays={"country": "CN"},
        extra_holidays=["2026-12-31"],
        extra_workdays=["2026-12-27"],
    )
    assert ctx.codes == []
    assert cal.country == "CN"
    assert not cal.is_working_day(date(2026, 12, 31))
    assert cal.is_working_day(date(2026, 12, 27))
    assert cal.is_working_day(date(2025, 9, 28))


def test_compile_defaults() -> None:
    cal, ctx = _compile()
    assert ctx.codes == []
    assert cal == DEFAULT_CALENDAR


def test_compile_unknown_time_zone_suggests() -> None:
    _, ctx = _compile(timezone="Asia/Shangai")
    assert ctx.codes == ["SR131"]
    assert ctx.issues[0].hint is not None
    assert "Asia/Shanghai" in ctx.issues[0].hint
    _, ctx2 = _compile(timezone="asia/shanghai")
    assert ctx2.codes == ["SR131"]
    assert ctx2.issues[0].hint is not None
    assert "Asia/Shanghai" in ctx2.issues[0].hint


@pytest.mark.parametrize(
    "hours",
    [
        {"mon": ["09:00-12:00", "11:00-13:00"]},
        {"mon": ["18:00-09:00"]},
        {"mon": ["9 to 5"]},
        {"monday": ["09:00-18:00"]},
        {"mon-fri": ["09:00-18:00"], "fri": ["10:00-12:00"]},
        {},
    ],
)
def test_compile_invalid_working_hours(hours: dict[str, list[str]]) -> None:
    cal, ctx = _compile(working_hours=hours)
    assert ctx.codes
    assert set(ctx.codes) == {"SR132"}
    assert any(cal.weekly)  # a usable calendar comes back even so


def test_compile_extra_date_in_both_lists() -> None:
    _, ctx = _compile(extra_holidays=["2026-12-31"], extra_workdays=["2026-12-31"])
    assert ctx.codes == ["SR132"]


@pytest.mark.parametrize(
    "holidays",
    [
        {"country": "XX"},
        {"country": "CN", "subdivision": "ZZ"},
        {"country": "US", "subdivision": "QQ"},
    ],
)
def test_compile_unknown_country_or_subdivision(holidays: dict[str, str]) -> None:
    _, ctx = _compile(holidays=holidays)
    assert ctx.codes == ["SR133"]


def test_compile_known_subdivision() -> None:
    cal, ctx = _compile(timezone="Europe/Berlin", holidays={"country": "DE", "subdivision": "BY"})
    assert ctx.codes == []
    assert not cal.is_working_day(date(2026, 1, 6))  # Epiphany, a Bavarian holiday


def test_section_model_forbids_unknown_keys() -> None:
    with pytest.raises(ValueError, match="extra"):
        CalendarSection.model_validate({"timezone": "UTC", "workhours": {}})


def test_section_spec() -> None:
    assert SECTION.name == "calendar"
    assert SECTION.model is CalendarSection
    assert "deadline" in SECTION.kinds


# -------------------------------------------------------------------------------------------
# The deadline request kind
# -------------------------------------------------------------------------------------------

POLICY = SimpleNamespace(calendar=PLAIN, digest="abc123")


def test_decide_deadline() -> None:
    now = sh(2026, 12, 7, 10)
    request = {
        "kind": "deadline",
        "start": "2026-12-04T17:00:00+08:00",
        "duration": "1 business day",
    }
    decision = decide_deadline(POLICY, request, now, True)
    out = decision.outcome
    assert isinstance(out, DeadlineOutcome)
    assert out.deadline == sh(2026, 12, 7, 17)
    assert out.effective_start == out.start == sh(2026, 12, 4, 17)
    assert not out.overdue
    assert out.remaining_seconds == 7 * 3600
    assert decision.reason_codes == ("deadline_computed",)
    assert decision.next_check_at == out.deadline
    assert decision.trace is not None
    assert decision.policy_digest == "abc123"
    again = Decision.from_json(decision.to_json())
    assert again == decision
    assert "deadline" in str(decision)


def test_decide_deadline_start_defaults_to_now_and_shifts() -> None:
    now = sh(2026, 12, 5, 10)  # Saturday
    decision = decide_deadline(
        POLICY, {"kind": "deadline", "duration": "4 business hours"}, now, False
    )
    assert decision.outcome.effective_start == sh(2026, 12, 7, 9)
    assert decision.outcome.deadline == sh(2026, 12, 7, 13)
    assert decision.trace is None
    assert decision.reasons[0].data["start_outside_hours"] is True


def test_decide_deadline_calendar_duration_and_overdue() -> None:
    now = sh(2026, 12, 10, 10)
    decision = decide_deadline(
        POLICY, {"start": "2026-12-07T10:00:00+08:00", "duration": "P2D"}, now, False
    )
    assert decision.outcome.deadline == sh(2026, 12, 9, 10)
    assert decision.outcome.overdue
    assert decision.outcome.remaining_seconds == -24 * 3600


@pytest.mark.parametrize(
    ("request_", "now", "field"),
    [
        ({"duration": "1 business day"}, NAIVE, "now"),
        ({"start": "2026-12-07T10:00:00", "duration": "1 business day"}, sh(2026, 12, 7), "start"),
        ({"start": "yesterday", "duration": "1 business day"}, sh(2026, 12, 7), "start"),
        ({"start": 5, "duration": "1 business day"}, sh(2026, 12, 7), "start"),
        ({"duration": "2 working days"}, sh(2026, 12, 7), "duration"),
        ({"duration": "0 days"}, sh(2026, 12, 7), "duration"),
        ({}, sh(2026, 12, 7), "duration"),
    ],
)
def test_decide_deadline_bad_requests(request_: dict[str, Any], now: datetime, field: str) -> None:
    with pytest.raises(RecordError) as info:
        decide_deadline(POLICY, request_, now, False)
    assert info.value.field == field


# -------------------------------------------------------------------------------------------
# Properties
# -------------------------------------------------------------------------------------------

_ZONES = ["Asia/Shanghai", "Europe/Berlin", "America/New_York", "UTC"]


@st.composite
def calendars(draw: st.DrawFn) -> Calendar:
    """Random calendars: 1–3 intervals per open weekday between 05:00 and 23:00."""
    zone = draw(st.sampled_from(_ZONES))
    hours: dict[str, list[str]] = {}
    for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"):
        if not draw(st.booleans()) and day in ("sat", "sun"):
            continue
        cuts = sorted(draw(st.sets(st.integers(5 * 4, 23 * 4), min_size=2, max_size=6)))
        if len(cuts) % 2:
            cuts = cuts[:-1]
        hours[day] = [
            f"{a // 4:02d}:{a % 4 * 15:02d}-{b // 4:02d}:{b % 4 * 15:02d}"
            for a, b in zip(cuts[::2], cuts[1::2], strict=True)
        ]
    country = draw(st.sampled_from([None, "CN", "DE"]))
    extra = draw(st.sets(st.dates(date(2025, 1, 1), date(2026, 12, 31)), max_size=5))
    return Calendar.from_hours(zone, hours, country=country, extra_holidays=extra)


instants = st.datetimes(datetime(2025, 1, 1), datetime(2026, 12, 31), timezones=st.just(UTC)).map(
    lambda t: t.replace(microsecond=0)
)
business = st.one_of(
    st.builds(lambda n: Duration("business_days", n, business=True), st.integers(0, 30)),
    st.builds(lambda n: Duration("business_hours", n, business=True), st.integers(0, 120)),
    st.builds(lambda n: Duration("business_minutes", n, business=True), st.integers(0, 2000)),
)


def _at_work_or_close(cal: Calendar, t: datetime) -> bool:
    return cal.is_working(t) or (
        cal.is_working(t - timedelta(microseconds=1)) and not cal.is_working(t)
    )


@given(calendars(), instants, business)
def test_business_deadlines_fall_in_working_hours(
    cal: Calendar, start: datetime, d: Duration
) -> None:
    got = cal.add(start, d)
    assert got >= start
    assert str(got.tzinfo) == cal.timezone
    assert _at_work_or_close(cal, got)


@given(calendars(), instants, instants, business)
def test_add_is_monotone_in_start(cal: Calendar, a: datetime, b: datetime, d: Duration) -> None:
    a, b = min(a, b), max(a, b)
    # Compare in UTC: two datetimes sharing a tzinfo compare by wall clock, ignoring fold.
    assert cal.add(a, d).astimezone(UTC) <= cal.add(b, d).astimezone(UTC)


@given(
    calendars(),
    instants,
    st.integers(0, 40),
    st.integers(0, 40),
    st.sampled_from(["business_days", "business_hours"]),
)
def test_add_is_monotone_in_duration(
    cal: Calendar, start: datetime, m: int, n: int, unit: Any
) -> None:
    m, n = min(m, n), max(m, n)
    early = cal.add(start, Duration(unit, m, business=True)).astimezone(UTC)
    assert early <= cal.add(start, Duration(unit, n, business=True)).astimezone(UTC)


@given(calendars(), instants, st.integers(0, 200 * 60))
def test_between_inverts_business_minutes(cal: Calendar, start: datetime, minutes: int) -> None:
    d = Duration("business_minutes", minutes, business=True)
    assert cal.between(start, cal.add(start, d)) == timedelta(minutes=minutes)


@given(calendars(), instants)
def test_next_opening(cal: Calendar, t: datetime) -> None:
    opening = cal.next_opening(t)
    assert opening >= t
    assert cal.is_working(opening)
    assert cal.between(t, opening) == timedelta(0)


@given(calendars(), instants, instants)
def test_between_is_antisymmetric_and_bounded(cal: Calendar, a: datetime, b: datetime) -> None:
    forward = cal.between(a, b)
    assert forward == -cal.between(b, a)
    assert abs(forward) <= abs(b - a)


@given(calendars(), instants, st.integers(1, 30))
def test_business_day_lands_on_a_working_day(cal: Calendar, start: datetime, n: int) -> None:
    got = cal.add(start, Duration("business_days", n, business=True))
    assume(cal.is_working(got) or cal.local(got).time() != time(0))
    assert cal.is_working_day(cal.local(got).date())
    eff = cal.next_opening(start)
    assert cal.working_days_after(cal.local(eff).date(), n) == cal.local(got).date()


@given(instants.map(lambda t: t.replace(tzinfo=None)))
def test_naive_always_raises(t: datetime) -> None:
    with pytest.raises(RecordError):
        CN.add(t, "1 business day")


# -------------------------------------------------------------------------------------------
# Golden cases through the policy loader, and located issues
# -------------------------------------------------------------------------------------------

GOLDEN = Path(__file__).parent / "golden" / "calendar"


def _golden() -> list[Any]:
    params = []
    for path in sorted(GOLDEN.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        params.append(pytest.param(path.name, data, id=f"{path.stem}: {data['note']}"))
    return params


@pytest.mark.parametrize(("name", "data"), _golden())
def test_golden_cases(name: str, data: dict[str, Any]) -> None:
    text = yaml.safe_dump({"version": 1, **data["policy"]}, allow_unicode=True)
    policy = load_policy_string(text, filename=name)
    assert data["cases"]
    for case in data["cases"]:
        start = datetime.fromisoformat(case["start"])
        want = datetime.fromisoformat(case["want"])
        got = policy.calendar.add(start, case["duration"])
        assert (got.isoformat(), case["duration"]) == (want.isoformat(), case["duration"])
        decision = decide_deadline(
            policy, {"start": case["start"], "duration": case["duration"]}, start, False
        )
        assert decision.outcome.deadline == got


BROKEN = """\
version: 1
calendar:
  timezone: Asia/Shangai
  working_hours:
    mon-fry: ["09:00-12:00"]
    tue: ["9-5"]
    wed: ["09:00-12:00", "11:30-18:00"]
  holidays: { country: CN, subdivision: ZZ }
"""


def test_policy_reports_located_calendar_issues() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy_string(BROKEN, filename="cal.yaml")
    issues = info.value.issues
    assert [i.code for i in issues] == ["SR131", "SR132", "SR132", "SR132", "SR133"]
    assert [i.location.line for i in issues if i.location] == [3, 5, 6, 7, 8]
    assert all(i.hint for i in issues)


def test_policy_without_calendar_uses_default() -> None:
    policy = load_policy_string("version: 1\n")
    assert policy.calendar == DEFAULT_CALENDAR
