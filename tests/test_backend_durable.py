"""DurableTable (durable-rules backend) answers exactly like RuleTable.first.

Skipped when durable-rules is not importable (it is the optional ``durable`` extra and does not
import on CPython 3.13).
"""

from __future__ import annotations

import gc
import sys
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip(
    "durable.lang",
    reason="durable-rules (the optional 'durable' extra, CPython <= 3.12) is not importable",
)

from salesrules.backends.durable import DurableTable, DurableUnavailableError
from salesrules.conditions import RuleTable, compile_condition
from salesrules.errors import SalesRulesError

ROOTS = frozenset({"lead", "creator"})


def table(specs: list[Any]) -> tuple[RuleTable[str], DurableTable[str]]:
    rows = [(compile_condition(s, roots=ROOTS), f"p{i}") for i, s in enumerate(specs)]
    rt = RuleTable(rows)
    return rt, DurableTable.from_table(rt)


def same(rt: RuleTable[str], dt: DurableTable[str], leads: list[Any]) -> None:
    for lead in leads:
        ctx = lead if isinstance(lead, dict) and "lead" in lead else {"lead": lead}
        assert dt.first(ctx) == rt.first(ctx), ctx


# --- unit tests ------------------------------------------------------------------------------


def test_basic_first_match_and_unknowns() -> None:
    rt, dt = table(
        [
            {"lead.region": "east", "lead.n": {"ge": 10, "lt": 100}},
            {"lead.source": {"in": ["web", "ref", 3]}},
            {"not": {"lead.x": {"in": [1, 2]}}},
            {"lead.n": {"ne": 5}},
            {},
        ]
    )
    assert dt.describe()["durable_rows"] == 5
    assert dt.first({"lead": {"region": "east", "n": 50}}) == (0, "p0")
    # a string "50" is not a number: unknown, so row 0 does not match; source 3 is in the list
    assert dt.first({"lead": {"region": "east", "n": "50", "source": 3}}) == (1, "p1")
    assert dt.first({"lead": {"x": 5}}) == (2, "p2")
    # x missing: `not in` is unknown; n missing: `ne` is unknown -> only the catch-all
    assert dt.first({"lead": {}}) == (4, "p4")
    assert dt.first({"lead": {"x": "5", "n": 5}}) == (4, "p4")
    assert dt.first({"lead": {"x": "5", "n": 6}}) == (3, "p3")
    same(rt, dt, [{}, {"n": None}, {"x": None, "n": 5.5}, {"region": "east", "n": 10.0}])


def test_no_match_is_none() -> None:
    _, dt = table([{"lead.a": 1}, {"lead.b": {"exists": True}}])
    assert dt.first({"lead": {"a": 2}}) is None
    assert dt.first({"lead": "not a mapping"}) is None
    assert dt.first({}) is None
    assert dt.first({"lead": {"b": 0}}) == (1, "p1")


def test_exists_missing_and_null() -> None:
    rt, dt = table(
        [
            {"lead.a": {"missing": True}, "lead.b": {"exists": True}},
            {"not": {"lead.a": {"exists": True}}},
            {"lead.a": {"exists": True}},
        ]
    )
    assert dt.first({"lead": {"a": None, "b": 1}}) == (0, "p0")
    assert dt.first({"lead": {"b": None}}) == (1, "p1")
    assert dt.first({"lead": {"a": [1]}}) == (2, "p2")
    same(rt, dt, [{"a": 0}, {"a": None}, {"b": False}, {}])


def test_unsupported_rows_run_on_the_pure_matcher() -> None:
    rt, dt = table(
        [
            {"lead.s": {"starts_with": "ab"}},
            {"lead.a": {"ref": "creator.a"}},
            {"lead.n": {"gt": 2**60}},
            {"lead.s": {"lt": "a b"}},  # a space sorts below durable's string terminator
            {"lead.n": {"eq": 1}},
        ]
    )
    d = dt.describe()
    assert sorted(d["pure_rows"]) == [0, 1, 2, 3]
    assert d["durable_rows"] == 1
    same(
        rt,
        dt,
        [
            {"lead": {"s": "abc", "n": 1}},
            {"lead": {"a": 3, "n": 1}, "creator": {"a": 3}},
            {"lead": {"n": 2**61}},
            {"lead": {"s": "a", "n": 1}},
            {"lead": {"s": "a!", "n": 1}},
            {"lead": {"n": 1}},
        ],
    )


