"""Typed configuration of the dual-rate runtime: the project's one ``RuntimeConfig`` (validated on construction).

The agent YAML's ``runtime:`` section is this dataclass (agent/config.py holds it as ``AgentConfig.runtime``), so the
runtime, the agent, ``automot drive --set`` and the benches share one set of names, types and checks. Torch-free:
``automot --help`` and the config loader import it.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass
from typing import Literal

from automot.config import describe_value

Mode = Literal["async", "sync", "blocking", "pipelined"]
Engine = Literal["torch", "torch-compile", "onnxruntime", "tensorrt"]
TrtPrecision = Literal["fp16", "bf16", "fp32"]
MODES: tuple[str, ...] = typing.get_args(Mode)
ENGINES: tuple[str, ...] = typing.get_args(Engine)


class InvalidRuntimeConfig(ValueError):
    """A RuntimeConfig value out of range; ``problems`` holds one ``field: rule, got value`` line per field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(f"RuntimeConfig.{p}" for p in problems))
        self.problems = problems


# Modes whose snapshot age follows a fixed schedule (latency_ticks + refresh_every - 1), so an age limit it always
# exceeds is a config error caught at load time rather than a safe stop on every such tick.
SCHEDULED_AGE_MODES = frozenset({"pipelined"})


def available_cores() -> int:
    """CPU cores this process may run on (affinity-aware, unlike os.cpu_count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class RuntimeConfig:
    """How the runtime schedules the slow (understanding) and fast (action) paths.

    mode:
      ``async``    a worker thread refreshes the KV snapshot whenever a newer observation was submitted; ``step``
                   never waits for it once a first snapshot exists. Before the first snapshot, the first ``step``
                   after a ``submit`` waits up to ``first_snapshot_timeout_s`` once; later steps answer a safe stop
                   at once until a snapshot arrives.
      ``sync``     refresh inside ``submit`` when ``frame % sync_every == 0`` or no snapshot exists yet: the
                   released AutoMoT cadence, deterministic.
      ``blocking`` refresh on every ``submit`` (the slow baseline).
      ``pipelined`` a fixed schedule in simulation time: ``submit`` of frame t with ``t % refresh_every == 0`` (or no
                   snapshot and none scheduled) starts a refresh on the worker, in parallel with the next ticks; its
                   snapshot is published exactly at the ``step`` of frame ``t + latency_ticks`` (never earlier), and
                   that step waits for it within the refresh budget; a miss is a flagged safe stop (``deadline_miss``,
                   counted) and that snapshot is never published. Results do not depend on machine speed.
    Refresh budget (every mode): a refresh may take ``refresh_timeout_s`` of wall-clock time
    (``first_snapshot_timeout_s`` while no snapshot exists: warm-up). sync/blocking run the refresh on a daemon
    worker and ``submit`` waits at most that long; an overrunning refresh keeps running (one at a time: due refreshes
    are skipped meanwhile) and publishes when it finishes, if it is still the newest. Steps meanwhile answer the
    previous snapshot within the age limits, else a safe stop, and name the overrun (``RuntimeOutput.refresh_overrun``).
    ``refresh_timeout_s=None`` (sync/blocking): no budget, the refresh runs inline in the calling thread.
    Snapshot ages are measured in simulation ticks / seconds; ``None`` disables a limit.
    """

    mode: Mode = "async"
    sync_every: int = 2
    refresh_every: int = 2  # pipelined: a refresh starts on every frame with frame % refresh_every == 0
    latency_ticks: int = 0  # pipelined: K, a refresh started at frame t is published exactly at frame t + K
    engine: Engine = "torch"
    max_snapshot_age_s: float | None = 1.0
    max_snapshot_age_ticks: int | None = 20
    capacity: int | None = None  # KV slots per buffer; None -> model.config.max_prefix_tokens
    threads_fast: int | None = None  # intra-op threads of the fast path; None -> see resolved_threads()
    threads_slow: int | None = None  # intra-op threads of the slow path
    slow_nice: int = 5  # async, Linux: nice increment of the worker thread so CPU contention favours the fast path
    switch_interval_s: float | None = 0.001  # async: GIL switch interval while open (None: leave Python's 5 ms)
    reason: bool = False  # generate reasoning text on each refresh (model.reason) instead of a plain prefill
    max_new_tokens: int = 32
    jsonl_log: str | None = None  # one JSON line per step
    first_snapshot_timeout_s: float = 10.0  # budget of the first refresh (async: the one wait in step)
    # Wall-clock budget of every later refresh: generous next to a healthy refresh (tiny CPU: ms; 4B on a GPU: well
    # under 1 s), small next to the leaderboard's watchdogs; what it catches is a refresh that hangs.
    refresh_timeout_s: float | None = 10.0
    close_timeout_s: float = 60.0  # how long close() waits for an in-flight refresh to finish (then logs, not raises)
    engine_file: str | None = None  # prebuilt .onnx (onnxruntime) or .engine/.onnx (tensorrt); None -> export now
    scene_engine_file: str | None = None  # prebuilt bev_encoder.onnx / .engine for those engines; None -> export now
    compile_backend: str = "inductor"  # torch.compile backend for engine="torch-compile"
    trt_precision: TrtPrecision = "fp16"
    stats_window: int = 10_000  # samples kept per latency series
    # Released quirk (OscarHuangWind/AutoMoT evaluation/inference.py, kv_cache_inference): every action pass appends
    # its positions to the cached context, so the k-th pass on the same prefix places its action tokens at
    # P + k * n_action instead of P. k is capped at this value; 0 = always P (as in training). The released agent
    # (sync, every 2nd tick) has k in {0, 1}: 1 reproduces it and keeps async within what the checkpoint saw.
    reused_prefix_position_shifts: int = 0

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise InvalidRuntimeConfig(problems)

    def problems(self) -> list[str]:
        """Every out-of-range value as ``field: must be RULE, got VALUE`` (the agent config prefixes ``runtime.``)."""
        out: list[str] = []

        def need(ok: bool, name: str, rule: str) -> None:
            if not ok:
                out.append(f"{name}: must be {rule}, got {describe_value(getattr(self, name))}")

        # Literal fields built in code (not through the YAML loader, which checks the type) are checked here too.
        need(self.mode in MODES, "mode", f"one of {MODES}")
        need(self.engine in ENGINES, "engine", f"one of {ENGINES}")
        need(self.trt_precision in typing.get_args(TrtPrecision), "trt_precision", "fp16, bf16 or fp32")
        for name in ("sync_every", "refresh_every", "max_new_tokens"):
            need(getattr(self, name) >= 1, name, ">= 1")
        for name in ("threads_fast", "threads_slow", "capacity"):
            need(getattr(self, name) is None or getattr(self, name) >= 1, name, ">= 1 or None")
        need(self.latency_ticks >= 0, "latency_ticks", ">= 0")
        need(self.reused_prefix_position_shifts >= 0, "reused_prefix_position_shifts", ">= 0")
        for name in ("first_snapshot_timeout_s", "close_timeout_s"):
            need(getattr(self, name) >= 0, name, ">= 0")
        for name in ("refresh_timeout_s", "max_snapshot_age_s"):
            need(getattr(self, name) is None or getattr(self, name) > 0, name, "> 0 or None")
        age = self.latency_ticks + self.refresh_every - 1
        if (
            self.mode in SCHEDULED_AGE_MODES
            and self.max_snapshot_age_ticks is not None
            and age > self.max_snapshot_age_ticks
        ):
            out.append(
                f"latency_ticks: pipelined snapshots reach an age of latency_ticks + refresh_every - 1 = {age} ticks, "
                f"over max_snapshot_age_ticks={self.max_snapshot_age_ticks}: every such tick would be a safe stop"
            )
        return out

    def resolved_threads(self) -> tuple[int, int]:
        """(fast, slow) intra-op thread counts.

        async: the paths run at the same time, so they split the cores (fast gets a quarter, at least one) and
        do not oversubscribe; sync/blocking: they run one after the other in one thread, so each may use all.
        pipelined with ``latency_ticks >= 1`` overlaps like async; with 0 it never overlaps (each step waits for
        the refresh it publishes), like sync.
        """
        cores = available_cores()
        if self.overlapping:
            fast = self.threads_fast or max(1, cores // 4)
            slow = self.threads_slow or max(1, cores - fast)
        else:
            fast = self.threads_fast or cores
            slow = self.threads_slow or cores
        return fast, slow

    @property
    def overlapping(self) -> bool:
        """The slow and fast paths run at the same time (async, or pipelined with a latency of 1 tick or more)."""
        return self.mode == "async" or (self.mode == "pipelined" and self.latency_ticks > 0)

    @classmethod
    def from_options(cls, base: RuntimeConfig | None = None, **opts: object) -> RuntimeConfig:
        """A config from keyword options (unknown names raise TypeError listing the valid ones)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(opts) - names)
        if unknown:
            raise TypeError(f"unknown runtime option(s) {unknown}; valid: {sorted(names)}")
        if base is None:
            return cls(**opts)  # type: ignore[arg-type]
        return dataclasses.replace(base, **opts)
