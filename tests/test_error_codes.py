"""Every issue code used in the library is documented, and no two modules share a code."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE = re.compile(r"\"(SR\d{3})\"")


def _codes_by_module() -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for path in sorted((ROOT / "src" / "salesrules").rglob("*.py")):
        for code in CODE.findall(path.read_text(encoding="utf-8")):
            found[code].add(path.stem)
    return found


def test_codes_are_documented() -> None:
    docs = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "docs").glob("*.md"))
    missing = sorted(code for code in _codes_by_module() if code not in docs)
    assert missing == []


def test_each_domain_code_belongs_to_one_module() -> None:
    shared = {"_section", "policy", "errors", "_yaml", "calendar", "conditions"}
    clashes = {
        code: sorted(mods - shared)
        for code, mods in _codes_by_module().items()
        if len(mods - shared) > 1
    }
    assert clashes == {}
