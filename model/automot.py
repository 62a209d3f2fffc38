"""AutoMoTModel: understanding expert + action expert fused layer by layer.

Verbs read like the algorithm:
    snapshot = model.prefill(observation)      # slow path: UE prefix -> per-layer K/V (plain tensors)
    output   = model.act(snapshot, state)      # fast path: AE tokens attend to the cached prefix
                                               # (the runtime's engines run its tensor form, model.fast_step)
    output   = model.forward(observation, state)  # training: one joint pass over both experts
    snapshot = model.reason(observation)       # generate reasoning text, snapshot includes those tokens
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from automot.model.action_expert import ActionExpertLayer, ActionIO, RMSNorm
from automot.model.config import NUM_STATE_TOKENS, AutoMoTConfig
from automot.model.masks import action_group_ids, joint_action_rows, prefix_mask
from automot.model.mot import HeadLayout, fold_group_mask, mot_layer
from automot.model.prompting import PromptBuilder, build_state
from automot.model.rope import mrope_cos_sin
from automot.model.types import ActionOutput, ActionState, KVSnapshot, Observation
from automot.model.understanding import PrefixInputs, UnderstandingExpert

# (layer index, x_ue, x_ae, rope [(cos, sin) UE, (cos, sin) AE], mask) -> (x_ue, x_ae, keys, values)
LayerRunner = Callable[[int, torch.Tensor, torch.Tensor, list, torch.Tensor], tuple]


class AutoMoTModel(nn.Module):
    """The whole VLA. ``tokenizer`` / ``image_processor`` are attached for prompting and decision decoding."""

    # Decision text from the meta-action vocabulary (model/decision_vocab.py) instead of the raw per-position
    # argmax; agent/runtime_factory.py turns it off for the released checkpoint unless configured.
    constrain_decisions: bool = True

    def __init__(self, config: AutoMoTConfig, vlm: nn.Module | None = None) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.understanding = UnderstandingExpert(config.understanding, vlm)
        a = config.action
        self.action_layers = nn.ModuleList([ActionExpertLayer(a) for _ in range(config.num_layers)])
        self.action_norm = RMSNorm(a.hidden_size, a.rms_norm_eps)
        self.action_io = ActionIO(config)
        t = config.tokens
        groups = action_group_ids(t.num_scene_tokens, t.num_decision_tokens, t.num_route_points, t.num_waypoints)
        self.register_buffer("action_groups", groups, persistent=False)
        self.layouts = [self.understanding.layout, HeadLayout(a.num_heads, a.num_kv_heads, a.head_dim)]
        self.tokenizer = None
        self.image_processor = None
        # Optional trajectory refiner (model/refiner.py). Held outside the module tree on purpose: the AutoMoT
        # state dict (and released-checkpoint loading) stays the same with or without it.
        self.__dict__["refiner"] = None
        # How ``forward`` runs MoT layer i (None: ``joint_layer``). training/fsdp.py installs its per-layer FSDP
        # units here, so sharded training runs this class's own forward. Outside the module tree for the same
        # reason as the refiner: the units hold the layers the model already owns.
        self.__dict__["layer_runner"] = None

    def set_layer_runner(self, runner: LayerRunner | None) -> None:
        """Route ``forward``'s layer loop through ``runner(i, x_ue, x_ae, rope, mask) -> (x_ue, x_ae, k, v)``,
        which must compute ``joint_layer(i, ...)`` (e.g. through a wrapper module that owns the layer's FSDP
        hooks); None restores the direct call."""
        self.__dict__["layer_runner"] = runner

    def joint_layer(self, i: int, x_ue: torch.Tensor, x_ae: torch.Tensor, rope: list, mask: torch.Tensor):
        """MoT layer i of the joint pass: both experts' hidden states in, both out, plus the UE K/V it cached."""
        (x_ue, x_ae), (k, v) = mot_layer(self._experts(i), self.layouts, [x_ue, x_ae], rope, mask)
        return x_ue, x_ae, k, v

    def attach_refiner(self, refiner: nn.Module | None) -> None:
        """Refine path/waypoints in ``act`` / ``fast_step`` (so exported engines include it); None detaches."""
        if refiner is not None:
            # Inference only (training applies the refiner explicitly): frozen, so exporters can fold it in.
            refiner = refiner.to(device=self.device).eval().requires_grad_(False)
        self.__dict__["refiner"] = refiner

    # ------------------------------------------------------------------ helpers
    @property
    def dtype(self) -> torch.dtype:
        return self.action_norm.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.action_norm.weight.device

    def _experts(self, i: int) -> list[nn.Module]:
        return [self.understanding.layers[i], self.action_layers[i]]

    def _rope(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ue = self.understanding
        return mrope_cos_sin(position_ids, ue.inv_freq, ue.rope_axis_map, self.dtype)

    def _action_positions(self, next_position: torch.Tensor) -> torch.Tensor:
        n = self.action_groups.shape[0]
        pos = next_position.to(torch.long)[:, None] + torch.arange(n, device=next_position.device)
        return pos[None].expand(3, -1, -1)

    def _prefix_mask(self, obs: Observation, pre: PrefixInputs) -> torch.Tensor:
        u = self.config.understanding
        ids = u.token_ids
        return prefix_mask(
            pre.valid,
            obs.input_ids,
            ids.get("vision_start_token_id"),
            ids.get("vision_end_token_id"),
            image_bidirectional=u.prefix_image_bidirectional,
        )

    @staticmethod
    def _next_position(pre: PrefixInputs) -> torch.Tensor:
        pos = pre.position_ids.masked_fill(~pre.valid[None], -1)
        return pos.amax(dim=(0, 2)) + 1

    @staticmethod
    def _deepstack(h: torch.Tensor, pre: PrefixInputs, layer: int) -> torch.Tensor:
        if pre.deepstack is None or layer >= len(pre.deepstack):
            return h
        h = h.clone()
        h[pre.visual_mask] = h[pre.visual_mask] + pre.deepstack[layer]
        return h

    def _action_hidden(self, keys, values, pad_mask, next_position, target_points, speed, scene) -> torch.Tensor:
        x = self.action_io.embed(target_points, speed, scene, self.dtype)
        rope = self._rope(self._action_positions(next_position))
        # Folded for grouped-query attention once here, not in each of the layers.
        mask = fold_group_mask(joint_action_rows(pad_mask.bool(), self.action_groups), self.layouts[0].group)
        for i in range(self.config.num_layers):
            (_, x), _ = mot_layer(self._experts(i), self.layouts, [None, x], [None, rope], mask, (keys[i], values[i]))
        return self.action_norm(x)

    def _heads(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        t = self.config.tokens
        io = self.action_io
        start = t.num_scene_tokens + NUM_STATE_TOKENS  # decision tokens follow scene and state
        dec = h[:, start : start + t.num_decision_tokens]
        start += t.num_decision_tokens
        route = h[:, start : start + t.num_route_points]
        wps = h[:, start + t.num_route_points :]
        if io.decision_out_proj is not None:
            dec = io.decision_out_proj(dec)
        logits = self.understanding.lm_head(dec)
        # Both heads predict per-step deltas; positions are their running sums (SimLingo / AutoMoT style). The
        # released route head sums over (x, y) instead (tokens.route_cumsum, see config.py).
        path = torch.cumsum(io.route_head(route).float(), dim=-1 if t.route_cumsum == "xy" else 1)
        waypoints = torch.cumsum(io.waypoints_head(wps).float(), dim=1)
        return path, waypoints, logits

    # ------------------------------------------------------------------ slow path
    def _run_prefix(self, obs: Observation) -> tuple[KVSnapshot, torch.Tensor]:
        obs = obs.to(self.device)
        pre = self.understanding.embed_prefix(obs)
        mask = self._prefix_mask(obs, pre)
        rope = self._rope(pre.position_ids)
        h = pre.embeds.to(self.dtype)
        keys, values = [], []
        for i in range(self.config.num_layers):
            (h, _), (k, v) = mot_layer(self._experts(i), self.layouts, [h, None], [rope, None], mask)
            keys.append(k)
            values.append(v)
            h = self._deepstack(h, pre, i)
        snap = KVSnapshot(torch.stack(keys), torch.stack(values), pre.valid, self._next_position(pre))
        return snap, h

    @torch.no_grad()
    def prefill(self, observation: Observation, capacity: int | None = None) -> KVSnapshot:
        """Run the understanding expert on the prefix and return its per-layer K/V (optionally capacity-padded).

        ``observation``: input_ids / attention_mask [B, T] plus the processor's image tensors. Returns a
        KVSnapshot with keys / values [L, B, Hkv, S, D], pad_mask [B, S], next_position [B], where S = T, or
        ``capacity`` when given (padded with pad_mask False).
        """
        snap, _ = self._run_prefix(observation)
        return snap.padded(capacity) if capacity is not None else snap

    @torch.no_grad()
    def reason(self, observation: Observation, max_new_tokens: int = 32, capacity: int | None = None) -> KVSnapshot:
        """Greedy-generate reasoning text after the prefix; the snapshot holds prefix + generated tokens."""
        snap, h = self._run_prefix(observation)
        ue = self.understanding
        keys, values, valid = snap.keys, snap.values, snap.pad_mask
        pos = snap.next_position.clone()
        b = keys.shape[1]
        eos = {self.config.understanding.token_ids.get("eos_token_id", -1)}
        if self.tokenizer is not None:
            eos |= {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id}
        alive = torch.ones(b, dtype=torch.bool, device=keys.device)
        generated: list[torch.Tensor] = []
        logits = ue.lm_head(ue.norm(h[:, -1:]))
        for _ in range(max_new_tokens):
            if not bool(alive.any()):
                break
            token = logits[:, -1].argmax(-1)
            generated.append(torch.where(alive, token, torch.full_like(token, -1)))
            x = ue.embed_tokens(token[:, None]).to(self.dtype)
            rope = self._rope(pos[None, :, None].expand(3, -1, 1))
            valid = torch.cat([valid, alive[:, None]], dim=1)
            mask = valid[:, None, :]
            new_k, new_v = [], []
            for i in range(self.config.num_layers):
                (x, _), (k, v) = mot_layer(
                    self._experts(i), self.layouts, [x, None], [rope, None], mask, (keys[i], values[i])
                )
                new_k.append(k)
                new_v.append(v)
            keys = torch.cat([keys, torch.stack(new_k)], dim=3)
            values = torch.cat([values, torch.stack(new_v)], dim=3)
            pos = pos + alive.long()
            alive = alive & ~torch.isin(token, torch.tensor(sorted(eos), device=token.device))
            logits = ue.lm_head(ue.norm(x))
        texts = self._decode_generated(generated, b)
        snap = KVSnapshot(keys, values, valid, pos, reasoning_text=texts)
        return snap.padded(capacity) if capacity is not None else snap

    def _decode_generated(self, generated: list[torch.Tensor], batch: int) -> list[str]:
        if not generated:
            return [""] * batch
        ids = torch.stack(generated, dim=1).tolist()
        out = []
        for row in ids:
            row = [t for t in row if t >= 0]
            if self.tokenizer is None:
                out.append(" ".join(map(str, row)))
            else:
                out.append(self.tokenizer.decode(row, skip_special_tokens=True).strip())
        return out

    # ------------------------------------------------------------------ fast path
    def fast_step(
        self,
        keys: torch.Tensor,
        values: torch.Tensor,
        pad_mask: torch.Tensor,
        next_position: torch.Tensor,
        target_points: torch.Tensor,
        speed: torch.Tensor,
        scene: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pure-tensor action pass (the exported engine), refiner included when one is attached.

        Inputs: keys / values [L, B, Hkv, S, D] (a snapshot's, S = prefix length or capacity), pad_mask [B, S]
        (True = valid prefix token), next_position [B] (int64, position of the first action token),
        target_points [B, 2, 2] (ego frame, metres), speed [B, 1] (m/s), scene [B, N_scene, D_scene] or None.
        Returns (path [B, n_route, 2], waypoints [B, n_waypoints, 2], decision_logits [B, n_decision, vocab]);
        the presets have n_route = 20 and n_waypoints = 6.
        """
        path, waypoints, logits, hidden = self.action_heads(
            keys, values, pad_mask, next_position, target_points, speed, scene
        )
        path, waypoints = self._refine(path, waypoints, hidden)
        return path, waypoints, logits

    def action_heads(
        self,
        keys: torch.Tensor,
        values: torch.Tensor,
        pad_mask: torch.Tensor,
        next_position: torch.Tensor,
        target_points: torch.Tensor,
        speed: torch.Tensor,
        scene: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The action pass without the refiner, plus the action expert's final hidden states.

        Same inputs as ``fast_step``. Returns (path [B, n_route, 2], waypoints [B, n_waypoints, 2], decision_logits
        [B, n_decision, vocab], hidden [B, N_action, H_ae]); ``hidden`` is what a trajectory refiner conditions on.
        """
        hidden = self._action_hidden(keys, values, pad_mask, next_position, target_points, speed, scene)
        path, waypoints, logits = self._heads(hidden)
        return path, waypoints, logits, hidden

    def _refine(self, path: torch.Tensor, waypoints: torch.Tensor, hidden: torch.Tensor):
        refiner = self.__dict__["refiner"]
        if refiner is None:
            return path, waypoints
        path_r, waypoints_r = refiner.sample(path, waypoints, hidden.to(next(refiner.parameters()).dtype))
        return path_r.to(path.dtype), waypoints_r.to(waypoints.dtype)

    @torch.no_grad()
    def act(self, snapshot: KVSnapshot, state: ActionState) -> ActionOutput:
        """Run the action expert against a snapshot (read-only) and decode the decision text.

        ``state``: target_points [B, 2, 2], speed [B, 1], scene [B, N_scene, D_scene] or None. Returns an
        ActionOutput with path [B, n_route, 2], waypoints [B, n_waypoints, 2], decision_logits
        [B, n_decision, vocab] and hidden [B, N_action, H_ae].
        """
        dev = self.device
        path, waypoints, logits, hidden = self.action_heads(
            snapshot.keys,
            snapshot.values,
            snapshot.pad_mask,
            snapshot.next_position,
            state.target_points.to(dev),
            state.speed.to(dev),
            None if state.scene is None else state.scene.to(dev),
        )
        path, waypoints = self._refine(path, waypoints, hidden)
        return ActionOutput(path, waypoints, logits, self.decode_decision(logits), hidden)

    def fast_step_module(self) -> nn.Module:
        """An nn.Module whose forward is ``fast_step`` (for torch.compile / ONNX / TensorRT export)."""
        return FastStep(self)

    # ------------------------------------------------------------------ training pass
    def forward(
        self, observation: Observation, state: ActionState, return_snapshot: bool = False
    ) -> ActionOutput | tuple[ActionOutput, KVSnapshot]:
        """Joint single pass over prefix and action tokens (what training differentiates; no refiner here —
        the refiner stage applies it explicitly).

        ``observation`` [B, T] tokens as for ``prefill``; ``state`` as for ``act``. Returns an ActionOutput with
        path [B, n_route, 2], waypoints [B, n_waypoints, 2], decision_logits [B, n_decision, vocab] and hidden
        [B, N_action, H_ae]. With ``return_snapshot`` the UE K/V of this joint pass come back too as a KVSnapshot
        (keys / values [L, B, Hkv, T, D]; they must equal ``prefill``'s).
        """
        obs = observation.to(self.device)
        pre = self.understanding.embed_prefix(obs)
        t_pre = pre.embeds.shape[1]
        x_ue = pre.embeds.to(self.dtype)
        dev = self.device
        scene = None if state.scene is None else state.scene.to(dev)
        x_ae = self.action_io.embed(state.target_points.to(dev), state.speed.to(dev), scene, self.dtype)
        n = x_ae.shape[1]
        ue_rows = torch.cat([self._prefix_mask(obs, pre), pre.valid.new_zeros(x_ue.shape[0], t_pre, n)], dim=-1)
        ae_rows = joint_action_rows(pre.valid, self.action_groups)
        mask = torch.cat([ue_rows, ae_rows], dim=1)
        next_position = self._next_position(pre)
        rope = [self._rope(pre.position_ids), self._rope(self._action_positions(next_position))]
        keys, values = [], []
        run_layer = self.__dict__["layer_runner"] or self.joint_layer
        for i in range(self.config.num_layers):
            x_ue, x_ae, k, v = run_layer(i, x_ue, x_ae, rope, mask)
            keys.append(k)
            values.append(v)
            x_ue = self._deepstack(x_ue, pre, i)
        hidden = self.action_norm(x_ae)
        path, waypoints, logits = self._heads(hidden)
        out = ActionOutput(path, waypoints, logits, self.decode_decision(logits.detach()), hidden)
        if return_snapshot:
            return out, KVSnapshot(torch.stack(keys), torch.stack(values), pre.valid, next_position)
        return out

    # ------------------------------------------------------------------ decoding and prompting
    def decode_decision(self, decision_logits: torch.Tensor | np.ndarray) -> list[str]:
        """The best meta-action sentence (``constrain_decisions``, model/decision_vocab.py), else the argmax per
        decision position (no autoregression), keep the <|im_start|>..<|im_end|> span, decode."""
        if self.constrain_decisions and self.tokenizer is not None:
            vocab = self._decision_vocabulary(int(decision_logits.shape[1]))
            if vocab is not None:
                return vocab.decode(decision_logits)
        ids = decision_logits.argmax(-1).tolist()
        if self.tokenizer is None:
            return [" ".join(map(str, row)) for row in ids]
        start_id = self.tokenizer.convert_tokens_to_ids("<|im_start|>")
        end_id = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        texts = []
        for row in ids:
            if start_id in row:
                row = row[row.index(start_id) + 1 :]
                row = row[: row.index(end_id)] if end_id in row else row
            texts.append(self.tokenizer.decode(row, skip_special_tokens=True).strip())
        return texts

    def _decision_vocabulary(self, positions: int) -> Any:
        """The vocabulary for ``positions`` decision positions (built once), None when the tokenizer cannot spell
        the decision targets (no ChatML markers)."""
        cached = self.__dict__.get("_decision_vocab")
        if cached is not None and cached[0] is self.tokenizer and cached[1] == positions:
            return cached[2]
        from automot.model.decision_vocab import DecisionVocabulary

        try:
            vocab = DecisionVocabulary(self.tokenizer, positions)
        except (ValueError, TypeError, KeyError):
            vocab = None
        self.__dict__["_decision_vocab"] = (self.tokenizer, positions, vocab)
        return vocab

    def prompt_builder(self) -> PromptBuilder:
        if self.tokenizer is None or self.image_processor is None:
            raise RuntimeError(
                f"model {self.config.name!r} has no tokenizer/image processor attached "
                "(build it with build_model(..., with_processor=True) or load it from a directory that has them)"
            )
        return PromptBuilder(self.config, self.tokenizer, self.image_processor)

    def build_observation(self, images: list[np.ndarray], target_points: np.ndarray, speed: float) -> Observation:
        """Camera frames (RGB uint8, oldest first) + target points + speed -> batch-1 Observation."""
        return self.prompt_builder().build(images, target_points, speed)

    @staticmethod
    def build_state(target_points: np.ndarray, speed: float, scene: np.ndarray | None = None) -> ActionState:
        return build_state(target_points, speed, scene)


class FastStep(nn.Module):
    """Exportable wrapper around AutoMoTModel.fast_step (shares the model's weights)."""

    def __init__(self, model: AutoMoTModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, keys, values, pad_mask, next_position, target_points, speed, scene=None):
        """``AutoMoTModel.fast_step``: keys / values [L, B, Hkv, S, D], pad_mask [B, S], next_position [B],
        target_points [B, 2, 2], speed [B, 1], scene [B, N_scene, D_scene] or None -> (path [B, n_route, 2],
        waypoints [B, n_waypoints, 2], decision_logits [B, n_decision, vocab])."""
        return self.model.fast_step(keys, values, pad_mask, next_position, target_points, speed, scene)
