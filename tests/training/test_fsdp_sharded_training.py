"""FSDP2 on CPU with gloo (training/fsdp.py and `automot train` with ``fsdp.enabled``), tiny preset.

The ``tiny`` preset (3 MoT layers, 2 vision blocks) is used instead of ``small``: ``small`` (8 x 512 UE layers,
768-token prefix) takes far too long for several forward / backward passes in 2 processes on 2 shared cores; tiny
still exercises the per-MoT-layer units, the vision-block units, the root unit and activation checkpointing.

The sharding primitives, 2 processes:

- one optimizer step under FSDP (fp32, activation checkpointing, 2 accumulated micro-batches) equals one DDP step
  on the same data: same loss, same updated weights within fp32 tolerance;
- a bf16 mixed-precision step runs and its loss is close to the fp32 one;
- a sharded checkpoint saved on 2 ranks and resumed on 1 rank gives the same next step (loss and weights) as
  continuing on 2 ranks.

The trainer (training/trainer.py): 2 ranks with bf16 mixed precision and gradient accumulation stop at a sharded
checkpoint, 1 rank resumes from it (resharded) and finishes with a full, loadable model directory.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from automot.model import build_model, make_dummy_inputs
from automot.training.synthetic import write_synthetic_dataset

PRESET = "tiny"
LR = 1e-2


def _batch(seed: int):
    obs, state = make_dummy_inputs(PRESET, batch=1, seed=seed)
    g = torch.Generator().manual_seed(seed)
    path = torch.randn(1, 20, 2, generator=g)
    wp = torch.randn(1, 6, 2, generator=g)
    return obs, state, path, wp


def _loss(model, batch):
    obs, state, path, wp = batch
    out = model(obs, state)
    logits = out.decision_logits.float()
    target = torch.zeros(logits.shape[:2], dtype=torch.long)
    ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten())
    return (out.path.float() - path).abs().mean() + (out.waypoints.float() - wp).abs().mean() + 0.1 * ce


def _full(model) -> dict[str, torch.Tensor]:
    return {
        n: (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().clone() for n, p in model.named_parameters()
    }


def _init(rank: int, world: int, tmp: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/pg_{world}", rank=rank, world_size=world)


def _two_ranks(rank: int, tmp: str) -> None:
    from automot.training.fsdp import load_sharded, save_sharded, shard_model, train_step

    _init(rank, 2, tmp)
    micro = [_batch(10 + 2 * rank), _batch(11 + 2 * rank)]
    # --- reference: DDP, two micro-batches accumulated under no_sync
    ref = build_model(PRESET, seed=0).train()
    ddp = torch.nn.parallel.DistributedDataParallel(ref, find_unused_parameters=True)
    opt = torch.optim.AdamW(ref.parameters(), lr=LR)
    with ddp.no_sync():
        l0 = _loss(ddp, micro[0])
        (l0 / 2).backward()
    l1 = _loss(ddp, micro[1])
    (l1 / 2).backward()
    opt.step()
    ddp_loss = (float(l0) + float(l1)) / 2
    want = {n: p.detach().clone() for n, p in ref.named_parameters()}
    # --- FSDP2, fp32, activation checkpointing, the same two micro-batches
    model = shard_model(build_model(PRESET, seed=0).train(), mixed_precision=False, activation_checkpointing=True)
    fopt = torch.optim.AdamW(model.parameters(), lr=LR)
    got = train_step(model, _loss, fopt, micro)
    assert abs(got["loss"] - ddp_loss) < 1e-5, (got["loss"], ddp_loss)
    full = _full(model)
    assert full.keys() == want.keys()
    for n, w in want.items():
        torch.testing.assert_close(full[n], w, atol=2e-5, rtol=1e-4, msg=n)
    # --- save on 2 ranks, then the next step on 2 ranks (to compare with the 1-rank resume)
    save_sharded(Path(tmp) / "ckpt", model, fopt, extra={"step": torch.tensor(1)})
    nxt = train_step(model, _loss, fopt, [_batch(100 + rank)])
    losses = torch.tensor([nxt["loss"]])
    dist.all_reduce(losses)
    after = _full(model)
    if rank == 0:
        torch.save({"loss": float(losses) / 2, "params": after}, Path(tmp) / "two_rank_next.pt")
    # --- bf16 mixed precision: runs, loss close to fp32
    bf = shard_model(build_model(PRESET, seed=0).train(), mixed_precision=True, activation_checkpointing=True)
    bopt = torch.optim.AdamW(bf.parameters(), lr=LR)
    got_bf = train_step(bf, _loss, bopt, micro, grad_clip=1.0)
    assert abs(got_bf["loss"] - ddp_loss) < 0.05 * abs(ddp_loss) + 1e-3, (got_bf["loss"], ddp_loss)
    assert all(p.dtype == torch.float32 for p in bf.parameters())  # fp32 sharded master weights
    # a resumed 2-rank model reads the checkpoint back exactly
    again = shard_model(build_model(PRESET, seed=1).train(), mixed_precision=False)
    extra = load_sharded(Path(tmp) / "ckpt", again, None, extra={"step": torch.tensor(0)})
    assert int(extra["step"]) == 1
    for n, p in _full(again).items():
        torch.testing.assert_close(p, full[n], atol=0, rtol=0, msg=n)
    dist.destroy_process_group()


def _one_rank(rank: int, tmp: str) -> None:
    from automot.training.fsdp import load_sharded, shard_model, train_step

    _init(rank, 1, tmp)
    model = shard_model(build_model(PRESET, seed=7).train(), mixed_precision=False)  # other init: must be loaded
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    load_sharded(Path(tmp) / "ckpt", model, opt)
    # the 2-rank step's global batch: rank 0's and rank 1's batch, as two accumulated micro-batches
    got = train_step(model, _loss, opt, [_batch(100), _batch(101)])
    ref = torch.load(Path(tmp) / "two_rank_next.pt")
    assert abs(got["loss"] - ref["loss"]) < 1e-5, (got["loss"], ref["loss"])
    for n, p in _full(model).items():
        torch.testing.assert_close(p, ref["params"][n], atol=2e-5, rtol=1e-4, msg=n)
    dist.destroy_process_group()


def test_fsdp_step_equals_ddp_and_resumes_on_one_rank(tmp_path):
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    mp.spawn(_two_ranks, args=(str(tmp_path),), nprocs=2, join=True)
    mp.spawn(_one_rank, args=(str(tmp_path),), nprocs=1, join=True)


# ------------------------------------------------------------------- the trainer with fsdp.enabled
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
