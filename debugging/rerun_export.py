"""``automot view RUN_DIR [--save run.rrd | --spawn]``: a run exported to a Rerun recording (the ``viz`` extra).

A thin adapter over the run files (debugging/runfiles.py): nothing here knows the agent or the model, and another
viewer can be added beside it from the same reader. Two timelines, ``tick`` (sequence) and ``sim_time``
(duration). Entities:

* ``camera/image`` -- the primary camera frame the model got (from ``inputs/``, ``drive --record-inputs``) with
  ``camera/image/path`` (line), ``camera/image/waypoints`` and ``camera/image/targets`` (points) projected with the
  rig's camera model; without recorded inputs, ``camera/video`` holds the recorder's annotated video frames;
* ``bev/...`` -- a bird's-eye view centred on the ego, forward up, metres (display u = right, v = -forward):
  ``bev/ego`` (box), ``bev/route`` (the target points the agent was given, i.e. the route as it saw it, within
  ``BEV_RANGE_M``), ``bev/driven`` (the trajectory so far), ``bev/path``, ``bev/waypoints``, ``bev/targets``;
  ``map/driven`` (static) and ``map/ego`` in world metres; with a ``world.jsonl`` the other actors, lanes and the
  route too (``bev/actors``, ``bev/actor_velocity``, ``bev/lanes``, ``bev/route_line``, ``map/actors``,
  ``world/actors`` Boxes3D: debugging/rerun_world.py);
* ``scalars/<name>`` -- speed, target_speed (implied by the first two waypoints, 0.5 s apart), steer, throttle,
  brake, fast_step_ms, refresh_ms (of the snapshot used), snapshot_age_ticks, snapshot_age_s;
* ``events`` -- TextLog: decision changes, reasoning text, safe stops, refresh overruns, input flags, errors and the
  infractions at the tick inspect places them.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np

from automot.debugging.runfiles import Run, load_run
from automot.errors import EnvironmentProblem, UsageError

APP_ID = "automot"
EGO_LENGTH, EGO_WIDTH = 4.9, 2.1
WAYPOINT_DT = 0.5
BEV_RANGE_M = 60.0


def _import_rerun() -> Any:
    try:
        import rerun as rr
    except ImportError as exc:
        raise EnvironmentProblem(f"automot view needs rerun-sdk: pip install -e '.[viz]' ({exc})") from exc
    return rr


def _xy(points: Any) -> np.ndarray | None:
    if points is None:
        return None
    arr = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return arr if np.all(np.isfinite(arr)) else None


def _ego_to_world(points: np.ndarray, ego: dict) -> np.ndarray:
    from automot.geometry import ego_to_world

    return ego_to_world(points, np.array([ego["x"], ego["y"]]), ego["yaw"])


def _bev(points_ego: np.ndarray) -> np.ndarray:
    """Ego frame (x forward, y right) -> BEV display (u right, v down): forward is up."""
    pts = np.asarray(points_ego, dtype=np.float64).reshape(-1, 2)
    return np.stack([pts[:, 1], -pts[:, 0]], axis=1)


EGO_BOX = np.array(
    [[EGO_LENGTH / 2, -EGO_WIDTH / 2], [EGO_LENGTH / 2, EGO_WIDTH / 2], [-EGO_LENGTH / 2, EGO_WIDTH / 2],
     [-EGO_LENGTH / 2, -EGO_WIDTH / 2], [EGO_LENGTH / 2, -EGO_WIDTH / 2]]
)  # fmt: skip


def blueprint() -> Any:
    """The viewer layout: camera and BEV on top, controls / timing plots and the event log below."""
    import rerun.blueprint as rrb

    return rrb.Blueprint(
        rrb.Vertical(
            rrb.Horizontal(
                rrb.Spatial2DView(origin="camera", name="camera"),
                rrb.Spatial2DView(
                    origin="bev",
                    name="bird's-eye (ego, forward up, m)",
                    visual_bounds=rrb.VisualBounds2D(x_range=[-25.0, 25.0], y_range=[-BEV_RANGE_M, 15.0]),
                ),
                rrb.Spatial2DView(origin="map", name="map (world m)"),
                column_shares=[3, 2, 1],
            ),
            rrb.Horizontal(
                rrb.TimeSeriesView(
                    origin="scalars",
                    contents=[
                        "scalars/speed",
                        "scalars/target_speed",
                        "scalars/steer",
                        "scalars/throttle",
                        "scalars/brake",
                    ],
                    name="speed (m/s) and control",
                ),  # fmt: skip
                rrb.TimeSeriesView(
                    origin="scalars",
                    contents=[
                        "scalars/fast_step_ms",
                        "scalars/refresh_ms",
                        "scalars/snapshot_age_ticks",
                        "scalars/snapshot_age_s",
                    ],
                    name="fast step and refresh ms, snapshot age",
                ),
                rrb.TextLogView(origin="events", name="events"),
            ),
            row_shares=[3, 2],
        ),
        collapse_panels=True,
    )


def _camera(run: Run) -> Any:
    """The rig's primary camera spec at the recorded resolution (None when the manifest cannot say)."""
    if run.inputs_dir is None:
        return None
    import json

    from automot.agent.rigs import get_rig

    manifest = json.loads((run.inputs_dir / "manifest.json").read_text(encoding="utf-8"))
    cam = manifest.get("camera") or {}
    rig = get_rig(manifest.get("rig") or "automot-front", (int(cam["width"]), int(cam["height"])))
    return rig.get(rig.primary_camera)


