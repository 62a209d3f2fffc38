"""The golden-dump comparison (scripts/golden_dump.py compare) on a tiny synthetic dump written here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from automot.model.released.golden import compare_frame, frame_from_model, load_frame, save_frame
from automot.model.released.loader import load_released
from automot.model.released.synthetic import build_tiny_released, tiny_released_config, write_released_folder

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("golden_dump", ROOT / "scripts" / "golden_dump.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("golden")
    folder = write_released_folder(*build_tiny_released(seed=5), root / "released")
    model = load_released(folder, dtype="fp32", preset=tiny_released_config())
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 255, (512, 1024, 3), dtype=np.uint8) for _ in range(4)]
    frame = frame_from_model(
        model, images, np.array([[8.0, 1.5], [20.0, -2.0]]), 4.2,
        rng.uniform(0, 255, (3, 64, 128)), (rng.random((1, 64, 64)) < 0.1).astype(np.float32), kv_layers=(0, 1),
    )  # fmt: skip
    (root / "dump").mkdir()
    save_frame(root / "dump" / "frame_000.npz", **frame)
    preset = root / "tiny.yaml"
    tiny_released_config().save_yaml(preset)
    return root, folder, model, preset


def test_compare_script_passes_on_a_matching_dump(setup, capsys):
    root, folder, _, preset = setup
    args = [
        "compare",
        "--golden",
        str(root / "dump"),
        "--checkpoint",
        str(folder),
        "--preset",
        str(preset),
        "--dtype",
        "fp32",
    ]
    assert _script().main(args) == 0
    out = capsys.readouterr().out
    for name in (
        "input_ids",
        "position_ids",
        "prefill_mask",
        "keys[layer 1]",
        "bev_feature",
        "gen_hidden",
        "waypoints",
        "decision_ids",
        "reuse_waypoints",
    ):
        assert f"PASS {name}" in out
    assert "FAIL" not in out and "1 frame(s), 0 failed" in out


@pytest.mark.parametrize(
    ("field", "change", "failing"),
    [
        ("input_ids", lambda a: np.where(np.arange(a.size) == 3, a + 1, a), "input_ids"),
        ("prefill_mask", lambda a: np.tril(np.ones_like(a)), "prefill_mask"),
        ("keys", lambda a: a * 1.1, "keys[layer 0]"),
        ("bev_feature", lambda a: a + 0.1 * np.abs(a).max(), "bev_feature"),
        ("waypoints", lambda a: a + np.float32(0.02), "waypoints"),
        ("decision_ids", lambda a: (a + 1) % 384, "decision_ids"),
    ],
)
def test_compare_flags_each_kind_of_divergence(setup, field, change, failing):
    root, _, model, _ = setup
    frame = load_frame(root / "dump" / "frame_000.npz")
    frame[field] = change(frame[field])
    checks = {c.name: c for c in compare_frame(model, frame)}
    assert not checks[failing].ok
    assert checks["image_grid_thw"].ok and checks["pixel_values"].ok  # earlier stages still pass


def test_missing_arrays_skip_their_checks(setup):
    _, _, model, _ = setup
    frame = {"target_points": np.array([[5.0, 0.0], [9.0, 0.0]], np.float32), "speed": np.float32(3.0)}
    assert compare_frame(model, frame) == []
    with pytest.raises(ValueError, match="unknown arrays"):
        save_frame(Path("unused.npz"), waypoint=np.zeros(2))


def test_reuse_pass_without_the_position_shift_is_flagged(setup):
    root, _, model, _ = setup
    frame = load_frame(root / "dump" / "frame_000.npz")
    assert np.abs(frame["reuse_waypoints"] - frame["waypoints"]).max() > 1e-4  # the shift is observable here
    frame["reuse_waypoints"] = frame["waypoints"]  # what an unshifted second pass would give
    # The tiny random model's waypoints are centimetres long, so compare at a tolerance below the shift's effect.
    checks = {c.name: c for c in compare_frame(model, frame, metres=1e-5)}
    assert not checks["reuse_waypoints"].ok and checks["waypoints"].ok
