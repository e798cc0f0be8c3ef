"""First-match rule tables on the durable-rules C Rete engine, equal to :class:`RuleTable`.

:class:`DurableTable` answers ``first(ctx)`` exactly like
:meth:`salesrules.conditions.RuleTable.first` (same rows, same ``(index, payload)`` or
``None``), but matches the rows it can translate with durable-rules 2.0.28 (``pip install
'salesrules[durable]'``, CPython 3.11/3.12 only: 2.0.28 does not import on 3.13). It exists to
compare engines, never because the core needs it.

How a table is translated
-------------------------
Every field path the rows read (``lead.region``, ``creator.team.id`` …) gets a number ``j``
and, per value *type class* it is compared with, one **slot** of the durable event: ``f<j>s``
(string), ``f<j>n`` (number), ``f<j>b`` (bool, as 0/1), ``f<j>t`` (aware datetime, as integer
microseconds since the epoch), ``f<j>d`` (date, as its ordinal), plus ``f<j>p`` (present) for
``exists``/``missing``. For each context one event is built: a slot is set only when the field
holds a value *of that class*. A missing / ``None`` field, or a value of another class, leaves
the slot out, and durable never matches a comparison on an absent property — which is exactly
the Kleene "unknown does not match" rule, without any fallback.

Each row's condition (``Condition.spec``) is put in negation normal form: ``not`` is pushed down
to the comparisons (De Morgan holds in Kleene logic) and a negated comparison becomes the
opposite comparison *on the same slot* (``not lt`` → ``ge``, ``not in`` → "the slot of the
value's class holds none of the listed values"), which is again "known and false" — Kleene's
``not`` of a known value. With no negation left, a row is ``True`` under Kleene logic exactly
when it is true with every unknown comparison read as false, which is what durable computes.
Supported: ``eq ne lt le gt ge in not_in between exists missing`` with literal operands, and
``all``/``any``/``not`` in any nesting. The row becomes ``when_all(pri(i + 1), expr)``; the
highest-priority matching rule fires first and consumes the event.

What falls back to the pure matcher (always giving the identical answer)
------------------------------------------------------------------------
* **Rows** (evaluated with their compiled :class:`Condition`, in row order, only up to the row
  durable matched): ``ref`` operands, ``contains starts_with ends_with matches``; numbers durable
  cannot compare exactly (ints beyond ±2**53, floats whose JSON form has an exponent, Decimals
  that are not exactly such an int or float); strings that are not valid UTF-8; strings used with
  ``lt le gt ge between`` that contain a character up to ``"`` (U+0022) or a backslash (durable
  compares the raw JSON text with ``strncmp``); strings of more than 64 KiB of JSON (durable
  keeps string lengths in 16 bits); rows with more than 15 ``and``/``or`` nodes
  (durable's expression-sequence limit); and rows that would overflow durable's fixed-size
  network tables (512-entry child hash sets — durable *loops forever* when one fills —,
  128-entry lists, 256 rules per node, 4096 rules per ruleset), which an emulation of its alpha
  network checks before anything is handed to the engine.
* **Contexts** (the whole answer comes from the :class:`RuleTable`): a field that holds a value
  of a compared class that cannot be sent exactly (as above; or a string with ``"``, ``\\`` or a
  control character when the field is used with an ordering operator), and an event of more
  than 250 properties.

Rows are admitted in order while the emulated network also keeps durable's 64-entry match stack
safe (every child counted as matching); the rest run on the pure matcher. durable's session
state is itself a fact that flows through the rules, so every rule also requires the event's
nonce property ``_`` (the state never has it; without this a purely negative rule would fire
on the state). Should the engine still report an error or an unexpected action, the answer comes
from the pure table and the table stops using durable for good (``describe()["active"]``):
after such an error durable's session state may be corrupt, and deleting it can crash the
process, so that ruleset is deliberately leaked rather than freed.

Global state caveat
-------------------
durable-rules keeps process-global state in its C core: a fixed table of 131072 ruleset
handles, and (in ``durable.lang``) a global ruleset registry and host with background threads.
:class:`DurableTable` uses neither the registry nor a host: it creates its ruleset directly with
the engine's ``create_ruleset`` under a unique name (``salesrules_<id(self)>_<content hash>``)
and deletes it when the table is closed or garbage-collected, so tables never collide. Calls on
one table are serialized by a per-table lock (an event and its action are two engine calls). This
shared native state is exactly why the core never depends on durable-rules.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import reduce
from typing import Any, Final, Generic, TypeVar

from salesrules.conditions import Condition, RuleTable
from salesrules.conditions import _kind as _value_kind
from salesrules.errors import SalesRulesError

__all__ = ["DurableTable", "DurableUnavailableError"]

T = TypeVar("T")
Ctx = Mapping[str, Any]

# type classes of salesrules.conditions (kept in step by the differential test)
_OTHER, _STR, _NUM, _BOOL, _DT, _DATE = 0, 1, 2, 3, 4, 5
_TAGS: Final[Mapping[int, str]] = {_STR: "s", _NUM: "n", _BOOL: "b", _DT: "t", _DATE: "d"}
_ORDERED: Final = frozenset({_STR, _NUM, _DT, _DATE})
_EXACT: Final = 2**53
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO: Final = timedelta(microseconds=1)
_NONCE: Final = "_"  # always present: the per-event nonce, and the key of an always-true rule

# durable-rules 2.0.28 limits (src/rules/*.h), with margins
_MAX_COMBINATORS: Final = 15  # MAX_SEQUENCE_EXPRESSIONS 32, two entries per and/or
_MAX_ROWS: Final = 4000  # MAX_ACTIONS 4096
_MAX_HASH: Final = 448  # NEXT_BUCKET_LENGTH 512 (a full set makes durable loop forever)
_MAX_LIST: Final = 120  # NEXT_LIST_LENGTH 128
_MAX_BETAS: Final = 240  # BETA_LIST_LENGTH 256
_MAX_PROPERTIES: Final = 250  # MAX_OBJECT_PROPERTIES 255
_MAX_STACK: Final = 56  # MAX_STACK_SIZE 64 (an overflow corrupts the engine's session state)

_NEG: Final[Mapping[str, str]] = {
    "$eq": "$neq",
    "$neq": "$eq",
    "$lt": "$gte",
    "$gte": "$lt",
    "$lte": "$gt",
    "$gt": "$lte",
}
_CMP: Final[Mapping[str, str]] = {
    "eq": "$eq",
    "ne": "$neq",
    "lt": "$lt",
    "le": "$lte",
    "gt": "$gt",
    "ge": "$gte",
}

# intermediate formula: ("T",) ("F",) ("cmp", key, op, value) ("ex", key) ("nex", key)
# ("and", (f, ...)) ("or", (f, ...))
_F = tuple[Any, ...]
_TRUE: Final[_F] = ("T",)
_FALSE: Final[_F] = ("F",)
_NO: Final = object()  # "cannot be encoded exactly"


class DurableUnavailableError(SalesRulesError, ImportError):
    """durable-rules is not installed or cannot be imported (it needs CPython <= 3.12)."""


class _Unsupported(Exception):
    """A row uses something the durable translation cannot represent exactly."""


def _load_engine() -> tuple[Any, Any]:
    try:
        import durable_rules_engine  # type: ignore[import-not-found,unused-ignore]
        from durable import lang  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError as exc:
        raise DurableUnavailableError(
            "the durable backend needs durable-rules 2.0.28 (CPython 3.11/3.12): "
            "install the 'durable' extra, e.g. pip install 'salesrules[durable]' "
            f"({exc})"
        ) from exc
    return durable_rules_engine, lang


# --------------------------------------------------------------------------------------------
# Value encoding (both operands and context values)
# --------------------------------------------------------------------------------------------


def _utf8_ok(s: str) -> bool:
    """Whether durable can hold ``s``: valid UTF-8 and under 64 KiB of JSON text (durable keeps
    string lengths in 16 bits, so a longer string would compare on a truncated length)."""
    if (
        len(s) > 10_000
        and len(json.dumps(s, ensure_ascii=False).encode("utf-8", "replace")) > 65_000
    ):
        return False
    if s.isascii():
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _order_safe_operand(s: str) -> bool:
    return all(ch > '"' and ch != "\\" for ch in s)


def _order_safe_value(s: str) -> bool:
    return all(ch >= " " and ch != '"' and ch != "\\" for ch in s)


def _encode_number(v: Any) -> Any:
    if isinstance(v, int):
        return v if -_EXACT <= v <= _EXACT else _NO
    if isinstance(v, float):
        return v if math.isfinite(v) and "e" not in repr(v) else _NO
    if isinstance(v, Decimal):
        if not v.is_finite():
            return _NO
        if v == v.to_integral_value():
            return _encode_number(int(v))
        f = float(v)
        if Decimal(f) != v:
            return _NO
        return _encode_number(f)
    return _NO


def _encode(v: Any, kind: int) -> Any:
    """Encode a value of type class ``kind`` for durable, or return ``_NO``."""
    if kind == _STR:
        return v if _utf8_ok(v) else _NO
    if kind == _NUM:
        return _encode_number(v)
    if kind == _BOOL:
        return 1 if v else 0
    if kind == _DT:
        return (v - _EPOCH) // _MICRO
    if kind == _DATE:
        return v.toordinal()
    return _NO


def _decode_operand(v: Any) -> Any:
    """Undo ``Condition.spec``'s JSON-able normalization of a literal operand."""
    if isinstance(v, Mapping) and len(v) == 1:
        ((k, text),) = v.items()
        if k == "datetime":
            return datetime.fromisoformat(text)
        if k == "date":
            return date.fromisoformat(text)
        raise _Unsupported(f"operand {v!r}")
    if isinstance(v, list | tuple):
        return [_decode_operand(x) for x in v]
    return v


