"""Uncertainty of evaluation numbers: a bootstrap over routes and a paired sign-flip test.

The unit of resampling is the **route** with all its seeds: the seeds of one route share its map, scenario and
traffic, so they are not independent draws, while different routes are (Bench2Drive's routes are the population the
score generalises over). Every function takes ``groups``: one list of per-job values for each route, e.g.
``[[ds_seed0, ds_seed1], [ds_seed0, ds_seed1], ...]``; the statistic is the mean over all jobs of the resample, which
is the leaderboard's mean over routes when every route has the same number of seeds.

The random generator is numpy's PCG64 seeded with :data:`RNG_SEED`, so a report or a comparison is reproducible bit
for bit; the method, the number of resamples and the seed are written next to the numbers (:func:`method`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

RNG_SEED = 20260  # fixed: the same folders give the same intervals and p-values on every run
RESAMPLES = 10000  # bootstrap resamples (percentile interval); Monte Carlo sign flips beyond EXACT_MAX_ROUTES
EXACT_MAX_ROUTES = 16  # up to 2**16 sign patterns are enumerated exactly; more routes use Monte Carlo
CONFIDENCE = 0.95

_SEED_FOLDER = re.compile(r"^(?P<route>.+)_seed(?P<seed>\d+)$")

__all__ = [
    "bootstrap_ci",
    "describe",
    "job_key",
    "method",
    "sign_flip_p",
    "summary_uncertainty",
    "RESAMPLES",
    "RNG_SEED",
]


def job_key(row: Mapping[str, Any]) -> tuple[str, int | None, str]:
    """(route, seed, key) of one row of the per-route table: the route (folder without its ``_seed<k>``), the seed
    (None outside seeded folders) and a key unique per job, ``folder/route_id`` (distinct per repetition)."""
    folder = str(row.get("folder") or "")
    m = _SEED_FOLDER.match(folder)
    route, seed = (m.group("route"), int(m.group("seed"))) if m else (folder, None)
    return route, seed, f"{folder}/{row.get('route_id') or ''}"


def _arrays(groups: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    """(sum per route, job count per route) of the non-empty groups."""
    groups = [list(g) for g in groups if len(g)]
    sums = np.array([float(sum(g)) for g in groups], dtype=np.float64)
    counts = np.array([len(g) for g in groups], dtype=np.float64)
    return sums, counts


def mean_of(groups: Sequence[Sequence[float]]) -> float | None:
    sums, counts = _arrays(groups)
    return float(sums.sum() / counts.sum()) if counts.size else None


def bootstrap_ci(
    groups: Sequence[Sequence[float]], resamples: int = RESAMPLES, seed: int = RNG_SEED, confidence: float = CONFIDENCE
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean over jobs, resampling whole routes with replacement (``None``
    without routes; a single route gives its own mean twice: one route says nothing about the spread)."""
    sums, counts = _arrays(groups)
    n = sums.size
    if n == 0:
        return None
    if n == 1:
        m = float(sums[0] / counts[0])
        return m, m
    rng = np.random.Generator(np.random.PCG64(seed))
    stats = np.empty(resamples, dtype=np.float64)
    chunk = max(1, 2_000_000 // n)  # bounded memory for 220 routes x 10000 resamples
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        stats[start:stop] = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    tail = 100 * (1 - confidence) / 2
    lo, hi = np.percentile(stats, [tail, 100 - tail])
    return float(lo), float(hi)


def sign_flip_p(groups: Sequence[Sequence[float]], resamples: int = RESAMPLES, seed: int = RNG_SEED) -> float | None:
    """Two-sided p-value of "the paired differences are centred on 0": under that hypothesis each route's
    difference is as likely to carry either sign, so the observed |sum of route sums| is ranked among the sums
    with every route's sign flipped. Exact over all 2**n patterns for n <= EXACT_MAX_ROUTES routes, otherwise
    ``resamples`` random patterns (p = (hits + 1) / (resamples + 1), never 0). ``None`` without routes."""
    sums, _ = _arrays(groups)
    n = sums.size
    if n == 0:
        return None
    observed = abs(float(sums.sum()))
    tol = 1e-9 * max(1.0, float(np.abs(sums).sum()))  # equal sums computed in another order still count as ties
    if n <= EXACT_MAX_ROUTES:
        patterns = ((np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1) * 2 - 1
        totals = np.abs(patterns @ sums)
        return float(np.mean(totals >= observed - tol))
    rng = np.random.Generator(np.random.PCG64(seed + 1))
    hits = 0
    chunk = max(1, 2_000_000 // n)
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        signs = rng.integers(0, 2, size=(stop - start, n)) * 2 - 1
        hits += int(np.sum(np.abs(signs @ sums) >= observed - tol))
    return (hits + 1) / (resamples + 1)


def sample_std(values: Sequence[float]) -> float | None:
    """Sample standard deviation (n - 1); ``None`` below two values."""
    n = len(values)
    if n < 2:
        return None
    m = sum(values) / n
    return math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))


def seed_std(groups: Mapping[int, Sequence[float]]) -> float | None:
    """Sample std over seeds of the per-seed mean (``groups``: seed -> values of that seed's jobs)."""
    per_seed = [sum(v) / len(v) for v in groups.values() if len(v)]
    return sample_std(per_seed)


def method(
    resamples: int = RESAMPLES, seed: int = RNG_SEED, unit: str = "route (with all its seeds)"
) -> dict[str, Any]:
    return {
        "interval": f"{int(CONFIDENCE * 100)} % percentile bootstrap",
        "resampling_unit": unit,
        "resamples": resamples,
        "rng": "numpy PCG64",
        "rng_seed": seed,
    }


def method_text(m: Mapping[str, Any]) -> str:
    return f"{m['interval']} over {m['resampling_unit']}, {m['resamples']} resamples, {m['rng']} seed {m['rng_seed']}"


def describe(
    jobs: Sequence[tuple[str, int | None, float]], scale: float = 1.0, resamples: int = RESAMPLES
) -> dict[str, Any]:
    """``{mean, std_seeds, ci95, seeds, routes}`` of one metric from ``(route, seed, value)`` per job (``scale``
    multiplies the values, e.g. 100 for success in percent). ``std_seeds`` is the sample std of the per-seed
    means (``None`` with one seed)."""
    by_route: dict[str, list[float]] = {}
    by_seed: dict[int, list[float]] = {}
    for route, seed, value in jobs:
        v = float(value) * scale
        by_route.setdefault(route, []).append(v)
        by_seed.setdefault(-1 if seed is None else int(seed), []).append(v)
    groups = list(by_route.values())
    ci = bootstrap_ci(groups, resamples=resamples)
    return {
        "mean": mean_of(groups),
        "std_seeds": seed_std(by_seed),
        "ci95": list(ci) if ci else None,
        "seeds": len(by_seed),
        "routes": len(groups),
    }


def summary_uncertainty(
    rows: Sequence[Mapping[str, Any]],
    abilities_by_route: Mapping[str, Sequence[str]] | None = None,
    resamples: int = RESAMPLES,
) -> dict[str, Any]:
    """DS, SR (%), RC and each ability's success (%) as :func:`describe` over the per-route table's rows (a missing
    job counts 0, as in the summary), plus ``method``. ``abilities_by_route``: XML route id -> ability names."""
    from automot.evaluation.metrics import xml_route_id

    ds, sr, rc = [], [], []
    per_ability: dict[str, list[tuple[str, int | None, float]]] = {}
    for row in rows:
        route, seed, _ = job_key(row)
        ok = 1.0 if row.get("success") else 0.0
        ds.append((route, seed, float(row.get("ds") or 0.0)))
        rc.append((route, seed, float(row.get("rc") or 0.0)))
        sr.append((route, seed, ok))
        for name in (abilities_by_route or {}).get(xml_route_id(row), ()):
            per_ability.setdefault(name, []).append((route, seed, ok))
    return {
        "DS": describe(ds, resamples=resamples),
        "SR": describe(sr, 100.0, resamples=resamples),
        "RC": describe(rc, resamples=resamples),
        "abilities": {name: describe(v, 100.0, resamples=resamples) for name, v in per_ability.items()},
        "method": method(resamples),
        "units": "DS and RC in points (0-100); SR and abilities in percent, success over every seed of a route "
        "(no Traffic_Signs partial credit)",
    }
