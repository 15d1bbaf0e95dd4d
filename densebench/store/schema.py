"""The results store's schema (SQLAlchemy Core) and how a store is opened.

Tables::

    densebench_schema  version                      one row: the schema version of this store
    machines           key, label, hardware         one per stable machine key (see ingest.machine_identity)
    runs               uid, machine, when, commit,   one per densebench run (a pytest-benchmark JSON file,
                       versions, settings, source    an autosave or a recovered journal)
    configurations     optimization, batch_size     what a series is measured for
    benchmarks         run, configuration, image     one per measured configuration of a run
                       size, precision
    metrics            benchmark, name, value, unit one row per metric (see METRICS)
    outcomes           run, configuration, status   what happened to every configuration (skips, crashes)

Versioning: a ``densebench_schema`` table holds the version. A store of another version is
refused with a :class:`~densebench.errors.StoreError` that says both versions; there is one
version so far, so there is no migration tool (docs/fleet.md says why and when Alembic comes in).

``postgresql://`` URLs use psycopg 3 (``postgresql+psycopg``); SQLite needs nothing beyond Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from ..errors import StoreError
from ..settings import redact_url

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Metric:
    """A metric kept per benchmark: its unit and which direction is better."""

    unit: str
    higher_is_better: bool
    doc: str


# Field-standard names; the source of each value is in ingest.metric_values.
METRICS: dict[str, Metric] = {
    "throughput_samples_per_s": Metric("images/s", True, "batch size / median round time"),
    "latency_p50_ms": Metric("ms", False, "median round time"),
    "latency_p99_ms": Metric("ms", False, "99th percentile round time"),
    "peak_memory_mb": Metric("MiB", False, "device peak on GPU, process RSS peak on CPU"),
    "energy_per_image_j": Metric("J/image", False, "GPU (NVML) or CPU energy over the images timed"),
    "cpu_ms_per_image": Metric("ms/image", False, "process CPU time (user + system) per image over the timed "
                               "rounds: on a shared CPU, the figure other processes disturb least"),
    "setup_s": Metric("s", False, "build + warm-up (untimed)"),
    "parity_top1_agreement": Metric("fraction", True, "top-1 agreement with the baseline"),
    "parity_logit_error": Metric("ratio", False, "logit error relative to the between-image spread"),
}

metadata = MetaData()

schema_version = Table("densebench_schema", metadata, Column("version", Integer, nullable=False))

machines = Table(
    "machines", metadata,
    Column("id", Integer, primary_key=True),
    Column("key", String(64), nullable=False, unique=True),
    Column("label", String(200), nullable=False),
    Column("cpu_model", String(300)),
    Column("logical_cpus", Integer),
    Column("gpus", JSON, nullable=False),  # [{"name", "uuid"}]
    Column("driver_version", String(100)),
    Column("node", String(300)),  # host name when first seen (not part of the key)
)

runs = Table(
    "runs", metadata,
    Column("id", Integer, primary_key=True),
    Column("uid", String(64), nullable=False, unique=True),  # sha256(machine key, run name) or of the content
    Column("content_sha256", String(64), nullable=False),
    Column("machine_id", ForeignKey("machines.id"), nullable=False),
    Column("name", String(100)),  # densebench run name (start time)
    Column("started_at", DateTime, nullable=False),  # the file's datetime, UTC
    Column("git_commit", String(64)),
    Column("git_branch", String(300)),
    Column("git_dirty", Boolean),
    Column("densebench_version", String(50)),
    Column("torch_version", String(100)),
    Column("libraries", JSON, nullable=False),
    Column("settings", JSON, nullable=False),
    Column("device", String(50)),
    Column("device_name", String(300)),
    Column("source", Text),  # the file it came from, as given to ingest
    Column("complete", Boolean, nullable=False),  # false: recovered from an unfinished journal
    Column("ingested_at", DateTime, nullable=False),
)

configurations = Table(
    "configurations", metadata,
    Column("id", Integer, primary_key=True),
    Column("optimization", String(200), nullable=False),
    Column("batch_size", Integer, nullable=False),
    UniqueConstraint("optimization", "batch_size"),
)

benchmarks = Table(
    "benchmarks", metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("configuration_id", ForeignKey("configurations.id"), nullable=False),
    Column("image_size", Integer),
    Column("precision", String(50)),
    Column("parity_passed", Boolean),
    Column("rounds", Integer),
    UniqueConstraint("run_id", "configuration_id"),
)

metrics = Table(
    "metrics", metadata,
    Column("benchmark_id", ForeignKey("benchmarks.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(100), primary_key=True),
    Column("value", Float, nullable=False),
    Column("unit", String(30), nullable=False),
)

outcomes = Table(
    "outcomes", metadata,
    Column("run_id", ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("configuration_id", ForeignKey("configurations.id"), primary_key=True),
    Column("status", String(30), nullable=False),
    Column("reason", Text),
)


def engine_for(url: str) -> Engine:
    """An engine for ``url``: ``sqlite:///PATH`` (parent directories created) or ``postgresql://...``
    (psycopg 3, 10 s connect timeout). Raises StoreError for a URL that is neither."""
    allowed = "sqlite:///PATH or postgresql://USER@HOST[:PORT]/DATABASE"
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"results store {redact_url(url)!r} is not a database URL (allowed: {allowed})") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed)
        event.listen(engine, "connect", _sqlite_foreign_keys)
        return engine
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        try:
            return create_engine(parsed, connect_args={"connect_timeout": 10}, pool_pre_ping=True)
        except (NoSuchModuleError, ImportError) as exc:
            raise StoreError(f"results store {redact_url(url)}: PostgreSQL needs psycopg 3 "
                             f"(pip install 'densebench[store]'): {exc}") from None
    raise StoreError(f"results store {redact_url(url)!r}: unsupported database {backend!r} (allowed: {allowed})")


def _sqlite_foreign_keys(dbapi_connection, connection_record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")  # SQLite's own switch; there is no Core construct for it
    cursor.close()


def open_store(url: str) -> Engine:
    """Open (creating the tables of a new, empty store) the store at ``url``; checks its schema version.

    Raises StoreError: bad URL, unreachable server, a database that holds other tables but no
    densebench schema, or a schema version other than :data:`SCHEMA_VERSION`."""
    engine = engine_for(url)
    where = redact_url(url)
    try:
        with engine.begin() as conn:
            tables = set(inspect(conn).get_table_names())
            if schema_version.name not in tables:
                if tables & set(metadata.tables):
                    raise StoreError(f"results store {where} has densebench tables but no "
                                     f"{schema_version.name} table: not a store this densebench wrote")
                metadata.create_all(conn)
                conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
                return engine
            found = conn.execute(select(schema_version.c.version)).scalar_one_or_none()
    except SQLAlchemyError as exc:
        engine.dispose()
        raise StoreError(f"results store {where}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    if found != SCHEMA_VERSION:
        engine.dispose()
        raise StoreError(f"results store {where} has schema version {found}; this densebench reads and writes "
                         f"version {SCHEMA_VERSION}. Use the densebench version that wrote it, or a new store "
                         "(there is no migration from that version)")
    return engine
