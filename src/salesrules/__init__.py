"""salesrules: declarative CRM sales rules as pure, explainable decision functions.

Load a policy once (rule files → validated → compiled → immutable), then ask it questions::

    import salesrules
    policy = salesrules.load_policy("rules/")
    decision = policy.decide({"kind": "deadline", "now": "2026-10-09T17:00:00+08:00",
                              "start": "2026-10-09T17:00:00+08:00",
                              "duration": "1 business day"})
    print(decision)            # one line
    print(decision.explain())  # reasons, effects, assumptions, trace

Domain functions live in :mod:`salesrules.assignment`, :mod:`salesrules.timeouts`,
:mod:`salesrules.stages`, :mod:`salesrules.splits` and :mod:`salesrules.handoff`; the
:class:`Policy` has a convenience method for each.
"""

from salesrules.decision import Assumption, Decision, Effect, Reason, Trace, TraceStep
from salesrules.errors import Issue, Location, PolicyError, RecordError, SalesRulesError
from salesrules.policy import Policy, load_policy, load_policy_string

__version__ = "0.1.0"

__all__ = [
    "Assumption",
    "Decision",
    "Effect",
    "Issue",
    "Location",
    "Policy",
    "PolicyError",
    "Reason",
    "RecordError",
    "SalesRulesError",
    "Trace",
    "TraceStep",
    "load_policy",
    "load_policy_string",
]
