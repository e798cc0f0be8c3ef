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

from pydantic import Field as _AField  # noqa: E402


class Window(BaseModel):
    """A half-open time window ``[start, end)`` (availability, leave)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: AwareDatetime
    end: AwareDatetime


class RosterRep(Rep):
    """A rep as the assignment roster sees it: a :class:`Rep` plus availability and capacity.

    ``availability``: when non-empty, the rep can receive leads only inside one of these
    windows (a shift); ``away``: windows when the rep receives nothing (leave, PTO). Both are
    half-open ``[start, end)``. ``capacity`` is the weight of the ``weighted`` strategy when the
    rule names no cap to weigh by.
    """

    availability: tuple[Window, ...] = ()
    away: tuple[Window, ...] = ()
    capacity: int | None = _AField(default=None, ge=0)


class Lead(Record):
    """A new lead to assign; custom fields are allowed and readable by conditions."""

    source: str | None = None
    region: str | None = None
    company: str | None = None
    credit_code: str | None = None
    creator_id: str | None = None


class RegisteredCustomer(Record):
    """A registered customer (报备客户): its owner and the end of its protection period.

    ``protected_until`` is exclusive: at that instant the protection has ended.
    """

    name: str = ""
    credit_code: str | None = None
    owner_id: str
    protected_until: AwareDatetime | None = None


class PoolRecord(Record):
    """A record in a public pool (公海), as a claim sees it.

    ``released_at`` is when it entered the pool; ``previous_owner_id`` who held it before.
    """

    pool: str
    released_at: AwareDatetime | None = None
    previous_owner_id: str | None = None


class RepCounts(BaseModel):
    """What the host counted for one rep; every cap and claim limit reads only these fields.

    ``assigned_at``: times of the rep's recent new assignments (cover at least the longest
    cap period/window); ``claimed_at``: times of recent pool claims (at least this month);
    ``open_records``: the rep's open records (for backlog caps with a condition);
    ``holdings`` / ``won``: records currently held, and how many of them are won;
    ``last_assigned_at``: the latest assignment (least-loaded tie-break);
    ``by_cap``: counts the host already computed, by cap id (they win over the raw data).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    assigned_at: tuple[AwareDatetime, ...] = ()
    claimed_at: tuple[AwareDatetime, ...] = ()
    open_records: tuple[dict[str, Any], ...] = ()
    holdings: int = _AField(default=0, ge=0)
    won: int = _AField(default=0, ge=0)
    last_assigned_at: AwareDatetime | None = None
    by_cap: dict[str, int] = _AField(default_factory=dict)


# ---- timeouts records ----------------------------------------------------------------------


def _tracked_type(value: Any) -> Any:
    if value not in ("lead", "customer", "opportunity"):
        raise ValueError("type must be 'lead', 'customer' or 'opportunity'")
    return value


def _tracked_status(value: Any) -> Any:
    if value not in ("open", "won", "lost"):
        raise ValueError("status must be 'open', 'won' or 'lost'")
    return value


