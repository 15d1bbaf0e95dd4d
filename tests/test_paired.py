"""Paired statistics on fabricated rounds: ABBA order, the median of paired ratios, the quantile ratio (the
alternative measured), and their intervals."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from densebench import paired


def test_abba_order_alternates_which_side_goes_first() -> None:
    assert paired.abba_order(4) == [("a", "b"), ("b", "a"), ("a", "b"), ("b", "a")]


def test_interleave_runs_rounds_in_abba_order_and_aligns_pairs() -> None:
    calls: list[str] = []

    def side(name: str, seconds: float):
        def run(k: int) -> list[float]:
            calls.append(f"{name}{k}")
            return [seconds + len(calls) * 1e-3 + i * 0.5 for i in range(k)]  # the first of a turn is fastest
        return run

    a, b = paired.interleave(side("a", 1.0), side("b", 2.0), 3)
    assert calls == ["a1", "b1", "b1", "a1", "a1", "b1"]
    assert a == pytest.approx([1.001, 1.004, 1.005]) and b == pytest.approx([2.002, 2.003, 2.006])
    calls.clear()
    a, b = paired.interleave(side("a", 1.0), side("b", 2.0), 2, per_turn=3)
    assert calls == ["a3", "b3", "b3", "a3"] and a == pytest.approx([1.001, 1.004])  # each turn's fastest
    with pytest.raises(ValueError, match="pairs and per_turn must be >= 1"):
        paired.interleave(side("a", 1), side("b", 1), 0)


def test_sequential_stopping_adds_balanced_blocks_until_enough_or_the_limit() -> None:
    calls: list[str] = []
    asked: list[int] = []

    def side(name: str, seconds: float):
        def run(k: int) -> list[float]:
            calls.append(name)
            return [seconds] * k
        return run

    def enough_at(n: int):
        def enough(a: list[float], b: list[float]) -> bool:
            assert len(a) == len(b)
            asked.append(len(a))
            return len(a) >= n
        return enough

    a, _ = paired.interleave(side("a", 1.0), side("b", 2.0), 5, max_pairs=40, enough=enough_at(25))
    assert asked == [5, 15, 25] and len(a) == 25  # checked after the first pairs, then every BLOCK (10) pairs
    assert calls.count("a") == calls.count("b") == 25
    first = calls[0::2]  # who went first in each pair: ABBA across the blocks too
    assert first == ["a" if i % 2 == 0 else "b" for i in range(25)]
    asked.clear()
    a, _ = paired.interleave(side("a", 1.0), side("b", 2.0), 5, max_pairs=12, enough=enough_at(99))
    assert asked == [5] and len(a) == 12  # never past max_pairs; the last block is cut to fit
    asked.clear()
    a, _ = paired.interleave(side("a", 1.0), side("b", 2.0), 5, enough=enough_at(99))
    assert asked == [] and len(a) == 5  # no max_pairs above pairs: a fixed count, nothing asked


def test_bracket_alternates_turns_and_cancels_a_linear_drift() -> None:
    calls: list[str] = []

    def side(name: str, seconds: float):
        def run(k: int) -> list[float]:
            calls.append(f"{name}{k}")
            drift = 1 + 0.1 * len(calls)  # the machine slows down turn after turn
            return [seconds * drift * (1 + i) for i in range(k)]  # the first round of a turn is the fastest
        return run

    a, b = paired.bracket(side("a", 1.0), side("b", 2.0), 4)
    assert calls == ["a1", "b1"] * 6  # strictly alternating: A-B-A, B-A-B, A-B-A, B-A-B
    assert [y / x for x, y in zip(a, b, strict=True)] == pytest.approx([2.0] * 4)  # the drift cancels in every triplet
    assert a[0] == pytest.approx((1.1 + 1.3) / 2) and b[0] == pytest.approx(2 * 1.2)
    assert b[1] == pytest.approx(2 * (1.4 + 1.6) / 2) and a[1] == pytest.approx(1.5)
    turns, _ = paired.interleave(side("a", 1.0), side("b", 2.0), 4)  # ABBA pairs are off by the drift
    assert turns != pytest.approx(a)
    calls.clear()
    a, b = paired.bracket(side("a", 1.0), side("b", 2.0), 2, per_turn=3)
    assert calls == ["a3", "b3", "a3", "b3", "a3", "b3"] and b[0] == pytest.approx(2 * 1.2)  # fastest of 3
    with pytest.raises(ValueError, match="triplets and per_turn must be >= 1"):
        paired.bracket(side("a", 1), side("b", 1), 1, per_turn=0)


def test_bracket_stops_like_interleave_in_balanced_blocks() -> None:
    asked: list[int] = []
    order: list[str] = []

    def side(name: str):
        return lambda k: order.append(name) or [1.0] * k

    def enough(a: list[float], b: list[float]) -> bool:
        asked.append(len(a))
        return len(a) >= 25

    a, _ = paired.bracket(side("a"), side("b"), 5, max_triplets=40, enough=enough)
    assert asked == [5, 15, 25] and len(a) == 25
    assert order == ["a", "b"] * (25 * 3 // 2) + ["a"]  # A-B-A then B-A-B ... across the blocks
    asked.clear()
    a, _ = paired.bracket(side("a"), side("b"), 5, max_triplets=12, enough=lambda a, b: False)
    assert len(a) == 12


def test_stopping_rules_decide_on_the_interval() -> None:
    tight_same = loaded_window(30, 1.0, seed=2)
    assert paired.until_decided(0.05)(*tight_same)  # wholly inside 0.95-1.05: a small change, decided
    assert paired.until_decided(0.05)(*loaded_window(30, 1.12, seed=1))  # wholly above 1.05: regression
    rng = random.Random(5)
    a = [0.1 * rng.uniform(0.8, 1.2) for _ in range(10)]
    b = [t * 1.05 * rng.uniform(0.9, 1.1) for t in a]  # B/A around the 5% edge, +-10% per pair
    assert not paired.until_decided(0.05)(a, b)
    assert paired.until_half_width(0.10)(a, b) and not paired.until_half_width(0.001)(a, b)
    heard: list[tuple[int, float]] = []  # the run's progress line hears each check: pairs so far, CI half-width
    assert not paired.until_half_width(0.001, progress=lambda n, hw: heard.append((n, hw)))(a, b)
    assert heard == [(10, pytest.approx(paired.paired_ratio(a, b).half_width))] and heard[0][1] > 0.001


def loaded_window(n: int, ratio: float, seed: int) -> tuple[list[float], list[float]]:
    """Pairs whose shared load factor swings 1x-3x from pair to pair; B is ``ratio`` times A plus 2% jitter."""
    rng = random.Random(seed)
    a, b = [], []
    for _ in range(n):
        load = rng.choice([1.0, 1.0, 2.0, 3.0])
        a.append(0.1 * load * rng.uniform(0.98, 1.02))
        b.append(0.1 * ratio * load * rng.uniform(0.98, 1.02))
    return a, b


def test_paired_ratio_sees_through_load_that_moves_both_sides() -> None:
    a, b = loaded_window(30, 1.10, seed=1)
    result = paired.paired_ratio(b, a, seed=0)
    assert result.pairs == 30 and result.method == paired.METHOD
    assert result.ci_low <= result.ratio <= result.ci_high
    assert 1.05 < result.ci_low and result.ci_high < 1.15, result
    assert result.beyond(0.05) == "above"
    # Sequential windows: A timed while the machine was quiet, B while it was loaded 2x.
    quiet_a = [0.1 * (1 + 0.01 * math.sin(i)) for i in range(30)]
    loaded_b = [0.2 * 1.10 * (1 + 0.01 * math.cos(i)) for i in range(30)]
    assert paired.sequential_ratio(loaded_b, quiet_a).ratio == pytest.approx(2.2, rel=0.02)


def test_same_code_is_no_decision_and_an_improvement_is_below() -> None:
    a, b = loaded_window(30, 1.0, seed=2)
    same = paired.paired_ratio(b, a)
    assert abs(same.ratio - 1) < 0.02 and same.beyond(0.05) is None
    faster = paired.paired_ratio(*loaded_window(30, 1.25, seed=3))  # A over B: B is 1.25x slower
    assert faster.beyond(0.05) == "below" and faster.ratio == pytest.approx(0.8, rel=0.03)


def test_fixed_seed_repeats_and_json_round_trips() -> None:
    a, b = loaded_window(20, 1.02, seed=4)
    one, two = paired.paired_ratio(b, a, seed=7), paired.paired_ratio(b, a, seed=7)
    assert one == two
    assert paired.PairedRatio.from_json(one.to_json()) == one
    assert one.half_width == pytest.approx((one.ci_high - one.ci_low) / 2 / one.ratio)


def test_identical_pairs_give_a_zero_width_interval() -> None:
    result = paired.paired_ratio([2.0] * 5, [1.0] * 5)
    assert (result.ratio, result.ci_low, result.ci_high) == (2.0, 2.0, 2.0)


def two_state_window(pairs: int, stretch: int, seed: int) -> tuple[list[float], list[float]]:
    """Baseline and candidate turns (seconds) of a machine that switches between quiet and busy every
    ``stretch`` pairs, the busy state slowing the candidate more (speedup 7.2x quiet, 5.4x busy, as
    openvino's on the development VM), with 2% noise per turn."""
    rng = random.Random(seed)
    base, cand = [], []
    for i in range(pairs):
        busy = (i // stretch) % 2 == 1
        base.append(0.62 * rng.uniform(0.98, 1.02) if busy else 0.425 * rng.uniform(0.98, 1.02))
        cand.append(base[-1] / (5.4 if busy else 7.2) * rng.uniform(0.98, 1.02))
    return base, cand


def test_autocorrelated_pairs_are_resampled_in_blocks_and_widen_the_interval() -> None:
    base, cand = two_state_window(100, 20, seed=5)
    auto = paired.paired_ratio(base, cand)
    plain = paired.paired_ratio(base, cand, block=1)
    assert auto.block == 10, auto  # the stretches are 20 pairs long: capped at a tenth of the 100 pairs
    assert plain.block == 1 and auto.ratio == plain.ratio
    assert auto.half_width > 1.5 * plain.half_width, (auto, plain)
    assert auto.ci_low <= plain.ci_low and plain.ci_high <= auto.ci_high  # never narrower than the plain one
    assert paired.PairedRatio.from_json(auto.to_json()) == auto and auto.to_json()["ci_block"] == auto.block
    fixed = paired.paired_ratio(base, cand, block=5, seed=3)
    assert fixed.block == 5 and fixed == paired.paired_ratio(base, cand, block=5, seed=3)


def test_independent_pairs_keep_the_plain_bootstrap() -> None:
    """The block length estimate is noisy on few pairs; on independent ones it is mostly 1 and small."""
    lengths = []
    for seed in range(40):
        a, b = loaded_window(100, 1.1, seed=seed)  # independent load per pair
        lengths.append(paired.block_length([x / y for x, y in zip(b, a, strict=True)]))
    assert sorted(lengths)[len(lengths) // 2] == 1 and max(lengths) <= 10, lengths
    assert paired.block_length([1.0, 1.1] * 9) == 1  # below MIN_PAIRS_FOR_BLOCKS: too few to estimate
    assert paired.block_length([1.5] * 30) == 1
    old = paired.PairedRatio(1.2, 1.1, 1.3, 20).to_json()
    del old["ci_block"]  # written before blocks existed: the plain bootstrap
    assert paired.PairedRatio.from_json(old).block == 1
    old["ci_block"] = None  # the schema allows null: the same
    assert paired.PairedRatio.from_json(old).block == 1
    for bad in (0, 2.5):
        with pytest.raises(ValueError, match="block must be a whole number of pairs, at least 1"):
            paired.paired_ratio(a, b, block=bad)
    numpy_block = paired.paired_ratio(a, b, block=np.int64(3))  # e.g. from an array of block lengths
    assert type(numpy_block.block) is int and json.dumps(numpy_block.to_json())


@pytest.mark.parametrize(("num", "den", "message"), [
    ([1.0, 2.0], [1.0], "must align"),
    ([1.0], [1.0], "at least 2 pairs"),
    ([1.0, 0.0], [1.0, 1.0], "positive"),
])
def test_bad_rounds_are_refused(num: list[float], den: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        paired.paired_ratio(num, den)


def test_harrell_davis_is_scipys_estimator_vectorized() -> None:
    from scipy.stats import mstats
    x = [random.Random(3).uniform(0.1, 0.5) for _ in range(37)]
    assert paired.harrell_davis(x, 0.15) == pytest.approx(float(mstats.hdquantiles(x, prob=[0.15])[0]))
    rows = [x, x[::-1], [2 * t for t in x]]  # along the last axis: one estimate per resample
    assert paired.harrell_davis(rows, 0.15).tolist() == pytest.approx([paired.harrell_davis(x, 0.15)] * 2
                                                                    + [2 * paired.harrell_davis(x, 0.15)])


def state_dependent_window(n: int, seed: int, busy: float) -> tuple[list[float], list[float]]:
    """Turns of a baseline and a candidate whose speedup depends on the machine's state, as measured for
    OpenVINO on the 2-vCPU VM: free, 350 ms vs 50 ms (7.0x); neighbours busy (a ``busy`` share of the
    pairs), 460 ms vs 90 ms (5.1x); 3% jitter per turn."""
    rng = random.Random(seed)
    base, cand = [], []
    for _ in range(n):
        slow = rng.random() < busy
        base.append((0.46 if slow else 0.35) * rng.uniform(0.97, 1.03))
        cand.append((0.09 if slow else 0.05) * rng.uniform(0.97, 1.03))
    return base, cand


def test_quantile_ratio_reads_the_free_machine_whatever_share_load_took() -> None:
    """The median of paired ratios moves with the share of busy pairs (7.0x when few, 5.1x when most);
    the ratio of low quantiles stays at the free machine's 7.0x while most pairs are free or a third busy."""
    for busy in (0.1, 0.35):
        base, cand = state_dependent_window(60, seed=1, busy=busy)
        speedup = paired.quantile_ratio(base, cand)
        assert speedup.ci_low <= 7.0 <= speedup.ci_high and speedup.half_width < 0.03, (busy, speedup)
        assert speedup.method == paired.quantile_method(0.1) and speedup.pairs == 60
    base, cand = state_dependent_window(60, seed=1, busy=0.65)
    assert paired.paired_ratio(base, cand).ratio < 5.5  # the median of ratios has moved to the busy state
    assert paired.quantile_ratio(base, cand).ratio > 6.5


def test_quantile_ratio_resamples_whole_pairs_and_refuses_bad_input() -> None:
    a, b = loaded_window(40, 1.0, seed=2)  # load moves both sides alike: pairs keep their shared load
    same = paired.quantile_ratio(a, b)
    assert same.ci_low <= 1.0 <= same.ci_high and same.half_width < 0.05
    assert paired.quantile_ratio(a, b, seed=3) == paired.quantile_ratio(a, b, seed=3)
    assert paired.quantile_ratio([2.0] * 4, [1.0] * 4).ci_low == 2.0  # identical turns: zero width
    rng = random.Random(4)
    base = [rng.uniform(0.1, 0.5) for _ in range(30)]  # load moves each pair 5x; the candidate is 2x in every pair
    paired_only = paired.quantile_ratio(base, [t / 2 for t in base])
    assert paired_only.ci_low == pytest.approx(2.0) and paired_only.ci_high == pytest.approx(2.0)  # unpaired: wide
    assert "0.3 quantiles" in paired.quantile_ratio(a, b, 0.3).method
    with pytest.raises(ValueError, match="quantile must be between 0 and 1"):
        paired.quantile_ratio(a, b, 1.0)
    with pytest.raises(ValueError, match="must align"):
        paired.quantile_ratio([1.0, 2.0], [1.0])


def test_cv() -> None:
    assert paired.cv([1.0]) is None
    assert paired.cv([1.0, 3.0]) == pytest.approx(math.sqrt(2) / 2)
