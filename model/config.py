"""Typed configuration for the AutoMoT model, with named presets and YAML round trips.

The understanding expert (UE) is a Hugging Face VLM described by an HF-format config dict; the action
expert (AE) is our per-layer twin with its own, independently sized attention and MLP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from automot import config as typed_config
from automot.errors import ConfigError

SUPPORTED_FAMILIES = ("qwen3_vl", "qwen2_5_vl")

# Action-token layout (the packed order of the action expert's input, and of its attention groups):
#   [scene tokens][state: target point 1, target point 2, speed][decision][route points][waypoints]
# The state group is always these 3 tokens (2 target points + 1 speed).
NUM_STATE_TOKENS = 3


@dataclass
class UnderstandingConfig:
    """The pretrained VLM. ``text`` / ``vision`` are HF config dicts (ignored when loading a pretrained dir)."""

    family: Literal["qwen3_vl", "qwen2_5_vl"] = "qwen3_vl"
    text: dict = field(default_factory=dict)
    vision: dict = field(default_factory=dict)
    token_ids: dict = field(default_factory=dict)  # image/video/vision_start/vision_end token ids
    pretrained_path: str | None = None  # local HF-format directory (loaded with local_files_only)
    # AutoMoT's released prefill lets tokens inside one image block see each other (vanilla Qwen3-VL is causal).
    prefix_image_bidirectional: bool = False


@dataclass
class ActionExpertConfig:
    """Per-layer twin of the LM layer. Head layout may differ from the UE's (see model/mot.py for the rule)."""

    hidden_size: int = 64
    num_heads: int = 4
    num_kv_heads: int = 2
    head_dim: int = 16
    intermediate_size: int = 128
    rms_norm_eps: float = 1e-6


@dataclass
class TokenLayoutConfig:
    """Action-expert token groups, in packed order: scene, target points (2), speed (1), decision, route, waypoints."""

    num_scene_tokens: int = 0
    scene_dim: int = 0
    num_decision_tokens: int = 8
    num_route_points: int = 20
    num_waypoints: int = 6
    query_dim: int = 588
    waypoint_dt: float = 0.5
    # Hidden widths of the small MLPs (released: 2->256->512->H encoders, H->512->256->2 heads).
    encoder_widths: list[int] = field(default_factory=lambda: [256, 512])
    head_widths: list[int] = field(default_factory=lambda: [512, 256])
    # How route-head outputs become path points. "points": running sum over the 20 points (each output a step).
    # "xy": the released checkpoint's rule - its RouteHead cumsums dim 1 of a packed [N, 2] output, i.e. over
    # (x, y) of each point, so point i = (a_i, a_i + b_i); it was trained that way (OscarHuangWind/AutoMoT,
    # automot.py RouteHead.forward called on [B*20, H] in training and [20, H] in Automot/evaluation/inference.py).
    route_cumsum: Literal["points", "xy"] = "points"


@dataclass
class PromptConfig:
    """Semantic prompt (system + user) and the frames the UE sees."""

    system: str = "You are a mature and professional driver."
    # Wording of the released AutoMoT prompt (docs/released-checkpoint.md §3.2), kept for checkpoint compatibility.
    user: str = (
        "Your current and next target point is ({x1:.6f}, {y1:.6f}), ({x2:.6f}, {y2:.6f}), and your current "
        "velocity is {v:.2f} m/s. Predict the driving actions ( now, +1s, +2s) and plan the trajectory for the "
        "next 3 seconds."
    )
    num_frames: int = 4
    image_width: int = 512
    image_height: int = 256
    add_generation_prompt: bool = False
    # The released prompt ends right after the user turn's <|im_end|> (no newline): one token matters for positions.
    end_with_newline: bool = True
    reasoning_prompt: str = "Describe the scene and the hazards ahead."


