"""Interleaved A/B rounds and paired ratios with bootstrap confidence intervals.

On a shared machine, load from other jobs moves whole windows of time: two absolute medians
measured minutes apart differed by up to 2x here. When the two sides of a comparison take turns
round by round, a burst of load hits both sides of the same pair alike, and the ratio inside a
pair stays steady. So a comparison is measured as *pairs*: pair ``i`` holds one round of A and
one round of B run back to back, and the statistic and its interval are computed over the pairs.

Method (``METHOD``):

* **ABBA order** (:func:`abba_order`): pairs alternate A-then-B and B-then-A, so a linear drift
  within the window (warming, throttling, load ramping up) adds as much to A as to B over every
  two pairs: the standard counterbalanced (crossover) design of experimental psychology.
* **Turns**: in each pair, each side runs ``per_turn`` rounds back to back and counts the fastest.
  Load from other processes only ever adds time to a round, so the minimum of a few rounds is the
  most robust estimate of the undisturbed time (Chen & Revels, "Robust benchmarking in noisy
  environments", HPEC 2016). Measured here under an on/off background load with 60 rounds per side:
  CI half-width 3.4-4.8% with 2 rounds per turn, 7.0-10.4% with single rounds.
* **Statistic**: the median of the per-pair time ratios ``b_i / a_i`` (robust to the pairs that a
  burst of load hits unevenly; the mean of ratios is not), for gates and speedups alike.
* **An alternative measured and not taken**: :func:`quantile_ratio`, the ratio of the two sides'
  Harrell-Davis 0.1 quantiles of their turns (a low quantile reads each side's time on the undisturbed
  machine; Chen & Revels, HPEC 2016; Harrell & Davis, Biometrika 69(3), 1982). When the two sides run
  different runtimes, load does not slow them alike (OpenVINO's batch-8 turns ~50 ms with the VM's
  neighbours quiet, ~90 ms with them busy, the baseline's ~350 and ~460 ms: 7.0x or 5.1x), so the
  median of paired ratios moves with the share of busy pairs. ``scripts/speedup_estimators.py``
  (docs/speedup-estimators-2vcpu.txt) replays the run's sequential stopping on recorded turns: under an
  on/off background load the 0.1 quantile ratio reached +-3% far more often (loaded recordings: 33 of
  40 windows against 5), but on the turns of a real ``densebench run`` it reached +-3% for 8 of 12
  configurations against the median's 9, with bf16 at +-10.4% against +-1.6% and openvino at +-15.0%
  against +-3.0% (a fast state too rare for the 0.1 quantile to read steadily). So the median stays.
* **Sequential stopping**: after the first pairs, blocks of :data:`BLOCK` more run while the
  interval is not yet good enough (:func:`until_decided` for a gate: it still reaches over an edge of
  ``1 +- threshold``; :func:`until_half_width` for a speedup), up to a limit. Looking more than once
  can raise a gate's error rates a little; the power study (scripts/gate_power.py, README) measures
  them with this stopping on: 0 false alarms in 20 same-code comparisons.
* **Interval**: percentile bootstrap over the pairs (Efron & Tibshirani, *An Introduction to the
  Bootstrap*, 1993, ch. 13); resampling whole pairs keeps the pairing. Paired and interleaved
  benchmarking with bootstrap intervals follows Kalibera & Jones, "Rigorous Benchmarking in Reasonable
  Time" (ISMM 2013). The pairs are resampled in **blocks of consecutive pairs** when they are
  autocorrelated (:func:`block_length`): on this VM the load from outside comes in stretches of tens of
  seconds, and a busy stretch slows two runtimes unlike (openvino's per-pair speedup 7.2x in quiet
  stretches, 5.4x in busy ones), so neighbouring pairs are alike and a bootstrap that treats them as
  independent draws gives too narrow an interval (README, "What the CI covers"). The block length is
  estimated from the log per-pair ratios (Politis & White, "Automatic block-length selection for the
  dependent bootstrap", Econometric Reviews 23(1), 2004, with the correction of Patton, Politis &
  White, Econometric Reviews 28(4), 2009), and the blocks are resampled circularly (Politis & Romano,
  "A circular block-resampling procedure for stationary data", 1992), both by the ``arch`` package.
  The plain bootstrap (every pair on its own, by ``scipy.stats.bootstrap``) always runs; where the
  block length is above 1 the interval spans both (the block bootstrap's ends are noisy too when few
  blocks fit: a block is at most a tenth of the pairs, and there are none below
  :data:`MIN_PAIRS_FOR_BLOCKS` pairs). Replayed on recorded turns (docs/speedup-estimators-2vcpu.txt):
  on openvino's 200 autocorrelated pairs the 120-pair windows' intervals held the all-pairs median in
  12 of 17 windows against 5 of 17 with the plain bootstrap; where the pairs were not autocorrelated
  the two agree.

An alternative design, :func:`bracket` (triplets A-B-A / B-A-B, the middle turn against the mean of the
two around it, and the faster side's rounds lengthened to last as long as the slower side's), was
measured against these turns in one window by ``scripts/speedup_designs.py`` (docs/speedup-designs-2vcpu.txt):
narrower per minute for some configurations, wider for others, and with single-round turns it moved the
speedup of a candidate on another runtime beyond the CIs (ONNX Runtime 2.16x against 1.93x); the speedups
keep the 2-round turns.

Measured on the 2-core development machine (issue 14): two processes holding the same
DenseNet-121 under an on/off background load, 12 repetitions of 30 rounds: the sequential
ratio B/A ranged 0.58-2.09, the median of 30 interleaved paired ratios 0.95-1.07.
"""

