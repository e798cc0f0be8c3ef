"""Load rule files, validate them, compile them once into an immutable :class:`Policy`.

``load_policy(path)`` accepts one YAML file or a folder of them (``*.yaml`` / ``*.yml``, sorted,
recursively; ``*.scenario.yaml`` test files are skipped). Each file holds ``version: 1`` and any
of the sections; a section lives in exactly one file. Every problem in every file is collected
and raised together as a :class:`~salesrules.errors.PolicyError`.

The policy's ``digest`` is the sha256 of the canonical JSON of the validated document, so it is
the same whatever the key order, quoting or split into files.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path as FsPath
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ValidationError, create_model

from salesrules._section import CompileContext, SectionModel, SectionSpec, did_you_mean
from salesrules._yaml import Marks, Path, load_yaml
from salesrules.decision import Decision
from salesrules.errors import Issue, Location, PolicyError, RecordError

__all__ = ["Policy", "load_policy", "load_policy_string", "policy_json_schema"]

#: The section modules, in a fixed order; each exposes ``SECTION: SectionSpec``.
_SECTION_MODULES: tuple[str, ...] = (
    "salesrules.calendar",
    "salesrules.stages",
    "salesrules.assignment",
    "salesrules.timeouts",
    "salesrules.splits",
    "salesrules.handoff",
)


def _load_sections() -> tuple[SectionSpec, ...]:
    specs: list[SectionSpec] = []
    for name in _SECTION_MODULES:  # a module exposes SECTION, or SECTIONS for several
        module = importlib.import_module(name)
        spec = getattr(module, "SECTION", None)
        if isinstance(spec, SectionSpec):
            specs.append(spec)
        specs.extend(s for s in getattr(module, "SECTIONS", ()) if isinstance(s, SectionSpec))
    return tuple(specs)


SECTIONS: tuple[SectionSpec, ...] = _load_sections()
_BY_NAME: Mapping[str, SectionSpec] = MappingProxyType({s.name: s for s in SECTIONS})

PolicyDocument: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "PolicyDocument",
    __base__=SectionModel,
    __doc__="A salesrules policy: `version: 1` and any of the sections.",
    version=(Literal[1], 1),
    **{s.name: (s.model | None, None) for s in SECTIONS},
)


def policy_json_schema() -> dict[str, Any]:
    """Return the JSON Schema of the rule-file format (for editors and ``salesrules schema``)."""
    schema = PolicyDocument.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "salesrules policy"
    return schema


def _compile_order() -> tuple[SectionSpec, ...]:
    done: list[SectionSpec] = []
    names: set[str] = set()
    pending = list(SECTIONS)
    while pending:
        progressed = False
        for spec in list(pending):
            if all(dep in names or dep not in _BY_NAME for dep in spec.after):
                done.append(spec)
                names.add(spec.name)
                pending.remove(spec)
                progressed = True
        if not progressed:  # pragma: no cover - a cycle in `after` is a programming error
            raise RuntimeError(f"cycle in section dependencies: {[s.name for s in pending]}")
    return tuple(done)


_ORDER = _compile_order()


class Policy:
    """A compiled policy: immutable, thread-safe, with a stable ``digest``.

    Create it with :func:`load_policy`. Domain decisions are reached through the domain
    modules' functions (``salesrules.assignment.assign(policy, ...)``) or the convenience
    methods here, and generically through :meth:`decide` (what the CLI uses).
    """

    __slots__ = ("_compiled", "_models", "calendar", "digest", "sources", "warnings")

    calendar: Any
    digest: str
    sources: tuple[str, ...]
    warnings: tuple[Issue, ...]
    _models: Mapping[str, BaseModel]
    _compiled: Mapping[str, Any]

    def __init__(
        self,
        *,
        digest: str,
        sources: tuple[str, ...],
        calendar: Any,
        warnings: tuple[Issue, ...],
        models: Mapping[str, BaseModel],
        compiled: Mapping[str, Any],
    ) -> None:
        object.__setattr__(self, "digest", digest)
        object.__setattr__(self, "sources", sources)
        object.__setattr__(self, "calendar", calendar)
        object.__setattr__(self, "warnings", warnings)
        object.__setattr__(self, "_models", MappingProxyType(dict(models)))
        object.__setattr__(self, "_compiled", MappingProxyType(dict(compiled)))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Policy is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Policy is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Policy) and other.digest == self.digest

    def __hash__(self) -> int:
        return hash(self.digest)

    def __repr__(self) -> str:
        names = ", ".join(self.section_names)
        return f"<Policy {self.digest[:12]} sections=[{names}]>"

    @property
    def section_names(self) -> tuple[str, ...]:
        """The sections this policy has, in compile order."""
        return tuple(s.name for s in _ORDER if s.name in self._models)

    def has(self, name: str) -> bool:
        """Whether the policy has section ``name``."""
        return name in self._compiled

    def section(self, name: str) -> Any:
        """The compiled section ``name``.

        Raises:
            RecordError: the policy has no such section.
        """
        try:
            return self._compiled[name]
        except KeyError:
            raise RecordError(
                "policy",
                name,
                f"this policy has no '{name}' section (it has: {', '.join(self.section_names)})",
            ) from None

    def model(self, name: str) -> BaseModel | None:
        """The validated rule-file model of section ``name`` (``None`` when absent)."""
        return self._models.get(name)

    def dump(self) -> dict[str, Any]:
        """The normalized document (loading it again gives an equal policy)."""
        doc: dict[str, Any] = {"version": 1}
        for name, model in self._models.items():
            if name != "__calendar_default__":
                doc[name] = model.model_dump(mode="json", exclude_none=True)
        return doc

    @property
    def kinds(self) -> tuple[str, ...]:
        """The request kinds :meth:`decide` accepts."""
        out: list[str] = []
        for spec in _ORDER:
            if spec.name == "calendar" or spec.name in self._compiled:
                out.extend(spec.kinds)
        return tuple(out)

    # -- domain shortcuts: each calls the domain function with this policy ----------------------
    def assign(self, lead: Any, **options: Any) -> Decision[Any]:
        """Assign a new lead; see :func:`salesrules.assignment.assign` for the options."""
        from salesrules.assignment import assign

        return assign(self, lead, **options)

    def assign_many(self, leads: Any, **options: Any) -> list[Decision[Any]]:
        """Assign leads in order, threading the state; see :func:`salesrules.assignment.assign_many`."""
        from salesrules.assignment import assign_many

        return assign_many(self, leads, **options)

    def claim(self, rep: Any, records: Any, **options: Any) -> Decision[Any]:
        """Claim records from a public pool (all or nothing); see :func:`salesrules.assignment.claim`."""
        from salesrules.assignment import claim

        return claim(self, rep, records, **options)

    def grade(self, lead: Any, *, explain: bool = False) -> Decision[Any]:
        """Grade a lead by completeness; see :func:`salesrules.timeouts.grade`."""
        from salesrules.timeouts import grade

        return grade(self, lead, explain=explain)

    def check(self, record: Any, **options: Any) -> Decision[Any]:
        """Check a record's release clocks at ``now``; see :func:`salesrules.timeouts.check`."""
        from salesrules.timeouts import check

        return check(self, record, **options)

    def sweep(self, items: Any, now: datetime) -> Any:
        """Check many records lazily (an iterator of decisions); see :func:`salesrules.timeouts.sweep`."""
        from salesrules.timeouts import sweep

        return sweep(self, items, now)

    def sweep_all(self, items: Any, now: datetime) -> Decision[Any]:
        """Sweep and collect into one ``sweep`` decision; see :func:`salesrules.timeouts.sweep_all`."""
        from salesrules.timeouts import sweep_all

        return sweep_all(self, items, now)

    def check_transition(self, opportunity: Any, **options: Any) -> Decision[Any]:
        """Check a stage transition; see :func:`salesrules.stages.check_transition`."""
        from salesrules.stages import check_transition

        return check_transition(self, opportunity, **options)

    def available_transitions(self, opportunity: Any, **options: Any) -> Decision[Any]:
        """List the transitions out of the current stage; see :func:`salesrules.stages.available_transitions`."""
        from salesrules.stages import available_transitions

        return available_transitions(self, opportunity, **options)

    def validate_collaboration_request(self, request: Any, **options: Any) -> Decision[Any]:
        """Validate a collaboration request; see :func:`salesrules.splits.validate_request`."""
        from salesrules.splits import validate_request

        return validate_request(self, request, **options)

    def decide_approval(self, state: Any, action: str, **options: Any) -> Decision[Any]:
        """Decide an approval action on a request; see :func:`salesrules.splits.decide_approval`."""
        from salesrules.splits import decide_approval

        return decide_approval(self, state, action, **options)

    def split(self, deal: Any, members: Any = None, **options: Any) -> Decision[Any]:
        """Split a deal's credit exactly; see :func:`salesrules.splits.split`."""
        from salesrules.splits import split

        return split(self, deal, members, **options)

    def on_contract_event(self, event: Any, **options: Any) -> Decision[Any]:
        """Decide a contract event (approved/verified/revoked/amended); see :mod:`salesrules.handoff`."""
        from salesrules.handoff import on_contract_event

        return on_contract_event(self, event, **options)

    def on_project_status(self, event: Any, **options: Any) -> Decision[Any]:
        """Map a project status event to CRM updates; see :func:`salesrules.handoff.on_project_status`."""
        from salesrules.handoff import on_project_status

        return on_project_status(self, event, **options)

    def decide(self, request: Mapping[str, Any] | str) -> Decision[Any]:
        """Decide a JSON-style request: ``{"kind": ..., "now": ISO-8601, "explain": bool, ...}``.

        Args:
            request: the request as a mapping or JSON text.

        Returns:
            The decision.

        Raises:
            RecordError: the request is malformed, names an unknown kind, or holds bad records.
        """
        if isinstance(request, str):
            try:
                request = json.loads(request)
            except json.JSONDecodeError as exc:
                raise RecordError("request", "json", f"not valid JSON: {exc}") from None
        if not isinstance(request, Mapping):
            raise RecordError("request", "request", "a request must be a JSON object")
        kind = request.get("kind")
        if not isinstance(kind, str):
            raise RecordError("request", "kind", f"a request needs a 'kind' string, got {kind!r}")
        handler = None
        for spec in _ORDER:
            if kind in spec.kinds and (spec.name == "calendar" or spec.name in self._compiled):
                handler = spec.kinds[kind]
                break
        if handler is None:
            known = ", ".join(self.kinds) or "none"
            raise RecordError("request", "kind", f"unknown request kind {kind!r} (known: {known})")
        from salesrules.records import parse_datetime

        now = parse_datetime(request.get("now"), "request", "now")
        explain = request.get("explain", False)
        if not isinstance(explain, bool):
            raise RecordError("request", "explain", "must be true or false")
        try:
            return handler(self, request, now, explain)
        except ValidationError as exc:  # a handler that forgot to convert; never leak it
            raise RecordError("request", _first_loc(exc), str(exc)) from None


