"""``automot data bev-cache DATA --checkpoint CKPT``: precompute each PDM-Lite route's ``route_features.pt``.

Writes ``ROUTE/bev_encoder_feature/route_features.pt`` (``frame_nums``, ``bev_features`` ``[N, C, H, W]`` float32),
the file the released training reads in preference to the online encoder (OscarHuangWind/AutoMoT @ 278fa5a,
docs/TRAINING.md; its extractor is ``Automot/preprocess/extract_pdm_lite_bev_encoder_features.py``), with the
checkpoint's BEV encoder in its stored dtype -- the encoder the trainer's online fallback and the agent use. The
inputs are read exactly as the online fallback reads them (training/data/bev_features.py ``online_inputs``), so a
cached frame's tokens equal the online path's (up to batched-vs-single kernels). ``bev_upsamples`` is not written:
this project's encoder stops at the fused LiDAR feature the action branch uses (model/released/bev_encoder.py),
and the file format makes it optional.

Frames: with ``--sample-list`` the current frame of every row of those index files (``bev_encoder_feature_frame``,
else ``front[0]``, else ``image[-1]``), else every ``rgb/*.jpg`` frame that has a LiDAR array. Each route's file is
written atomically (temporary file + rename) once all its frames are encoded, so an interrupted run leaves every
file complete or absent; a re-run skips routes whose file exists (``--overwrite`` recomputes them). Frames whose
inputs are missing or malformed are left out and counted (the trainer then skips them, or falls back).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from automot.fsio import atomic_path
from automot.training.data.bev_features import FEATURE_DIR, FEATURE_FILE, LIDAR_DIR, online_inputs, route_ref
from automot.training.data.schema import DatasetError

log = logging.getLogger(__name__)


def frames_from_sample_lists(lists: list[Path], data_root: Path) -> dict[Path, set[int]]:
    """route folder -> current frames named by the rows of AutoMoT index files (routes under ``data_root``)."""
    from automot.training.data.pdm_lite import row_frames

    out: dict[Path, set[int]] = {}
    for jsonl in lists:
        with open(jsonl) as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    current, _ = row_frames(row, f"{jsonl}:{line_no}")
                except (json.JSONDecodeError, AttributeError) as exc:
                    raise DatasetError(f"{jsonl}:{line_no}: not a JSON object row ({exc})") from None
                route = Path(current).parent.parent
                frame = row.get("bev_encoder_feature_frame")
                frame = int(frame) if str(frame).strip().isdigit() else int(Path(current).stem)
                out.setdefault(route if route.is_absolute() else data_root / route, set()).add(frame)
    return out


def frames_on_disk(data_root: Path) -> dict[Path, set[int]]:
    """route folder -> every frame with both ``rgb/NNNN.jpg`` and ``bev_encoder_lidar_bev/NNNN.npy``."""
    from automot.training.data.bench2drive import find_routes

    out: dict[Path, set[int]] = {}
    for route in find_routes(data_root, LIDAR_DIR, max_depth=4):
        lidar = {p.stem for p in (route / LIDAR_DIR).glob("*.npy")}
        frames = {int(p.stem) for p in (route / "rgb").glob("*.jpg") if p.stem in lidar and p.stem.isdigit()}
        if frames:
            out[route] = frames
    return out


def encode_batch(encoder, rgb: torch.Tensor, lidar: torch.Tensor) -> torch.Tensor:
    """float32 [B, C, H, W] features, computed as runtime/scene.py's runner does (inputs cast to the encoder's
    device and dtype, inference mode)."""
    p = next(encoder.parameters())
    with torch.inference_mode():
        return encoder(rgb.to(p.device, p.dtype), lidar.to(p.device, p.dtype)).float().cpu()


def cache_route(encoder, route: Path, frames: list[int], batch_size: int, bar=None) -> tuple[int, list[str]]:
    """Encode ``frames`` of one route and write its feature file; (frames written, problems)."""
    cfg = encoder.cfg
    names, feats, problems = [], [], []
    for start in range(0, len(frames), batch_size):
        rgb, lidar, batch_names = [], [], []
        for frame in frames[start : start + batch_size]:
            ref = route_ref(route, frame)
            try:
                inputs = online_inputs(ref, cfg)
            except DatasetError as exc:
                problems.append(str(exc))
                continue
            rgb.append(torch.from_numpy(inputs["rgb"]))
            lidar.append(torch.from_numpy(inputs["lidar"]))
            batch_names.append(ref.frame)
        if batch_names:
            feats.append(encode_batch(encoder, torch.stack(rgb), torch.stack(lidar)))
            names += batch_names
        if bar is not None:
            bar.update(len(frames[start : start + batch_size]))
    if names:
        out = route / FEATURE_DIR / FEATURE_FILE
        with atomic_path(out) as tmp:
            torch.save({"frame_nums": names, "bev_features": torch.cat(feats)}, tmp)
    return len(names), problems


def run_cache(
    data_root: str | Path,
    checkpoint: str | Path,
    *,
    batch_size: int = 16,
    sample_lists: list[str] | None = None,
    device: str = "cpu",
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Cache every route's features; returns the summary written / skipped / empty routes, frames, problems."""
    from automot.training.released import load_bev_encoder

    root = Path(data_root)
    encoder = load_bev_encoder(checkpoint, device)  # NoBEVEncoderError (exit 2) before any work
    wanted = frames_from_sample_lists([Path(p) for p in sample_lists], root) if sample_lists else frames_on_disk(root)
    if not wanted:
        raise DatasetError(f"{root}: no route with rgb/*.jpg + {LIDAR_DIR}/*.npy frames to encode")
    todo = {
        r: sorted(f) for r, f in sorted(wanted.items()) if overwrite or not (r / FEATURE_DIR / FEATURE_FILE).is_file()
    }
    summary = {"routes": len(wanted), "written": 0, "skipped_existing": len(wanted) - len(todo), "empty": 0}
    summary.update({"frames": 0, "frames_failed": 0, "problems": []})
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(len(f) for f in todo.values()), unit="frame", desc="bev-cache")
    try:
        for route, frames in todo.items():
            done, problems = cache_route(encoder, route, frames, batch_size, bar)
            summary["written" if done else "empty"] += 1
            summary["frames"] += done
            summary["frames_failed"] += len(problems)
            summary["problems"] += problems[:20]
            for p in problems:
                log.warning("bev-cache: frame left out: %s", p)
    finally:
        if bar is not None:
            bar.close()
    return summary
