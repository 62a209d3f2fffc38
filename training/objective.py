"""Training objective: the losses of one stage on one batch, as a module so DDP can wrap it.

- path / waypoints: L1 in metres (mean over points and coordinates);
- decision: cross-entropy of the decision-position logits against the decision target ids (IGNORE_INDEX
  positions excluded, see training/data/torch_dataset.py);
- vqa (optional): language-modelling cross-entropy of the answer tokens, teacher-forced through the
  understanding expert's Hugging Face forward (its own causal mask and LM head);
- refiner: flow-matching MSE and the L1 of the unrolled refined trajectory (model/refiner.py).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from automot.model.automot import AutoMoTModel
from automot.model.refiner import ActionRefiner
from automot.training.config import LossSection
from automot.training.data.torch_dataset import IGNORE_INDEX, TrainBatch, VQABatch


def vqa_loss(model: AutoMoTModel, vqa: VQABatch) -> torch.Tensor:
    """Next-token cross-entropy on the labelled (answer) tokens."""
    obs = vqa.observation
    out = model.understanding.vlm(
        input_ids=obs.input_ids,
        attention_mask=obs.attention_mask,
        pixel_values=obs.pixel_values,
        image_grid_thw=obs.image_grid_thw,
        mm_token_type_ids=obs.mm_token_type_ids,
        use_cache=False,
    )
    logits = out.logits[:, :-1].float()
    labels = vqa.labels[:, 1:]
    return nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX
    )


class TrainingObjective(nn.Module):
    """Holds the model and the refiner; ``forward(batch)`` returns (total loss, named detached parts)."""

    def __init__(
        self,
        model: AutoMoTModel,
        refiner: ActionRefiner | None,
        weights: LossSection,
        stage: str,
        end_to_end: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.refiner = refiner
        self.weights = weights
        self.stage = stage
        self.action_losses = stage in ("action", "joint") or (stage == "refiner" and end_to_end)
        self.refiner_losses = stage == "refiner"
        if self.refiner_losses and refiner is None:
            raise ValueError("the refiner stage needs a refiner")
        self.use_vqa = stage == "joint" and weights.vqa > 0

    def forward(self, batch: TrainBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model = self.model
        needs_model_grad = any(p.requires_grad for p in model.parameters())
        ctx = contextlib.nullcontext() if needs_model_grad else torch.no_grad()
        with ctx:
            out = model(batch.observation, batch.state)
        parts: dict[str, torch.Tensor] = {}
        total = torch.zeros((), device=out.path.device)
        w = self.weights
        if self.action_losses:
            parts["path_l1"] = (out.path.float() - batch.path).abs().mean()
            parts["waypoints_l1"] = (out.waypoints.float() - batch.waypoints).abs().mean()
            logits = out.decision_logits.float()
            parts["decision_ce"] = nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), batch.decision_ids.reshape(-1), ignore_index=IGNORE_INDEX
            )
            total = total + w.path * parts["path_l1"] + w.waypoints * parts["waypoints_l1"]
            total = total + w.decision * parts["decision_ce"]
        if self.refiner_losses:
            ref = self.refiner.losses(out.path, out.waypoints, out.hidden, batch.path, batch.waypoints)
            parts["refiner_flow"] = ref["flow"]
            parts["refiner_l1"] = ref["refined_l1"]
            total = total + w.refiner_flow * ref["flow"] + w.refiner_l1 * ref["refined_l1"]
        if self.use_vqa and batch.vqa is not None:
            parts["vqa_ce"] = vqa_loss(model, batch.vqa)
            total = total + w.vqa * parts["vqa_ce"]
        return total, {k: v.detach() for k, v in parts.items()}