from __future__ import annotations

import gc
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from . import timing

BLOCK = 10  # pairs added per step of sequential stopping (even: ABBA stays balanced)
METHOD = ("median of paired ratios, ABBA-interleaved turns (fastest round of each), percentile bootstrap CI "
          "(and over circular blocks of ci_block pairs, length by Politis & White 2004, when above 1: the wider)")
MIN_PAIRS_FOR_BLOCKS = 20  # below this, no block length: fewer than 10 blocks of 2 (paired.block_length)


def quantile_method(quantile: float) -> str:
    """The ``method`` a :func:`quantile_ratio` at ``quantile`` records."""
    return (f"ratio of Harrell-Davis {quantile:g} quantiles of ABBA-interleaved turns (fastest round of each), "
            "percentile bootstrap CI over pairs")


def bootstrap_ratio(base: list[float], new: list[float], resamples: int, confidence: float,
                    seed: int) -> tuple[float, float]:
    """Percentile bootstrap interval (Efron & Tibshirani 1993, ch. 13) of median(new) / median(base), for two
    independent samples of round times (seconds); ``confidence`` e.g. 0.95; a fixed ``seed`` repeats it."""
    rng = np.random.default_rng(seed)
    b = np.asarray(base, dtype=float)
    n = np.asarray(new, dtype=float)
    b_med = np.median(rng.choice(b, size=(resamples, b.size), replace=True), axis=1)
    n_med = np.median(rng.choice(n, size=(resamples, n.size), replace=True), axis=1)
    ratios = n_med / b_med
    alpha = (1 - confidence) / 2
    low, high = np.quantile(ratios, [alpha, 1 - alpha])
    return float(low), float(high)


@dataclass(frozen=True)
class PairedRatio:
    """A paired comparison: ``ratio`` is the statistic ``method`` names (:func:`paired_ratio`'s median of per-pair
    ratios, or :func:`quantile_ratio`), ``[ci_low, ci_high]`` its interval.

    ``pairs`` is how many pairs went in; ``confidence`` the interval's level (0.95 = 95%); ``block`` how many
    consecutive pairs the bootstrap resampled together (1: each pair on its own; :func:`block_length`)."""

    ratio: float
    ci_low: float
    ci_high: float
    pairs: int
    method: str = METHOD
    confidence: float = 0.95
    block: int = 1

    @property
    def half_width(self) -> float:
        """Half the interval's width relative to the ratio (0.03 = the ratio is known to +-3%)."""
        return (self.ci_high - self.ci_low) / 2 / self.ratio

    def beyond(self, threshold: float) -> str | None:
        """'above' when the whole interval lies above ``1 + threshold``, 'below' when below ``1 - threshold``.

        None when the interval reaches into ``[1 - threshold, 1 + threshold]`` (no decision)."""
        if self.ci_low > 1 + threshold:
            return "above"
        if self.ci_high < 1 - threshold:
            return "below"
        return None

    def decided(self, threshold: float) -> bool:
        """True when the interval reaches over neither edge of ``[1 - threshold, 1 + threshold]``: wholly
        beyond one (:meth:`beyond`) or wholly inside, so more pairs would not change a gate's verdict."""
        return not any(self.ci_low <= edge <= self.ci_high for edge in (1 - threshold, 1 + threshold))

    def to_json(self) -> dict[str, Any]:
        return {"ratio": self.ratio, "ci_low": self.ci_low, "ci_high": self.ci_high, "pairs": self.pairs,
                "method": self.method, "confidence": self.confidence, "ci_block": self.block}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> PairedRatio:
        return cls(float(doc["ratio"]), float(doc["ci_low"]), float(doc["ci_high"]), int(doc["pairs"]),
                   str(doc.get("method", METHOD)), float(doc.get("confidence", 0.95)),
                   int(doc.get("ci_block") or 1))  # absent or null: written before blocks, the plain bootstrap


