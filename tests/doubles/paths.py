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
    "set AUTOMOT_SHARED to a folder (default ../shared next to the repository) holding third_party/leaderboard-2.0 "
    "and third_party/scenario_runner-2.0 (carla-simulator/leaderboard and carla-simulator/scenario_runner, branch "
    "leaderboard-2.0), third_party/bench2drive/{leaderboard,scenario_runner} (Thinklab-SJTU/Bench2Drive 0.0.4), "
    "third_party/carla_pythonapi/agents (CARLA 0.9.15's PythonAPI/carla/agents) and data/bench2drive/ (Bench2Drive's "
    "leaderboard/data/*.xml route files)"
)
