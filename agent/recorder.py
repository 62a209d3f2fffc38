"""Per-route debug recording: ``video.mp4`` (annotated camera + bird's-eye panel), ``ticks.jsonl`` and ``world.jsonl``.

Driven by one ``Recorder.record(TickRecord)`` call per tick, warm-up and failed ticks included, so the JSONL has
exactly one line per tick, written and flushed in the tick. The video is composed and encoded off the tick's
critical path, by the writer thread ``automot-video`` fed through a bounded queue (``recorder.video_queue`` frames):
``record`` never blocks on it (except for the first frame, encoded in its tick because it starts ffmpeg); when the
queue is full the frame is dropped and counted (``video_frames_dropped`` in ``summary.jsonl``), so the video has one
frame per tick unless the summary says otherwise. ``close()`` drains the queue, finalises the video and writes
``summary.jsonl`` (one JSON object on one line). ``world.jsonl`` (agent/world_record.py, ``recorder.world_jsonl``) holds
the actors and lanes around the ego per tick from a debug-only world source, never from the model's inputs; the
video's bird's-eye panel draws them. A SIGKILL leaves the frames the encoder already received (ffmpeg
finalises the file when its pipe closes); the queued ones are lost (with world.jsonl on, also the last
BANNER_TICKS frames, held back so that a collision banner can start before the contact). Not ``*.json``: the
recorder often writes next to a run's results.json, and Bench2Drive's merge_route_json.py reads every ``*.json``
there as a results file.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from automot.agent.config import RecorderConfig
from automot.agent.overlay import compose_frame, contact_banner
from automot.agent.rigs import SensorSpec
from automot.agent.world_record import WORLD_NAME, WorldLog
from automot.runtime.types import RuntimeOutput

log = logging.getLogger(__name__)

VIDEO_NAME = "video.mp4"
TICKS_NAME = "ticks.jsonl"
SUMMARY_NAME = "summary.jsonl"  # never *.json: see the module docstring
BANNER_TICKS = 20  # a contact's banner is on the video this many ticks before and after the touching ticks


@dataclass(kw_only=True)
class TickRecord:
    """Everything known about one tick; model fields are None while no RuntimeOutput exists (warm-up).

    Keyword-only: ``TickRecord(frame=..., sim_time=..., speed=..., steer=..., throttle=..., brake=...,
    control_mode=...)`` plus any optional field.
    """

    frame: int
    sim_time: float
    speed: float
    steer: float
    throttle: float
    brake: float
    control_mode: str
    image: np.ndarray | None = None  # primary camera RGB (not written to JSON)
    target_points: np.ndarray | None = None  # (2, 2) ego frame
    path: np.ndarray | None = None
    waypoints: np.ndarray | None = None
    decision: str | None = None
    reasoning: str | None = None
    snapshot_version: int | None = None
    age_ticks: int | None = None
    age_s: float | None = None
    fast_step_ms: float | None = None
    refresh_ms: float | None = None  # wall time of the refresh that produced the snapshot used (RuntimeOutput)
    safe_stop: bool = False
    safe_stop_reason: str | None = None
    safe_stop_kind: str | None = None  # the runtime's stop kind (no_snapshot, stale_snapshot, slow_path_failed, ...)
    refresh_overrun: str | None = None  # a slow-path refresh over its wall-clock budget (RuntimeOutput.refresh_overrun)
    # Input problems found and handled this tick, one line each (negative speed, bad or jumping GNSS fix, ...)
    input_flags: list[str] = field(default_factory=list)
    warmup: bool = False
    error: str | None = None
    ego_pose: tuple[float, float, float] | None = None  # estimated world x, y (m) and yaw (rad)
    # Debug-only ground truth around the ego (a world.jsonl tick line) and the static map header; set by the
    # recorder for the video, never written to ticks.jsonl, never seen by the model.
    world: dict[str, Any] | None = None
    world_map: dict[str, Any] | None = None
    banner: str | None = None  # a line drawn across the frame (replay / re-drive videos: an infraction nearby)

    def with_output(self, output: RuntimeOutput) -> TickRecord:
        """Copy the runtime's fields into this record (returns self for chaining)."""
        self.path = np.asarray(output.path, dtype=np.float64)
        self.waypoints = np.asarray(output.waypoints, dtype=np.float64)
        self.decision = output.decision_text
        self.reasoning = output.reasoning_text
        self.snapshot_version = int(output.snapshot_version)
        self.age_ticks = int(output.age_ticks)
        self.age_s = float(output.age_s)
        self.fast_step_ms = float(output.fast_step_ms)
        self.refresh_ms = float(getattr(output, "snapshot_refresh_ms", float("nan")))
        self.safe_stop = self.safe_stop or bool(output.safe_stop)
        self.safe_stop_reason = self.safe_stop_reason or output.safe_stop_reason
        extras = getattr(output, "extras", None)
        if self.safe_stop_kind is None and output.safe_stop and isinstance(extras, dict):
            self.safe_stop_kind = extras.get("stop_kind")
        self.refresh_overrun = getattr(output, "refresh_overrun", None)
        return self

    def to_json(self) -> dict[str, Any]:
        """JSON-safe dict (arrays as nested lists, NaN/inf as null)."""
        return {
            "frame": self.frame,
            "sim_time": _num(self.sim_time),
            "speed": _num(self.speed),
            "ego": None if self.ego_pose is None else dict(zip(("x", "y", "yaw"), map(_num, self.ego_pose))),
            "control": {"steer": self.steer, "throttle": self.throttle, "brake": self.brake, "mode": self.control_mode},
            "target_points": _array(self.target_points),
            "path": _array(self.path),
            "waypoints": _array(self.waypoints),
            "decision": self.decision,
            "reasoning": self.reasoning,
            "snapshot": {
                "version": self.snapshot_version,
                "age_ticks": self.age_ticks,
                "age_s": _num(self.age_s),
                "refresh_ms": _num(self.refresh_ms),
            },
            "fast_step_ms": _num(self.fast_step_ms),
            "safe_stop": self.safe_stop,
            "safe_stop_reason": self.safe_stop_reason,
            "safe_stop_kind": self.safe_stop_kind,
            "refresh_overrun": self.refresh_overrun,
            "input_flags": list(self.input_flags),
            "warmup": self.warmup,
            "error": self.error,
        }