def _non_negative(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        raise ValueError("must be zero or more")
    return value


class GradeChange(BaseModel):
    """One entry of a lead's grade history: the grade it got and when."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    grade: str
    at: AwareDatetime


class TrackedRecord(Record):
    """A lead, registered customer or opportunity whose release clocks ``timeouts`` checks.

    ``type`` is ``lead``, ``customer`` or ``opportunity``; ``status`` is ``open``, ``won`` or
    ``lost``. ``owner_since`` is the start of the current owner's tenure; when absent it is
    read from the ownership history passed to ``timeouts.check``. ``created_at`` is
    informational only: no clock ever starts at a record's creation.
    """

    type: Annotated[str, BeforeValidator(_tracked_type)]
    owner_id: str | None = None
    owner_since: AwareDatetime | None = None
    owner_manager_id: str | None = None
    created_at: AwareDatetime | None = None
    status: Annotated[str, BeforeValidator(_tracked_status)] = "open"
    grade: str | None = None
    grade_changes: tuple[GradeChange, ...] = ()
    stage: str | None = None
    stage_entered_at: AwareDatetime | None = None
    converted_at: AwareDatetime | None = None
    customer_id: str | None = None
    locked: bool = False
    owner_lock_count: Annotated[int, BeforeValidator(_non_negative)] | None = None
    extensions: Annotated[int, BeforeValidator(_non_negative)] = 0

# ---- stages records ------------------------------------------------------------------------

from pydantic import StrictBool as _StrictBool  # noqa: E402 - kept inside the stages block


class StageAttachment(BaseModel):
    """A file attached to an opportunity; ``kind`` is what stage gates look for (需求调研表)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    kind: str
    id: str | None = None
    name: str = ""


class StageApproval(BaseModel):
    """An approval on an opportunity; only ``status == "approved"`` satisfies a gate."""

    model_config = ConfigDict(extra="allow", frozen=True)

    kind: str
    status: str = "approved"
    by: str | None = None
    at: AwareDatetime | None = None


class StageOpportunity(Record):
    """An opportunity as the stage gates read it.

    Custom fields (``amount``, ``close_date`` …) are extra fields, read by the field names the
    ``stages`` section declares. ``splits`` (revenue split lines, ``[{rep_id, share}]``) is read
    by the ``valid_revenue_split`` check.
    """

    stage: str
    owner_id: str | None = None
    owner_manager_id: str | None = None
    collaborator_ids: tuple[str, ...] = ()
    attachments: tuple[StageAttachment, ...] = ()
    checklist: dict[str, _StrictBool] = {}
    approvals: tuple[StageApproval, ...] = ()


class StageActor(Record):
    """Who asks for a stage transition: roles, and the permissions a bypass may name."""

    name: str = ""
    roles: tuple[str, ...] = ()
    permissions: tuple[str, ...] = ()

# ---- splits records ------------------------------------------------------------------------

from pydantic import AliasChoices as _SplitsAliases  # noqa: E402 - kept inside the splits block
from pydantic import Field as _SplitsField  # noqa: E402


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

    ``split`` is its current revenue split (empty: the owner holds 100 %; ``splits`` is
    accepted too, the name the stage gates read); ``overlay`` its overlay split;
    ``amount``/``currency`` or ``lines`` its value.
    """

    owner_id: str | None = None
    stage: str | None = None
    region: str | None = None
    amount: Money | None = None
    currency: str | None = None
    lines: tuple[DealLine, ...] = ()
    split: tuple[SplitLine, ...] = _SplitsField(
        default=(), validation_alias=_SplitsAliases("split", "splits")
    )
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
# Imports local to this block keep concurrent edits of the blocks independent.
from datetime import date as _date  # noqa: E402
from typing import Literal as _Literal  # noqa: E402

from pydantic import Field as _Field  # noqa: E402


class Contract(Record):
    """A sales contract handed over to delivery (custom fields allowed and mappable).

    ``owner_id`` is the sales owner; ``amount`` is ``Decimal`` (never a float);
    ``start_date``/``end_date`` are calendar dates (ISO ``YYYY-MM-DD``).
    """

    number: str | None = None
    opportunity_id: str | None = None
    customer_id: str | None = None
    owner_id: str | None = None
    amount: Money | None = None
    currency: str | None = None
    product_line: str | None = None
    region: str | None = None
    start_date: _date | None = None
    end_date: _date | None = None


#: The contract events the handoff understands.
ContractEventType = _Literal["amended", "approved", "verified", "revoked"]


class ContractEvent(Record):
    """Something that happened to a contract (a webhook from the CRM's approval flow).

    ``version`` is the contract's revision when the event happened (an amendment makes a new
    revision); ``verification`` is the verification result of a ``verified`` event, such as
    ``normal_project``.
    """

    contract_id: str
    type: ContractEventType
    version: int = _Field(ge=0)
    at: AwareDatetime
    verification: str | None = None


class ProjectMilestone(BaseModel):
    """One milestone of a project as reported by the project tool."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str
    done: bool = False
    at: AwareDatetime | None = None


class ProjectStatusEvent(Record):
    """A snapshot of a project's status sent back by the project tool.

    Ordered by ``version`` when the event has one, else by ``at``. ``milestones`` is the full
    list as of this snapshot (not a delta).
    """

    contract_id: str
    project_id: str | None = None
    status: str
    percent_complete: Decimal | None = _Field(default=None, ge=0, le=100)
    milestones: tuple[ProjectMilestone, ...] = ()
    version: int | None = _Field(default=None, ge=0)
    at: AwareDatetime


class HandoffProject(BaseModel):
    """The project a handoff asked the host to create (persisted in the handoff state).

    ``key`` is the idempotency key of its ``create_project`` effect; ``id`` is the project
    tool's id once the host knows it (``None`` until then); ``state`` is ``live``, ``flagged``
    (approval revoked after work started: a human decides) or ``cancelled``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    id: str | None = None
    state: _Literal["live", "flagged", "cancelled"] = "live"
    name: str | None = None
    template: str | None = None
    lead_id: str | None = None
    version: int = 0


class HandoffStatus(BaseModel):
    """The last project status applied to the CRM (persisted in the handoff state)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: str
    event_id: str
    at: AwareDatetime
    version: int | None = None
    crm: dict[str, Any] = _Field(default_factory=dict)


class HandoffState(BaseModel):
    """What the host persists per contract between handoff decisions (``Decision.state``).

    ``version``/``rank`` order contract events (see ``docs/handoff.md``); ``phase`` is
    ``new``, ``notified``, ``project``, ``revoked`` or ``not_a_project``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    contract_id: str
    opportunity_id: str | None = None
    customer_id: str | None = None
    phase: _Literal["new", "notified", "project", "revoked", "not_a_project"] = "new"
    version: int = -1
    rank: int = -1
    last_event: str | None = None
    last_event_id: str | None = None
    team: str | None = None
    sales_owner_id: str | None = None
    project: HandoffProject | None = None
    status: HandoffStatus | None = None
    #: ids of this contract's cancelled projects (their late status events are ignored)
    cancelled_project_ids: tuple[str, ...] = ()