# --------------------------------------------------------------------------------------------
# Translation
# --------------------------------------------------------------------------------------------


def _and(parts: Sequence[_F]) -> _F:
    out: list[_F] = []
    for p in parts:
        if p[0] == "F":
            return _FALSE
        if p[0] == "T":
            continue
        out.extend(p[1] if p[0] == "and" else (p,))
    if not out:
        return _TRUE
    if len(out) == 1:
        return out[0]
    # most selective first (equalities, then alternatives, then ranges): keeps durable's
    # alpha network shallow and its match stack small; order does not change the result
    rank = {"cmp": 0, "or": 2, "ex": 3, "nex": 4}
    out.sort(key=lambda f: rank[f[0]] + (f[0] == "cmp" and f[2] != "$eq"))
    return ("and", tuple(out))


def _or(parts: Sequence[_F]) -> _F:
    out: list[_F] = []
    for p in parts:
        if p[0] == "T":
            return _TRUE
        if p[0] == "F":
            continue
        out.extend(p[1] if p[0] == "or" else (p,))
    if not out:
        return _FALSE
    if len(out) == 1:
        return out[0]
    return ("or", tuple(out))


@dataclass
class _FieldUse:
    index: int
    path: tuple[str, ...]
    kinds: set[int] = field(default_factory=set)
    presence: bool = False
    ordered_str: bool = False


