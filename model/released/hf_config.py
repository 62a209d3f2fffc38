"""Read the released checkpoint folder's configs and check our preset against them.

``config.json`` is a Qwen3-VL config (``text_config`` / ``vision_config`` / token ids; transformers 4.57 writes the
mRoPE settings as ``rope_scaling`` + ``rope_theta``, 5.x as ``rope_parameters`` - both are read). The released
loader then overrides a few values that are *not* in the file (docs/released-checkpoint.md §1.1): tied LM head,
action expert 16 q / 4 kv heads, MLP 4864, head_dim = hidden // heads. Those come from our preset and are checked
against the tensor shapes instead. Everything the file does state must agree with the preset; each difference is
reported by name (expected vs got).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

from automot.model.config import AutoMoTConfig, ConfigError, get_config
from automot.model.released.bev_config import BEVConfig, load_bev_config

TOKEN_ID_KEYS = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
TEXT_KEYS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "max_position_embeddings", "rms_norm_eps", "hidden_act", "attention_bias",
)  # fmt: skip
VISION_KEYS = (
    "depth", "hidden_size", "intermediate_size", "num_heads", "out_hidden_size", "patch_size", "spatial_merge_size",
    "temporal_patch_size", "num_position_embeddings", "deepstack_visual_indexes", "hidden_act", "in_channels",
)  # fmt: skip
ROPE_KEYS = ("rope_type", "rope_theta", "mrope_section", "mrope_interleaved")


@dataclass
class ReleasedFolder:
    """What the released folder says about the model (plus which files it has)."""

    path: Path
    text: dict
    vision: dict
    token_ids: dict
    preprocessor: dict | None
    bev: BEVConfig
    bev_config_found: bool
    notes: list[str] = field(default_factory=list)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return data


def _rope(text: dict) -> dict:
    """mRoPE settings in the 5.x ``rope_parameters`` form, from either file format."""
    rope = dict(text.get("rope_parameters") or text.get("rope_scaling") or {})
    if "rope_theta" not in rope and "rope_theta" in text:
        rope["rope_theta"] = text["rope_theta"]
    rope.setdefault("rope_type", rope.pop("type", "default"))
    return {k: rope[k] for k in ROPE_KEYS if k in rope}


def read_released_folder(path: str | Path) -> ReleasedFolder:
    """Parse config.json, preprocessor_config.json and bev_config.json of a released checkpoint folder."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"released checkpoint folder not found: {path}")
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise ConfigError(f"{cfg_file}: missing (the released folder ships the Qwen3-VL config.json)")
    raw = _read_json(cfg_file)
    for key in ("text_config", "vision_config"):
        if not isinstance(raw.get(key), dict):
            raise ConfigError(f"{cfg_file}: no {key!r} object (expected a Qwen3-VL config)")
    notes = []
    text = {k: raw["text_config"][k] for k in TEXT_KEYS if k in raw["text_config"]}
    text["rope_parameters"] = _rope(raw["text_config"])
    if raw["text_config"].get("tie_word_embeddings", raw.get("tie_word_embeddings")) is False:
        notes.append(
            "config.json says tie_word_embeddings=false; the released loader forces a tied LM head (kept tied)"
        )
    text["tie_word_embeddings"] = True  # released loader override (docs/released-checkpoint.md §1.1)
    vision = {k: raw["vision_config"][k] for k in VISION_KEYS if k in raw["vision_config"]}
    token_ids = {k: raw[k] for k in TOKEN_ID_KEYS if k in raw}
    missing_ids = [k for k in TOKEN_ID_KEYS if k not in token_ids]
    if missing_ids:
        raise ConfigError(f"{cfg_file}: token ids {missing_ids} missing at the top level")
    pre_file = path / "preprocessor_config.json"
    preprocessor = _read_json(pre_file) if pre_file.is_file() else None
    if preprocessor is None:
        notes.append("no preprocessor_config.json: Qwen defaults (mean = std = 0.5) are assumed (unverified)")
    bev_file = path / "bev_config.json"
    bev = load_bev_config(bev_file if bev_file.is_file() else None)
    if not bev_file.is_file():
        notes.append("no bev_config.json: TF++ GlobalConfig defaults are assumed for the BEV encoder (unverified)")
    return ReleasedFolder(path, text, vision, token_ids, preprocessor, bev, bev_file.is_file(), notes)


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b) or abs(float(a) - float(b)) <= 1e-12 * max(abs(float(a)), 1.0)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def compare_preset(preset: AutoMoTConfig, folder: ReleasedFolder) -> list[str]:
    """Every field where the preset and the released files disagree, as 'name: expected X, got Y (file)'."""
    diffs = []
    cfg_file = folder.path / "config.json"
    u = preset.understanding

    def check(prefix: str, expected: dict, got: dict, keys, source: Path) -> None:
        for key in keys:
            if key not in expected:
                continue
            if key not in got:
                diffs.append(f"{prefix}.{key}: expected {expected[key]!r}, not stated in {source.name}")
            elif not _same(expected[key], got[key]):
                diffs.append(f"{prefix}.{key}: expected {expected[key]!r}, got {got[key]!r} ({source.name})")

    check("text_config", u.text, folder.text, TEXT_KEYS, cfg_file)
    check("text_config.rope", u.text.get("rope_parameters", {}), folder.text["rope_parameters"], ROPE_KEYS, cfg_file)
    check("vision_config", u.vision, folder.vision, VISION_KEYS, cfg_file)
    check("config", u.token_ids, folder.token_ids, TOKEN_ID_KEYS, cfg_file)
    # Released derivation (docs/released-checkpoint.md §1.1): the action head_dim is hidden_size //
    # num_attention_heads, not a free value.
    hidden, heads = folder.text.get("hidden_size"), folder.text.get("num_attention_heads")
    if hidden and heads and preset.action.head_dim != hidden // heads:
        diffs.append(
            f"action.head_dim: preset {preset.action.head_dim}, released rule hidden_size // heads = {hidden // heads}"
        )
    pre = folder.preprocessor
    if pre is not None:
        pre_file = folder.path / "preprocessor_config.json"
        for ours, theirs in (
            ("patch_size", "patch_size"),
            ("temporal_patch_size", "temporal_patch_size"),
            ("spatial_merge_size", "merge_size"),
        ):
            if theirs in pre and ours in folder.vision and pre[theirs] != folder.vision[ours]:
                diffs.append(
                    f"{pre_file.name}.{theirs}: {pre[theirs]!r} disagrees with vision_config.{ours}={folder.vision[ours]!r}"
                )
        diffs += _resize_problems(preset, pre, pre_file.name)
    return diffs


