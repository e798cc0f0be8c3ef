"""assignment: under construction (see docs/architecture.md)."""
