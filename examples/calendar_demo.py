"""Business-time deadlines on the bundled calendar (Beijing time, China's holidays and 调休)."""

from __future__ import annotations

from pathlib import Path

import salesrules

RULES = Path(__file__).resolve().parent.parent / "rules"


def main() -> None:
    """Print three deadlines: a Friday evening, National Day week, and a Saturday start."""
    policy = salesrules.load_policy(RULES / "calendar.yaml")
    cases = [
        ("Friday 17:00 + 1 business day", "2026-11-27T17:00:00+08:00", "1 business day"),
        ("eve of National Day + 1 business day", "2026-09-30T17:00:00+08:00", "1 business day"),
        ("assigned on a Saturday + 4 business hours", "2026-11-28T10:00:00+08:00", "4 business hours"),
    ]
    for label, start, duration in cases:
        decision = policy.decide(
            {"kind": "deadline", "now": start, "start": start, "duration": duration}
        )
        print(f"{label}: {decision.outcome.deadline.isoformat()}")
    decision = policy.decide(
        {
            "kind": "deadline",
            "now": "2026-09-30T17:00:00+08:00",
            "start": "2026-09-30T17:00:00+08:00",
            "duration": "1 business day",
            "explain": True,
        }
    )
    print(decision.explain())


if __name__ == "__main__":
    main()
