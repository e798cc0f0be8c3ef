"""Policy scenario files: unit tests for rule changes, run by ``salesrules test`` and by pytest.

A scenario file (``*.scenario.yaml``) names a policy, shared request data, and cases. Each
case is a request put to :meth:`salesrules.policy.Policy.decide` and the decision it must
produce. Any decision kind works (``deadline``, ``assign``, ``claim``, ``check``,
``transition``, ``approval``, ``split``, ``contract_event`` …)::

    policy: ..                       # a rule file or folder, relative to this file
    now: 2026-03-02T10:00:00+08:00   # default ``now`` of every case (a case may override it)
    include:                         # request fields read from JSON/YAML files
      reps: ../../examples/data/roster.json#reps
    defaults:                        # merged (shallowly) into every case's request
      explain: false
    cases:
      - name: a web lead from 华东 goes to the east team
        request: {kind: assign, lead: {id: L-1, source: web, region: 华东}}
        expect:
          outcome: {owner_kind: rep}          # subset of the outcome's fields
          reasons: [rule_matched]             # exact codes, in order
          reasons_include: [rule_matched]     # codes that must appear
          reasons_exclude: [all_capped]       # codes that must not appear
          rules_include: [east-web]           # rule ids that must appear in the reasons
          effects:                            # each pattern matches a distinct effect
            - {kind: set_owner, target: lead:L-1, params: {owner_kind: rep}}
          effects_exact: false                # true: the patterns cover every effect
          no_effects: [release_to_pool]       # effect kinds that must not appear
          next_check_at: 2026-03-03T10:00:00+08:00   # or null
          error_codes: []                     # RuleIssue codes, exact
          state: {}                           # subset of the new state
      - name: a request without a lead is refused as a record error
        request: {kind: assign}
        expect: {raises: RecordError, field: lead}

Matching is by subset so tests survive new outcome fields: an expected mapping's keys must be
present with matching values; lists match element by element (mapping elements again by
subset); numbers match decimal strings (``100`` matches ``"100.00"``); ISO datetimes match the
same instant whatever the offset.

:func:`run_path` runs files or folders; :func:`cli_test` is the ``salesrules test`` command;
the pytest plugin (registered as the ``pytest11`` entry point ``salesrules``) collects every
``*.scenario.yaml`` file as one test item per case, named by the case's ``name``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from salesrules import _serde
from salesrules.decision import Decision
from salesrules.errors import Issue, Location, PolicyError, RecordError, SalesRulesError

__all__ = [
    "CaseResult",
    "Scenario",
    "ScenarioCase",
    "ScenarioError",
    "SuiteResult",
    "check_decision",
    "cli_test",
    "find_scenario_files",
    "load_scenario",
    "pytest_collect_file",
    "run_case",
    "run_path",
    "run_scenario",
]

#: Issue codes of scenario files (band 270–279 is reserved for testing/simulate).
SCENARIO_CODES: Mapping[str, str] = {
    "SR270": "the scenario file is malformed (unknown key, wrong type, missing key)",
    "SR271": "the scenario's policy cannot be found or loaded",
    "SR272": "an `include` file cannot be read or the key is missing",
}

_SUFFIXES = (".scenario.yaml", ".scenario.yml")

_FILE_KEYS = frozenset({"policy", "now", "include", "defaults", "cases", "description"})
_CASE_KEYS = frozenset({"name", "request", "expect", "now", "skip"})
_EXPECT_KEYS = frozenset(
    {
        "outcome",
        "reasons",
        "reasons_include",
        "reasons_exclude",
        "rules_include",
        "effects",
        "effects_exact",
        "no_effects",
        "next_check_at",
        "error_codes",
        "state",
        "raises",
        "field",
    }
)
_EFFECT_KEYS = frozenset({"kind", "target", "params", "idempotency_key"})


class ScenarioError(SalesRulesError):
    """A scenario file is malformed; ``issues`` lists every problem with its location."""

    def __init__(self, issues: Sequence[Issue], source: str) -> None:
        self.issues = tuple(sorted(issues, key=Issue.sort_key))
        self.source = source
        lines = [f"{len(self.issues)} problem(s) in {source}"]
        lines.extend(i.render() for i in self.issues)
        super().__init__("\n".join(lines))


@dataclass(frozen=True, slots=True)
class ScenarioCase:
    """One case of a scenario file: a request and the expected decision."""

    name: str
    request: Mapping[str, Any]
    expect: Mapping[str, Any]
    location: Location
    skip: str | None = None


@dataclass(frozen=True, slots=True)
class Scenario:
    """A parsed scenario file: where its policy is, and its cases."""

    path: Path
    policy_path: Path | None
    cases: tuple[ScenarioCase, ...]
    description: str = ""


@dataclass(frozen=True, slots=True)
class CaseResult:
    """The result of one case: ``failures`` is empty when it passed."""

    scenario: Path
    case: ScenarioCase
    failures: tuple[str, ...]
    decision: Decision[Any] | None = None
    error: str | None = None
    skipped: bool = False

    @property
    def passed(self) -> bool:
        """Whether the case passed (a skipped case counts as passed)."""
        return not self.failures

    def render(self, *, verbose: bool = True) -> str:
        """A readable report: the case, expected vs actual, and the decision with its trace."""
        status = "SKIP" if self.skipped else ("PASS" if self.passed else "FAIL")
        head = f"{status} {self.case.location}  {self.case.name}"
        if self.passed or not verbose:
            return head
        lines = [head]
        lines.extend(f"  - {f}" for f in self.failures)
        if self.decision is not None:
            lines.append("  decision:")
            lines.extend("    " + row for row in self.decision.explain().splitlines())
        if self.error is not None:
            lines.append(f"  error: {self.error}")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class SuiteResult:
    """Results of every case of every file run, plus files that could not be run."""

    results: tuple[CaseResult, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def passed(self) -> int:
        """Number of passing (not skipped) cases."""
        return sum(1 for r in self.results if r.passed and not r.skipped)

    @property
    def failed(self) -> int:
        """Number of failing cases."""
        return sum(1 for r in self.results if not r.passed)

    @property
    def skipped(self) -> int:
        """Number of skipped cases."""
        return sum(1 for r in self.results if r.skipped)

    @property
    def ok(self) -> bool:
        """Whether every case passed and every file could be run."""
        return self.failed == 0 and not self.problems

    def render(self, *, verbose: bool = False) -> str:
        """The report: failing cases in full, then one summary line."""
        lines: list[str] = []
        for r in self.results:
            if not r.passed or verbose:
                lines.append(r.render())
        lines.extend(self.problems)
        summary = f"{self.passed} passed, {self.failed} failed"
        if self.skipped:
            summary += f", {self.skipped} skipped"
        if self.problems:
            summary += f", {len(self.problems)} file error(s)"
        lines.append(summary)
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------


def is_scenario_file(path: Path) -> bool:
    """Whether ``path`` is named like a scenario file (``*.scenario.yaml``)."""
    return path.name.endswith(_SUFFIXES)


def find_scenario_files(path: str | Path) -> list[Path]:
    """Return the scenario files at ``path`` (a file, or a folder searched recursively), sorted."""
    root = Path(path)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and is_scenario_file(p))


def _read_include(base: Path, spec: Any, where: Location | None) -> tuple[Any, Issue | None]:
    if not isinstance(spec, str):
        return None, Issue("SR270", "an include is 'path' or 'path#key.sub'", where)
    file_part, _, pointer = spec.partition("#")
    target = (base / file_part).resolve()
    try:
        text = target.read_text(encoding="utf-8")
    except OSError as exc:
        return None, Issue("SR272", f"cannot read include {file_part!r}: {exc}", where)
    try:
        if target.suffix == ".json":
            data: Any = json.loads(text)
        else:
            from salesrules._yaml import load_yaml

            data, _, problems = load_yaml(text, str(target))
            if problems:
                return None, Issue("SR272", f"include {file_part!r}: {problems[0].message}", where)
    except ValueError as exc:
        return None, Issue("SR272", f"include {file_part!r} is not valid JSON: {exc}", where)
    for part in [p for p in pointer.split(".") if p]:
        if isinstance(data, Mapping) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None, Issue("SR272", f"include {spec!r}: no key {part!r}", where)
    return data, None


def _unknown_keys(
    data: Mapping[str, Any], allowed: frozenset[str], path: tuple[Any, ...], marks: Any, what: str
) -> list[Issue]:
    from salesrules._section import did_you_mean

    out = []
    for key in data:
        if key not in allowed:
            hint = did_you_mean(str(key), allowed) or "allowed: " + ", ".join(sorted(allowed))
            out.append(
                Issue("SR270", f"unknown {what} key '{key}'", marks.key((*path, key)), hint=hint)
            )
    return out


def load_scenario(path: str | Path) -> Scenario:
    """Read and check one scenario file.

    Args:
        path: the ``*.scenario.yaml`` file.

    Returns:
        The scenario with its cases (requests merged with ``defaults``, ``include`` and ``now``).

    Raises:
        ScenarioError: the file is unreadable or malformed (every problem at once).
    """
    from salesrules._yaml import load_yaml

    file = Path(path)
    source = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(
            [Issue("SR270", f"cannot read the file: {exc}", Location(source))], source
        ) from None
    data, marks, issues = load_yaml(text, source)
    issues = [i for i in issues if i.is_error]
    if data is None or issues:
        raise ScenarioError(
            issues or [Issue("SR270", "empty scenario file", Location(source))], source
        )
    issues.extend(_unknown_keys(data, _FILE_KEYS, (), marks, "scenario"))
    base = file.parent
    policy_path: Path | None = None
    if "policy" in data:
        if isinstance(data["policy"], str):
            policy_path = (base / data["policy"]).resolve()
        else:
            issues.append(Issue("SR270", "policy must be a path", marks.value(("policy",))))
    defaults: dict[str, Any] = {}
    raw_defaults = data.get("defaults", {})
    if isinstance(raw_defaults, Mapping):
        defaults.update(raw_defaults)
    else:
        issues.append(Issue("SR270", "defaults must be a mapping", marks.value(("defaults",))))
    includes = data.get("include", {})
    if isinstance(includes, Mapping):
        for key, spec in includes.items():
            value, problem = _read_include(base, spec, marks.value(("include", key)))
            if problem is not None:
                issues.append(problem)
            else:
                defaults[str(key)] = value
    else:
        issues.append(Issue("SR270", "include must be a mapping", marks.value(("include",))))
    file_now = data.get("now")
    raw_cases = data.get("cases")
    cases: list[ScenarioCase] = []
    if not isinstance(raw_cases, list) or not raw_cases:
        issues.append(
            Issue(
                "SR270",
                "cases must be a non-empty list",
                marks.key(("cases",)) or Location(source, 1, 1),
            )
        )
        raw_cases = []
    names: set[str] = set()
    for i, raw in enumerate(raw_cases):
        where = marks.value(("cases", i)) or Location(source)
        if not isinstance(raw, Mapping):
            issues.append(Issue("SR270", "a case is a mapping with name, request, expect", where))
            continue
        issues.extend(_unknown_keys(raw, _CASE_KEYS, ("cases", i), marks, "case"))
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            issues.append(Issue("SR270", "every case needs a name (a sentence)", where))
            name = f"case {i + 1}"
        if name in names:
            issues.append(Issue("SR270", f"duplicate case name {name!r}", where))
        names.add(name)
        request = raw.get("request")
        if not isinstance(request, Mapping) or "kind" not in request:
            issues.append(
                Issue(
                    "SR270",
                    "request must be a mapping with a kind",
                    marks.value(("cases", i, "request")) or where,
                )
            )
            request = {}
        expect = raw.get("expect", {})
        if not isinstance(expect, Mapping):
            issues.append(
                Issue("SR270", "expect must be a mapping", marks.value(("cases", i, "expect")))
            )
            expect = {}
        issues.extend(_unknown_keys(expect, _EXPECT_KEYS, ("cases", i, "expect"), marks, "expect"))
        for j, eff in enumerate(expect.get("effects") or ()):
            if not isinstance(eff, Mapping):
                issues.append(
                    Issue(
                        "SR270",
                        "an effect pattern is a mapping",
                        marks.value(("cases", i, "expect", "effects", j)),
                    )
                )
            else:
                issues.extend(
                    _unknown_keys(
                        eff, _EFFECT_KEYS, ("cases", i, "expect", "effects", j), marks, "effect"
                    )
                )
        merged: dict[str, Any] = dict(defaults)
        case_now = raw.get("now", file_now)
        if case_now is not None:
            merged["now"] = case_now
        merged.update(request)
        skip = raw.get("skip")
        cases.append(
            ScenarioCase(
                name=name,
                request=merged,
                expect=dict(expect),
                location=where,
                skip=str(skip) if skip not in (None, False) else None,
            )
        )
    if issues:
        raise ScenarioError(issues, source)
    desc = data.get("description", "")
    return Scenario(file, policy_path, tuple(cases), str(desc) if desc else "")


# --------------------------------------------------------------------------------------------
# matching
# --------------------------------------------------------------------------------------------


def _as_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        return Decimal(str(value))
    if isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation:
            return None
    return None


def _as_instant(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else None
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and "T" in value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo is not None else None
    return None


def _scalar_equal(expected: Any, actual: Any) -> bool:
    if expected == actual and type(expected) is type(actual):
        return True
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    if expected is None or actual is None:
        return False
    e_dec, a_dec = _as_decimal(expected), _as_decimal(actual)
    if (
        e_dec is not None
        and a_dec is not None
        and (not isinstance(expected, str) or not isinstance(actual, str))
    ):
        return e_dec == a_dec
    e_t, a_t = _as_instant(expected), _as_instant(actual)
    if e_t is not None and a_t is not None:
        return e_t == a_t
    return bool(expected == actual)


def subset_diff(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Differences between an expected value and an actual JSON value, matching by subset.

    Args:
        expected: the expectation (mappings list only the keys that matter).
        actual: the JSON-ready actual value.
        path: the dotted path, used in messages.

    Returns:
        One message per difference (empty when ``actual`` matches).
    """
    where = path or "value"
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            return [f"{where}: expected a mapping, got {_show(actual)}"]
        out: list[str] = []
        for key, value in expected.items():
            sub = f"{path}.{key}" if path else str(key)
            if key not in actual:
                out.append(
                    f"{sub}: expected {_show(value)}, but the field is absent (has: {', '.join(sorted(map(str, actual)))})"
                )
            else:
                out.extend(subset_diff(value, actual[key], sub))
        return out
    if isinstance(expected, list | tuple):
        if not isinstance(actual, list | tuple):
            return [f"{where}: expected a list {_show(expected)}, got {_show(actual)}"]
        if len(expected) != len(actual):
            return [
                f"{where}: expected {len(expected)} item(s) {_show(expected)}, got {len(actual)} {_show(actual)}"
            ]
        out = []
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            out.extend(subset_diff(e, a, f"{where}[{i}]"))
        return out
    if not _scalar_equal(expected, actual):
        return [f"{where}: expected {_show(expected)}, got {_show(actual)}"]
    return []


