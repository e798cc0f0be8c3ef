"""A strict YAML loader that keeps the line and column of every key and value.

Rule files are data, so the loader is stricter than ``yaml.safe_load``:

* duplicate keys are errors (PyYAML silently keeps the last one);
* tags (``!!python/...``, ``!foo``), anchors and aliases are errors;
* only YAML 1.2 core scalars are resolved: ``true``/``false``, ``null``/``~``, integers and
  floats. ``yes``/``no``/``on``/``off``/``NO`` stay strings (no "Norway problem") and dates stay
  strings until the schema parses them;
* tabs in indentation are reported as such, with their position;
* every problem is collected, none stops the others from being found where the YAML still
  parses.

``load_yaml`` returns the plain data and a ``Marks`` index from a path (tuple of keys and list
indices from the document root) to the location of the key and of the value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

from salesrules.errors import Issue, Location

__all__ = ["Marks", "Path", "load_yaml"]

Path = tuple[str | int, ...]


class _CoreResolver(BaseResolver):
    """Resolve plain scalars with the YAML 1.2 core schema only."""


_CoreResolver.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)
_CoreResolver.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
_CoreResolver.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)
_CoreResolver.add_implicit_resolver(
    "tag:yaml.org,2002:null",
    re.compile(r"^(?:~|null|Null|NULL|)$"),
    ["~", "n", "N", ""],
)


class _Loader(Reader, Scanner, Parser, Composer, _CoreResolver):
    """Composes a node tree and records tags, anchors and aliases instead of honouring them."""

    def __init__(self, stream: str, filename: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        _CoreResolver.__init__(self)
        self.filename = filename
        self.issues: list[Issue] = []

    def _loc(self, mark: Any) -> Location:
        return Location(self.filename, mark.line + 1, mark.column + 1)

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            self.get_event()  # type: ignore[no-untyped-call]
            self.issues.append(
                Issue(
                    "SR102",
                    f"alias '*{event.anchor}' is not allowed in rule files",
                    self._loc(event.start_mark),
                    hint="repeat the value instead; rule files must read the same top to bottom",
                )
            )
            marks: tuple[Any, Any] = (event.start_mark, event.end_mark)
            return ScalarNode("tag:yaml.org,2002:null", "", *marks)
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self.issues.append(
                Issue(
                    "SR102",
                    f"anchor '&{anchor}' is not allowed in rule files",
                    self._loc(event.start_mark),
                    hint="remove the anchor and repeat the value where it is used",
                )
            )
            event.anchor = None
        tag = getattr(event, "tag", None)
        if tag is not None and tag != "!":
            implicit = getattr(event, "implicit", (False, False))
            explicit = not (isinstance(implicit, tuple) and implicit[0]) and implicit is not True
            if explicit:
                shown = tag.replace("tag:yaml.org,2002:", "!!")
                self.issues.append(
                    Issue(
                        "SR102",
                        f"tag '{shown}' is not allowed in rule files",
                        self._loc(event.start_mark),
                        hint="write the plain value; the schema gives it its type",
                    )
                )
                event.tag = None
        node: Node | None = super().compose_node(parent, index)
        return node


@dataclass(frozen=True, slots=True)
class Marks:
    """Locations of keys and values by path from the document root."""

    values: dict[Path, Location] = field(default_factory=dict)
    keys: dict[Path, Location] = field(default_factory=dict)

    def value(self, path: Path) -> Location | None:
        """Location of the value at ``path``, or of its nearest marked ancestor."""
        p = tuple(path)
        while True:
            loc = self.values.get(p)
            if loc is not None or not p:
                return loc
            p = p[:-1]

    def key(self, path: Path) -> Location | None:
        """Location of the key at ``path`` (falls back to the value, then to the ancestors)."""
        loc = self.keys.get(tuple(path))
        return loc if loc is not None else self.value(path)

    def merge(self, other: Marks) -> None:
        """Add another file's marks (paths must not overlap; the first one wins if they do)."""
        for k, v in other.values.items():
            self.values.setdefault(k, v)
        for k, v in other.keys.items():
            self.keys.setdefault(k, v)


