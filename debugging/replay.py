"""``automot replay RUN_DIR --out DIR2``: the model re-run open loop on a run's recorded inputs.

The inputs come from ``RUN_DIR/inputs/`` (``automot drive --record-inputs``, format in agent/input_recorder.py).
A runtime is built from the run's own agent config (``manifest.json``), or with another checkpoint / agent config,
and every recorded ``submit`` and ``step`` is fed to it in the recorded order with the recorded frame numbers and sim
times. With the run's own checkpoint and a deterministic mode (``sync``) the outputs equal the recorded ones;
``DIR2/replay.json`` says by how much they differ. With another model it is a comparison: per-tick deltas, decision
changes, the controls both outputs give through the same controllers (fed the recorded speed and position), and
``DIR2/compare.mp4`` (recorded | replayed path drawn on the same frames).

``--tick-range A:B`` starts at the first recorded tick >= A with a fresh runtime (its first snapshot is computed there,
so the first ticks of a window that starts mid-run may differ from the run until the refresh cadence lines up).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import typing
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from automot import clikit
from automot.debugging.runfiles import INPUTS_DIR, RunFolderError, load_run
from automot.fsio import atomic_write_json
from automot.outputs import check_device

REPLAY_JSON = "replay.json"
COMPARE_VIDEO = "compare.mp4"
STEER_DIFF = 0.05  # |steer| difference that counts as controlling differently
PEDAL_DIFF = 0.2  # |throttle| difference that counts as controlling differently


@dataclass
class Submit:
    tick: int
    sim_time: float
    speed: float
    target_points: np.ndarray
    images: list[np.ndarray]


@dataclass
class Step:
    tick: int
    sim_time: float
    speed: float
    target_points: np.ndarray
    scene: np.ndarray | None
    scene_inputs: dict[str, np.ndarray] | None
    out: dict[str, Any] | None  # recorded output: path, waypoints, decision, safe_stop, version, age_ticks


class InputLog:
    """A run's recorded inputs: the manifest and, lazily, its events in tick order."""

    def __init__(self, folder: str | Path) -> None:
        from automot.agent.input_recorder import FORMAT, FORMAT_VERSION, MANIFEST

        self.dir = Path(folder)
        path = self.dir / MANIFEST
        if not path.is_file():
            raise RunFolderError(f"{self.dir}: no {MANIFEST} (record the run with `automot drive --record-inputs`)")
        try:
            self.manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # ValueError: bad JSON, or bytes that are not UTF-8
            raise RunFolderError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None
        chunks = self.manifest.get("chunks", []) if isinstance(self.manifest, dict) else None
        if not isinstance(chunks, list) or not all(
            isinstance(c, dict) and isinstance(c.get("file"), str) and isinstance(c.get("first_tick"), int)
            and isinstance(c.get("last_tick"), int)
            for c in chunks
        ):  # fmt: skip
            raise RunFolderError(f"{path}: not an input-recording manifest (format, chunks)")
        if self.manifest.get("format") != FORMAT or int(self.manifest.get("format_version", -1)) > FORMAT_VERSION:
            raise RunFolderError(
                f"{path}: format {self.manifest.get('format')!r} version {self.manifest.get('format_version')} "
                f"(this automot reads {FORMAT!r} up to version {FORMAT_VERSION})"
            )
        keep = int((self.manifest.get("history") or {}).get("buffer_len") or 40) + 8
        self._keep = max(keep, 8)

    def events(self, first: int | None = None, stop: int | None = None) -> Iterator[Submit | Step]:
        """Submits and steps with first <= tick < stop, in recorded order (a tick's submit before its step)."""
        from automot.agent.input_recorder import unpack

        frames: OrderedDict[int, np.ndarray] = OrderedDict()
        for chunk in self.manifest.get("chunks") or []:
            if stop is not None and chunk["first_tick"] >= stop:
                break
            data = _load_chunk(self.dir, chunk)  # the whole chunk: a truncated file is refused naming it
            for key in data:
                if key.startswith("frame_"):
                    frames[int(key[6:])] = data[key]
            while len(frames) > self._keep * 4:
                frames.popitem(last=False)
            if first is not None and chunk["last_tick"] < first:
                continue
            rows: list[tuple[int, int, Submit | Step]] = []
            if "sub_tick" in data:
                for i, tick in enumerate(data["sub_tick"].tolist()):
                    ids = [f for f in data["sub_frames"][i].tolist() if f >= 0]
                    sub = Submit(
                        tick, float(data["sub_time"][i]), float(data["sub_speed"][i]), data["sub_tp"][i],
                        [frames[f] for f in ids],
                    )  # fmt: skip
                    rows.append((tick, 0, sub))
            if "st_tick" in data:
                names = sorted(k[6:] for k in data if k.startswith("st_in_") and not k.endswith("__dtype"))
                inputs = {n: unpack(data, f"st_in_{n}") for n in names}
                scene = data["st_scene"] if "st_scene" in data else None
                has_out = "out_path" in data
                for i, tick in enumerate(data["st_tick"].tolist()):
                    out = None
                    if has_out:
                        out = {
                            "path": data["out_path"][i],
                            "waypoints": data["out_waypoints"][i],
                            "decision": str(data["out_decision"][i]),
                            "safe_stop": bool(data["out_safe_stop"][i]),
                            "version": int(data["out_version"][i]),
                            "age_ticks": int(data["out_age_ticks"][i]),
                        }
                    step = Step(
                        tick, float(data["st_time"][i]), float(data["st_speed"][i]), data["st_tp"][i],
                        None if scene is None else scene[i],
                        {n: v[i] for n, v in inputs.items()} or None, out,
                    )  # fmt: skip
                    rows.append((tick, 1, step))
            rows.sort(key=lambda r: (r[0], r[1]))
            for tick, _, event in rows:
                if (first is None or tick >= first) and (stop is None or tick < stop):
                    yield event


