"""Agent-level tick benchmark (issue #14 part 2): the whole ``run_step`` in the embedded world, stage by stage.

``measure_agent_tick`` drives a route with the real agent (agent/automot_agent.py) and times, per driving tick
(warm-up ticks, which never run the model, are left out):

- ``sensor_decoding``: ``parse_input_data`` (leaderboard input dict -> SensorFrame);
- ``preprocessing``: camera history push/select and the BEV encoder's inputs (released recipe, JPEG round trip)
  when the model has one;
- ``runtime_submit``: handing the observation to the slow path (async / pipelined: a queue operation);
- ``bev_encoder``: the scene encoder inside the step, when present (``RuntimeOutput.extras["scene_encoder_ms"]``);
- ``fast_step``: ``runtime.step`` wall time minus the BEV encoder;
- ``control``: lateral / longitudinal controllers and safety rules;
- ``recorder``: ``_emit`` (ticks.jsonl line, queueing the video frame, Bench2Drive files when enabled);
- ``other``: the rest of ``run_step`` (pose estimate, route planner, target points, bookkeeping).

The stages are measured by wrapping the agent's own objects from the outside, so the agent code is the same as in
a route. ``fast_step_p99_ms`` is the p99 of the runtime's own ``fast_step_ms``; ``ratio_p99`` is the whole tick's
p99 over it.
"""

from __future__ import annotations

import functools
import tempfile
import time
from pathlib import Path
from typing import Any

from automot.runtime.telemetry import summarize

STAGES = (
    "sensor_decoding",
    "preprocessing",
    "runtime_submit",
    "bev_encoder",
    "fast_step",
    "control",
    "recorder",
    "other",
)

_AGENT_FILE = """
from automot.world.tick_bench import make_agent_class

TickBenchAgent = make_agent_class()


def get_entry_point():
    return "TickBenchAgent"
"""

_COLLECTOR: list[dict[str, float]] = []


