"""The command line: exit codes, rendered issues, JSON in and out."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from salesrules.cli import main

ROOT = Path(__file__).resolve().parent.parent
INVALID = ROOT / "tests" / "invalid"


def run(args: list[str], stdin: str = "", monkeypatch: pytest.MonkeyPatch | None = None) -> int:
    if monkeypatch is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return main(args)


def test_check_clean_policy_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(ROOT / "rules")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok: ")


def test_check_broken_policy_prints_sorted_located_issues(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(INVALID)
    assert main(["check", "two_typos.yaml"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == sorted(lines, key=lambda s: (s.split(":")[0], int(s.split(":")[1])))
    assert all(line.startswith("two_typos.yaml:") and " SR104 " in line for line in lines)


def test_check_json_format(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(INVALID)
    assert main(["check", "--format", "json", "typo_key.yaml"]) == 1
    issues = json.loads(capsys.readouterr().out)
    assert issues[0]["code"] == "SR104"
    assert (issues[0]["line"], issues[0]["col"]) == (3, 3)


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["check"]) == 2
    assert main(["frobnicate"]) == 2


def test_schema_prints_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "salesrules policy"


def _shape(schema: dict[str, object]) -> dict[str, object]:
    """The structure of a JSON Schema: definitions, their keys and required keys.

    Compared instead of the text because pydantic releases differ in details such as the
    regex they emit for decimals; a new or renamed key still shows up here.
    """
    defs = schema.get("$defs", {})
    assert isinstance(defs, dict)
    out: dict[str, object] = {"top": sorted(schema.get("properties", {}))}  # type: ignore[arg-type]
    for name, d in sorted(defs.items()):
        out[name] = (sorted(d.get("properties", {})), sorted(d.get("required", [])))
    return out


def test_checked_in_schema_is_current() -> None:
    from salesrules.policy import policy_json_schema

    checked_in = json.loads((ROOT / "docs" / "policy.schema.json").read_text(encoding="utf-8"))
    assert _shape(checked_in) == _shape(policy_json_schema()), (
        "run: salesrules schema --out docs/policy.schema.json"
    )


def test_decide_deadline_from_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    req = {
        "policy": str(ROOT / "rules"),
        "kind": "deadline",
        "now": "2026-10-09T10:00:00+08:00",
        "start": "2026-09-30T17:00:00+08:00",
        "duration": "1 business day",
    }
    assert run(["decide", "-"], json.dumps(req), monkeypatch) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kind"] == "deadline"
    # National Day week (Oct 1-7) is skipped
    assert out["outcome"]["deadline"] == "2026-10-08T17:00:00+08:00"


def test_decide_bad_request_is_a_json_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    req = {"policy": str(ROOT / "rules"), "kind": "deadline", "now": "2026-10-09T10:00:00"}
    assert run(["decide", "-"], json.dumps(req), monkeypatch) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["error"]["type"] == "record"
    assert out["error"]["field"] == "now"
    assert run(["decide", "-"], "{oops", monkeypatch) == 1


def test_python_dash_m_works() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "salesrules", "check", str(ROOT / "rules")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
