"""A tiny PDM-Lite dataset shaped like the released AutoMoT training data, plus a tiny converted checkpoint.

Layout and fields as OscarHuangWind/AutoMoT @ 278fa5a docs/TRAINING.md and
Automot/mot/data/automot/create_pdm_lite_bev_encoder_jsonl.py describe them:
``pdm_lite_2hz_2tp_{train,val}_bev_encoder.jsonl`` rows with ``image`` (four history frames), ``front`` (current
frame), ``bev_encoder_feature`` (``<scenario>/<route>/bev_encoder_feature/route_features.pt``, relative to the data
root), ``bev_encoder_feature_frame`` (``"0010"``) and a human turn with ``<image>`` x4 + ``<bev>``; each route has
``measurements/*.json.gz``, ``rgb/*.jpg``, ``bev_encoder_lidar_bev/*.npy`` and ``bev_encoder_feature/route_features.pt``
(``frame_nums``, ``bev_features`` [N, C, H, W], ``bev_upsamples`` [N, C', H', W']). Sizes are the tiny released
model's (model/released/synthetic.py): 128x64 camera crop, 1 x 64 x 64 LiDAR grid, [368, 2, 2] features.
"""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import cv2
import numpy as np
import torch

from automot.model.released.loader import convert_released
from automot.model.released.sensors import camera_array, lidar_histogram
from automot.model.released.synthetic import build_tiny_released, tiny_released_config, write_released_folder

ROUTES = ("Town12/Route_a_Rep0", "Town12/Route_c_Rep0", "Town13/Route_b_Rep0")
FRAMES = 24  # 4 Hz, 6 s
CURRENT = (8, 10, 12)  # rows' current frames (every 2nd frame: "2hz"); 3 s of future each
CAMERA = (80, 160)  # stored frame height, width (>= the 64 x 128 crop)


def converted_checkpoint(tmp: Path, seed: int = 3) -> tuple[Path, torch.nn.Module]:
    """A tiny released-layout model written as the release ships it, then `automot convert`ed (fp32)."""
    model, bev = build_tiny_released(seed)
    released = write_released_folder(model, bev, tmp / "released")
    return convert_released(released, tmp / "converted", dtype="fp32", preset=tiny_released_config()), bev


def camera_frame(route: str, frame: int) -> np.ndarray:
    """The raw BGR camera frame as the sensor gave it (before the recorder's JPEG encoding)."""
    rng = np.random.default_rng([zlib.crc32(route.encode()), frame])
    return rng.integers(0, 256, (*CAMERA, 3), dtype=np.uint8)


def lidar_points(route: str, frame: int) -> np.ndarray:
    """Ego-frame points: a wall ahead and some ground clutter, different per frame."""
    rng = np.random.default_rng([zlib.crc32(route.encode()), frame, 1])
    wall = np.stack([np.full(200, 5.0 - 0.1 * (frame % 5)), rng.uniform(-6, 6, 200), rng.uniform(-1.5, 1.0, 200)], 1)
    ground = np.stack([rng.uniform(-8, 8, 300), rng.uniform(-8, 8, 300), rng.uniform(-2.4, -1.0, 300)], 1)
    return np.concatenate([wall, ground])


