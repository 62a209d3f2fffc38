"""Fine-tuning the released layout: BEV tokens from precomputed route features or the frozen encoder (online).

Fixture: tests/doubles/pdm_lite_bev.py (PDM-Lite rows as the released index writes them, a tiny converted
released-layout checkpoint). Expected tokens come from the agent's runtime (runtime.build_runtime on the same
converted checkpoint, fed the raw camera frame and LiDAR points the way the agent feeds them).
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from doubles import pdm_lite_bev as fx
from safetensors.torch import load_file

from automot.model.released.loader import load_converted
from automot.model.released.sensors import camera_array, lidar_histogram
from automot.runtime import build_runtime
from automot.training.checkpoint import load_trainer_state
from automot.training.config import TrainConfig
from automot.training.trainer import Trainer


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("released_finetune")
    ckpt, bev = fx.converted_checkpoint(tmp)
    train, val = fx.write_dataset(tmp / "data", bev)
    return tmp, ckpt


def _dataset(prepared, tmp_path, drop=()):
    """A private copy of the fixture data with the feature files of ``drop`` routes deleted."""
    src, ckpt = prepared
    root = tmp_path / "data"
    shutil.copytree(src / "data", root)
    for route in drop:
        (root / route / "bev_encoder_feature" / "route_features.pt").unlink()
    names = ("pdm_lite_2hz_2tp_train_bev_encoder.jsonl", "pdm_lite_2hz_2tp_val_bev_encoder.jsonl")
    return root, ckpt, *(root / n for n in names)


def _trainer(prepared, tmp_path, drop=(), steps=2, name="run", data=None, epochs=1) -> Trainer:
    root, ckpt, train, val = _dataset(prepared, tmp_path / name, drop) if data is None else data
    cfg = TrainConfig.from_dict(fx.train_config(root, ckpt, tmp_path / name / "out", train, val, steps, epochs))
    return Trainer(cfg)


def _losses(run) -> list[float]:
    rows = [json.loads(line) for line in (run / "logs" / "scalars.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["tag"].startswith("train")]


TRAIN_ROUTES = fx.ROUTES[:-1]


@pytest.mark.parametrize(
    "drop, expect",
    [
        ((), {"precomputed": 4, "online": 0}),
        (fx.ROUTES, {"precomputed": 0, "online": 4}),  # every feature file deleted: the online fallback only
        (fx.ROUTES[:1], {"precomputed": 2, "online": 2}),  # one route's features deleted: a mix
    ],
    ids=["precomputed", "online", "mixed"],
)
def test_trains_the_released_layout_from_either_bev_path(prepared, tmp_path, drop, expect):
    trainer = _trainer(prepared, tmp_path, drop)
    assert trainer.bev_counts["train"] == {**expect, "skipped": 0}
    result = trainer.fit()
    assert result["global_step"] == 2 and result["final_dir"] is not None
    losses = _losses(tmp_path / "run" / "out")
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    val = trainer.val_history[-1]
    assert val["num_samples"] == 2 and math.isfinite(val["wp_l2_3s"])


def test_automot_train_on_the_mix_logs_validation_trajectory_metrics(prepared, tmp_path):
    """`automot train` (the CLI) on a mix of both BEV paths; validation on the val JSONL reaches TensorBoard."""
    import yaml
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from automot.cli import main

    root, ckpt, train, val = _dataset(prepared, tmp_path, drop=fx.ROUTES[:1])
    cfg = fx.train_config(root, ckpt, tmp_path / "out", train, val)
    cfg["log"]["tensorboard"] = True
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(path), "--no-progress"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "out" / "logs" / "scalars.jsonl").read_text().splitlines()]
    val_rows = [r for r in rows if r["tag"] == "val"]
    assert len(val_rows) == 1
    metrics = json.loads((tmp_path / "out" / "val_metrics.json").read_text())[-1]
    assert metrics["num_samples"] == 2  # the val JSONL's rows with a 3 s future (frames 8 and 10 of its route)
    events = EventAccumulator(str(tmp_path / "out" / "logs" / "tensorboard"))
    events.Reload()
    for key in ("wp_l2_1s", "wp_l2_2s", "wp_l2_3s", "path_l2", "decision_exact"):
        (event,) = events.Scalars(f"val/{key}")
        assert event.value == pytest.approx(metrics[key], rel=1e-6), key
    # the 3 s error of a model that barely trained is at least the 1 s error (errors grow with the horizon)
    assert metrics["wp_l2_3s"] >= metrics["wp_l2_1s"] > 0


def test_rows_with_neither_bev_path_are_skipped_and_counted(prepared, tmp_path):
    root, ckpt, train, val = _dataset(prepared, tmp_path, drop=fx.ROUTES[:1])
    for npy in (root / fx.ROUTES[0] / "bev_encoder_lidar_bev").glob("*.npy"):
        npy.unlink()
    cfg = TrainConfig.from_dict(fx.train_config(root, ckpt, tmp_path / "out", train, val))
    trainer = Trainer(cfg)
    assert trainer.bev_counts["train"] == {"precomputed": 2, "online": 0, "skipped": 2}
    assert any(fx.ROUTES[0].split("/")[1] in p and "skipped" in p for p in trainer.data_problems)


def _agent_tokens(ckpt, route: str, frame: int) -> torch.Tensor:
    """The tokens the released agent's runtime feeds its action expert for this frame: the raw camera frame and
    LiDAR cloud prepared with the agent's recipe (JPEG round trip included), encoded by the runtime, captured at
    the action expert's BEV projection during a fast step."""
    model = load_converted(ckpt)
    cfg = model.released.bev_config
    seen = []
    hook = model.action_io.bev_encoder_proj.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
    rt = build_runtime(model, mode="blocking", engine="torch")
    try:
        from automot.runtime.types import DrivingObservation, DrivingState

        images = [np.zeros((64, 128, 3), np.uint8)] * 4
        tp = np.array([[30.0, 0.0], [60.0, 0.0]], np.float32)
        rt.submit(DrivingObservation(images, tp, 4.0), 0.0, 0)
        inputs = {
            "rgb": camera_array(fx.camera_frame(route, frame), cfg),
            "lidar": lidar_histogram(fx.lidar_points(route, frame), cfg),
        }
        out = rt.step(DrivingState(tp, 4.0, scene_inputs=inputs), 0.05, 1)
        assert not out.safe_stop, out.safe_stop_reason
    finally:
        rt.close()
        hook.remove()
    return seen[-1][0].float()


