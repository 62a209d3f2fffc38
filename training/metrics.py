"""Open-loop validation metrics: L2 of path / waypoints and decision accuracy, summable across DDP ranks.

- ``path_l2``: mean Euclidean error over the 20 path points; ``path_l2_final``: at the last point;
- ``wp_l2``: mean over the 6 waypoints; ``wp_l2_1s`` / ``_2s`` / ``_3s``: at the waypoint 1 / 2 / 3 s ahead
  (the usual open-loop L2 at fixed horizons, waypoints spaced ``waypoint_dt``);
- ``decision_exact``: decoded decision sentence equals the (truncated) target sentence;
- ``decision_slot``: per-slot accuracy after splitting both sentences on commas (now / +1 s / +2 s).
"""

from __future__ import annotations

import torch

from automot.training.data.schema import NUM_DECISION_SLOTS

_KEYS = (
    "n",
    "path_l2",
    "path_l2_final",
    "wp_l2",
    "wp_l2_1s",
    "wp_l2_2s",
    "wp_l2_3s",
    "decision_exact",
    "decision_slot",
)


def _slots(text: str) -> list[str]:
    parts = [p.strip() for p in text.split(",")]
    return (parts + [""] * NUM_DECISION_SLOTS)[:NUM_DECISION_SLOTS]


class OpenLoopMetrics:
    """Accumulates sums over batches; ``compute`` returns the means (after an optional DDP all-reduce)."""

    def __init__(self, waypoint_dt: float = 0.5) -> None:
        self.sums = torch.zeros(len(_KEYS), dtype=torch.float64)
        self.horizon_idx = [round(s / waypoint_dt) - 1 for s in (1.0, 2.0, 3.0)]

    def update(
        self,
        path: torch.Tensor,
        waypoints: torch.Tensor,
        path_gt: torch.Tensor,
        waypoints_gt: torch.Tensor,
        decisions: list[str] | None = None,
        decisions_gt: list[str] | None = None,
    ) -> None:
        path_err = (path.float() - path_gt.float()).norm(dim=-1).cpu().double()  # [B, 20]
        wp_err = (waypoints.float() - waypoints_gt.float()).norm(dim=-1).cpu().double()  # [B, 6]
        b = path_err.shape[0]
        row = [b, path_err.mean(1).sum(), path_err[:, -1].sum(), wp_err.mean(1).sum()]
        row += [wp_err[:, i].sum() if i < wp_err.shape[1] else 0.0 for i in self.horizon_idx]
        exact = slot = 0.0
        if decisions is not None and decisions_gt is not None:
            for pred, gt in zip(decisions, decisions_gt):
                exact += float(pred.strip() == gt.strip())
                slot += sum(p == g for p, g in zip(_slots(pred), _slots(gt))) / NUM_DECISION_SLOTS
        row += [exact, slot]
        self.sums += torch.tensor([float(v) for v in row], dtype=torch.float64)

    def all_reduce(self) -> None:
        """Sum the accumulators over ranks (no-op without an initialised process group)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
            t = self.sums.to(dev)
            dist.all_reduce(t)
            self.sums = t.cpu()

    def compute(self, prefix: str = "") -> dict[str, float]:
        n = max(float(self.sums[0]), 1.0)
        out = {f"{prefix}{k}": float(v) / n for k, v in zip(_KEYS[1:], self.sums[1:])}
        out[f"{prefix}num_samples"] = int(self.sums[0])
        return out