def _load_chunk(folder: Path, chunk: Any) -> dict[str, np.ndarray]:
    """Every array of one recorded chunk; RunFolderError naming the file when it is missing or cut short."""
    path = folder / chunk["file"]
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except Exception as exc:  # zipfile.BadZipFile, EOFError, OSError, ValueError: the file is not a whole npz
        raise RunFolderError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None


def parse_ticks(value: str | None) -> tuple[int | None, int | None]:
    if not value:
        return None, None
    a, sep, b = value.partition(":")
    try:
        first = int(a) if a.strip() else None
        stop = int(b) if b.strip() else None
    except ValueError:
        message = f"--tick-range {value!r}: expected A:B with integers (either may be empty)"
        raise clikit.UsageError(message) from None
    clikit.require(sep == ":", f"--tick-range {value!r}: expected A:B")
    clikit.require(first is None or stop is None or first < stop, f"--tick-range {value!r}: A must be < B")
    return first, stop


def replay_config(manifest: dict, checkpoint: str | None, config: str | None, mode: str | None, device: str) -> Any:
    """The agent config the replay runtime is built from: the run's, with the requested model / mode."""
    from automot.agent.config import RuntimeConfig, agent_config_from_dict, load_agent_config

    cfg = agent_config_from_dict(manifest.get("config") or {}, source="inputs/manifest.json")
    if config:
        other = load_agent_config(clikit.require_file(config, "--config"))
        cfg.model, cfg.runtime = other.model, other.runtime
    if checkpoint:
        clikit.require(Path(checkpoint).exists(), f"--checkpoint {checkpoint}: not found")
        cfg.model.checkpoint = str(Path(checkpoint).resolve())
    if mode:
        allowed = typing.get_args(typing.get_type_hints(RuntimeConfig)["mode"])
        clikit.require(mode in allowed, f"--mode {mode!r}: expected one of {', '.join(allowed)}")
        cfg.runtime.mode = mode
    cfg.model.device = device
    cfg.model.cache = False
    cfg.record_inputs = False
    return cfg


