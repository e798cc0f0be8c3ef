"""Every example runs, and its output matches its snapshot (examples never rot).

Snapshots live in ``tests/snapshots/examples/NAME.txt``; refresh with ``pytest --update-golden``.
"""

from __future__ import annotations

import contextlib
import io
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
SNAPSHOTS = Path(__file__).parent / "snapshots" / "examples"


def test_there_are_examples() -> None:
    assert EXAMPLES


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_and_matches_snapshot(script: Path, update_golden: bool) -> None:
    module = runpy.run_path(str(script), run_name="example_under_test")
    main = module.get("main")
    assert callable(main), f"{script.name} must define main()"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main()
    text = out.getvalue()
    assert text.strip(), f"{script.name} printed nothing"
    snap = SNAPSHOTS / f"{script.stem}.txt"
    if update_golden:
        snap.write_text(text, encoding="utf-8")
    assert snap.exists(), f"no snapshot for {script.name}; run pytest --update-golden"
    assert text == snap.read_text(encoding="utf-8")
