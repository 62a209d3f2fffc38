"""run_bench (runtime/bench.py) on the real tiny path leaves torch's thread count as it found it, also when it fails;
the model's public action_heads matches fast_step; the cadence entry of the benchmark."""

from __future__ import annotations

import pytest
import torch

import automot.model
from automot.model import build_model, make_dummy_inputs
from automot.runtime import bench
from automot.runtime.bench import run_bench


@pytest.fixture
def thread_count():
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def test_run_bench_restores_the_thread_count(thread_count, monkeypatch):
    """The real benchmark on the tiny preset (1 round, eager torch only): its thread count is in force while it
    measures, and the caller's comes back afterwards although the async runtime's fast path changes the calling
    thread's count on the way (runtime_fast threads)."""
    seen: dict[str, int] = {}
    real_engines, real_runtime = bench._fast_engines, bench._measure_runtime

    def engines_spy(*args, **kwargs):
        seen["measuring"] = torch.get_num_threads()
        return real_engines(*args, **kwargs)

    def runtime_spy(*args, **kwargs):
        out = real_runtime(*args, **kwargs)
        seen["after_runtime"] = torch.get_num_threads()
        return out

    monkeypatch.setattr(bench, "_fast_engines", engines_spy)
    monkeypatch.setattr(bench, "_measure_runtime", runtime_spy)
    torch.set_num_threads(3)
    result = run_bench(
        "tiny", iters=1, warmup=0, backends=["torch"], runtime_engine="torch", threads=2, runtime_ticks=20
    )
    assert torch.get_num_threads() == 3
    assert seen["measuring"] == 2 and result["details"]["threads_side_by_side"] == 2
    assert result["preset"] == "tiny" and result["full_forward_ms"] > 0 and result["fast_step_ms"]["torch"] > 0
    runtime = result["details"]["runtime"]
    assert runtime["refreshes"] >= 1  # the runtime part really ran
    # the torch fast path set the calling thread to its own count, so there was something to restore
    assert seen["after_runtime"] == runtime["threads"]["fast"]


def test_run_bench_restores_a_count_changed_inside_when_it_fails(thread_count, monkeypatch):
    """The real benchmark up to its last stage, which changes the thread count and raises: the caller's count is
    restored all the same."""
    reached: list[int] = []

    def failing_cadence(*args, **kwargs):
        reached.append(torch.get_num_threads())
        torch.set_num_threads(1)  # as the runtime's fast path does on its calling thread
        raise RuntimeError("cadence failed")

    monkeypatch.setattr(bench, "_measure_cadence", failing_cadence)
    torch.set_num_threads(3)
    with pytest.raises(RuntimeError, match="cadence failed"):
        run_bench("tiny", iters=1, warmup=0, backends=["torch"], runtime_engine="torch", threads=2, runtime_ticks=20)
    assert len(reached) == 1  # the benchmark got through building, measuring and the runtime first
    assert torch.get_num_threads() == 3


def test_run_bench_restores_the_thread_count_when_it_fails(thread_count, monkeypatch):
    def failing_build(*args, **kwargs):
        assert torch.get_num_threads() == 3  # the benchmark's setting is in force while it runs
        raise RuntimeError("no model")

    monkeypatch.setattr(automot.model, "build_model", failing_build)
    torch.set_num_threads(1)
    with pytest.raises(RuntimeError, match="no model"):
        run_bench("tiny", iters=1, warmup=0, backends=["torch"], threads=3)
    assert torch.get_num_threads() == 1


def test_action_heads_is_fast_step_without_a_refiner():
    model = build_model("tiny", seed=0)
    obs, state = make_dummy_inputs(model.config, batch=2, seed=0)
    with torch.inference_mode():
        snap = model.prefill(obs, capacity=64)
        inputs = (snap.keys, snap.values, snap.pad_mask, snap.next_position, state.target_points, state.speed)
        path, waypoints, logits, hidden = model.action_heads(*inputs)
        expected = model.fast_step(*inputs)
    for got, want in zip((path, waypoints, logits), expected):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert hidden.shape == (2, model.config.num_action_tokens, model.config.action.hidden_size)


def test_cadence_has_the_pipelined_entry_with_the_same_fields():
    from automot.model import build_model
    from automot.runtime.bench import _measure_cadence, pipeline_latency_ticks

    assert (
        pipeline_latency_ticks(120.0) == 3 and pipeline_latency_ticks(10.0) == 1 and pipeline_latency_ticks(50.0) == 1
    )
    model = build_model("tiny")
    out = _measure_cadence(model, "torch", None, model.config.max_prefix_tokens, ticks=4, latency_ticks=2)
    assert set(out) == {
        "released_sync2_eager",
        "async_torch",
        "pipelined_torch",
        "pipelined_schedule",
        "tick_speedup",
    }
    assert set(out["pipelined_torch"]) == set(out["released_sync2_eager"]) == set(out["async_torch"])
    assert out["pipelined_torch"]["count"] == 4
    sched = out["pipelined_schedule"]
    assert sched["latency_ticks"] == 2 and sched["refresh_every"] == 2 and sched["deadline_misses"] == 0
    assert sched["due"] == 3  # refreshes of frames 0, 2, 4 published at 2 (warm-up), 4 and 6 (measured: 3..6)


def test_runtime_measurement_stops_when_the_slow_path_fails(monkeypatch):
    """A refresh that raises mid-benchmark ends the concurrency sampling with the slow path's error, instead of
    ticking on safe stops until the sampling deadline (120 s and more)."""
    import threading

    model = build_model("tiny")
    real_prefill, calls = model.prefill, []

    def prefill_then_fail(*args, **kwargs):
        calls.append(1)
        if len(calls) > 2:  # the first snapshot and one refresh under measurement succeed
            raise RuntimeError("refresh exploded")
        return real_prefill(*args, **kwargs)

    monkeypatch.setattr(model, "prefill", prefill_then_fail)
    outcome: list[BaseException] = []

    def measure() -> None:
        try:
            bench._measure_runtime(model, "torch", None, model.config.max_prefix_tokens, ticks=10_000, warmup=0)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=measure, daemon=True)
    worker.start()
    worker.join(timeout=90)  # liveness, not a timing: the deadline without the check is 20000 s
    assert not worker.is_alive(), "the sampling kept running after the slow path failed"
    assert len(outcome) == 1 and "refresh exploded" in str(outcome[0])
