"""Model-ready training samples and batches.

Decision targets: the decision positions of the action expert are read by argmax and the text between
``<|im_start|>`` and ``<|im_end|>`` is decoded (model.decode_decision), so the target ids for N decision
positions are::

    [<|im_start|>, t_1 .. t_k, <|im_end|>, IGNORE_INDEX ...]     t = tokenizer(decision text), k <= N - 2

Text longer than N - 2 tokens is truncated to its first N - 2 tokens (``<|im_end|>`` always stays the last
supervised id, so decoding still terminates); positions after ``<|im_end|>`` are IGNORE_INDEX (-100) and carry
no loss, because decoding never reads them.

VQA (optional): the scene question replaces the driving instruction in the user turn, followed by an assistant
turn ``<|im_start|>assistant\\n{answer}<|im_end|>``; labels are IGNORE_INDEX except the answer tokens and the
closing ``<|im_end|>``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from automot.model.prompting import PromptBuilder, collate_observations
from automot.model.types import ActionState, Observation
from automot.training.data.bev_features import PRECOMPUTED, BEVSource
from automot.training.data.schema import DatasetError, Episode

IGNORE_INDEX = -100


def decision_targets(tokenizer, text: str, num_positions: int) -> torch.Tensor:
    """[num_positions] long ids for the decision positions (see the module docstring for the rule)."""
    if num_positions < 3:
        raise ValueError(f"decision targets need at least 3 positions, got {num_positions}")
    start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    content = tokenizer.encode(text, add_special_tokens=False)[: num_positions - 2]
    ids = [start, *content, end]
    return torch.tensor(ids + [IGNORE_INDEX] * (num_positions - len(ids)), dtype=torch.long)


def target_text(tokenizer, ids: torch.Tensor) -> str:
    """The text a perfect prediction of ``ids`` decodes to (the truncated decision sentence)."""
    kept = [int(i) for i in ids.tolist() if i != IGNORE_INDEX]
    return tokenizer.decode(kept[1:-1], skip_special_tokens=True).strip()


@dataclass
class VQABatch:
    """Teacher-forced question + answer through the understanding expert's LM head."""

    observation: Observation
    labels: torch.Tensor  # [B, T], IGNORE_INDEX outside the answer

    def to(self, device: torch.device | str) -> VQABatch:
        return VQABatch(self.observation.to(device), self.labels.to(device))


@dataclass
class SceneInputs:
    """Rows of a batch whose BEV tokens the frozen encoder computes online: their encoder inputs."""

    rows: list[int]  # batch rows, ascending
    rgb: torch.Tensor  # [k, 3, h, w] RGB 0..255
    lidar: torch.Tensor  # [k, C, H, W] LiDAR histograms

    def to(self, device: torch.device | str) -> SceneInputs:
        return self  # stays on the CPU: the encoder runner takes host arrays, as the agent hands them over


@dataclass
class TrainBatch:
    observation: Observation
    state: ActionState
    path: torch.Tensor  # [B, 20, 2]
    waypoints: torch.Tensor  # [B, 6, 2]
    decision_ids: torch.Tensor  # [B, N_decision]
    decision_text: list[str]  # target sentences as supervised (after truncation)
    vqa: VQABatch | None = None
    # Released layout: rows without precomputed BEV tokens (state.scene holds zeros there until the trainer fills
    # them with the frozen encoder's output; state.scene is None when no row has precomputed tokens).
    scene_inputs: SceneInputs | None = None

    def to(self, device: torch.device | str) -> TrainBatch:
        s = self.state
        state = ActionState(
            s.target_points.to(device), s.speed.to(device), None if s.scene is None else s.scene.to(device)
        )
        return TrainBatch(
            self.observation.to(device),
            state,
            self.path.to(device),
            self.waypoints.to(device),
            self.decision_ids.to(device),
            self.decision_text,
            None if self.vqa is None else self.vqa.to(device),
            None if self.scene_inputs is None else self.scene_inputs.to(device),
        )

    def __len__(self) -> int:
        return int(self.path.shape[0])


