"""The embedded-world collector: a short expert episode becomes a readable dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest

from automot.training.collect import CollectOptions, collect
from automot.training.data.automot_format import read_dataset, read_meta
from automot.training.data.schema import DECISIONS


def test_collect_short_episode(tmp_path):
    opts = CollectOptions(
        routes=["merge"], episodes=1, out=str(tmp_path / "ds"), image_size=(64, 32), max_ticks=120, progress=False
    )
    summary = collect(opts)
    (row,) = summary["episodes"]
    assert row["kept"] and row["samples"] > 0
    # The episode was cut at 120 ticks, nothing else (min-speed checkpoints are listed, as on the leaderboard).
    assert set(row["infractions"]) <= {"route_timeout", "min_speed_infractions"}
    meta = read_meta(tmp_path / "ds")
    assert meta.rig == "automot-front" and meta.frame_rate_hz == 20.0
    assert (meta.cameras["CAM_FRONT"].width, meta.cameras["CAM_FRONT"].height) == (64, 32)
    (episode,) = read_dataset(tmp_path / "ds")
    # Ticks 0..119 are recorded; a sample every 10 ticks needs 3 s (60 ticks) of recorded future: ticks 0..50.
    assert [r.frame for r in episode.records] == list(range(0, 51, 10))
    for rec in episode.records:
        assert all(d in DECISIONS for d in rec.decisions)
        assert rec.path.shape == (20, 2) and rec.waypoints.shape == (6, 2)
        assert all(h % opts.frame_every == 0 and h <= rec.frame for h in rec.history)
        assert episode.load_image(rec.frame).shape == (32, 64, 3)
        assert {q.question for q in rec.qa} >= {"Is the lane ahead clear?", "How fast am I driving?"}
    late = episode.records[-1]
    # The path follows the route centreline ahead: 1 m steps, starting ~1 m in front of the ego.
    steps = np.linalg.norm(np.diff(late.path, axis=0), axis=1)
    np.testing.assert_allclose(steps, 1.0, atol=0.05)
    assert 0.5 < late.path[0, 0] < 1.5 and late.speed > 0.0
    assert late.waypoints[-1, 0] > late.waypoints[0, 0]  # driving forward
    saved = json.loads((tmp_path / "ds" / "collect_summary.json").read_text())
    assert saved["total_samples"] == len(episode.records)


def test_collect_rejects_unknown_routes(tmp_path):
    with pytest.raises(ValueError, match="unknown route"):
        collect(CollectOptions(routes=["no_such_route"], out=str(tmp_path / "ds"), progress=False))


def test_unknown_rig_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys):
    """`collect --rig nope` (issue 20, case 13) was an internal error (exit 1, KeyError): a user's input is exit 2,
    one line naming the known rigs, and no --out folder."""
    from automot.cli import main as automot_main
    from automot.errors import ExitCode

    out = tmp_path / "ds"
    code = automot_main(["collect", "--routes", "highway_lane_keep", "--rig", "nope", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == ExitCode.USAGE
    assert err == ["automot collect: error: unknown rig 'nope'; known: automot-front, bench2drive-6cam"]
    assert not out.exists()
