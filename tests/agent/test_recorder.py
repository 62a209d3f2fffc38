"""Recorder: H.264 video with one frame per tick and a parsable ticks.jsonl, warm-up ticks included."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest

from automot.agent.config import RecorderConfig
from automot.agent.overlay import compose_frame
from automot.agent.recorder import Recorder, TickRecord
from automot.agent.rigs import get_rig
from automot.runtime.types import RuntimeOutput

CAMERA = get_rig("automot-front", image_size=(256, 128)).get("CAM_FRONT")


def _output(frame: int, safe_stop: bool = False) -> RuntimeOutput:
    s = np.arange(1, 21, dtype=np.float32)
    return RuntimeOutput(
        path=np.stack([s, 0.02 * s**2], axis=1),
        waypoints=np.stack([np.arange(1, 7, dtype=np.float32) * 2.0, np.zeros(6, np.float32)], axis=1),
        decision_text="keep lane, accelerate",
        reasoning_text="The road ahead is clear and the target point is straight ahead. " * 3,
        snapshot_version=frame // 2,
        snapshot_frame=frame - frame % 2,
        snapshot_sim_time=0.05 * (frame - frame % 2),
        age_ticks=frame % 2,
        age_s=0.05 * (frame % 2),
        fast_step_ms=3.5,
        safe_stop=safe_stop,
        safe_stop_reason="snapshot too old" if safe_stop else None,
        snapshot_refresh_ms=40.0 + frame // 2,  # one value per snapshot version
    )


def _record(frame: int, image: bool = True) -> TickRecord:
    img = np.full((128, 256, 3), (frame * 7) % 255, np.uint8) if image else None
    tps = np.array([[30.0, 1.0], [55.0, -3.0]], np.float32)
    return TickRecord(
        frame=frame,
        sim_time=frame * 0.05,
        speed=2.0,
        steer=0.1,
        throttle=0.3,
        brake=0.0,
        control_mode="drive",
        image=img,
        target_points=tps,
    )


def test_recorder_writes_video_and_jsonl(tmp_path):
    cfg = RecorderConfig(video=True, ticks_jsonl=True, video_height=128, panel_width=96)
    rec = Recorder(tmp_path / "route", CAMERA, cfg)
    n_warmup, n_total = 4, 12
    for t in range(n_total):
        record = _record(t, image=(t != 7))  # tick 7: failed input, no image
        if t < n_warmup:
            record.warmup, record.control_mode, record.brake = True, "warmup", 1.0
        else:
            record.with_output(_output(t, safe_stop=(t == 9)))
        if t == 7:
            record.error = "InputError: input 'CAM_FRONT': expected ..."
        rec.record(record)
    rec.close({"runtime_stats": {"refreshes": 4}})
    rec.close()  # idempotent

    reader = imageio.get_reader(str(rec.video_path))
    frames = list(reader.iter_data())  # list(reader) would size itself by nframes=inf
    meta = reader.get_meta_data()
    reader.close()
    assert len(frames) == n_total
    assert frames[0].shape == (128, 256 + 96, 3)
    assert meta.get("codec") == "h264" and meta.get("fps") == pytest.approx(20.0)

    lines = rec.ticks_path.read_text().splitlines()
    assert len(lines) == n_total
    rows = [json.loads(line) for line in lines]
    assert [r["frame"] for r in rows] == list(range(n_total))
    assert rows[0]["warmup"] and rows[0]["path"] is None and rows[0]["snapshot"]["version"] is None
    assert len(rows[5]["path"]) == 20 and len(rows[5]["waypoints"]) == 6 and rows[5]["decision"].startswith("keep")
    assert rows[5]["snapshot"] == {"version": 2, "age_ticks": 1, "age_s": 0.05, "refresh_ms": 42.0}
    assert rows[9]["safe_stop"] and rows[9]["safe_stop_reason"] == "snapshot too old"
    assert rows[7]["error"].startswith("InputError")
    assert rows[4]["control"] == {"steer": 0.1, "throttle": 0.3, "brake": 0.0, "mode": "drive"}

    summary = json.loads(rec.summary_path.read_text())
    assert summary["ticks"] == n_total and summary["video_frames"] == n_total
    assert summary["runtime_stats"] == {"refreshes": 4}


def test_nan_values_become_null(tmp_path):
    rec = Recorder(tmp_path, CAMERA, RecorderConfig(video=False, ticks_jsonl=True))
    record = _record(0).with_output(RuntimeOutput.stop("no snapshot yet"))
    record.speed = float("nan")
    rec.record(record)
    rec.close()
    row = json.loads(rec.ticks_path.read_text())
    assert row["speed"] is None and row["snapshot"]["age_s"] is None and row["safe_stop"]
    assert not rec.video_path.exists()


def test_overlay_draws_plan_on_the_image():
    record = _record(3).with_output(_output(3))
    record.image = np.zeros((128, 256, 3), np.uint8)
    frame = compose_frame(record, CAMERA, video_height=128, panel_width=96, bev_range_m=40.0)
    camera_area, panel = frame[:, :256], frame[:, 256:]
    lower = camera_area[80:]  # below the text band, where the ground-plane path lands
    green = (lower[..., 1] > 150) & (lower[..., 0] < 120)
    assert green.sum() > 20
    assert (panel[..., 1] > 150).sum() > 20
    # A 1600x900 camera is scaled to a multiple-of-16 width.
    six = get_rig("bench2drive-6cam").get("CAM_FRONT")
    record.image = np.zeros((900, 1600, 3), np.uint8)
    frame = compose_frame(record, six, video_height=512, panel_width=250, bev_range_m=40.0)
    assert frame.shape[0] == 512 and frame.shape[1] % 16 == 0


def test_record_dir_override(monkeypatch, tmp_path):
    from automot.agent.automot_agent import recorder_dir

    monkeypatch.delenv("AUTOMOT_RECORD_DIR", raising=False)
    monkeypatch.delenv("SAVE_PATH", raising=False)
    assert recorder_dir(None, "route_1") == Path("runs/agent/route_1")
    monkeypatch.setenv("SAVE_PATH", str(tmp_path / "b2d"))
    assert recorder_dir(None, "route_1") == tmp_path / "b2d" / "route_1"
    assert recorder_dir(str(tmp_path / "cfg"), "route_1") == tmp_path / "cfg" / "route_1"
    monkeypatch.setenv("AUTOMOT_RECORD_DIR", str(tmp_path / "drive"))
    assert recorder_dir(str(tmp_path / "cfg"), "route_1") == tmp_path / "drive"


class _GatedWriter:
    """A video writer whose append_data blocks from the second frame on until ``release`` is set (a deliberately
    slow encoder; the recorder encodes the first frame in the tick, which starts ffmpeg)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.frames: list[np.ndarray] = []
        self.closed = False

    def append_data(self, frame) -> None:
        if self.frames:
            self.entered.set()
            assert self.release.wait(30)
        self.frames.append(frame)

    def close(self) -> None:
        self.closed = True


