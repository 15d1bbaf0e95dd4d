"""A line of densebench's on pytest's terminal, outside the progress display (progress.py draws that).

The one place that looks up pytest's terminal reporter to write a line: the role's notes
(``Role.say``), the header when densebench was switched on during collection, and the adapter's
warning about a failed autosave. A line written here is not a Python warning, so ``-W error``
cannot turn it into a failure. Without a terminal reporter (``-p no:terminal``, some embedders)
the line goes to stderr or nowhere, as the caller asks.
"""

from __future__ import annotations

import sys
from typing import Any


def write_line(config: Any, line: str, *, stderr_fallback: bool = False, **markup: bool) -> bool:
    """Write ``line`` through ``config``'s terminal reporter (``markup``: its colours, e.g. ``yellow=True``).

    Returns whether the reporter wrote it; without a reporter the line goes to stderr when
    ``stderr_fallback``, else nowhere."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line, **markup)
        return True
    if stderr_fallback:
        print(line, file=sys.stderr)
    return False