def _num(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return round(value, 6) if math.isfinite(value) else None


def _array(arr: np.ndarray | None) -> list | None:
    if arr is None:
        return None
    values = np.round(np.asarray(arr, dtype=np.float64), 4)
    return [[_num(v) for v in row] for row in values.reshape(len(values), -1)]


class Recorder:
    """Writes the video and tick log of one route into ``out_dir``."""

    def __init__(self, out_dir: str | Path, camera: SensorSpec, config: RecorderConfig | None = None) -> None:
        self.config = config or RecorderConfig()
        self.out_dir = Path(out_dir)
        self.camera = camera
        self.video_path = self.out_dir / VIDEO_NAME
        self.ticks_path = self.out_dir / TICKS_NAME
        self.summary_path = self.out_dir / SUMMARY_NAME
        self.frames_written = 0  # frames the encoder received (writer thread)
        self.frames_dropped = 0  # frames not queued because the writer was behind (the tick never waits for it)
        self.ticks_written = 0
        self.video_error: str | None = None  # the writer thread's failure, if any (video stops, driving goes on)
        self._writer = None
        self._ticks_file = None
        self.world_log = WorldLog(self.out_dir, self.config.world_radius_m) if self.config.world_jsonl else None
        self._banner: str | None = None
        self._banner_until = -1
        self._closed = False
        self._queue: queue.Queue[TickRecord | None] = queue.Queue(maxsize=max(1, int(self.config.video_queue)))
        self._thread: threading.Thread | None = None
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def record(self, rec: TickRecord) -> None:
        """Append one tick to the enabled outputs."""
        if self._closed:
            raise RuntimeError("recorder is closed")
        if self.config.ticks_jsonl:
            if self._ticks_file is None:
                self._ticks_file = self.ticks_path.open("w", encoding="utf-8")
            self._ticks_file.write(json.dumps(rec.to_json(), allow_nan=False) + "\n")
            self._ticks_file.flush()  # a crashed route still leaves every finished tick on disk
            self.ticks_written += 1
        if self.world_log is not None:
            rec.world = self.world_log.record(rec.frame, rec.sim_time)
            rec.world_map = self.world_log.map
            banner = contact_banner(rec.world)
            if banner:  # kept on the frames of the next second too, so a one-tick contact stays readable
                self._banner, self._banner_until = banner, rec.frame + BANNER_TICKS
            if rec.banner is None and self._banner and rec.frame <= self._banner_until:
                rec.banner = self._banner
        if self.config.video and self.video_error is None:
            if self._thread is None:
                # The first frame (a warm-up tick in a route) is encoded here: it starts ffmpeg, which takes long
                # enough that the queue would otherwise fill up behind it. Later frames go through the thread.
                self._encode(rec)
                self._thread = threading.Thread(target=self._video_loop, name="automot-video", daemon=True)
                self._thread.start()
                return
            try:
                self._queue.put_nowait(rec)  # the record is not touched by the agent after this tick
            except queue.Full:
                self.frames_dropped += 1
                if self.frames_dropped == 1 or self.frames_dropped % 100 == 0:
                    log.warning(
                        "video writer behind: frame of tick %d dropped (%d so far)", rec.frame, self.frames_dropped
                    )

    def _video_loop(self) -> None:
        """Writer thread: compose and encode queued ticks until the ``None`` sentinel; a failure stops the video.

        With a world record (world.jsonl on), frames wait BANNER_TICKS ticks here before they are encoded, so that
        a contact can also put its banner on the frames of the second before it ("in N ticks")."""
        pending: collections.deque[TickRecord] = collections.deque()
        while True:
            rec = self._queue.get()
            if rec is None:
                break
            ahead = contact_banner(rec.world)
            if ahead:
                for earlier in pending:
                    if earlier.banner is None:
                        earlier.banner = f"in {rec.frame - earlier.frame} ticks: {ahead}"
            pending.append(rec)
            # without a world record there is no contact to look ahead for: no frame waits
            while len(pending) > (BANNER_TICKS if rec.world is not None else 0):
                self._encode_if_ok(pending.popleft())
        while pending:
            self._encode_if_ok(pending.popleft())

    def _encode_if_ok(self, rec: TickRecord) -> None:
        if self.video_error is None:  # else keep draining so that close() never waits on a full queue
            self._encode(rec)

    def _encode(self, rec: TickRecord) -> None:
        cfg = self.config
        try:
            frame = compose_frame(rec, self.camera, cfg.video_height, cfg.panel_width, cfg.bev_range_m)
            if self._writer is None:
                self._writer = self._open_writer()
            self._writer.append_data(frame)
            self.frames_written += 1
        except Exception as exc:  # noqa: BLE001 - reported in the summary; the route keeps driving
            self.video_error = f"{type(exc).__name__}: {exc}"
            log.exception("video writer failed at tick %d; no further video frames", rec.frame)

    def _open_writer(self) -> Any:
        import imageio.v2 as imageio  # imported here so JSONL-only recording never loads ffmpeg

        # libx264 + yuv420p is what browsers and VLC play; frames are already multiples of 16.
        return imageio.get_writer(
            str(self.video_path),
            format="FFMPEG",
            mode="I",
            fps=self.config.fps,
            codec="libx264",
            pixelformat="yuv420p",
            macro_block_size=16,
            ffmpeg_log_level="error",
            output_params=["-preset", "veryfast"],
        )

    def close(self, summary: dict | None = None) -> None:
        """Finalise the video, close the tick log and write ``summary.jsonl``. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._thread is not None:
                self._queue.put(None)  # after every queued frame: closing flushes the queue
                self._thread.join()
            if self._writer is not None:
                self._writer.close()
        finally:
            if self._ticks_file is not None:
                self._ticks_file.close()
            if self.world_log is not None:
                self.world_log.close()
            body = {
                "ticks": self.ticks_written,
                "video_frames": self.frames_written,
                "video_frames_dropped": self.frames_dropped,
                "video_error": self.video_error,
                "video": VIDEO_NAME if self.frames_written else None,
                "ticks_jsonl": TICKS_NAME if self.ticks_written else None,
                "world_jsonl": WORLD_NAME if self.world_log is not None and self.world_log.lines else None,
                "world_jsonl_error": None if self.world_log is None else self.world_log.error,
                **(summary or {}),
            }
            self.summary_path.write_text(json.dumps(body, default=str) + "\n", encoding="utf-8")
