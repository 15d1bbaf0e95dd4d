"""The pytest plugin: options and ini keys, the session, fixtures and pytest-benchmark hooks.

Registered through the ``pytest11`` entry point (and by the repository's ``conftest.py``
when run from a checkout). Heavy imports (torch) happen only when a benchmark runs.
"""

from __future__ import annotations

from typing import Any

import pytest

from .settings import OPTIONS, OPTIONS_BY_KEY, Settings, SettingsError, raw_value

SESSION_KEY: pytest.StashKey[Any] = pytest.StashKey()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("densebench", "densebench: DenseNet-121 inference benchmarks")
    for opt in OPTIONS:
        # booleans work as bare flags too: --densebench-profile == --densebench-profile=true
        extra = {"nargs": "?", "const": "true"} if opt.boolean else {}
        group.addoption(opt.flag, dest=f"densebench_{opt.key}", default=None, metavar=opt.metavar,
                        help=f"{opt.help}. Default: {opt.default}; env {opt.env}; ini {opt.ini}.", **extra)
        parser.addini(opt.ini, help=opt.help, default=None)


def _sources(config: pytest.Config) -> tuple[Any, Any]:
    """(flag, ini): an option's raw value on the command line and in the ini file."""
    def flag(opt: Any) -> str | None:
        return config.getoption(f"densebench_{opt.key}", None)

    def ini(opt: Any) -> str | None:
        value = config.getini(opt.ini)
        return value or None

    return flag, ini


def settings_from_config(config: pytest.Config) -> Settings:
    try:
        return Settings.from_sources(*_sources(config))
    except SettingsError as exc:
        raise pytest.UsageError(str(exc)) from None


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under ``-n N`` (plain ``--dist load``) send all of an optimization's tests to one worker,
    so each optimization is built once."""
    if getattr(config.option, "dist", None) != "load":
        return None
    from .parallel import by_optimization_scheduler

    return by_optimization_scheduler(config, log)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto`` means one worker per GPU when benchmarking on CUDA."""
    from . import parallel

    # Before Settings exist (xdist asks for its worker count early): the raw device option.
    device = raw_value(OPTIONS_BY_KEY["device"], *_sources(config)) or "auto"
    if parallel.wants_cuda(device.strip().lower()):
        return max(1, parallel.cuda_count())
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    import dataclasses

    from . import parallel
    from .bench import DenseBench

    config.addinivalue_line("markers", "densebench: a densebench inference benchmark")
    settings = settings_from_config(config)
    worker = parallel.worker_id()
    assignment = None
    if worker is not None:
        assignment = parallel.assign(settings.device, parallel.worker_count(), int(worker[2:]))
        if assignment.pinned:
            parallel.pin(assignment)
            settings = dataclasses.replace(settings, device=assignment.device)
    # Inductor's caches under the output directory, set before anything asks Inductor where they are
    # (it fixes the location on first use): a second run with the same output reuses them.
    import os

    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str((settings.output / "cache" / "inductor").resolve()))
    session = config.stash[SESSION_KEY] = DenseBench(settings)
    if assignment is not None:
        session.worker = assignment.as_dict()
    elif getattr(config.option, "numprocesses", None):  # the xdist controller
        n = int(config.option.numprocesses)
        assignments = [parallel.assign(settings.device, n, i) for i in range(n)]
        first = assignments[0]
        session.parallel = {"workers": n, "pinned": first.pinned, "reason": first.reason,
                            "assignments": [a.as_dict() for a in assignments] if first.pinned else []}


def _pinned(config: pytest.Config) -> bool:
    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        return False
    if session.worker is not None:
        return bool(session.worker["pinned"])
    return bool(session.parallel and session.parallel["pinned"])


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    dense = config.stash.get(SESSION_KEY, None)
    bs = getattr(config, "_benchmarksession", None)
    if dense is not None and bs is not None:
        _journal_and_atomic_saving(config, dense, bs)
    if bs is None or not _pinned(config):
        return
    _keep_benchmarks_on(session, bs)