def _timed(stage: str, current: dict[str, float], fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            current[stage] = current.get(stage, 0.0) + (time.perf_counter() - t0) * 1e3

    return wrapper


def make_agent_class() -> type:
    """AutoMoTAgent with its stages timed into the module's collector (one dict per driving tick)."""
    from automot.agent import automot_agent as agent_module

    class TickBenchAgent(agent_module.AutoMoTAgent):
        def setup(self, path_to_conf_file: str) -> None:
            super().setup(path_to_conf_file)
            self._bench_tick: dict[str, float] = {}
            cur = self._bench_tick
            self.history.push = _timed("preprocessing", cur, self.history.push)
            self.history.select = _timed("preprocessing", cur, self.history.select)
            if self.scene_builder is not None:
                self.scene_builder.update = _timed("preprocessing", cur, self.scene_builder.update)
            self.runtime.submit = _timed("runtime_submit", cur, self.runtime.submit)
            real_step = self.runtime.step

            def step(*args: Any, **kwargs: Any) -> Any:
                t0 = time.perf_counter()
                out = real_step(*args, **kwargs)
                total = (time.perf_counter() - t0) * 1e3
                bev = float(getattr(out, "extras", {}).get("scene_encoder_ms") or 0.0)
                cur["bev_encoder"] = bev
                cur["fast_step"] = total - bev
                cur["runtime_fast_step_ms"] = float(out.fast_step_ms)
                return out

            self.runtime.step = step
            self.controller.step = _timed("control", cur, self.controller.step)
            self.controller.hold = _timed("control", cur, self.controller.hold)

        def _emit(self, record: Any, context: Any) -> None:
            t0 = time.perf_counter()
            try:
                super()._emit(record, context)
            finally:
                self._bench_tick["recorder"] = (time.perf_counter() - t0) * 1e3

        def run_step(self, input_data: dict, timestamp: float) -> Any:
            cur = self._bench_tick
            cur.clear()
            real_parse = agent_module.parse_input_data
            agent_module.parse_input_data = _timed("sensor_decoding", cur, real_parse)
            t0 = time.perf_counter()
            try:
                return super().run_step(input_data, timestamp)
            finally:
                whole = (time.perf_counter() - t0) * 1e3
                agent_module.parse_input_data = real_parse
                if "runtime_fast_step_ms" in cur:  # a driving tick (warm-up ticks never call the runtime)
                    row = {name: cur.get(name, 0.0) for name in STAGES if name != "other"}
                    row["other"] = max(0.0, whole - sum(row.values()))
                    row["tick"] = whole
                    row["runtime_fast_step_ms"] = cur["runtime_fast_step_ms"]
                    _COLLECTOR.append(row)

    return TickBenchAgent


def summarize_ticks(rows: list[dict[str, float]]) -> dict[str, Any]:
    """The ``agent_tick`` fields from per-tick rows: whole-tick p50/p99, fast-step p99, ratio, stages."""

    def pct(name: str) -> dict[str, float | None]:
        s = summarize([r[name] for r in rows])
        return {"p50": _round(s["p50"]), "p99": _round(s["p99"])}

    tick = summarize([r["tick"] for r in rows])
    fast = summarize([r["runtime_fast_step_ms"] for r in rows])
    ratio = tick["p99"] / fast["p99"] if rows and fast["p99"] > 0 else None
    return {
        "ticks": len(rows),
        "p50_ms": _round(tick["p50"]),
        "p99_ms": _round(tick["p99"]),
        "fast_step_p99_ms": _round(fast["p99"]),
        "ratio_p99": None if ratio is None else round(ratio, 3),
        "stages": {name: pct(name) for name in STAGES},
    }


def _round(value: float) -> float | None:
    return None if value != value else round(float(value), 4)  # NaN (no samples) -> None


def measure_agent_tick(
    config: str,
    sets: list[str] | None = None,
    ticks: int = 60,
    route: str = "highway_lane_keep",
    recorder: bool = True,
    workdir: str | Path | None = None,
) -> dict[str, Any]:
    """Drive ``route`` for the agent's warm-up plus ``ticks`` driving ticks with agent config ``config`` (plus
    ``--set`` style ``sets``), the video recorder on or off (ticks.jsonl stays on), and return the summary
    (:func:`summarize_ticks`) with the run's video counters and the runtime mode / engine."""
    import json

    from automot.agent.config import load_agent_config
    from automot.world.cli import overridden_agent_config
    from automot.world.runner import run_route

    extra = [f"recorder.video={'true' if recorder else 'false'}", "recorder.ticks_jsonl=true"]
    extra.append("bench2drive.enabled=false")
    with tempfile.TemporaryDirectory(prefix="automot-tickbench-", dir=workdir) as tmp:
        folder = Path(tmp)
        cfg_path = overridden_agent_config(config, [*(sets or []), *extra], folder)
        cfg = load_agent_config(cfg_path)
        warmup = cfg.control.safety.warmup_ticks
        agent_file = folder / "tick_bench_agent.py"
        agent_file.write_text(_AGENT_FILE)
        out = folder / "run"
        import os

        saved = os.environ.get("AUTOMOT_RECORD_DIR")
        os.environ["AUTOMOT_RECORD_DIR"] = str(out)
        _COLLECTOR.clear()
        try:
            run_route(route, agent_file, cfg_path, out, ticks=warmup + 1 + ticks, progress=False)
        finally:
            if saved is None:
                os.environ.pop("AUTOMOT_RECORD_DIR", None)
            else:
                os.environ["AUTOMOT_RECORD_DIR"] = saved
        rows = list(_COLLECTOR)
        _COLLECTOR.clear()
        summary_file = out / "summary.jsonl"
        summary = json.loads(summary_file.read_text().splitlines()[0]) if summary_file.is_file() else {}
    result = summarize_ticks(rows[1:] if len(rows) > 1 else rows)  # the first driving tick waits for a snapshot
    stats = summary.get("runtime_stats") or {}
    result.update(
        {
            "recorder": recorder,
            "video_frames": summary.get("video_frames"),
            "video_frames_dropped": summary.get("video_frames_dropped"),
            "mode": stats.get("mode", cfg.runtime.mode),
            "engine": stats.get("engine", cfg.runtime.engine),
            "model": cfg.model.checkpoint or cfg.model.preset,
            "image_size": list(cfg.image_size) if cfg.image_size else None,
        }
    )
    return result
