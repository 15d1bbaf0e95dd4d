"""Results files into the store: one transaction per run, idempotent.

Sources (:func:`documents`): pytest-benchmark JSON written by densebench (``--benchmark-json``,
``densebench run``'s ``results.json``), autosaves (a directory such as ``.benchmarks/`` is
searched for ``*.json``) and results journals (``journal-*.jsonl``, read like ``densebench
recover``). A run's identity is its machine key and its densebench run name (the start time),
or the SHA-256 of its content when it has no name: the same run ingested twice — the JSON and
its autosave, the JSON and the journal — is one run. Each run is inserted in one transaction:
an error half-way leaves nothing behind.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from .. import journal
from ..errors import ReportError, StoreError
from ..report import load, records_from
from ..scenarios import scenario_key
from . import schema


@dataclass(frozen=True)
class Ingested:
    """What :func:`ingest` did with one run."""

    source: str
    run_uid: str
    machine_key: str
    inserted: bool  # False: the run was already in the store
    benchmarks: int


def documents(paths: list[Path]) -> list[tuple[Path, dict[str, Any]]]:
    """Every results document under ``paths`` (files, or directories searched for ``*.json`` and
    ``journal-*.jsonl``). Raises ReportError naming a path that is missing or not densebench results."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix == ".json" or p.name.endswith(".jsonl"))
        elif path.exists():
            found.append(path)
        else:
            raise ReportError(f"{path}: no such file or directory (allowed: results JSON, a journal-*.jsonl, "
                              "or a directory of them such as .benchmarks/)")
    out = []
    for path in found:
        if path.suffix == ".jsonl":
            try:
                out.append((path, journal.to_pytest_benchmark(path)))
            except (ValueError, KeyError) as exc:
                raise ReportError(f"{path}: not a densebench results journal ({exc})") from None
        else:
            out.append((path, load(path)))
    return out


def machine_identity(machine_info: dict[str, Any], label: str) -> dict[str, Any]:
    """The hardware identity a machine key is made of: CPU model and logical core count, each GPU's
    name and UUID, the NVIDIA driver, and the user's label. The host name is not part of it
    (containers and CI runners change it)."""
    gpus = [{"name": g.get("name"), "uuid": g.get("uuid")} for g in machine_info.get("gpus") or []]
    return {"cpu_model": machine_info.get("cpu_model") or machine_info.get("processor"),
            "logical_cpus": machine_info.get("logical_cpus"), "gpus": gpus,
            "driver_version": machine_info.get("driver_version"), "label": label}


def machine_key(identity: dict[str, Any]) -> str:
    """SHA-256 (hex) of the identity's canonical JSON: stable across runs, hosts and file formats."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _sha256(doc: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _when(doc: dict[str, Any]) -> datetime.datetime:
    """The document's datetime as naive UTC (pytest-benchmark writes ISO 8601)."""
    text = str(doc.get("datetime") or "")
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ReportError(f"datetime {text!r} is not ISO 8601 (pytest-benchmark writes e.g. "
                          "'2026-11-29T22:00:00.000000+00:00')") from None
    if when.tzinfo is not None:
        when = when.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return when


def metric_values(bench: dict[str, Any], record: Any) -> dict[str, float]:
    """The :data:`schema.METRICS` of one saved benchmark: ``record`` is report.records_from's (throughput,
    latency, memory, energy, setup); parity and CPU time come from the raw ``extra_info`` and ``stats``
    (images timed = rounds x iterations x batch size). Missing ones are left out."""
    info, stats = bench["extra_info"], bench.get("stats") or {}
    parity = info.get("parity") or {}
    cpu_s = (info.get("cpu") or {}).get("process_cpu_s")
    # a scenario's rounds are queries (offline: batches of any size): no images-per-round figure
    images = 0 if record.scenario else stats.get("rounds", 0) * stats.get("iterations", 1) * record.batch_size
    values = {"throughput_samples_per_s": record.throughput, "latency_p50_ms": record.p50_ms,
              "latency_p99_ms": record.p99_ms, "peak_memory_mb": record.peak_memory_mb,
              "energy_per_image_j": record.energy_per_image_j,
              "cpu_ms_per_image": 1000 * cpu_s / images if cpu_s and images else None, "setup_s": record.setup_s,
              "parity_top1_agreement": parity.get("top1_agreement"), "parity_logit_error": parity.get("logit_error")}
    return {name: float(value) for name, value in values.items() if value is not None}


def _insert(conn: Connection):  # type: ignore[no-untyped-def]
    """The dialect's INSERT with ON CONFLICT DO NOTHING (SQLite and PostgreSQL both have it)."""
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert


def _machine_id(conn: Connection, key: str, identity: dict[str, Any], node: str | None) -> int:
    values = {k: v for k, v in identity.items() if k != "label"}
    conn.execute(_insert(conn)(schema.machines).values(key=key, label=identity["label"], node=node, **values)
                 .on_conflict_do_nothing(index_elements=["key"]))
    return conn.execute(select(schema.machines.c.id).where(schema.machines.c.key == key)).scalar_one()


