"""What if a grade-A lead had two business days instead of one? A backtest on the sample.

Replays the bundled history sample (``examples/data/history-sample.jsonl``: a few weeks of the
example company — new leads, follow-ups, claims, conversions, stage moves, collaborations,
wins, contracts, project reports) through the bundled policy with the in-memory reference
host, prints the replay summary, then compares it with the same policy where one rule is
changed, record by record and rep by rep.

Run: ``python examples/simulate_demo.py`` (or ``salesrules simulate rules
examples/data/history-sample.jsonl``; ``salesrules compare A B HISTORY`` for the comparison).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from salesrules.policy import load_policy
from salesrules.simulate import diff_results, simulate, summary_table

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
HISTORY = ROOT / "examples" / "data" / "history-sample.jsonl"


def proposed_rules(folder: Path) -> Path:
    """Copy the bundled rules into ``folder`` with grade A given 2 business days, not 1."""
    target = folder / "rules"
    shutil.copytree(RULES, target)
    timeouts = target / "timeouts.yaml"
    text = timeouts.read_text(encoding="utf-8")
    timeouts.write_text(text.replace("A: 1 business day,", "A: 2 business days,"), encoding="utf-8")
    return target


def main() -> None:
    """Replay the sample with the current policy, then compare with the proposed one."""
    current = load_policy(RULES)
    baseline = simulate(current, HISTORY)
    print(summary_table(baseline, top=5))
    with tempfile.TemporaryDirectory() as tmp:
        proposed = load_policy(proposed_rules(Path(tmp)))
    print()
    print("== what if grade A had 2 business days? ==")
    print(diff_results(baseline, simulate(proposed, HISTORY)).summary(top=5, timings=False))


if __name__ == "__main__":
    main()
