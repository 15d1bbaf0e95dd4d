"""Shared test helpers: a fast suite runner for pytester, fabricated datasets, no network."""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from pathlib import Path

import numpy  # noqa: F401  (see below)
import pytest

# pytester's in-process runs put sys.modules back as they found it afterwards; numpy 2 and torch
# refuse to be imported a second time in one process (torch: "SystemError: ... bad call flags",
# then a crash at exit), so the first in-process run that imports one would break every later
# test that needs it, depending on which test files run. Imported here, they are part of what
# pytester restores.
try:
    import torch  # noqa: F401
except ImportError:  # the tests that need torch skip on their own
    pass

pytest_plugins = ["pytester"]

# Nothing may download at test time: 'auto' weights and datasets fall back at once.
os.environ["DENSEBENCH_OFFLINE"] = "1"

# Small, quick settings for runs of the suite inside pytester.
FAST = (
    "-p", "densebench.plugin",
    "--densebench-device=cpu",
    "--densebench-weights=random",
    "--densebench-dataset=synthetic",
    "--densebench-image-size=32",
    "--densebench-eval-samples=8",
    "--densebench-warmup=1",
    "--densebench-crosscheck=false",
    "--densebench-paired-target-ci=0",  # a fixed count of pairs; test_noise runs the sequential stopping
    "--benchmark-min-rounds=2",
    "--benchmark-max-time=0.02",
)

SUITE = "from densebench.suite.test_inference import test_inference\n"


class SuiteRun:
    def __init__(self, result: pytest.RunResult, path: Path):
        self.result = result
        self.path = path
        self.json = json.loads(path.read_text()) if path.exists() else None

    @property
    def benchmarks(self) -> dict[str, dict]:
        return {b["param"]: b for b in (self.json or {}).get("benchmarks", [])}

    def outcomes(self, status: str | None = None) -> list[dict]:
        found = (self.json or {}).get("densebench", {}).get("outcomes", [])
        return [o for o in found if status is None or o["status"] == status]


REPO = Path(__file__).resolve().parent.parent

# How many times ``pace_s`` a hang guard allows: about 5 minutes where a pace is 0.3 s (this
# 2-core machine, quiet), proportionally more under load. A tiny suite run (a fresh interpreter,
# torch, one build, a few rounds) takes 10-60 paces; a guard only ends a run that hangs.
HANG_GUARD = 1000


def pace_s() -> float:
    """Seconds this machine takes right now to build a random DenseNet-121 and run one 32 px round.

    Measured in this process just before it is used, so a loaded machine yields a longer pace. Hang
    guards on subprocesses are ``HANG_GUARD`` paces, never a constant a loaded machine can outrun.
    """
    import torch

    from densebench.model import build_model

    start = time.perf_counter()
    model = build_model("random", seed=0)[0]
    with torch.inference_mode():
        model(torch.rand(1, 3, 32, 32))
    return time.perf_counter() - start


