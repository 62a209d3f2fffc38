"""The project's own on-disk driving dataset: writer (used by the collector) and reader.

Layout of a dataset root::

    ROOT/
      meta.json                        format name + version, rig, frame rate, cameras (size, fov, intrinsics)
      EPISODE/                         one folder per driven episode (any name without '/')
        frames/CAM/00042.jpg           RGB frame 42 of camera CAM as the agent's rig sees it (or .png)
        samples.jsonl                  one JSON object per training sample (see below)

A ``samples.jsonl`` line (ego frame: x forward, y right, metres; speeds m/s)::

    {"frame": 42, "history": [27, 32, 37], "speed": 7.31,
     "target_points": [[x1, y1], [x2, y2]],           current and next target point
     "path": [[x, y] x 20],                            every 1 m along the future route (meta.path_spacing)
     "waypoints": [[x, y] x 6],                        future positions at 0.5, 1.0, ... 3.0 s
     "decisions": ["keep", "decelerate", "stop"],     meta-actions now / +1 s / +2 s (schema.DECISIONS)
     "qa": [{"q": "How many vehicles ...?", "a": "Two ..."}]}   optional scene question / answer pairs

``history`` holds earlier frames (oldest first); the prompt's images are history + [frame]. Frames a sample
refers to must exist in ``frames/CAM``; numbers are stored with 6 decimals.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from automot.fsio import atomic_path, atomic_write_text
from automot.training.data.schema import DatasetError, DatasetMeta, Episode, SampleRecord

META = "meta.json"
SAMPLES = "samples.jsonl"
FRAMES = "frames"


class EpisodeWriter:
    """Writes one episode folder; use as a context manager or call ``close``."""

    def __init__(self, root: Path, meta: DatasetMeta) -> None:
        self.root = root
        self.meta = meta
        self.frames_written: set[int] = set()
        self.num_samples = 0
        root.mkdir(parents=True, exist_ok=False)
        self._samples = open(root / SAMPLES, "w")

    def add_frame(self, frame: int, images: dict[str, np.ndarray]) -> None:
        """Store every camera's RGB uint8 image of ``frame`` (each camera of meta.json, with its size)."""
        from PIL import Image

        missing = sorted(set(self.meta.cameras) - set(images))
        if missing:
            raise DatasetError(f"{self.root}: frame {frame} lacks camera(s) {missing}")
        for cam, image in images.items():
            info = self.meta.cameras.get(cam)
            if info is None:
                raise DatasetError(f"{self.root}: camera {cam!r} is not in meta.json ({sorted(self.meta.cameras)})")
            image = np.asarray(image)
            if image.dtype != np.uint8 or image.shape != (info.height, info.width, 3):
                raise DatasetError(
                    f"{self.root}: camera {cam} frame {frame}: expected uint8 ({info.height}, {info.width}, 3), "
                    f"got {image.dtype} {image.shape}"
                )
            out = self.root / FRAMES / cam
            out.mkdir(parents=True, exist_ok=True)
            # JPEG quality 95: close to the CARLA datasets' files at a fraction of PNG's size.
            kwargs = {"quality": 95} if self.meta.image_format == "jpg" else {}
            fmt = "JPEG" if self.meta.image_format == "jpg" else "PNG"  # explicit: the temporary name ends in .tmp
            with atomic_path(out / f"{frame:05d}.{self.meta.image_format}") as tmp:
                Image.fromarray(image).save(tmp, format=fmt, **kwargs)
        self.frames_written.add(int(frame))

    def add_sample(self, record: SampleRecord) -> None:
        where = f"{self.root / SAMPLES} sample {self.num_samples}"
        record.validate(where)
        needed = [f for f in [*record.history, record.frame] if f not in self.frames_written]
        if needed:
            raise DatasetError(f"{where}: frames {needed} were not written before the sample")
        self._samples.write(json.dumps(record.to_json()) + "\n")
        self.num_samples += 1

    def close(self) -> None:
        if not self._samples.closed:
            self._samples.close()

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class DatasetWriter:
    """Creates a dataset root with its ``meta.json`` and hands out episode writers."""

    def __init__(self, root: str | Path, meta: DatasetMeta, overwrite: bool = False) -> None:
        if meta.image_format not in ("jpg", "png"):
            raise DatasetError(f"image_format: expected 'jpg' or 'png', got {meta.image_format!r}")
        self.root = Path(root)
        self.meta = meta
        if (self.root / META).exists() and not overwrite:
            existing = read_meta(self.root)
            if existing.to_json() != meta.to_json():
                raise DatasetError(f"{self.root}: holds a dataset with a different meta.json (use overwrite)")
        elif overwrite and self.root.exists():
            # Only a dataset is deleted: a folder without meta.json may be anything (a home directory, a run).
            if not self.root.is_dir() or (any(self.root.iterdir()) and not (self.root / META).is_file()):
                raise DatasetError(
                    f"{self.root}: not a dataset root (no {META}); overwrite deletes only datasets, choose another folder"
                )
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.root / META, json.dumps(meta.to_json(), indent=2))

    def episode(self, name: str) -> EpisodeWriter:
        if not name or "/" in name or name.startswith("."):
            raise DatasetError(f"episode name {name!r}: must be a plain folder name")
        if (self.root / name).exists():
            raise DatasetError(f"{self.root / name}: episode exists already")
        return EpisodeWriter(self.root / name, self.meta)


def read_meta(root: str | Path) -> DatasetMeta:
    path = Path(root) / META
    if not path.is_file():
        raise DatasetError(f"{path}: missing (not an {DatasetMeta.__name__} dataset root)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: invalid JSON ({exc})") from None
    return DatasetMeta.from_json(data, str(path))


def read_samples(path: Path) -> list[SampleRecord]:
    records = []
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{where}: invalid JSON ({exc})") from None
            records.append(SampleRecord.from_json(row, where))
    return records


def read_dataset(root: str | Path, camera: str | None = None) -> list[Episode]:
    """All episodes of a dataset root (sorted by name), reading images of ``camera`` (default: the first)."""
    root = Path(root)
    meta = read_meta(root)
    cam = camera or next(iter(meta.cameras))
    if cam not in meta.cameras:
        raise DatasetError(f"{root / META}: no camera {cam!r} (cameras: {sorted(meta.cameras)})")
    episodes = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and (p / SAMPLES).is_file()):
        frames = folder / FRAMES / cam
        ext = meta.image_format

        def image_path(frame: int, frames: Path = frames, ext: str = ext) -> Path:
            return frames / f"{frame:05d}.{ext}"

        episodes.append(Episode(folder.name, read_samples(folder / SAMPLES), image_path))
    if not episodes:
        raise DatasetError(f"{root}: no episode folders with {SAMPLES}")
    return episodes
