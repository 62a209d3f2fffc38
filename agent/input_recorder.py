"""Records exactly what the runtime was given, tick by tick, so ``automot replay`` can feed it to a model again.

Enabled by ``record_inputs: true`` in the agent config or ``automot drive --record-inputs`` (which sets
``AUTOMOT_RECORD_INPUTS=1`` for the agent, as ``AUTOMOT_RECORD_DIR`` names its folder). The agent wraps its runtime
in :class:`RecordingRuntime`: every ``submit`` (slow-path observation) and ``step`` (fast-path state, scene inputs
included) goes through unchanged and is recorded, together with the step's output at full precision (ticks.jsonl
rounds to 4 decimals; replay compares against these).

Layout, ``<run>/inputs/`` (FORMAT ``automot-inputs`` version ``FORMAT_VERSION``):

* ``manifest.json`` -- format and version, the agent config (and its sha256 over canonical JSON), the checkpoint
  identity (path, sha256 of its files), rig, camera, history, and the list of chunks. Rewritten atomically after
  every chunk, ``complete: true`` once the route ended: a killed run keeps every finished chunk.
* ``chunk_NNNNNN.npz`` -- ``np.savez_compressed`` (zlib, lossless) of ``chunk_ticks`` ticks, written atomically:

  - ``sub_tick, sub_time, sub_speed, sub_tp (S, 2, 2), sub_frames (S, K)``: each submit; ``sub_frames`` are ids of
    camera frames (oldest first, as ``DrivingObservation.images``);
  - ``frame_<id>``: each distinct camera frame once, uint8 at the sensor's resolution (the history repeats a frame
    in K submits; it is stored in the chunk of the tick it first appeared);
  - ``st_tick, st_time, st_speed, st_tp``: each step; ``st_scene`` (precomputed scene features) and
    ``st_in_<name>`` (raw scene-encoder inputs, e.g. ``rgb`` and ``lidar``) when present. The released profile's
    LiDAR is stored in the encoder's histogram form (what ``DrivingState.scene_inputs["lidar"]`` holds, after the
    half-sweep accumulation and ego-motion alignment), so replay starts there, not at the raw point cloud.
    Integer-valued float arrays are stored as uint8/uint16 and restored bit-exactly (``<key>__dtype``);
  - ``out_path, out_waypoints, out_decision, out_safe_stop, out_version, out_age_ticks``: the step's output.

Recording never stops driving: a failure is logged once and recording is switched off for the route.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from automot.fsio import atomic_path, atomic_write_json

log = logging.getLogger(__name__)

FORMAT = "automot-inputs"
FORMAT_VERSION = 1
INPUTS_DIR = "inputs"
MANIFEST = "manifest.json"
ENV = "AUTOMOT_RECORD_INPUTS"
CHUNK_TICKS = 100
_FULL_HASH_BYTES = 256 * 2**20  # bigger files are identified by size + first and last MiB


def wanted(cfg: Any) -> bool:
    """True when the agent config or ``AUTOMOT_RECORD_INPUTS`` asks for input recording."""
    env = os.environ.get(ENV, "").strip().lower()
    return bool(getattr(cfg, "record_inputs", False)) or env not in ("", "0", "false", "no")


def config_sha256(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    size = path.stat().st_size
    with path.open("rb") as fh:
        if size <= _FULL_HASH_BYTES:
            for block in iter(lambda: fh.read(2**20), b""):
                h.update(block)
            return h.hexdigest()
        h.update(str(size).encode())
        h.update(fh.read(2**20))
        fh.seek(size - 2**20)
        h.update(fh.read(2**20))
    return "sampled:" + h.hexdigest()


def checkpoint_identity(checkpoint: str | None) -> dict[str, Any]:
    """Path and sha256 of a checkpoint folder's weight and config files (None: random init of the preset)."""
    if not checkpoint:
        return {"path": None, "sha256": None, "files": {}}
    folder = Path(checkpoint)
    files = {}
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix in (".safetensors", ".yaml", ".json", ".bin", ".pt"):
                files[path.name] = _file_digest(path)
    elif folder.is_file():
        files[folder.name] = _file_digest(folder)
    total = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return {"path": str(folder.resolve()), "sha256": total, "files": files}


def pack(key: str, arr: np.ndarray, into: dict[str, np.ndarray]) -> None:
    """Store ``arr`` under ``key``; an integer-valued float array as uint8 / uint16 plus its dtype (lossless)."""
    arr = np.asarray(arr)
    if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)):
        lo, hi = float(arr.min()), float(arr.max())
        if lo >= 0 and hi <= 65535 and np.array_equal(arr, np.round(arr)):
            into[key] = arr.astype(np.uint8 if hi <= 255 else np.uint16)
            into[key + "__dtype"] = np.array(arr.dtype.str)
            return
    into[key] = arr