class _Translator:
    """Collects slots while translating specs; one per table."""

    def __init__(self) -> None:
        self.fields: dict[str, _FieldUse] = {}

    def _use(self, name: str) -> _FieldUse:
        use = self.fields.get(name)
        if use is None:
            use = _FieldUse(len(self.fields), tuple(name.split(".")))
            self.fields[name] = use
        return use

    def row(self, spec: Any) -> tuple[_F, dict[str, _FieldUse]]:
        """Translate one row; slot usage is returned, registered only via :meth:`commit`."""
        pending: dict[str, _FieldUse] = {}
        formula = self._node(spec, False, pending)
        return formula, pending

    def commit(self, pending: dict[str, _FieldUse]) -> None:
        for name, use in pending.items():
            mine = self._use(name)
            mine.kinds |= use.kinds
            mine.presence |= use.presence
            mine.ordered_str |= use.ordered_str

    def _slot(self, name: str, kind: int, pending: dict[str, _FieldUse]) -> str:
        use = pending.setdefault(name, _FieldUse(-1, ()))
        use.kinds.add(kind)
        return f"f{self._use(name).index}{_TAGS[kind]}"

    def _node(self, spec: Any, neg: bool, pending: dict[str, _FieldUse]) -> _F:
        if not isinstance(spec, Mapping):
            raise _Unsupported(f"spec {spec!r}")
        if "all" in spec or "any" in spec:
            conj = ("all" in spec) != neg
            kids = [self._node(c, neg, pending) for c in spec["all" if "all" in spec else "any"]]
            return _and(kids) if conj else _or(kids)
        if "not" in spec:
            return self._node(spec["not"], not neg, pending)
        if "ref" in spec:
            raise _Unsupported("ref operand")
        return self._leaf(spec["field"], spec["op"], _decode_operand(spec["value"]), neg, pending)

    def _operand(self, v: Any, op: str) -> tuple[int, Any]:
        k = _value_kind(v) if v is not None else _OTHER
        if k not in _TAGS:
            raise _Unsupported(f"operand {v!r}")
        if op in ("lt", "le", "gt", "ge", "between") and (
            k not in _ORDERED or (k == _STR and not _order_safe_operand(v))
        ):
            raise _Unsupported(f"ordering operand {v!r}")
        e = _encode(v, k)
        if e is _NO:
            raise _Unsupported(f"operand {v!r} cannot be compared exactly by durable")
        return k, e

    def _leaf(self, name: str, op: str, value: Any, neg: bool, pending: dict[str, _FieldUse]) -> _F:
        if op in ("exists", "missing"):
            present = bool(value) == (op == "exists")
            pending.setdefault(name, _FieldUse(-1, ())).presence = True
            key = f"f{self._use(name).index}p"
            return ("ex", key) if present != neg else ("nex", key)
        if op in _CMP:
            k, e = self._operand(value, op)
            if k == _STR and op not in ("eq", "ne"):
                pending.setdefault(name, _FieldUse(-1, ())).ordered_str = True
            dop = _CMP[op]
            return ("cmp", self._slot(name, k, pending), _NEG[dop] if neg else dop, e)
        if op == "between":
            lo, hi = value
            k, elo = self._operand(lo, op)
            _, ehi = self._operand(hi, op)
            if k == _STR:
                pending.setdefault(name, _FieldUse(-1, ())).ordered_str = True
            key = self._slot(name, k, pending)
            if neg:
                return _or([("cmp", key, "$lt", elo), ("cmp", key, "$gt", ehi)])
            return _and([("cmp", key, "$gte", elo), ("cmp", key, "$lte", ehi)])
        if op in ("in", "not_in"):
            by_kind: dict[int, list[Any]] = {}
            for v in value:
                k, e = self._operand(v, op)
                if e not in by_kind.setdefault(k, []):
                    by_kind[k].append(e)
            member = (op == "in") != neg
            alts: list[_F] = []
            for k, es in sorted(by_kind.items()):
                key = self._slot(name, k, pending)
                if member:
                    alts.extend(("cmp", key, "$eq", e) for e in es)
                else:
                    alts.append(_and([("cmp", key, "$neq", e) for e in es]))
            return _or(alts)
        raise _Unsupported(f"operator {op!r}")


