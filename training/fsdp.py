"""Full-size training support: FSDP2 sharding per MoT layer, bf16 mixed precision, activation checkpointing,
sharded checkpoints (torch.distributed.checkpoint) that resume on a different number of ranks.

FSDP units. ``torch.distributed.fsdp.fully_shard`` gathers a unit's parameters in a forward pre-hook of the
module it wraps. The model's joint forward does not call its layers' ``forward`` (``model/mot.py`` runs one MoT
layer as a function of ``[UE layer i, AE layer i]``), so each MoT layer gets a small wrapper, :class:`MoTUnit`,
whose ``forward`` is ``AutoMoTModel.joint_layer(i, ...)``, and the model's own ``forward`` runs its layer loop
through the units (``AutoMoTModel.set_layer_runner``). The wrapper holds the two layers as children; they stay
where they are in the model's module tree too, so parameter names, ``state_dict`` keys and checkpoints are
unchanged. The units are sharded first, then every vision block, then the model itself as the root unit with the
units' parameters passed as ``ignored_params`` (they are managed by their unit). :func:`layer_units` lists the
groups (also used by training/memory.py).

Mixed precision: ``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)`` -- parameters stay fp32 and
sharded (the optimizer's master weights); compute runs on bf16 all-gathered copies; gradients are reduce-scattered
in fp32. Activation checkpointing: each unit's computation (MoT layers and vision blocks) runs under
``torch.utils.checkpoint`` (non-reentrant), recomputed in backward after FSDP has re-gathered the unit.

Gradient accumulation: :func:`train_step` turns gradient reduction off for all but the last micro-batch
(``set_requires_gradient_sync``), so one optimizer step of ``accum`` micro-batches reduces once.

Checkpoints: :func:`save_sharded` / :func:`load_sharded` write / read ``torch.distributed.checkpoint`` folders
(one file per rank plus ``.metadata``) holding the model and optimizer state dicts as DTensors; loading reshards
to the current world size (2 ranks -> 1 rank, 1 -> 4, ...). A plain (unsharded) module can load one as well.

Not covered here: LoRA adapters and the VQA loss under FSDP (they go through the UE's own HF forward).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.checkpoint import checkpoint

from automot.model.automot import AutoMoTModel


def vision_blocks(model: AutoMoTModel) -> list[nn.Module]:
    visual = getattr(getattr(model.understanding.vlm, "model", None), "visual", None)
    return list(getattr(visual, "blocks", []) or [])


def layer_units(model: AutoMoTModel) -> list[list[nn.Module]]:
    """The FSDP unit groups: [UE layer i, AE layer i] per MoT layer, then [vision block j] per vision block."""
    units = [[model.understanding.layers[i], model.action_layers[i]] for i in range(model.config.num_layers)]
    return units + [[block] for block in vision_blocks(model)]


class MoTUnit(nn.Module):
    """MoT layer i (UE layer + AE layer) as a module whose forward is the model's joint layer: the FSDP2 unit."""

    def __init__(self, model: AutoMoTModel, i: int, activation_checkpointing: bool = True) -> None:
        super().__init__()
        self.ue = model.understanding.layers[i]
        self.ae = model.action_layers[i]
        self.i = i
        # not a child: the model is the root unit, and the unit must not own (or re-shard) the whole model
        self.__dict__["model"] = model
        self.activation_checkpointing = activation_checkpointing

    def _run(self, x_ue, x_ae, cos_ue, sin_ue, cos_ae, sin_ae, mask):
        rope = [(cos_ue, sin_ue), (cos_ae, sin_ae)]
        return self.__dict__["model"].joint_layer(self.i, x_ue, x_ae, rope, mask)

    def forward(self, x_ue, x_ae, rope, mask):
        # rope flattened to tensors: torch.utils.checkpoint saves tensor arguments, not nested lists
        args = (x_ue, x_ae, *rope[0], *rope[1], mask)
        if self.activation_checkpointing and torch.is_grad_enabled():
            return checkpoint(self._run, *args, use_reentrant=False)
        return self._run(*args)


class UnitRunner:
    """The model's layer runner under FSDP: layer i goes through ``units[i]`` (so its FSDP hooks run)."""

    def __init__(self, units: list[MoTUnit]) -> None:
        self.units = units

    def __call__(self, i, x_ue, x_ae, rope, mask):
        return self.units[i](x_ue, x_ae, rope, mask)


def _checkpointed_forward(module: nn.Module) -> None:
    """Run ``module``'s forward under non-reentrant activation checkpointing (instance override; the module's
    hooks, FSDP's included, stay outside the checkpointed region)."""
    inner = module.forward

    def forward(*args, **kwargs):
        if torch.is_grad_enabled():
            return checkpoint(inner, *args, use_reentrant=False, **kwargs)
        return inner(*args, **kwargs)

    module.forward = forward


