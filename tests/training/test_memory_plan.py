"""`automot train --dry-run --preset automot-4b --world-size N [--json]`: per-rank memory estimate against a hand
calculation (the formula is in training/memory.py's docstring)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from automot.cli import main

# Hand-counted parameters of the released layout (model/config.py preset_automot_4b):
# UE layer: q 2560x4096, k/v 2560x1024, o 4096x2560, MLP 3 x 2560x9728, 2 RMSNorms of 2560, q/k norms of 128
UE_LAYER = 2560 * 4096 * 2 + 2560 * 1024 * 2 + 3 * 2560 * 9728 + 2 * 2560 + 2 * 128
# AE layer: q 2560x1280 (16 x 80), k/v 2560x320 (4 x 80), o 1280x2560, MLP 3 x 2560x4864, norms 2 x 2560 + 2 x 80
AE_LAYER = 2560 * 1280 * 2 + 2560 * 320 * 2 + 3 * 2560 * 4864 + 2 * 2560 + 2 * 80
# vision block (1024 wide, MLP 4096): qkv + bias, proj + bias, fc1 + bias, fc2 + bias, 2 LayerNorms (w + b)
VISION_BLOCK = 1024 * 3072 + 3072 + 1024 * 1024 + 1024 + 1024 * 4096 + 4096 + 4096 * 1024 + 1024 + 4 * 1024
UNIT = UE_LAYER + AE_LAYER


def _hand(p: int, n: int, b: int = 1) -> dict:
    root = p - 36 * UNIT - 24 * VISION_BLOCK
    t, a = 768, 64 + 3 + 8 + 20 + 6  # prefix capacity; scene + target points / speed + decision + path + waypoints
    patches = 4 * (512 // 16) * (256 // 16)
    stored = 2 * b * (36 * (t * 2560 + a * 2560) + 24 * patches * 1024)
    layer = 2 * b * (t * (8 * 2560 + 3 * 9728) + a * (8 * 2560 + 3 * 4864)) + 2 * b * 32 * (t + a) ** 2 * 2
    logits = 4 * b * 8 * 151936 * 2
    gb = {
        "params": (4 * p / n + 2 * (root + 2 * UNIT)) / 1e9,
        "grads": (4 * p / n + 2 * (root + UNIT)) / 1e9,
        "optimizer": 8 * p / n / 1e9,
        "activations": (stored + layer + logits) / 1e9,
    }
    gb["total"] = sum(gb.values())
    return gb


@pytest.mark.parametrize("world", [8, 1])
def test_dry_run_json_matches_hand_calculation(world, capsys):
    code = main(["train", "--dry-run", "--preset", "automot-4b", "--world-size", str(world), "--json"])
    assert code == 0
    est = json.loads(capsys.readouterr().out)
    assert est["parameters_largest_layer_unit"] == UNIT == 146_483_616
    p = est["parameters"]
    assert 6.0e9 < p < 6.2e9  # the released model: 6.1 B parameters
    assert est["parameters_root_unit"] == p - 36 * UNIT - 24 * VISION_BLOCK
    want = _hand(p, world)
    assert set(est["per_rank_gb"]) == {"params", "grads", "optimizer", "activations", "total"}
    for k, v in want.items():
        assert est["per_rank_gb"][k] == pytest.approx(v, abs=2e-3), k


def test_dry_run_text_and_errors(capsys):
    assert main(["train", "--dry-run", "--preset", "automot-4b", "--world-size", "4"]) == 0
    out = capsys.readouterr().out
    assert "FSDP over 4 ranks" in out and "total" in out
    assert main(["train", "--dry-run", "--preset", "nope"]) == 2
    assert "unknown" in capsys.readouterr().err


def test_dry_run_with_the_fsdp_template_config(capsys):
    template = Path(__file__).resolve().parents[2] / "configs" / "train" / "pdm_lite_fsdp.yaml"
    code = main(["train", "--dry-run", "--config", str(template), "--world-size", "2", "--json"])
    assert code == 0
    est = json.loads(capsys.readouterr().out)
    assert est["preset"] == "small" and est["micro_batch"] == 4 and est["world_size"] == 2
