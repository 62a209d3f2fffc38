"""Golden dumps from the original AutoMoT code and their comparison with our model (docs/released-checkpoint.md §6.3).

One frame = one ``.npz`` file (numpy arrays; bf16 tensors are stored as float32) written by scripts/golden_dump.py
on a GPU box with the original repo, or by tests. Every array is optional: a missing one skips its check.
Checks: exact for token ids, image grid, positions, prefill mask and decision ids; ``allclose`` with a relative
tolerance (default 2e-2, bf16 level; the absolute floor is rtol x RMS of the reference) for pixel values, per-layer
K/V, BEV feature, gen-pass inputs and final hidden states; route / waypoints within 1e-2 m.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from automot.model.automot import AutoMoTModel
from automot.model.released.prompt import build_released_observation
from automot.model.types import ActionState, Observation

# Array names of a golden frame (the dump script writes exactly these).
FIELDS = {
    "images": "(F, H, W, 3) uint8 RGB frames after PIL Lanczos resize (oldest first)",
    "pixel_values": "(N, C*T*P*P) float32 processor output",
    "image_grid_thw": "(F, 3) int64",
    "input_ids": "(T,) int64 prefill token ids",
    "position_ids": "(3, T) int64 mRoPE positions of the prefill",
    "prefill_mask": "(T, T) bool, True = may attend",
    "kv_layers": "(K,) int64 indices of the layers dumped in full",
    "keys": "(K, T, Hkv, D) float32 cached keys (post k_norm + RoPE)",
    "values": "(K, T, Hkv, D) float32 cached values",
    "target_points": "(2, 2) float32 ego frame, metres",
    "speed": "() float32 m/s",
    "bev_image": "(3, h, w) float32 camera input of the BEV encoder (0..255)",
    "bev_lidar": "(C, H, W) float32 LiDAR histogram input",
    "bev_feature": "(C, h, w) float32 BEV encoder output",
    "gen_inputs": "(N, H) float32 gen-pass input embeddings",
    "gen_hidden": "(N, H) float32 final hidden states after norm_mot_gen",
    "route": "(20, 2) float32",
    "waypoints": "(6, 2) float32",
    "decision_ids": "(8,) int64 argmax ids",
    # A second action pass on the same prefix (an odd tick): its action positions are shifted by the number of
    # action tokens (the released inferencer appends each pass's positions to the cached context).
    "reuse_route": "(20, 2) float32 route of the second pass",
    "reuse_waypoints": "(6, 2) float32 waypoints of the second pass",
}


@dataclass
class Check:
    name: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'} {self.name}: {self.detail}"


def save_frame(path: str | Path, **arrays) -> None:
    unknown = sorted(set(arrays) - set(FIELDS))
    if unknown:
        raise ValueError(f"golden frame: unknown arrays {unknown}; known: {sorted(FIELDS)}")
    np.savez_compressed(path, **{k: np.asarray(v) for k, v in arrays.items() if v is not None})


def load_frame(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _exact(name: str, ours, ref) -> Check:
    ours, ref = np.asarray(ours), np.asarray(ref)
    if ours.shape != ref.shape:
        return Check(name, False, f"shape {ours.shape} vs golden {ref.shape}")
    bad = int((ours != ref).sum())
    return Check(name, bad == 0, "identical" if bad == 0 else f"{bad} of {ref.size} entries differ")


def _close(name: str, ours, ref, rtol: float) -> Check:
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if ours.shape != ref.shape:
        return Check(name, False, f"shape {ours.shape} vs golden {ref.shape}")
    atol = rtol * float(np.sqrt(np.mean(ref**2)) or 1.0)
    err = np.abs(ours - ref)
    ok = bool(np.all(err <= atol + rtol * np.abs(ref)))
    return Check(name, ok, f"max abs diff {err.max():.3g} (atol {atol:.3g}, rtol {rtol})")


def _metres(name: str, ours, ref, tol: float) -> Check:
    err = float(np.abs(np.asarray(ours, dtype=np.float64) - np.asarray(ref, dtype=np.float64)).max())
    return Check(name, err <= tol, f"max error {err:.4f} m (tolerance {tol} m)")


def _f32(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy()


def compare_frame(
    model: AutoMoTModel, frame: dict[str, np.ndarray], rtol: float = 2e-2, metres: float = 1e-2
) -> list[Check]:
    """Run our model on the golden inputs, stage by stage (each stage fed the golden inputs), and compare."""
    checks: list[Check] = []
    dev = model.device
    tp, speed = frame.get("target_points"), frame.get("speed")
    obs = None
    if "images" in frame and tp is not None and speed is not None:
        obs = build_released_observation(model, list(frame["images"]), tp, float(speed))
        for name in ("input_ids", "image_grid_thw"):
            if name in frame:
                ours = obs.input_ids[0] if name == "input_ids" else obs.image_grid_thw
                checks.append(_exact(name, ours.numpy(), frame[name]))
        if "pixel_values" in frame:
            checks.append(_close("pixel_values", obs.pixel_values.numpy(), frame["pixel_values"], rtol))
    if "input_ids" in frame and "pixel_values" in frame and "image_grid_thw" in frame:
        # Isolate the LM from preprocessing: run on the golden ids and pixels.
        ids = torch.as_tensor(frame["input_ids"])[None]
        grid = torch.as_tensor(frame["image_grid_thw"])
        image_id = int(model.config.understanding.token_ids["image_token_id"])
        obs = Observation(
            ids, torch.ones_like(ids), torch.as_tensor(frame["pixel_values"]), grid, (ids == image_id).long()
        )
    if obs is None:
        return checks
    with torch.no_grad():
        pre = model.understanding.embed_prefix(obs.to(dev))
        if "position_ids" in frame:
            checks.append(_exact("position_ids", pre.position_ids[:, 0].cpu().numpy(), frame["position_ids"]))
        if "prefill_mask" in frame:
            checks.append(
                _exact("prefill_mask", model._prefix_mask(obs.to(dev), pre)[0].cpu().numpy(), frame["prefill_mask"])
            )
        snap = model.prefill(obs)
    if "keys" in frame and "kv_layers" in frame:
        for j, layer in enumerate(frame["kv_layers"].tolist()):
            k = snap.keys[layer, 0].transpose(0, 1)  # [T, Hkv, D]
            v = snap.values[layer, 0].transpose(0, 1)
            checks.append(_close(f"keys[layer {layer}]", _f32(k), frame["keys"][j], rtol))
            checks.append(_close(f"values[layer {layer}]", _f32(v), frame["values"][j], rtol))
    scene = None
    if "bev_feature" in frame:
        released = getattr(model, "released", None)
        if released is not None and "bev_image" in frame and "bev_lidar" in frame:
            enc = released.bev_encoder
            with torch.no_grad():
                feat = enc(
                    torch.as_tensor(frame["bev_image"])[None].to(dev), torch.as_tensor(frame["bev_lidar"])[None].to(dev)
                )
            checks.append(_close("bev_feature", _f32(feat[0]), frame["bev_feature"], rtol))
        scene = (
            torch.as_tensor(frame["bev_feature"])[None].flatten(2).transpose(1, 2)
        )  # golden feature feeds the gen pass
    if tp is None or speed is None:
        return checks
    state = ActionState(torch.as_tensor(tp, dtype=torch.float32)[None], torch.tensor([[float(speed)]]), scene)
    with torch.no_grad():
        x = model.action_io.embed(
            state.target_points.to(dev), state.speed.to(dev), None if scene is None else scene.to(dev), model.dtype
        )
        out = model.act(snap, state)
    if "gen_inputs" in frame:
        checks.append(_close("gen_inputs", _f32(x[0]), frame["gen_inputs"], rtol))
    if "gen_hidden" in frame:
        checks.append(_close("gen_hidden", _f32(out.hidden[0]), frame["gen_hidden"], rtol))
    if "route" in frame:
        checks.append(_metres("route", _f32(out.path[0]), frame["route"], metres))
    if "waypoints" in frame:
        checks.append(_metres("waypoints", _f32(out.waypoints[0]), frame["waypoints"], metres))
    if "decision_ids" in frame:
        checks.append(_exact("decision_ids", out.decision_logits[0].argmax(-1).cpu().numpy(), frame["decision_ids"]))
    if "reuse_route" in frame or "reuse_waypoints" in frame:
        with torch.no_grad():
            again = model.act(_reused(model, snap), state)
        if "reuse_route" in frame:
            checks.append(_metres("reuse_route", _f32(again.path[0]), frame["reuse_route"], metres))
        if "reuse_waypoints" in frame:
            checks.append(_metres("reuse_waypoints", _f32(again.waypoints[0]), frame["reuse_waypoints"], metres))
    return checks


def _reused(model: AutoMoTModel, snap):
    """The snapshot as a second action pass sees it: action positions one block of action tokens further on."""
    return dataclasses.replace(snap, next_position=snap.next_position + model.config.num_action_tokens)


def frame_from_model(
    model: AutoMoTModel, images: list[np.ndarray], tp: np.ndarray, speed: float, bev_image, bev_lidar, kv_layers=(0,)
) -> dict:
    """Every golden array computed by OUR model (for tests of the comparison, and as a template for the dump)."""
    obs = build_released_observation(model, images, tp, speed)
    builder = model.prompt_builder()
    frames = np.stack([builder.resize(im) for im in images])
    with torch.no_grad():
        pre = model.understanding.embed_prefix(obs)
        mask = model._prefix_mask(obs, pre)[0]
        snap = model.prefill(obs)
        feat = model.released.bev_encoder(torch.as_tensor(bev_image)[None], torch.as_tensor(bev_lidar)[None])
        scene = feat.flatten(2).transpose(1, 2)
        state = ActionState(torch.as_tensor(tp, dtype=torch.float32)[None], torch.tensor([[float(speed)]]), scene)
        x = model.action_io.embed(state.target_points, state.speed, scene, model.dtype)
        out = model.act(snap, state)
        again = model.act(_reused(model, snap), state)
    layers = list(kv_layers)
    return dict(
        images=frames,
        pixel_values=_f32(obs.pixel_values),
        image_grid_thw=obs.image_grid_thw.numpy(),
        input_ids=obs.input_ids[0].numpy(),
        position_ids=pre.position_ids[:, 0].numpy(),
        prefill_mask=mask.numpy(),
        kv_layers=np.asarray(layers, dtype=np.int64),
        keys=np.stack([_f32(snap.keys[i, 0].transpose(0, 1)) for i in layers]),
        values=np.stack([_f32(snap.values[i, 0].transpose(0, 1)) for i in layers]),
        target_points=np.asarray(tp, dtype=np.float32),
        speed=np.asarray(speed, dtype=np.float32),
        bev_image=np.asarray(bev_image, dtype=np.float32),
        bev_lidar=np.asarray(bev_lidar, dtype=np.float32),
        bev_feature=_f32(feat[0]),
        gen_inputs=_f32(x[0]),
        gen_hidden=_f32(out.hidden[0]),
        route=_f32(out.path[0]),
        waypoints=_f32(out.waypoints[0]),
        decision_ids=out.decision_logits[0].argmax(-1).numpy(),
        reuse_route=_f32(again.path[0]),
        reuse_waypoints=_f32(again.waypoints[0]),
    )