class _Controls:
    """Two copies of the run's controllers: one fed the recorded outputs, one the replayed ones."""

    def __init__(self, control_cfg: Any) -> None:
        from automot.agent.control import DrivingController

        self.recorded = DrivingController(copy.deepcopy(control_cfg))
        self.replayed = DrivingController(copy.deepcopy(control_cfg))

    @staticmethod
    def _one(ctrl: Any, tick: int, out: dict[str, Any], speed: float, pos: np.ndarray | None) -> dict[str, Any]:
        if out["safe_stop"]:
            cmd = ctrl.hold("safe_stop")
        else:
            cmd = ctrl.step(tick, np.asarray(out["path"]), np.asarray(out["waypoints"]), speed, pos)
        return {"steer": cmd.steer, "throttle": cmd.throttle, "brake": float(cmd.brake), "mode": cmd.mode}

    def step(self, tick: int, rec: dict, rep: dict, speed: float, pos: np.ndarray | None) -> tuple[dict, dict]:
        return self._one(self.recorded, tick, rec, speed, pos), self._one(self.replayed, tick, rep, speed, pos)


def _check_belongs(rec: dict, logged_path: Any, tick: int, run_dir: Any) -> None:
    """The recorded inputs must be this run's: their output at ``tick`` is the path ticks.jsonl logged (to 4
    decimals). An --overwrite drive without --record-inputs leaves the earlier run's inputs/ behind."""
    if logged_path is None:
        return
    diff = float(np.max(np.abs(np.asarray(rec["path"], np.float64) - np.asarray(logged_path, np.float64))))
    if not diff <= 1e-3:
        raise RunFolderError(
            f"{run_dir}: inputs/ do not belong to this run (tick {tick}: recorded path differs from ticks.jsonl by "
            f"{diff:.3g} m); drive again with --record-inputs"
        )


def _changed_files(recorded: dict, replayed: dict) -> list[str]:
    """Names of the model files whose sha256 differs between the recording and now (added and removed too)."""
    a, b = recorded.get("files") or {}, replayed.get("files") or {}
    return sorted(name for name in set(a) | set(b) if a.get(name) != b.get(name))


# Fields that say how the replay runs, not what it computes: the device, the model cache, the checkpoint's path
# (its files are compared by hash), the recorders, and the runtime mode (--mode: `sync` reproduces the
# pipelined cadence the demo configs drive with; replay.json reports the mode used).
_REPLAY_ONLY = ("model.device", "model.cache", "model.checkpoint", "runtime.mode", "record_inputs", "recorder")


def _config_differences(recorded: dict, cfg: Any) -> list[str]:
    """Dotted keys whose value in the replay's effective agent config differs from the recorded one."""
    from automot.agent.config import config_to_dict

    def flat(d: Any, prefix: str = "") -> dict[str, Any]:
        if not isinstance(d, dict):
            return {prefix.rstrip("."): d}
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}."))
        return out

    a, b = flat(recorded), flat(json.loads(json.dumps(config_to_dict(cfg), default=str)))
    skip = tuple(k + "." for k in _REPLAY_ONLY)
    keys = {k for k in set(a) | set(b) if k not in _REPLAY_ONLY and not k.startswith(skip)}
    return sorted(k for k in keys if a.get(k) != b.get(k))


def _check_input_shapes(manifest: dict, cfg: Any, runtime: Any, other: str | None) -> None:
    """UsageError when the replay's model takes other inputs than the run recorded (frames per prompt, BEV
    scene inputs): feeding them would run, and mean nothing."""
    recorded_scene = bool(manifest.get("scene_inputs"))
    wanted_scene = bool(getattr(runtime, "needs_scene_inputs", False))
    frames = len((manifest.get("history") or {}).get("offsets") or [])
    # the model the runtime was built with (its config), else what the agent config names
    model_frames = getattr(getattr(getattr(getattr(runtime, "model", None), "config", None), "prompt", None),
                           "num_frames", None)  # fmt: skip
    ckpt = cfg.model.checkpoint
    try:
        from automot.model.config import AutoMoTConfig, get_config

        if not isinstance(model_frames, int) and ckpt and (Path(ckpt) / "config.yaml").is_file():
            model_frames = AutoMoTConfig.load_yaml(Path(ckpt) / "config.yaml").prompt.num_frames
        elif not isinstance(model_frames, int) and not ckpt:
            model_frames = get_config(cfg.model.preset).prompt.num_frames
    except Exception:  # a layout without our config.yaml (the released folder): the runtime decides
        model_frames = None
    problems = []
    if wanted_scene != recorded_scene:
        problems.append(
            f"BEV scene inputs {'wanted' if wanted_scene else 'not taken'}, "
            f"{'recorded' if recorded_scene else 'not recorded'}"
        )
    if model_frames is not None and frames and model_frames != frames:
        problems.append(f"{model_frames} frames per prompt, the run recorded {frames}")
    if problems:
        what = f"{other}: " if other else ""
        raise clikit.UsageError(
            f"{what}the model takes other inputs than the run recorded ({'; '.join(problems)}); replay needs a "
            "model with the run's input shapes"
        )


