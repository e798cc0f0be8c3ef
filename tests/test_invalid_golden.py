"""Golden diagnostics: every broken rule file renders exactly its expected issue list.

Each case is ``tests/invalid/NAME.yaml`` (or a folder ``NAME.d``) with ``NAME.expected.txt``
beside it, and a row in ``tests/invalid/cases.yaml`` naming the mistake in a sentence and the
issue codes it must produce. Expected files change only with ``pytest --update-golden``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from salesrules import PolicyError, load_policy

HERE = Path(__file__).parent / "invalid"
CASES: list[dict[str, Any]] = yaml.safe_load((HERE / "cases.yaml").read_text(encoding="utf-8"))


def test_every_file_has_a_case_row() -> None:
    on_disk = {p.name for p in HERE.iterdir() if p.suffix == ".yaml" or p.suffix == ".d"}
    on_disk.discard("cases.yaml")
    assert on_disk == {c["file"] for c in CASES}
    assert len(CASES) >= 25, "the issue asks for at least 25 distinct mistakes"


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_invalid_policy(case: dict[str, Any], monkeypatch: pytest.MonkeyPatch, update_golden: bool) -> None:
    monkeypatch.chdir(HERE)
    with pytest.raises(PolicyError) as info:
        load_policy(case["file"], strict=case.get("strict", False))
    err = info.value
    assert sorted(set(err.codes)) == sorted(set(case["codes"])), case["name"]
    if "count" in case:
        assert len(err.issues) == case["count"], case["name"]
    for issue in err.issues:
        assert issue.location is not None and issue.location.file, issue
        if issue.code not in ("SR108", "SR111"):
            assert issue.location.line >= 1 and issue.location.col >= 1, issue
    rendered = err.render() + "\n"
    expected = HERE / (Path(case["file"]).stem + ".expected.txt")
    if case["file"].endswith(".d"):
        expected = HERE / (case["file"][:-2] + ".expected.txt")
    if update_golden or not expected.exists():
        if not update_golden:
            pytest.fail(f"missing {expected.name}; run pytest --update-golden")
        expected.write_text(rendered, encoding="utf-8")
    assert rendered == expected.read_text(encoding="utf-8")
