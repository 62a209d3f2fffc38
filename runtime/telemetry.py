"""Latency / staleness series with percentiles, and an optional one-line-per-step JSONL log."""

from __future__ import annotations

import json
import math
import threading
from collections import Counter, deque
from pathlib import Path
from typing import IO, Any

import numpy as np


def summarize(samples: list[float] | np.ndarray) -> dict[str, float]:
    """count, mean, p50, p95, p99 and max of a series (NaN entries are ignored; empty -> NaNs)."""
    data = np.asarray(samples, dtype=np.float64)
    data = data[~np.isnan(data)]
    if data.size == 0:
        nan = float("nan")
        return {"count": 0, "mean": nan, "p50": nan, "p95": nan, "p99": nan, "max": nan}
    p50, p95, p99 = np.percentile(data, [50, 95, 99])
    return {
        "count": int(data.size),
        "mean": float(data.mean()),
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "max": float(data.max()),
    }


class Telemetry:
    """Thread-safe rolling series (the fast path and the worker both record) plus event counters."""

    SERIES = (
        "tick_ms",
        "fast_step_ms",
        "refresh_ms",
        "staleness_ticks",
        "staleness_s",
        "scene_encoder_ms",
        "pipeline_wait_ms",
    )

    def __init__(self, window: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._series: dict[str, deque[float]] = {name: deque(maxlen=window) for name in self.SERIES}
        self.counters: Counter[str] = Counter()
        self.stop_reasons: Counter[str] = Counter()

    def record(self, name: str, value: float) -> None:
        with self._lock:
            self._series[name].append(value)

    def record_step(self, tick_ms: float, fast_ms: float, age_ticks: int, age_s: float, stop_kind: str | None) -> None:
        """All per-step numbers under one lock acquisition (this runs on the fast path)."""
        with self._lock:
            s = self._series
            s["tick_ms"].append(tick_ms)
            self.counters["steps"] += 1
            if stop_kind is None:
                s["fast_step_ms"].append(fast_ms)
            else:
                self.stop_reasons[stop_kind] += 1
            if age_ticks >= 0:
                s["staleness_ticks"].append(float(age_ticks))
                s["staleness_s"].append(age_s)

    def series(self, name: str) -> list[float]:
        """A copy of one series' kept samples."""
        with self._lock:
            return list(self._series[name])

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            series = {name: list(values) for name, values in self._series.items()}
            counters = dict(self.counters)
            stops = dict(self.stop_reasons)
        out: dict[str, Any] = {name: summarize(values) for name, values in series.items()}
        out["counters"] = counters
        out["safe_stops"] = stops
        return out


class JsonlLog:
    """Append one JSON object per line. Buffered writes (flushed on close) keep the fast path free of syscalls."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] | None = self.path.open("a", encoding="utf-8", buffering=1 << 16)
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps({k: _jsonable(v) for k, v in record.items()})
        with self._lock:
            if self._fh is not None:
                self._fh.write(line + "\n")

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


def _jsonable(value: Any) -> Any:
    # NaN is not valid JSON; null says "unknown" for ages / times before the first snapshot.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
