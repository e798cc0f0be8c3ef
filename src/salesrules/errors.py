"""Errors raised by salesrules, and the issues they carry.

The tree::

    SalesRulesError            base of everything salesrules raises
    ├── PolicyError            a rule file (or folder) is broken: carries *all* issues at once
    └── RecordError            a record passed in by the host is invalid: names record and field

A refused decision (a stage change without evidence, a claim over the cap) is never an
exception: it is a :class:`salesrules.decision.Decision` whose outcome says so.

Issue codes are stable and documented in ``docs/error-codes.md``. Bands:

* ``SR1xx`` load and schema problems (YAML syntax, unknown keys, wrong types),
* ``SR2xx`` semantic problems found while compiling (unknown references, bad graphs),
* ``SR3xx`` warnings and lints (shadowed rules, unreachable stages); errors under ``strict``.

Each domain module owns a sub-band, so codes never collide (a test enforces uniqueness):
core 100–159 / 200–219 / 300–309, assignment 220–229 / 310–319, timeouts 230–239 / 320–329,
stages 240–249 / 330–339, splits 250–259 / 340–349, handoff 260–269 / 350–359,
testing/simulate 270–279 / 360–369.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "CORE_CODES",
    "Issue",
    "Location",
    "PolicyError",
    "RecordError",
    "SalesRulesError",
]

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True, order=True)
class Location:
    """A 1-based position in a rule file."""

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.file
        if self.col <= 0:
            return f"{self.file}:{self.line}"
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem found in a rule file, with a stable code, a location and a hint."""

    code: str
    message: str
    location: Location | None = None
    rule_id: str | None = None
    hint: str | None = None
    severity: Severity = "error"

    @property
    def is_error(self) -> bool:
        """Whether this issue is an error (as opposed to a warning)."""
        return self.severity == "error"

    def sort_key(self) -> tuple[str, int, int, str, str]:
        """Key that orders issues by file, line, column, then code."""
        loc = self.location or Location("")
        return (loc.file, loc.line, loc.col, self.code, self.message)

    def render(self) -> str:
        """Render as ``path:line:col: CODE message (rule 'id') [hint: ...]``."""
        where = f"{self.location}: " if self.location else ""
        sev = "" if self.is_error else "warning "
        text = f"{where}{self.code} {sev}{self.message}"
        if self.rule_id is not None and f"'{self.rule_id}'" not in self.message:
            text += f" (rule '{self.rule_id}')"
        if self.hint:
            text += f" [hint: {self.hint}]"
        return text

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        loc = self.location
        return {
            "code": self.code,
            "message": self.message,
            "severity": self.severity,
            "file": loc.file if loc else None,
            "line": loc.line if loc else None,
            "col": loc.col if loc else None,
            "rule_id": self.rule_id,
            "hint": self.hint,
        }


class SalesRulesError(Exception):
    """Base class of every exception salesrules raises."""


class PolicyError(SalesRulesError):
    """A policy could not be loaded; ``issues`` lists every problem found, sorted by location."""

    def __init__(self, issues: Iterable[Issue], source: str | None = None) -> None:
        self.issues: tuple[Issue, ...] = tuple(sorted(issues, key=Issue.sort_key))
        self.source = source
        super().__init__(self.render())

    @property
    def codes(self) -> tuple[str, ...]:
        """The issue codes, in location order."""
        return tuple(i.code for i in self.issues)

    def render(self) -> str:
        """Render a header and one line per issue."""
        n = len(self.issues)
        what = "problem" if n == 1 else "problems"
        head = f"{n} {what} in {self.source}" if self.source else f"{n} {what}"
        return "\n".join([head, *(i.render() for i in self.issues)])


@dataclass(frozen=True, slots=True)
class _RecordProblem:
    record: str
    field: str
    message: str


class RecordError(SalesRulesError, ValueError):
    """A record passed by the host is invalid; names the record and the field."""

    def __init__(
        self,
        record: str,
        field: str,
        message: str,
        *,
        problems: Iterable[tuple[str, str, str]] = (),
    ) -> None:
        self.record = record
        self.field = field
        self.detail = message
        extra = [_RecordProblem(*p) for p in problems]
        self.problems: tuple[_RecordProblem, ...] = (_RecordProblem(record, field, message), *extra)
        lines = [f"{p.record}: field '{p.field}': {p.message}" for p in self.problems]
        super().__init__("\n".join(lines))


#: Core issue codes and their one-line meaning (domain modules keep their own tables).
CORE_CODES: Mapping[str, str] = {
    "SR100": "the file is not valid YAML",
    "SR101": "duplicate key in a mapping",
    "SR102": "YAML tags, anchors and aliases are not allowed in rule files",
    "SR103": "the file is empty or holds no mapping",
    "SR104": "unknown key (extra keys are forbidden)",
    "SR105": "a required key is missing",
    "SR106": "a value has the wrong type or is out of range",
    "SR107": "tab characters are not allowed for indentation",
    "SR108": "the path does not exist or holds no rule files",
    "SR109": "a section appears in more than one file of the policy",
    "SR110": "unsupported format version",
    "SR111": "the file could not be read or decoded as UTF-8",
    "SR112": "a date or time value is invalid or lacks a time zone",
    "SR120": "invalid condition: unknown operator or malformed condition",
    "SR121": "invalid regular expression",
    "SR122": "invalid condition operand (wrong type for the operator)",
    "SR123": "unknown root in a field path",
    "SR130": "invalid duration",
    "SR131": "unknown time zone",
    "SR132": "invalid working hours",
    "SR133": "unknown country or subdivision for holidays",
    "SR200": "duplicate rule id",
    "SR201": "a duration must be positive",
    "SR300": "a rule can never match (an impossible condition)",
}
