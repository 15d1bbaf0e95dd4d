"""DenseNet-121 inference: one benchmark per optimization x batch size.

Parametrized by the densebench plugin (``--densebench-optimizations``,
``--densebench-batch-sizes``); grouped by batch size so ``pytest-benchmark compare``
shows the optimizations side by side.
"""


def test_inference(benchmark, densebench_session, optimized, batch_size):
    result = densebench_session.measure(benchmark, optimized, batch_size)
    assert result.parity["passed"], result.parity_message()
