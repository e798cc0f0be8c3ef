"""Differential property tests: compiled conditions and RuleTable against tests/oracle.py."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from tests import oracle

from salesrules.conditions import RuleTable, compile_condition

ROOTS = frozenset({"lead", "creator"})
FIELDS = ["lead.s", "lead.n", "lead.b", "lead.d", "lead.t", "lead.tags", "creator.s", "creator.n"]

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
TZ8 = timezone(timedelta(hours=8))

# Small pools so equalities and boundaries are hit often.
strs = st.sampled_from(["", "a", "ab", "b", "华东", "ＡＢＣ", "ABC", "web"])
nums = st.one_of(
    st.integers(-2, 3),
    st.sampled_from([0.5, 1.0, 2.5, -1.5]),
    st.sampled_from([Decimal("1"), Decimal("1.0"), Decimal("2.5"), Decimal("0.1")]),
)
dates = st.sampled_from([date(2026, 1, 1), date(2026, 6, 1), date(2026, 12, 31)])
dts = st.sampled_from([T0, T0 + timedelta(hours=1), T0.astimezone(TZ8), T0 - timedelta(days=1)])
scalars = st.one_of(strs, nums, st.booleans(), dates, dts)
values = st.one_of(
    scalars,
    st.none(),
    st.lists(st.one_of(strs, st.integers(0, 3), st.booleans()), max_size=3),
    st.just(float("nan")),
    st.just(Decimal("NaN")),
    st.just(datetime(2026, 12, 1, 9, 0)),  # naive: no class
    st.just({"nested": 1}),
)
ordered = st.one_of(strs, nums, dates, dts)


@st.composite
def same_class_pair(draw: st.DrawFn) -> list[Any]:
    pool = draw(st.sampled_from([strs, st.integers(-2, 3), nums, dates, dts]))
    a, b = draw(pool), draw(pool)
    return [a, b] if a <= b else [b, a]


def operand_for(op: str) -> st.SearchStrategy[Any]:
    if op in ("eq", "ne", "contains"):
        return scalars
    if op in ("in", "not_in"):
        return st.lists(scalars, min_size=1, max_size=4)
    if op in ("lt", "le", "gt", "ge"):
        return ordered
    if op == "between":
        return same_class_pair()
    if op in ("exists", "missing"):
        return st.booleans()
    if op in ("starts_with", "ends_with"):
        return strs
    return st.sampled_from(["^a", "b$", "a|華", "(?i)abc", "[0-9]"])  # matches


REF_OPS = ["eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "contains", "starts_with"]
ALL_OPS = [
    "eq", "ne", "in", "not_in", "lt", "le", "gt", "ge", "between",
    "exists", "missing", "contains", "starts_with", "ends_with", "matches",
]  # fmt: skip


@st.composite
def leaf_spec(draw: st.DrawFn) -> Any:
    field = draw(st.sampled_from(FIELDS))
    if draw(st.integers(0, 7)) == 0:
        op = draw(st.sampled_from(REF_OPS))
        other = draw(st.sampled_from(FIELDS))
        if draw(st.booleans()):
            return {"field": field, "op": op, "ref": other}
        return {field: {op: {"ref": other}}}
    op = draw(st.sampled_from(ALL_OPS))
    operand = draw(operand_for(op))
    form = draw(st.integers(0, 2))
    if form == 0:
        return {"field": field, "op": op, "value": operand}
    if form == 1 and op == "eq" and not isinstance(operand, list):
        return {field: operand}
    return {field: {op: operand}}


def cond_spec() -> st.SearchStrategy[Any]:
    return st.recursive(
        leaf_spec(),
        lambda kids: st.one_of(
            st.builds(lambda xs: {"all": xs}, st.lists(kids, max_size=3)),
            st.builds(lambda xs: {"any": xs}, st.lists(kids, max_size=3)),
            st.builds(lambda x: {"not": x}, kids),
            st.lists(kids, min_size=1, max_size=3),
        ),
        max_leaves=6,
    )


@st.composite
def record(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from(["s", "n", "b", "d", "t", "tags"]), unique=True))
    rec: dict[str, Any] = {}
    for k in keys:
        rec[k] = draw(values)
    return rec


@st.composite
def context(draw: st.DrawFn) -> dict[str, Any]:
    ctx: dict[str, Any] = {"lead": draw(record())}
    if draw(st.integers(0, 5)) != 0:
        ctx["creator"] = draw(record())
    return ctx


@given(cond_spec(), st.lists(context(), min_size=1, max_size=4))
def test_compiled_equals_reference(spec: Any, ctxs: list[dict[str, Any]]) -> None:
    c = compile_condition(spec, roots=ROOTS)
    for ctx in ctxs:
        want = oracle.cond_eval(spec, ctx)
        assert c(ctx) is want
        exp = c.explain(ctx)
        assert exp.result is want
        assert bool(exp.issues) == (want is None)
        for code, _field, _msg in exp.issues:
            assert code in ("missing_field", "type_mismatch")


@given(cond_spec(), context(), st.sampled_from(["x", "extra_1"]), values)
def test_unrelated_field_never_changes_result(
    spec: Any, ctx: dict[str, Any], key: str, val: Any
) -> None:
    c = compile_condition(spec, roots=ROOTS)
    before = c(ctx)
    ctx["lead"] = {**ctx["lead"], key: val}
    assert c(ctx) is before


# --- tables ------------------------------------------------------------------------------------

REGIONS = ["r0", "华东"]


@st.composite
def table_row(draw: st.DrawFn) -> Any:
    parts: dict[str, Any] = {}
    if draw(st.integers(0, 2)) != 0:
        parts["lead.s"] = draw(st.sampled_from(REGIONS))
    if draw(st.booleans()):
        parts["lead.src"] = {"in": draw(st.lists(st.sampled_from(["a", "b", "c", 1]), min_size=1))}
    if draw(st.booleans()):
        rng: dict[str, Any] = {}
        for op in draw(
            st.lists(
                st.sampled_from(["lt", "le", "gt", "ge", "between", "eq"]), max_size=2, unique=True
            )
        ):
            rng[op] = draw(same_class_pair()) if op == "between" else draw(nums)
        if "between" in rng and isinstance(rng["between"][0], str | date):
            rng = {"between": [0, 2]}
        if rng:
            parts["lead.n"] = rng
    if draw(st.integers(0, 5)) == 0:
        parts["any"] = [draw(leaf_spec()), draw(leaf_spec())]
    if draw(st.integers(0, 8)) == 0:
        return draw(leaf_spec())
    return parts


@st.composite
def table_ctx(draw: st.DrawFn) -> dict[str, Any]:
    lead: dict[str, Any] = {}
    if draw(st.integers(0, 6)) != 0:
        lead["s"] = draw(
            st.one_of(st.sampled_from([*REGIONS, "zz"]), st.sampled_from(REGIONS), values)
        )
    if draw(st.integers(0, 6)) != 0:
        lead["src"] = draw(st.one_of(st.sampled_from(["a", "b", "c", "d", 1]), values))
    if draw(st.integers(0, 6)) != 0:
        lead["n"] = draw(st.one_of(nums, st.integers(-2, 3), st.integers(-2, 3), values))
    for k in ("b", "d", "t", "tags"):
        if draw(st.booleans()):
            lead[k] = draw(values)
    return {"lead": lead, "creator": draw(record())}


@given(
    st.lists(table_row(), min_size=1, max_size=24), st.lists(table_ctx(), min_size=1, max_size=5)
)
def test_rule_table_equals_brute_force(specs: list[Any], ctxs: list[dict[str, Any]]) -> None:
    rows = [(compile_condition(s, roots=ROOTS), i) for i, s in enumerate(specs)]
    table = RuleTable(rows, min_rows=1, min_share=0.0)
    for ctx in ctxs:
        want_first, want_unknown = oracle.table_first(specs, ctx)
        match, unknown = table.first_with_unknowns(ctx)
        assert (match[0] if match else None) == want_first
        assert unknown == want_unknown
        assert table.first(ctx) == match
        want_all, want_all_unknown = oracle.table_all(specs, ctx)
        got_all, got_all_unknown = table.all_with_unknowns(ctx)
        assert [i for i, _ in got_all] == want_all
        assert got_all_unknown == want_all_unknown
        assert table.all(ctx) == got_all
        m2, trace = table.first_explained(ctx)
        assert m2 == match
        assert len(trace) == (want_first if want_first is not None else len(specs))
        assert trace.unknown_rows() == want_unknown
        for row in trace:
            assert row.result is oracle.cond_eval(specs[row.index], ctx)
            assert row.explanation.result is row.result
            row.render()


# exhaustive boundaries: every indexed operator against values at and around its operands
BOUNDARY_VALUES = [-1, 0, 0.5, Decimal("1"), 1, 1.5, 2, Decimal("2.0"), 2.5, 3, True, "1", None]
BOUNDARY_SPECS = [
    {"lt": 1}, {"le": 1}, {"gt": 1}, {"ge": 1}, {"eq": 1}, {"between": [1, 2]},
    {"in": [1, 2.5]}, {"ge": 1, "lt": 2}, {"gt": 0.5, "le": Decimal("2.5")}, {"eq": 2, "ge": 3},
    {"in": [0, 1, 2], "between": [1, 3]}, {"lt": 0}, {"ge": 3}, {"ne": 1},
]  # fmt: skip


def test_range_index_boundaries_match_plain_scan() -> None:
    specs = [{"lead.n": s} for s in BOUNDARY_SPECS]
    for i in range(len(specs)):
        # rotate so every row gets a turn at being first, then check first() and all()
        order = specs[i:] + specs[:i]
        table = RuleTable(
            [(compile_condition(s, roots=ROOTS), j) for j, s in enumerate(order)], min_rows=1
        )
        for v in BOUNDARY_VALUES:
            ctx = {"lead": {"n": v}}
            want_first, want_unknown = oracle.table_first(order, ctx)
            match, unknown = table.first_with_unknowns(ctx)
            assert (match[0] if match else None) == want_first, (order[0], v)
            assert unknown == want_unknown
            assert [j for j, _ in table.all(ctx)] == oracle.table_all(order, ctx)[0], (order, v)
