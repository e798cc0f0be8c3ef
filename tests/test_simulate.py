"""What-if replay: determinism, self-comparison, bookkeeping invariants, metrics that add up,
history formats, compare, frames, plots and the CLI."""

from __future__ import annotations

import csv
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from salesrules import simulate as sim
from salesrules.errors import RecordError
from salesrules.policy import load_policy, load_policy_string
from salesrules.simulate import (
    compare,
    generate_history,
    gini,
    read_history,
    simulate,
    summary_table,
    write_history,
)
from simulate_fakes import FakePolicy

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "data" / "history-sample.jsonl"
RULES = ROOT / "rules"


@pytest.fixture(scope="module")
def bundled() -> Any:
    return load_policy(RULES)


@pytest.fixture(scope="module")
def sample_run(bundled: Any) -> sim.SimulationResult:
    """One audited replay of the bundled sample, shared by the read-only tests."""
    return simulate(bundled, SAMPLE, audit=True)


@pytest.fixture(scope="module")
def small_history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first two weeks of the sample: enough for the CLI tests, and quick."""
    events = read_history(SAMPLE)
    cut = events[0].at + timedelta(days=14)
    path = tmp_path_factory.mktemp("hist") / "small.jsonl"
    write_history([e for e in events if e.at < cut], path)
    return path


def _small(seed: int, leads: int = 60, days: int = 30) -> list[dict[str, Any]]:
    return generate_history(seed, reps=12, leads=leads, days=days, claims_per_day=2.0)


def _assert_metrics_add_up(res: sim.SimulationResult) -> None:
    t = res.totals
    assert t["invariant_problems"] == []
    assert sum(t["leads_by_holder"].values()) == t["leads"]
    assert sum(r["assigned"] for r in res.reps) == t["assigned"]
    assert sum(r["claimed"] for r in res.reps) == t["claimed"]
    assert sum(res.releases_by_reason.values()) == t["released"] == len(res.releases)
    assert sum(f["load"] for f in res.fairness) <= t["assigned"] + t["claimed"]
    host = res.host
    for owner, keys in host.holdings.items():
        for key in keys:
            assert host.owner[key] == owner
    leads_held = sum(r["held_leads"] for r in res.reps)
    assert leads_held == t["leads_by_holder"].get("rep", 0)


# -- the stand-in policy: fast property tests of the machinery ----------------------------------


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    hours=st.sampled_from([4.0, 24.0, 72.0]),
    cap=st.integers(1, 20),
)
def test_replay_is_deterministic_and_consistent(seed: int, hours: float, cap: int) -> None:
    history = _small(seed, leads=40, days=20)
    policy = FakePolicy(follow_up_hours=hours, cap=cap)
    a = simulate(policy, history, audit=True)
    b = simulate(policy, history)
    assert a.fingerprint() == b.fingerprint()
    assert a.summary() == b.summary()
    _assert_metrics_add_up(a)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000))
def test_a_policy_compared_with_itself_changes_nothing(seed: int) -> None:
    history = _small(seed, leads=30, days=15)
    res = compare(FakePolicy(), FakePolicy(), history)
    assert res.identical
    assert res.owner_changes == res.release_changes == res.transition_changes == []
    assert "no differences" in res.summary()


def test_compare_reports_record_and_rep_differences() -> None:
    history = _small(5, leads=80, days=30)
    res = compare(FakePolicy(follow_up_hours=24), FakePolicy(follow_up_hours=96), history)
    assert not res.identical
    changes = {r["change"] for r in res.release_changes}
    assert "later" in changes or "only_a" in changes
    assert res.b.totals["released"] < res.a.totals["released"]
    assert res.rep_changes and all("assigned_a" in r for r in res.rep_changes)
    text = res.summary()
    assert "releases changed" in text and "released" in text


def test_releases_and_claims_flow_through_the_host() -> None:
    history = _small(11, leads=50, days=20)
    res = simulate(FakePolicy(follow_up_hours=4), history, audit=True)
    assert res.totals["released"] > 0
    assert res.releases_by_reason == {"follow_up": res.totals["released"]}
    assert res.totals["claimed"] > 0
    _assert_metrics_add_up(res)


# -- the bundled policy -------------------------------------------------------------------------


def test_sample_replays_with_the_bundled_policy(bundled: Any, sample_run: Any) -> None:
    res = sample_run
    _assert_metrics_add_up(res)
    t = res.totals
    assert t["leads"] == 70 and t["assigned"] > 50
    assert t["released"] > 0 and t["transitions"] > 0
    assert res.unknown_effects == {}
    assert t["decisions"] > t["events"] // 2
    kinds = {e.kind for e in res.log}
    assert {"assign", "grade", "check", "transition", "claim", "contract_event"} <= kinds
    text = summary_table(res)
    assert "release reason" in text and "gini" in text
    again = simulate(bundled, SAMPLE)
    assert again.fingerprint() == res.fingerprint()


def test_a_looser_follow_up_rule_releases_less(bundled: Any, sample_run: Any) -> None:
    text = (RULES / "timeouts.yaml").read_text(encoding="utf-8")
    looser = text.replace("A: 1 business day,", "A: 4 business days,").replace(
        "B: 2 business days,", "B: 4 business days,"
    )
    assert looser != text
    docs = [
        (p.name, p.read_text(encoding="utf-8"))
        for p in sorted(RULES.glob("*.yaml"))
        if p.name != "timeouts.yaml"
    ]
    from salesrules.policy import _load_texts

    b = _load_texts([*docs, ("timeouts.yaml", looser)], "rules-b", strict=False, issues=[])
    res = sim.diff_results(sample_run, simulate(b, SAMPLE))
    assert res.b.totals["released"] < res.a.totals["released"]
    assert any(r["change"] in ("later", "only_a") for r in res.release_changes)
    assert res.rep_changes


def test_compare_of_a_policy_with_itself_on_the_sample(
    bundled: Any, sample_run: Any, small_history: Path
) -> None:
    assert sim.diff_results(sample_run, sample_run).identical
    assert compare(bundled, bundled, small_history).identical


def test_a_policy_without_domain_sections_leaves_leads_unassigned() -> None:
    policy = load_policy_string("version: 1\ncalendar: {timezone: Asia/Shanghai}\n")
    res = simulate(policy, SAMPLE)
    assert res.totals["assigned"] == 0
    assert res.totals["leads_by_holder"] == {"queue": 70}
    # nobody owns a lead, so nobody follows up, converts or moves a stage
    assert res.totals["transitions"] == 0 and res.skipped["not_owned"] > 0


# -- formats ----------------------------------------------------------------------------------


def test_csv_and_jsonl_histories_replay_alike(tmp_path: Path, bundled: Any) -> None:
    events = [e for e in read_history(SAMPLE) if e.type in ("rep_joined", "lead_created")][:40]
    jsonl = tmp_path / "h.jsonl"
    write_history(events, jsonl)
    path = tmp_path / "h.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "id",
                "at",
                "type",
                "rep",
                "lead.id",
                "lead.region",
                "lead.source",
                "lead.company",
                "creator_id",
            ]
        )
        for e in events:
            lead = e.get("lead") or {}
            w.writerow(
                [
                    e.id,
                    e.at.isoformat(),
                    e.type,
                    json.dumps(e.get("rep"), ensure_ascii=False) if e.get("rep") else "",
                    lead.get("id", ""),
                    lead.get("region", ""),
                    lead.get("source", ""),
                    lead.get("company", ""),
                    e.get("creator_id") or "",
                ]
            )
    a = simulate(bundled, jsonl)
    b = simulate(bundled, path)
    assert [x.owner_id for x in (e.decision.outcome for e in a.log if e.kind == "assign")] == [
        x.owner_id for x in (e.decision.outcome for e in b.log if e.kind == "assign")
    ]


def test_malformed_events_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"id": "E1", "at": "2026-01-05T09:00:00+08:00", "type": "clock_tick"}\n'
        '{"id": "E2", "at": "2026-01-05T09:00:00", "type": "clock_tick"}\n',
        encoding="utf-8",
    )
    with pytest.raises(RecordError) as err:
        read_history(path)
    assert "line 2" in str(err.value) and "naive" in str(err.value)
    with pytest.raises(RecordError) as err:
        read_history([{"id": "E1", "at": "2026-01-05T09:00:00+08:00", "type": "lead_create"}])
    assert "lead_created" in str(err.value)  # did you mean


def test_events_sorted_stably_by_time() -> None:
    evs = read_history(
        [
            {"id": "b", "at": "2026-01-05T10:00:00+08:00", "type": "clock_tick"},
            {"id": "a", "at": "2026-01-05T09:00:00+08:00", "type": "clock_tick"},
            {"id": "c", "at": "2026-01-05T01:00:00Z", "type": "clock_tick"},  # 09:00 +08:00
        ]
    )
    assert [e.id for e in evs] == ["a", "c", "b"]


def test_generator_is_seeded() -> None:
    a = generate_history(3, reps=8, leads=20, days=10)
    b = generate_history(3, reps=8, leads=20, days=10)
    c = generate_history(4, reps=8, leads=20, days=10)
    assert a == b and a != c
    assert sum(1 for e in a if e["type"] == "lead_created") == 20
    assert [e["at"] for e in a] == sorted(e["at"] for e in a)


def test_gini() -> None:
    assert gini([]) == 0.0
    assert gini([5, 5, 5]) == 0.0
    assert gini([0, 0, 10]) == pytest.approx(2 / 3)


# -- outputs ------------------------------------------------------------------------------------


def test_write_outputs(tmp_path: Path, sample_run: Any) -> None:
    files = sample_run.write(tmp_path / "out")
    names = {f.name for f in files}
    assert {"decisions.jsonl", "reps.csv", "fairness.csv", "releases.csv", "summary.json"} <= names
    first = json.loads(
        (tmp_path / "out" / "decisions.jsonl").read_text(encoding="utf-8").splitlines()[0]
    )
    assert {"event_id", "kind", "decision"} <= set(first)


def test_frames(sample_run: Any) -> None:
    pytest.importorskip("pandas")
    res = sim.diff_results(sample_run, sample_run)
    frames = res.a.to_frames()
    assert {"reps", "fairness", "releases", "refusals", "log"} <= set(frames)
    assert len(frames["log"]) == len(res.a.log)
    assert {"rep_id", "assigned", "credited"} <= set(frames["reps"].columns)
    diff = res.to_frames()
    assert list(diff["owners"].columns) == ["record", "owner_a", "owner_b"]


def test_plots(sample_run: Any) -> None:
    mpl = pytest.importorskip("matplotlib")
    mpl.use("Agg")
    res = sample_run
    ax = sim.plot_load({"current": res, "again": res})
    assert ax.get_title() == "Load distribution"
    ax = sim.plot_releases({"current": res})
    assert ax.get_title() == "Releases over time"


# -- CLI ----------------------------------------------------------------------------------------


def test_cli_simulate_and_compare(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], small_history: Path
) -> None:
    n = len(read_history(small_history))
    out = tmp_path / "out"
    code = sim.cli_simulate([str(RULES), str(small_history), "--out", str(out), "--no-log"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"replay of {n} events" in captured.out
    assert (out / "summary.json").exists()
    code = sim.cli_simulate([str(RULES), str(small_history), "--json", "--sweep", "ticks"])
    assert code == 0
    assert "totals" in json.loads(capsys.readouterr().out)
    code = sim.cli_compare(
        [str(RULES), str(RULES), str(small_history), "--out", str(tmp_path / "cmp")]
    )
    assert code == 0
    assert "no differences" in capsys.readouterr().out
    assert (tmp_path / "cmp" / "rep_changes.csv").exists()


def test_cli_errors_and_interrupt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sim.cli_simulate([str(tmp_path / "missing"), str(SAMPLE)]) == 1
    assert "salesrules simulate:" in capsys.readouterr().err
    assert sim.cli_simulate([]) == 2

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(sim, "simulate", interrupted)
    assert sim.cli_simulate([str(RULES), str(SAMPLE)]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err
    assert sim.cli_compare([str(RULES), str(RULES), str(SAMPLE)]) == 130


def test_progress_bar_only_when_asked(capsys: pytest.CaptureFixture[str], bundled: Any) -> None:
    simulate(bundled, SAMPLE, progress=False)
    assert capsys.readouterr().err == ""
    simulate(bundled, SAMPLE, progress=True)
    err = capsys.readouterr().err
    assert "replay [" in err and "485/485" in err


def test_ticks_sweep_releases_only_at_the_nightly_job(bundled: Any, sample_run: Any) -> None:
    res = simulate(bundled, SAMPLE, sweep="ticks", audit=True)
    _assert_metrics_add_up(res)
    ticks = {e.at for e in read_history(SAMPLE) if e.type == "clock_tick"}
    swept = [r for r in res.releases if r["reason"] in ("lead-follow-up", "lead-conversion")]
    assert swept and all(r["at"] in ticks for r in swept)
    assert sample_run.totals["released"] >= res.totals["released"] > 0
