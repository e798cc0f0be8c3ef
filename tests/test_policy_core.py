"""Policy loading: strict YAML, digest stability, immutability, thread safety, robustness."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from salesrules import Policy, PolicyError, RecordError, load_policy, load_policy_string
from salesrules._yaml import load_yaml

ROOT = Path(__file__).resolve().parent.parent

CAL = """version: 1
calendar:
  timezone: Asia/Shanghai
  working_hours:
    mon-fri: ["09:00-12:00", "13:30-18:00"]
  holidays: {country: CN}
  extra_holidays: [2026-12-31]
"""


def test_norway_problem_cannot_happen() -> None:
    data, _marks, issues = load_yaml("region: NO\non: yes\noff: n\ny: Off\nok: true\n", "f.yaml")
    assert issues == []
    assert data == {"region": "NO", "on": "yes", "off": "n", "y": "Off", "ok": True}


def test_dates_stay_strings_until_the_schema_parses_them() -> None:
    data, _m, _i = load_yaml("d: 2026-10-01\nt: 12:30\n", "f.yaml")
    assert data == {"d": "2026-10-01", "t": "12:30"}


def test_marks_point_at_keys_and_values_deep_in_lists() -> None:
    _d, marks, _i = load_yaml("a:\n  - {x: 1}\n  - y:\n      z: 2\n", "f.yaml")
    assert str(marks.value(("a", 1, "y", "z"))) == "f.yaml:4:10"
    assert str(marks.key(("a", 1, "y", "z"))) == "f.yaml:4:7"
    assert str(marks.value(("a", 0, "x"))) == "f.yaml:2:9"


def _permute(text: str, seed: int) -> str:
    import random

    data = yaml.safe_load(text)

    def shuffle(node: object) -> object:
        if isinstance(node, dict):
            items = list(node.items())
            random.Random(seed).shuffle(items)
            return {k: shuffle(v) for k, v in items}
        return node

    return yaml.safe_dump(shuffle(data), allow_unicode=True, sort_keys=False)


@given(st.integers(min_value=0, max_value=10_000))
def test_digest_ignores_key_order_and_quoting(seed: int) -> None:
    a = load_policy_string(CAL)
    b = load_policy_string(_permute(CAL, seed))
    assert a.digest == b.digest
    assert a == b


def test_digest_changes_with_content() -> None:
    a = load_policy_string(CAL)
    b = load_policy_string(CAL.replace("2026-12-31", "2026-12-30"))
    assert a.digest != b.digest


def test_digest_is_independent_of_the_file_split(tmp_path: Path) -> None:
    one = load_policy(ROOT / "rules")
    merged = tmp_path / "all.yaml"
    merged.write_text(yaml.safe_dump(one.dump(), allow_unicode=True), encoding="utf-8")
    assert load_policy(merged).digest == one.digest


def test_round_trip_through_dump() -> None:
    policy = load_policy(ROOT / "rules")
    again = load_policy_string(yaml.safe_dump(policy.dump(), allow_unicode=True))
    assert again == policy


def test_policy_is_immutable() -> None:
    policy = load_policy_string(CAL)
    with pytest.raises(AttributeError):
        policy.digest = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        policy._compiled["calendar"] = None  # type: ignore[index]


def test_policy_is_safe_to_share_across_threads() -> None:
    policy = load_policy_string(CAL)
    req = {
        "kind": "deadline",
        "now": "2026-09-30T10:00:00+08:00",
        "start": "2026-09-30T17:00:00+08:00",
        "duration": "1 business day",
        "explain": True,
    }
    expected = policy.decide(req).to_json()
    results: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(50):
            out = policy.decide(req).to_json()
            with lock:
                results.append(out)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 400
    assert set(results) == {expected}


def test_decide_rejects_bad_requests_with_record_errors() -> None:
    policy = load_policy_string(CAL)
    with pytest.raises(RecordError) as info:
        policy.decide({"kind": "nope", "now": "2026-01-01T00:00:00Z"})
    assert info.value.field == "kind"
    with pytest.raises(RecordError) as info:
        policy.decide({"kind": "deadline", "now": "2026-01-01T00:00:00"})
    assert info.value.field == "now"
    with pytest.raises(RecordError):
        policy.decide("{not json")


def test_every_bundled_rule_file_loads_clean_in_strict_mode() -> None:
    policy = load_policy(ROOT / "rules", strict=True)
    assert policy.warnings == ()
    assert isinstance(policy, Policy)
    for path in sorted((ROOT / "rules").rglob("*.yaml")):
        if path.name.endswith(".scenario.yaml"):
            continue
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), path


def test_missing_path_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "nope")
    assert info.value.codes == ("SR108",)
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path)
    assert info.value.codes == ("SR108",)


@given(st.text(max_size=200))
def test_arbitrary_text_raises_only_policy_error(text: str) -> None:
    try:
        load_policy_string(text)
    except PolicyError as exc:
        assert exc.issues
        assert all(i.code.startswith("SR") for i in exc.issues)


_yaml_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10)
)
_yaml_tree = st.recursive(
    _yaml_leaf,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(
        st.sampled_from(
            ["calendar", "timezone", "working_hours", "mon", "holidays", "country", "version",
             "assignment", "rules", "id", "when", "stages", "splits", "x"]
        ),
        inner,
        max_size=4,
    ),
    max_leaves=15,
)


@given(_yaml_tree)
def test_arbitrary_yaml_raises_only_policy_error(tree: object) -> None:
    text = yaml.safe_dump(tree, allow_unicode=True)
    try:
        load_policy_string(text)
    except PolicyError as exc:
        assert exc.issues


def test_schema_is_json_and_covers_sections() -> None:
    from salesrules.policy import policy_json_schema

    schema = policy_json_schema()
    json.dumps(schema)
    assert "calendar" in schema["properties"]
