"""Serving scenarios with MLPerf LoadGen: the dynamic batcher (batcher.py), one LoadGen test (harness.py),
the server search (search.py) and one scenario benchmark of one optimization (measure.py).

``--densebench-scenarios offline,server,singlestream`` adds a ``test_scenario[<optimization>-<scenario>]``
benchmark per optimization, in the group ``scenario=<name>``. Importing this package imports neither
torch nor LoadGen.
"""

from __future__ import annotations

from typing import Any


def progress_batch(settings: Any) -> int:
    """The batch size progress lines show for every scenario benchmark of a run: the largest the batcher may
    form (``--densebench-batcher-max-batch``, else the largest ``--densebench-batch-sizes``)."""
    return max(settings.batcher_max_batch or settings.batch_sizes)


def scenario_key(optimization: str, scenario: str) -> str:
    """How progress lines, the results store and ``densebench compare`` name a scenario benchmark:
    ``openvino_int8[server]``."""
    return f"{optimization}[{scenario}]"