def _trainer_tokens(trainer: Trainer, index: int) -> torch.Tensor:
    """The tokens the trainer feeds the action expert's BEV projection for one training sample."""
    seen = []
    proj = trainer.model.action_io.bev_encoder_proj
    hook = proj.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
    try:
        batch = trainer._on_device(trainer.collate([trainer.train_set[index]]))
        with torch.no_grad():
            trainer.model(batch.observation, batch.state)
    finally:
        hook.remove()
    return seen[-1][0].float()


@pytest.mark.parametrize("drop", [(), fx.ROUTES], ids=["precomputed", "online"])
def test_trainer_feeds_the_tokens_the_agent_computes_at_inference(prepared, tmp_path, drop):
    trainer = _trainer(prepared, tmp_path, drop)
    ep = trainer.train_set.episodes[0]
    rec = ep.records[0]
    assert (ep.name, rec.frame) == (fx.ROUTES[0].split("/")[1], fx.CURRENT[0])
    # The reasoning context is the row's four history frames; the current frame only feeds the BEV encoder.
    assert trainer.train_set.frames_for(0, 0) == [rec.frame - 8, rec.frame - 6, rec.frame - 4, rec.frame - 2]
    got = _trainer_tokens(trainer, 0)
    want = _agent_tokens(prepared[1], fx.ROUTES[0], rec.frame)
    assert got.shape == want.shape == (4, 368)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    other = _agent_tokens(prepared[1], fx.ROUTES[0], fx.CURRENT[1])
    assert (other - want).abs().max() > 1e-3  # another frame's tokens differ: the comparison can fail


def test_frozen_encoder_is_unchanged_by_training(prepared, tmp_path):
    trainer = _trainer(prepared, tmp_path, drop=fx.ROUTES, steps=2)
    encoder = trainer.scene_filler.encoder
    assert not any(p.requires_grad for p in encoder.parameters()) and not encoder.training
    assert not any(n.startswith("released") or "bev_encoder." in n for n, _ in trainer.model.named_parameters())
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    head_before = trainer.model.action_io.bev_encoder_proj.weight.detach().clone()
    trainer.fit()
    stored = load_file(str(prepared[1] / "bev_encoder.safetensors"))
    for k, v in encoder.state_dict().items():
        assert torch.equal(v, before[k]), k
        if k in stored:
            assert torch.equal(v, stored[k].to(v.dtype)), k
    # ... while the action branch's BEV projection did train
    assert not torch.equal(trainer.model.action_io.bev_encoder_proj.weight, head_before)


def test_resume_is_exact(prepared, tmp_path):
    data = _dataset(prepared, tmp_path / "data", drop=fx.ROUTES[:1])  # mixed: both BEV paths
    full = _trainer(prepared, tmp_path, name="full", steps=3, data=data, epochs=2)
    assert full.fit()["global_step"] == 3
    first = _trainer(prepared, tmp_path, name="split", steps=3, data=data, epochs=2)
    assert first.fit(max_steps=1)["final_dir"] is None
    cfg = TrainConfig.from_dict(fx.train_config(*data[:2], tmp_path / "split" / "out", *data[2:], 3, 2))
    resumed = Trainer(cfg, resume=tmp_path / "split" / "out")
    assert resumed.progress.global_step == 1
    resumed.fit()
    a, b = (sorted((tmp_path / n / "out" / "checkpoints").iterdir())[-1] for n in ("full", "split"))
    assert a.name == b.name
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert load_trainer_state(a)["progress"] == load_trainer_state(b)["progress"]
    la, lb = _losses(tmp_path / "full" / "out"), _losses(tmp_path / "split" / "out")
    assert la[1:] == lb[-len(la[1:]) :]
