"""Driving datasets: the project's own format, Bench2Drive and PDM-Lite readers, all mapped to SampleRecord."""

from __future__ import annotations

from pathlib import Path

from automot.training.data.schema import DatasetError, Episode


def load_episodes(
    fmt: str,
    roots: list[str],
    camera: str | None = None,
    frame_rate_hz: float | None = None,
    sample_list=None,
    pdm_route_path: bool = True,
    problems: list[str] | None = None,
) -> list[Episode]:
    """Episodes from every root in ``roots`` read with the reader of ``fmt`` (automot | bench2drive | pdm_lite).

    ``pdm_route_path``: PDM-Lite samples take their path target from the expert's ``route`` where present.
    Routes the real-layout readers skip (unreadable) are appended to ``problems``."""
    episodes: list[Episode] = []
    for root in roots:
        if not Path(root).exists():
            raise DatasetError(f"{root}: dataset directory not found")
        if fmt == "automot":
            from automot.training.data.automot_format import read_dataset

            episodes += read_dataset(root, camera)
        elif fmt == "bench2drive":
            from automot.training.data.bench2drive import read_b2d

            episodes += read_b2d(root, camera, frame_rate_hz, problems=problems)
        elif fmt == "pdm_lite":
            from automot.training.data.pdm_lite import read_pdm_lite, read_sample_list

            if sample_list:
                episodes += read_sample_list(sample_list, root, frame_rate_hz, use_route=pdm_route_path)
            else:
                episodes += read_pdm_lite(root, frame_rate_hz, use_route=pdm_route_path, problems=problems)
        else:
            raise DatasetError(f"data.format: unknown format {fmt!r}")
    return [e for e in episodes if e.records]


def split_episodes(episodes: list[Episode], val_fraction: float) -> tuple[list[Episode], list[Episode]]:
    """Hold out ``val_fraction`` of the episodes, evenly spaced through the (name-sorted) list so that every
    route of a multi-route dataset tends to be represented; whole episodes, so frames never leak across."""
    if val_fraction <= 0 or len(episodes) < 2:
        return episodes, []
    n_val = min(len(episodes) - 1, max(1, round(len(episodes) * val_fraction)))
    stride = len(episodes) / n_val
    picked = {int((i + 0.5) * stride) for i in range(n_val)}
    train = [e for i, e in enumerate(episodes) if i not in picked]
    return train, [e for i, e in enumerate(episodes) if i in picked]


__all__ = ["DatasetError", "Episode", "load_episodes", "split_episodes"]
