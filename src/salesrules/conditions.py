"""The condition language: compile once to closures, evaluate fast, explain on demand.

A condition is plain data (never code). Accepted forms::

    {lead.source: web}                          # shorthand: equals (several keys = all)
    {lead.employees: {ge: 100, lt: 1000}}       # shorthand with operators (several = all)
    {candidate.manager_id: {eq: {ref: creator.manager_id}}}   # compare with another field
    {candidate.manager_id: {ref: creator.manager_id}}         # the same (``ref`` alone = eq)
    {field: lead.region, op: in, value: [华东, 华北]}          # explicit form
    {field: lead.a, op: lt, ref: lead.b}                      # explicit form with a ref
    {all: [...]}  {any: [...]}  {not: {...}}                  # combinators
    [c1, c2]                                                  # a list = all

Operators (one spelling each): ``eq ne in not_in lt le gt ge between exists missing contains
starts_with ends_with matches``. A wrong spelling (``gte``, ``equals``, ``not in``, ``regex``) is
reported as SR120 with a hint naming the right one.

Semantics (Kleene logic). A comparison is **unknown** (``None``) when the field is missing or
when the actual value is of another type class than the operand. Type classes: ``str``;
numbers (``int``/``float``/``Decimal``; ``bool`` is *not* a number, NaN is not a number);
timezone-aware datetimes (a naive datetime is of no class); dates; bools (``eq ne in
not_in`` only); lists/tuples/sets (``contains`` only). A value ``None`` counts as missing, so
``exists: true`` is false for a present-but-null field and ``missing: true`` is true for it.
``exists``/``missing`` are never unknown. ``all`` is False if any part is False, else unknown
if any is unknown, else True; ``any`` is the dual; ``not`` of unknown is unknown. A top-level
unknown does not match (the caller reports a ``missing_field``/``type_mismatch`` issue).

Strings compare exactly: no Unicode normalization (NFKC) and no case folding is applied
implicitly, so ``ＡＢＣ`` (full width) does not equal ``ABC``. ``matches`` is a Python ``re``
pattern compiled at load time and *searched* (not anchored); use ``^...$`` to anchor, or an
inline flag such as ``(?i)`` for case-insensitive matching.

Compiled objects (:class:`Condition`, :class:`RuleTable`) are immutable and hold no caches, so
they are safe to share between threads.
"""

from __future__ import annotations

import difflib
import re
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final, Generic, TypeVar, overload

from salesrules.errors import SalesRulesError

__all__ = [
    "OPERATORS",
    "TRUE",
    "Condition",
    "ConditionError",
    "ConditionProblem",
    "Explanation",
    "LeafResult",
    "Ref",
    "RowTrace",
    "RuleTable",
    "TableTrace",
    "compile_condition",
    "never",
]

T = TypeVar("T")
Ctx = Mapping[str, Any]
_Fn = Callable[[Ctx], "bool | None"]
_SPath = tuple[str | int, ...]

#: Every operator, in documentation order.
OPERATORS: Final[tuple[str, ...]] = (
    "eq",
    "ne",
    "in",
    "not_in",
    "lt",
    "le",
    "gt",
    "ge",
    "between",
    "exists",
    "missing",
    "contains",
    "starts_with",
    "ends_with",
    "matches",
)
_COMBINATORS: Final = ("all", "any", "not")
_EXPLICIT_KEYS: Final = ("field", "op", "value", "ref")

#: Marks an operand that failed to convert (its problem is already reported).
_BAD: Final = object()

# Common wrong spellings -> the one accepted spelling (checked before difflib).
_ALIASES: Final[Mapping[str, str]] = {
    "=": "eq",
    "==": "eq",
    "equals": "eq",
    "equal": "eq",
    "is": "eq",
    "!=": "ne",
    "<>": "ne",
    "neq": "ne",
    "not_eq": "ne",
    "not_equals": "ne",
    "not in": "not_in",
    "notin": "not_in",
    "nin": "not_in",
    "not_one_of": "not_in",
    "one_of": "in",
    "in_list": "in",
    "<": "lt",
    "<=": "le",
    "lte": "le",
    ">": "gt",
    ">=": "ge",
    "gte": "ge",
    "range": "between",
    "present": "exists",
    "not_null": "exists",
    "is_not_null": "exists",
    "absent": "missing",
    "is_null": "missing",
    "isnull": "missing",
    "null": "missing",
    "has": "contains",
    "includes": "contains",
    "startswith": "starts_with",
    "prefix": "starts_with",
    "endswith": "ends_with",
    "suffix": "ends_with",
    "regex": "matches",
    "regexp": "matches",
    "match": "matches",
    "like": "matches",
    "re": "matches",
    "and": "all",
    "or": "any",
    "none": "not",
}

# Type classes of values. 0 = "no class" (naive datetime, NaN, mappings, objects).
_OTHER, _STR, _NUM, _BOOL, _DT, _DATE, _LIST = 0, 1, 2, 3, 4, 5, 6
_ORDERED: Final = frozenset({_STR, _NUM, _DT, _DATE})
_SCALAR: Final = frozenset({_STR, _NUM, _BOOL, _DT, _DATE})
_KIND_NAMES: Final[Mapping[int, str]] = {
    _OTHER: "an unsupported value",
    _STR: "a string",
    _NUM: "a number",
    _BOOL: "a boolean",
    _DT: "a timezone-aware datetime",
    _DATE: "a date",
    _LIST: "a list",
}
_SYMBOLS: Final[Mapping[str, str]] = {
    "eq": "==",
    "ne": "!=",
    "lt": "<",
    "le": "<=",
    "gt": ">",
    "ge": ">=",
    "in": "in",
    "not_in": "not in",
}

MISSING_FIELD: Final = "missing_field"
TYPE_MISMATCH: Final = "type_mismatch"


def _kind_slow(v: Any) -> int:
    if isinstance(v, bool):
        return _BOOL
    if isinstance(v, str):
        return _STR
    if isinstance(v, Decimal):
        return _OTHER if v.is_nan() else _NUM
    if isinstance(v, float):
        return _NUM if v == v else _OTHER
    if isinstance(v, int):
        return _NUM
    if isinstance(v, datetime):
        return _DT if v.utcoffset() is not None else _OTHER
    if isinstance(v, date):
        return _DATE
    if isinstance(v, list | tuple | set | frozenset):
        return _LIST
    return _OTHER


def _kind(v: Any) -> int:
    """Return the type class of a (non-None) value."""
    t = type(v)
    if t is str:
        return _STR
    if t is int:
        return _NUM
    if t is bool:
        return _BOOL
    return _kind_slow(v)


@dataclass(frozen=True, slots=True)
class Ref:
    """An operand that names another field (``{ref: creator.manager_id}``)."""

    path: str

    def __str__(self) -> str:
        return self.path


@dataclass(frozen=True, slots=True)
class ConditionProblem:
    """One problem in a condition spec: where (relative path), what (code, message), hint."""

    path: _SPath
    code: str
    message: str
    hint: str | None = None
    at_key: bool = False  # the problem is the mapping key at ``path`` itself, not its value


