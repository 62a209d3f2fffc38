"""Run one embedded route with a leaderboard agent, exactly through the leaderboard lifecycle, and score it.

The agent is loaded like ``leaderboard_evaluator`` does (the file's folder goes first on ``sys.path``, the module is
imported by its basename and the class is ``getattr(module, module.get_entry_point())``), then:
``AgentClass(host, port, debug)`` -> ``set_global_plan(gps, world)`` (the dense plan; the agent base class
downsamples it) -> ``setup(config)`` -> ``sensors()`` (validated once) -> per 0.05 s tick: ``input_data`` ->
``run_step(input_data, timestamp)`` -> apply the control -> step traffic and physics -> score -> ``destroy()``.
``out_dir/results.json`` is written, and ``out_dir/agent_config.yaml`` (the agent's resolved config, through
``automot.config.save_yaml``) when the agent exposes a dataclass ``config`` after ``setup``.

SIGINT / SIGTERM (``interrupt``, automot.clikit.deferred_interrupts) stop the drive between ticks: the current
tick finishes, the route is scored as "Failed - interrupted" with the completion reached, the agent is destroyed
(its video and tick log closed), results.json is written and :class:`RouteInterrupted` (exit 130) is raised. A
second signal interrupts at once (KeyboardInterrupt); the partial record is still written when that happens in
the drive loop.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from automot.agent import world_record
from automot.clikit import InterruptFlag, deferred_interrupts
from automot.config import save_yaml
from automot.errors import Interrupted, RunFailed
from automot.fsio import atomic_write_json
from automot.world.dynamics import read_control
from automot.world.geo import build_global_plan
from automot.world.provider import set_world
from automot.world.routes import RouteSpec, load_route
from automot.world.scoring import INTERRUPTED, RouteScorer, build_results, default_save_name, route_number
from automot.world.sensors import SensorConfigurationInvalid, SensorSuite
from automot.world.sim import EmbeddedWorld
from automot.world.world_log import EmbeddedSource

AGENT_CONFIG = "agent_config.yaml"  # the agent's resolved config, written next to results.json
EXPERT_AGENT = str(Path(__file__).resolve().with_name("expert_agent.py"))


class AgentCrashed(RunFailed, RuntimeError):
    """The agent raised; ``results`` holds what was written to results.json."""

    def __init__(self, message: str, results: dict[str, Any]) -> None:
        super().__init__(message)
        self.results = results


class RouteInterrupted(Interrupted):
    """SIGINT / SIGTERM stopped the route; ``results`` holds what was written to results.json, ``ticks`` how
    many ticks were driven (= lines of ticks.jsonl and video frames when the agent records them)."""

    def __init__(self, message: str, results: dict[str, Any], ticks: int, signal_name: str) -> None:
        super().__init__(message)
        self.results = results
        self.ticks = ticks
        self.signal_name = signal_name


def load_agent_class(agent_path: str | os.PathLike) -> type:
    """Import an agent file the way the leaderboard evaluator does and return its entry-point class."""
    path = Path(agent_path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"agent file not found: {path}")
    module_name = path.name.split(".")[0]
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    cached = sys.modules.get(module_name)
    if cached is not None and Path(getattr(cached, "__file__", "") or "").resolve() != path:
        del sys.modules[module_name]  # another file with the same basename was loaded before
    importlib.invalidate_caches()
    module = importlib.import_module(module_name)
    if not hasattr(module, "get_entry_point"):
        raise AttributeError(f"{path} has no get_entry_point() function")
    return getattr(module, module.get_entry_point())


def run_route(
    route: str | RouteSpec,
    agent_path: str | os.PathLike,
    agent_config: str,
    out_dir: str | os.PathLike,
    ticks: int | None = None,
    seed: int | None = None,
    progress: bool = True,
    host: str = "localhost",
    port: int = 2000,
    debug: bool = False,
    sensor_noise: bool = True,
    render_ego: bool = True,
    interrupt: InterruptFlag | None = None,
) -> dict[str, Any]:
    """Drive ``route`` (a name or a RouteSpec) with the agent and return the results dict (also written to
    ``out_dir/results.json``). ``ticks`` overrides the route's tick limit; ``seed`` its seed. ``sensor_noise``
    toggles the leaderboard's GNSS/IMU noise, ``render_ego`` whether cameras see the ego's own body.
    ``interrupt``: the caller's flag (automot.clikit.deferred_interrupts); without one, SIGINT / SIGTERM are
    deferred for the duration of the call. A set flag ends the route between ticks (RouteInterrupted)."""
    if interrupt is None:
        with deferred_interrupts("drive", "finishing the current tick and writing results.json") as flag:
            return run_route(
                route, agent_path, agent_config, out_dir, ticks, seed, progress, host, port, debug,
                sensor_noise, render_ego, interrupt=flag,
            )  # fmt: skip
    spec = route if isinstance(route, RouteSpec) else load_route(route)
    seed = spec.seed if seed is None else int(seed)
    tick_limit = int(ticks) if ticks is not None else spec.tick_limit
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    world = EmbeddedWorld(spec, seed=seed)
    # A --ticks cap replaces the route's limit and stops the route ("Stopped - tick limit"), never a timeout.
    scorer = RouteScorer(world.path, world.dt, tick_limit, limit_is_cap=ticks is not None)
    town = f"embedded/{spec.env_id}"
    icons: list[str] = []
    t0 = time.monotonic()
    entry_status, failure, error = "Finished", "", None
    agent = resolved_config = None
    stage = "Agent couldn't be set up"
    # Bench2Drive's record fields: RouteScenario_<id>_rep0, and the agent is told its save name the fork's way
    # (``CONFIG+save_name``), so what it writes under $SAVE_PATH/<save_name>/ is what the record names.
    route_id = route_number(spec.name)
    save_name = default_save_name(f"RouteScenario_{route_id}_rep0", town, spec.name)
    set_world(world)
    world_record.set_source(EmbeddedSource(world))  # the recorder's debug-only world.jsonl (never the model's)
    try:
        gps_plan, world_plan = build_global_plan(world.path.points, world.path.options, spec.lat_ref, spec.lon_ref)
        agent = load_agent_class(agent_path)(host, port, debug)
        agent.set_global_plan(gps_plan, world_plan)
        agent.setup(f"{agent_config}+{save_name}")
        resolved_config = getattr(agent, "config", None)
        _check_track(agent)
        stage = "Agent's sensors were invalid"
        sensor_specs = agent.sensors()
        suite = SensorSuite(sensor_specs, world, seed=seed, noise=sensor_noise, render_ego=render_ego)
        icons = suite.icons()
        stage = "Agent crashed"
        _drive(agent, world, suite, scorer, spec.name, tick_limit, progress, interrupt)
    except SensorConfigurationInvalid as exc:
        entry_status, failure, error = "Rejected", "Agent's sensors were invalid", exc
    except Exception as exc:  # the leaderboard records agent failures, then the run ends
        entry_status, failure, error = "Started", stage, exc
    except KeyboardInterrupt:  # a second signal: stop now, still score what was driven
        if not interrupt.requested:
            interrupt.signal_name = "SIGINT"
        scorer.interrupt()
    finally:
        if agent is not None:
            try:
                agent.destroy()
            except Exception as exc:  # a failing destroy() must not hide the route result
                error = error or exc
        set_world(None)
        world_record.set_source(None)
        world.close()
    interrupted = error is None and interrupt.requested and scorer.failure == INTERRUPTED
    if failure:
        scorer.failure = failure
    if interrupted:
        entry_status = "Started"  # the leaderboard's status of an entry that did not finish its routes
    record = scorer.record(spec.name, town, world.time, time.monotonic() - t0, route_id=route_id, save_name=save_name)
    record["meta"]["command"] = reproduce_command(spec, seed, ticks, agent_path, agent_config, out, resolved_config)
    results = build_results([record], icons, entry_status=entry_status)
    if dataclasses.is_dataclass(resolved_config) and not isinstance(resolved_config, type):
        save_yaml(resolved_config, out / AGENT_CONFIG)
    atomic_write_json(out / "results.json", results)  # whole or not at all (automot.fsio)
    if interrupted:
        raise RouteInterrupted(
            f"interrupted by {interrupt.signal_name} after {scorer.ticks} ticks: results.json records "
            f"'{record['status']}' at route completion {scorer.route_completion:.2f}% "
            f"(results in {out / 'results.json'})",
            results,
            scorer.ticks,
            interrupt.signal_name or "",
        )
    if error is not None:
        raise AgentCrashed(
            f"{failure}: {type(error).__name__}: {error} (results in {out / 'results.json'})", results
        ) from error
    return results


def reproduce_command(
    spec: RouteSpec, seed: int, ticks: int | None, agent_path: Any, agent_config: str, out: Path, resolved: Any
) -> str:
    """The ``automot drive`` line that drives this route again the same way (same route, seed, cap and agent).

    With a resolved agent config it points at ``OUT/agent_config.yaml`` (written below, ``--set`` overrides and a
    ``--checkpoint`` included); otherwise at the config string the agent was given."""
    import shlex

    from automot.world.routes import list_routes, routes_dir

    shipped = spec.name in list_routes() and (not spec.source or Path(spec.source).parent == routes_dir())
    route = spec.name if shipped else spec.source or spec.name
    parts = ["automot", "drive", "--world", "embedded", "--route", route, "--seed", str(seed)]
    if ticks is not None:
        parts += ["--ticks", str(int(ticks))]
    if Path(agent_path).resolve() == Path(EXPERT_AGENT).resolve():
        parts += ["--agent", "expert"]
    else:
        parts += ["--agent", str(Path(agent_path).resolve())]
        # drive --overwrite runs in OUT/.staged.XXXX.tmp/ and moves its files into OUT when the route ends
        final = out.parent if out.name.startswith(".staged.") else out
        config = str((final / AGENT_CONFIG).resolve()) if dataclasses.is_dataclass(resolved) else agent_config
        if config:
            parts += ["--config", config.split("+")[0]]
    return shlex.join(parts)


def _check_track(agent: Any) -> None:
    track = getattr(agent, "track", "SENSORS")
    name = getattr(track, "value", track)
    if str(name) != "SENSORS":
        raise ValueError(f"the embedded world only runs the SENSORS track (agent track: {name})")


def _drive(
    agent,
    world: EmbeddedWorld,
    suite: SensorSuite,
    scorer: RouteScorer,
    name: str,
    limit: int,
    progress: bool,
    interrupt: InterruptFlag | None = None,
):
    bar = tqdm(total=limit, desc=name, unit="tick", file=sys.stderr, disable=not progress, leave=False)
    try:
        while not scorer.done:
            if interrupt is not None and interrupt.requested:  # between ticks: the last one finished whole
                scorer.interrupt()
                break
            input_data = suite.read()
            control = read_control(agent.run_step(input_data, world.time))
            world.apply_control(control)
            world.tick()
            ego = world.ego_state()
            contacts = world.contacts()
            on_road = world.on_road(ego.x, ego.y)
            s, _, _ = world.path.project((ego.x, ego.y), scorer.s_reached - 5.0, scorer.s_reached + 30.0)
            in_lanes = world.in_route_lanes(ego.x, ego.y, world.path.heading_at(s))
            traffic = [float(v.speed) for v in world.road.vehicles if v is not world.ego]
            traffic_speed = sum(traffic) / len(traffic) if traffic else None
            scorer.step(ego.x, ego.y, ego.speed, contacts, on_road, in_lanes, traffic_speed=traffic_speed)
            bar.update(1)
            if world.frame % 20 == 0:
                bar.set_postfix(rc=f"{scorer.route_completion:.1f}", v=f"{ego.speed:.1f}")
    finally:
        bar.close()
