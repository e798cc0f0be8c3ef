"""Junk in, clear errors out: every decision kind answers a mutated request with a Decision or
a RecordError — never a bare KeyError/TypeError/ValidationError from deep inside.

The seeds are the bundled scenario files' requests (one per case, every kind); hypothesis
drops keys, replaces values with arbitrary JSON, and nests junk into records.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from salesrules import Decision, RecordError, load_policy
from salesrules.testing import find_scenario_files, load_scenario

ROOT = Path(__file__).resolve().parent.parent
POLICY = load_policy(ROOT / "rules")
SEEDS: list[dict[str, Any]] = [
    dict(case.request)
    for path in find_scenario_files(ROOT / "rules")
    for case in load_scenario(path).cases
]
KINDS = sorted({seed["kind"] for seed in SEEDS})

_json = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**12), max_value=10**12),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=12),
        st.sampled_from(["2026-13-01", "2026-03-02T10:00:00", "NaN", "-1", "华东", "", "won"]),
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(_paths(v, (*prefix, i)))
    return out


def _mutate(request: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    req = copy.deepcopy(request)
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        paths = [p for p in _paths(req) if p[0] not in ("kind",)]
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        parent: Any = req
        for part in path[:-1]:
            parent = parent[part]
        action = data.draw(st.sampled_from(["drop", "replace"]))
        if action == "drop" and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(_json)
    return req


def test_every_kind_has_a_seed() -> None:
    assert set(KINDS) >= {
        "assign", "claim", "grade", "check", "transition", "available_transitions",
        "collaboration_request", "approval", "split", "contract_event", "project_status",
        "deadline",
    }


@pytest.mark.parametrize("kind", KINDS)
@given(data=st.data())
def test_mutated_requests_give_a_decision_or_a_record_error(kind: str, data: st.DataObject) -> None:
    seed = data.draw(st.sampled_from([s for s in SEEDS if s["kind"] == kind]))
    request = _mutate(seed, data)
    request.setdefault("now", "2026-03-02T10:00:00+08:00")
    try:
        decision = POLICY.decide(request)
    except RecordError as exc:
        assert exc.record
        assert exc.field
        return
    assert isinstance(decision, Decision)
    assert Decision.from_json(decision.to_json()).to_json() == decision.to_json()
