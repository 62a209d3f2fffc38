"""Where the suite finds the repository and the third-party sources (the real evaluators, route files).

``AUTOMOT_SHARED`` points at a folder laid out like ``shared/`` (``third_party/``, ``data/bench2drive/``); the default
is ``../shared`` next to the repository. Tests that need it skip, printing this variable, when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# resolved: the evaluator paths tests compare against are resolved ones (shared/ may be a symlink)
SHARED = Path(os.environ.get("AUTOMOT_SHARED") or REPO.parent / "shared").resolve()
THIRD_PARTY = SHARED / "third_party"
B2D_ROUTES = SHARED / "data" / "bench2drive"
HOW_TO_GET = (
    "set AUTOMOT_SHARED to a folder holding third_party/ (leaderboard-2.0, scenario_runner-2.0, bench2drive, "
    "carla_pythonapi) and data/bench2drive/ (the official route files), default ../shared next to the repository"
)
