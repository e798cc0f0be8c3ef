"""Decision objects: immutability, exact JSON round trip, determinism, readable output."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from salesrules.decision import (
    Assumption,
    Decision,
    Effect,
    Reason,
    RuleIssue,
    RuleRef,
    Trace,
    TraceBuilder,
    TraceStatus,
    TraceStep,
)
from salesrules.errors import Location, RecordError


@dataclasses.dataclass(frozen=True, slots=True)
class _Line:
    rep_id: str
    amount: Decimal


@dataclasses.dataclass(frozen=True, slots=True)
class _Outcome:
    status: Literal["ok", "refused"]
    owner: str | None
    lines: tuple[_Line, ...]
    due: datetime | None

    def summary(self) -> str:
        return f"{self.status} owner={self.owner}"


def _decision() -> Decision[_Outcome]:
    shanghai = timezone(timedelta(hours=8))
    return Decision(
        kind="example",
        outcome=_Outcome(
            "ok",
            "r-east-1",
            (_Line("r-east-1", Decimal("74.99")), _Line("r-east-2", Decimal("25.00"))),
            datetime(2026, 10, 8, 17, 0, tzinfo=shanghai),
        ),
        reasons=(Reason("matched", "rule east matched", "east", Location("rules/a.yaml", 4, 5)),),
        effects=(
            Effect("set_owner", "lead:L-1", "set_owner:lead:L-1:east", {"owner_id": "r-east-1"}),
        ),
        assumptions=(Assumption("rep:r-east-1:open_leads", 3, "open backlog"),),
        state={"rr": {"east": 2}},
        next_check_at=datetime(2026, 10, 8, 9, 0, tzinfo=UTC),
        errors=(RuleIssue("missing_field", "lead.industry is missing", "west", None, "lead.industry"),),
        trace=Trace((TraceStep(TraceStatus.SKIPPED, "区域 不匹配", "west", Location("r.yaml", 2, 3)),)),
        policy_digest="ab" * 32,
    )


def test_decision_is_immutable() -> None:
    d = _decision()
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.kind = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        d.effects[0].params["owner_id"] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        d.state["rr"] = {}  # type: ignore[index]


def test_json_round_trip_is_exact() -> None:
    d = _decision()
    text = d.to_json()
    back = Decision.from_json(text, outcome_type=_Outcome)
    assert back == d
    assert back.to_json() == text
    assert isinstance(back.outcome.lines[0].amount, Decimal)
    assert back.outcome.due == d.outcome.due
    assert back.outcome.due is not None and back.outcome.due.utcoffset() == timedelta(hours=8)


def test_json_is_deterministic_and_keeps_unicode() -> None:
    a, b = _decision().to_json(), _decision().to_json()
    assert a == b
    assert "区域" in a
    assert json.loads(a)["outcome"]["lines"][0]["amount"] == "74.99"


def test_str_is_one_line_and_explain_has_everything() -> None:
    d = _decision()
    line = str(d)
    assert "\n" not in line
    assert line.startswith("example: ok owner=r-east-1")
    text = d.explain()
    for needle in ("matched", "set_owner", "rep:r-east-1:open_leads", "missing_field", "SKIPPED"):
        assert needle in text


def test_from_json_rejects_garbage_with_record_error() -> None:
    with pytest.raises(RecordError):
        Decision.from_json("{}")
    with pytest.raises(RecordError):
        Decision.from_json("not json")


def test_trace_builder_builds_located_steps() -> None:
    tb = TraceBuilder()
    tb.add(TraceStatus.MATCHED, "ok", RuleRef("r1", Location("f.yaml", 3, 1)), {"x": 1})
    trace = tb.build()
    assert trace.steps[0].render().startswith("f.yaml:3:1  MATCHED  r1")


_json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=8),
    st.decimals(allow_nan=False, allow_infinity=False, places=2),
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)


@given(params=st.dictionaries(st.text(max_size=6), _json_values, max_size=4), state=_json_values)
def test_effect_params_and_state_round_trip(params: dict[str, object], state: object) -> None:
    d = Decision(
        kind="k",
        outcome=None,
        effects=(Effect("notify", "rep:1", "notify:rep:1:x", params),),
        state={"s": state},
    )
    text = d.to_json()
    back = Decision.from_json(text, outcome_type=type(None))
    assert back.to_json() == text
