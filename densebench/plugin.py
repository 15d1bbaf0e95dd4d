"""The pytest plugin: hooks only. Options, activation, parametrization and the fixtures.

Registered through the ``pytest11`` entry point (and by the repository's ``conftest.py``
when run from a checkout). Inert unless used: at start-up it declares its options and
registers one :class:`~densebench.roles.Activation`, which reads no environment variable,
imports no torch, writes nothing and touches no other plugin until densebench is used —
a densebench flag or ini key, or a densebench benchmark collected. Then the role object
for this process (plain run, isolating parent, xdist controller, xdist worker) is
registered and owns the rest of the session (see roles/).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from . import parallel
from .roles import Activation, explicitly_used, flag_value, ini_value
from .settings import OPTIONS, OPTIONS_BY_KEY, SCENARIOS, raw_value

if TYPE_CHECKING:
    from .measure import Measurement
    from .optimizations import Runner
    from .roles.base import Measurer

ACTIVATION_KEY: pytest.StashKey[Activation] = pytest.StashKey()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("densebench", "densebench: DenseNet-121 inference benchmarks")
    for opt in OPTIONS:
        # booleans work as bare flags too: --densebench-profile == --densebench-profile=true
        extra = {"nargs": "?", "const": "true"} if opt.boolean else {}
        text = f"{opt.help}. Default: {opt.default}; env {opt.env}; ini {opt.ini}."
        # argparse %-formats option help: a literal "%" (e.g. "+-3%") must be doubled
        group.addoption(opt.flag, dest=f"densebench_{opt.key}", default=None, metavar=opt.metavar,
                        help=text.replace("%", "%%"), **extra)
        parser.addini(opt.ini, help=opt.help, default=None)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto`` means one worker per GPU when benchmarking on CUDA (densebench options given)."""
    if not explicitly_used(config):
        return None
    # Before Settings exist (xdist asks for its worker count early): the raw device option.
    device = raw_value(OPTIONS_BY_KEY["device"], lambda o: flag_value(config, o.key),
                       lambda o: ini_value(config, o.key)) or "auto"
    if parallel.wants_cuda(device.strip().lower()):
        return max(1, parallel.cuda_count())
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "densebench: a densebench inference benchmark")
    activation = config.stash[ACTIVATION_KEY] = Activation(config)
    config.pluginmanager.register(activation, "densebench-activation")
    if explicitly_used(config):
        activation.activate()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per optimization x batch size, optimization-major so each is built once.

    A test that uses densebench's fixtures is a densebench benchmark: collecting one activates
    densebench."""
    if not {"optimized", "densebench_scenario"} & set(metafunc.fixturenames):
        return
    role = metafunc.config.stash[ACTIVATION_KEY].activate_at_collection()
    if role is None:
        return  # bad settings: a usage error once collection ends
    settings = role.settings
    if "optimization" in metafunc.fixturenames:
        metafunc.parametrize("optimization", settings.optimizations, ids=list(settings.optimizations))
    if "batch_size" in metafunc.fixturenames:
        metafunc.parametrize("batch_size", settings.batch_sizes, ids=list(map("bs{}".format, settings.batch_sizes)))
    if "scenario" in metafunc.fixturenames:
        served = [s for s in settings.scenarios if s != "batch"]  # batch is test_inference itself
        metafunc.parametrize("scenario", served, ids=served)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drop the scenarios not asked for: ``test_scenario`` without LoadGen scenarios (pytest made one item
    for its empty parameter set), and the batch benchmarks when ``batch`` is not among the scenarios. Then
    order densebench's items optimization-major (batch sizes, then scenarios), so each optimization is built
    once; other tests keep their places."""
    role = config.stash[ACTIVATION_KEY].role
    if role is None:
        return
    batch = "batch" in role.settings.scenarios
    kept = [item for item in items if not _unwanted_scenario(item, batch)]
    order = {name: i for i, name in enumerate(role.settings.optimizations)}
    slots = [i for i, item in enumerate(kept) if _optimization(item) in order]
    ours = sorted((kept[i] for i in slots), key=lambda item: order[_optimization(item)])  # stable
    for slot, item in zip(slots, ours, strict=True):
        kept[slot] = item
    items[:] = kept


def _optimization(item: pytest.Item) -> Any:
    return getattr(getattr(item, "callspec", None), "params", {}).get("optimization")


def _unwanted_scenario(item: pytest.Item, batch: bool) -> bool:
    names = getattr(item, "fixturenames", ())
    params = getattr(getattr(item, "callspec", None), "params", {})
    if "densebench_scenario" in names:  # an empty parameter set leaves a placeholder, not a scenario name
        return params.get("scenario") not in SCENARIOS
    return "optimized" in names and "batch_size" in params and not batch


@pytest.fixture(scope="session")
def densebench_session(request: pytest.FixtureRequest) -> Measurer:
    """This process's measuring role: settings, and for a plain run the device, model, data,
    baseline (``.resources``) and runners. Unusable weights or data end the whole run at once
    (exit status 4, like a usage error): every benchmark would fail the same way."""
    return request.config.stash[ACTIVATION_KEY].measurer().session_fixture()


@pytest.fixture
def optimized(densebench_session: Measurer, optimization: str, batch_size: int) -> Runner | None:
    """The built Runner for this test's optimization (None under isolation: a child builds it);
    skipped with the reason when it cannot run here."""
    return densebench_session.optimized(optimization, batch_size)


@pytest.fixture
def densebench_measure(request: pytest.FixtureRequest, densebench_session: Measurer, optimized: Runner | None,
                       optimization: str, batch_size: int) -> Any:
    """``measure(benchmark) -> Measurement``: measure ``optimized`` at ``batch_size`` with a benchmark
    fixture; out of memory becomes a skip. With --densebench-isolate the optimization runs in a
    child process and this returns what the child measured (or records how it died)."""

    def measure(benchmark: Any) -> Measurement:
        return densebench_session.measure(request, benchmark, optimized, optimization, batch_size)

    return measure


@pytest.fixture
def densebench_scenario(request: pytest.FixtureRequest, densebench_session: Measurer, optimization: str,
                        scenario: str) -> Any:
    """``measure(benchmark) -> Measurement``: serve ``optimization`` in ``scenario`` (offline, server,
    singlestream) under MLPerf LoadGen behind the dynamic batcher (densebench/scenarios); skipped with the
    reason when the optimization or LoadGen is not available here."""

    def measure(benchmark: Any) -> Measurement:
        return densebench_session.measure_scenario(request, benchmark, optimization, scenario)

    return measure
