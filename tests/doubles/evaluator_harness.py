"""Locating the real evaluator sources and running them on the fake server.

Used by tests/world/test_real_evaluators.py and tests/world/test_leaderboard_known_breakages.py. The sources are
found through doubles.paths (``$AUTOMOT_SHARED``, default ``../shared`` next to the checkout); when they, the
``carla`` client or ``py_trees==0.8.3`` are missing the tests skip and print why and how to get them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import yaml

from doubles.paths import B2D_ROUTES, HOW_TO_GET, REPO, SHARED, THIRD_PARTY  # noqa: F401 (SHARED: re-exported)

DOUBLES = Path(__file__).resolve().parent  # holds fake_carla/, run as ``python -m fake_carla.bootstrap``
ROUTES_XML = B2D_ROUTES / "bench2drive220.xml"
CARLA_PYTHONAPI = THIRD_PARTY / "carla_pythonapi"
AGENT = REPO / "agent" / "automot_agent.py"
FLAVOURS = {
    "leaderboard-2.0": (THIRD_PARTY / "leaderboard-2.0", THIRD_PARTY / "scenario_runner-2.0"),
    "bench2drive": (THIRD_PARTY / "bench2drive" / "leaderboard", THIRD_PARTY / "bench2drive" / "scenario_runner"),
}
ROUTE_SECONDS = 1.0  # game time per route (20 ticks after the 10 sensor warm-up ticks)


def skip_reason() -> str | None:
    """Why the real-evaluator tests cannot run here, or None."""
    needed = [ROUTES_XML, CARLA_PYTHONAPI, *(p for pair in FLAVOURS.values() for p in pair)]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        return f"third-party evaluator sources not found ({', '.join(missing)}): {HOW_TO_GET}"
    if importlib.util.find_spec("carla") is None:
        return "the carla client is not installed (pip install -e .[carla])"
    try:
        version = metadata.version("py_trees")
    except metadata.PackageNotFoundError:
        return "py_trees is not installed (pip install -e .[carla])"
    if version != "0.8.3":
        return f"py_trees {version} installed; scenario_runner needs 0.8.3 (pip install -e .[carla])"
    return None


def evaluator_pythonpath(flavour: str) -> str:
    lb, sr = FLAVOURS[flavour]
    return os.pathsep.join([str(DOUBLES), str(lb), str(sr), str(CARLA_PYTHONAPI)])


def agent_yaml(folder: Path, **overrides: dict) -> Path:
    """The demo agent config with an absolute checkpoint, a short warm-up and no video (speed)."""
    cfg = yaml.safe_load((REPO / "leaderboard_configs" / "demo_tiny.yaml").read_text(encoding="utf-8"))
    cfg["model"]["checkpoint"] = str(REPO / "checkpoints" / "tiny_demo")
    cfg["control"]["safety"]["warmup_ticks"] = 4
    cfg["recorder"]["video"] = False
    for section, values in overrides.items():
        cfg.setdefault(section, {}).update(values)
    path = folder / "agent.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def fake_carla_root(folder: Path) -> Path:
    """A CARLA_ROOT whose CarlaUE4.sh exits at once (the Bench2Drive evaluator launches it)."""
    root = folder / "carla_root"
    root.mkdir(parents=True, exist_ok=True)
    script = root / "CarlaUE4.sh"
    script.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    script.chmod(0o755)
    return root


def run_evaluator(
    flavour: str,
    folder: Path,
    routes_subset: str,
    *,
    agent_config: str,
    checkpoint: Path,
    save_path: Path | None = None,
    truth_log: Path | None = None,
    die_at_load: int = 0,
    resume: bool = False,
    timeout_s: float = 300.0,
) -> subprocess.CompletedProcess:
    """One real evaluator process (``python -m fake_carla.bootstrap <evaluator argv>``); output goes to a log."""
    lb, _ = FLAVOURS[flavour]
    env = dict(os.environ)
    env.update(
        PYTHONPATH=evaluator_pythonpath(flavour),
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONUNBUFFERED="1",
        FAKE_CARLA_ROUTE_S=str(ROUTE_SECONDS),
        FAKE_CARLA_DIE_AT_LOAD=str(die_at_load),
        OMP_NUM_THREADS="1",
    )
    for key in ("SAVE_PATH", "FAKE_CARLA_LOG", "AUTOMOT_RECORD_DIR", "IS_BENCH2DRIVE"):
        env.pop(key, None)
    if save_path is not None:
        env["SAVE_PATH"] = str(save_path)
    if truth_log is not None:
        env["FAKE_CARLA_LOG"] = str(truth_log)
    argv = [
        "--routes",
        str(ROUTES_XML),
        "--routes-subset",
        routes_subset,
        "--agent",
        str(AGENT),
        "--agent-config",
        agent_config,
        "--track",
        "SENSORS",
        "--checkpoint",
        str(checkpoint),
        "--debug-checkpoint",
        str(folder / "live_results.txt"),
        "--timeout",
        "60",
        "--port",
        "32000",
        "--traffic-manager-port",
        "52000",
    ]
    if resume:
        argv += ["--resume", "1"]
    cwd = folder
    if flavour == "bench2drive":
        env["CARLA_ROOT"] = str(fake_carla_root(folder))
        argv += ["--gpu-rank", "5"]
        cwd = lb.parent  # the Bench2Drive root: the fork reads leaderboard/data/weather.xml from the cwd
    log = folder / f"evaluator_{flavour}{'_resume' if resume else ''}.log"
    with log.open("w", encoding="utf-8") as fh:
        proc = subprocess.run(
            [sys.executable, "-m", "fake_carla.bootstrap", *argv],
            cwd=cwd,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            timeout=timeout_s,
        )
    proc.log = log  # type: ignore[attr-defined]
    return proc


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def log_tail(proc: subprocess.CompletedProcess, lines: int = 60) -> str:
    text = Path(proc.log).read_text(encoding="utf-8", errors="replace").splitlines()  # type: ignore[attr-defined]
    return "\n".join(line for line in text if not line.startswith("=== [Agent]"))[-6000:]
