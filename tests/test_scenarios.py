"""Serving scenarios: the dynamic batcher, LoadGen's accuracy mode scored by parity, and the server search.

Runners here are made in the test: a fixed linear map (so every image has its own answer) and a
sleep-based one with a known service time (for the search). The end-to-end plugin run is in
test_scenarios_plugin.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("mlperf_loadgen", reason="the serving scenarios need densebench[serving] (mlcommons-loadgen)")

from densebench import parity
from densebench.scenarios import harness
from densebench.scenarios.batcher import DynamicBatcher, SyncExecutor, padded_size
from densebench.scenarios.search import Search

SAMPLES = 24


def _images() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(SAMPLES, 3, 8, 8, generator=gen)


def _linear() -> torch.Tensor:
    return torch.randn(3 * 8 * 8, 1000, generator=torch.Generator().manual_seed(1))


class Reversed(DynamicBatcher):
    """A batcher that answers each request of a batch with another request's row (the rows reversed)."""

    def pair(self, batch, logits):
        return [(r, logits[len(batch) - 1 - i]) for i, r in enumerate(batch)]


def _accuracy(tmp_path, batcher_class, scenario="offline"):
    images, weight = _images(), _linear()

    def forward(x):
        return x.reshape(len(x), -1) @ weight

    def batcher_for(respond):
        return batcher_class(images, lambda b: b.clone(), lambda out: out.numpy(), SyncExecutor(forward), respond,
                             max_batch=4, max_delay_s=0.002)

    knobs = harness.Knobs(scenario, accuracy=True, target_qps=2000.0, latency_bound_ns=10**9, min_duration_ms=0)
    trial = harness.run_test(batcher_for, SAMPLES, knobs, tmp_path / batcher_class.__name__)
    reference = forward(images)
    logits, missing = harness.accuracy_logits(trial.accuracy_log, SAMPLES)
    thresholds = parity.Thresholds(top1=0.95, tie_band=0.005, top5=0.99, logit_error=0.5)
    return trial, parity.compare(reference, torch.from_numpy(logits), None, thresholds), missing


@pytest.mark.parametrize("scenario", ["offline", "server"])
def test_a_batcher_that_mixes_up_responses_fails_the_accuracy_mode(tmp_path, scenario):
    trial, good, missing = _accuracy(tmp_path, DynamicBatcher, scenario)
    assert missing == [] and good["passed"], good["failures"]
    assert good["top1_agreement"] == 1.0
    assert trial.batches["mean_batch_size"] > 1  # batches were formed, so reversing them changes answers
    _, bad, missing = _accuracy(tmp_path, Reversed, scenario)
    assert missing == []
    assert not bad["passed"]
    assert bad["top1_agreement"] < 0.9 and any("top-1" in f or "logit" in f for f in bad["failures"])


def test_accuracy_log_names_samples_without_a_response(tmp_path):
    log = tmp_path / "mlperf_log_accuracy.json"
    row = np.arange(4, dtype=np.float32)
    log.write_text(f'[{{"seq_id": 0, "qsl_idx": 1, "data": "{row.tobytes().hex()}"}}]', encoding="utf-8")
    logits, missing = harness.accuracy_logits(log, 3)
    assert missing == [0, 2]
    assert logits[1].tolist() == row.tolist()


class Sleeper:
    """A runner with a known, fixed service time per batch (any size up to the max): capacity = max / service."""

    def __init__(self, service_s: float):
        self.service_s = service_s

    def __call__(self, x):
        time.sleep(self.service_s)
        return np.zeros((len(x), 4), dtype=np.float32)


def test_server_search_finds_the_limit_of_a_runner_with_a_fixed_service_time(tmp_path):
    service_s, max_batch = 0.010, 4
    limit = max_batch / service_s  # 400 queries/s: above it the queue grows without bound
    images = np.zeros((SAMPLES, 1), dtype=np.float32)
    runner = Sleeper(service_s)
    counter = iter(range(100))

    def test(knobs, kind):
        def batcher_for(respond):
            return DynamicBatcher(images, lambda b: b, lambda out: out, SyncExecutor(runner), respond, max_batch)

        return harness.run_test(batcher_for, SAMPLES, knobs, tmp_path / f"{kind}-{next(counter)}")

    search = Search(budget_ms=100.0, time_budget_s=120.0)
    found = search.run([({"max_batch": max_batch}, limit, test)])
    assert found.best_qps is not None, found.reasons
    assert 0.9 * limit <= found.best_qps <= 1.1 * limit, found.to_json()["points"]
    assert found.best_trial.valid and found.best_trial.latency_ms("99.00") <= 100.0
    kinds = [p["kind"] for p in found.points]
    assert "probe" in kinds and kinds[-1] == "confirm"


