"""Semantic prompting: tokenizer, chat template and image processor that turn camera frames plus route/speed
values into an ``Observation`` for the understanding expert.

Real checkpoints bring their own tokenizer and ``preprocessor_config.json`` (loaded offline from the model
directory). Tests and the demo use a small byte-level BPE tokenizer trained in-process on a fixed corpus, so
nothing is ever downloaded; its special tokens take ids 0..6 (model/config.py: BUILTIN_TOKEN_IDS).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from automot.model.config import AutoMoTConfig
from automot.model.types import ActionState, Observation

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# ChatML in the Qwen style: images inside a user turn become <|vision_start|><|image_pad|><|vision_end|>; the
# single pad is expanded to the image's token count by PromptBuilder.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = [
    "You are a mature and professional driver.",
    "Your current and next target point is (12.500000, -3.250000), (30.000000, 4.125000), and your current "
    "velocity is 7.35 m/s. Predict the driving actions ( now, +1s, +2s) and plan the trajectory for the next 3 "
    "seconds.",
    "stop, accelerate, stop. keep, decelerate, keep. accelerate, keep, keep. turn left, turn right, go straight.",
    "change lane left, change lane right, follow the lane, yield to the vehicle ahead, wait at the red light.",
    "The road ahead is clear. A vehicle is merging from the right. A pedestrian crosses in front of the car.",
    "Describe the scene and the hazards ahead. There are 3 vehicles, the closest is 15 m ahead in my lane.",
    "0123456789 -+.,:;()[] meters m/s km/h now +1s +2s highway intersection roundabout merge traffic light",
]


@functools.lru_cache(maxsize=4)
def builtin_tokenizer(vocab_size: int = 384):
    """Deterministic byte-level BPE tokenizer (no network), wrapped as an HF fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"
    for i, name in enumerate(SPECIAL_TOKENS):
        assert fast.convert_tokens_to_ids(name) == i, name  # config token ids rely on this order
    return fast


def make_image_processor(cfg: AutoMoTConfig, path: str | Path | None = None):
    """Qwen-VL image processor (PIL backend: needs no torchvision). From ``path`` when given, else from config."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    if path is not None and (Path(path) / "preprocessor_config.json").is_file():
        return Qwen2VLImageProcessorPil.from_pretrained(str(path), local_files_only=True)
    vision = cfg.understanding.vision
    patch, merge = int(vision.get("patch_size", 16)), int(vision.get("spatial_merge_size", 2))
    w, h = cfg.prompt.image_width, cfg.prompt.image_height
    return Qwen2VLImageProcessorPil(
        patch_size=patch,
        temporal_patch_size=int(vision.get("temporal_patch_size", 2)),
        merge_size=merge,
        min_pixels=(patch * merge) ** 2,
        max_pixels=max(w * h, (patch * merge) ** 2),
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )


class PromptBuilder:
    """System + user prompt (images first, then target points and speed) through the VLM's chat template."""

    def __init__(self, cfg: AutoMoTConfig, tokenizer, image_processor) -> None:
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        ids = cfg.understanding.token_ids
        self.image_token_id = int(ids["image_token_id"])
        self.image_pad = tokenizer.convert_ids_to_tokens(self.image_token_id)
        self.merge = int(cfg.understanding.vision.get("spatial_merge_size", 2))

    def user_text(self, target_points: np.ndarray, speed: float) -> str:
        # Values go through float32 first, as the released agent holds them in float tensors before formatting:
        # with 6 decimals the float32 rounding is visible in the prompt text.
        tp = np.asarray(target_points, dtype=np.float32).reshape(2, 2).astype(np.float64)
        v = float(np.float32(speed))
        return self.cfg.prompt.user.format(x1=tp[0, 0], y1=tp[0, 1], x2=tp[1, 0], y2=tp[1, 1], v=v)

    def messages(self, num_images: int, text: str) -> list[dict]:
        content = [{"type": "image"}] * num_images + [{"type": "text", "text": text}]
        return [
            {"role": "system", "content": self.cfg.prompt.system},
            {"role": "user", "content": content},
        ]

    def resize(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 frame -> prompt size with Lanczos filtering (as the released agent does with PIL)."""
        from PIL import Image

        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image: expected RGB uint8 (H, W, 3), got {image.dtype} {image.shape}")
        size = (self.cfg.prompt.image_width, self.cfg.prompt.image_height)
        if image.shape[1::-1] == size:
            return image
        return np.asarray(Image.fromarray(image).resize(size, Image.LANCZOS))

    def build(
        self, images: list[np.ndarray], target_points: np.ndarray, speed: float, text: str | None = None
    ) -> Observation:
        """One observation (batch 1). ``text`` overrides the user sentence (e.g. a VQA question)."""
        if not images:
            raise ValueError("build_observation: at least one image is required")
        frames = [self.resize(im) for im in images]
        vis = self.image_processor(images=frames, return_tensors="pt")
        grid = vis["image_grid_thw"]
        prompt = self.tokenizer.apply_chat_template(
            self.messages(len(frames), text if text is not None else self.user_text(target_points, speed)),
            tokenize=False,
            add_generation_prompt=self.cfg.prompt.add_generation_prompt,
        )
        if not self.cfg.prompt.end_with_newline and prompt.endswith("\n"):
            prompt = prompt[:-1]
        # Expand each single image pad to that image's token count (grid / merge^2), in order.
        pieces = prompt.split(self.image_pad)
        if len(pieces) - 1 != len(frames):
            raise ValueError(f"chat template produced {len(pieces) - 1} image pads for {len(frames)} images")
        counts = (grid.prod(-1) // self.merge**2).tolist()
        expanded = pieces[0] + "".join(self.image_pad * n + rest for n, rest in zip(counts, pieces[1:]))
        enc = self.tokenizer(expanded, return_tensors="pt", add_special_tokens=False)
        input_ids = enc["input_ids"]
        return Observation(
            input_ids=input_ids,
            attention_mask=enc["attention_mask"],
            pixel_values=vis["pixel_values"],
            image_grid_thw=grid,
            mm_token_type_ids=(input_ids == self.image_token_id).long(),
        )


def collate_observations(observations: list[Observation], pad_id: int) -> Observation:
    """Left-pad a list of batch-1 observations into one batch (images concatenated in order)."""
    t = max(o.input_ids.shape[1] for o in observations)

    def left(x: torch.Tensor, value: int) -> torch.Tensor:
        return torch.nn.functional.pad(x, (t - x.shape[1], 0), value=value)

    has_images = observations[0].pixel_values is not None
    return Observation(
        input_ids=torch.cat([left(o.input_ids, pad_id) for o in observations]),
        attention_mask=torch.cat([left(o.attention_mask, 0) for o in observations]),
        pixel_values=torch.cat([o.pixel_values for o in observations]) if has_images else None,
        image_grid_thw=torch.cat([o.image_grid_thw for o in observations]) if has_images else None,
        mm_token_type_ids=torch.cat([left(o.mm_token_type_ids, 0) for o in observations]) if has_images else None,
    )


def build_state(target_points: np.ndarray, speed: float, scene: np.ndarray | None = None) -> ActionState:
    """Batch-1 ActionState from numpy values (ego frame, SI units)."""
    # from_numpy on fresh float32 arrays: the fewest torch calls (this runs on the fast path every tick)
    tp = torch.from_numpy(np.array(target_points, dtype=np.float32).reshape(1, 2, 2))
    sp = torch.from_numpy(np.full((1, 1), float(speed), dtype=np.float32))
    sc = None if scene is None else torch.from_numpy(np.array(scene, dtype=np.float32)[None])
    return ActionState(tp, sp, sc)