def _configuration_id(conn: Connection, optimization: str, batch_size: int) -> int:
    table = schema.configurations
    conn.execute(_insert(conn)(table).values(optimization=optimization, batch_size=batch_size)
                 .on_conflict_do_nothing(index_elements=["optimization", "batch_size"]))
    return conn.execute(select(table.c.id).where(table.c.optimization == optimization,
                                                 table.c.batch_size == batch_size)).scalar_one()


def _run_row(doc: dict[str, Any], source: Path, uid: str, machine_id: int) -> dict[str, Any]:
    dense = doc.get("densebench") or {}
    commit = doc.get("commit_info") or {}
    libraries = (doc.get("machine_info") or {}).get("libraries") or {}
    return {"uid": uid, "content_sha256": _sha256(doc), "machine_id": machine_id, "name": dense.get("run"),
            "started_at": _when(doc), "git_commit": commit.get("id"), "git_branch": commit.get("branch"),
            "git_dirty": commit.get("dirty"), "densebench_version": dense.get("version"),
            "torch_version": libraries.get("torch"), "libraries": libraries, "settings": dense.get("settings") or {},
            "device": dense.get("device"), "device_name": dense.get("device_name"),
            "source": str(source.resolve() if source.exists() else source),
            "complete": bool(dense.get("complete", True)),
            "ingested_at": datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)}


def _key(info: dict[str, Any]) -> str:
    scenario = (info.get("scenario") or {}).get("name")
    return scenario_key(info["optimization"], scenario) if scenario else info["optimization"]


def _insert_benchmarks(conn: Connection, run_id: int, doc: dict[str, Any], source: Path) -> int:
    # A serving scenario's benchmark is its own series: configuration 'openvino_int8[server]' (report.Record.key).
    raw = {(_key(b["extra_info"]), int(b["extra_info"]["batch_size"])): b
           for b in doc["benchmarks"] if (b.get("extra_info") or {}).get("optimization")}
    count = 0
    for record in records_from(doc, source):
        bench = raw[(record.key, record.batch_size)]
        info = bench["extra_info"]
        # A serving scenario's series has no batch size (batch_size 0): its batcher's max batch is a search result.
        config_id = _configuration_id(conn, record.key, 0 if record.scenario else record.batch_size)
        bench_id = conn.execute(schema.benchmarks.insert().values(
            run_id=run_id, configuration_id=config_id, image_size=info.get("image_size"),
            precision=record.precision, parity_passed=record.parity_passed,
            rounds=(bench.get("stats") or {}).get("rounds")).returning(schema.benchmarks.c.id)).scalar_one()
        rows = [{"benchmark_id": bench_id, "name": name, "value": value, "unit": schema.METRICS[name].unit}
                for name, value in metric_values(bench, record).items()]
        conn.execute(schema.metrics.insert(), rows)
        count += 1
    for outcome in (doc.get("densebench") or {}).get("outcomes") or []:
        config_id = _configuration_id(conn, outcome["optimization"], int(outcome["batch_size"]))
        conn.execute(_insert(conn)(schema.outcomes).values(
            run_id=run_id, configuration_id=config_id, status=str(outcome["status"]), reason=outcome.get("reason"))
            .on_conflict_do_nothing())
    return count


def ingest(engine: Engine, doc: dict[str, Any], source: Path, label: str | None = None) -> Ingested:
    """Insert one results document as one run (one transaction), unless that run is already stored.

    ``label``: the machine label (default: the run's ``machine_label`` setting, else empty).
    Raises ReportError for a document that is not densebench results (nothing is written) and
    StoreError when the database fails (the transaction is rolled back)."""
    dense = doc.get("densebench") or {}
    if label is None:
        label = str((dense.get("settings") or {}).get("machine_label") or "")
    machine_info = doc.get("machine_info") or {}
    identity = machine_identity(machine_info, label)
    key = machine_key(identity)
    uid = (hashlib.sha256(f"{key}|{dense['run']}".encode()).hexdigest() if dense.get("run") else _sha256(doc))
    records_from(doc, source)  # a file with no densebench benchmark is refused before any write
    try:
        with engine.begin() as conn:
            machine_id = _machine_id(conn, key, identity, machine_info.get("node"))
            run_id = conn.execute(_insert(conn)(schema.runs).values(**_run_row(doc, source, uid, machine_id))
                                  .on_conflict_do_nothing(index_elements=["uid"])
                                  .returning(schema.runs.c.id)).scalar_one_or_none()
            if run_id is None:
                return Ingested(str(source), uid, key, False, 0)
            count = _insert_benchmarks(conn, run_id, doc, source)
    except SQLAlchemyError as exc:
        raise StoreError(f"{source}: the store refused the run ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0]}); nothing of it was stored") from None
    return Ingested(str(source), uid, key, True, count)