def _guard(f: _F) -> _F:
    """Require the event nonce first: durable's own session-state fact flows through the same
    network and would match a purely negative rule (``-m.f0p``); it never has ``_``."""
    ex = ("ex", _NONCE)
    if f[0] == "T":
        return ex
    return ("and", (ex, *(f[1] if f[0] == "and" else (f,))))


def _combinators(f: _F) -> int:
    if f[0] in ("and", "or"):
        return 1 + sum(_combinators(c) for c in f[1])
    return 0


def _to_durable(f: _F, m: Any) -> Any:
    """Build the durable DSL expression (``m.f0s == 'x'`` …) of a formula."""
    tag = f[0]
    if tag == "T":
        return +getattr(m, _NONCE)
    if tag == "ex":
        return +getattr(m, f[1])
    if tag == "nex":
        return -getattr(m, f[1])
    if tag == "cmp":
        attr, op, v = getattr(m, f[1]), f[2], f[3]
        if op == "$eq":
            return attr == v
        if op == "$neq":
            return attr != v
        if op == "$lt":
            return attr < v
        if op == "$lte":
            return attr <= v
        if op == "$gt":
            return attr > v
        return attr >= v
    kids = [_to_durable(c, m) for c in f[1]]
    if tag == "and":
        return reduce(lambda a, b: a & b, kids)
    return reduce(lambda a, b: a | b, kids)


