"""Feast definitions for parcours, split by kind like Feast's templates.

Factory functions only: paths depend on PARCOURS_HOME and `import feast` is slow, so nothing is built (or
imported) at import time. `features.store` assembles them.
"""