_SCALAR = SafeConstructor()


def _scalar(node: ScalarNode) -> Any:
    tag = node.tag
    if tag == "tag:yaml.org,2002:bool":
        return node.value.lower() == "true"
    if tag == "tag:yaml.org,2002:null":
        return None
    if tag == "tag:yaml.org,2002:int":
        text = node.value
        if text.startswith("0o"):
            return int(text[2:], 8)
        if text.startswith("0x"):
            return int(text[2:], 16)
        return int(text)
    if tag == "tag:yaml.org,2002:float":
        return _SCALAR.construct_yaml_float(node)
    return node.value


def _build(node: Node, path: Path, marks: Marks, issues: list[Issue], filename: str) -> Any:
    loc = Location(filename, node.start_mark.line + 1, node.start_mark.column + 1)
    marks.values[path] = loc
    if isinstance(node, ScalarNode):
        return _scalar(node)
    if isinstance(node, SequenceNode):
        return [
            _build(child, (*path, i), marks, issues, filename)
            for i, child in enumerate(node.value)
        ]
    if isinstance(node, MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key_loc = Location(
                filename, key_node.start_mark.line + 1, key_node.start_mark.column + 1
            )
            if not isinstance(key_node, ScalarNode):
                issues.append(
                    Issue("SR106", "a mapping key must be a plain scalar", key_loc)
                )
                continue
            key = str(key_node.value)
            if key in out:
                first = marks.keys.get((*path, key))
                where = f" (first defined at line {first.line})" if first else ""
                issues.append(
                    Issue(
                        "SR101",
                        f"duplicate key '{key}'{where}",
                        key_loc,
                        hint="YAML keeps only one of them; remove or rename the other",
                    )
                )
                continue
            marks.keys[(*path, key)] = key_loc
            out[key] = _build(value_node, (*path, key), marks, issues, filename)
        return out
    return None  # pragma: no cover - composer yields only the three node kinds


_TAB_INDENT = re.compile(r"^( *)\t")


def load_yaml(text: str, filename: str) -> tuple[Any, Marks, list[Issue]]:
    """Parse one YAML document strictly.

    Args:
        text: the file's text.
        filename: the name used in locations.

    Returns:
        ``(data, marks, issues)``; ``data`` is ``None`` when the text could not be parsed.
    """
    issues: list[Issue] = []
    marks = Marks()
    for lineno, line in enumerate(text.splitlines(), start=1):
        m = _TAB_INDENT.match(line)
        if m:
            issues.append(
                Issue(
                    "SR107",
                    "tab character in indentation",
                    Location(filename, lineno, len(m.group(1)) + 1),
                    hint="indent with spaces",
                )
            )
    if issues:
        return None, marks, issues
    loader: _Loader | None = None
    try:
        loader = _Loader(text, filename)
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(filename, mark.line + 1, mark.column + 1) if mark else Location(filename)
        problem = exc.problem or exc.context or "invalid YAML"
        if "expected a single document" in str(exc):
            problem = "a rule file holds exactly one YAML document"
        issues.append(Issue("SR100", f"invalid YAML: {problem}", loc))
        return None, marks, issues
    except yaml.YAMLError as exc:
        issues.append(Issue("SR100", f"invalid YAML: {exc}", Location(filename, 1, 1)))
        return None, marks, issues
    finally:
        if loader is not None:
            loader.dispose()
    issues.extend(loader.issues)
    if node is None:
        issues.append(
            Issue("SR103", "the file is empty", Location(filename, 1, 1), hint="add `version: 1`")
        )
        return None, marks, issues
    data = _build(node, (), marks, issues, filename)
    if not isinstance(data, dict):
        issues.append(
            Issue(
                "SR103",
                "a rule file must hold a mapping of sections",
                marks.value(()),
                hint="start with `version: 1` and section keys such as `calendar:`",
            )
        )
        return None, marks, issues
    return data, marks, issues
