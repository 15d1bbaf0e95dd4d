"""The pytest plugin: options and ini keys, the session, fixtures and pytest-benchmark hooks.

Registered through the ``pytest11`` entry point (and by the repository's ``conftest.py``
when run from a checkout). Heavy imports (torch) happen only when a benchmark runs.
"""

from __future__ import annotations

from typing import Any

import pytest

from .settings import OPTIONS, Settings, SettingsError

SESSION_KEY: pytest.StashKey[Any] = pytest.StashKey()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("densebench", "densebench: DenseNet-121 inference benchmarks")
    for opt in OPTIONS:
        # booleans work as bare flags too: --densebench-profile == --densebench-profile=true
        extra = {"nargs": "?", "const": "true"} if opt.boolean else {}
        group.addoption(opt.flag, dest=f"densebench_{opt.key}", default=None, metavar=opt.metavar,
                        help=f"{opt.help}. Default: {opt.default}; env {opt.env}; ini {opt.ini}.", **extra)
        parser.addini(opt.ini, help=opt.help, default=None)


def settings_from_config(config: pytest.Config) -> Settings:
    def flag(opt: Any) -> str | None:
        return config.getoption(f"densebench_{opt.key}", None)

    def ini(opt: Any) -> str | None:
        value = config.getini(opt.ini)
        return value or None

    try:
        return Settings.from_sources(flag, ini)
    except SettingsError as exc:
        raise pytest.UsageError(str(exc)) from None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    from .bench import DenseBench

    config.addinivalue_line("markers", "densebench: a densebench inference benchmark")
    config.stash[SESSION_KEY] = DenseBench(settings_from_config(config))


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
    try:
        session.prepare()
    except InputError as exc:
        pytest.exit(f"densebench: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)
    return session


@pytest.fixture
def optimized(densebench_session: Any, optimization: str, batch_size: int) -> Any:
    """The built Runner for this test's optimization; skipped with the reason when it cannot run here."""
    from .bench import BuildFailed
    from .optimizations import Unavailable

    try:
        return densebench_session.runner(optimization, batch_size)
    except Unavailable as exc:
        densebench_session.note(optimization, batch_size, "skipped", str(exc))
        pytest.skip(f"{optimization}: {exc}")
    except BuildFailed as exc:
        densebench_session.note(optimization, batch_size, "failed", str(exc))
        pytest.fail(str(exc), pytrace=False)


def pytest_sessionfinish(session: pytest.Session) -> None:
    dense = session.config.stash.get(SESSION_KEY, None)
    if dense is not None:
        dense.close()


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    from .telemetry import machine_info as densebench_machine_info

    machine_info.update(densebench_machine_info())


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: Any, output_json: dict[str, Any]) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is not None:
        output_json["densebench"] = session.run_info()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is None or not session.outcomes:
        return
    from .summary import terminal_lines

    tr = terminalreporter
    tr.write_sep("-", "densebench summary")
    info = session.run_info()
    if "weights" in info:
        tr.write_line(f"weights: {session.weights.describe()}")
    if "dataset" in info:
        tr.write_line(f"dataset: {session.data.info.describe()}")
    if "device" in info:
        tr.write_line(f"device: {info['device']} ({info['device_name']})")
    for line in terminal_lines(info["outcomes"]):
        tr.write_line(line)
