"""timeouts: under construction (see docs/architecture.md)."""
