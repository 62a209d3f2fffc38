"""FSDP2 on CPU with gloo (training/fsdp.py), 2 processes, on the ``tiny`` preset.

The ``tiny`` preset (3 MoT layers, 2 vision blocks) is used instead of ``small``: ``small`` (8 x 512 UE layers,
768-token prefix) takes far too long for several forward / backward passes in 2 processes on 2 shared cores; tiny
still exercises the per-MoT-layer units, the vision-block units, the root unit and activation checkpointing.

- one optimizer step under FSDP (fp32, activation checkpointing, 2 accumulated micro-batches) equals one DDP step
  on the same data: same loss, same updated weights within fp32 tolerance;
- a bf16 mixed-precision step runs and its loss is close to the fp32 one;
- a sharded checkpoint saved on 2 ranks and resumed on 1 rank gives the same next step (loss and weights) as
  continuing on 2 ranks.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from automot.model import build_model, make_dummy_inputs

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
