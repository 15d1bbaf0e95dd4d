"""``--densebench-store``: the finished run, as saved in its JSON, written to the results store.

Called once at the end of a session by the role that saved the JSON (a plain run, the
isolating parent, the xdist controller; isolated children and xdist workers never store).
A store failure is a warning: the measured results and the JSON are already written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..settings import redact_url


def write_run(url: str, doc: dict[str, Any], source: Path) -> str:
    """Store ``doc`` (a pytest-benchmark JSON document) at ``url``; returns the line to show. Never raises."""
    where = redact_url(url)
    try:
        from . import ingest, schema  # optional: the store extra (sqlalchemy, psycopg)

        engine = schema.open_store(url)
        try:
            done = ingest.ingest(engine, doc, source)
        finally:
            engine.dispose()
    except ImportError as exc:
        return (f"WARNING: the run was not written to the results store {where}: {exc} "
                "(pip install 'densebench[store]'); the JSON results are kept")
    except Exception as exc:  # any failure of the store is a warning, never a lost run
        return (f"WARNING: the run was not written to the results store {where}: {exc}; the JSON results are "
                f"kept (densebench store ingest {source} adds them later)")
    what = f"{done.benchmarks} benchmark(s)" if done.inserted else "already there"
    return f"results store {where}: run {done.run_uid[:12]} on machine {done.machine_key[:12]}: {what}"
