"""Optional matcher backends, each proven equal to the pure matcher.

The core of salesrules decides with :class:`salesrules.conditions.RuleTable`: pure Python,
immutable, thread-safe, no dependencies. A *backend* is an alternative engine that answers the
same question (``first(ctx)``: the first row whose condition is ``True``) with another
implementation, for comparison and benchmarking. Backends are:

* **optional** — each lives behind an extra (``pip install 'salesrules[durable]'``) and is
  imported lazily, only when a backend object is constructed; nothing in the core imports this
  package;
* **proven equal** — for every context a backend returns exactly what
  ``RuleTable.first(ctx)`` returns, Kleene "unknown" semantics included. Conditions or values a
  backend cannot represent faithfully are evaluated by the pure matcher instead (per row, or per
  context), and a property-based differential test checks the equality on random tables and
  random records.

Available backends:

* :mod:`salesrules.backends.durable` — :class:`~salesrules.backends.durable.DurableTable`,
  first-match tables on the durable-rules 2.0.28 C Rete engine (CPython 3.11/3.12 only).
"""

from __future__ import annotations

__all__: list[str] = []