def unpack(data: Any, key: str) -> np.ndarray:
    arr = np.asarray(data[key])
    if key + "__dtype" in data:
        arr = arr.astype(np.dtype(str(data[key + "__dtype"])))
    return arr


class InputRecorder:
    """Buffers a chunk of ticks and writes it as one compressed npz; see the module docstring for the format."""

    def __init__(self, out_dir: str | Path, info: dict[str, Any], chunk_ticks: int = CHUNK_TICKS) -> None:
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        for old in self.dir.glob("chunk_*.npz"):  # a folder reused by a new run: never mix two runs' chunks
            old.unlink()
        self.chunk_ticks = max(1, int(chunk_ticks))
        self.manifest: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_unix": time.time(),
            **info,
            "chunks": [],
            "complete": False,
        }
        self._keep = int(info.get("history", {}).get("buffer_len") or 40) + 8
        self._frame_ids: OrderedDict[int, tuple[int, np.ndarray]] = OrderedDict()  # id(array) -> (frame id, array)
        self._next_frame = 0
        self._steps_in_chunk = 0
        self._reset_buffers()
        self.enabled = True
        self.bytes_written = 0
        atomic_write_json(self.dir / MANIFEST, self.manifest)

    def _reset_buffers(self) -> None:
        self._frames: dict[int, np.ndarray] = {}
        self._sub: list[tuple[int, float, float, np.ndarray, list[int]]] = []
        self._st: list[dict[str, Any]] = []

    def _frame_id(self, image: np.ndarray) -> int:
        key = id(image)
        hit = self._frame_ids.get(key)
        if hit is not None and hit[1] is image:
            self._frame_ids.move_to_end(key)
            return hit[0]
        fid = self._next_frame
        self._next_frame += 1
        self._frame_ids[key] = (fid, image)  # holding the array keeps its id() unique while it is in the map
        while len(self._frame_ids) > self._keep:
            self._frame_ids.popitem(last=False)
        self._frames[fid] = np.ascontiguousarray(image, dtype=np.uint8).copy()
        return fid

    def submit(self, obs: Any, sim_time: float, frame: int) -> None:
        ids = [self._frame_id(img) for img in obs.images]
        tp = np.asarray(obs.target_points, dtype=np.float32).reshape(2, 2)
        self._sub.append((int(frame), float(sim_time), float(obs.speed), tp, ids))

    def step(self, state: Any, sim_time: float, frame: int, output: Any) -> None:
        row: dict[str, Any] = {
            "tick": int(frame),
            "time": float(sim_time),
            "speed": float(state.speed),
            "tp": np.asarray(state.target_points, dtype=np.float32).reshape(2, 2),
            "scene": None if state.scene is None else np.asarray(state.scene),
            "inputs": {k: np.asarray(v) for k, v in (state.scene_inputs or {}).items()},
        }
        if output is not None:
            row.update(
                path=np.asarray(output.path),
                waypoints=np.asarray(output.waypoints),
                decision=str(output.decision_text),
                safe_stop=bool(output.safe_stop),
                version=int(output.snapshot_version),
                age_ticks=int(output.age_ticks),
            )
        self._st.append(row)
        self._steps_in_chunk += 1
        if self._steps_in_chunk >= self.chunk_ticks:
            self.flush()

    def flush(self) -> None:
        """Write the buffered ticks as the next chunk (nothing when empty) and the manifest."""
        if not self._sub and not self._st:
            return
        arrays: dict[str, np.ndarray] = {}
        if self._sub:
            arrays["sub_tick"] = np.array([s[0] for s in self._sub], np.int64)
            arrays["sub_time"] = np.array([s[1] for s in self._sub], np.float64)
            arrays["sub_speed"] = np.array([s[2] for s in self._sub], np.float64)
            arrays["sub_tp"] = np.stack([s[3] for s in self._sub])
            k = max(len(s[4]) for s in self._sub)
            arrays["sub_frames"] = np.array([s[4] + [-1] * (k - len(s[4])) for s in self._sub], np.int64)
        for fid, img in self._frames.items():
            arrays[f"frame_{fid}"] = img
        st = self._st
        if st:
            arrays["st_tick"] = np.array([r["tick"] for r in st], np.int64)
            arrays["st_time"] = np.array([r["time"] for r in st], np.float64)
            arrays["st_speed"] = np.array([r["speed"] for r in st], np.float64)
            arrays["st_tp"] = np.stack([r["tp"] for r in st])
            if all(r["scene"] is not None for r in st):
                arrays["st_scene"] = np.stack([r["scene"] for r in st])
            names = set(st[0]["inputs"])
            if names and all(set(r["inputs"]) == names for r in st):
                for name in sorted(names):
                    pack(f"st_in_{name}", np.stack([r["inputs"][name] for r in st]), arrays)
            has_out = [r for r in st if "path" in r]
            if len(has_out) == len(st):
                arrays["out_path"] = np.stack([r["path"] for r in st])
                arrays["out_waypoints"] = np.stack([r["waypoints"] for r in st])
                arrays["out_decision"] = np.array([r["decision"] for r in st])
                arrays["out_safe_stop"] = np.array([r["safe_stop"] for r in st], bool)
                arrays["out_version"] = np.array([r["version"] for r in st], np.int64)
                arrays["out_age_ticks"] = np.array([r["age_ticks"] for r in st], np.int64)
        index = len(self.manifest["chunks"])
        name = f"chunk_{index:06d}.npz"
        with atomic_path(self.dir / name) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        size = (self.dir / name).stat().st_size
        self.bytes_written += size
        ticks = [s[0] for s in self._sub] + [r["tick"] for r in st]
        self.manifest["chunks"].append(
            {
                "file": name,
                "first_tick": min(ticks),
                "last_tick": max(ticks),
                "submits": len(self._sub),
                "steps": len(st),
                "frames": len(self._frames),
                "bytes": size,
            }
        )
        self.manifest["bytes"] = self.bytes_written
        atomic_write_json(self.dir / MANIFEST, self.manifest)
        self._reset_buffers()
        self._steps_in_chunk = 0

    def close(self) -> None:
        if not self.enabled:
            return
        self.enabled = False
        self.flush()
        self.manifest["complete"] = True
        atomic_write_json(self.dir / MANIFEST, self.manifest)


