"""Unit tests of the condition language (operators, Kleene logic, refs, errors, tables)."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from salesrules.conditions import (
    OPERATORS,
    TRUE,
    Condition,
    ConditionError,
    Ref,
    RuleTable,
    compile_condition,
    never,
)

ROOTS = frozenset({"lead", "creator", "candidate"})
SHANGHAI = timezone(timedelta(hours=8))


def cond(spec: Any) -> Condition:
    return compile_condition(spec, roots=ROOTS)


def ev(spec: Any, **lead: Any) -> bool | None:
    return cond(spec)({"lead": lead})


def codes(spec: Any) -> list[str]:
    with pytest.raises(ConditionError) as info:
        cond(spec)
    return list(info.value.codes)


def problems(spec: Any) -> list[tuple[tuple[Any, ...], str, str | None]]:
    with pytest.raises(ConditionError) as info:
        cond(spec)
    return [(p.path, p.code, p.hint) for p in info.value.problems]


# --- operators -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "lead", "want"),
    [
        ({"lead.source": "web"}, {"source": "web"}, True),
        ({"lead.source": "web"}, {"source": "event"}, False),
        ({"lead.source": {"eq": "web"}}, {"source": "web"}, True),
        ({"lead.source": {"ne": "web"}}, {"source": "web"}, False),
        ({"lead.source": {"ne": "web"}}, {"source": "event"}, True),
        ({"lead.region": {"in": ["华东", "华北"]}}, {"region": "华东"}, True),
        ({"lead.region": {"in": ["华东", "华北"]}}, {"region": "华南"}, False),
        ({"lead.region": {"not_in": ["华东"]}}, {"region": "华南"}, True),
        ({"lead.region": {"not_in": ["华东"]}}, {"region": "华东"}, False),
        ({"lead.n": {"lt": 10}}, {"n": 9}, True),
        ({"lead.n": {"lt": 10}}, {"n": 10}, False),
        ({"lead.n": {"le": 10}}, {"n": 10}, True),
        ({"lead.n": {"gt": 10}}, {"n": 10}, False),
        ({"lead.n": {"gt": 10}}, {"n": 11}, True),
        ({"lead.n": {"ge": 10}}, {"n": 10}, True),
        ({"lead.n": {"ge": 10}}, {"n": 9.5}, False),
        ({"lead.n": {"between": [1, 10]}}, {"n": 1}, True),
        ({"lead.n": {"between": [1, 10]}}, {"n": 10}, True),
        ({"lead.n": {"between": [1, 10]}}, {"n": 10.01}, False),
        ({"lead.n": {"between": [1, 10]}}, {"n": 0}, False),
        ({"lead.n": {"exists": True}}, {"n": 0}, True),
        ({"lead.n": {"exists": True}}, {}, False),
        ({"lead.n": {"exists": False}}, {}, True),
        ({"lead.n": {"missing": True}}, {}, True),
        ({"lead.n": {"missing": True}}, {"n": 1}, False),
        ({"lead.n": {"missing": False}}, {"n": 1}, True),
        ({"lead.name": {"contains": "科技"}}, {"name": "上海科技有限公司"}, True),
        ({"lead.name": {"contains": "xyz"}}, {"name": "abc"}, False),
        ({"lead.tags": {"contains": "vip"}}, {"tags": ["new", "vip"]}, True),
        ({"lead.tags": {"contains": "vip"}}, {"tags": ("new",)}, False),
        ({"lead.tags": {"contains": 3}}, {"tags": [1, 2, 3]}, True),
        ({"lead.email": {"starts_with": "ceo@"}}, {"email": "ceo@x.cn"}, True),
        ({"lead.email": {"ends_with": ".cn"}}, {"email": "ceo@x.cn"}, True),
        ({"lead.email": {"ends_with": ".com"}}, {"email": "ceo@x.cn"}, False),
        ({"lead.phone": {"matches": r"\d{3}-\d{4}"}}, {"phone": "tel 555-1234 x"}, True),
        ({"lead.phone": {"matches": r"^\d{3}-\d{4}$"}}, {"phone": "tel 555-1234"}, False),
        ({"lead.vip": True}, {"vip": True}, True),
        ({"lead.vip": {"ne": True}}, {"vip": False}, True),
        ({"lead.vip": {"in": [True]}}, {"vip": True}, True),
    ],
)
def test_operator(spec: Any, lead: dict[str, Any], want: bool) -> None:
    assert ev(spec, **lead) is want


def test_operator_list_is_complete() -> None:
    assert set(OPERATORS) == {
        "eq", "ne", "in", "not_in", "lt", "le", "gt", "ge", "between",
        "exists", "missing", "contains", "starts_with", "ends_with", "matches",
    }  # fmt: skip


def test_explicit_form_and_list_form() -> None:
    c = cond([{"field": "lead.region", "op": "in", "value": ["华东", "华北"]}, {"lead.n": 1}])
    assert c({"lead": {"region": "华北", "n": 1}}) is True
    assert c({"lead": {"region": "华北", "n": 2}}) is False
    assert cond({"field": "lead.a", "op": "exists"})({"lead": {"a": 1}}) is True


def test_dates_and_aware_datetimes() -> None:
    t = datetime(2026, 12, 1, 9, 0, tzinfo=SHANGHAI)
    c = cond({"lead.created_at": {"ge": t}})
    assert c({"lead": {"created_at": datetime(2026, 12, 1, 1, 0, tzinfo=UTC)}}) is True
    assert c({"lead": {"created_at": datetime(2026, 12, 1, 0, 59, tzinfo=UTC)}}) is False
    # naive datetimes and dates are other classes: unknown
    assert c({"lead": {"created_at": datetime(2026, 12, 2)}}) is None
    assert c({"lead": {"created_at": date(2026, 12, 2)}}) is None
    d = cond({"lead.day": {"between": [date(2026, 1, 1), date(2026, 12, 31)]}})
    assert d({"lead": {"day": date(2026, 6, 1)}}) is True
    assert d({"lead": {"day": t}}) is None


# --- numbers and type classes ------------------------------------------------------------


def test_decimal_float_int_compare_without_crashing() -> None:
    assert ev({"lead.amount": {"ge": 100}}, amount=Decimal("100.00")) is True
    assert ev({"lead.amount": {"lt": 0.5}}, amount=Decimal("0.4")) is True
    assert ev({"lead.amount": Decimal("1.5")}, amount=1.5) is True
    assert ev({"lead.amount": {"in": [1, 2.5]}}, amount=Decimal("2.5")) is True
    # NaN is not a number: unknown, never a crash
    assert ev({"lead.amount": {"gt": 1}}, amount=Decimal("NaN")) is None
    assert ev({"lead.amount": {"gt": 1}}, amount=float("nan")) is None


def test_bool_is_not_a_number() -> None:
    assert ev({"lead.n": 1}, n=True) is None
    assert ev({"lead.n": {"gt": 0}}, n=True) is None
    assert ev({"lead.n": {"in": [1, 2]}}, n=True) is None
    assert ev({"lead.flag": True}, flag=1) is None


def test_number_vs_string_is_unknown_with_type_mismatch() -> None:
    c = cond({"lead.employees": {"ge": 100}})
    ctx = {"lead": {"employees": "100"}}
    assert c(ctx) is None
    assert [i[0] for i in c.explain(ctx).issues] == ["type_mismatch"]
    assert ev({"lead.name": {"contains": "a"}}, name=5) is None
    assert ev({"lead.name": {"matches": "a"}}, name=5) is None


def test_unicode_is_compared_exactly() -> None:
    assert ev({"lead.company": "ＡＢＣ"}, company="ABC") is False  # full width != ASCII
    assert ev({"lead.company": "ＡＢＣ"}, company="ＡＢＣ") is True
    assert ev({"lead.city": "Straße"}, city="STRASSE") is False  # no casefold


# --- missing fields and Kleene logic -------------------------------------------------------


def test_missing_field_is_unknown_and_null_counts_as_missing() -> None:
    assert ev({"lead.region": "华东"}) is None
    assert ev({"lead.region": "华东"}, region=None) is None
    assert ev({"lead.region": {"exists": True}}, region=None) is False
    assert ev({"lead.region": {"missing": True}}, region=None) is True
    c = cond({"lead.region": "华东"})
    exp = c.explain({"lead": {}})
    assert exp.result is None
    assert exp.issues[0][:2] == ("missing_field", "lead.region")


def test_nested_paths_and_custom_fields() -> None:
    c = cond({"lead.custom.tier": "gold", "lead.x_score": {"gt": 3}})
    assert c({"lead": {"custom": {"tier": "gold"}, "x_score": 4}}) is True
    assert c({"lead": {"custom": "gold", "x_score": 4}}) is None
    assert c({"lead": "not a mapping"}) is None
    assert c({}) is None


K = [True, False, None]


def _leaf(v: bool | None) -> dict[str, Any]:
    # True / False / unknown (missing field) leaves
    return {"lead.t": True} if v is True else {"lead.f": True} if v is False else {"lead.m": True}


CTX = {"lead": {"t": True, "f": False}}


@pytest.mark.parametrize("a", K)
@pytest.mark.parametrize("b", K)
def test_kleene_truth_tables(a: bool | None, b: bool | None) -> None:
    both = cond({"all": [_leaf(a), _leaf(b)]})(CTX)
    either = cond({"any": [_leaf(a), _leaf(b)]})(CTX)
    want_and = False if False in (a, b) else None if None in (a, b) else True
    want_or = True if True in (a, b) else None if None in (a, b) else False
    assert both is want_and
    assert either is want_or
    assert cond({"not": _leaf(a)})(CTX) is (None if a is None else not a)


def test_not_never_turns_missing_into_match() -> None:
    c = cond({"not": {"lead.tags": {"contains": "vip"}}})
    assert c({"lead": {}}) is None
    assert c.matches({"lead": {}}) is False


def test_empty_combinators() -> None:
    assert cond({"all": []})({}) is True
    assert cond({"any": []})({}) is False
    assert TRUE({}) is True
    assert never()({}) is False
    assert never().explain({}).result is False


# --- refs ------------------------------------------------------------------------------------


def test_ref_compares_with_another_records_field() -> None:
    c = cond({"candidate.manager_id": {"eq": {"ref": "creator.manager_id"}}})
    assert c({"candidate": {"manager_id": "u7"}, "creator": {"manager_id": "u7"}}) is True
    assert c({"candidate": {"manager_id": "u7"}, "creator": {"manager_id": "u8"}}) is False
    missing = c.explain({"candidate": {"manager_id": "u7"}, "creator": {}})
    assert missing.result is None
    assert missing.issues[0][:2] == ("missing_field", "creator.manager_id")
    assert c({"candidate": {"manager_id": 7}, "creator": {"manager_id": "7"}}) is None
    short = cond({"candidate.manager_id": {"ref": "creator.manager_id"}})
    assert short.spec == c.spec
    assert c.fields == {"candidate.manager_id", "creator.manager_id"}


def test_ref_with_ordering_and_membership() -> None:
    assert cond({"field": "lead.a", "op": "lt", "ref": "lead.b"})({"lead": {"a": 1, "b": 2}})
    c = cond({"lead.region": {"in": {"ref": "creator.regions"}}})
    assert c({"lead": {"region": "华东"}, "creator": {"regions": ["华东"]}}) is True
    assert c({"lead": {"region": "华南"}, "creator": {"regions": ["华东"]}}) is False
    assert c({"lead": {"region": "华南"}, "creator": {"regions": "华东"}}) is None


# --- explanations ----------------------------------------------------------------------------


def test_explain_renders_failing_leaf_with_actual_value() -> None:
    c = cond({"lead.source": "web", "lead.employees": {"ge": 1000}})
    exp = c.explain({"lead": {"source": "web", "employees": 40}})
    assert exp.result is False
    assert len(exp.leaves) == 1
    leaf = exp.leaves[0]
    assert (leaf.path, leaf.field, leaf.op, leaf.expected, leaf.actual) == (
        ("lead.employees", "ge"),
        "lead.employees",
        "ge",
        1000,
        40,
    )
    assert exp.render() == "lead.employees=40 >= 1000 failed"
    assert exp.issues == ()
    ok = c.explain({"lead": {"source": "web", "employees": 4000}})
    assert ok.result is True
    assert len(ok.leaves) == 2


def test_explain_ref_leaf() -> None:
    c = cond({"candidate.manager_id": {"eq": {"ref": "creator.manager_id"}}})
    leaf = c.explain({"candidate": {"manager_id": 1}, "creator": {"manager_id": 2}}).leaves[0]
    assert leaf.expected == Ref("creator.manager_id")
    assert leaf.ref_actual == 2


# --- compile errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wrong", "right"),
    [
        ("gte", "ge"),
        ("lte", "le"),
        ("equals", "eq"),
        ("not in", "not_in"),
        ("regex", "matches"),
        (">=", "ge"),
        ("startswith", "starts_with"),
        ("betwen", "between"),
    ],
)
def test_wrong_operator_spelling_is_sr120_with_hint(wrong: str, right: str) -> None:
    (got,) = problems({"lead.n": {wrong: 1}})
    assert got[:2] == (("lead.n", wrong), "SR120")
    assert got[2] is not None
    assert f"'{right}'" in got[2]


def test_explicit_form_wrong_op_path() -> None:
    (got,) = problems({"any": [{"field": "lead.n", "op": "gte", "value": 1}]})
    assert got[:2] == (("any", 0, "op"), "SR120")


def test_invalid_regex_is_sr121() -> None:
    assert problems({"lead.n": {"matches": "(unclosed"}})[0][:2] == (("lead.n", "matches"), "SR121")


@pytest.mark.parametrize(
    "spec",
    [
        {"lead.n": {"in": "web"}},
        {"lead.n": {"in": []}},
        {"lead.n": {"between": [1, 2, 3]}},
        {"lead.n": {"between": [3, 1]}},
        {"lead.n": {"between": [1, "z"]}},
        {"lead.n": {"matches": 5}},
        {"lead.n": {"exists": "yes"}},
        {"lead.n": {"lt": True}},
        {"lead.n": {"eq": [1, 2]}},
        {"lead.n": None},
        {"lead.n": {"ge": datetime(2026, 1, 1)}},
        {"lead.n": {"starts_with": 1}},
        {"field": "lead.n", "op": "eq", "value": 1, "ref": "lead.m"},
        {"lead.n": {"between": {"ref": "lead.m"}}},
    ],
)
def test_wrong_operand_is_sr122(spec: Any) -> None:
    assert codes(spec) == ["SR122"]


def test_unknown_root_is_sr123_with_hint() -> None:
    (got,) = problems({"leed.region": "x"})
    assert got[:2] == (("leed.region",), "SR123")
    assert got[2] is not None and "lead.region" in got[2]
    (bare,) = problems({"region": "x"})
    assert bare[1] == "SR123"
    assert bare[2] is not None and "lead.region" in bare[2]
    (ref,) = problems({"lead.a": {"eq": {"ref": "craetor.a"}}})
    assert ref[:2] == (("lead.a", "eq", "ref"), "SR123")


def test_all_problems_are_reported_at_once() -> None:
    got = codes(
        {
            "all": [{"lead.a": {"gte": 1}}, {"lead.b": {"matches": "("}}],
            "leed.c": 1,
            "not": {"lead.d": {"in": 3}},
        }
    )
    assert sorted(got) == ["SR120", "SR121", "SR122", "SR123"]


@pytest.mark.parametrize(
    "spec",
    [
        "lead.a",
        5,
        {"all": {"lead.a": 1}},
        {"op": "eq", "value": 1},
        {"field": "lead.a", "op": "eq", "valeu": 1},
        {"lead..a": 1},
        {"lead": 1},
        {"lead.a": {}},
    ],
)
def test_malformed_conditions_are_sr120(spec: Any) -> None:
    assert "SR120" in codes(spec)


def test_spec_is_normalized_and_json_able() -> None:
    import json

    a = cond({"lead.a": {"in": ["x", "y"]}, "lead.b": 1})
    b = cond([{"field": "lead.a", "op": "in", "value": ["x", "y"]}, {"lead.b": {"eq": 1}}])
    assert a.spec == b.spec
    assert a == b
    json.dumps(a.spec)


# --- RuleTable ---------------------------------------------------------------------------------


def _table(specs: list[Any], **kw: Any) -> RuleTable[str]:
    return RuleTable([(cond(s), f"r{i}") for i, s in enumerate(specs)], **kw)


REGION_RULES = [
    {"lead.region": f"r{i % 5}", "lead.n": {"ge": i * 10, "lt": i * 10 + 50}} for i in range(20)
] + [{}]


def test_table_first_uses_index_and_matches_scan() -> None:
    t = _table(REGION_RULES)
    plain = _table(REGION_RULES, index=False)
    assert t.describe()["indexed_columns"]
    for region in ("r0", "r3", "zz"):
        for n in (0, 5, 49, 50, 120, 199, 1000):
            ctx = {"lead": {"region": region, "n": n}}
            assert t.first(ctx) == plain.first(ctx)
            assert t.all(ctx) == plain.all(ctx)
    assert t.first({"lead": {"region": "zz", "n": 1}}) == (20, "r20")


def test_table_missing_value_falls_back_and_reports_unknowns() -> None:
    t = _table(REGION_RULES)
    match, unknown = t.first_with_unknowns({"lead": {"region": "r1"}})
    assert match == (20, "r20")
    assert unknown == (1, 6, 11, 16)
    rows, unknown_all = t.all_with_unknowns({"lead": {"n": 12}})
    assert rows == [(20, "r20")]
    assert unknown_all == (0, 1)


def test_table_first_explained() -> None:
    t = _table(REGION_RULES)
    match, trace = t.first_explained({"lead": {"region": "r1", "n": 15}})
    assert match == (1, "r1")
    assert len(trace) == 1
    assert trace[0].result is False
    assert trace[0].render() == "lead.region='r1' == 'r0' failed"
    assert trace[0].explanation.result is False
    match, trace = t.first_explained({"lead": {"region": "r1"}})
    assert match == (20, "r20")
    assert len(trace) == 20
    assert trace.unknown_rows() == (1, 6, 11, 16)
    assert trace[1].result is None
    assert [i[0] for i in trace[1].explanation.issues] == ["missing_field"]


def test_table_is_shareable_between_threads() -> None:
    t = _table(REGION_RULES)
    ctxs = [{"lead": {"region": f"r{i % 6}", "n": i}} for i in range(300)]
    want = [t.first(c) for c in ctxs]
    got: list[list[Any]] = []

    def work() -> None:
        got.append([t.first(c) for c in ctxs])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert all(g == want for g in got)


def test_problems_flag_keys_for_location() -> None:
    with pytest.raises(ConditionError) as info:
        cond({"leed.a": 1, "lead.b": {"gte": 1}, "lead.c": {"eq": {"ref": "x.y"}}})
    flags = {(p.path, p.code): p.at_key for p in info.value.problems}
    assert flags == {
        (("leed.a",), "SR123"): True,
        (("lead.b", "gte"), "SR120"): True,
        (("lead.c", "eq", "ref"), "SR123"): False,
    }