def _sides(i: int) -> tuple[str, str]:
    """Pair (or triplet) ``i``'s leading side and the other: A first in even ones, B first in odd ones."""
    return ("a", "b") if i % 2 == 0 else ("b", "a")


def abba_order(pairs: int) -> list[tuple[str, str]]:
    """Which side runs first in each pair: ``[("a", "b"), ("b", "a"), ("a", "b"), ...]`` (``pairs`` entries)."""
    return [_sides(i) for i in range(pairs)]


def _in_blocks(unit: Callable[[int], dict[str, float]], first: int, limit: int,
               enough: Callable[[list[float], list[float]], bool] | None) -> tuple[list[float], list[float]]:
    """Sequential stopping shared by :func:`interleave` and :func:`bracket`: ``unit(i)`` measures unit
    ``i`` (a pair or a triplet) and returns its {"a": seconds, "b": seconds}; ``first`` units run, then
    blocks of :data:`BLOCK` more while ``enough(a_times, b_times)`` says no, never past ``limit``."""
    a_times: list[float] = []
    b_times: list[float] = []
    target = first
    while True:
        while len(a_times) < target:
            got = unit(len(a_times))
            a_times.append(got["a"])
            b_times.append(got["b"])
        if enough is None or target >= limit or enough(a_times, b_times):
            return a_times, b_times
        target = min(limit, target + BLOCK)


def interleave(run_a: Callable[[int], list[float]], run_b: Callable[[int], list[float]], pairs: int,
               per_turn: int = 1, *, max_pairs: int | None = None,
               enough: Callable[[list[float], list[float]], bool] | None = None) -> tuple[list[float], list[float]]:
    """Run ``pairs`` pairs of turns in ABBA order; ``run_x(k)`` runs k rounds back to back and returns
    their seconds; a turn is ``per_turn`` rounds and counts its fastest.

    Sequential stopping: with ``enough`` and a ``max_pairs`` above ``pairs``, ``enough(a_times, b_times)``
    is asked after the first ``pairs`` pairs and after each further block of ``BLOCK`` pairs (even, so
    the ABBA order stays balanced), until it says True or ``max_pairs`` pairs ran.

    Returns (a_times, b_times), aligned: entry ``i`` of each is pair ``i``. Raises ValueError when
    ``pairs`` or ``per_turn`` is below 1."""
    if pairs < 1 or per_turn < 1:
        raise ValueError(f"pairs and per_turn must be >= 1, got {pairs} and {per_turn}")
    run = {"a": run_a, "b": run_b}

    def pair(i: int) -> dict[str, float]:
        first, second = _sides(i)
        return {first: min(run[first](per_turn)), second: min(run[second](per_turn))}

    return _in_blocks(pair, pairs, max(pairs, max_pairs or pairs), enough)