def test_values_durable_cannot_compare_fall_back_per_context() -> None:
    rt, dt = table([{"lead.n": {"ge": 10}}, {"lead.s": {"gt": "m"}}, {"lead.n": 3}])
    same(
        rt,
        dt,
        [
            {"n": 2**60},  # beyond exact float range
            {"n": 1e-7},  # JSON exponent form: durable's parser rejects it
            {"n": 1e17},
            {"n": Decimal("10.1")},  # not exactly a float
            {"n": Decimal("3")},
            {"n": float("inf")},
            {"n": float("nan")},
            {"s": 'z"z'},
            {"s": "z\\"},
            {"s": "z\n"},
            {"s": "\ud800"},
            {"s": "zzz"},
        ],
    )


def test_long_strings_are_compared_exactly() -> None:
    long = "a" * 70_000
    rt, dt = table([{"lead.s": "a"}, {"lead.s": long}, {"lead.t": long[:20_000]}])
    assert 1 in dt.describe()["pure_rows"]
    same(rt, dt, [{"s": "a"}, {"s": long}, {"s": "a" * 65_537}, {"t": long[:20_000]}])


def test_dates_datetimes_bools_and_mixed_lists() -> None:
    t0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
    rt, dt = table(
        [
            {
                "lead.at": {
                    "between": [
                        {"datetime": "2026-01-01T09:00:00+01:00"},
                        {"datetime": "2026-01-01T10:00:00Z"},
                    ]
                }
            },
            {"lead.day": {"lt": {"date": "2026-03-01"}}},
            {"lead.flag": {"in": [True, "yes", 1]}},
            {"lead.flag": {"ne": False}},
        ]
    )
    cet = timezone(timedelta(hours=1))
    same(
        rt,
        dt,
        [
            {"at": t0},
            {"at": t0 + timedelta(microseconds=1)},
            {"at": datetime(2026, 1, 1, 11, 0, tzinfo=cet)},
            {"at": datetime(2026, 1, 1, 8, 0)},  # naive: no type class
            {"day": date(2026, 2, 28)},
            {"day": date(2026, 3, 1)},
            {"day": t0},
            {"flag": True},
            {"flag": 1},
            {"flag": 1.0},
            {"flag": "yes"},
            {"flag": False},
            {"flag": 0},
        ],
    )


def test_nested_negations() -> None:
    spec = {
        "not": {
            "any": [
                {"lead.a": {"between": [1, 5]}},
                {"all": [{"lead.b": "x"}, {"not": {"lead.c": {"not_in": ["p", "q"]}}}]},
            ]
        }
    }
    rt, dt = table([spec, {"lead.z": {"exists": False}}])
    vals: list[Any] = [None, 0, 3, 7, "x", "p", True]
    leads = [
        {k: v for k, v in (("a", a), ("b", b), ("c", c)) if v is not None}
        for a in vals
        for b in vals
        for c in vals
    ]
    same(rt, dt, leads)


def test_names_are_unique_and_close_falls_back() -> None:
    _, dt1 = table([{"lead.a": 1}])
    rt2, dt2 = table([{"lead.a": 1}])
    assert dt1.name != dt2.name
    assert dt1.name.startswith("salesrules_")
    dt1.close()
    assert dt1.first({"lead": {"a": 1}}) == (0, "p0")
    assert dt2.first({"lead": {"a": 1}}) == (0, "p0")
    with DurableTable(rt2.rows) as dt3:
        assert dt3.first({"lead": {"a": 2}}) is None


def test_rows_and_table_must_agree() -> None:
    rt, _ = table([{"lead.a": 1}])
    with pytest.raises(ValueError):
        DurableTable([], table=rt)


def test_rows_that_could_overflow_the_match_stack_run_pure() -> None:
    # 100 ranges that all hold for n=1000 would overflow durable's 64-entry match stack
    rt, dt = table([{"lead.n": {"ge": i}} for i in range(100, 0, -1)])
    d = dt.describe()
    assert 0 < d["durable_rows"] < 100
    assert "match stack" in next(iter(d["pure_rows"].values()))
    same(rt, dt, [{"n": 1000}, {"n": 50}, {"n": 3}, {"n": 0}, {"n": 1000}])
    assert dt.describe()["active"]