def _gz(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        json.dump(data, f)


def _rgb(route: str, i: int) -> str:
    return f"{route}/rgb/{i:04d}.jpg"


def row(route: str, frame: int) -> dict:
    """One released index row (bev_encoder variant)."""
    prompt = "<image>\n" * 4 + "<bev>\nThe target point is (30.0, 0.0), (60.0, 0.0). The velocity is 4.0 m/s."
    return {
        "id": f"{route.replace('/', '_')}_{frame:04d}",
        "image": [_rgb(route, i) for i in (frame - 8, frame - 6, frame - 4, frame - 2)],
        "front": [_rgb(route, frame)],
        "future": [_rgb(route, frame + 2)],
        "bev_encoder_feature": f"{route}/bev_encoder_feature/route_features.pt",
        "bev_encoder_feature_frame": f"{frame:04d}",
        "conversations": [{"from": "human", "value": prompt}, {"from": "gpt", "value": "keep, keep, keep"}],
    }


def encoder_inputs(root: Path, route: str, frame: int, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 3, 64, 128), (1, 1, 64, 64) encoder inputs read back from the stored files (the authors' recipe)."""
    bgr = cv2.imread(str(root / _rgb(route, frame)), cv2.IMREAD_COLOR)
    lidar = np.load(root / route / "bev_encoder_lidar_bev" / f"{frame:04d}.npy")
    return torch.from_numpy(camera_array(bgr, cfg, jpeg=False))[None], torch.from_numpy(lidar)[None]


def write_features(root: Path, route: str, bev, frames=CURRENT) -> Path:
    """route_features.pt of ``frames``, computed frame by frame with ``bev`` (fp32) from the stored inputs."""
    feats = []
    with torch.no_grad():
        for f in frames:
            feats.append(bev(*encoder_inputs(root, route, f, bev.cfg)).float())
    bev_features = torch.cat(feats)
    ups = torch.nn.functional.interpolate(bev_features[:, :8], size=(16, 16))  # stand-in for the top-down output
    path = root / route / "bev_encoder_feature" / "route_features.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"frame_nums": [f"{f:04d}" for f in frames], "bev_features": bev_features, "bev_upsamples": ups}, path)
    return path


def write_dataset(root: Path, bev, routes=ROUTES, features: bool = True) -> tuple[Path, Path]:
    """Routes + train / val index files; returns (train jsonl, val jsonl). Val = the last route's rows."""
    for r, route in enumerate(routes):
        folder = root / route
        for i in range(FRAMES):
            x = 4.0 * i / 4.0 + 3.0 * r
            m = {
                "pos_global": [x, 0.0],
                "theta": 0.0,
                "speed": 4.0,
                "target_point": [30.0, 0.0],
                "target_point_next": [60.0, 0.0],
                "command": 4,
                "ego_matrix": [[1, 0, 0, x], [0, 1, 0, 0.0], [0, 0, 1, 0], [0, 0, 0, 1]],
                "route": [[2.5 + k, 0.05 * k * (r + 1)] for k in range(30)],
            }
            _gz(folder / "measurements" / f"{i:04d}.json.gz", m)
            (folder / "rgb").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / "rgb" / f"{i:04d}.jpg"), camera_frame(route, i))  # OpenCV default q95
            (folder / "bev_encoder_lidar_bev").mkdir(parents=True, exist_ok=True)
            np.save(folder / "bev_encoder_lidar_bev" / f"{i:04d}.npy", lidar_histogram(lidar_points(route, i), bev.cfg))
        if features:
            write_features(root, route, bev)
    train = root / "pdm_lite_2hz_2tp_train_bev_encoder.jsonl"
    val = root / "pdm_lite_2hz_2tp_val_bev_encoder.jsonl"
    train.write_text("".join(json.dumps(row(rt, f)) + "\n" for rt in routes[:-1] for f in CURRENT))
    val.write_text("".join(json.dumps(row(routes[-1], f)) + "\n" for f in CURRENT))
    return train, val


def train_config(
    root: Path, checkpoint: Path, out: Path, train: Path, val: Path, steps: int = 2, epochs: int = 1
) -> dict:
    """A training config dict for the fixture (action stage, batch 2, CPU, no progress bar)."""
    return {
        "output_dir": str(out),
        "device": "cpu",
        "num_threads": 1,
        "model": {"preset": None, "checkpoint": str(checkpoint)},
        "data": {
            "format": "pdm_lite",
            "train": [str(root)],
            "val": [str(root)],
            "sample_list": str(train),
            "val_sample_list": str(val),
            "batch_size": 2,
        },
        "optim": {"lr": 1e-3, "warmup_steps": 0},
        "stages": [{"name": "action", "epochs": epochs, "max_steps": steps}],
        "log": {"every_steps": 1, "tensorboard": False, "progress": False},
    }