def test_search_stops_when_its_time_is_up(tmp_path):
    images = np.zeros((SAMPLES, 1), dtype=np.float32)

    def test(knobs, kind):
        def batcher_for(respond):
            return DynamicBatcher(images, lambda b: b, lambda out: out, SyncExecutor(Sleeper(0.01)), respond, 1)

        return harness.run_test(batcher_for, SAMPLES, knobs, tmp_path / kind)

    found = Search(budget_ms=100.0, time_budget_s=0.5).run([({"max_batch": 1}, 100.0, test)])
    assert found.cut_short
    assert len(found.points) <= 1


def test_padded_sizes_and_the_batch_log():
    assert padded_size(3, [1, 2, 4, 8]) == 4
    assert padded_size(3, None) == 3
    with pytest.raises(ValueError, match="larger than the largest"):
        padded_size(9, [1, 8])
    with pytest.raises(ValueError, match="max_batch must be >= 1"):
        DynamicBatcher(None, None, None, SyncExecutor(lambda x: x), lambda pairs: None, 0)


def test_a_runner_that_raises_ends_the_test_with_the_error_not_a_hang(tmp_path):
    images = np.zeros((SAMPLES, 1), dtype=np.float32)

    def broken(x):
        raise RuntimeError("kernel exploded")

    def batcher_for(respond):
        return DynamicBatcher(images, lambda b: b, lambda out: out, SyncExecutor(broken), respond, 2)

    knobs = harness.Knobs("offline", target_qps=100.0, min_duration_ms=100)
    trial = harness.run_test(batcher_for, SAMPLES, knobs, tmp_path / "broken")
    assert not trial.valid
    assert any("a batch failed: RuntimeError: kernel exploded" in r for r in trial.invalid_reasons())


def _modelled(capacity: float, floor_ms: float, valid_from_queries: int = 500):
    """LoadGen replaced by a queue model: p99 = floor / (1 - rate / capacity); VALID when p99 fits and the test
    is long enough for early stopping. Returns (test function, the rates asked for)."""
    asked = []

    def test(knobs, kind):
        rate = knobs.target_qps
        asked.append((kind, rate))
        p99_ns = floor_ms * 1e6 / (1 - rate / capacity) if rate < capacity else 1e12
        fits = p99_ns <= knobs.latency_bound_ns
        values = {"result_validity": "VALID" if fits and knobs.min_query_count >= valid_from_queries else "INVALID",
                  "result_perf_constraints_met": fits, "result_99.00_percentile_latency_ns": p99_ns,
                  "result_completed_samples_per_sec": min(rate, capacity)}
        return harness.Trial(knobs, Path("modelled"), values, [], {}, 0.0)

    return test, asked


def test_search_bisects_down_when_the_first_probe_misses_the_budget():
    """The first probe (0.7 x capacity) is over budget: the search must bisect below it, not probe it again."""
    capacity, floor_ms, budget_ms = 100.0, 10.0, 40.0
    limit = capacity * (1 - floor_ms / budget_ms)  # 75/s: p99 = budget
    test, asked = _modelled(capacity, floor_ms)
    found = Search(budget_ms=budget_ms, time_budget_s=60.0).run([({"max_batch": 1}, capacity, test)])
    probes = [rate for kind, rate in asked if kind == "probe"]
    assert len(set(probes)) == len(probes), probes  # never the same rate twice
    assert found.best_qps is not None and 0.9 * limit <= found.best_qps <= limit, (found.best_qps, asked)
    test, asked = _modelled(capacity, floor_ms=30.0)  # limit 25/s: the first probe (70/s) fails
    found = Search(budget_ms=budget_ms, time_budget_s=60.0).run([({"max_batch": 1}, capacity, test)])
    assert asked[0] == ("probe", 70.0) and asked[1][1] < 70.0
    assert found.best_qps is not None and 0.9 * 25.0 <= found.best_qps <= 25.0, asked


def test_search_skips_a_setting_whose_single_image_is_over_the_budget():
    test, asked = _modelled(100.0, 10.0)
    found = Search(budget_ms=100.0, time_budget_s=60.0).run([({"max_batch": 1, "service_ms": 115.0}, 100.0, test)])
    assert asked == [] and found.best_qps is None
    assert found.reasons[0] == "max batch 1: one image alone takes 115 ms, more than the 100 ms budget"


class Interrupted(BaseException):
    """Stands for Ctrl-C or a test timeout reaching the batcher's thread."""


def test_an_interrupted_batcher_lets_loadgen_finish_and_the_interrupt_goes_on(tmp_path):
    images = np.zeros((SAMPLES, 1), dtype=np.float32)

    def interrupted(x):
        raise Interrupted

    def batcher_for(respond):
        return DynamicBatcher(images, lambda b: b, lambda out: out, SyncExecutor(interrupted), respond, 2)

    knobs = harness.Knobs("server", target_qps=200.0, latency_bound_ns=10**8, min_duration_ms=300,
                          min_query_count=50)
    with pytest.raises(Interrupted):
        harness.run_test(batcher_for, SAMPLES, knobs, tmp_path / "interrupted")
    assert (tmp_path / "interrupted" / "mlperf_log_detail.txt").is_file()  # LoadGen ended its test
