"""splits: under construction (see docs/architecture.md)."""
