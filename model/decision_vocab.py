"""Decision text constrained to the meta-action vocabulary (the decision head's own training targets).

The decision head predicts one token per decision position, independently (no autoregression); the argmax per
position can spell a sentence that was never a target (``dccelerate,,,,``). The head is trained on
``<|im_start|> "a, b, c" <|im_end|>`` with ``a, b, c`` meta-actions (now, +1 s, +2 s) from :data:`DECISIONS`,
truncated to the positions there are (training/data/torch_dataset.py ``decision_targets``). Constrained decoding
scores every such target sequence by the sum of its tokens' log-probabilities over the positions it supervises and
returns the best one's text. Truncation can leave later slots undetermined (8 positions hold ``keep, de``): the
text is then the slots every sentence of that token sequence shares (``keep, decelerate``), so every comma-separated
part is a vocabulary string.

The released checkpoint's decoding (model/released/prompt.py) is not changed by this.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch

from automot.meta_actions import DECISION_SLOTS, DECISIONS

SLOTS = DECISION_SLOTS  # now, +1 s, +2 s


class DecisionVocabulary:
    """Every decision target sequence of a tokenizer and a number of decision positions, and its text."""

    def __init__(self, tokenizer: Any, num_positions: int, decisions: tuple[str, ...] = DECISIONS) -> None:
        if num_positions < 3:
            raise ValueError(f"a decision vocabulary needs at least 3 positions, got {num_positions}")
        start = tokenizer.convert_tokens_to_ids("<|im_start|>")
        end = tokenizer.convert_tokens_to_ids("<|im_end|>")
        groups: dict[tuple[int, ...], list[tuple[str, ...]]] = {}
        for combo in itertools.product(decisions, repeat=SLOTS):
            content = tokenizer.encode(", ".join(combo), add_special_tokens=False)[: num_positions - 2]
            groups.setdefault((start, *content, end), []).append(combo)
        self.num_positions = num_positions
        self.sequences = list(groups)
        self.texts = [", ".join(_shared_slots(combos)) for combos in groups.values()]
        ids = torch.zeros(len(groups), num_positions, dtype=torch.long)
        mask = torch.zeros(len(groups), num_positions, dtype=torch.bool)
        for i, seq in enumerate(self.sequences):
            ids[i, : len(seq)] = torch.tensor(seq)
            mask[i, : len(seq)] = True
        self.ids, self.mask = ids, mask
        self._ids, self._mask = ids.numpy(), mask.numpy().astype(np.float32)
        self._positions = np.arange(num_positions)
        # What decode may leave out without changing which candidate wins (decode says why).
        supervised, every = mask.numpy().any(0), mask.numpy().all(0)
        same_token = every & (self._ids == self._ids[:1]).all(0)
        self._picked_positions = np.flatnonzero(supervised & ~same_token)
        self._normalised_positions = np.flatnonzero(supervised & ~every)
        self._weights: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def _picked_weights(self, n: int, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
        """(flat indices into [N * V] logits, [K, C] weights): the picked logits each candidate sums (cached)."""
        key = (n, vocab_size)
        if key not in self._weights:
            picked = self._picked_positions[self._picked_positions < n]
            flat_ids = picked[None, :] * vocab_size + self._ids[:, picked]  # [C, k]
            flat, inverse = np.unique(flat_ids, return_inverse=True)
            weights = np.zeros((flat.size, len(self.sequences)), np.float32)
            np.add.at(
                weights,
                (inverse.reshape(flat_ids.shape), np.arange(len(self.sequences))[:, None]),
                self._mask[:, picked],
            )
            self._weights[key] = (flat, weights)
        return self._weights[key]

    def scores(self, decision_logits: torch.Tensor | np.ndarray) -> np.ndarray:
        """[B, C] summed log-probabilities of each candidate sequence.

        NumPy, not torch: on the fast path the logits arrive as a NumPy array from the exported engine, and right
        after an ONNX Runtime run every torch op pays a cold dispatch (a 100-float sum took ~85 us, log_softmax +
        gather ~0.5 ms per tick on the small preset, 2 cores); the same arithmetic in NumPy took ~0.25 ms.
        log_softmax(x)[t] = x[t] - logsumexp(x), so only the picked logits and one logsumexp per position are formed.
        """
        x = _as_array(decision_logits)
        n = min(x.shape[1], self.num_positions)
        x = x[:, :n]
        lse = _logsumexp(x)  # [B, n]
        picked = x[:, self._positions[:n][None, :], self._ids[:, :n]]  # [B, C, n]
        return ((picked - lse[:, None, :]) * self._mask[None, :, :n]).sum(-1)

    def decode(self, decision_logits: torch.Tensor | np.ndarray) -> list[str]:
        """The best vocabulary text for each batch row: the argmax of ``scores``, computed with less.

        A position every candidate supervises adds its log-softmax normaliser to every score alike, and one where
        they also share the token adds the same number to all: neither changes the argmax. Only positions where the
        candidates' masks differ need a logsumexp over the vocabulary. With the builtin tokenizer at 8 positions
        every sentence fills them all, so there are none. On the fast path this saves an exp over N x V logits per
        tick: with Qwen's 151,936-token vocabulary, 1.46 ms for scores + argmax against 17 us here (2-core CPU).
        """
        x = _as_array(decision_logits)
        b, n, v = x.shape
        n = min(n, self.num_positions)
        flat, weights = self._picked_weights(n, v)
        relative = x.reshape(b, -1)[:, flat] @ weights  # [B, C]: one gather and one small matmul
        normalised = self._normalised_positions[self._normalised_positions < n]
        if normalised.size:
            relative = relative - _logsumexp(x[:, normalised]) @ self._mask[:, normalised].T
        best = relative.argmax(-1).tolist()
        return [self.texts[i] for i in best]


def _as_array(decision_logits: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(decision_logits, torch.Tensor):
        decision_logits = decision_logits.detach().float().cpu().numpy()
    return np.asarray(decision_logits, dtype=np.float32)  # [B, N, V]


def _logsumexp(x: np.ndarray) -> np.ndarray:
    """[..., V] -> [...], stable."""
    top = x.max(-1, keepdims=True)
    return top[..., 0] + np.log(np.exp(x - top).sum(-1))


def _shared_slots(combos: list[tuple[str, ...]]) -> list[str]:
    """The leading slots all ``combos`` agree on (all of them for a single, untruncated sentence)."""
    out = []
    for slot in zip(*combos):
        if len(set(slot)) != 1:
            break
        out.append(slot[0])
    return out


def is_vocabulary_text(text: str, decisions: tuple[str, ...] = DECISIONS) -> bool:
    """True when ``text`` is 1..3 comma-separated meta-actions."""
    parts = [p.strip() for p in str(text).split(",")]
    return 1 <= len(parts) <= SLOTS and all(p in decisions for p in parts)