class DrivingDataset(Dataset):
    """Samples of a list of episodes, encoded with the model's PromptBuilder."""

    def __init__(
        self, episodes: list[Episode], builder: PromptBuilder, with_vqa: bool = False, bev: BEVSource | None = None
    ) -> None:
        self.episodes = episodes
        self.builder = builder
        self.with_vqa = with_vqa
        self.bev = bev  # released layout: each sample also carries its BEV tokens or the encoder's inputs
        self.num_frames = int(builder.cfg.prompt.num_frames)
        self.num_decision = int(builder.cfg.tokens.num_decision_tokens)
        self.index = [(e, r) for e, ep in enumerate(episodes) for r in range(len(ep.records))]

    def __len__(self) -> int:
        return len(self.index)

    def frames_for(self, e: int, r: int) -> list[int]:
        """Prompt frames oldest first: the last num_frames of history + [frame], oldest repeated if short."""
        rec = self.episodes[e].records[r]
        frames = list(rec.prompt_frames) if rec.prompt_frames else [*rec.history, rec.frame]
        frames = frames[-self.num_frames :]
        return [frames[0]] * (self.num_frames - len(frames)) + frames

    def __getitem__(self, i: int) -> dict:
        e, r = self.index[i]
        ep = self.episodes[e]
        rec = ep.records[r]
        images = [ep.load_image(f) for f in self.frames_for(e, r)]
        obs = self.builder.build(images, rec.target_points, rec.speed)
        tok = self.builder.tokenizer
        sample = {
            "observation": obs,
            "target_points": torch.as_tensor(np.asarray(rec.target_points, dtype=np.float32)),
            "speed": torch.tensor([rec.speed], dtype=torch.float32),
            "path": torch.as_tensor(np.asarray(rec.path, dtype=np.float32)),
            "waypoints": torch.as_tensor(np.asarray(rec.waypoints, dtype=np.float32)),
            "decision_ids": decision_targets(tok, rec.decision_text, self.num_decision),
            "vqa": None,
            "scene": None,
            "scene_inputs": None,
        }
        if self.bev is not None:
            if ep.bev_ref is None:
                raise DatasetError(f"episode {ep.name}: the model needs BEV inputs, this layout provides none")
            kind, value = self.bev.resolve(ep.bev_ref(rec.frame))
            sample["scene" if kind == PRECOMPUTED else "scene_inputs"] = value
        sample["decision_text"] = target_text(tok, sample["decision_ids"])
        if self.with_vqa and rec.qa:
            pair = rec.qa[i % len(rec.qa)]  # deterministic rotation over a sample's pairs
            sample["vqa"] = self._vqa(images, rec.target_points, rec.speed, pair.question, pair.answer)
        return sample

    def _vqa(self, images, target_points, speed, question: str, answer: str) -> tuple[Observation, torch.Tensor]:
        tok = self.builder.tokenizer
        obs = self.builder.build(images, target_points, speed, text=question)
        head = tok.encode("<|im_start|>assistant\n", add_special_tokens=False)
        body = tok.encode(answer, add_special_tokens=False) + [tok.convert_tokens_to_ids("<|im_end|>")]
        extra = torch.tensor([head + body], dtype=torch.long)
        labels = torch.cat(
            [torch.full((1, obs.input_ids.shape[1] + len(head)), IGNORE_INDEX), torch.tensor([body])], dim=1
        )
        vqa_obs = Observation(
            input_ids=torch.cat([obs.input_ids, extra], dim=1),
            attention_mask=torch.cat([obs.attention_mask, torch.ones_like(extra)], dim=1),
            pixel_values=obs.pixel_values,
            image_grid_thw=obs.image_grid_thw,
            mm_token_type_ids=torch.cat([obs.mm_token_type_ids, torch.zeros_like(extra)], dim=1),
        )
        return vqa_obs, labels


class Collator:
    """Picklable collate function (DataLoader workers): left-padded observations + stacked targets."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = int(pad_id)

    def __call__(self, samples: list[dict]) -> TrainBatch:
        vqa = None
        pairs = [s["vqa"] for s in samples if s["vqa"] is not None]
        if pairs:
            t = max(lab.shape[1] for _, lab in pairs)
            labels = torch.cat(
                [torch.nn.functional.pad(lab, (t - lab.shape[1], 0), value=IGNORE_INDEX) for _, lab in pairs]
            )
            vqa = VQABatch(collate_observations([o for o, _ in pairs], self.pad_id), labels)
        scene, online = _collate_scene(samples)
        return TrainBatch(
            observation=collate_observations([s["observation"] for s in samples], self.pad_id),
            state=ActionState(
                torch.stack([s["target_points"] for s in samples]), torch.stack([s["speed"] for s in samples]), scene
            ),
            path=torch.stack([s["path"] for s in samples]),
            waypoints=torch.stack([s["waypoints"] for s in samples]),
            decision_ids=torch.stack([s["decision_ids"] for s in samples]),
            decision_text=[s["decision_text"] for s in samples],
            vqa=vqa,
            scene_inputs=online,
        )


def _collate_scene(samples: list[dict]) -> tuple[torch.Tensor | None, SceneInputs | None]:
    """[B, N, C] precomputed tokens (zeros on online rows; None when no row has them) + the online rows' inputs."""
    tokens = [s.get("scene") for s in samples]
    known = [t for t in tokens if t is not None]
    scene = None
    if known:
        zero = torch.zeros_like(known[0])
        scene = torch.stack([t if t is not None else zero for t in tokens])
    rows = [i for i, s in enumerate(samples) if s.get("scene_inputs") is not None]
    if not rows:
        return scene, None
    rgb = torch.stack([torch.from_numpy(samples[i]["scene_inputs"]["rgb"]) for i in rows])
    lidar = torch.stack([torch.from_numpy(samples[i]["scene_inputs"]["lidar"]) for i in rows])
    return scene, SceneInputs(rows, rgb, lidar)
