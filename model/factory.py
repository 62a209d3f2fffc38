"""Building models from presets / configs / local weights, and dummy inputs of the right shapes."""

from __future__ import annotations

import torch

from automot.model.automot import AutoMoTModel
from automot.model.config import AutoMoTConfig, ConfigError, get_config
from automot.model.prompting import builtin_tokenizer, make_image_processor
from automot.model.rope import keep_rotary_fp32
from automot.model.types import ActionState, Observation
from automot.model.understanding import load_pretrained_vlm

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ConfigError(f"dtype: expected one of {sorted(_DTYPES)}, got {dtype!r}")
    return _DTYPES[dtype]


def attach_processors(model: AutoMoTModel, path: str | None = None, tokenizer=None) -> None:
    """Attach tokenizer + image processor: the builtin offline ones, or those saved in ``path`` (``tokenizer``:
    one already loaded from ``path``, so it is not read twice)."""
    cfg = model.config
    if cfg.tokenizer == "builtin":
        tok = builtin_tokenizer()
        if len(tok) > cfg.vocab_size:
            raise ConfigError(
                f"understanding.text.vocab_size: {cfg.vocab_size} is smaller than the builtin tokenizer ({len(tok)})"
            )
    else:
        if path is None:
            return  # e.g. automot-4b built on the meta device: no tokenizer until weights are given
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        tok = tokenizer
        tok.padding_side = "left"
    model.tokenizer = tok
    model.image_processor = make_image_processor(cfg, path)


def build_model(
    preset_name_or_config: str | AutoMoTConfig | dict,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
    seed: int | None = 0,
) -> AutoMoTModel:
    """Build an AutoMoT model in eval mode.

    - ``device="meta"`` builds the full module tree without allocating memory (parameter audits of big presets).
    - ``understanding.pretrained_path`` set: the UE is loaded from that local HF directory (local_files_only) and
      its config replaces the preset's UE dims; the action expert is freshly initialised.
    - otherwise every weight is random (seeded by ``seed``).
    """
    cfg = get_config(preset_name_or_config)
    dtype = resolve_dtype(dtype)
    if str(device) == "meta":
        with torch.device("meta"):
            model = AutoMoTModel(cfg)
        return model.eval()
    if seed is not None:
        torch.manual_seed(seed)
    path = cfg.understanding.pretrained_path
    vlm = None
    if path:
        vlm = load_pretrained_vlm(path, cfg.understanding.family, dtype)
        hf = vlm.config
        cfg.understanding.text = hf.text_config.to_dict()
        cfg.understanding.vision = hf.vision_config.to_dict()
        cfg.understanding.token_ids = {
            k: getattr(hf, k)
            for k in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
            if getattr(hf, k, None) is not None
        }
        cfg.validate()
    model = AutoMoTModel(cfg, vlm)
    if dtype is not None:
        model = model.to(dtype)
        keep_rotary_fp32(model)  # RoPE frequencies stay fp32, as HF and the released loader keep them
    model = model.to(device).eval()
    attach_processors(model, path)
    return model


def make_dummy_inputs(config: AutoMoTConfig | str, batch: int = 1, seed: int = 0) -> tuple[Observation, ActionState]:
    """Random images, prompt ids (left-padded, varying lengths) and ego state with the config's shapes."""
    cfg = get_config(config)
    g = torch.Generator().manual_seed(seed)
    ids = cfg.understanding.token_ids
    vision = cfg.understanding.vision
    patch, merge = int(vision.get("patch_size", 16)), int(vision.get("spatial_merge_size", 2))
    tps = int(vision.get("temporal_patch_size", 2))
    gh = max(merge, cfg.prompt.image_height // patch // merge * merge)
    gw = max(merge, cfg.prompt.image_width // patch // merge * merge)
    per_image = gh * gw // merge**2
    n_img = cfg.prompt.num_frames
    low = 7  # keep random text ids clear of the special tokens
    rows = []
    for b in range(batch):
        n_text = 6 + int(torch.randint(0, 6, (1,), generator=g)) + 2 * b
        row = [1] + torch.randint(low, cfg.vocab_size, (n_text,), generator=g).tolist()
        for _ in range(n_img):
            row += [ids["vision_start_token_id"]] + [ids["image_token_id"]] * per_image + [ids["vision_end_token_id"]]
        row += torch.randint(low, cfg.vocab_size, (n_text,), generator=g).tolist() + [2]
        rows.append(row)
    t = max(len(r) for r in rows)
    input_ids = torch.zeros(batch, t, dtype=torch.long)
    attention = torch.zeros(batch, t, dtype=torch.long)
    for b, r in enumerate(rows):
        input_ids[b, t - len(r) :] = torch.tensor(r)
        attention[b, t - len(r) :] = 1
    grid = torch.tensor([[1, gh, gw]] * (n_img * batch))
    pixel_values = torch.randn(n_img * batch * gh * gw, 3 * tps * patch * patch, generator=g)
    obs = Observation(input_ids, attention, pixel_values, grid, (input_ids == ids["image_token_id"]).long())
    t_cfg = cfg.tokens
    target_points = torch.randn(batch, 2, 2, generator=g) * 10.0
    speed = torch.rand(batch, 1, generator=g) * 10.0
    scene = torch.randn(batch, t_cfg.num_scene_tokens, t_cfg.scene_dim, generator=g) if t_cfg.num_scene_tokens else None
    return obs, ActionState(target_points, speed, scene)
