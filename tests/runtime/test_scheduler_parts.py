"""The runtime's parts: one scheduler per mode chosen at construction, the one refresh-budget rule, the in-flight
refresh dataclass, and the fast step's torch thread count for engines that are not torch."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from automot.runtime.config import RuntimeConfig
from automot.runtime.engines import TorchEngine
from automot.runtime.pipeline import PipelinedScheduler
from automot.runtime.refresh import RefreshJob, refresh_budget
from automot.runtime.runtime import AutoMoTRuntime, build_runtime
from automot.runtime.schedulers import AsyncScheduler, BlockingScheduler, SyncScheduler
from automot.runtime.types import DrivingObservation, DrivingState

STATE = DrivingState(np.array([[6.0, 0.5], [15.0, 1.0]], np.float32), 3.0)


def _obs(model) -> DrivingObservation:
    rng = np.random.default_rng(0)
    p = model.config.prompt
    images = [rng.integers(0, 255, (p.image_height, p.image_width, 3), dtype=np.uint8) for _ in range(p.num_frames)]
    return DrivingObservation(images, np.array([[6.0, 0.5], [15.0, 1.0]], np.float32), 3.0)


@pytest.mark.parametrize(
    ("mode", "cls", "thread"),
    [
        ("sync", SyncScheduler, "automot-refresh"),
        ("blocking", BlockingScheduler, "automot-refresh"),
        ("async", AsyncScheduler, "automot-slow-path"),
        ("pipelined", PipelinedScheduler, "automot-pipeline"),
    ],
)
def test_each_mode_gets_its_own_scheduler_and_worker(tiny_model, mode, cls, thread):
    with build_runtime(tiny_model, mode=mode) as rt:
        assert type(rt.scheduler) is cls and rt.scheduler.thread is not None
        assert rt.scheduler.thread.name == thread and rt.scheduler.thread.daemon


def test_sync_without_a_budget_has_no_thread(tiny_model):
    with build_runtime(tiny_model, mode="sync", refresh_timeout_s=None) as rt:
        assert type(rt.scheduler) is SyncScheduler and rt.scheduler.thread is None


def test_the_refresh_budget_rule():
    cfg = RuntimeConfig(first_snapshot_timeout_s=7.0, refresh_timeout_s=0.5)
    assert refresh_budget(cfg, has_snapshot=False) == (7.0, "first_snapshot_timeout_s")
    assert refresh_budget(cfg, has_snapshot=True) == (0.5, "refresh_timeout_s")
    assert refresh_budget(RuntimeConfig(refresh_timeout_s=None), has_snapshot=True) == (None, "refresh_timeout_s")


def test_refresh_job_names_its_overrun():
    job = RefreshJob(12, 0.6, None).start_budget(RuntimeConfig(refresh_timeout_s=0.25), has_snapshot=True)
    assert job.overrun_note() is None and not job.over_budget()
    job.started_at = time.perf_counter() - 1.0  # as if it had started 1 s ago
    note = job.overrun_note()
    assert job.over_budget() and note is not None
    assert note.startswith("refresh of frame 12 still running after 1.") and "(refresh_timeout_s=0.25 s)" in note
    no_budget = RefreshJob(3, 0.1, None).start_budget(RuntimeConfig(refresh_timeout_s=None), has_snapshot=True)
    no_budget.started_at -= 100.0
    assert no_budget.overrun_note() is None and not no_budget.over_budget()


class _OtherEngine(TorchEngine):
    """A non-torch engine (as ONNX Runtime / TensorRT are) that records the calling thread's torch thread count."""

    name = "other"

    def __init__(self, module) -> None:
        super().__init__(module)
        self.seen: list[int] = []

    def __call__(self, *inputs):
        self.seen.append(torch.get_num_threads())
        return super().__call__(*inputs)


def test_fast_step_torch_threads_for_an_engine_that_is_not_torch(tiny_model):
    before = torch.get_num_threads()
    fast = before + 1  # differs from the caller's count, so both directions are visible
    engine = _OtherEngine(tiny_model.fast_step_module())
    cfg = RuntimeConfig(mode="sync", threads_fast=fast, threads_slow=before, refresh_timeout_s=None)
    with AutoMoTRuntime(tiny_model, cfg, engine=engine) as rt:
        rt.submit(_obs(tiny_model), 0.0, 0)
        out = rt.step(STATE, 0.0, 0)
        assert not out.safe_stop and engine.seen == [fast]  # the step's torch ops ran with threads_fast
        assert torch.get_num_threads() == before  # and the caller's own count is back after the step