def _journal_and_atomic_saving(config: pytest.Config, dense: Any, bs: Any) -> None:
    """Give the journal its header sources, write the final JSON atomically, recover crashed runs."""
    from . import journal

    dense.machine_info = bs.get_machine_info
    dense.commit_info = lambda: config.hook.pytest_benchmark_generate_commit_info(config=config)
    from pytest_benchmark.utils import safe_dumps

    def save_json(output_json: dict[str, Any]) -> None:
        journal.atomic_write_text(bs.json, safe_dumps(output_json, ensure_ascii=True, indent=4))
        bs.logger.info(f"Wrote benchmark data in: {bs.json}", purple=True)

    bs.save_json = save_json
    if dense.worker is None and dense.settings.journal == "auto" and dense.journal is not None:
        recovered = journal.recover_unfinished(dense.journal.path.parent, skip=dense.journal.path)
        dense.recovered = [str(p) for p in recovered]


def _keep_benchmarks_on(session: pytest.Session, bs: Any) -> None:
    """Pinned xdist: keep pytest-benchmark on; only the controller writes files."""
    if bs.skip or (session.config.getoption("benchmark_disable") and not session.config.getoption("benchmark_enable")):
        return
    bs.disabled = False
    bs.xdist_warning = False
    bs.xdist_benchmark_found = False
    if hasattr(session.config, "workerinput"):  # a worker: the controller saves and compares
        bs.json = None
        bs.save = bs.autosave = False
        bs.compare = bs.compare_fail = None
        bs.compared_mapping = {}


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """On the controller: take each pinned worker's benchmarks into this session's results."""
    from . import parallel

    payload = getattr(node, "workeroutput", {}).get("densebench")
    if not payload:
        return
    benchmarks, run_info = parallel.load(payload)
    dense = node.config.stash[SESSION_KEY]
    _adopt(node.config, dense, benchmarks)
    dense.add_worker(run_info)


def _adopt(config: pytest.Config, dense: Any, benchmarks: list[Any]) -> None:
    """Benchmarks measured in another process (WorkerBenchmark): into pytest-benchmark's results
    and this run's journal."""
    bs = getattr(config, "_benchmarksession", None)
    if bs is not None:
        bs.benchmarks.extend(benchmarks)
    for bench in benchmarks:
        dense.journal_benchmark_data(bench.data)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Progress lines (progress.py) for the benchmarks collected in this process."""
    dense = session.config.stash.get(SESSION_KEY, None)
    if dense is not None:
        from .progress import Progress

        total = sum("optimized" in getattr(item, "fixturenames", ()) for item in session.items)
        dense.progress = Progress(session.config, total)


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        return None
    s = session.settings
    return [f"densebench: device={s.device} optimizations={','.join(s.optimizations)} "
            f"batch_sizes={','.join(map(str, s.batch_sizes))} image_size={s.image_size} weights={s.weights} "
            f"dataset={s.dataset}"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per optimization x batch size, optimization-major so each is built once."""
    if "optimized" not in metafunc.fixturenames:
        return
    settings = metafunc.config.stash[SESSION_KEY].settings
    if "optimization" in metafunc.fixturenames:
        metafunc.parametrize("optimization", settings.optimizations, ids=list(settings.optimizations))
    if "batch_size" in metafunc.fixturenames:
        metafunc.parametrize("batch_size", settings.batch_sizes, ids=[f"bs{b}" for b in settings.batch_sizes])