# --------------------------------------------------------------------------------------------
# Emulation of durable's alpha network (to stay inside its fixed-size tables)
# --------------------------------------------------------------------------------------------


class _Alpha:
    __slots__ = ("betas", "hashed", "links", "listed")

    def __init__(self) -> None:
        self.hashed: dict[tuple[Any, ...], _Alpha] = {}
        self.listed: dict[str, _Alpha] = {}
        self.links: list[_Alpha] = []
        self.betas = 0

    def ok(self) -> bool:
        return (
            len(self.hashed) <= _MAX_HASH
            and len(self.listed) + len(self.links) <= _MAX_LIST
            and self.betas <= _MAX_BETAS
        )


class _Network:
    """Where each durable rule's alpha nodes would go, with an undo log per row."""

    def __init__(self) -> None:
        self.root = _Alpha()
        self._log: list[tuple[str, _Alpha, Any]] = []

    def _child(self, parent: _Alpha, f: _F) -> _Alpha:
        if f[0] == "nex":
            node = parent.listed.get(f[1])
            if node is None:
                node = parent.listed[f[1]] = _Alpha()
                self._log.append(("listed", parent, f[1]))
            return node
        if f[0] == "T":
            key: tuple[Any, ...] = ("$ex", _NONCE)
        elif f[0] == "ex":
            key = ("$ex", f[1])
        else:
            key = (f[2], f[1], type(f[3]).__name__, json.dumps(f[3], ensure_ascii=False))
        node = parent.hashed.get(key)
        if node is None:
            node = parent.hashed[key] = _Alpha()
            self._log.append(("hashed", parent, key))
        return node

    def _add(self, f: _F, parent: _Alpha, touched: list[_Alpha]) -> _Alpha:
        touched.append(parent)
        if f[0] == "and":
            cur = parent
            for c in f[1]:
                cur = self._add(c, cur, touched)
            return cur
        if f[0] == "or":
            fwd = _Alpha()
            for c in f[1]:
                end = self._add(c, parent, touched)
                end.links.append(fwd)
                self._log.append(("links", end, None))
                touched.append(end)
            return fwd
        return self._child(parent, f)

    def try_add(self, f: _F) -> bool:
        """Add one rule; undo it and return False when a durable table would overflow."""
        self._log = []
        touched: list[_Alpha] = []
        end = self._add(f, self.root, touched)
        end.betas += 1
        self._log.append(("betas", end, None))
        touched.append(end)
        if all(n.ok() for n in touched):
            return True
        for what, node, key in reversed(self._log):
            if what == "hashed":
                del node.hashed[key]
            elif what == "listed":
                del node.listed[key]
            elif what == "links":
                node.links.pop()
            else:
                node.betas -= 1
        return False

    def stack_height(self) -> int:
        """Bound the height of durable's match stack (64 entries) over all events.

        Matching pops a node and pushes every child that matches; this counts every child as
        matching, so the true height never exceeds the bound.
        """
        memo: dict[int, int] = {}

        def h(node: _Alpha) -> int:
            got = memo.get(id(node))
            if got is None:
                kids = [*node.hashed.values(), *node.listed.values(), *node.links]
                got = len(kids) + max((h(k) for k in kids), default=0)
                memo[id(node)] = got
            return got

        return h(self.root)


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Slotting:
    get: Callable[[Ctx], Any]
    presence: str | None
    keys: Mapping[int, str]
    ordered_str: bool


def _getter(path: tuple[str, ...]) -> Callable[[Ctx], Any]:
    root, rest = path[0], path[1:]

    def get(ctx: Ctx) -> Any:
        r: Any = ctx.get(root)
        for k in rest:
            if type(r) is dict or isinstance(r, Mapping):
                r = r.get(k)
            else:
                return None
        return r

    return get


def _delete_ruleset(engine: Any, handle: int) -> None:
    with contextlib.suppress(engine.error):
        engine.delete_ruleset(handle)


