"""The public facade is small and pinned: a change here shows up in review."""

from __future__ import annotations

import salesrules

EXPECTED = [
    "Assumption",
    "Decision",
    "Effect",
    "Issue",
    "Location",
    "Policy",
    "PolicyError",
    "Reason",
    "RecordError",
    "SalesRulesError",
    "Trace",
    "TraceStep",
    "load_policy",
    "load_policy_string",
]


def test_all_is_pinned() -> None:
    assert sorted(salesrules.__all__) == EXPECTED


def test_every_public_name_exists_and_is_documented() -> None:
    for name in salesrules.__all__:
        obj = getattr(salesrules, name)
        assert obj.__doc__ and obj.__doc__.strip(), name


def test_error_tree() -> None:
    assert issubclass(salesrules.PolicyError, salesrules.SalesRulesError)
    assert issubclass(salesrules.RecordError, salesrules.SalesRulesError)


def test_py_typed_ships() -> None:
    from importlib.resources import files

    assert files("salesrules").joinpath("py.typed").is_file()