def _differs(a: dict, b: dict) -> bool:
    return (
        abs(a["steer"] - b["steer"]) > STEER_DIFF
        or abs(a["throttle"] - b["throttle"]) > PEDAL_DIFF
        or (a["brake"] > 0) != (b["brake"] > 0)
    )


def run_replay(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    checkpoint: str | None = None,
    config: str | None = None,
    ticks: tuple[int | None, int | None] = (None, None),
    mode: str | None = None,
    device: str = "cpu",
    video: bool = True,
    runtime_factory: Any = None,
) -> dict[str, Any]:
    """Replay and write ``out_dir/replay.json`` (returned); see the module docstring."""
    from automot.agent.input_recorder import checkpoint_identity
    from automot.agent.runtime_factory import build_runtime
    from automot.runtime.types import DrivingObservation, DrivingState

    run = load_run(run_dir)
    if run.inputs_dir is None:
        raise RunFolderError(
            f"{run_dir}: no {INPUTS_DIR}/ folder (record the run with `automot drive --record-inputs`)"
        )
    log = InputLog(run.inputs_dir)
    manifest = log.manifest
    cfg = replay_config(manifest, checkpoint, config, mode, device)
    recorded_id = manifest.get("checkpoint") or {}
    replay_id = checkpoint_identity(cfg.model.checkpoint)
    # A reproduction needs the same model files (by hash, not by path: weights changed in place differ) and the same
    # effective config; anything else is a comparison, whatever was passed.
    changed_files = _changed_files(recorded_id, replay_id)
    config_differences = _config_differences(manifest.get("config") or {}, cfg)
    same_model = not changed_files and recorded_id.get("sha256") == replay_id["sha256"]
    comparison = not same_model or bool(config_differences)
    positions = {
        int(t["frame"]): np.array([t["ego"]["x"], t["ego"]["y"]])
        for t in run.ticks
        if (t.get("ego") or {}).get("x") is not None
    }
    logged = {int(t["frame"]): t.get("path") for t in run.ticks}
    checked = False
    runtime = (runtime_factory or build_runtime)(cfg)
    try:
        _check_input_shapes(manifest, cfg, runtime, checkpoint or config)
    except BaseException:
        runtime.close()
        raise
    controls = _Controls(cfg.control)
    per_tick: list[dict[str, Any]] = []
    frames_for_video: list[tuple] = []
    logged_ticks = {int(t["frame"]): t for t in run.ticks if t.get("frame") is not None}
    last_image: np.ndarray | None = None
    max_path = max_wp = 0.0
    decision_changes = safe_stop_changes = control_changes = 0
    try:
        for event in log.events(*ticks):
            if isinstance(event, Submit):
                obs = DrivingObservation(event.images, event.target_points, event.speed)
                runtime.submit(obs, event.sim_time, event.tick)
                last_image = event.images[-1] if event.images else last_image
                continue
            state = DrivingState(event.target_points, event.speed, scene=event.scene, scene_inputs=event.scene_inputs)
            output = runtime.step(state, event.sim_time, event.tick)
            rep = {
                "path": np.asarray(output.path, np.float64),
                "waypoints": np.asarray(output.waypoints, np.float64),
                "decision": str(output.decision_text),
                "safe_stop": bool(output.safe_stop),
            }
            row: dict[str, Any] = {"tick": event.tick, "sim_time": event.sim_time, "decision": rep["decision"]}
            rec = event.out
            if rec is not None and not checked:
                _check_belongs(rec, logged.get(event.tick), event.tick, run_dir)
                checked = True
            if rec is not None:
                dp = float(np.max(np.abs(np.asarray(rec["path"], np.float64) - rep["path"])))
                dw = float(np.max(np.abs(np.asarray(rec["waypoints"], np.float64) - rep["waypoints"])))
                max_path, max_wp = max(max_path, dp), max(max_wp, dw)
                changed = rec["decision"] != rep["decision"]
                decision_changes += changed
                safe_stop_changes += rec["safe_stop"] != rep["safe_stop"]
                row.update(
                    path_diff=dp,
                    waypoint_diff=dw,
                    recorded_decision=rec["decision"],
                    decision_changed=changed,
                    recorded_safe_stop=rec["safe_stop"],
                    safe_stop=rep["safe_stop"],
                )
                if comparison:
                    c_rec, c_rep = controls.step(event.tick, rec, rep, event.speed, positions.get(event.tick))
                    differs = _differs(c_rec, c_rep)
                    control_changes += differs
                    row.update(recorded_control=c_rec, replayed_control=c_rep, controls_differ=differs)
                    if video and last_image is not None:
                        frames_for_video.append((event.tick, last_image, rec, rep, logged_ticks.get(event.tick), c_rep))
            per_tick.append(row)
        stats = dict(runtime.stats())
    finally:
        runtime.close()
    out = Path(out_dir)
    report: dict[str, Any] = {
        "run": str(Path(run_dir).resolve()),
        "ticks": len(per_tick),
        "tick_range": [per_tick[0]["tick"], per_tick[-1]["tick"]] if per_tick else None,
        "mode": cfg.runtime.mode,
        "device": device,
        "recorded_checkpoint": manifest.get("checkpoint"),
        "replayed_checkpoint": replay_id,
        "same_model": same_model,
        "changed_model_files": changed_files,
        "config_differences": config_differences,
        "comparison": comparison,
        "max_abs_path_diff": max_path,
        "max_abs_waypoint_diff": max_wp,
        "decision_changes": decision_changes,
        "safe_stop_changes": safe_stop_changes,
        "runtime_stats": {k: stats.get(k) for k in ("mode", "engine", "refreshes", "steps") if k in stats},
    }
    if comparison:
        report["control_changes"] = control_changes
        report["control_thresholds"] = {"steer": STEER_DIFF, "throttle": PEDAL_DIFF, "brake": "on/off"}
        report["controls_differ_ticks"] = [r["tick"] for r in per_tick if r.get("controls_differ")]
    report["per_tick"] = per_tick
    if frames_for_video:
        _write_video(out / COMPARE_VIDEO, frames_for_video, cfg)
        report["video"] = COMPARE_VIDEO
    atomic_write_json(out / REPLAY_JSON, _finite(report))
    return report


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _write_video(path: Path, frames: list[tuple], cfg: Any) -> None:
    """recorded (left) | replayed (right), each header with the tick's real time, speed and control."""
    from automot.debugging.compare_video import write_compare_video

    write_compare_video(path, frames, cfg)


def replay_main(args: argparse.Namespace) -> int:
    ticks = parse_ticks(args.tick_range)
    check_device(args.device)  # no CUDA: exit 3 before anything is read or written
    inputs = [p for p in (args.run_dir, args.checkpoint, args.config) if p]
    out = clikit.prepare_out(args.out, args.overwrite, source=inputs)  # a refusal below leaves no folder (cli.main)
    report = run_replay(
        args.run_dir,
        out,
        checkpoint=args.checkpoint,
        config=args.config,
        ticks=ticks,
        mode=args.mode,
        device=args.device,
        video=not args.no_video,
    )
    kind = "comparison" if report["comparison"] else "reproduction"
    print(
        f"replay ({kind}, mode {report['mode']}): {report['ticks']} ticks, max |path diff| "
        f"{report['max_abs_path_diff']:.3g} m, max |waypoint diff| {report['max_abs_waypoint_diff']:.3g} m, "
        f"{report['decision_changes']} decision change(s)"
        + (f", controls differ on {report['control_changes']} tick(s)" if report["comparison"] else "")
    )
    print(f"  {out / REPLAY_JSON}")
    return 0