class DurableTable(Generic[T]):
    """A first-match table matched by durable-rules; ``first`` equals ``RuleTable.first``.

    Args:
        rows: ``(condition, payload)`` pairs in priority order, as for :class:`RuleTable`.
        table: An already built :class:`RuleTable` of the same rows (built when omitted); it
            answers the contexts and rows durable cannot (see the module docstring).

    Raises:
        DurableUnavailableError: durable-rules is not importable (install the ``durable``
            extra; CPython 3.11/3.12 only).

    Attributes:
        rows: The rows, as given.
        table: The pure :class:`RuleTable` used for fallbacks.
        name: The durable ruleset name (unique per table).
    """

    __slots__ = (
        "__weakref__",
        "_engine",
        "_finalizer",
        "_handle",
        "_lock",
        "_nonce",
        "_payloads",
        "_pure",
        "_rule_rows",
        "_slots",
        "_unsupported",
        "name",
        "rows",
        "table",
    )

    def __init__(self, rows: Sequence[tuple[Condition, T]], *, table: RuleTable[T] | None = None):
        """Translate the rows and create the durable ruleset."""
        engine, lang = _load_engine()
        self._engine = engine
        self.rows: tuple[tuple[Condition, T], ...] = tuple((c, p) for c, p in rows)
        self.table: RuleTable[T] = table if table is not None else RuleTable(self.rows)
        if len(self.table.rows) != len(self.rows):
            raise ValueError("table does not hold the given rows")
        self._payloads = tuple(p for _, p in self.rows)
        tr = _Translator()
        candidates: list[tuple[int, _F, dict[str, _FieldUse]]] = []
        unsupported: dict[int, str] = {}
        for i, (cond, _) in enumerate(self.rows):
            try:
                formula, pending = tr.row(cond.spec)
                if formula[0] == "F":
                    continue  # never true, in either matcher
                formula = _guard(formula)
                if _combinators(formula) > _MAX_COMBINATORS:
                    raise _Unsupported("more than 15 and/or nodes")
            except _Unsupported as exc:
                unsupported[i] = str(exc)
                continue
            candidates.append((i, formula, pending))
        admitted = self._admit(candidates, unsupported)
        definition: dict[str, Any] = {}
        rule_rows: dict[str, int] = {}
        for i, formula, pending in admitted:
            tr.commit(pending)
            expr = _to_durable(formula, lang.m)
            definition[f"r{i}"] = {"all": [{"m": expr.define()}], "pri": i + 1}
            rule_rows[f"r{i}"] = i
        pure = sorted(unsupported)
        self._pure = tuple(pure)
        self._unsupported = unsupported
        self._rule_rows = rule_rows
        self._slots = tuple(
            _Slotting(
                _getter(use.path),
                f"f{use.index}p" if use.presence else None,
                {k: f"f{use.index}{_TAGS[k]}" for k in sorted(use.kinds)},
                use.ordered_str,
            )
            for use in tr.fields.values()
            if use.presence or use.kinds
        )
        text = json.dumps(definition, ensure_ascii=False, sort_keys=True)
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        self.name = f"salesrules_{id(self):x}_{digest}"
        self._lock = threading.Lock()
        self._nonce = 0
        self._handle: int | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        if definition:
            handle = engine.create_ruleset(self.name, text)
            self._handle = handle
            self._finalizer = weakref.finalize(self, _delete_ruleset, engine, handle)

    @staticmethod
    def _admit(
        candidates: list[tuple[int, _F, dict[str, _FieldUse]]], unsupported: dict[int, str]
    ) -> list[tuple[int, _F, dict[str, _FieldUse]]]:
        """Keep the rows durable's fixed-size tables and match stack can hold (row order)."""
        net = _Network()
        admitted: list[tuple[int, _F, dict[str, _FieldUse]]] = []
        for cand in candidates:
            if len(admitted) >= _MAX_ROWS:
                unsupported[cand[0]] = "durable's rules-per-ruleset limit"
            elif net.try_add(cand[1]):
                admitted.append(cand)
            else:
                unsupported[cand[0]] = "durable's network tables would overflow"
        if net.stack_height() <= _MAX_STACK:
            return admitted
        lo, hi = 0, len(admitted) - 1  # the longest prefix whose match stack stays small
        while lo < hi:
            mid = (lo + hi + 1) // 2
            trial = _Network()
            for _, f, _ in admitted[:mid]:
                trial.try_add(f)
            if trial.stack_height() <= _MAX_STACK:
                lo = mid
            else:
                hi = mid - 1
        for i, _, _ in admitted[lo:]:
            unsupported[i] = "durable's match stack could overflow"
        return admitted[:lo]

    @classmethod
    def from_table(cls, table: RuleTable[T]) -> DurableTable[T]:
        """Build a durable table from the rows of a :class:`RuleTable` (reused for fallbacks)."""
        return cls(table.rows, table=table)

    def __len__(self) -> int:
        return len(self.rows)

    def close(self) -> None:
        """Delete the durable ruleset now; later calls are answered by the pure table."""
        with self._lock:
            if self._finalizer is not None:
                self._finalizer()
            self._handle = None

    def __enter__(self) -> DurableTable[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        """Return which rows durable matches and why the others run on the pure matcher."""
        return {
            "rows": len(self.rows),
            "durable_rows": len(self._rule_rows),
            "pure_rows": {i: self._unsupported[i] for i in self._pure},
            "slots": sum(len(s.keys) + (s.presence is not None) for s in self._slots),
            "ruleset": self.name,
            "active": self._handle is not None,
        }

    # --- evaluation --------------------------------------------------------------------------
    def _event(self, ctx: Ctx) -> dict[str, Any] | None:
        """Build the durable event of a context, or ``None`` when it cannot be sent exactly."""
        msg: dict[str, Any] = {}
        for s in self._slots:
            v = s.get(ctx)
            if v is None:
                continue
            if s.presence is not None:
                msg[s.presence] = 1
            if not s.keys:
                continue
            k = _value_kind(v)
            key = s.keys.get(k)
            if key is None:
                continue
            if k == _STR and s.ordered_str and not _order_safe_value(v):
                return None
            e = _encode(v, k)
            if e is _NO:
                return None
            msg[key] = e
        if len(msg) > _MAX_PROPERTIES:
            return None
        return msg

    def _poison(self) -> None:
        """Stop using durable for this table after an engine error (its session state may be
        corrupt: deleting it can crash the process, so the ruleset is left alone, not freed)."""
        self._handle = None
        if self._finalizer is not None:
            self._finalizer.detach()

    def _durable_first(self, msg: dict[str, Any]) -> int | None:
        """Return the first durable row that matches, ``None``; raise ``_Unsupported`` on error."""
        eng = self._engine
        with self._lock:
            h = self._handle
            if h is None:
                raise _Unsupported("closed")
            self._nonce += 1
            nonce = msg[_NONCE] = self._nonce
            try:
                code, state = eng.assert_event(h, json.dumps(msg, ensure_ascii=False))
                if code == 1:  # ERR_EVENT_NOT_HANDLED: no rule matched
                    return None
                res = eng.start_action_for_state(h, state) if code == 0 else None
                if res is None:
                    self._poison()
                    raise _Unsupported(f"durable returned {code} without an action")
                fired = json.loads(res[1])
                more = eng.complete_and_start_action(h, state)
            except eng.error as exc:
                self._poison()
                raise _Unsupported(str(exc)) from exc
            if more is not None or len(fired) != 1:
                self._poison()
                raise _Unsupported("more than one action")
            ((name, data),) = fired.items()
            if data.get("m", {}).get(_NONCE) != nonce:
                self._poison()
                raise _Unsupported("stale action")
            return self._rule_rows[name]

    def first(self, ctx: Ctx) -> tuple[int, T] | None:
        """Return ``(index, payload)`` of the first row whose condition is ``True``, else ``None``.

        Args:
            ctx: Mapping of root name to record mapping.

        Returns:
            Exactly what ``RuleTable.first(ctx)`` returns for the same rows.
        """
        if self._handle is None:
            return self.table.first(ctx)
        msg = self._event(ctx)
        if msg is None:
            return self.table.first(ctx)
        try:
            hit = self._durable_first(msg)
        except _Unsupported:
            return self.table.first(ctx)
        rows = self.rows
        for i in self._pure:
            if hit is not None and i > hit:
                break
            if rows[i][0](ctx) is True:
                return i, self._payloads[i]
        return None if hit is None else (hit, self._payloads[hit])

    def __iter__(self) -> Iterator[tuple[Condition, T]]:
        return iter(self.rows)