def bracket(run_a: Callable[[int], list[float]], run_b: Callable[[int], list[float]], triplets: int,
            per_turn: int = 1, *, max_triplets: int | None = None,
            enough: Callable[[list[float], list[float]], bool] | None = None) -> tuple[list[float], list[float]]:
    """Turns strictly alternating A B A B A B ..., grouped in triplets A-B-A, B-A-B, A-B-A, ...; in each
    triplet the middle turn is paired with the mean of the two turns around it, so a drift that is linear
    over the triplet adds as much to both sides and cancels exactly, and every turn follows a turn of the
    other side (the same switch between the two, whichever side runs). ``run_x(k)`` runs k rounds back to
    back and returns their seconds; a turn is ``per_turn`` rounds and counts its fastest.

    Sequential stopping as in :func:`interleave`, in triplets: ``enough`` is asked after ``triplets``
    and after each further :data:`BLOCK` (even: as many A-B-A as B-A-B), up to ``max_triplets``.

    Returns (a_times, b_times), aligned: entry ``i`` of each is triplet ``i``'s A time and B time (one of
    them a mean of two turns). Raises ValueError when ``triplets`` or ``per_turn`` is below 1."""
    if triplets < 1 or per_turn < 1:
        raise ValueError(f"triplets and per_turn must be >= 1, got {triplets} and {per_turn}")
    run = {"a": run_a, "b": run_b}

    def triplet(i: int) -> dict[str, float]:
        outer, middle = _sides(i)
        first = min(run[outer](per_turn))
        got = {middle: min(run[middle](per_turn))}
        got[outer] = (first + min(run[outer](per_turn))) / 2
        return got

    return _in_blocks(triplet, triplets, max(triplets, max_triplets or triplets), enough)


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float], confidence: float = 0.95,
                 resamples: int = 2000, seed: int | None = 0, block: int | None = None) -> PairedRatio:
    """Median of ``numerator[i] / denominator[i]`` with a percentile bootstrap interval over the pairs.

    Both sequences are round times in seconds (any one unit), aligned by pair. ``seed`` fixes the
    bootstrap's random generator (None: fresh entropy). For a time ratio B/A pass (b, a); for a
    speedup of a candidate over a baseline pass (baseline, candidate). ``block``: how many consecutive
    pairs to resample together; None (the default) estimates it from the pairs (:func:`block_length`),
    1 is the plain bootstrap. Raises ValueError when the lengths differ, fewer than 2 pairs are given, a
    time is not positive, or ``block`` is below 1."""
    num, den = _aligned(numerator, denominator)
    if block is not None and (not isinstance(block, (int, np.integer)) or block < 1):
        raise ValueError(f"block must be a whole number of pairs, at least 1, got {block!r}")
    ratios = num / den
    median = float(np.median(ratios))
    if np.ptp(ratios) == 0:  # every pair agrees: the bootstrap has nothing to resample
        return PairedRatio(median, median, median, int(num.size), confidence=confidence)
    block = block_length(ratios) if block is None else int(min(block, ratios.size))
    low, high = _percentile_ci((ratios,), np.median, confidence, resamples, seed)
    if block > 1:
        from arch.bootstrap import CircularBlockBootstrap  # imported before the pairs by load_block_bootstrap

        ci = CircularBlockBootstrap(block, ratios, seed=np.random.default_rng(seed)).conf_int(
            np.median, reps=resamples, method="percentile", size=confidence)
        # Never narrower than the plain interval: from few blocks the block bootstrap's ends are noisy too
        # (a 16-pair block length on 80 pairs once gave +-2.6% where the plain bootstrap gave +-3.6%).
        low, high = min(low, float(ci[0, 0])), max(high, float(ci[1, 0]))
    return PairedRatio(median, low, high, int(num.size), confidence=confidence, block=block)


