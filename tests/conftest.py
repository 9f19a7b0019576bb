"""Shared fixtures. Integration tests run the real stack in temporary PARCOURS_HOME workspaces."""

from __future__ import annotations

import os

# Never let a developer's environment leak into tests (e.g. a PARCOURS_HOME pointing at their demo).
for _name in [n for n in os.environ if n.startswith("PARCOURS_")]:
    del os.environ[_name]
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# In-process runs keep LightGBM's own predictor: after an in-process `parcours demo`, the first prediction of a
# compiled (lleaves) forest segfaults the pytest process (not reproduced in a fresh process). The compiled path
# is tested in child processes (tests/integration/test_score.py) and unit tests choose their predictor.
os.environ["PARCOURS_COMPILED_MODELS"] = "off"
os.environ.setdefault("PYTHONHASHSEED", "0")