def test_an_engine_error_switches_the_table_to_the_pure_matcher(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rt, dt = table([{"lead.a": 1}, {"lead.b": {"missing": True}}])
    engine = dt._engine

    def broken(*args: Any) -> Any:
        raise engine.error("simulated")

    monkeypatch.setattr(engine, "assert_event", broken)
    assert dt.first({"lead": {"a": 1}}) == (0, "p0")
    assert not dt.describe()["active"]
    monkeypatch.undo()
    same(rt, dt, [{"a": 1}, {"a": 2}, {"b": 1}])


def test_wide_tables_stay_inside_durable_limits() -> None:
    # 600 distinct values of one field would fill a 512-entry durable hash set (and hang it)
    specs = [{"lead.a": i} for i in range(600)] + [{"lead.a": "x"}] * 300
    rt, dt = table(specs)
    d = dt.describe()
    assert d["durable_rows"] < len(specs)
    same(rt, dt, [{"a": 5}, {"a": 599}, {"a": 450}, {"a": "x"}, {"a": -1}])


def test_missing_engine_raises_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "durable_rules_engine", None)
    with pytest.raises(DurableUnavailableError, match="durable") as info:
        DurableTable([])
    assert isinstance(info.value, SalesRulesError)
    assert isinstance(info.value, ImportError)


def test_garbage_collected_tables_free_their_handles() -> None:
    for _ in range(50):
        _, dt = table([{"lead.a": 1}])
        assert dt.first({"lead": {"a": 1}}) == (0, "p0")
        del dt
    gc.collect()


# --- differential property test --------------------------------------------------------------

FIELDS = ["region", "source", "industry", "employee_count", "flag"]
STRS = st.sampled_from(["east", "west", "web", "x y", 'q"', "a\\b", "é", "z!", ""])
NUMS = st.one_of(
    st.integers(-5, 5000),
    st.sampled_from([0.5, 10.0, 2**53, 2**53 + 1, 1e-5, 1e20, Decimal("7"), Decimal("0.1")]),
)
SCALARS = st.one_of(STRS, NUMS, st.booleans())


def leaf() -> st.SearchStrategy[Any]:
    f = st.sampled_from(FIELDS).map(lambda x: f"lead.{x}")
    cmp_op = st.sampled_from(["eq", "ne", "lt", "le", "gt", "ge"])
    ordered = st.one_of(STRS, NUMS)
    return st.one_of(
        st.builds(lambda k, v: {k: v}, f, SCALARS),
        st.builds(lambda k, o, v: {k: {o: v}}, f, st.sampled_from(["eq", "ne"]), SCALARS),
        st.builds(lambda k, o, v: {k: {o: v}}, f, cmp_op, ordered),
        st.builds(
            lambda k, o, vs: {k: {o: vs}},
            f,
            st.sampled_from(["in", "not_in"]),
            st.lists(SCALARS, min_size=1, max_size=3),
        ),
        st.builds(
            lambda k, a, b: {k: {"between": sorted([a, b])}},
            f,
            st.integers(0, 5000),
            st.integers(0, 5000),
        ),
        st.builds(
            lambda k, o, b: {k: {o: b}}, f, st.sampled_from(["exists", "missing"]), st.booleans()
        ),
    )


CONDITION = st.recursive(
    leaf(),
    lambda inner: st.one_of(
        st.lists(inner, min_size=0, max_size=3).map(lambda xs: {"all": xs}),
        st.lists(inner, min_size=0, max_size=3).map(lambda xs: {"any": xs}),
        inner.map(lambda x: {"not": x}),
    ),
    max_leaves=6,
)

LEAD = st.dictionaries(
    st.sampled_from(FIELDS), st.one_of(st.none(), SCALARS, st.just([1])), max_size=5
)


def _compiles(spec: Any) -> bool:
    try:
        compile_condition(spec, roots=ROOTS)
    except SalesRulesError:
        return False
    return True


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(CONDITION.filter(_compiles), min_size=1, max_size=12),
    st.lists(LEAD, min_size=1, max_size=25),
)
def test_differential_random_tables(specs: list[Any], leads: list[dict[str, Any]]) -> None:
    rt, dt = table(specs)
    try:
        same(rt, dt, leads)
    finally:
        dt.close()


PEERS = Path(__file__).resolve().parents[2] / "shared" / "bench" / "peers"


def _peer_spec(rule: dict[str, Any]) -> dict[str, Any]:
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


@pytest.mark.skipif(not (PEERS / "workload.py").is_file(), reason="peer workload not present")
def test_peer_workload_200_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(PEERS))
    import workload  # type: ignore[import-not-found]

    rules = workload.make_rules(200)
    ordered = workload.by_priority(rules)
    rt, dt = table([_peer_spec(r) for r in ordered])
    assert dt.describe()["durable_rows"] == len(ordered)
    leads = workload.make_leads(3000)
    for lead in leads:
        got = dt.first({"lead": lead})
        assert got == rt.first({"lead": lead})
        assert got is not None
        want = next(r["name"] for r in ordered if workload.reference_match(r, lead))
        assert ordered[got[0]]["name"] == want
