"""The results store: every run in a database, its history and change points, and a dashboard.

==================  =====================================================================
module              what it holds
==================  =====================================================================
schema.py           tables (SQLAlchemy Core), the schema version, opening a store by URL
ingest.py           results JSON / autosaves / journals -> one run each, idempotent, in a transaction
changepoints.py     change points of one series (ruptures PELT + a permutation test)
history.py          series per machine, optimization, batch size and metric; their change points
dashboard.py        static HTML, one page per machine, trend plots with change points
commands.py         ``densebench store ingest``, ``densebench history``, ``densebench dashboard``
session.py          ``--densebench-store``: the run written to the store at session end
==================  =====================================================================

Only commands.py is imported without the store being used (it imports nothing heavy);
the rest needs the ``store`` extra (SQLAlchemy, psycopg, ruptures).
"""
