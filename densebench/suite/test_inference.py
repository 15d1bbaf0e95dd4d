"""DenseNet-121 inference: one benchmark per optimization x batch size.

Parametrized by the densebench plugin (``--densebench-optimizations``,
``--densebench-batch-sizes``); grouped by batch size so ``pytest-benchmark compare``
shows the optimizations side by side. A batch size that does not fit in memory is
skipped as "out of memory" and the run goes on.
"""


def test_inference(benchmark, densebench_measure, optimization, batch_size):
    result = densebench_measure(benchmark)
    assert result.parity["passed"], result.parity_message()


def test_scenario(benchmark, densebench_scenario, optimization, scenario):
    """A serving scenario (--densebench-scenarios offline,server,singlestream) under MLPerf LoadGen; fails when
    LoadGen's accuracy mode shows the served answers differ from the baseline's."""
    result = densebench_scenario(benchmark)
    assert result.parity["passed"], result.scenario_message()
