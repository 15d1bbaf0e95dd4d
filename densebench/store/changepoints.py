"""Change points in a series of runs: where a metric stepped, how far, and how sure we are.

Method (two stages, both on log values so a step is relative):

1. **Detection**: ruptures' PELT (Killick, Fearnhead & Eckley 2012, "Optimal detection of
   changepoints with a linear computational cost", JASA 107) with the L2 cost and a BIC-style
   penalty calibrated on the series' own noise: ``penalty = 2 * log(n) * sigma**2 * PENALTY_SCALE``
   (BIC for a mean shift with known variance)
   where ``sigma`` is the robust noise of one run, estimated from the median absolute deviation
   of successive differences (MAD / 0.6745 / sqrt 2: a step moves one difference only).
   Segments hold at least ``min_size`` runs, so one outlying run is never a segment.
2. **Confirmation**: for each detected change, a permutation test on the runs of the two
   segments around it, with Pettitt's rank statistic scanned over every split of that window
   (see :func:`permutation_confidence`): ``confidence = 1 - p``. The step itself is the ratio of
   the two segments' medians.

A change point is *flagged* when its confidence reaches the asked confidence and the relative
step of the medians is at least the threshold. It is a *regression* when the step goes the
worse way for the metric (lower throughput, higher latency...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import ruptures
import scipy.stats

PENALTY_SCALE = 1.0  # plain BIC; the permutation test below keeps false alarms down
SIGMA_FLOOR = 0.005  # 0.5%: a series of identical values still has a finite penalty


@dataclass(frozen=True)
class Step:
    """One change point: ``index`` is the first run of the new segment (0-based in the series)."""

    index: int
    before: tuple[int, int]  # [start, end) of the segment before
    after: tuple[int, int]  # [start, end) of the segment after
    median_before: float
    median_after: float
    confidence: float  # 1 - two-sided permutation p-value of the medians' difference, 0..1
    sigma: float  # noise of one run, relative (log scale)

    @property
    def change(self) -> float:
        """Relative step of the medians (median_after / median_before - 1)."""
        return self.median_after / self.median_before - 1 if self.median_before else math.inf


def noise(log_values: np.ndarray) -> float:
    """Robust run-to-run noise of a log series (see module doc); at least SIGMA_FLOOR."""
    if len(log_values) < 3:
        return SIGMA_FLOOR
    diffs = np.diff(log_values)
    mad = float(np.median(np.abs(diffs - np.median(diffs))))
    return max(mad / 0.6745 / math.sqrt(2), SIGMA_FLOOR)


def detect(values: list[float], min_size: int = 3) -> list[int]:
    """Indices where a new segment starts, by PELT with the calibrated penalty. Needs positive values;
    a series shorter than ``2 * min_size`` has none."""
    logs = np.log(np.asarray(values, dtype=float))
    n = len(logs)
    if n < 2 * min_size:
        return []
    sigma = noise(logs)
    penalty = 2 * math.log(n) * sigma ** 2 * PENALTY_SCALE
    ends = ruptures.Pelt(model="l2", min_size=min_size, jump=1).fit(logs.reshape(-1, 1)).predict(pen=penalty)
    return [e for e in ends if e < n]


def _pettitt(ranks: np.ndarray, min_size: int) -> np.ndarray:
    """Pettitt's statistic per row of ``ranks`` (R x m): max over splits k of |U_k|, with
    U_k = 2 * (sum of the first k ranks) - k (m + 1) = sum over i < k <= j of sign(x_j - x_i) * -1."""
    m = ranks.shape[1]
    k = np.arange(1, m + 1)
    u = np.abs(2 * np.cumsum(ranks, axis=1) - k * (m + 1))
    return u[:, min_size - 1:m - min_size].max(axis=1)


def permutation_confidence(window: np.ndarray, min_size: int = 3, resamples: int = 2000, seed: int = 0) -> float:
    """1 - p of a permutation test for a step somewhere in ``window`` (the runs of the two segments
    around a change, oldest first).

    The statistic is Pettitt's rank statistic (Pettitt 1979, "A non-parametric approach to the
    change-point problem", Applied Statistics 28), the largest |Mann-Whitney U| over the splits
    leaving ``min_size`` runs on each side: ranks make an outlying run count for one run, and
    scanning every split makes the test pay for the change having been searched for.
    p = (1 + permutations at least as extreme) / (1 + resamples)."""
    ranks = scipy.stats.rankdata(window)
    observed = _pettitt(ranks.reshape(1, -1), min_size)[0]
    rng = np.random.default_rng(seed)
    shuffled = rng.permuted(np.tile(ranks, (resamples, 1)), axis=1)
    extreme = int(np.sum(_pettitt(shuffled, min_size) >= observed - 1e-9))
    return 1.0 - (1 + extreme) / (1 + resamples)


def steps(values: list[float], min_size: int = 3, resamples: int = 2000, seed: int = 0) -> list[Step]:
    """The change points of ``values`` (a metric over runs, oldest first, all > 0), confirmed."""
    starts = detect(values, min_size)
    if not starts:
        return []
    logs = np.log(np.asarray(values, dtype=float))
    sigma = noise(logs)
    bounds = [0, *starts, len(values)]
    out = []
    for i, start in enumerate(starts):
        before, after = (bounds[i], start), (start, bounds[i + 2])
        left, right = logs[before[0]:before[1]], logs[after[0]:after[1]]
        confidence = permutation_confidence(logs[before[0]:after[1]], min_size, resamples, seed)
        out.append(Step(start, before, after, float(np.exp(np.median(left))), float(np.exp(np.median(right))),
                        confidence, sigma))
    return out
