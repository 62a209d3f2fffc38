"""pipelined mode (issue #14): a fixed schedule in simulation time, so outputs do not depend on machine speed."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from automot.model import build_model
from automot.runtime import RuntimeConfig, build_runtime
from automot.runtime.buffers import DoubleBufferedKV, SnapshotMeta
from automot.runtime.engines import TorchEngine
from automot.runtime.types import DrivingObservation, DrivingState

DT = 0.05


@pytest.fixture(scope="module")
def model():
    return build_model("tiny")


def _obs(model, seed: int) -> DrivingObservation:
    rng = np.random.default_rng(seed)
    p = model.config.prompt
    images = [rng.integers(0, 255, (p.image_height, p.image_width, 3), dtype=np.uint8) for _ in range(p.num_frames)]
    return DrivingObservation(images, np.array([[6.0, 0.5], [15.0, 1.0 + seed]], np.float32), 3.0 + 0.1 * seed)


def _state(frame: int) -> DrivingState:
    return DrivingState(np.array([[6.0, 0.5 + 0.1 * frame], [15.0, 1.0]], np.float32), 3.0 + 0.05 * frame)


class SlowPrefill:
    """Wraps model.prefill with a sleep of ``delays[i % len]`` seconds on call i (the result is unchanged)."""

    def __init__(self, model, delays: list[float]) -> None:
        self.real, self.delays, self.calls = model.prefill, delays, 0

    def __call__(self, obs, capacity=None):
        time.sleep(self.delays[self.calls % len(self.delays)])
        self.calls += 1
        return self.real(obs, capacity=capacity)


def _drive(model, frames, **opts):
    with build_runtime(model, mode="pipelined", **opts) as rt:
        outs = []
        for f in frames:
            rt.submit(_obs(model, f), f * DT, f)
            outs.append(rt.step(_state(f), f * DT, f))
        return outs, rt.stats()


def _key(out):
    return (out.safe_stop, out.snapshot_frame, out.age_ticks, out.decision_text)


def _emulate(model, frames, k: int, every: int, threads: tuple[int, int]):
    """Single-threaded emulation of the schedule: prefill at t on the schedule, publish at t + K, step every tick."""
    mc = model.config
    store = DoubleBufferedKV(mc.num_layers, mc.num_kv_heads, mc.max_prefix_tokens, mc.head_dim)
    engine = TorchEngine(model.fast_step_module())
    pending: dict[int, tuple] = {}
    outs = []
    saved = torch.get_num_threads()
    try:
        for f in frames:
            if f % every == 0 or (store.version == 0 and not pending):
                torch.set_num_threads(threads[1])
                o = _obs(model, f)
                with torch.inference_mode():
                    snap = model.prefill(model.build_observation(list(o.images), o.target_points, o.speed))
                pending[f + k] = (snap, f)
            if f in pending:
                snap, src = pending.pop(f)
                with store.write() as slot:
                    valid = slot.load(snap.keys, snap.values, snap.pad_mask, snap.next_position)
                    slot.meta = SnapshotMeta(0, src, src * DT, None, 0.0, valid)
            torch.set_num_threads(threads[0])
            with store.read() as view:
                if view is None:
                    outs.append(None)
                    continue
                s = model.build_state(_state(f).target_points, _state(f).speed)
                path, wps, _ = engine(
                    view.keys, view.values, view.pad_mask, view.next_position, s.target_points, s.speed, None
                )
                outs.append((view.meta.frame, path[0], wps[0]))
    finally:
        torch.set_num_threads(saved)
    return outs


def test_schedule_publishes_exactly_at_t_plus_k(model):
    outs, stats = _drive(model, range(10), latency_ticks=3, refresh_every=2)
    # frames 0..2: nothing published yet (warm-up latency), then the refresh of t is used from t + 3 on
    assert [o.safe_stop for o in outs[:3]] == [True] * 3
    assert all(o.extras["stop_kind"] == "no_snapshot" for o in outs[:3])
    assert [o.snapshot_frame for o in outs[3:]] == [0, 0, 2, 2, 4, 4, 6]
    assert [o.age_ticks for o in outs[3:]] == [3, 4, 3, 4, 3, 4, 3]
    p = stats["pipeline"]
    assert p["latency_ticks"] == 3 and p["refresh_every"] == 2 and p["due"] == 4 and p["deadline_misses"] == 0
    assert 0 <= p["waits"] <= p["due"] and stats["pipeline_wait_ms"]["count"] == p["waits"]
    assert stats["mode"] == "pipelined" and stats["threads"]["fast"] >= 1


def test_identical_outputs_whatever_the_slow_path_speed_and_equal_to_emulation(model, monkeypatch):
    frames = range(3, 17)  # starts off the schedule: frame 3 refreshes because nothing exists yet
    runs = []
    for delays in ([0.0], [0.06, 0.0, 0.02], [0.12]):  # each within its deadline, some past K ticks of 50 ms
        monkeypatch.setattr(model, "prefill", SlowPrefill(model, delays))
        outs, stats = _drive(model, frames, latency_ticks=2, refresh_every=2, refresh_timeout_s=30.0)
        monkeypatch.undo()
        assert stats["pipeline"]["deadline_misses"] == 0
        runs.append(outs)
    for a, b in zip(runs[0], runs[1]):
        assert _key(a) == _key(b)
        if not a.safe_stop:
            assert np.array_equal(a.path, b.path) and np.array_equal(a.waypoints, b.waypoints)
    for a, c in zip(runs[0], runs[2]):
        assert _key(a) == _key(c) and (a.safe_stop or np.array_equal(a.waypoints, c.waypoints))
    cfg = RuntimeConfig(mode="pipelined", latency_ticks=2, refresh_every=2)
    emulated = _emulate(model, frames, 2, 2, cfg.resolved_threads())
    for out, em in zip(runs[0], emulated):
        if em is None:
            assert out.safe_stop and out.extras["stop_kind"] == "no_snapshot"
            continue
        assert not out.safe_stop and out.snapshot_frame == em[0]
        np.testing.assert_allclose(out.path, em[1], rtol=0, atol=1e-6)
        np.testing.assert_allclose(out.waypoints, em[2], rtol=0, atol=1e-6)


def test_k0_every2_reproduces_sync_output_for_output(model):
    for frames in (range(0, 12), range(5, 14)):
        piped, _ = _drive(model, frames, latency_ticks=0, refresh_every=2, reused_prefix_position_shifts=1)
        with build_runtime(model, mode="sync", sync_every=2, reused_prefix_position_shifts=1) as rt:
            synced = []
            for f in frames:
                rt.submit(_obs(model, f), f * DT, f)
                synced.append(rt.step(_state(f), f * DT, f))
        for p, s in zip(piped, synced):
            assert _key(p) == _key(s) and p.snapshot_version == s.snapshot_version and not p.safe_stop
            assert np.array_equal(p.path, s.path) and np.array_equal(p.waypoints, s.waypoints)


def test_deadline_miss_is_a_flagged_counted_safe_stop(model, monkeypatch):
    release = threading.Event()
    calls = {"n": 0}
    real = model.prefill

    def prefill(obs, capacity=None):
        calls["n"] += 1
        if calls["n"] == 2:  # the refresh of frame 2 hangs past its budget
            release.wait(30)
        return real(obs, capacity=capacity)

    monkeypatch.setattr(model, "prefill", prefill)
    try:
        opts = {"latency_ticks": 1, "refresh_every": 2, "refresh_timeout_s": 0.2, "close_timeout_s": 5.0}
        with build_runtime(model, mode="pipelined", **opts) as rt:
            outs = []
            for f in range(6):
                rt.submit(_obs(model, f), f * DT, f)
                t0 = time.perf_counter()
                outs.append(rt.step(_state(f), f * DT, f))
                assert time.perf_counter() - t0 < 5.0  # a step never waits past the budget
            stats = rt.stats()
            release.set()
            rt.wait_idle(10)
            late = rt.stats()
        assert outs[1].snapshot_frame == 0 and not outs[1].safe_stop
        miss = outs[3]
        assert miss.safe_stop and miss.extras["stop_kind"] == "deadline_miss"
        assert "deadline miss" in miss.safe_stop_reason and "frame 2" in miss.safe_stop_reason
        assert miss.snapshot_frame == 0  # names the snapshot still front
        assert stats["pipeline"]["deadline_misses"] >= 1 and stats["safe_stops"]["deadline_miss"] >= 1
        assert late["discarded_refreshes"] >= 1  # the late result of frame 2 is never published
        assert all(o.snapshot_frame != 2 for o in outs)
    finally:
        release.set()


def test_pipelined_options_are_validated():
    with pytest.raises(ValueError, match="latency_ticks"):
        RuntimeConfig(mode="pipelined", latency_ticks=-1)
    with pytest.raises(ValueError, match="refresh_every"):
        RuntimeConfig(mode="pipelined", refresh_every=0)
    with pytest.raises(ValueError, match="max_snapshot_age_ticks"):
        RuntimeConfig(mode="pipelined", latency_ticks=20, refresh_every=2)
    assert (
        RuntimeConfig(mode="pipelined", latency_ticks=0).resolved_threads()
        == RuntimeConfig(mode="sync").resolved_threads()
    )
    assert RuntimeConfig(mode="pipelined", latency_ticks=2).overlapping
