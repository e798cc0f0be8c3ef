"""stages: under construction (see docs/architecture.md)."""
