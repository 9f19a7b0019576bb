"""serving floor of parcours (see docs/architecture.md)."""
