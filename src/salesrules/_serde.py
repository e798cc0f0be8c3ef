"""JSON conversion for decisions and outcomes (typed, exact, deterministic).

``to_jsonable`` turns dataclasses, ``Decimal``, datetimes, enums, tuples and mappings into
JSON values; ``from_jsonable`` rebuilds a value of a given type from them, so a decision
survives a JSON round trip unchanged. ``Decimal`` is written as a string so no float ever
touches money; datetimes as ISO 8601 with their offset.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

__all__ = ["dumps", "freeze_json", "from_jsonable", "to_jsonable"]


def to_jsonable(obj: Any) -> Any:
    """Convert ``obj`` to JSON-ready values (dict, list, str, int, float, bool, None)."""
    t = type(obj)
    # Exact-type fast paths first: decisions are built on hot paths (sweeps, batches).
    if t is str or t is int or t is bool or obj is None or t is float:
        return obj
    if t is dict or t is types.MappingProxyType:
        return {k if type(k) is str else str(k): to_jsonable(v) for k, v in obj.items()}
    if t is list or t is tuple:
        return [to_jsonable(v) for v in obj]
    if t is Decimal:
        return str(obj)
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, date | time):
        return obj.isoformat()
    if isinstance(obj, timedelta):
        return obj.total_seconds()
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: to_jsonable(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if f.metadata.get("json", True)
        }
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | frozenset | set):
        items = [to_jsonable(v) for v in obj]
        if isinstance(obj, frozenset | set):
            items.sort(key=lambda v: json.dumps(v, sort_keys=True, ensure_ascii=False))
        return items
    model_dump = getattr(obj, "model_dump", None)
    if callable(model_dump):
        return to_jsonable(model_dump(mode="json"))
    raise TypeError(f"cannot convert {type(obj).__name__} to JSON")


def freeze_json(obj: Any) -> Any:
    """Return a JSON-native, immutable copy: mappings become read-only, lists become tuples."""
    t = type(obj)
    if t is str or t is int or t is bool or obj is None or t is float:
        return obj
    if t is dict or t is types.MappingProxyType:
        return types.MappingProxyType(
            {k if type(k) is str else str(k): freeze_json(v) for k, v in obj.items()}
        )
    if t is list or t is tuple:
        return tuple(freeze_json(v) for v in obj)
    if t is Decimal:
        return str(obj)
    return _freeze(to_jsonable(obj))


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return types.MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def dumps(obj: Any) -> str:
    """Serialize deterministically: sorted keys, no spaces, UTF-8 text kept as is."""
    return json.dumps(to_jsonable(obj), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


_NONE_TYPE = type(None)


def from_jsonable(tp: Any, data: Any) -> Any:
    """Rebuild a value of type ``tp`` from JSON data produced by :func:`to_jsonable`."""
    if tp is Any or tp is object or isinstance(tp, typing.TypeVar):
        return _freeze(data)
    if tp is _NONE_TYPE:
        if data is not None:
            raise TypeError(f"expected null, got {data!r}")
        return None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or origin is types.UnionType:
        if data is None and _NONE_TYPE in args:
            return None
        last_error: Exception | None = None
        for arg in args:
            if arg is _NONE_TYPE:
                continue
            try:
                return from_jsonable(arg, data)
            except (TypeError, ValueError, KeyError) as exc:
                last_error = exc
        raise TypeError(f"no member of {tp} accepts {data!r}") from last_error
    if origin is typing.Literal:
        if data not in args:
            raise ValueError(f"{data!r} is not one of {args}")
        return data
    if origin in (tuple,):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_jsonable(args[0], v) for v in data)
        return tuple(from_jsonable(a, v) for a, v in zip(args, data, strict=True))
    if origin in (list,):
        return [from_jsonable(args[0], v) for v in data]
    if origin in (frozenset, set):
        return frozenset(from_jsonable(args[0], v) for v in data)
    if origin in (dict, Mapping):
        kt, vt = args if args else (str, Any)
        return types.MappingProxyType(
            {from_jsonable(kt, k): from_jsonable(vt, v) for k, v in data.items()}
        )
    if isinstance(tp, typing.NewType):
        return from_jsonable(tp.__supertype__, data)
    if isinstance(tp, type):
        if issubclass(tp, enum.Enum):
            return tp(data)
        if tp is bool:
            if not isinstance(data, bool):
                raise TypeError(f"expected bool, got {data!r}")
            return data
        if tp is int:
            if isinstance(data, bool) or not isinstance(data, int):
                raise TypeError(f"expected int, got {data!r}")
            return data
        if tp is float:
            if not isinstance(data, int | float) or isinstance(data, bool):
                raise TypeError(f"expected number, got {data!r}")
            return float(data)
        if tp is str:
            if not isinstance(data, str):
                raise TypeError(f"expected str, got {data!r}")
            return data
        if tp is Decimal:
            if isinstance(data, bool) or not isinstance(data, str | int):
                raise TypeError(f"expected decimal string, got {data!r}")
            return Decimal(data)
        if tp is datetime:
            return datetime.fromisoformat(data)
        if tp is date:
            return date.fromisoformat(data)
        if tp is time:
            return time.fromisoformat(data)
        if tp is timedelta:
            return timedelta(seconds=data)
        if dataclasses.is_dataclass(tp):
            if not isinstance(data, dict):
                raise TypeError(f"expected object for {tp.__name__}, got {data!r}")
            hints = typing.get_type_hints(tp)
            kwargs = {}
            for f in dataclasses.fields(tp):
                if f.name in data:
                    kwargs[f.name] = from_jsonable(hints[f.name], data[f.name])
            return tp(**kwargs)
        validate = getattr(tp, "model_validate", None)
        if callable(validate):
            return validate(data)
    raise TypeError(f"unsupported type {tp!r}")
