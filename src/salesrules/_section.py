"""What a rule-file section is, and the context it is compiled in.

Domain modules import from here (never from ``policy.py``, which imports them). A section is a
pydantic model of its part of the rule file plus a ``compile`` function that turns the
validated model into an immutable object, reporting every problem through the
:class:`CompileContext` instead of raising.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from salesrules.decision import RuleRef
from salesrules.errors import Issue, Location

if TYPE_CHECKING:
    from salesrules._yaml import Marks, Path
    from salesrules.calendar import Calendar, Duration
    from salesrules.conditions import Condition
    from salesrules.decision import Decision

__all__ = ["CompileContext", "SectionModel", "SectionSpec", "did_you_mean"]


class SectionModel(BaseModel):
    """Base of every rule-file model: frozen, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


#: ``(policy, request, now, explain) -> Decision`` — one request kind of ``salesrules decide``.
KindHandler = Callable[[Any, Mapping[str, Any], datetime, bool], "Decision[Any]"]


@dataclass(frozen=True, slots=True)
class SectionSpec:
    """How one top-level section of a rule file is validated, compiled and decided."""

    name: str
    model: type[BaseModel]
    compile: Callable[[Any, CompileContext], Any]
    kinds: Mapping[str, KindHandler] = field(default_factory=lambda: MappingProxyType({}))
    after: tuple[str, ...] = ()
    description: str = ""


def did_you_mean(word: str, options: Iterable[str]) -> str | None:
    """Return ``"did you mean 'x'?"`` for the closest option, or ``None``."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


class CompileContext:
    """Collects located issues while sections compile; used once per ``load_policy`` call."""

    def __init__(
        self,
        marks: Marks,
        models: Mapping[str, Any],
        calendar: Calendar,
    ) -> None:
        self._marks = marks
        self._models = models
        self._compiled: dict[str, Any] = {}
        self.calendar = calendar
        self.issues: list[Issue] = []

    # -- locations -------------------------------------------------------------------------
    def location(self, path: Path, *, key: bool = False) -> Location | None:
        """Location of the value (or, with ``key=True``, of the key) at ``path``."""
        return self._marks.key(path) if key else self._marks.value(path)

    def rule_ref(self, rule_id: str, path: Path) -> RuleRef:
        """A reference to the rule at ``path``, with its location."""
        return RuleRef(rule_id, self._marks.value(path))

    # -- reporting -------------------------------------------------------------------------
    def error(
        self,
        code: str,
        message: str,
        path: Path,
        *,
        rule_id: str | None = None,
        hint: str | None = None,
        key: bool = False,
    ) -> None:
        """Report an error at ``path``."""
        self.issues.append(
            Issue(code, message, self.location(path, key=key), rule_id, hint, "error")
        )

    def warn(
        self,
        code: str,
        message: str,
        path: Path,
        *,
        rule_id: str | None = None,
        hint: str | None = None,
        key: bool = False,
    ) -> None:
        """Report a warning at ``path`` (an error under ``strict=True``)."""
        self.issues.append(
            Issue(code, message, self.location(path, key=key), rule_id, hint, "warning")
        )

    # -- shared compilers ------------------------------------------------------------------
    def condition(
        self,
        spec: Any,
        path: Path,
        *,
        roots: frozenset[str] = frozenset({"lead", "creator"}),
        rule_id: str | None = None,
    ) -> Condition:
        """Compile a condition, reporting its problems; a broken one never matches."""
        from salesrules.conditions import ConditionError, compile_condition, never

        try:
            return compile_condition(spec, roots=roots)
        except ConditionError as exc:
            for problem in exc.problems:
                self.error(
                    problem.code,
                    problem.message,
                    (*path, *problem.path),
                    rule_id=rule_id,
                    hint=problem.hint,
                    key=bool(getattr(problem, "at_key", False)),
                )
            return never()

    def duration(
        self, text: Any, path: Path, *, rule_id: str | None = None
    ) -> Duration | None:
        """Parse a duration, reporting SR130 (invalid) or SR201 (not positive)."""
        from salesrules.calendar import DurationError, parse_duration

        if not isinstance(text, str):
            text = str(text)
        try:
            duration = parse_duration(text)
        except DurationError as exc:
            self.error("SR130", str(exc), path, rule_id=rule_id, hint=exc.hint)
            return None
        if not duration.is_positive:
            self.error(
                "SR201", f"duration '{text}' must be positive", path, rule_id=rule_id
            )
            return None
        return duration

    # -- other sections --------------------------------------------------------------------
    def model(self, name: str) -> Any:
        """The validated model of section ``name``, or ``None`` when the policy has none."""
        return self._models.get(name)

    def compiled(self, name: str) -> Any:
        """The compiled form of an earlier section (declared in ``after``), or ``None``."""
        return self._compiled.get(name)

    def _set_compiled(self, name: str, value: Any) -> None:
        self._compiled[name] = value

    def check_unique_ids(
        self, items: Iterable[tuple[str, Path]], what: str = "rule"
    ) -> None:
        """Report SR200 for every id used twice in one list."""
        seen: dict[str, Path] = {}
        for ident, path in items:
            if ident in seen:
                first = self._marks.value(seen[ident])
                where = f" (first at line {first.line})" if first else ""
                self.error(
                    "SR200",
                    f"duplicate {what} id '{ident}'{where}",
                    (*path, "id"),
                    rule_id=ident,
                    hint=f"{what} ids must be unique",
                )
            else:
                seen[ident] = path