def _show(value: Any) -> str:
    text = json.dumps(_serde.to_jsonable(value), ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 200 else text[:197] + "..."


def _effect_matches(pattern: Mapping[str, Any], effect: Mapping[str, Any]) -> bool:
    return not subset_diff(dict(pattern), effect)


def check_decision(decision: Decision[Any], expect: Mapping[str, Any]) -> list[str]:
    """Compare a decision with an ``expect`` mapping.

    Args:
        decision: the actual decision.
        expect: the expectation (see the module docstring).

    Returns:
        Readable failure messages, one per mismatch; empty when the decision matches.
    """
    failures: list[str] = []
    actual = decision.to_dict()
    if "raises" in expect:
        failures.append(f"expected {expect['raises']} to be raised, got a decision: {decision}")
    if "outcome" in expect:
        failures.extend(subset_diff(expect["outcome"], actual["outcome"], "outcome"))
    codes = list(decision.reason_codes)
    if "reasons" in expect and list(expect["reasons"] or []) != codes:
        failures.append(f"reasons: expected {expect['reasons']}, got {codes}")
    for code in expect.get("reasons_include") or ():
        if code not in codes:
            failures.append(f"reasons_include: {code!r} not among the reasons {codes}")
    for code in expect.get("reasons_exclude") or ():
        if code in codes:
            failures.append(f"reasons_exclude: {code!r} is among the reasons {codes}")
    rule_ids = [r.rule_id for r in decision.reasons if r.rule_id]
    for rid in expect.get("rules_include") or ():
        if rid not in rule_ids:
            failures.append(f"rules_include: rule {rid!r} not among the reasons' rules {rule_ids}")
    effects = [
        {
            "kind": e["kind"],
            "target": e["target"],
            "params": e["params"],
            "idempotency_key": e["idempotency_key"],
        }
        for e in actual["effects"]
    ]
    if "effects" in expect:
        remaining = list(range(len(effects)))
        for pattern in expect["effects"] or ():
            hit = next((i for i in remaining if _effect_matches(pattern, effects[i])), None)
            if hit is None:
                same_kind = [
                    effects[i] for i in remaining if effects[i]["kind"] == pattern.get("kind")
                ]
                detail = (
                    "; closest: "
                    + "; ".join(
                        f"{e['kind']}({e['target']}): " + ", ".join(subset_diff(dict(pattern), e))
                        for e in same_kind[:3]
                    )
                    if same_kind
                    else "; effects are: " + str([f"{e['kind']}({e['target']})" for e in effects])
                )
                failures.append(f"effects: no effect matches {_show(pattern)}{detail}")
            else:
                remaining.remove(hit)
        if expect.get("effects_exact") and remaining:
            extra = [f"{effects[i]['kind']}({effects[i]['target']})" for i in remaining]
            failures.append(f"effects_exact: unexpected effect(s) {extra}")
    for kind in expect.get("no_effects") or ():
        if any(e["kind"] == kind for e in effects):
            failures.append(f"no_effects: found a {kind!r} effect")
    if "next_check_at" in expect:
        want = expect["next_check_at"]
        got = actual["next_check_at"]
        if want is None or got is None:
            if want != got:
                failures.append(f"next_check_at: expected {want}, got {got}")
        elif not _scalar_equal(want, got):
            failures.append(f"next_check_at: expected {want}, got {got}")
    if "error_codes" in expect:
        got_codes = [e.code for e in decision.errors]
        if list(expect["error_codes"] or []) != got_codes:
            failures.append(f"error_codes: expected {expect['error_codes']}, got {got_codes}")
    if "state" in expect:
        failures.extend(subset_diff(expect["state"], actual["state"], "state"))
    return failures


# --------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------


def run_case(policy: Any, case: ScenarioCase, scenario: Path | None = None) -> CaseResult:
    """Run one case against a loaded policy.

    Args:
        policy: a :class:`~salesrules.policy.Policy` (anything with ``decide(request)``).
        case: the case.
        scenario: the scenario file (for the report).

    Returns:
        The result; a failing result carries the decision with its trace.
    """
    path = scenario or Path(case.location.file)
    if case.skip is not None:
        return CaseResult(path, case, (), skipped=True)
    expect = case.expect
    try:
        decision = policy.decide(case.request)
    except RecordError as exc:
        want = expect.get("raises")
        if want not in ("RecordError", "SalesRulesError"):
            return CaseResult(path, case, (f"unexpected RecordError: {exc}",), error=str(exc))
        fails: list[str] = []
        if (
            "field" in expect
            and exc.field != expect["field"]
            and all(p.field != expect["field"] for p in exc.problems)
        ):
            fails.append(
                f"RecordError field: expected {expect['field']!r}, got {exc.field!r} ({exc})"
            )
        return CaseResult(path, case, tuple(fails), error=str(exc))
    failures = check_decision(decision, expect)
    if failures and decision.trace is None:
        # Re-decide with a trace for the report; decisions are deterministic.
        with contextlib.suppress(SalesRulesError):
            decision = policy.decide({**case.request, "explain": True})
    return CaseResult(path, case, tuple(failures), decision)


def _load_policy_cached(path: Path, cache: dict[Path, Any]) -> Any:
    if path not in cache:
        from salesrules.policy import load_policy

        cache[path] = load_policy(path)
    return cache[path]


def run_scenario(
    scenario: Scenario | str | Path,
    *,
    policy: Any = None,
    _cache: dict[Path, Any] | None = None,
) -> list[CaseResult]:
    """Run every case of one scenario file.

    Args:
        scenario: a loaded scenario or its path.
        policy: a policy that overrides the file's ``policy`` key.

    Returns:
        One result per case.

    Raises:
        ScenarioError: the file is malformed or names no loadable policy.
    """
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    if policy is None:
        if sc.policy_path is None:
            raise ScenarioError(
                [
                    Issue(
                        "SR271",
                        "the scenario names no policy",
                        Location(str(sc.path), 1, 1),
                        hint="add `policy: <rule file or folder relative to this file>`",
                    )
                ],
                str(sc.path),
            )
        try:
            policy = _load_policy_cached(sc.policy_path, _cache if _cache is not None else {})
        except PolicyError as exc:
            raise ScenarioError(
                [
                    Issue(
                        "SR271",
                        f"the policy {sc.policy_path} does not load:\n{exc}",
                        Location(str(sc.path), 1, 1),
                    )
                ],
                str(sc.path),
            ) from None
    return [run_case(policy, case, sc.path) for case in sc.cases]


def run_path(path: str | Path, *, policy: Any = None) -> SuiteResult:
    """Run every scenario file under ``path``.

    Args:
        path: a scenario file or a folder (searched recursively for ``*.scenario.yaml``).
        policy: a policy overriding each file's ``policy`` key.

    Returns:
        All results; files that could not be run are listed in ``problems``.
    """
    results: list[CaseResult] = []
    problems: list[str] = []
    cache: dict[Path, Any] = {}
    files = find_scenario_files(path)
    if not files:
        problems.append(f"{path}: no *.scenario.yaml files found")
    for file in files:
        try:
            results.extend(run_scenario(file, policy=policy, _cache=cache))
        except ScenarioError as exc:
            problems.append(str(exc))
    return SuiteResult(tuple(results), tuple(problems))


def cli_test(argv: Sequence[str] | None = None) -> int:
    """The ``salesrules test PATH…`` command.

    Args:
        argv: the arguments after ``test``.

    Returns:
        0 when every case passed, 1 when one failed or a file is broken, 2 on usage errors.
    """
    parser = argparse.ArgumentParser(
        prog="salesrules test", description="Run policy scenario files (*.scenario.yaml)."
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="scenario files or folders")
    parser.add_argument("--policy", help="use this policy instead of each file's `policy`")
    parser.add_argument("-v", "--verbose", action="store_true", help="list passing cases too")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    policy = None
    if args.policy:
        from salesrules.policy import load_policy

        try:
            policy = load_policy(args.policy)
        except PolicyError as exc:
            print(exc.render(), file=sys.stderr)
            return 1
    suites = [run_path(p, policy=policy) for p in args.paths]
    suite = SuiteResult(
        tuple(r for s in suites for r in s.results), tuple(p for s in suites for p in s.problems)
    )
    if args.json:
        print(json.dumps(_suite_json(suite), ensure_ascii=False, indent=2))
    else:
        print(suite.render(verbose=args.verbose))
    return 0 if suite.ok else 1


def _suite_json(suite: SuiteResult) -> dict[str, Any]:
    return {
        "passed": suite.passed,
        "failed": suite.failed,
        "skipped": suite.skipped,
        "problems": list(suite.problems),
        "cases": [
            {
                "file": str(r.scenario),
                "line": r.case.location.line,
                "name": r.case.name,
                "status": "skipped" if r.skipped else ("passed" if r.passed else "failed"),
                "failures": list(r.failures),
            }
            for r in suite.results
        ],
    }


# --------------------------------------------------------------------------------------------
# pytest plugin (entry point ``pytest11: salesrules = salesrules.testing``)
# --------------------------------------------------------------------------------------------

_PLUGIN: dict[str, Any] = {}


def _plugin_classes() -> tuple[Any, Any]:
    """Build the pytest collector and item classes once (pytest is imported only here)."""
    if "file" in _PLUGIN:
        return _PLUGIN["file"], _PLUGIN["item"]
    import pytest

    class ScenarioCaseFailed(Exception):
        """A scenario case did not match its expectation."""

    class ScenarioItem(pytest.Item):
        """One case of a scenario file."""

        def __init__(self, *, case: ScenarioCase, scenario: Scenario, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.case = case
            self.scenario = scenario
            if case.skip is not None:
                self.add_marker(pytest.mark.skip(reason=case.skip))

        def runtest(self) -> None:
            cache = self.config.stash.setdefault(_CACHE_KEY, {})
            result = run_scenario(
                Scenario(self.scenario.path, self.scenario.policy_path, (self.case,)), _cache=cache
            )[0]
            if not result.passed:
                raise ScenarioCaseFailed(result.render())

        def repr_failure(self, excinfo: Any, style: Any = None) -> Any:
            if isinstance(excinfo.value, ScenarioCaseFailed | ScenarioError):
                return str(excinfo.value)
            return super().repr_failure(excinfo)

        def reportinfo(self) -> tuple[Any, int | None, str]:
            return self.path, max(self.case.location.line - 1, 0), f"scenario: {self.case.name}"

    class ScenarioFile(pytest.File):
        """A ``*.scenario.yaml`` file: one item per case."""

        def collect(self) -> Iterator[Any]:
            scenario = load_scenario(self.path)
            for case in scenario.cases:
                yield ScenarioItem.from_parent(self, name=case.name, case=case, scenario=scenario)

    _PLUGIN["file"] = ScenarioFile
    _PLUGIN["item"] = ScenarioItem
    return ScenarioFile, ScenarioItem


def _cache_key() -> Any:
    import pytest

    return pytest.StashKey[dict[Path, Any]]()


_CACHE_KEY: Any = None


def pytest_configure(config: Any) -> None:
    """Pytest hook: prepare the per-session policy cache."""
    global _CACHE_KEY
    if _CACHE_KEY is None:
        _CACHE_KEY = _cache_key()


def pytest_collect_file(file_path: Path, parent: Any) -> Any:
    """Pytest hook: collect ``*.scenario.yaml`` files, one test item per case."""
    if is_scenario_file(file_path):
        scenario_file, _ = _plugin_classes()
        return scenario_file.from_parent(parent, path=file_path)
    return None
