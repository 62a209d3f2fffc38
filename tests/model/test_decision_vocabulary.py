"""Decision text constrained to the meta-action vocabulary (issue 22, item 7): model/decision_vocab.py."""

from __future__ import annotations

import json

import pytest
import torch

from automot.model.decision_vocab import DECISIONS, DecisionVocabulary, is_vocabulary_text
from automot.model.prompting import builtin_tokenizer
from automot.training.data.schema import DECISIONS as DATASET_DECISIONS
from automot.training.data.torch_dataset import IGNORE_INDEX, decision_targets, target_text

POSITIONS = 8


def test_the_vocabulary_is_the_datasets():
    assert DECISIONS == DATASET_DECISIONS


def _logits_for(ids: torch.Tensor, vocab_size: int, noise: torch.Tensor | None = None) -> torch.Tensor:
    logits = torch.zeros(1, POSITIONS, vocab_size) if noise is None else noise.clone()
    for pos, token in enumerate(ids.tolist()):
        if token != IGNORE_INDEX:
            logits[0, pos, token] += 6.0
    return logits


def test_a_target_sequence_decodes_to_its_sentence():
    tok = builtin_tokenizer()
    vocab = DecisionVocabulary(tok, POSITIONS)
    n = len(tok)
    # 6 content tokens fit the 8 positions (with <|im_start|>, <|im_end|>): the whole sentence is determined
    for sentence in ("accelerate, accelerate, accelerate", "stop, keep, keep"):
        assert target_text(tok, decision_targets(tok, sentence, POSITIONS)) == sentence
        assert vocab.decode(_logits_for(decision_targets(tok, sentence, POSITIONS), n)) == [sentence]
    # longer ones are truncated: only the slots every sentence with those tokens shares are named
    for sentence, truncated, expected in (
        ("keep, decelerate, stop", "keep, de", "keep, decelerate"),  # "de" is only "decelerate"
        ("turn left, keep, stop", "turn left, keep", "turn left, keep"),
        ("stop, stop, stop", "stop, stop,", "stop, stop"),
    ):
        assert target_text(tok, decision_targets(tok, sentence, POSITIONS)) == truncated
        assert vocab.decode(_logits_for(decision_targets(tok, sentence, POSITIONS), n)) == [expected]


def test_garbled_argmax_becomes_a_vocabulary_string():
    tok = builtin_tokenizer()
    vocab = DecisionVocabulary(tok, POSITIONS)
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        logits = torch.randn(1, POSITIONS, len(tok), generator=gen) * 3
        (text,) = vocab.decode(logits)
        assert is_vocabulary_text(text), text
        # it is the highest-scoring target: no other target sequence scores higher
        scores = vocab.scores(logits)[0]
        assert vocab.texts[int(scores.argmax())] == text


def test_demo_drive_decisions_are_vocabulary_strings(tmp_path, capsys):
    """A full demo drive (intersection, seed 0: the route that collides): every decision text is vocabulary."""
    from automot.cli import main

    out = tmp_path / "run"
    assert main(["drive", "--route", "intersection", "--seed", "0", "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    ticks = [json.loads(line) for line in (out / "ticks.jsonl").read_text().splitlines()]
    results = json.loads((out / "results.json").read_text())["_checkpoint"]["records"][0]
    assert not results["status"].startswith("Stopped")  # driven to its end, not capped
    decisions = [t["decision"] for t in ticks if not t["warmup"] and t["decision"] is not None]
    assert len(decisions) > 100
    bad = sorted({d for d in decisions if not is_vocabulary_text(d)})
    assert not bad, bad


@pytest.mark.parametrize("flag, expected", [(None, True), (False, False)])
def test_runtime_factory_switch(flag, expected):
    from automot.agent.config import AgentConfig
    from automot.agent.runtime_factory import build_runtime

    cfg = AgentConfig()
    cfg.model.decision_vocabulary = flag
    runtime = build_runtime(cfg)
    try:
        assert runtime.model.constrain_decisions is expected
    finally:
        runtime.close()


def test_released_models_keep_their_decoding_by_default():
    from automot.model.config import get_config
    from automot.model.released.loader import _meta_model

    assert _meta_model(get_config("tiny")).constrain_decisions is False


@pytest.mark.parametrize("positions", [5, 8, 12, 16])
def test_decode_picks_the_best_log_probability_however_many_positions(positions):
    """decode leaves out the terms every candidate shares (model/decision_vocab.py decode); it must still pick the
    candidate with the highest summed log-softmax, computed here with torch over the whole vocabulary. At 16
    positions short sentences end before long ones, so the normaliser of those positions matters."""
    tok = builtin_tokenizer()
    vocab = DecisionVocabulary(tok, positions)
    assert (vocab._normalised_positions.size > 0) == (positions > 8)  # 8: every sentence fills every position
    gen = torch.Generator().manual_seed(positions)
    ids, mask = vocab.ids, vocab.mask.float()
    for _ in range(40):
        logits = torch.randn(2, positions, len(tok), generator=gen) * 4
        logp = torch.log_softmax(logits, -1)  # [B, N, V]
        expected = (logp[:, torch.arange(positions)[None, :], ids] * mask).sum(-1)  # [B, C]
        assert vocab.scores(logits) == pytest.approx(expected.numpy(), abs=1e-3)
        assert vocab.decode(logits) == [vocab.texts[int(i)] for i in expected.argmax(-1)]
        assert vocab.decode(logits.numpy()) == vocab.decode(logits)  # the engines hand over NumPy arrays
