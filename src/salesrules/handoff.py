"""handoff: under construction (see docs/architecture.md)."""
