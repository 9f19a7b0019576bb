"""Shared fixtures. Integration tests run the real stack in temporary PARCOURS_HOME workspaces."""

from __future__ import annotations

import os

# Never let a developer's environment leak into tests (e.g. a PARCOURS_HOME pointing at their demo).
for _name in [n for n in os.environ if n.startswith("PARCOURS_")]:
    del os.environ[_name]
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("PYTHONHASHSEED", "0")
