"""Running the real CARLA leaderboard evaluator: flavour detection, up-front checks and the command line.

Two flavours are supported, used as users install them (never copied into this project):

* ``leaderboard-2.0``: carla-simulator/leaderboard branch leaderboard-2.0 with scenario_runner leaderboard-2.0;
  connects to a CARLA server that is already running on ``--port``.
* ``bench2drive``: the Bench2Drive 0.0.4 fork (Bench2Drive/leaderboard + Bench2Drive/scenario_runner); launches
  its own ``$CARLA_ROOT/CarlaUE4.sh`` on the first free port >= ``--port`` (``-graphicsadapter=--gpu-rank``),
  reads ``leaderboard/data/weather.xml`` relative to the working directory (so it must run from the
  Bench2Drive root), and appends ``+<save_name>`` to ``--agent-config`` on every route.

Known upstream pitfall checked before anything touches a simulator: both flavours' ``RouteParser`` call
``Element.getchildren()``, removed in Python 3.9, so no route file parses on the Python >= 3.10 this project
needs. We do not patch their code at run time; :func:`check_route_parser` fails with one line naming the
one-line fix (what leaderboard master did: ``list(scenario)``), see :data:`GETCHILDREN_FIX`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from automot.errors import EnvironmentProblem, UsageError

LEADERBOARD_2 = "leaderboard-2.0"
BENCH2DRIVE = "bench2drive"
GETCHILDREN_RE = re.compile(r"\b(\w+)\.getchildren\(\)")
GETCHILDREN_FIX = "sed -i 's/scenario\\.getchildren()/list(scenario)/' {path}"


@dataclass(frozen=True)
class EvaluatorInstall:
    """Where the evaluator lives and which flavour it is."""

    leaderboard_root: Path  # the folder holding the ``leaderboard`` package (LEADERBOARD_ROOT)
    scenario_runner_root: Path | None  # the folder holding ``srunner`` (SCENARIO_RUNNER_ROOT)
    flavour: str

    @property
    def evaluator(self) -> Path:
        return self.leaderboard_root / "leaderboard" / "leaderboard_evaluator.py"

    @property
    def route_parser(self) -> Path:
        return self.leaderboard_root / "leaderboard" / "utils" / "route_parser.py"

    @property
    def workdir(self) -> Path:
        """The folder the evaluator must run from: the Bench2Drive root (for leaderboard/data/weather.xml), else
        the leaderboard root."""
        if self.flavour == BENCH2DRIVE:
            return (
                self.leaderboard_root.parent if self.leaderboard_root.name == "leaderboard" else self.leaderboard_root
            )
        return self.leaderboard_root


def detect_flavour(leaderboard_root: str | os.PathLike) -> str:
    """``bench2drive`` when the evaluator is the Bench2Drive fork, else ``leaderboard-2.0``."""
    source = (Path(leaderboard_root) / "leaderboard" / "leaderboard_evaluator.py").read_text(encoding="utf-8")
    fork_marks = ("--gpu-rank", "CarlaUE4.sh", "get_weather_id")
    return BENCH2DRIVE if any(mark in source for mark in fork_marks) else LEADERBOARD_2


def _package_root(name: str) -> str | None:
    """The sys.path folder holding package ``name`` (e.g. put there through PYTHONPATH), or None."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return str(Path(list(spec.submodule_search_locations)[0]).parent)