def _first_loc(exc: ValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "?"
    return ".".join(str(p) for p in errors[0]["loc"]) or "?"


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------


def load_policy(path: str | FsPath, *, strict: bool = False) -> Policy:
    """Load a policy from one YAML file or a folder of them.

    Args:
        path: a ``.yaml`` file, or a folder (searched recursively; ``*.scenario.yaml`` skipped).
        strict: promote warnings (``SR3xx``) to errors.

    Returns:
        The compiled, immutable policy.

    Raises:
        PolicyError: with every problem found, each located at ``file:line:col``.
    """
    root = FsPath(path)
    files: list[FsPath]
    if root.is_dir():
        files = sorted(
            p
            for p in root.rglob("*")
            if p.is_file()
            and p.suffix in (".yaml", ".yml")
            and not p.name.endswith((".scenario.yaml", ".scenario.yml"))
        )
        if not files:
            raise PolicyError(
                [Issue("SR108", "the folder holds no .yaml rule files", Location(str(root)))],
                str(root),
            )
    elif root.is_file():
        files = [root]
    else:
        raise PolicyError(
            [Issue("SR108", "no such file or folder", Location(str(root)))], str(root)
        )
    texts: list[tuple[str, str]] = []
    issues: list[Issue] = []
    for f in files:
        try:
            texts.append((str(f), f.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            issues.append(Issue("SR111", f"cannot read the file: {exc}", Location(str(f))))
    return _load_texts(texts, str(root), strict=strict, issues=issues)


def load_policy_string(text: str, filename: str = "<string>", *, strict: bool = False) -> Policy:
    """Load a policy from YAML text (handy in tests and notebooks).

    Args:
        text: the YAML document.
        filename: the name used in issue locations.
        strict: promote warnings to errors.

    Returns:
        The compiled policy.

    Raises:
        PolicyError: with every problem found.
    """
    return _load_texts([(filename, text)], filename, strict=strict, issues=[])


def _load_texts(
    texts: Iterable[tuple[str, str]], source: str, *, strict: bool, issues: list[Issue]
) -> Policy:
    marks = Marks()
    merged: dict[str, Any] = {}
    owner: dict[str, str] = {}
    sources: list[str] = []
    for filename, text in texts:
        sources.append(filename)
        data, file_marks, file_issues = load_yaml(text, filename)
        issues.extend(file_issues)
        if data is None:
            continue
        marks.merge(file_marks)
        version = data.get("version", 1)
        if "version" in data and (not isinstance(version, int) or version != 1):
            issues.append(
                Issue(
                    "SR110",
                    f"unsupported version {version!r}",
                    file_marks.value(("version",)),
                    hint="this salesrules reads `version: 1`",
                )
            )
        for key, value in data.items():
            if key == "version":
                continue
            if key not in _BY_NAME:
                issues.append(
                    Issue(
                        "SR104",
                        f"unknown section '{key}'",
                        file_marks.key((key,)),
                        hint=did_you_mean(key, [*_BY_NAME, "version"])
                        or f"sections are: {', '.join(_BY_NAME)}",
                    )
                )
                continue
            if key in merged:
                issues.append(
                    Issue(
                        "SR109",
                        f"section '{key}' is already defined in {owner[key]}",
                        file_marks.key((key,)),
                        hint="keep each section in exactly one file",
                    )
                )
                continue
            merged[key] = value
            owner[key] = filename

    models: dict[str, BaseModel] = {}
    for spec in SECTIONS:
        if spec.name not in merged:
            continue
        try:
            models[spec.name] = spec.model.model_validate(merged[spec.name])
        except ValidationError as exc:
            issues.extend(_pydantic_issues(exc, (spec.name,), merged[spec.name], marks, spec.model))

    from salesrules.calendar import DEFAULT_CALENDAR

    ctx = CompileContext(marks, models, DEFAULT_CALENDAR)
    compiled: dict[str, Any] = {}
    failed = {s.name for s in SECTIONS if s.name in merged and s.name not in models}
    for spec in _ORDER:
        model = models.get(spec.name)
        if model is None:
            continue
        if any(dep in failed for dep in spec.after):
            continue  # its inputs are broken; their issues are already reported
        before = sum(1 for i in ctx.issues if i.is_error)
        value = spec.compile(model, ctx)
        if sum(1 for i in ctx.issues if i.is_error) > before:
            failed.add(spec.name)
        compiled[spec.name] = value
        ctx._set_compiled(spec.name, value)
        if spec.name == "calendar":
            ctx.calendar = value
    issues.extend(ctx.issues)

    if strict:
        issues = [
            Issue(i.code, i.message, i.location, i.rule_id, i.hint, "error") for i in issues
        ]
    errors = [i for i in issues if i.is_error]
    if errors:
        raise PolicyError(issues, source)
    doc = {"version": 1, **{name: m.model_dump(mode="json") for name, m in models.items()}}
    digest = hashlib.sha256(
        json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    ).hexdigest()
    calendar = compiled.get("calendar", DEFAULT_CALENDAR)
    return Policy(
        digest=digest,
        sources=tuple(sources),
        calendar=calendar,
        warnings=tuple(sorted(issues, key=Issue.sort_key)),
        models=models,
        compiled=compiled,
    )


# --------------------------------------------------------------------------------------------
# pydantic errors -> located issues
# --------------------------------------------------------------------------------------------

_CUSTOM_CODE = re.compile(r"^SR\d{3}$")

# pydantic's wording for containers names Python types; rule-file authors think in YAML.
_FRIENDLY: Mapping[str, str] = MappingProxyType(
    {
        "tuple_type": "expected a list",
        "list_type": "expected a list",
        "set_type": "expected a list",
        "frozen_set_type": "expected a list",
        "dict_type": "expected a mapping",
        "model_type": "expected a mapping",
        "model_attributes_type": "expected a mapping",
    }
)


def _data_path(prefix: Path, data: Any, loc: tuple[Any, ...]) -> tuple[Path, Any]:
    """Follow a pydantic ``loc`` through the data, skipping union tags that are not keys."""
    path: list[str | int] = list(prefix)
    node = data
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, int) and str(part) in node:
            path.append(str(part))
            node = node[str(part)]
    return tuple(path), node


def _rule_id_at(data: Any, rel: Path) -> str | None:
    found: str | None = None
    node = data
    for part in rel:
        if isinstance(node, dict) and isinstance(node.get("id"), str):
            found = node["id"]
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return found
    if isinstance(node, dict) and isinstance(node.get("id"), str):
        found = node["id"]
    return found


def _fields_at(model: Any, loc: tuple[Any, ...]) -> list[str]:
    """Best-effort: the field names of the model reached by ``loc`` (for did-you-mean)."""
    candidates: list[Any] = [model]
    for part in loc:
        nxt: list[Any] = []
        for tp in candidates:
            nxt.extend(_step(tp, part))
        candidates = nxt
        if not candidates:
            return []
    names: list[str] = []
    for tp in candidates:
        for inner in _unwrap(tp):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                for fname, finfo in inner.model_fields.items():
                    names.append(finfo.alias or fname)
    return names


def _unwrap(tp: Any) -> list[Any]:
    import typing

    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union,) or type(tp).__name__ == "UnionType":
        out: list[Any] = []
        for a in typing.get_args(tp):
            out.extend(_unwrap(a))
        return out
    return [tp]


def _step(tp: Any, part: Any) -> list[Any]:
    import typing

    out: list[Any] = []
    for inner in _unwrap(tp):
        origin = typing.get_origin(inner)
        args = typing.get_args(inner)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            if isinstance(part, str):
                for fname, finfo in inner.model_fields.items():
                    if part in (fname, finfo.alias):
                        out.append(finfo.annotation)
                if part == inner.__name__:
                    out.append(inner)
        elif origin in (list, tuple, set, frozenset) and args:
            if isinstance(part, int):
                out.append(args[0])
        elif origin in (dict, Mapping) and len(args) == 2:
            out.append(args[1])
        elif isinstance(part, str):
            out.append(inner)  # a union tag: stay on this type
    return out


def _pydantic_issues(
    exc: ValidationError, prefix: Path, data: Any, marks: Marks, model: Any
) -> list[Issue]:
    out: list[Issue] = []
    seen: set[tuple[Any, ...]] = set()
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        etype = err["type"]
        path, value = _data_path(prefix, data, loc)
        rel = path[len(prefix) :]
        rule_id = _rule_id_at(data, rel)
        hint: str | None = None
        if etype == "extra_forbidden":
            key = str(loc[-1])
            code = "SR104"
            message = f"unknown key '{key}'"
            options = _fields_at(model, loc[:-1])
            hint = did_you_mean(key, options)
            if hint is None and options:
                hint = "allowed keys: " + ", ".join(sorted(set(options)))
            location = marks.key(path)
        elif etype == "missing":
            code = "SR105"
            message = f"missing required key '{loc[-1]}'"
            location = marks.value(path)
        elif _CUSTOM_CODE.match(etype):
            code = etype
            message = err["msg"]
            location = marks.value(path)
            ctx = err.get("ctx") or {}
            hint = ctx.get("hint") if isinstance(ctx, dict) else None
        elif etype in ("timezone_aware", "datetime_parsing", "datetime_type", "date_parsing",
                       "date_from_datetime_parsing", "time_parsing", "datetime_from_date_parsing"):
            code = "SR112"
            message = f"{err['msg']} (got {value!r})"
            location = marks.value(path)
            if etype == "timezone_aware":
                hint = "add an offset such as +08:00 or Z"
        else:
            code = "SR106"
            message = _FRIENDLY.get(etype, err["msg"])
            if not isinstance(value, dict | list):
                message += f" (got {value!r})"
            location = marks.value(path)
            expected = (err.get("ctx") or {}).get("expected")
            if isinstance(expected, str) and isinstance(value, str):
                options = re.findall(r"'([^']*)'", expected)
                hint = did_you_mean(value, options)
        dedupe = (code, location, message)
        if dedupe in seen:
            continue
        seen.add(dedupe)
        out.append(Issue(code, message, location, rule_id, hint))
    return out


def parse_now(value: Any) -> datetime:
    """Parse a request's ``now`` (kept for domain handlers; see ``records.parse_datetime``)."""
    from salesrules.records import parse_datetime

    return parse_datetime(value, "request", "now")