@pytest.fixture(scope="session")
def densebench_session(request: pytest.FixtureRequest) -> Any:
    """The run's DenseBench: settings, device, model, data, baseline and the runner cache.

    Unusable weights or data end the whole run at once (exit status 4, like a usage error):
    every benchmark would fail the same way.
    """
    from .bench import InputError

    session = request.config.stash[SESSION_KEY]
    if session.settings.isolate:
        return session  # each child loads the model and data itself
    try:
        session.prepare()
    except InputError as exc:
        pytest.exit(f"densebench: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)
    return session


@pytest.fixture
def optimized(densebench_session: Any, optimization: str, batch_size: int) -> Any:
    """The built Runner for this test's optimization; skipped with the reason when it cannot run here."""
    from .bench import BuildFailed, OutOfMemory
    from .optimizations import Unavailable

    if densebench_session.settings.isolate:
        return None  # built in a child process, see densebench_measure
    try:
        return densebench_session.runner(optimization, batch_size)
    except Unavailable as exc:
        densebench_session.note(optimization, batch_size, "skipped", str(exc))
        pytest.skip(f"{optimization}: {exc}")
    except OutOfMemory as exc:
        densebench_session.note(optimization, batch_size, "oom", str(exc))
        pytest.skip(str(exc))
    except BuildFailed as exc:
        densebench_session.note(optimization, batch_size, "failed", str(exc))
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def densebench_measure(request: pytest.FixtureRequest, densebench_session: Any, optimized: Any,
                       optimization: str, batch_size: int) -> Any:
    """Measure ``optimized`` at ``batch_size`` with a benchmark fixture; out of memory becomes a skip.

    With --densebench-isolate the optimization runs in a child process and this returns what
    the child measured (or records how it died)."""
    from .bench import OutOfMemory

    def measure(benchmark: Any) -> Any:
        if optimized is None:
            return _isolated(request, densebench_session, optimization, batch_size, benchmark)
        try:
            return densebench_session.measure(benchmark, optimized, batch_size)
        except OutOfMemory as exc:
            densebench_session.note(optimized.name, batch_size, "oom", str(exc))
            pytest.skip(str(exc))

    return measure


def _isolated(request: pytest.FixtureRequest, dense: Any, optimization: str, batch_size: int,
              benchmark: Any) -> Any:
    from . import isolate
    from .bench import Measurement
    from .parallel import WorkerBenchmark

    config = request.config
    child = dense.children.get(optimization)
    if child is None:
        where = dense.settings.output / "isolated" / dense.run_name
        dense.progress.stage(optimization, batch_size, "starting child process")
        child = dense.children[optimization] = isolate.run_child(
            config, dense.settings, request.node.path, optimization, where,
            on_progress=dense.progress.child_line, on_poll=dense.progress.tick)
        dense.merge_outcomes(list(child.outcomes.values()))
    benchmark._mode = "isolated: measured in a child process"  # pytest-benchmark: the fixture was used
    bench = child.benchmarks.get(batch_size)
    if bench is not None:
        _adopt(config, dense, [WorkerBenchmark(bench)])
        return Measurement(bench["extra_info"])
    outcome = child.outcomes.get(batch_size)
    if outcome is not None and outcome["status"] in ("skipped", "oom"):
        pytest.skip(outcome["reason"])
    if outcome is not None and outcome["status"] == "failed":
        pytest.fail(outcome["reason"], pytrace=False)
    status, message = child.failure()
    dense.note(optimization, batch_size, status, message)
    if status == "oom":
        pytest.skip(message)
    pytest.fail(message, pytrace=False)


def pytest_sessionfinish(session: pytest.Session) -> None:
    dense = session.config.stash.get(SESSION_KEY, None)
    if dense is None:
        return
    config = session.config
    bs = getattr(config, "_benchmarksession", None)
    if hasattr(config, "workeroutput") and bs is not None and _pinned(config):
        from . import parallel

        config.workeroutput["densebench"] = parallel.export(bs.benchmarks, dense.run_info())
    dense.close()


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    from .telemetry import machine_info as densebench_machine_info

    machine_info.update(densebench_machine_info())


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: Any, output_json: dict[str, Any]) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is not None:
        session.finish()
        output_json["densebench"] = session.run_info()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is not None and session.parallel and not session.parallel["pinned"]:
        terminalreporter.write_line(f"densebench: benchmarks are off in this parallel run: "
                                    f"{session.parallel['reason']}; run one worker per GPU "
                                    "(-n <GPUs> --densebench-device cuda) or per CPU core slice")
    if session is None or not session.outcomes:
        return
    from .summary import terminal_lines

    tr = terminalreporter
    tr.write_sep("-", "densebench summary")
    info = session.run_info()
    if "weights" in info:
        tr.write_line(f"weights: {info['weights']['summary']}")
    if "dataset" in info:
        tr.write_line(f"dataset: {info['dataset']['summary']}")
    if "device" in info:
        tr.write_line(f"device: {info['device']} ({info['device_name']})")
    for worker in info.get("workers", []):
        pin = worker.get("worker") or {}
        where = f"CPUs {pin['cpus']}" if pin.get("cpus") is not None else pin.get("device")
        tr.write_line(f"worker {pin.get('worker')}: {worker.get('device_name')} pinned to {where}")
    for line in terminal_lines(info["outcomes"], session.settings.latency_budget_ms):
        tr.write_line(line)
    setup = info["setup_s"]
    tr.write_line(f"setup time (build + warm-up, untimed): {setup['total']:.1f} s "
                  f"(build {setup['build']:.1f} s, warm-up {setup['warmup']:.1f} s)")