def locate(
    leaderboard_root: str | os.PathLike | None = None, scenario_runner_root: str | os.PathLike | None = None
) -> EvaluatorInstall:
    """Find the evaluator from arguments, LEADERBOARD_ROOT / SCENARIO_RUNNER_ROOT, or the ``leaderboard`` /
    ``srunner`` packages importable here (PYTHONPATH); raises EnvironmentProblem."""
    lb = leaderboard_root or os.environ.get("LEADERBOARD_ROOT") or _package_root("leaderboard")
    if not lb:
        raise EnvironmentProblem(
            "no leaderboard evaluator found: set LEADERBOARD_ROOT to the folder holding the leaderboard package "
            "(a leaderboard-2.0 checkout, or Bench2Drive/leaderboard) and SCENARIO_RUNNER_ROOT to the scenario "
            "runner (export PYTHONPATH=$LEADERBOARD_ROOT:$SCENARIO_RUNNER_ROOT:$PYTHONPATH also works), "
            "see leaderboard_configs/BENCH2DRIVE.md"
        )
    lb_path = Path(lb).expanduser().resolve()
    if not (lb_path / "leaderboard" / "leaderboard_evaluator.py").is_file():
        raise EnvironmentProblem(f"LEADERBOARD_ROOT={lb_path}: no leaderboard/leaderboard_evaluator.py there")
    sr = scenario_runner_root or os.environ.get("SCENARIO_RUNNER_ROOT") or _package_root("srunner")
    sr_path = Path(sr).expanduser().resolve() if sr else None
    if sr_path is not None and not (sr_path / "srunner").is_dir():
        raise EnvironmentProblem(f"SCENARIO_RUNNER_ROOT={sr_path}: no srunner package there")
    return EvaluatorInstall(lb_path, sr_path, detect_flavour(lb_path))


def route_parser_problem(install: EvaluatorInstall, version: tuple[int, int] | None = None) -> str | None:
    """One line describing the getchildren() breakage and its fix, or None when route files will parse."""
    version = version or sys.version_info[:2]
    if version < (3, 9):
        return None
    path = install.route_parser
    if not path.is_file() or not GETCHILDREN_RE.search(path.read_text(encoding="utf-8")):
        return None
    return (
        f"{path} calls Element.getchildren(), removed in Python 3.9, so no route file parses on Python "
        f"{version[0]}.{version[1]} (known bug of leaderboard-2.0 and Bench2Drive; leaderboard master uses list()). "
        f"Fix it once with: {GETCHILDREN_FIX.format(path=path)}"
    )


def check_route_parser(install: EvaluatorInstall) -> None:
    """Raise EnvironmentProblem (one line, with the fix) when the evaluator's RouteParser cannot run here."""
    problem = route_parser_problem(install)
    if problem:
        raise EnvironmentProblem(problem)


def patched_route_parser_source(source: str) -> str:
    """The route parser source with the documented fix applied (``x.getchildren()`` -> ``list(x)``)."""
    return GETCHILDREN_RE.sub(r"list(\1)", source)


@dataclass
class EvaluatorRun:
    """What ``automot drive --world carla`` passes through to the evaluator (None: the evaluator's default)."""

    routes: str
    agent: str
    agent_config: str
    checkpoint: str
    debug_checkpoint: str
    host: str = "localhost"
    port: int = 2000
    tm_port: int = 8000
    track: str = "SENSORS"
    tm_seed: int | None = None
    routes_subset: str | None = None
    repetitions: int | None = None
    resume: bool = False
    timeout: float | None = None
    record: str | None = None
    debug: int | None = None
    gpu_rank: int | None = None
    extra: list[str] = field(default_factory=list)