def test_video_writer_thread_never_blocks_the_tick_and_counts_drops(tmp_path, monkeypatch):
    writer = _GatedWriter()
    monkeypatch.setattr(Recorder, "_open_writer", lambda self: writer)
    rec = Recorder(tmp_path, CAMERA, RecorderConfig(video=True, ticks_jsonl=True, video_queue=4))
    rec.record(_record(0))  # encoded in the tick: starts the writer
    assert rec.frames_written == 1
    rec.record(_record(1))
    assert writer.entered.wait(30)  # the writer thread holds frame 1 inside the (blocked) encoder
    for frame in range(2, 20):  # would deadlock here if record() waited for the encoder
        rec.record(_record(frame))
    assert rec.ticks_written == 20 and rec.frames_written == 1
    assert rec.frames_dropped == 20 - 2 - 4  # one written, one in the encoder, four queued, the rest dropped
    lines = (tmp_path / "ticks.jsonl").read_text().splitlines()
    assert len(lines) == 20  # the tick log is written in the tick, complete whatever the video does
    writer.release.set()
    rec.close({"note": "x"})  # drains the queue before closing the writer
    assert writer.closed and len(writer.frames) == 6 and rec.frames_written == 6
    summary = json.loads((tmp_path / "summary.jsonl").read_text())
    assert summary["video_frames"] == 6 and summary["video_frames_dropped"] == 14 and summary["video_error"] is None


def test_video_writer_failure_stops_the_video_not_the_ticks(tmp_path, monkeypatch):
    class Broken:
        def append_data(self, frame):
            raise OSError("disk full")

        def close(self):
            pass

    monkeypatch.setattr(Recorder, "_open_writer", lambda self: Broken())
    rec = Recorder(tmp_path, CAMERA, RecorderConfig(video=True, ticks_jsonl=True))
    for frame in range(5):
        rec.record(_record(frame))
    rec.close()
    summary = json.loads((tmp_path / "summary.jsonl").read_text())
    assert summary["ticks"] == 5 and summary["video_frames"] == 0 and "disk full" in summary["video_error"]