class RecordingRuntime:
    """The agent's runtime with every ``submit`` / ``step`` recorded; everything else is forwarded unchanged."""

    def __init__(self, runtime: Any, recorder: InputRecorder, strict: bool = False) -> None:
        self._runtime = runtime
        self._recorder: InputRecorder | None = recorder
        self._strict = strict

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runtime, name)

    def _guard(self, fn: Any, *args: Any) -> None:
        if self._recorder is None:
            return
        try:
            fn(*args)
        except Exception:
            if self._strict:
                raise
            log.exception("input recording failed; recording switched off for this route")
            recorder, self._recorder = self._recorder, None
            recorder.enabled = False

    def submit(self, obs: Any, sim_time: float, frame: int) -> None:
        if self._recorder is not None:
            self._guard(self._recorder.submit, obs, sim_time, frame)
        return self._runtime.submit(obs, sim_time, frame)

    def step(self, state: Any, sim_time: float, frame: int) -> Any:
        output = self._runtime.step(state, sim_time, frame)
        if self._recorder is not None:
            self._guard(self._recorder.step, state, sim_time, frame, output)
        return output

    def stats(self) -> dict:
        return self._runtime.stats()

    def close(self) -> None:
        try:
            self._runtime.close()
        finally:
            if self._recorder is not None:
                self._guard(self._recorder.close)


def wrap_runtime(runtime: Any, cfg: Any, out_dir: str | Path, config_dict: dict, rig: Any) -> RecordingRuntime:
    """``runtime`` recording into ``out_dir/inputs/`` with this agent's identity in the manifest."""
    camera = rig.get(rig.primary_camera)
    info = {
        "config": config_dict,
        "config_sha256": config_sha256(config_dict),
        "checkpoint": checkpoint_identity(cfg.model.checkpoint),
        "preset": cfg.model.preset,
        "rig": rig.name,
        "camera": {"id": camera.id, "width": camera.width, "height": camera.height},
        "history": {"buffer_len": cfg.history.buffer_len, "offsets": list(cfg.history.offsets)},
        "scene_inputs": bool(getattr(runtime, "needs_scene_inputs", False)),
        "lidar_form": "histogram (DrivingState.scene_inputs['lidar']); replay starts there"
        if getattr(runtime, "needs_scene_inputs", False)
        else None,
    }
    return RecordingRuntime(runtime, InputRecorder(Path(out_dir) / INPUTS_DIR, info), strict=bool(cfg.strict))