@pytest.fixture
def pytester_sub(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytester for runs that import torch: those must run in a subprocess.

    An in-process pytester run restores ``sys.modules`` afterwards, so the next run would
    import torch's C extensions a second time into the same interpreter, which corrupts it.
    """
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return pytester


@pytest.fixture
def run_suite(pytester_sub: pytest.Pytester):
    """Run the densebench suite in a pytester subprocess with FAST settings; returns a SuiteRun."""
    pytester_sub.makepyfile(test_suite=SUITE)

    def run(*args: str, json_name: str = "out.json", fast: tuple[str, ...] = FAST) -> SuiteRun:
        result = pytester_sub.runpytest_subprocess(*fast, f"--benchmark-json={json_name}", *args)
        return SuiteRun(result, pytester_sub.path / json_name)

    return run


TINY_WNIDS = ("n01443537", "n01629819", "n02124075")  # goldfish, European fire salamander, Egyptian cat


def jpeg_bytes(seed: int, size: int = 64) -> bytes:
    from PIL import Image

    img = Image.new("RGB", (size, size), ((seed * 53) % 256, (seed * 97) % 256, (seed * 31) % 256))
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    return buf.getvalue()


def make_tiny_zip(path: Path, per_class: int = 2, extra: dict[str, bytes] | None = None) -> Path:
    """A Tiny-ImageNet-200-shaped archive: wnids, words, a train entry and a labelled val split."""
    root = "tiny-imagenet-200"
    lines = []
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{root}/wnids.txt", "\n".join(TINY_WNIDS) + "\n")
        zf.writestr(f"{root}/words.txt", "".join(f"{w}\tclass {w}\n" for w in TINY_WNIDS))
        zf.writestr(f"{root}/train/{TINY_WNIDS[0]}/images/{TINY_WNIDS[0]}_0.JPEG", jpeg_bytes(99))
        i = 0
        for wnid in TINY_WNIDS:
            for _ in range(per_class):
                zf.writestr(f"{root}/val/images/val_{i}.JPEG", jpeg_bytes(i))
                lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
                i += 1
        zf.writestr(f"{root}/val/val_annotations.txt", "\n".join(lines) + "\n")
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return path


@pytest.fixture
def tiny_zip(tmp_path: Path) -> Path:
    return make_tiny_zip(tmp_path / "tiny-imagenet-200.zip")


# ---------------------------------------------------------------- results stores (SQLite, a real PostgreSQL)


def find_pg_ctl() -> str | None:
    """pg_ctl on PATH, else the newest Debian ``postgresql`` package's (/usr/lib/postgresql/N/bin)."""
    import glob
    import shutil

    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    return shutil.which("pg_ctl") or (versions[-1] if versions else None)


@pytest.fixture(scope="session")
def postgresql_server(tmp_path_factory: pytest.TempPathFactory):
    """A PostgreSQL server this test session starts (pytest-postgresql's executor over the Debian package's
    pg_ctl) and stops. PostgreSQL refuses to run as root: as root, pg_ctl runs as the package's ``postgres``
    user through runuser, in a directory that user owns. Missing server: a skip, but a failure in CI."""
    import pwd
    import shlex
    import shutil
    import socket
    import tempfile

    pg_ctl = find_pg_ctl()
    problem = None if pg_ctl else ("no PostgreSQL server: pg_ctl is neither on PATH nor in /usr/lib/postgresql/*/bin "
                                   "(Debian: apt-get install postgresql; scripts/test.sh installs it when run as root)")
    if pg_ctl and os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            problem = "running as root and there is no 'postgres' user to run the PostgreSQL server as"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI requires PostgreSQL for the store tests: {problem}")
        pytest.skip(problem)
    from pytest_postgresql.executors.proc import PostgreSQLExecutor  # the test extra

    base = Path(tempfile.mkdtemp(prefix="densebench-pg-"))
    executable = str(pg_ctl)
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
        wrapper = base.with_name(base.name + "-pg_ctl")
        wrapper.write_text(f'#!/bin/sh\ncd /\nexec runuser -u postgres -- {shlex.quote(executable)} "$@"\n')
        wrapper.chmod(0o755)
        executable = str(wrapper)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = PostgreSQLExecutor(executable=executable, host="127.0.0.1", port=port, datadir=str(base / "data"),
                                unixsocketdir=str(base), logfile=str(base / "server.log"), startparams="-w",
                                dbname="densebench", user="postgres")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
        base.with_name(base.name + "-pg_ctl").unlink(missing_ok=True)


_databases = iter(range(1_000_000))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path):
    """A new, empty results store: a SQLite file, or a database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.sqlite'}"
        return
    from pytest_postgresql.janitor import DatabaseJanitor  # the test extra

    server = request.getfixturevalue("postgresql_server")
    name = f"densebench_{next(_databases)}"
    with DatabaseJanitor(user="postgres", host=server.host, port=server.port, dbname=name):
        yield f"postgresql://postgres@{server.host}:{server.port}/{name}"
