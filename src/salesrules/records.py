"""Records the host passes in: pydantic models that accept plain dicts too.

Conventions every record follows:

* extra fields are allowed (CRMs have custom fields) and conditions can read them;
* datetimes must be timezone-aware: a naive one is a :class:`~salesrules.errors.RecordError`
  naming the record and the field;
* money is ``Decimal`` (a float amount is refused: it has already lost cents);
* records are frozen: the library never changes what the host passed.

Use :func:`coerce` to turn a dict (or a model) into a record, converting pydantic's
``ValidationError`` into a ``RecordError`` that names the record (``lead 'L-1'``) and the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, TypeVar

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, ValidationError

from salesrules.errors import RecordError

__all__ = [
    "Money",
    "Record",
    "as_mapping",
    "coerce",
    "coerce_many",
    "parse_datetime",
]

R = TypeVar("R", bound=BaseModel)


def _no_float(value: Any) -> Any:
    if isinstance(value, float):
        raise ValueError("amounts must be decimal strings or integers, not floats")
    return value


#: A money amount: ``Decimal`` from a string or an int, never from a float.
Money = Annotated[Decimal, BeforeValidator(_no_float)]

#: A timezone-aware datetime (a naive one is refused).
Timestamp = AwareDatetime


class Record(BaseModel):
    """Base of every host record: frozen, extra (custom) fields allowed and readable."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    id: str

    def as_mapping(self) -> dict[str, Any]:
        """The record as a plain dict, custom fields included (what conditions read)."""
        return as_mapping(self)


def as_mapping(record: BaseModel | Mapping[str, Any] | None) -> dict[str, Any]:
    """Return a record as a plain dict (pydantic models are dumped in Python mode)."""
    if record is None:
        return {}
    if isinstance(record, BaseModel):
        return record.model_dump()
    return dict(record)


def _record_name(model: type[BaseModel], data: Any, name: str | None) -> str:
    kind = name or model.__name__.lower()
    ident = None
    if isinstance(data, Mapping):
        ident = data.get("id")
    elif isinstance(data, BaseModel):
        ident = getattr(data, "id", None)
    return f"{kind} {ident!r}" if ident is not None else kind


def coerce(model: type[R], data: Any, name: str | None = None) -> R:
    """Validate ``data`` (a dict or a model) as ``model``.

    Args:
        model: the record model.
        data: a mapping, or an instance of ``model`` (returned as is).
        name: what to call the record in errors (default: the model's name).

    Returns:
        The validated record.

    Raises:
        RecordError: naming the record and the first bad field (all of them in ``problems``).
    """
    if isinstance(data, model):
        return data
    if isinstance(data, BaseModel):
        data = data.model_dump()
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _record_error(exc, _record_name(model, data, name)) from None


def coerce_many(model: type[R], items: Any, name: str | None = None) -> tuple[R, ...]:
    """Validate a list of records; the error names the position and the record."""
    if items is None:
        return ()
    if isinstance(items, Mapping | str | bytes) or not hasattr(items, "__iter__"):
        raise RecordError(name or model.__name__.lower(), "*", "expected a list of records")
    return tuple(
        coerce(model, item, f"{name or model.__name__.lower()}[{i}]") for i, item in enumerate(items)
    )


def _record_error(exc: ValidationError, record: str) -> RecordError:
    problems: list[tuple[str, str, str]] = []
    for err in exc.errors(include_url=False):
        field = ".".join(str(p) for p in err["loc"]) or "*"
        msg = err["msg"]
        if err["type"] == "timezone_aware":
            msg = "naive datetime: a timezone-aware value is required (add an offset such as +08:00)"
        problems.append((record, field, msg))
    first, *rest = problems or [(record, "*", str(exc))]
    return RecordError(first[0], first[1], first[2], problems=rest)


def parse_datetime(value: Any, record: str, field: str) -> datetime:
    """Parse an aware datetime from a ``datetime`` or ISO 8601 text.

    Raises:
        RecordError: missing, unparseable, or naive.
    """
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise RecordError(record, field, f"not an ISO 8601 datetime: {value!r}") from None
    if not isinstance(value, datetime):
        raise RecordError(record, field, f"a timezone-aware datetime is required, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise RecordError(
            record, field, "naive datetime: a timezone-aware value is required (e.g. +08:00)"
        )
    return value


def require_aware(value: datetime, what: str = "now") -> datetime:
    """Return ``value`` if it is timezone-aware; otherwise raise ``RecordError`` naming it."""
    return parse_datetime(value, what, what)


# ---- shared CRM records --------------------------------------------------------------------
# Domain modules add their records below, each in its own block. Keep blocks independent.


class Rep(Record):
    """A sales rep (user): manager, region, teams, roles, active flag."""

    name: str = ""
    manager_id: str | None = None
    region: str | None = None
    teams: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    active: bool = True


class Activity(Record):
    """A logged activity on a record (call, visit, email …) by a rep at a time."""

    record_id: str
    kind: str
    at: AwareDatetime
    by: str | None = None


class StageChange(Record):
    """One entry of an opportunity's stage history."""

    id: str = ""
    stage: str
    at: AwareDatetime
    by: str | None = None


class OwnershipChange(Record):
    """One entry of a record's ownership history: who owned it from when."""

    id: str = ""
    owner_id: str | None
    at: AwareDatetime
    reason: str | None = None


# ---- assignment records --------------------------------------------------------------------

# ---- timeouts records ----------------------------------------------------------------------

# ---- stages records ------------------------------------------------------------------------

# ---- splits records ------------------------------------------------------------------------


class SplitLine(BaseModel):
    """One member of a split: a rep, a share in percent (``Decimal``) and a team role."""

    model_config = ConfigDict(extra="allow", frozen=True)

    rep_id: str
    share: Money | None = None
    role: str = ""


class DealLine(BaseModel):
    """One line of a deal (a product, or an amount in one currency); amounts are ``Decimal``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str = ""
    amount: Money
    currency: str | None = None
    product: str | None = None


class SplitDeal(Record):
    """The record a collaboration request or a split is about (an opportunity, usually).

    ``split`` is its current revenue split (empty: the owner holds 100 %); ``overlay`` its
    overlay split; ``amount``/``currency`` or ``lines`` its value.
    """

    owner_id: str | None = None
    stage: str | None = None
    region: str | None = None
    amount: Money | None = None
    currency: str | None = None
    lines: tuple[DealLine, ...] = ()
    split: tuple[SplitLine, ...] = ()
    overlay: tuple[SplitLine, ...] = ()


class CollaborationRequest(Record):
    """A collaboration request as filled in by a rep (fields are checked by ``validate_request``).

    Form fields are loosely typed on purpose: a missing or malformed one is reported as a
    refusal listing every problem, not as an exception.
    """

    requester_id: Any = None
    record_id: Any = None
    owner_id: Any = None
    share: Any = None
    role: Any = None
    contribution: Any = None
    kind: Any = "revenue"
    status: str = "draft"


class ApprovalRecord(BaseModel):
    """One step already taken on a collaboration request (who approved which step, when)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    step: int
    approver: str
    by: str
    at: AwareDatetime
    action: str = "approve"


class CollaborationState(BaseModel):
    """The persisted state of a submitted collaboration request (``Decision.state``)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    request_id: str
    record_id: str
    requester_id: str
    owner_id: str
    role: str
    share: Money
    kind: str = "revenue"
    status: str = "submitted"
    step: int = 0
    approvals: tuple[ApprovalRecord, ...] = ()
    submitted_at: AwareDatetime
    expires_at: AwareDatetime | None = None


# ---- handoff records -----------------------------------------------------------------------