def _resize_problems(preset: AutoMoTConfig, pre: dict, source: str) -> list[str]:
    """The processor must leave the preset's frames at their size: a resize would change the image token count."""
    size = pre.get("size") if isinstance(pre.get("size"), dict) else {}
    lo = size.get("shortest_edge", pre.get("min_pixels"))
    hi = size.get("longest_edge", pre.get("max_pixels"))
    w, h = preset.prompt.image_width, preset.prompt.image_height
    factor = int(pre.get("patch_size", 16)) * int(pre.get("merge_size", 2))
    problems = []
    if w % factor or h % factor:
        problems.append(f"prompt.image_width/height: {w}x{h} is not a multiple of patch*merge = {factor} ({source})")
    if lo is not None and w * h < int(lo):
        problems.append(f"{source}.size.shortest_edge: {lo} pixels > {w}x{h}; frames would be upscaled")
    if hi is not None and w * h > int(hi):
        problems.append(f"{source}.size.longest_edge: {hi} pixels < {w}x{h}; frames would be downscaled")
    return problems


def check_bev_against_preset(preset: AutoMoTConfig, bev: BEVConfig, out_channels: int) -> list[str]:
    """Scene tokens of the preset must be what the BEV encoder emits (row-major cells x channels)."""
    diffs = []
    t = preset.tokens
    cells = (bev.lidar_resolution_height // 32) * (bev.lidar_resolution_width // 32)
    if t.num_scene_tokens != cells:
        diffs.append(f"tokens.num_scene_tokens: preset {t.num_scene_tokens}, BEV encoder gives {cells} cells")
    if t.scene_dim != out_channels:
        diffs.append(f"tokens.scene_dim: preset {t.scene_dim}, BEV encoder gives {out_channels} channels")
    return diffs


def released_model_config(
    folder: ReleasedFolder, preset: str | AutoMoTConfig = "automot-4b", strict: bool = True
) -> tuple[AutoMoTConfig, list[str]]:
    """Our model config for the folder: UE dims from config.json, the rest (action expert, tokens) from the preset.

    With ``strict`` any preset/file difference is a ConfigError listing all of them; otherwise they are returned
    as warnings and the file's values win.
    """
    base = get_config(copy.deepcopy(preset) if isinstance(preset, AutoMoTConfig) else preset)
    diffs = compare_preset(base, folder)
    if diffs and strict:
        raise ConfigError(
            f"preset {base.name!r} does not match {folder.path}:\n  "
            + "\n  ".join(diffs)
            + "\n(pass allow_config_mismatch / --allow-config-mismatch to use the file's values)"
        )
    cfg = copy.deepcopy(base)
    cfg.understanding.text = {**base.understanding.text, **copy.deepcopy(folder.text)}
    cfg.understanding.vision = {**base.understanding.vision, **copy.deepcopy(folder.vision)}
    cfg.understanding.token_ids = dict(folder.token_ids)
    cfg.understanding.pretrained_path = None
    cfg.understanding.prefix_image_bidirectional = True  # released prefill rule (docs/released-checkpoint.md §2.4)
    cfg.tokenizer = "pretrained"
    cfg.validate()
    return cfg, diffs + folder.notes