@dataclass
class AutoMoTConfig:
    """Whole model: UE + AE + token layout + prompt. ``max_prefix_tokens`` is the default KV capacity."""

    name: str = "custom"
    understanding: UnderstandingConfig = field(default_factory=UnderstandingConfig)
    action: ActionExpertConfig = field(default_factory=ActionExpertConfig)
    tokens: TokenLayoutConfig = field(default_factory=TokenLayoutConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    max_prefix_tokens: int = 1024
    tokenizer: Literal["builtin", "pretrained"] = (
        "builtin"  # "builtin" (offline BPE for tests/demo) or "pretrained" (from pretrained_path)
    )

    # --- derived views of the UE layout (the KV snapshot layout) ---
    @property
    def num_layers(self) -> int:
        return int(self.understanding.text["num_hidden_layers"])

    @property
    def hidden_size(self) -> int:
        return int(self.understanding.text["hidden_size"])

    @property
    def num_heads(self) -> int:
        return int(self.understanding.text["num_attention_heads"])

    @property
    def num_kv_heads(self) -> int:
        return int(self.understanding.text["num_key_value_heads"])

    @property
    def head_dim(self) -> int:
        text = self.understanding.text
        return int(text.get("head_dim") or text["hidden_size"] // text["num_attention_heads"])

    @property
    def vocab_size(self) -> int:
        return int(self.understanding.text["vocab_size"])

    @property
    def num_action_tokens(self) -> int:
        t = self.tokens
        return t.num_scene_tokens + NUM_STATE_TOKENS + t.num_decision_tokens + t.num_route_points + t.num_waypoints

    # --- serialisation (automot.config: typed, every problem named by its dotted field path) ---
    def to_dict(self) -> dict:
        return typed_config.to_dict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> AutoMoTConfig:
        """Typed build (no cross-field checks: see ``validate``); ``source`` prefixes error messages."""
        return typed_config.from_dict(cls, data, source=source)

    def save_yaml(self, path: str | Path) -> Path:
        return typed_config.save_yaml(self, path)

    @classmethod
    def load_yaml(cls, path: str | Path) -> AutoMoTConfig:
        return typed_config.load_yaml(cls, path, what="model config")

    def validate(self) -> None:
        """Check cross-field constraints; raise one ConfigError listing every problem by its field path."""
        typed_config.raise_problems("", self.problems())

    def problems(self) -> list[str]:
        """Cross-field and range problems, each starting with the dotted field path."""
        u, a, t = self.understanding, self.action, self.tokens
        out: list[str] = []
        if u.family not in SUPPORTED_FAMILIES:
            out.append(f"understanding.family: expected one of {SUPPORTED_FAMILIES}, got {u.family!r}")
        missing = [
            k
            for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size")
            if k not in u.text
        ]
        out += [f"understanding.text.{k}: missing" for k in missing]
        if t.route_cumsum not in ("points", "xy"):
            out.append(f"tokens.route_cumsum: expected 'points' or 'xy', got {t.route_cumsum!r}")
        if (t.num_scene_tokens > 0) != (t.scene_dim > 0):
            out.append(
                f"tokens.scene_dim: must be > 0 exactly when tokens.num_scene_tokens is, got scene_dim={t.scene_dim}"
                f" with num_scene_tokens={t.num_scene_tokens}"
            )
        if a.head_dim % 2:
            out.append(f"action.head_dim: must be even, got {a.head_dim}")
        if a.num_kv_heads < 1 or a.num_heads % a.num_kv_heads:
            out.append(
                f"action.num_heads: must be a multiple of action.num_kv_heads ({a.num_kv_heads}), got {a.num_heads}"
            )
            return out
        if missing or self.num_kv_heads < 1:
            return out
        group_ue = self.num_heads // self.num_kv_heads
        if a.num_heads // a.num_kv_heads != group_ue:
            out.append(
                f"action.num_kv_heads: query heads per KV head must match the understanding expert's ({group_ue}), "
                f"got {a.num_heads}/{a.num_kv_heads}"
            )
        if a.num_heads > self.num_heads or a.head_dim > self.head_dim:
            out.append(
                f"action.head_dim: heads x head_dim ({a.num_heads} x {a.head_dim}) must fit inside the understanding "
                f"layout ({self.num_heads} x {self.head_dim})"
            )
        return out


# ----------------------------------------------------------------------------------------------------------------
# Presets
# ----------------------------------------------------------------------------------------------------------------

BUILTIN_TOKEN_IDS = {
    # The builtin offline tokenizer (model/prompting.py, builtin_tokenizer) registers its special tokens first, in
    # this order.
    "pad": 0,
    "im_start": 1,
    "im_end": 2,
    "vision_start": 3,
    "vision_end": 4,
    "image": 5,
    "video": 6,
}


def _qwen3_text(vocab, hidden, inter, layers, heads, kv, head_dim, section, theta=10000.0) -> dict:
    return dict(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        head_dim=head_dim,
        max_position_embeddings=8192,
        rms_norm_eps=1e-6,
        hidden_act="silu",
        attention_bias=False,
        tie_word_embeddings=True,
        rope_parameters=dict(rope_type="default", rope_theta=theta, mrope_section=section, mrope_interleaved=True),
    )


def _qwen3_vision(depth, hidden, inter, heads, out, deepstack, pos_emb=64) -> dict:
    return dict(
        depth=depth,
        hidden_size=hidden,
        intermediate_size=inter,
        num_heads=heads,
        out_hidden_size=out,
        patch_size=16,
        spatial_merge_size=2,
        temporal_patch_size=2,
        num_position_embeddings=pos_emb,
        deepstack_visual_indexes=deepstack,
        hidden_act="gelu_pytorch_tanh",
    )


def _builtin_ids() -> dict:
    b = BUILTIN_TOKEN_IDS
    return dict(
        image_token_id=b["image"],
        video_token_id=b["video"],
        vision_start_token_id=b["vision_start"],
        vision_end_token_id=b["vision_end"],
    )


def preset_tiny() -> AutoMoTConfig:
    """Odd-sized, seconds-fast config for unit tests (UE 3 layers x 48, AE 40 wide with 2/1 heads of 10)."""
    return AutoMoTConfig(
        name="tiny",
        understanding=UnderstandingConfig(
            text=_qwen3_text(vocab=384, hidden=48, inter=96, layers=3, heads=4, kv=2, head_dim=12, section=[2, 2, 2]),
            vision=_qwen3_vision(depth=2, hidden=32, inter=64, heads=2, out=48, deepstack=[0, 1]),
            token_ids=_builtin_ids(),
        ),
        action=ActionExpertConfig(hidden_size=40, num_heads=2, num_kv_heads=1, head_dim=10, intermediate_size=72),
        tokens=TokenLayoutConfig(query_dim=24, encoder_widths=[16, 32], head_widths=[32, 16]),
        prompt=PromptConfig(num_frames=2, image_width=64, image_height=32),
        max_prefix_tokens=256,
    )


def preset_small() -> AutoMoTConfig:
    """CPU benchmark config: UE 8 layers x 512 (8/2 heads of 64), AE 384 wide (4/1 heads of 48), released prefix size."""
    return AutoMoTConfig(
        name="small",
        understanding=UnderstandingConfig(
            text=_qwen3_text(
                vocab=2048, hidden=512, inter=1536, layers=8, heads=8, kv=2, head_dim=64, section=[12, 10, 10]
            ),
            vision=_qwen3_vision(depth=4, hidden=256, inter=1024, heads=4, out=512, deepstack=[0, 1, 2], pos_emb=256),
            token_ids=_builtin_ids(),
        ),
        action=ActionExpertConfig(hidden_size=384, num_heads=4, num_kv_heads=1, head_dim=48, intermediate_size=1024),
        tokens=TokenLayoutConfig(query_dim=128, encoder_widths=[64, 128], head_widths=[128, 64]),
        # Released frame size and count (4 x 512x256 -> 512 image tokens): the prefix is as long as AutoMoT's (~600).
        prompt=PromptConfig(num_frames=4, image_width=512, image_height=256),
        max_prefix_tokens=768,
    )


def preset_automot_4b() -> AutoMoTConfig:
    """Released AutoMoT layout (docs/released-checkpoint.md §1-2): Qwen3-VL-4B UE + 1.6 B AE twin, 64 BEV tokens."""
    text = _qwen3_text(
        vocab=151936, hidden=2560, inter=9728, layers=36, heads=32, kv=8, head_dim=128, section=[24, 20, 20], theta=5e6
    )
    text["max_position_embeddings"] = 262144
    return AutoMoTConfig(
        name="automot-4b",
        understanding=UnderstandingConfig(
            text=text,
            vision=_qwen3_vision(
                depth=24, hidden=1024, inter=4096, heads=16, out=2560, deepstack=[5, 11, 17], pos_emb=2304
            ),
            token_ids=dict(
                image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653
            ),
            prefix_image_bidirectional=True,
        ),
        action=ActionExpertConfig(hidden_size=2560, num_heads=16, num_kv_heads=4, head_dim=80, intermediate_size=4864),
        tokens=TokenLayoutConfig(num_scene_tokens=64, scene_dim=1512, query_dim=588, route_cumsum="xy"),
        prompt=PromptConfig(num_frames=4, image_width=512, image_height=256, end_with_newline=False),
        max_prefix_tokens=768,
        tokenizer="pretrained",
    )


PRESETS = {"tiny": preset_tiny, "small": preset_small, "automot-4b": preset_automot_4b}


def get_config(name_or_config: str | AutoMoTConfig | dict) -> AutoMoTConfig:
    """Resolve a preset name, a YAML path, a dict or a config object into a validated AutoMoTConfig."""
    if isinstance(name_or_config, AutoMoTConfig):
        cfg = name_or_config
    elif isinstance(name_or_config, dict):
        cfg = AutoMoTConfig.from_dict(name_or_config)
    elif name_or_config in PRESETS:
        cfg = PRESETS[name_or_config]()
    elif str(name_or_config).endswith((".yaml", ".yml")):
        cfg = AutoMoTConfig.load_yaml(name_or_config)
    else:
        raise ConfigError(f"unknown preset {name_or_config!r}; known presets: {sorted(PRESETS)} (or a .yaml path)")
    cfg.validate()
    return cfg
