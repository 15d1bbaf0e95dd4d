"""Serving scenarios with MLPerf LoadGen: the dynamic batcher (batcher.py), one LoadGen test (harness.py),
the server search (search.py) and one scenario benchmark of one optimization (measure.py).

``--densebench-scenarios offline,server,singlestream`` adds a ``test_scenario[<optimization>-<scenario>]``
benchmark per optimization, in the group ``scenario=<name>``. Importing this package imports neither
torch nor LoadGen.
"""


def scenario_key(optimization: str, scenario: str) -> str:
    """How progress lines, the results store and ``densebench compare`` name a scenario benchmark:
    ``openvino_int8[server]``."""
    return f"{optimization}[{scenario}]"