def block_length(ratios: np.ndarray) -> int:
    """How many consecutive pairs the bootstrap of :func:`paired_ratio` resamples together, for per-pair
    ratios in the order they were measured: the circular block bootstrap's optimal block length for their
    logarithms (Politis & White 2004, corrected by Patton, Politis & White 2009; ``arch.bootstrap.
    optimal_block_length``), rounded, at least 1 and at most a tenth of the pairs, so that a resample draws at
    least 10 blocks (with fewer, the resampled medians take a handful of values; the estimate is noisy on
    few pairs: on 100 independent pairs it came out 1-3 in 186 of 200 draws, once 30). 1 below
    :data:`MIN_PAIRS_FOR_BLOCKS` pairs, and when the estimate is not finite (ratios nearly constant)."""
    ratios = np.asarray(ratios, dtype=float)
    if ratios.size < MIN_PAIRS_FOR_BLOCKS or np.ptp(ratios) == 0:
        return 1
    from arch.bootstrap import optimal_block_length  # imported before the pairs by load_block_bootstrap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 on near-constant ratios: caught as not finite
        estimate = float(optimal_block_length(np.log(ratios))["circular"].iloc[0])
    if not np.isfinite(estimate):
        return 1
    return int(max(1, min(round(estimate), ratios.size // 10)))


def load_block_bootstrap() -> None:
    """Import ``arch.bootstrap`` (and the pandas and statsmodels behind it: ~2 s on 2 cores) now, before
    pairs are timed, so the first check of a stopping rule does not leave a gap in the measured window."""
    import arch.bootstrap  # noqa: F401


def _percentile_ci(data: tuple[np.ndarray, ...], statistic: Callable[..., Any], confidence: float, resamples: int,
                   seed: int | None, paired: bool = False) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over ``data`` (``scipy.stats.bootstrap``; ``paired``
    resamples the samples' entries together); a fixed ``seed`` repeats it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DegenerateDataWarning on near-constant data; the interval stays valid
        ci = stats.bootstrap(data, statistic, paired=paired, confidence_level=confidence, n_resamples=resamples,
                             method="percentile", rng=np.random.default_rng(seed)).confidence_interval
    return float(ci.low), float(ci.high)


def _aligned(numerator: Sequence[float], denominator: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    num = np.asarray(numerator, dtype=float)
    den = np.asarray(denominator, dtype=float)
    if num.shape != den.shape or num.ndim != 1:
        raise ValueError(f"paired rounds must align: {num.shape} vs {den.shape}")
    if num.size < 2:
        raise ValueError(f"a paired ratio needs at least 2 pairs, got {num.size}")
    if (num <= 0).any() or (den <= 0).any():
        raise ValueError("round times must be positive")
    return num, den


def harrell_davis(x: np.ndarray, q: float, axis: int = -1) -> np.ndarray:
    """Harrell-Davis estimate of the ``q`` quantile (0 < q < 1) along ``axis``: the order statistics weighted
    by the Beta((n+1)q, (n+1)(1-q)) probability of each 1/n slice (Harrell & Davis, "A new
    distribution-free quantile estimator", Biometrika 69(3), 1982; the estimator of
    ``scipy.stats.mstats.hdquantiles``, here vectorized over bootstrap resamples)."""
    x = np.sort(np.asarray(x, dtype=float), axis=axis)
    n = x.shape[axis]
    weights = np.diff(stats.beta.cdf(np.arange(n + 1) / n, (n + 1) * q, (n + 1) * (1 - q)))
    return np.moveaxis(x, axis, -1) @ weights


def quantile_ratio(numerator: Sequence[float], denominator: Sequence[float], quantile: float = 0.1,
                   confidence: float = 0.95, resamples: int = 2000, seed: int | None = 0) -> PairedRatio:
    """``harrell_davis(numerator, quantile) / harrell_davis(denominator, quantile)`` with a percentile bootstrap
    interval that resamples whole pairs (both sides' entry ``i`` together); for a speedup pass (baseline,
    candidate) turn times in seconds, aligned by pair (:func:`interleave`). The alternative to
    :func:`paired_ratio` that scripts/speedup_estimators.py measures (module docstring). Raises ValueError as
    :func:`paired_ratio` does, and when ``quantile`` is not in (0, 1)."""
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be between 0 and 1 (exclusive), got {quantile}")
    num, den = _aligned(numerator, denominator)
    point = float(harrell_davis(num, quantile) / harrell_davis(den, quantile))
    method = quantile_method(quantile)
    if np.ptp(num) == 0 and np.ptp(den) == 0:  # nothing for the bootstrap to resample
        return PairedRatio(point, point, point, int(num.size), method, confidence)
    low, high = _percentile_ci((num, den), lambda n, d, axis: harrell_davis(n, quantile, axis)
                               / harrell_davis(d, quantile, axis), confidence, resamples, seed, paired=True)
    return PairedRatio(point, low, high, int(num.size), method, confidence)


def sequential_ratio(numerator: Sequence[float], denominator: Sequence[float], confidence: float = 0.95,
                     resamples: int = 2000, seed: int | None = 0) -> PairedRatio:
    """The unpaired comparison, for contrast: median(numerator) / median(denominator), each side
    resampled on its own (what ``densebench compare`` does between two runs). Same units as
    :func:`paired_ratio`; the result's ``pairs`` is the smaller side's round count."""
    if min(len(numerator), len(denominator)) < 2:
        raise ValueError("a ratio needs at least 2 rounds per side")
    low, high = bootstrap_ratio(list(denominator), list(numerator), resamples, confidence, seed or 0)
    return PairedRatio(statistics.median(numerator) / statistics.median(denominator), low, high,
                       min(len(numerator), len(denominator)), "ratio of medians, sequential windows, bootstrap CI",
                       confidence)


def until_half_width(target: float, seed: int | None = 0, progress: Callable[[int, float], None] | None = None,
                     ) -> Callable[[list[float], list[float]], bool]:
    """A stopping rule for :func:`interleave` of a speedup (A the baseline, B the candidate): enough once the
    CI half-width of the speedup A/B (:func:`paired_ratio`, relative to the ratio, see
    :attr:`PairedRatio.half_width`) is at most ``target`` (0.03 = +-3%), the interval the run then records.
    ``progress(pairs, half_width)``, when given, hears each check (for the run's progress line)."""
    def enough(a: list[float], b: list[float]) -> bool:
        half_width = paired_ratio(a, b, seed=seed).half_width
        if progress is not None:
            progress(len(a), half_width)
        return half_width <= target
    return enough


def until_decided(threshold: float, seed: int | None = 0) -> Callable[[list[float], list[float]], bool]:
    """A stopping rule for :func:`interleave`: enough once the CI of B/A reaches over neither edge of
    ``[1 - threshold, 1 + threshold]``, i.e. the gate's verdict (regression, improvement, or a change
    smaller than the threshold) no longer depends on more pairs (:meth:`PairedRatio.decided`)."""
    return lambda a, b: paired_ratio(b, a, seed=seed).decided(threshold)


def cv(times: Sequence[float]) -> float | None:
    """Coefficient of variation (standard deviation / mean) of round times; None below 2 rounds."""
    if len(times) < 2:
        return None
    return statistics.stdev(times) / statistics.fmean(times)


def _timed_rounds(runner: Any, step: Callable[[], Any], iterations: int = 1) -> Callable[[int], list[float]]:
    """k rounds under ``runner``'s process flags, a round being ``iterations`` calls of ``step`` timed
    together; returns each round's seconds per call."""

    def run(k: int) -> list[float]:
        times = []
        with runner.activated():
            for _ in range(k):
                start = time.perf_counter()
                for _ in range(iterations):
                    step()
                times.append((time.perf_counter() - start) / iterations)
        return times

    return run


def speedup_over_baseline(baseline: Any, candidate: Any, batch: Any, device: Any, pairs: int, warmup: int,
                          seed: int = 0, max_pairs: int | None = None,
                          target_half_width: float | None = None,
                          progress: Callable[[int, float], None] | None = None,
                          ) -> tuple[PairedRatio, list[float], list[float]]:
    """The candidate's speedup over the baseline, both runners alive, ``pairs`` ABBA-interleaved rounds;
    with ``target_half_width`` (e.g. 0.03) more pairs follow, up to ``max_pairs``, until the CI's
    half-width relative to the ratio is at most that (sequential stopping, :func:`interleave`), and
    ``progress(pairs, half_width)`` hears each check.

    ``batch`` is the CPU float32 NCHW batch both prepare for themselves (untimed); each side gets
    ``warmup`` untimed passes first. Each round is one synchronized forward pass (``timing.Step``),
    timed with ``time.perf_counter``; the garbage collector is off during the pairs. A turn is 2 rounds
    (1 when a round takes over a second). The speedup is the median of the per-pair ratios baseline turn /
    candidate turn (2.0 = the candidate takes half the time).

    Returns (speedup, baseline turn seconds, candidate turn seconds), the turns aligned by pair."""
    steps = []
    for runner in (baseline, candidate):
        with runner.activated():
            step = timing.make_step(runner, runner.prepare(batch), device)
            for _ in range(warmup):
                step()
        steps.append(_timed_rounds(runner, step))
    slowest = max(min(run(1)) for run in steps)
    load_block_bootstrap()
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        enough = until_half_width(target_half_width, seed, progress) if target_half_width else None
        base_times, cand_times = interleave(steps[0], steps[1], pairs, per_turn=1 if slowest > 1.0 else 2,
                                            max_pairs=max_pairs, enough=enough)
    finally:
        if gc_was_enabled:
            gc.enable()
    return paired_ratio(base_times, cand_times, seed=seed), base_times, cand_times
