"""The released prefill prompt and decision decoding, token for token (docs/released-checkpoint.md §3.2, §3.4).

Released sequence: ``<|im_start|>system\\n{system}<|im_end|>\\n<|im_start|>user\\n`` + per image
``<|vision_start|>`` + pads + ``<|vision_end|>`` + instruction + ``<|im_end|>`` - with NO newline after the final
``<|im_end|>`` and no assistant header. (model/prompting.py's chat template ends the user turn with
``<|im_end|>\\n``: one extra token, which shifts every action position by one.) Decision text: argmax per position,
the first span from ``<|im_start|>`` to ``<|im_end|>`` inclusive (a second ``<|im_start|>`` closes the span), all 8
tokens if there is none, decoded WITH special tokens.
"""

from __future__ import annotations

import numpy as np
import torch

from automot.model.automot import AutoMoTModel
from automot.model.types import ActionOutput, ActionState, KVSnapshot, Observation


def system_prefix(system: str) -> str:
    return f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n"


def instruction_text(model: AutoMoTModel, target_points: np.ndarray, speed: float) -> str:
    tp = np.asarray(target_points, dtype=np.float64).reshape(2, 2)
    return model.config.prompt.user.format(x1=tp[0, 0], y1=tp[0, 1], x2=tp[1, 0], y2=tp[1, 1], v=float(speed))


def released_input_ids(model: AutoMoTModel, image_token_counts: list[int], instruction: str) -> list[int]:
    """Token ids of the released prefill for images with the given LM token counts."""
    tok = model.tokenizer
    ids = model.config.understanding.token_ids
    out = tok.encode(system_prefix(model.config.prompt.system), add_special_tokens=False)
    for n in image_token_counts:
        out += [ids["vision_start_token_id"]] + [ids["image_token_id"]] * int(n) + [ids["vision_end_token_id"]]
    out += tok.encode(instruction + "<|im_end|>", add_special_tokens=False)
    return out


def build_released_observation(
    model: AutoMoTModel, images: list[np.ndarray], target_points: np.ndarray, speed: float
) -> Observation:
    """RGB uint8 frames (oldest first; resized with PIL Lanczos to the prompt size) -> batch-1 Observation."""
    if model.tokenizer is None or model.image_processor is None:
        raise RuntimeError("build_released_observation: the model has no tokenizer / image processor attached")
    if not images:
        raise ValueError("build_released_observation: at least one image is required")
    builder = model.prompt_builder()
    frames = [builder.resize(im) for im in images]
    vis = model.image_processor(images=frames, return_tensors="pt")
    grid = vis["image_grid_thw"]
    merge = int(model.config.understanding.vision.get("spatial_merge_size", 2))
    counts = (grid.prod(-1) // merge**2).tolist()
    ids = torch.tensor([released_input_ids(model, counts, instruction_text(model, target_points, speed))])
    image_id = int(model.config.understanding.token_ids["image_token_id"])
    return Observation(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        pixel_values=vis["pixel_values"],
        image_grid_thw=grid,
        mm_token_type_ids=(ids == image_id).long(),
    )


def first_span(ids: list[int], start_id: int, end_id: int) -> list[int]:
    """First <start>..<end> span (inclusive); a new <start> inside a span closes it; all ids if no <start>."""
    span: list[int] | None = None
    for t in ids:
        if t == start_id:
            if span:
                return span
            span = [t]
        elif span is not None:
            span.append(t)
            if t == end_id:
                return span
    return span if span else list(ids)


def released_decision_text(model: AutoMoTModel, decision_logits: torch.Tensor) -> list[str]:
    """Released display text for each batch row (special tokens kept, e.g. '<|im_start|> stop, ...<|im_end|>')."""
    tok = model.tokenizer
    start_id = tok.convert_tokens_to_ids("<|im_start|>")
    end_id = tok.convert_tokens_to_ids("<|im_end|>")
    rows = decision_logits.argmax(-1).tolist()
    return [tok.decode(first_span(row, start_id, end_id), skip_special_tokens=False) for row in rows]


def act_released(model: AutoMoTModel, snapshot: KVSnapshot, state: ActionState) -> ActionOutput:
    """``model.act`` with the released decision decoding."""
    out = model.act(snapshot, state)
    out.decision_text = released_decision_text(model, out.decision_logits)
    return out


def bev_state(model: AutoMoTModel, target_points: np.ndarray, speed: float, bev_feature: torch.Tensor) -> ActionState:
    """ActionState for the gen pass: target points, speed and the BEV feature (1, C, H, W) as row-major tokens."""
    scene = bev_feature.flatten(2).transpose(1, 2)
    tp = torch.as_tensor(np.asarray(target_points, dtype=np.float32).reshape(1, 2, 2))
    return ActionState(tp, torch.tensor([[float(speed)]], dtype=torch.float32), scene)
