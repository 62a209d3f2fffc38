"""``compare.mp4`` of ``automot replay`` in comparison mode: recorded (left) | replayed (right) on the same frame.

Each side's header holds the tick's real numbers: the sim time and speed of the recorded tick (ticks.jsonl; the
replay is open loop, so both sides drive from the same state), and that side's control: the left the control the
run applied (ticks.jsonl's ``control``), the right the control the replayed output gives through the run's
controllers (replay.json's ``replayed_control``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

VIDEO_HEIGHT = 256


def side_records(
    tick: int, image: np.ndarray, rec: dict, rep: dict, logged: dict | None, replayed_control: dict | None
) -> list[Any]:
    """The two TickRecords drawn for one tick (left: recorded, right: replayed)."""
    from automot.agent.recorder import TickRecord

    logged = logged or {}
    sim_time = float(logged.get("sim_time") or 0.0)
    speed = float(logged.get("speed") or 0.0)
    recorded_control = logged.get("control") or {}
    sides = []
    for label, out, control in (("recorded", rec, recorded_control), ("replayed", rep, replayed_control or {})):
        sides.append(
            TickRecord(
                frame=tick,
                sim_time=sim_time,
                speed=speed,
                steer=float(control.get("steer") or 0.0),
                throttle=float(control.get("throttle") or 0.0),
                brake=float(control.get("brake") or 0.0),
                control_mode=f"{label}: {control.get('mode') or '?'}",
                image=image,
                path=np.asarray(out["path"]),
                waypoints=np.asarray(out["waypoints"]),
                decision=f"{label}: {out['decision']}",
            )
        )
    return sides


def write_compare_video(path: Path, frames: list[tuple], cfg: Any) -> None:
    """``frames``: (tick, image, recorded output, replayed output, ticks.jsonl line, replayed control) per tick."""
    import imageio.v2 as imageio

    from automot.agent import overlay
    from automot.agent.rigs import get_rig

    rig = get_rig(cfg.rig, cfg.image_size)
    camera = rig.get(rig.primary_camera)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")  # ffmpeg picks the container from the suffix
    try:
        writer = imageio.get_writer(
            str(tmp), format="FFMPEG", mode="I", fps=cfg.recorder.fps, codec="libx264", pixelformat="yuv420p",
            macro_block_size=16, ffmpeg_log_level="error", output_params=["-preset", "veryfast"],
        )  # fmt: skip
        try:
            for tick, image, rec, rep, logged, replayed_control in frames:
                sides = [
                    overlay.compose_frame(r, camera, VIDEO_HEIGHT, 0, cfg.recorder.bev_range_m)
                    for r in side_records(tick, image, rec, rep, logged, replayed_control)
                ]
                writer.append_data(np.concatenate(sides, axis=1))
        finally:
            writer.close()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