def check_run(install: EvaluatorInstall, run: EvaluatorRun, overwrite: bool = False) -> None:
    """Everything that can be checked before a simulator is touched; raises EnvironmentProblem / UsageError.

    * the route parser works on this Python (:func:`check_route_parser`);
    * Bench2Drive fork: ``CARLA_ROOT`` holds ``CarlaUE4.sh`` (the fork starts the server itself) and
      ``leaderboard/data/weather.xml`` exists under the folder it will run from;
    * the checkpoint: without ``--resume`` the evaluator truncates it first, so an existing non-empty results file
      is only replaced when ``overwrite`` is set.
    """
    check_route_parser(install)
    if install.flavour == BENCH2DRIVE:
        carla_root = os.environ.get("CARLA_ROOT")
        if not carla_root:
            raise EnvironmentProblem(
                "CARLA_ROOT is not set: the Bench2Drive evaluator starts $CARLA_ROOT/CarlaUE4.sh itself "
                "(export CARLA_ROOT=/path/to/CARLA_0.9.15)"
            )
        if not (Path(carla_root) / "CarlaUE4.sh").is_file():
            raise EnvironmentProblem(
                f"CARLA_ROOT={carla_root} has no CarlaUE4.sh (the Bench2Drive evaluator starts it)"
            )
        weather = install.workdir / "leaderboard" / "data" / "weather.xml"
        if not weather.is_file():
            raise EnvironmentProblem(
                f"{weather} not found: the Bench2Drive evaluator reads leaderboard/data/weather.xml from the "
                "Bench2Drive root it runs in (set LEADERBOARD_ROOT to Bench2Drive/leaderboard)"
            )
    if not Path(run.routes).is_file():
        raise UsageError(f"--routes {run.routes}: file not found")
    checkpoint = Path(run.checkpoint)
    if checkpoint.is_file() and checkpoint.stat().st_size > 0 and not run.resume and not overwrite:
        raise UsageError(
            f"{checkpoint} already holds results and the evaluator would truncate it: pass --resume to continue "
            "that run, --overwrite to start over, or another --results-file / --out"
        )
    if run.resume and checkpoint.is_file():
        try:
            json.loads(checkpoint.read_text(encoding="utf-8") or "{}")
        except ValueError as exc:
            raise UsageError(f"--resume: {checkpoint} is not valid JSON ({exc})") from exc


def build_command(install: EvaluatorInstall, run: EvaluatorRun, python: str = sys.executable) -> list[str]:
    """The evaluator command line (``python $LEADERBOARD_ROOT/leaderboard/leaderboard_evaluator.py ...``, as the
    official scripts run it). ``--resume`` is only passed when resuming: it is ``type=bool`` upstream, so any
    non-empty value (even ``False``) means True. ``--gpu-rank`` exists only in the Bench2Drive fork."""
    if run.gpu_rank is not None and install.flavour != BENCH2DRIVE:
        raise UsageError("--gpu-rank is an option of the Bench2Drive evaluator only (it picks the GPU CARLA runs on)")
    cmd = [python, str(install.evaluator)]
    cmd += ["--routes", run.routes, "--agent", run.agent, "--agent-config", run.agent_config, "--track", run.track]
    cmd += ["--host", run.host, "--port", str(run.port), "--traffic-manager-port", str(run.tm_port)]
    cmd += ["--checkpoint", run.checkpoint, "--debug-checkpoint", run.debug_checkpoint]
    optional = (
        ("--traffic-manager-seed", run.tm_seed),
        ("--routes-subset", run.routes_subset),
        ("--repetitions", run.repetitions),
        ("--timeout", run.timeout),
        ("--record", run.record),
        ("--debug", run.debug),
    )
    for flag, value in optional:
        if value is not None and value != "":
            cmd += [flag, str(value)]
    if run.resume:
        cmd += ["--resume", "1"]
    if install.flavour == BENCH2DRIVE:
        cmd += ["--gpu-rank", str(run.gpu_rank or 0)]
    return cmd + list(run.extra)


def evaluator_env(install: EvaluatorInstall, carla_pythonapi: str | os.PathLike | None = None) -> dict[str, str]:
    """Environment for the evaluator process: PYTHONPATH with the leaderboard, scenario runner and (when given)
    CARLA's PythonAPI ``agents`` folder, plus LEADERBOARD_ROOT / SCENARIO_RUNNER_ROOT."""
    env = dict(os.environ)
    paths = [str(install.leaderboard_root)]
    if install.scenario_runner_root is not None:
        paths.append(str(install.scenario_runner_root))
        env["SCENARIO_RUNNER_ROOT"] = str(install.scenario_runner_root)
    if carla_pythonapi:
        paths.append(str(carla_pythonapi))
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["LEADERBOARD_ROOT"] = str(install.leaderboard_root)
    return env
