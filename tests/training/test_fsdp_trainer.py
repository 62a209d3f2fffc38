"""`automot train` with `fsdp.enabled` (training/trainer.py + training/fsdp.py) on CPU / gloo, tiny preset:
2 ranks with bf16 mixed precision and gradient accumulation stop at a sharded checkpoint, 1 rank resumes from it
(resharded) and finishes with a full, loadable model directory."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp

from automot.training.synthetic import write_synthetic_dataset


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(dataset: Path, out: Path):
    from automot.training.config import TrainConfig

    return TrainConfig.from_dict(
        {
            "output_dir": str(out),
            "num_threads": 1,
            "precision": "bf16",
            "fsdp": {"enabled": True, "activation_checkpointing": True},
            "data": {"train": [str(dataset)], "batch_size": 1, "val_fraction": 0.5},
            "optim": {"lr": 2e-3, "warmup_steps": 1, "grad_accum": 2},
            "stages": [{"name": "joint", "epochs": 1, "max_steps": 3}],
            "log": {"every_steps": 1, "progress": False, "tensorboard": False},
            "checkpoint": {"every_steps": 0, "keep_last": 2},
        }
    )


def _worker(rank: int, world: int, port: int, dataset: str, out: str, resume: bool) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    from automot.training.distributed import shutdown
    from automot.training.trainer import Trainer

    trainer = Trainer(_config(Path(dataset), Path(out)), resume=out if resume else None)
    try:
        result = trainer.fit(max_steps=None if resume else 2)
    finally:
        shutdown(trainer.info)
    if rank == 0:
        Path(out, f"result_{world}.json").write_text(json.dumps({"global_step": result["global_step"]}))


def test_fsdp_training_two_ranks_then_resume_on_one(tmp_path):
    dataset = write_synthetic_dataset(tmp_path / "syn", episodes=2, seed=0)
    out = tmp_path / "run"
    mp.spawn(_worker, args=(2, _port(), str(dataset), str(out), False), nprocs=2, join=True)
    ckpt = out / "checkpoints" / "step_0000002"
    assert (ckpt / "sharded" / ".metadata").is_file() and (ckpt / "trainer_state.pt").is_file()
    assert len(list((ckpt / "sharded").glob("*.distcp"))) == 2  # one shard file per rank
    assert json.loads((out / "result_2.json").read_text())["global_step"] == 2
    state = torch.load(ckpt / "trainer_state.pt", weights_only=True)
    assert state["world_size"] == 2 and state["progress"]["global_step"] == 2
    mp.spawn(_worker, args=(1, _port(), str(dataset), str(out), True), nprocs=1, join=True)
    steps = json.loads((out / "result_1.json").read_text())["global_step"]
    assert steps == 3  # continued from step 2 to the stage's max_steps
    from automot.model.io import load_pretrained

    model = load_pretrained(out / "final")  # the final directory holds the full (gathered) weights
    assert all(torch.isfinite(p).all() for p in model.parameters())
    lines = [json.loads(x) for x in (out / "logs" / "scalars.jsonl").read_text().splitlines()]
    train = {r["step"]: r["loss"] for r in lines if r.get("tag") == "train/joint"}
    assert sorted(train) == [1, 2, 3] and all(v == v for v in train.values())  # finite, logged by both runs