def _recorded_frames(run: Run, every: int) -> dict[int, np.ndarray]:
    """tick -> the newest camera frame submitted at that tick (every ``every``-th submitted tick)."""
    from automot.debugging.replay import InputLog, Submit

    frames: dict[int, np.ndarray] = {}
    n = 0
    for event in InputLog(run.inputs_dir).events():
        if isinstance(event, Submit) and event.images:
            if n % every == 0:
                frames[event.tick] = event.images[-1]
            n += 1
    return frames


def _video_frames(path: Path, ticks: list[int], every: int) -> dict[int, np.ndarray]:
    """tick -> the recorder's annotated video frame (one frame per tick, in tick order)."""
    import imageio.v2 as imageio

    frames: dict[int, np.ndarray] = {}
    reader = imageio.get_reader(str(path), format="FFMPEG")
    try:
        for i, frame in enumerate(reader):
            if i >= len(ticks):
                break
            if i % every == 0:
                frames[ticks[i]] = np.asarray(frame)
    finally:
        reader.close()
    return frames


def export_run(run: Run, rec: Any, image_every: int = 1) -> dict[str, int]:
    """Log ``run`` into the Rerun recording stream ``rec``; returns rows logged per entity group."""
    rr = _import_rerun()
    from automot.agent.rigs import camera_extrinsics, camera_intrinsics, project_ego_points

    counts = {"ticks": 0, "images": 0, "events": 0}
    ticks = run.ticks
    camera = _camera(run)
    if camera is not None:
        frames = _recorded_frames(run, image_every)
        image_entity = "camera/image"
        intr, extr = camera_intrinsics(camera), camera_extrinsics(camera)
    elif run.video_path is not None:
        frames = _video_frames(run.video_path, [int(t["frame"]) for t in ticks], image_every)
        image_entity, intr, extr = "camera/video", None, None
    else:
        frames, image_entity, intr, extr = {}, None, None, None

    driven = np.array([[t["ego"]["x"], t["ego"]["y"]] for t in ticks if (t.get("ego") or {}).get("x") is not None])
    if len(driven) > 1:
        rec.log("map/driven", rr.LineStrips2D([driven], colors=[(120, 120, 255)]), static=True)
    route_pts: list[tuple[float, float]] = []
    for t in ticks:
        tp, ego = _xy(t.get("target_points")), t.get("ego")
        if tp is not None and ego and ego.get("x") is not None:
            for p in _ego_to_world(tp, ego):
                key = (round(float(p[0]), 1), round(float(p[1]), 1))
                if not route_pts or route_pts[-1] != key:
                    route_pts.append(key)
    route = np.array(list(dict.fromkeys(route_pts)), dtype=np.float64).reshape(-1, 2)

    infractions: dict[int, list[str]] = {}
    for inf in run.infractions():
        if inf.tick is not None:
            infractions.setdefault(inf.tick, []).append(f"INFRACTION {inf.kind}: {inf.message}")

    from automot.agent.world_record import read_world
    from automot.debugging.collision_story import find_world_log
    from automot.debugging.rerun_world import log_world_tick

    world_path = find_world_log(Path(run.folder), run.ticks_path)
    world_map, world = read_world(world_path) if world_path is not None else (None, {})
    counts["actors"] = 0

    last_decision, n_ego = None, 0
    for t in ticks:
        tick = int(t["frame"])
        sim_time = t.get("sim_time")
        rec.set_time("tick", sequence=tick)
        rec.set_time("sim_time", duration=float(sim_time) if sim_time is not None else tick * 0.05)
        control = t.get("control") or {}
        snap = t.get("snapshot") or {}
        path, wps, tps = _xy(t.get("path")), _xy(t.get("waypoints")), _xy(t.get("target_points"))
        scalars = {
            "speed": t.get("speed"),
            "steer": control.get("steer"),
            "throttle": control.get("throttle"),
            "brake": control.get("brake"),
            "fast_step_ms": t.get("fast_step_ms"),
            "snapshot_age_ticks": snap.get("age_ticks"),
            "snapshot_age_s": snap.get("age_s"),
            "refresh_ms": snap.get("refresh_ms"),
        }
        if wps is not None and len(wps) >= 2:
            scalars["target_speed"] = float(np.linalg.norm(wps[1] - wps[0]) / WAYPOINT_DT)
        for name, value in scalars.items():
            if value is not None and math.isfinite(float(value)):
                rec.log(f"scalars/{name}", rr.Scalars(float(value)))
        counts["ticks"] += 1

        if int(t["frame"]) in world:
            counts["actors"] += log_world_tick(rec, rr, world[int(t["frame"])], world_map)
        ego = t.get("ego")
        rec.log("bev/ego", rr.LineStrips2D([_bev(EGO_BOX)], colors=[(20, 20, 20)], radii=0.15))
        if path is not None:
            rec.log("bev/path", rr.LineStrips2D([_bev(np.vstack([np.zeros((1, 2)), path]))], colors=[(40, 220, 40)]))
        if wps is not None:
            rec.log("bev/waypoints", rr.Points2D(_bev(wps), colors=[(255, 170, 0)], radii=0.4))
        if tps is not None:
            rec.log("bev/targets", rr.Points2D(_bev(tps), colors=[(255, 40, 40)], radii=0.8))
        if ego and ego.get("x") is not None:
            from automot.geometry import world_to_ego

            here = np.array([ego["x"], ego["y"]])
            rec.log("map/ego", rr.Points2D([here], colors=[(20, 20, 20)], radii=3.0))
            if len(route):
                near = route[np.linalg.norm(route - here, axis=1) < BEV_RANGE_M]
                rec.log(
                    "bev/route",
                    rr.Points2D(_bev(world_to_ego(near, here, ego["yaw"])), colors=[(170, 170, 170)], radii=0.5),
                )
            n_ego += 1
            done = driven[max(0, n_ego - 400) : n_ego]
            if len(done) > 1:
                rec.log(
                    "bev/driven",
                    rr.LineStrips2D([_bev(world_to_ego(done, here, ego["yaw"]))], colors=[(120, 120, 255)]),
                )

        image = frames.get(tick)
        if image is not None and image_entity is not None:
            rec.log(image_entity, rr.Image(image))
            counts["images"] += 1
            if intr is not None:
                for name, pts, color in (("path", path, (40, 220, 40)), ("waypoints", wps, (255, 170, 0))):
                    if pts is None:
                        continue
                    if name == "path":
                        pts = np.vstack([np.zeros((1, 2)), pts])
                    uv, valid = project_ego_points(pts, intr, extr)
                    if name == "path":
                        rec.log(f"{image_entity}/path", rr.LineStrips2D([uv[valid]], colors=[color]))
                    else:
                        rec.log(f"{image_entity}/waypoints", rr.Points2D(uv[valid], colors=[color], radii=3))
                if tps is not None:
                    uv, valid = project_ego_points(tps, intr, extr)
                    rec.log(f"{image_entity}/targets", rr.Points2D(uv[valid], colors=[(255, 40, 40)], radii=6))

        events: list[tuple[str, str]] = []
        decision = t.get("decision")
        if decision is not None and decision != last_decision:
            events.append((f"decision: {decision}", "INFO"))
        last_decision = decision
        if t.get("reasoning"):
            events.append((f"reasoning: {t['reasoning']}", "INFO"))
        if t.get("safe_stop"):
            events.append((f"safe stop ({t.get('safe_stop_kind')}): {t.get('safe_stop_reason')}", "WARN"))
        if t.get("refresh_overrun"):
            events.append((f"refresh overrun: {t['refresh_overrun']}", "WARN"))
        for flag in t.get("input_flags") or []:
            events.append((f"input flag: {flag}", "WARN"))
        if t.get("error"):
            events.append((f"error: {t['error']}", "ERROR"))
        for text in infractions.get(tick, []):
            events.append((text, "ERROR"))
        for text, level in events:
            rec.log("events", rr.TextLog(text, level=level))
            counts["events"] += 1
    return counts


def view_main(args: argparse.Namespace) -> int:
    from automot.outputs import check_output_file

    if args.save:  # never onto the run it reads (its results.json), a folder or somewhere unwritable
        check_output_file(args.save, inputs=[args.run_dir], what="--save")
    every = int(getattr(args, "image_every", 1))
    if every < 1:
        raise UsageError(f"--image-every {every}: must be >= 1")
    run = load_run(args.run_dir)
    rr = _import_rerun()
    rec = rr.RecordingStream(APP_ID, recording_id=None)
    if args.save:
        from automot.fsio import atomic_path

        save = Path(args.save)
        with atomic_path(save) as tmp:
            rec.save(str(tmp), default_blueprint=blueprint())
            counts = export_run(run, rec, every)
            rec.flush()
            rec.disconnect()
        print(f"{save}: {counts['ticks']} ticks, {counts['images']} images, {counts['events']} events")
    else:
        rec.spawn(default_blueprint=blueprint())
        counts = export_run(run, rec, every)
        rec.flush()
        print(f"streamed {counts['ticks']} ticks, {counts['images']} images, {counts['events']} events to the viewer")
    return 0