def shard_model(
    model: AutoMoTModel,
    mesh=None,
    mixed_precision: bool = True,
    activation_checkpointing: bool = True,
    reshard_after_forward: bool = True,
) -> AutoMoTModel:
    """FSDP2-shard ``model`` in place (one unit per MoT layer and per vision block, the rest in the root unit)
    over ``mesh`` (default: all ranks of the default process group); returns it (now an FSDPModule)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    if mesh is None:
        from torch.distributed.device_mesh import init_device_mesh

        mesh = init_device_mesh(model.device.type, (dist.get_world_size(),))
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if mixed_precision else None
    kw = {"mesh": mesh, "reshard_after_forward": reshard_after_forward}
    if mp is not None:
        kw["mp_policy"] = mp
    units = [MoTUnit(model, i, activation_checkpointing) for i in range(model.config.num_layers)]
    managed: set[nn.Parameter] = set()
    for unit in units:
        managed |= set(unit.parameters())
        fully_shard(unit, **kw)
    for block in vision_blocks(model):
        managed |= set(block.parameters())
        if activation_checkpointing:
            _checkpointed_forward(block)
        fully_shard(block, **kw)
    # the units' parameters were replaced by DTensors in place; collect them again for the root's ignore set
    ignored = {p for unit in units for p in unit.parameters()} | {
        p for block in vision_blocks(model) for p in block.parameters()
    }
    model.__dict__["mot_units"] = units
    model.set_layer_runner(UnitRunner(units))
    fully_shard(model, ignored_params=ignored, **kw)
    del managed
    return model


def set_gradient_sync(model: nn.Module, enabled: bool) -> None:
    """Reduce gradients on the next backward (False: accumulate locally, for all but the last micro-batch)."""
    for unit in model.__dict__.get("mot_units", []):
        unit.set_requires_gradient_sync(enabled, recurse=False)
    for block in vision_blocks(model):
        if hasattr(block, "set_requires_gradient_sync"):
            block.set_requires_gradient_sync(enabled, recurse=False)
    if hasattr(model, "set_requires_gradient_sync"):
        model.set_requires_gradient_sync(enabled, recurse=False)


def all_parameters(model: AutoMoTModel) -> list[nn.Parameter]:
    """Every trainable parameter once (model tree; the units' parameters are the same objects)."""
    return [p for p in model.parameters() if p.requires_grad]


def train_step(model, loss_fn, optimizer, micro_batches: list, grad_clip: float = 0.0) -> dict:
    """One optimizer step over ``micro_batches`` (gradient accumulation: the mean of their losses, gradients
    reduced once). ``loss_fn(model, batch) -> scalar``. Returns {'loss', 'grad_norm'}."""
    accum = len(micro_batches)
    total = 0.0
    for j, batch in enumerate(micro_batches):
        set_gradient_sync(model, j == accum - 1)
        loss = loss_fn(model, batch)
        (loss / accum).backward()
        total += float(loss.detach()) / accum
    out = {"loss": total}
    if grad_clip > 0:
        norm = torch.nn.utils.clip_grad_norm_(all_parameters(model), grad_clip)
        out["grad_norm"] = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return out


# ---------------------------------------------------------------------------------------------- checkpoints
def save_sharded(path: str | Path, model: nn.Module, optimizer=None, extra: dict | None = None) -> Path:
    """Sharded checkpoint (torch.distributed.checkpoint) of model + optimizer (+ ``extra`` plain state) to the
    folder ``path``; collective: every rank calls it. Written to a staging folder and renamed by rank 0 once
    every rank has finished, so a crash never leaves a half-written checkpoint under ``path``."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    path = Path(path)
    distributed = dist.is_available() and dist.is_initialized()
    rank = dist.get_rank() if distributed else 0
    staging = path.parent / f".staged.{path.name}.tmp"
    if rank == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        if staging.exists():
            import shutil

            shutil.rmtree(staging)
    if distributed:
        dist.barrier()
    if optimizer is not None:
        model_sd, optim_sd = get_state_dict(model, optimizer)
        state = {"model": model_sd, "optim": optim_sd}
    else:
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        state = {"model": get_model_state_dict(model)}
    if extra:
        state["extra"] = extra
    dcp.save(state, checkpoint_id=str(staging))
    if distributed:
        dist.barrier()
    if rank == 0:
        if path.exists():
            import shutil

            shutil.rmtree(path)
        staging.rename(path)
    if distributed:
        dist.barrier()
    return path


def load_sharded(path: str | Path, model: nn.Module, optimizer=None, extra: dict | None = None) -> dict | None:
    """Load a :func:`save_sharded` folder into ``model`` (+ ``optimizer``), resharded to the current ranks;
    returns the saved ``extra`` (give a template dict of the same keys to read it)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_state_dict,
        set_model_state_dict,
        set_state_dict,
    )

    if optimizer is not None:
        model_sd, optim_sd = get_state_dict(model, optimizer)
        state = {"model": model_sd, "optim": optim_sd}
    else:
        state = {"model": get_model_state_dict(model)}
    if extra is not None:
        state["extra"] = extra
    # Model (and extra) strictly; the optimizer partially: parameters that never had a gradient (e.g. the last UE
    # layer's output projections, which no action token depends on) have no AdamW state in the checkpoint, while
    # get_state_dict initialises one for every parameter (a state that stays unused: AdamW skips grad-less params).
    dcp.load({k: v for k, v in state.items() if k != "optim"}, checkpoint_id=str(path))
    if optimizer is not None:
        dcp.load(
            {"optim": state["optim"]},
            checkpoint_id=str(path),
            planner=DefaultLoadPlanner(allow_partial_load=True),
        )
    if optimizer is not None:
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    else:
        set_model_state_dict(model, state["model"])
    return state.get("extra")
