"""CLI command groups, one module per area; each exposes `register(app)` and imports heavy code lazily."""