class ConditionError(SalesRulesError, ValueError):
    """A condition spec is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[ConditionProblem]) -> None:
        self.problems: tuple[ConditionProblem, ...] = tuple(problems)
        lines = [
            f"{'/'.join(map(str, p.path)) or '<root>'}: {p.code} {p.message}" for p in self.problems
        ]
        super().__init__("\n".join(lines))

    @property
    def codes(self) -> tuple[str, ...]:
        """The problem codes, in the order found."""
        return tuple(p.code for p in self.problems)


# --------------------------------------------------------------------------------------------
# Compiled tree
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Leaf:
    spath: _SPath
    field: str
    fpath: tuple[str, ...]
    op: str
    operand: Any  # the literal operand (normalized), a Ref, or a bool for exists/missing
    rpath: tuple[str, ...] | None
    kind: int  # operand class (for literals)
    prepared: Any  # frozenset buckets for in/not_in, (lo, hi) for between, a Pattern for matches
    get: Callable[[Ctx], Any] = dc_field(init=False, compare=False, repr=False)
    rget: Callable[[Ctx], Any] | None = dc_field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "get", _getter(self.fpath))
        rget = _getter(self.rpath) if self.rpath is not None else None
        object.__setattr__(self, "rget", rget)

    def result(self, ctx: Ctx) -> LeafResult:
        """Evaluate this leaf with full detail (for explanations)."""
        v = self.get(ctx)
        w = self.rget(ctx) if self.rget is not None else None
        r = _compare(self, v, w)
        issue = None
        if r is None:
            missing = v is None or (self.rpath is not None and w is None)
            issue = MISSING_FIELD if missing else TYPE_MISMATCH
        expected = Ref(".".join(self.rpath)) if self.rpath is not None else self.operand
        return LeafResult(self.spath, self.field, self.op, expected, v, r, issue, w)


@dataclass(frozen=True, slots=True)
class _Node:
    kind: str  # "all" | "any" | "not"
    children: tuple[_Node | _Leaf, ...]
    spath: _SPath


_Tree = _Node | _Leaf


def _getter(path: tuple[str, ...]) -> Callable[[Ctx], Any]:
    """Build a closure reading a dotted path from a context; ``None`` when absent."""
    root = path[0]
    if len(path) == 2:
        key = path[1]

        def get2(ctx: Ctx) -> Any:
            r = ctx.get(root)
            if type(r) is dict or isinstance(r, Mapping):
                return r.get(key)
            return None

        return get2
    rest = path[1:]

    def get_n(ctx: Ctx) -> Any:
        r: Any = ctx.get(root)
        for k in rest:
            if type(r) is dict or isinstance(r, Mapping):
                r = r.get(k)
            else:
                return None
        return r

    return get_n


def _list_has(seq: Any, value: Any, k: int) -> bool:
    return any(e is not None and _kind(e) == k and e == value for e in seq)


def _compare(leaf: _Leaf, v: Any, w: Any) -> bool | None:
    """Evaluate one leaf given the actual value ``v`` and the ref value ``w`` (generic path)."""
    op = leaf.op
    if op == "exists":
        return (v is not None) is leaf.operand
    if op == "missing":
        return (v is None) is leaf.operand
    if v is None:
        return None
    kv = _kind(v)
    if leaf.rpath is None:
        w = leaf.operand
        kw = leaf.kind
    else:
        if w is None:
            return None
        kw = _kind(w)
    if op in ("in", "not_in"):
        if leaf.rpath is None:
            bucket = leaf.prepared.get(kv)
            if bucket is None:
                return None
            return (v in bucket) is (op == "in")
        if kw != _LIST or kv not in _SCALAR:
            return None
        return _list_has(w, v, kv) is (op == "in")
    if op == "contains":
        if kv == _STR:
            return w in v if kw == _STR else None
        if kv == _LIST and kw in _SCALAR:
            return _list_has(v, w, kw)
        return None
    if op in ("starts_with", "ends_with", "matches"):
        if kv != _STR:
            return None
        if op == "matches":
            return bool(leaf.prepared.search(v) is not None)
        if kw != _STR:
            return None
        return bool(v.startswith(w) if op == "starts_with" else v.endswith(w))
    if op == "between":
        if kv != kw:
            return None
        lo, hi = leaf.prepared
        return bool(lo <= v <= hi)
    # eq ne lt le gt ge
    if kv != kw:
        return None
    if kv not in _SCALAR:
        return None
    if op == "eq":
        return bool(v == w)
    if op == "ne":
        return bool(v != w)
    if kv not in _ORDERED:
        return None
    if op == "lt":
        return bool(v < w)
    if op == "le":
        return bool(v <= w)
    if op == "gt":
        return bool(v > w)
    return bool(v >= w)


def _leaf_fn(leaf: _Leaf) -> _Fn:
    """Build the fast closure of one leaf (specialized for the common literal cases)."""
    get = leaf.get
    op = leaf.op
    if leaf.rpath is not None:
        rget = _getter(leaf.rpath)

        def ref_fn(ctx: Ctx) -> bool | None:
            return _compare(leaf, get(ctx), rget(ctx))

        return ref_fn
    c = leaf.operand
    k = leaf.kind
    if op == "exists":
        if c:
            return lambda ctx: get(ctx) is not None
        return lambda ctx: get(ctx) is None
    if op == "missing":
        if c:
            return lambda ctx: get(ctx) is None
        return lambda ctx: get(ctx) is not None
    if op in ("eq", "ne") and k == _STR:
        want = op == "eq"

        def eq_str(ctx: Ctx) -> bool | None:
            v = get(ctx)
            if type(v) is str:
                return (v == c) is want
            if v is None or _kind(v) != _STR:
                return None
            return (v == c) is want

        return eq_str
    if op in ("in", "not_in") and set(leaf.prepared) == {_STR}:
        bucket = leaf.prepared[_STR]
        want = op == "in"

        def in_str(ctx: Ctx) -> bool | None:
            v = get(ctx)
            if type(v) is str:
                return (v in bucket) is want
            if v is None or _kind(v) != _STR:
                return None
            return (v in bucket) is want

        return in_str
    if k == _NUM and op in ("lt", "le", "gt", "ge", "between"):
        if op == "between":
            lo, hi = leaf.prepared
        elif op == "lt":
            lo, hi = None, c
        elif op == "gt":
            lo, hi = c, None
        else:
            lo, hi = (c, None) if op == "ge" else (None, c)
        strict_lo = op == "gt"
        strict_hi = op == "lt"

        def num_cmp(ctx: Ctx) -> bool | None:
            v = get(ctx)
            if type(v) is not int and (v is None or _kind(v) != _NUM):
                return None
            if lo is not None and (v <= lo if strict_lo else v < lo):
                return False
            return not (hi is not None and (v >= hi if strict_hi else v > hi))

        return num_cmp

    def generic(ctx: Ctx) -> bool | None:
        return _compare(leaf, get(ctx), None)

    return generic


def _all2(a: _Fn, b: _Fn) -> _Fn:
    def f(ctx: Ctx) -> bool | None:
        x = a(ctx)
        if x is False:
            return False
        y = b(ctx)
        if y is False:
            return False
        return None if x is None or y is None else True

    return f


def _all_n(fns: tuple[_Fn, ...]) -> _Fn:
    def f(ctx: Ctx) -> bool | None:
        unknown = False
        for g in fns:
            r = g(ctx)
            if r is False:
                return False
            if r is None:
                unknown = True
        return None if unknown else True

    return f


def _any_n(fns: tuple[_Fn, ...]) -> _Fn:
    def f(ctx: Ctx) -> bool | None:
        unknown = False
        for g in fns:
            r = g(ctx)
            if r is True:
                return True
            if r is None:
                unknown = True
        return None if unknown else False

    return f


def _not(g: _Fn) -> _Fn:
    def f(ctx: Ctx) -> bool | None:
        r = g(ctx)
        return None if r is None else not r

    return f


def _true(ctx: Ctx) -> bool | None:
    return True


def _false(ctx: Ctx) -> bool | None:
    return False


def _build(node: _Tree) -> _Fn:
    if isinstance(node, _Leaf):
        return _leaf_fn(node)
    fns = tuple(_build(c) for c in node.children)
    if node.kind == "not":
        return _not(fns[0])
    if node.kind == "all":
        if not fns:
            return _true
        if len(fns) == 1:
            return fns[0]
        if len(fns) == 2:
            return _all2(fns[0], fns[1])
        return _all_n(fns)
    if not fns:
        return _false
    if len(fns) == 1:
        return fns[0]
    return _any_n(fns)


def _fields(node: _Tree, out: set[str]) -> None:
    if isinstance(node, _Leaf):
        out.add(node.field)
        if node.rpath is not None:
            out.add(".".join(node.rpath))
        return
    for c in node.children:
        _fields(c, out)


def _norm_value(v: Any) -> Any:
    if isinstance(v, Ref):
        return {"ref": v.path}
    if isinstance(v, datetime):
        return {"datetime": v.isoformat()}
    if isinstance(v, date):
        return {"date": v.isoformat()}
    if isinstance(v, list | tuple):
        return [_norm_value(x) for x in v]
    return v


def _spec(node: _Tree) -> Any:
    if isinstance(node, _Leaf):
        if node.rpath is not None:
            return {"field": node.field, "op": node.op, "ref": ".".join(node.rpath)}
        return {"field": node.field, "op": node.op, "value": _norm_value(node.operand)}
    if node.kind == "not":
        return {"not": _spec(node.children[0])}
    return {node.kind: [_spec(c) for c in node.children]}


# --------------------------------------------------------------------------------------------
# Explanations
# --------------------------------------------------------------------------------------------


def _fmt(v: Any) -> str:
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, frozenset | set):
        return "[" + ", ".join(sorted(_fmt(x) for x in v)) + "]"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return repr(v)


@dataclass(frozen=True, slots=True)
class LeafResult:
    """The outcome of one comparison: where it is, what it compared, and the actual value.

    Attributes:
        path: Relative path of the leaf inside the condition spec.
        field: Dotted path of the field read.
        op: The operator name.
        expected: The operand (a literal, or a :class:`Ref`).
        actual: The actual value (``None`` when missing).
        result: ``True``, ``False`` or ``None`` (unknown).
        issue: ``"missing_field"`` or ``"type_mismatch"`` when unknown, else ``None``.
        ref_actual: The referenced field's value when the operand is a :class:`Ref`.
    """

    path: _SPath
    field: str
    op: str
    expected: Any
    actual: Any
    result: bool | None
    issue: str | None = None
    ref_actual: Any = None

    def issue_field(self) -> str:
        """Return the field the issue is about (the ref's path when only the ref is missing)."""
        if (
            self.issue == MISSING_FIELD
            and self.actual is not None
            and isinstance(self.expected, Ref)
        ):
            return self.expected.path
        return self.field

    def issue_message(self) -> str:
        """Describe why the comparison is unknown (empty when it is not)."""
        if self.issue == MISSING_FIELD:
            return f"{self.issue_field()} is missing"
        if self.issue == TYPE_MISMATCH:
            other = self.ref_actual if isinstance(self.expected, Ref) else self.expected
            if self.op in ("in", "not_in") and not isinstance(self.expected, Ref):
                want = "one of the operand's types"
            elif self.op == "matches":
                want = "a string"
            else:
                want = _KIND_NAMES[_kind(other)] if other is not None else "a comparable value"
            got = _KIND_NAMES[_kind(self.actual)]
            return f"{self.field}: cannot apply {self.op} to {got} ({_fmt(self.actual)}); expected {want}"
        return ""

    def render(self) -> str:
        """Render one line such as ``lead.employees=40 < 1000 failed``."""
        sym = _SYMBOLS.get(self.op, self.op)
        if self.op in ("exists", "missing"):
            text = f"{self.field} {self.op}: {_fmt(self.expected)}"
            if self.actual is not None:
                text = f"{self.field}={_fmt(self.actual)} {self.op}: {_fmt(self.expected)}"
        else:
            actual = "<missing>" if self.actual is None else _fmt(self.actual)
            exp = self.expected
            if isinstance(exp, Ref):
                ra = "<missing>" if self.ref_actual is None else _fmt(self.ref_actual)
                operand = f"{exp.path}={ra}"
            elif self.op == "between":
                operand = f"[{_fmt(exp[0])}, {_fmt(exp[1])}]"
            else:
                operand = _fmt(exp)
            text = f"{self.field}={actual} {sym} {operand}"
        status = {True: "passed", False: "failed", None: "unknown"}[self.result]
        if self.issue is not None:
            status += f" ({self.issue})"
        return f"{text} {status}"


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a condition evaluated as it did for one context.

    ``leaves`` are the comparisons that decided the result: for a False ``all``, its False
    parts; for an unknown one, its unknown parts; for a True ``all``, every part (``any`` is the
    dual; ``not`` keeps its child's leaves). ``issues`` lists ``(code, field, message)`` for the
    unknown leaves among them (non-empty exactly when ``result`` is ``None``).
    """

    result: bool | None
    leaves: tuple[LeafResult, ...]

    @property
    def issues(self) -> tuple[tuple[str, str, str], ...]:
        """The ``(code, field, message)`` of each unknown deciding leaf."""
        out: dict[tuple[str, str, str], None] = {}
        for lf in self.leaves:
            if lf.result is None and lf.issue is not None:
                out[(lf.issue, lf.issue_field(), lf.issue_message())] = None
        return tuple(out)

    @property
    def matched(self) -> bool:
        """Whether the condition matched (``result is True``)."""
        return self.result is True

    def render(self) -> str:
        """Render the deciding leaves on one line, separated by ``; ``."""
        if not self.leaves:
            return {True: "always true", False: "never matches", None: "unknown"}[self.result]
        return "; ".join(lf.render() for lf in self.leaves)


def _explain(node: _Tree, ctx: Ctx) -> tuple[bool | None, list[LeafResult]]:
    if isinstance(node, _Leaf):
        lr = node.result(ctx)
        return lr.result, [lr]
    parts = [_explain(c, ctx) for c in node.children]
    if node.kind == "not":
        r, leaves = parts[0]
        return (None if r is None else not r), leaves
    results = [p[0] for p in parts]
    stop, neutral = (False, True) if node.kind == "all" else (True, False)
    if stop in results:
        res: bool | None = stop
    elif None in results:
        res = None
    else:
        res = neutral
    out: list[LeafResult] = []
    for r, leaves in parts:
        if res is neutral or r is res:
            out.extend(leaves)
    return res, out


# --------------------------------------------------------------------------------------------
# Condition
# --------------------------------------------------------------------------------------------


class Condition:
    """A compiled condition: call it with a context to get ``True``, ``False`` or ``None``.

    The context maps root names (``lead``, ``creator``, ``candidate``…) to record mappings.
    Instances are immutable and hold no caches.

    Attributes:
        fields: The dotted paths the condition reads (operands included).
        spec: A normalized, JSON-able form of the condition (explicit leaves, ``all``/``any``/
            ``not``), stable for digests.
    """

    __slots__ = ("_fn", "_tree", "fields", "spec")

    _fn: _Fn
    _tree: _Tree
    fields: frozenset[str]
    spec: Any

    def __init__(self, tree: _Tree, fn: _Fn | None = None) -> None:
        """Wrap a compiled tree; use :func:`compile_condition` rather than this constructor."""
        object.__setattr__(self, "_tree", tree)
        object.__setattr__(self, "_fn", fn if fn is not None else _build(tree))
        out: set[str] = set()
        _fields(tree, out)
        object.__setattr__(self, "fields", frozenset(out))
        object.__setattr__(self, "spec", _spec(tree))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Condition is immutable")

    def __call__(self, ctx: Ctx) -> bool | None:
        """Evaluate against ``ctx``.

        Args:
            ctx: Mapping of root name to record mapping.

        Returns:
            ``True``, ``False``, or ``None`` when unknown (missing field / type mismatch).
        """
        return self._fn(ctx)

    def matches(self, ctx: Ctx) -> bool:
        """Return whether the condition matches (an unknown result does not match)."""
        return self._fn(ctx) is True

    def explain(self, ctx: Ctx) -> Explanation:
        """Evaluate with an explanation of which comparisons decided the result.

        Args:
            ctx: Mapping of root name to record mapping.

        Returns:
            An :class:`Explanation`; its ``result`` always equals ``self(ctx)``.
        """
        r, leaves = _explain(self._tree, ctx)
        return Explanation(r, tuple(leaves))

    def __repr__(self) -> str:
        return f"Condition({self.spec!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Condition) and other.spec == self.spec

    def __hash__(self) -> int:
        return hash(repr(self.spec))


#: The condition that is always true (an empty ``all``).
TRUE: Final[Condition] = Condition(_Node("all", (), ()))


def never() -> Condition:
    """Return a condition that never matches (used in place of one that failed to compile).

    Returns:
        A condition whose result is always ``False`` (an empty ``any``).
    """
    return _NEVER


_NEVER: Final[Condition] = Condition(_Node("any", (), ()))


# --------------------------------------------------------------------------------------------
# Compiler
# --------------------------------------------------------------------------------------------


def _suggest_op(name: str, choices: Sequence[str]) -> str | None:
    low = name.strip().lower()
    alias = _ALIASES.get(low) or _ALIASES.get(low.replace("-", "_"))
    if alias is not None and alias in choices:
        return alias
    if low in choices:
        return low
    close = difflib.get_close_matches(low.replace(" ", "_"), list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


class _Compiler:
    def __init__(self, roots: frozenset[str]) -> None:
        self.roots = roots
        self.problems: list[ConditionProblem] = []

    def err(
        self, path: _SPath, code: str, message: str, hint: str | None = None, *, key: bool = False
    ) -> None:
        self.problems.append(ConditionProblem(path, code, message, hint, key))

    # --- paths -------------------------------------------------------------------------------
    def field_path(self, text: Any, path: _SPath) -> tuple[str, ...] | None:
        if not isinstance(text, str) or not text.strip():
            self.err(path, "SR120", f"a field path must be a non-empty string, got {_fmt(text)}")
            return None
        parts = tuple(text.split("."))
        if any(not p or p != p.strip() for p in parts):
            self.err(
                path,
                "SR120",
                f"malformed field path {text!r}",
                "write root.key[.key...]",
                key=bool(path) and path[-1] == text,
            )
            return None
        root = parts[0]
        if root not in self.roots:
            roots = sorted(self.roots)
            if len(parts) == 1:
                base = "lead" if "lead" in self.roots else (roots[0] if roots else "lead")
                hint = f"did you mean '{base}.{text}'? paths start with one of: {', '.join(roots)}"
            else:
                close = difflib.get_close_matches(root, roots, n=1, cutoff=0.5)
                if close:
                    hint = f"did you mean '{'.'.join((close[0], *parts[1:]))}'?"
                else:
                    hint = f"known roots: {', '.join(roots)}"
            self.err(
                path,
                "SR123",
                f"unknown root {root!r} in field path {text!r}",
                hint,
                key=bool(path) and path[-1] == text,
            )
            return None
        if len(parts) < 2:
            self.err(
                path,
                "SR120",
                f"field path {text!r} names a whole record",
                f"write '{root}.<field>'",
            )
            return None
        return parts

    # --- operands ----------------------------------------------------------------------------
    def typed_literals(self, v: Any, path: _SPath) -> Any:
        """Turn ``{date: ...}`` / ``{datetime: ...}`` operands (also inside lists) into values.

        YAML keeps timestamps as strings (the loader resolves no timestamps), so a date or a
        datetime operand is written explicitly; a datetime must carry its offset.
        """
        if isinstance(v, list | tuple):
            out = [self.typed_literals(x, (*path, i)) for i, x in enumerate(v)]
            return _BAD if any(x is _BAD for x in out) else out
        if not (isinstance(v, Mapping) and len(v) == 1):
            return v
        (key, text), = v.items()
        if key not in ("date", "datetime"):
            return v
        if not isinstance(text, str):
            self.err((*path, key), "SR112", f"a {key} operand is ISO 8601 text, got {_fmt(text)}")
            return _BAD
        try:
            if key == "date":
                return date.fromisoformat(text)
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            self.err((*path, key), "SR112", f"invalid {key} {text!r}", "write e.g. 2026-01-31")
            return _BAD
        if value.tzinfo is None or value.utcoffset() is None:
            self.err(
                (*path, key),
                "SR112",
                f"datetime {text!r} has no time zone",
                "add an offset such as +08:00 or Z",
            )
            return _BAD
        return value

    def scalar(self, v: Any, path: _SPath, op: str) -> int | None:
        k = _kind(v) if v is not None else _OTHER
        if k in _SCALAR:
            return k
        if isinstance(v, datetime):
            self.err(
                path,
                "SR122",
                f"{op}: a datetime operand must be timezone-aware",
                "add an offset such as +08:00",
            )
        elif v is None:
            self.err(
                path,
                "SR122",
                f"{op}: the operand is null",
                "use {exists: false} or {missing: true}",
            )
        elif isinstance(v, list | tuple):
            hint = "use 'in' for a list of values" if op in ("eq", "ne") else None
            self.err(path, "SR122", f"{op}: expected a single value, got a list", hint)
        else:
            self.err(path, "SR122", f"{op}: unsupported operand {_fmt(v)}")
        return None

    def ref_of(self, v: Any, path: _SPath) -> tuple[str, ...] | None:
        if set(v) != {"ref"}:
            extra = sorted(str(k) for k in v if k != "ref")
            self.err(path, "SR120", f"an operand mapping may only hold 'ref', got {extra}")
            return None
        return self.field_path(v["ref"], (*path, "ref"))

    def leaf(
        self, field: Any, fpath_at: _SPath, op: str, value: Any, at: _SPath, *, is_ref: bool = False
    ) -> _Leaf | None:
        fpath = self.field_path(field, fpath_at)
        rpath: tuple[str, ...] | None = None
        if is_ref:
            rpath = self.field_path(value, at)
            if rpath is None:
                return None
        elif isinstance(value, Mapping) and "ref" in value:
            rpath = self.ref_of(value, at)
            if rpath is None:
                return None
        else:
            value = self.typed_literals(value, at)
            if value is _BAD:
                return None
        if rpath is not None and op in ("between", "exists", "missing", "matches"):
            self.err(at, "SR122", f"{op} does not accept a ref operand")
            return None
        if fpath is None:
            return None
        if rpath is not None:
            ref = Ref(".".join(rpath))
            return _Leaf(at, ".".join(fpath), fpath, op, ref, rpath, _OTHER, None)
        return self.literal_leaf(fpath, op, value, at)

    def literal_leaf(self, fpath: tuple[str, ...], op: str, value: Any, at: _SPath) -> _Leaf | None:
        field = ".".join(fpath)

        def mk(operand: Any, kind: int, prepared: Any) -> _Leaf:
            return _Leaf(at, field, fpath, op, operand, None, kind, prepared)

        if op in ("exists", "missing"):
            if not isinstance(value, bool):
                self.err(at, "SR122", f"{op} takes true or false, got {_fmt(value)}")
                return None
            return mk(value, _BOOL, None)
        if isinstance(value, Mapping):
            self.err(
                at,
                "SR122",
                f"{op}: a mapping operand must be {{ref: path}}, {{date: ...}} or {{datetime: ...}}",
            )
            return None
        if op in ("in", "not_in"):
            if not isinstance(value, list | tuple) or not value:
                self.err(
                    at,
                    "SR122",
                    f"{op} takes a non-empty list of values, got {_fmt(value)}",
                    "write [a, b]" if not isinstance(value, list | tuple) else None,
                )
                return None
            buckets: dict[int, set[Any]] = {}
            ok = True
            for i, x in enumerate(value):
                k = self.scalar(x, (*at, i), op)
                if k is None:
                    ok = False
                else:
                    buckets.setdefault(k, set()).add(x)
            if not ok:
                return None
            prepared: Any = {k: frozenset(s) for k, s in buckets.items()}
            kinds = set(prepared)
            kind = kinds.pop() if len(kinds) == 1 else _OTHER
            return mk(tuple(value), kind, prepared)
        if op == "between":
            if not isinstance(value, list | tuple) or len(value) != 2:
                self.err(at, "SR122", f"between takes [low, high], got {_fmt(value)}")
                return None
            ks = [self.scalar(x, (*at, i), op) for i, x in enumerate(value)]
            if None in ks:
                return None
            if ks[0] != ks[1] or ks[0] not in _ORDERED:
                self.err(at, "SR122", "between needs two values of the same orderable type")
                return None
            lo, hi = value
            if lo > hi:
                self.err(at, "SR122", f"between: low {_fmt(lo)} is above high {_fmt(hi)}")
                return None
            return mk((lo, hi), ks[0], (lo, hi))
        if op in ("starts_with", "ends_with", "matches"):
            if not isinstance(value, str):
                self.err(at, "SR122", f"{op} takes a string, got {_fmt(value)}")
                return None
            prepared = None
            if op == "matches":
                try:
                    prepared = re.compile(value)
                except re.error as exc:
                    self.err(at, "SR121", f"invalid regular expression {value!r}: {exc}")
                    return None
            return mk(value, _STR, prepared)
        k = self.scalar(value, at, op)
        if k is None:
            return None
        if op in ("lt", "le", "gt", "ge") and k not in _ORDERED:
            self.err(
                at, "SR122", f"{op} needs a number, string, date or datetime, got {_fmt(value)}"
            )
            return None
        return mk(value, k, None)

    # --- structure ---------------------------------------------------------------------------
    def op_name(self, name: Any, path: _SPath) -> str | None:
        if isinstance(name, str) and name in OPERATORS:
            return name
        sug = _suggest_op(str(name), OPERATORS)
        hint = f"use '{sug}'" if sug else f"operators: {', '.join(OPERATORS)}"
        self.err(
            path, "SR120", f"unknown operator {name!r}", hint, key=bool(path) and path[-1] == name
        )
        return None

    def node(self, spec: Any, path: _SPath) -> _Tree | None:
        if isinstance(spec, list | tuple):
            kids = [self.node(x, (*path, i)) for i, x in enumerate(spec)]
            return _Node("all", tuple(k for k in kids if k is not None), path)
        if not isinstance(spec, Mapping):
            self.err(path, "SR120", f"a condition must be a mapping or a list, got {_fmt(spec)}")
            return None
        if "field" in spec:
            return self.explicit(spec, path)
        kids2: list[_Tree] = []
        for key, val in spec.items():
            at = (*path, key)
            if not isinstance(key, str):
                self.err(at, "SR120", f"a condition key must be a string, got {_fmt(key)}")
                continue
            if key in ("all", "any"):
                if not isinstance(val, list | tuple):
                    self.err(at, "SR120", f"{key} takes a list of conditions")
                    continue
                subs = [self.node(x, (*at, i)) for i, x in enumerate(val)]
                kids2.append(_Node(key, tuple(s for s in subs if s is not None), at))
            elif key == "not":
                sub = self.node(val, at)
                if sub is not None:
                    kids2.append(_Node("not", (sub,), at))
            elif key in _EXPLICIT_KEYS:
                self.err(
                    at,
                    "SR120",
                    f"'{key}' belongs to the explicit form, which needs 'field'",
                    "write {field: lead.x, op: eq, value: 1}",
                )
            elif "." not in key and (sug := _suggest_op(key, (*_COMBINATORS, *OPERATORS))):
                self.err(at, "SR120", f"unknown condition key {key!r}", f"use '{sug}'", key=True)
            else:
                kids2.extend(self.shorthand(key, val, at))
        if len(kids2) == 1 and len(spec) == 1:
            return kids2[0]
        return _Node("all", tuple(kids2), path)

    def shorthand(self, key: str, val: Any, at: _SPath) -> list[_Tree]:
        if isinstance(val, Mapping):
            if set(val) == {"ref"}:
                leaf = self.leaf(key, at, "eq", val, at)
                return [leaf] if leaf is not None else []
            out: list[_Tree] = []
            if not val:
                self.err(at, "SR120", f"no operator given for {key!r}")
            for op_key, operand in val.items():
                op = self.op_name(op_key, (*at, op_key))
                if op is None:
                    continue
                leaf = self.leaf(key, at, op, operand, (*at, op_key))
                if leaf is not None:
                    out.append(leaf)
            return out
        leaf = self.leaf(key, at, "eq", val, at)
        return [leaf] if leaf is not None else []

    def explicit(self, spec: Mapping[Any, Any], path: _SPath) -> _Tree | None:
        bad = False
        for k in spec:
            if k not in _EXPLICIT_KEYS:
                sug = difflib.get_close_matches(str(k), _EXPLICIT_KEYS, n=1)
                self.err(
                    (*path, k),
                    "SR120",
                    f"unknown key {k!r} in an explicit condition",
                    f"use '{sug[0]}'" if sug else "keys: field, op, value | ref",
                    key=True,
                )
                bad = True
        if "op" not in spec:
            self.err(path, "SR120", "an explicit condition needs 'op'")
            return None
        op = self.op_name(spec["op"], (*path, "op"))
        if op is None or bad:
            return None
        has_v, has_r = "value" in spec, "ref" in spec
        if has_v and has_r:
            self.err(path, "SR122", "give either 'value' or 'ref', not both")
            return None
        if has_r:
            return self.leaf(
                spec["field"], (*path, "field"), op, spec["ref"], (*path, "ref"), is_ref=True
            )
        if not has_v:
            if op in ("exists", "missing"):
                return self.leaf(spec["field"], (*path, "field"), op, True, path)
            self.err(path, "SR122", f"an explicit {op} condition needs 'value' or 'ref'")
            return None
        return self.leaf(spec["field"], (*path, "field"), op, spec["value"], (*path, "value"))


def compile_condition(spec: Any, *, roots: frozenset[str]) -> Condition:
    """Compile a condition spec (plain data) into a fast, explainable :class:`Condition`.

    Args:
        spec: The condition as loaded from a rule file (mapping, list, combinators).
        roots: The allowed first segments of field paths (e.g. ``{"lead", "creator"}``).

    Returns:
        The compiled condition.

    Raises:
        ConditionError: With every problem found (codes SR120–SR123), each carrying its path
            relative to ``spec``.
    """
    comp = _Compiler(frozenset(roots))
    tree = comp.node(spec, ())
    if comp.problems or tree is None:
        if not comp.problems:
            comp.err((), "SR120", "invalid condition")
        seen: set[tuple[Any, ...]] = set()
        unique = []
        for p in comp.problems:
            key = (p.path, p.code, p.message)
            if key not in seen:
                seen.add(key)
                unique.append(p)
        raise ConditionError(unique)
    return Condition(tree)


# --------------------------------------------------------------------------------------------
# RuleTable
# --------------------------------------------------------------------------------------------

_INDEX_OPS: Final = frozenset({"eq", "in", "lt", "le", "gt", "ge", "between"})
_RANGE_OPS: Final = frozenset({"lt", "le", "gt", "ge", "between"})


def _conjuncts(node: _Tree) -> list[_Tree]:
    if isinstance(node, _Node) and node.kind == "all":
        out: list[_Tree] = []
        for c in node.children:
            out.extend(_conjuncts(c))
        return out
    return [node]


def _leaf_kinds(leaf: _Leaf) -> set[int]:
    if leaf.op in ("in", "not_in"):
        return set(leaf.prepared)
    return {leaf.kind}


def _leaf_values(leaf: _Leaf, kind: int) -> list[Any]:
    if leaf.op == "in":
        return list(leaf.prepared.get(kind, ()))
    if leaf.op == "between":
        return list(leaf.prepared)
    return [leaf.operand]


@dataclass(frozen=True, slots=True)
class _Column:
    root: str
    key: str | None  # set for two-segment paths (read inline)
    get: Callable[[Ctx], Any]
    kind: int
    discrete: bool
    dmap: Mapping[Any, int]
    default: int
    bps: tuple[Any, ...]
    rmasks: tuple[int, ...]
    field: str


def _value_ok(v: Any, kind: int) -> bool:
    t = type(v)
    if kind == _STR and t is str:
        return True
    if kind == _NUM and t is int:
        return True
    return _kind(v) == kind


@dataclass(frozen=True, slots=True)
class RowTrace:
    """Why one row before the decided row did not match.

    Attributes:
        index: The row index.
        result: ``False`` or ``None`` (unknown).
    """

    index: int
    result: bool | None
    _condition: Condition
    _ctx: Ctx
    _parts: tuple[_Tree, ...]

    @property
    def explanation(self) -> Explanation:
        """The row condition's full explanation (computed on access)."""
        return self._condition.explain(self._ctx)

    def reason(self) -> LeafResult | None:
        """Return the first comparison (in spec order) that gave the row its result.

        Cheaper than :attr:`explanation`: it stops at the first top-level part whose result
        equals the row's result.
        """
        for part in self._parts:
            if isinstance(part, _Leaf):
                lr = part.result(self._ctx)
                if lr.result is self.result:
                    return lr
            else:
                r, leaves = _explain(part, self._ctx)
                if r is self.result and leaves:
                    return leaves[0]
        return None

    def render(self) -> str:
        """Render the deciding comparison on one line (``lead.employees=40 < 1000 failed``)."""
        lr = self.reason()
        return lr.render() if lr is not None else self.explanation.render()


class TableTrace(Sequence[RowTrace]):
    """The rows before the decided one (all rows when none matched), each with its result.

    Results are recorded during the decision (as a candidate bitmask plus the few residual
    results); :class:`RowTrace` objects and their explanations are built only when accessed.
    The context must not be mutated while the trace is in use.
    """

    __slots__ = ("_cands", "_conds", "_ctx", "_n", "_parts", "_results")

    def __init__(
        self,
        conds: tuple[Condition, ...],
        parts: tuple[tuple[_Tree, ...], ...],
        ctx: Ctx,
        n: int,
        cands: int,
        results: Mapping[int, bool | None],
    ) -> None:
        """Store the compact trace state (internal; built by :meth:`RuleTable.first_explained`)."""
        self._conds = conds
        self._parts = parts
        self._ctx = ctx
        self._n = n
        self._cands = cands
        self._results = results

    def __len__(self) -> int:
        return self._n

    def result(self, i: int) -> bool | None:
        """Return the result (``False`` or ``None``) of row ``i`` (``0 <= i < len(self)``)."""
        if not 0 <= i < self._n:
            raise IndexError(i)
        if i in self._results:
            return self._results[i]
        return False

    @overload
    def __getitem__(self, i: int) -> RowTrace: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[RowTrace]: ...
    def __getitem__(self, i: int | slice) -> RowTrace | Sequence[RowTrace]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        if i < 0:
            i += self._n
        return RowTrace(i, self.result(i), self._conds[i], self._ctx, self._parts[i])

    def __iter__(self) -> Iterator[RowTrace]:
        for i in range(self._n):
            yield self[i]

    def unknown_rows(self) -> tuple[int, ...]:
        """Indices of the rows whose result was unknown."""
        return tuple(sorted(i for i, r in self._results.items() if r is None and i < self._n))


class RuleTable(Generic[T]):
    """An immutable first-match (or collect) table of ``(Condition, payload)`` rows.

    Row order is priority. Equality (``eq``), set (``in``) and range (``lt le gt ge between``)
    leaves with literal operands in each row's top-level conjunction are indexed per column
    (value -> bitmask of rows; ranges by sorted breakpoints and bisect); only the leaves not
    covered by the index (the residual) run as closures, and only for candidate rows. When an
    indexed column's value is missing or of another type class than the column, the table
    falls back to the plain scan, so answers and unknown rows are always exactly those of a
    linear first-match scan.

    Args:
        rows: ``(condition, payload)`` pairs in priority order.
        index: Set to ``False`` to always scan linearly.
        min_rows: Tables with fewer rows are scanned linearly.
        min_share: A column is indexed only when at least this share of rows constrain it.
    """

    __slots__ = ("_cols", "_conds", "_fns", "_full", "_parts", "_payloads", "_residual", "rows")

    def __init__(
        self,
        rows: Sequence[tuple[Condition, T]],
        *,
        index: bool = True,
        min_rows: int = 8,
        min_share: float = 0.125,
    ) -> None:
        """Analyse the rows and build the column indexes."""
        self.rows: tuple[tuple[Condition, T], ...] = tuple((c, p) for c, p in rows)
        self._conds: tuple[Condition, ...] = tuple(c for c, _ in self.rows)
        self._payloads: tuple[T, ...] = tuple(p for _, p in self.rows)
        self._fns: tuple[_Fn, ...] = tuple(c._fn for c in self._conds)
        self._parts = tuple(tuple(_conjuncts(c._tree)) for c in self._conds)
        self._full = (1 << len(self.rows)) - 1
        self._cols: tuple[_Column, ...] | None = None
        self._residual: tuple[_Fn | None, ...] = self._fns
        if index and len(self.rows) >= min_rows:
            self._build_index(min_share)

    def __len__(self) -> int:
        return len(self.rows)

    # --- index construction ------------------------------------------------------------------
    def _build_index(self, min_share: float) -> None:
        n = len(self.rows)
        conj = self._parts
        # column -> row -> indexable leaves
        by_col: dict[tuple[str, ...], dict[int, list[_Leaf]]] = {}
        for r, parts in enumerate(conj):
            for p in parts:
                if isinstance(p, _Leaf) and p.rpath is None and p.op in _INDEX_OPS:
                    by_col.setdefault(p.fpath, {}).setdefault(r, []).append(p)
        cols: list[_Column] = []
        covered: set[int] = set()  # id() of indexed leaves
        for fpath, rows_leaves in by_col.items():
            votes: dict[int, int] = {}
            for leaves in rows_leaves.values():
                for lf in leaves:
                    for k in _leaf_kinds(lf):
                        votes[k] = votes.get(k, 0) + 1
            kind = max(sorted(votes), key=lambda k: votes[k])
            has_range = any(
                lf.op in _RANGE_OPS and lf.kind == kind for ls in rows_leaves.values() for lf in ls
            )
            use: dict[int, list[_Leaf]] = {}
            for r, leaves in rows_leaves.items():
                ok = [
                    lf
                    for lf in leaves
                    if (lf.op == "in" and set(lf.prepared) == {kind})
                    or (lf.op != "in" and lf.kind == kind and (lf.op == "eq" or has_range))
                ]
                if ok:
                    use[r] = ok
            if len(use) < max(1, min_share * n):
                continue
            wild = self._full
            for r in use:
                wild &= ~(1 << r)
            if has_range:
                col = self._range_column(fpath, kind, use, wild)
            else:
                col = self._discrete_column(fpath, kind, use, wild)
            cols.append(col)
            covered.update(id(lf) for ls in use.values() for lf in ls)
        if not cols:
            return
        # most selective-looking first: discrete before range, then by field name for stability
        cols.sort(key=lambda c: (not c.discrete, c.field))
        residual: list[_Fn | None] = []
        for r, parts in enumerate(conj):
            rest = [p for p in parts if not (isinstance(p, _Leaf) and id(p) in covered)]
            if len(rest) == len(parts):
                residual.append(self._fns[r])
            elif not rest:
                residual.append(None)
            else:
                residual.append(_build(_Node("all", tuple(rest), ())))
        self._cols = tuple(cols)
        self._residual = tuple(residual)

    def _discrete_column(
        self, fpath: tuple[str, ...], kind: int, use: dict[int, list[_Leaf]], wild: int
    ) -> _Column:
        allowed: dict[int, frozenset[Any]] = {}
        for r, leaves in use.items():
            s: frozenset[Any] | None = None
            for lf in leaves:
                vals = frozenset(_leaf_values(lf, kind))
                s = vals if s is None else s & vals
            allowed[r] = s or frozenset()
        dmap: dict[Any, int] = {}
        for r, s in allowed.items():
            for v in s:
                dmap[v] = dmap.get(v, wild) | (1 << r)
        return _Column(
            fpath[0],
            fpath[1] if len(fpath) == 2 else None,
            _getter(fpath),
            kind,
            True,
            dmap,
            wild,
            (),
            (),
            ".".join(fpath),
        )

    def _range_column(
        self, fpath: tuple[str, ...], kind: int, use: dict[int, list[_Leaf]], wild: int
    ) -> _Column:
        pts: list[Any] = sorted(
            {v for ls in use.values() for lf in ls for v in _leaf_values(lf, kind)}
        )
        bps: list[Any] = []
        for v in pts:  # dedupe values equal across int/float/Decimal
            if not bps or bps[-1] != v:
                bps.append(v)
        nb = len(bps)
        last = 2 * nb  # regions: 0 (<b0), 1 (=b0), 2 (b0,b1), ..., 2nb (>b_last)

        def pos(v: Any) -> int:
            return 2 * bisect_left(bps, v) + 1

        delta = [0] * (last + 2)
        point_bits = [0] * (last + 1)
        for r, leaves in use.items():
            lo, hi = 0, last
            points: set[int] | None = None
            for lf in leaves:
                op = lf.op
                if op == "eq" or op == "in":
                    ps = {pos(v) for v in _leaf_values(lf, kind)}
                    points = ps if points is None else points & ps
                elif op == "ge":
                    lo = max(lo, pos(lf.operand))
                elif op == "gt":
                    lo = max(lo, pos(lf.operand) + 1)
                elif op == "le":
                    hi = min(hi, pos(lf.operand))
                elif op == "lt":
                    hi = min(hi, pos(lf.operand) - 1)
                else:  # between
                    lo = max(lo, pos(lf.prepared[0]))
                    hi = min(hi, pos(lf.prepared[1]))
            bit = 1 << r
            if points is not None:
                for p in points:
                    if lo <= p <= hi:
                        point_bits[p] |= bit
            elif lo <= hi:
                delta[lo] ^= bit
                delta[hi + 1] ^= bit
        masks: list[int] = []
        acc = 0
        for i in range(last + 1):
            acc ^= delta[i]
            masks.append(acc | point_bits[i] | wild)
        return _Column(
            fpath[0],
            fpath[1] if len(fpath) == 2 else None,
            _getter(fpath),
            kind,
            False,
            {},
            wild,
            tuple(bps),
            tuple(masks),
            ".".join(fpath),
        )

    # --- evaluation --------------------------------------------------------------------------
    def _candidates(self, ctx: Ctx) -> int | None:
        """Return the candidate mask, or ``None`` when the plain scan must be used."""
        cols = self._cols
        if cols is None:
            return None
        m = self._full
        for col in cols:
            key = col.key
            if key is not None:
                rec = ctx.get(col.root)
                if type(rec) is dict or isinstance(rec, Mapping):
                    v = rec.get(key)
                else:
                    return None
            else:
                v = col.get(ctx)
            t = type(v)
            if t is str:
                if col.kind != _STR:
                    return None
            elif (t is not int or col.kind != _NUM) and (v is None or _kind(v) != col.kind):
                return None
            if col.discrete:
                m &= col.dmap.get(v, col.default)
            else:
                bps = col.bps
                i = bisect_left(bps, v)
                m &= col.rmasks[2 * i + 1 if i < len(bps) and bps[i] == v else 2 * i]
            if not m:
                return 0
        return m

    def first(self, ctx: Ctx) -> tuple[int, T] | None:
        """Return ``(index, payload)`` of the first row whose condition is ``True``, else ``None``.

        Args:
            ctx: Mapping of root name to record mapping.

        Returns:
            The first matching row, or ``None``.
        """
        m = self._candidates(ctx)
        if m is None:
            for i, f in enumerate(self._fns):
                if f(ctx) is True:
                    return i, self._payloads[i]
            return None
        res = self._residual
        while m:
            low = m & -m
            i = low.bit_length() - 1
            g = res[i]
            if g is None or g(ctx) is True:
                return i, self._payloads[i]
            m ^= low
        return None

    def first_with_unknowns(self, ctx: Ctx) -> tuple[tuple[int, T] | None, tuple[int, ...]]:
        """Like :meth:`first`, also returning the indices of earlier rows that were unknown.

        Args:
            ctx: Mapping of root name to record mapping.

        Returns:
            ``(match or None, unknown row indices before the match)``; explain a row with
            ``table.rows[i][0].explain(ctx)`` to get its issues.
        """
        unknown: list[int] = []
        m = self._candidates(ctx)
        if m is None:
            for i, f in enumerate(self._fns):
                r = f(ctx)
                if r is True:
                    return (i, self._payloads[i]), tuple(unknown)
                if r is None:
                    unknown.append(i)
            return None, tuple(unknown)
        res = self._residual
        while m:
            low = m & -m
            i = low.bit_length() - 1
            g = res[i]
            r = True if g is None else g(ctx)
            if r is True:
                return (i, self._payloads[i]), tuple(unknown)
            if r is None:
                unknown.append(i)
            m ^= low
        return None, tuple(unknown)

    def all(self, ctx: Ctx) -> list[tuple[int, T]]:
        """Return every row whose condition is ``True``, in priority order (collect mode).

        Args:
            ctx: Mapping of root name to record mapping.

        Returns:
            The matching ``(index, payload)`` rows.
        """
        return self.all_with_unknowns(ctx)[0]

    def all_with_unknowns(self, ctx: Ctx) -> tuple[list[tuple[int, T]], tuple[int, ...]]:
        """Like :meth:`all`, also returning the indices of the rows that were unknown.

        Args:
            ctx: Mapping of root name to record mapping.

        Returns:
            ``(matching rows, unknown row indices)``.
        """
        out: list[tuple[int, T]] = []
        unknown: list[int] = []
        m = self._candidates(ctx)
        if m is None:
            for i, f in enumerate(self._fns):
                r = f(ctx)
                if r is True:
                    out.append((i, self._payloads[i]))
                elif r is None:
                    unknown.append(i)
            return out, tuple(unknown)
        res = self._residual
        while m:
            low = m & -m
            i = low.bit_length() - 1
            g = res[i]
            r = True if g is None else g(ctx)
            if r is True:
                out.append((i, self._payloads[i]))
            elif r is None:
                unknown.append(i)
            m ^= low
        return out, tuple(unknown)

    def first_explained(self, ctx: Ctx) -> tuple[tuple[int, T] | None, TableTrace]:
        """Like :meth:`first`, with a trace of why each earlier row did not match.

        Args:
            ctx: Mapping of root name to record mapping.

        Returns:
            ``(match or None, trace)``; the trace holds one :class:`RowTrace` per row before the
            match (every row when none matched), built lazily.
        """
        results: dict[int, bool | None] = {}
        m = self._candidates(ctx)
        n = len(self.rows)
        if m is None:
            for i, f in enumerate(self._fns):
                r = f(ctx)
                if r is True:
                    return (i, self._payloads[i]), TableTrace(
                        self._conds, self._parts, ctx, i, 0, results
                    )
                if r is None:
                    results[i] = None
            return None, TableTrace(self._conds, self._parts, ctx, n, 0, results)
        cands = m
        res = self._residual
        while m:
            low = m & -m
            i = low.bit_length() - 1
            g = res[i]
            r = True if g is None else g(ctx)
            if r is True:
                return (i, self._payloads[i]), TableTrace(
                    self._conds, self._parts, ctx, i, cands, results
                )
            if r is None:
                results[i] = None
            m ^= low
        return None, TableTrace(self._conds, self._parts, ctx, n, cands, results)

    def describe(self) -> dict[str, Any]:
        """Return a summary of the index (for benchmarks and debugging)."""
        cols = self._cols or ()
        return {
            "rows": len(self.rows),
            "indexed_columns": [
                {
                    "field": c.field,
                    "mode": "discrete" if c.discrete else "range",
                    "keys": len(c.dmap) if c.discrete else len(c.bps),
                }
                for c in cols
            ],
            "rows_with_residual": sum(1 for f in self._residual if f is not None),
        }
