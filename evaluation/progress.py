"""The live progress line of ``automot eval`` (routes done / running / failed, DS so far, ETA)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field


@dataclass
class Progress:
    total: int
    done: int = 0
    failed: int = 0
    running: int = 0
    scores: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    finished_this_run: int = 0

    def line(self) -> str:
        try:
            from automot.evaluation.report import format_progress  # the report helper's format, when present
        except ImportError:
            format_progress = None
        elapsed = time.monotonic() - self.started
        left = self.total - self.done
        # routes finished per second so far (all workers together) -> time for the rest
        eta = elapsed / self.finished_this_run * left if self.finished_this_run else None
        ds_so_far = sum(self.scores) / len(self.scores) if self.scores else None
        if format_progress is not None:
            try:
                return "eval: " + format_progress(self.done, self.running, self.failed, ds_so_far, eta, self.total)
            except TypeError:
                pass
        ds = f"{sum(self.scores) / len(self.scores):.2f}" if self.scores else "-"
        eta_text = "-" if eta is None else f"{eta / 60:.1f} min"
        return (
            f"eval: {self.done}/{self.total} done, {self.running} running, {self.failed} failed, "
            f"DS so far {ds}, ETA {eta_text}"
        )


def say_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
