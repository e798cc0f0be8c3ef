"""Scenario files: the bundled policy's own scenarios pass, broken expectations fail usefully,
malformed files are located, and the pytest plugin collects one item per case."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from salesrules.testing import (
    ScenarioError,
    check_decision,
    cli_test,
    load_scenario,
    run_path,
    subset_diff,
)

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"

CALENDAR = textwrap.dedent(
    """\
    version: 1
    calendar:
      timezone: Asia/Shanghai
      working_hours:
        mon-fri: ["09:00-12:00", "13:30-18:00"]
    """
)


def _write(tmp_path: Path, scenario: str, name: str = "cal.scenario.yaml") -> Path:
    (tmp_path / "policy.yaml").write_text(CALENDAR, encoding="utf-8")
    path = tmp_path / name
    path.write_text(textwrap.dedent(scenario), encoding="utf-8")
    return path


GOOD = """\
    policy: policy.yaml
    now: 2026-03-06T10:00:00+08:00
    cases:
      - name: friday 17:00 plus one business day is monday 17:00
        request: {kind: deadline, start: 2026-03-06T17:00:00+08:00, duration: 1 business day}
        expect:
          outcome: {overdue: false, deadline: 2026-03-09T17:00:00+08:00}
          reasons: [deadline_computed]
          next_check_at: 2026-03-09T09:00:00Z
    """

BROKEN = """\
    policy: policy.yaml
    now: 2026-03-06T10:00:00+08:00
    cases:
      - name: a wrong expectation
        request: {kind: deadline, start: 2026-03-06T17:00:00+08:00, duration: 1 business day}
        expect:
          outcome: {deadline: 2026-03-10T17:00:00+08:00}
          reasons: [something_else]
    """


def test_bundled_policy_scenarios_pass() -> None:
    suite = run_path(RULES)
    assert suite.problems == ()
    assert suite.failed == 0, suite.render()
    assert suite.passed >= 15
    kinds = {r.case.request["kind"] for r in suite.results}
    assert {"assign", "claim", "grade", "check", "transition", "split", "contract_event"} <= kinds


def test_a_broken_expectation_fails_with_expected_actual_and_trace(tmp_path: Path) -> None:
    path = _write(tmp_path, BROKEN)
    suite = run_path(path)
    assert suite.failed == 1
    report = suite.render()
    assert "FAIL" in report and "a wrong expectation" in report
    assert f"{path}:4" in report  # the case's line
    assert "outcome.deadline: expected" in report and "2026-03-09T17:00:00+08:00" in report
    assert "reasons: expected ['something_else'], got ['deadline_computed']" in report
    assert "trace:" in report  # re-decided with explain=True for the report
    assert "1 failed" in report.splitlines()[-1]


def test_cli_exit_codes_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _write(tmp_path, GOOD, "good.scenario.yaml")
    assert cli_test([str(good)]) == 0
    assert "1 passed, 0 failed" in capsys.readouterr().out
    _write(tmp_path, BROKEN, "bad.scenario.yaml")
    assert cli_test([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "1 passed, 1 failed" in out
    assert cli_test([str(tmp_path), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["failed"] == 1 and {c["status"] for c in data["cases"]} == {"passed", "failed"}
    assert cli_test(["--nope"]) == 2


def test_malformed_scenario_reports_every_problem_with_a_location(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """\
        policy: policy.yaml
        cases:
          - name: typo in expect
            request: {kind: deadline}
            expect: {outcom: {}, reasons: []}
          - request: {start: x}
        """,
    )
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    codes = [i.code for i in err.value.issues]
    assert set(codes) == {"SR270"}
    text = str(err.value)
    assert "unknown expect key 'outcom'" in text and "did you mean 'outcome'" in text
    assert "every case needs a name" in text and "request must be a mapping with a kind" in text
    assert f"{path}:5" in text


def test_missing_policy_and_bad_include_are_file_errors(tmp_path: Path) -> None:
    path = _write(tmp_path, "cases: [{name: x, request: {kind: deadline}}]\n")
    suite = run_path(path)
    assert suite.failed == 0 and len(suite.problems) == 1 and "SR271" in suite.problems[0]
    path = _write(
        tmp_path,
        "policy: policy.yaml\ninclude: {roster: nope.json#reps}\n"
        "cases: [{name: x, request: {kind: deadline}}]\n",
    )
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert err.value.issues[0].code == "SR272"


def test_record_error_expectations(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """\
        policy: policy.yaml
        now: 2026-03-06T10:00:00+08:00
        cases:
          - name: expected error on the right field
            request: {kind: deadline, start: 2026-03-06T17:00:00+08:00, duration: 1 fortnight}
            expect: {raises: RecordError, field: duration}
          - name: expected error on the wrong field
            request: {kind: deadline, start: 2026-03-06T17:00:00+08:00, duration: 1 fortnight}
            expect: {raises: RecordError, field: start}
          - name: unexpected error
            request: {kind: deadline, start: 2026-03-06T17:00:00+08:00, duration: 1 fortnight}
            expect: {}
          - name: an error was expected but a decision came
            request: {kind: deadline, start: 2026-03-06T17:00:00+08:00, duration: 1 hour}
            expect: {raises: RecordError}
          - name: skipped for now
            skip: waiting for the holiday table
            request: {kind: deadline}
            expect: {}
        """,
    )
    results = {r.case.name: r for r in run_path(path).results}
    assert results["expected error on the right field"].passed
    assert (
        "field: expected 'start', got 'duration'"
        in results["expected error on the wrong field"].failures[0]
    )
    assert "unexpected RecordError" in results["unexpected error"].failures[0]
    assert "to be raised" in results["an error was expected but a decision came"].failures[0]
    assert results["skipped for now"].skipped


@pytest.mark.parametrize(
    ("expected", "actual", "ok"),
    [
        ({"a": 1}, {"a": 1, "b": 2}, True),  # subset
        ({"a": 1, "c": 3}, {"a": 1}, False),  # missing key
        (100, "100.00", True),  # number vs decimal text
        ("100", "100.00", False),  # two texts compare as text
        ("2026-03-09T17:00:00+08:00", "2026-03-09T09:00:00+00:00", True),  # same instant
        (True, 1, False),  # bool is not a number
        ([{"x": 1}], [{"x": 1, "y": 2}], True),  # list items match by subset
        ([1, 2], [1], False),  # length differs
        (None, None, True),
    ],
)
def test_subset_matching(expected: object, actual: object, ok: bool) -> None:
    assert (subset_diff(expected, actual) == []) is ok


def test_effect_patterns_and_exactness() -> None:
    from salesrules.decision import Decision, Effect, Reason

    d: Decision[dict[str, int]] = Decision(
        "x",
        {"n": 1},
        (Reason("ok", "m", rule_id="r1"),),
        (
            Effect("notify", "rep:a", "k1", {"message": "hi"}),
            Effect("set_owner", "lead:L", "k2", {"owner_id": "a", "owner_kind": "rep"}),
        ),
    )
    assert (
        check_decision(d, {"effects": [{"kind": "set_owner", "params": {"owner_id": "a"}}]}) == []
    )
    fails = check_decision(
        d, {"effects": [{"kind": "set_owner", "params": {"owner_id": "b"}}], "effects_exact": True}
    )
    assert any("no effect matches" in f and "params.owner_id" in f for f in fails)
    assert any("effects_exact" in f for f in fails)
    assert check_decision(d, {"no_effects": ["notify"]}) == ["no_effects: found a 'notify' effect"]
    assert check_decision(d, {"rules_include": ["r1"], "reasons_exclude": ["bad"]}) == []
    assert check_decision(d, {"state": {"a": 1}}) != []


def test_pytest_plugin_collects_one_item_per_case(tmp_path: Path) -> None:
    _write(tmp_path, GOOD, "good.scenario.yaml")
    _write(tmp_path, BROKEN, "bad.scenario.yaml")
    # Autoloading off: the plugin is named explicitly (whether or not its pytest11 entry
    # point is installed), and the run does not pay for unrelated plugins.
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "salesrules.testing",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "1 failed, 1 passed" in out
    assert "bad.scenario.yaml::a wrong expectation" in out
    assert "reasons: expected ['something_else'], got ['deadline_computed']" in out
