"""One plugin object per process role, chosen when densebench comes into use.

==================  =========================================================================
role                process
==================  =========================================================================
LocalRun            a plain run: builds and measures in this process (also an isolated child)
IsolatingParent     ``--densebench-isolate``: one child process per optimization
XdistController     ``pytest -n N``: runs no test, gathers the workers' results into one JSON
XdistWorker         an xdist worker: pins, keeps benchmarks on for densebench's tests, and
                    hands over to the controller; registered beside the worker's LocalRun or
                    IsolatingParent, which does the measuring
==================  =========================================================================

:class:`Activation` is the only object the plugin registers at start-up. It stays inert until
densebench is used: a densebench flag or ini key at configuration, or a densebench benchmark
found at collection (or a densebench fixture requested). Then it validates the settings, picks
the role(s) and registers them, the way pytest-xdist registers its DSession.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import pytest

from .. import parallel
from ..errors import SettingsError
from ..settings import OPTIONS, Settings

if TYPE_CHECKING:
    from .base import Measurer, Role
    from .worker import XdistWorker

# The role modules (and through them the measurement core, records, telemetry) are imported in
# Activation.activate(), not here: this module is loaded by every pytest run in an environment
# where densebench is installed, and a run that does not use densebench must not pay for them.


def flag_value(config: pytest.Config, key: str) -> str | None:
    return config.getoption(f"densebench_{key}", None)


def ini_value(config: pytest.Config, key: str) -> str | None:
    return config.getini(f"densebench_{key}") or None


def explicitly_used(config: pytest.Config) -> bool:
    """A densebench flag on the command line or a densebench ini key in the project's configuration.

    The environment is deliberately not consulted: a DENSEBENCH_* variable left in a shell must
    not turn densebench on in another project's run."""
    return any(flag_value(config, o.key) is not None or ini_value(config, o.key) is not None for o in OPTIONS)


def settings_from_config(config: pytest.Config) -> Settings:
    """Flag, else environment, else ini key, else default; bad values -> pytest.UsageError."""
    try:
        return Settings.from_sources(lambda o: flag_value(config, o.key), lambda o: ini_value(config, o.key))
    except SettingsError as exc:
        raise pytest.UsageError(str(exc)) from None


def is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def xdist_workers(config: pytest.Config) -> int | None:
    """N of ``-n N`` on the xdist controller (None without xdist, or with ``-n 0``)."""
    if is_xdist_worker(config) or getattr(config.option, "dist", "no") == "no":
        return None
    n = getattr(config.option, "numprocesses", None)
    return int(n) if n else None


class Activation:
    """Registered at start-up; does nothing until :meth:`activate`."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.role: Role | None = None
        self.worker: XdistWorker | None = None
        self.error: pytest.UsageError | None = None
        self._session_started = False

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self._session_started = True

    def activate_at_collection(self) -> Role | None:
        """Activate for a densebench benchmark found at collection. A configuration error is kept
        and raised once collection is over (:meth:`pytest_collection_modifyitems`): raised here it
        would become a collection error with a traceback instead of a usage error."""
        if self.error is not None:
            return None
        try:
            return self.activate()
        except pytest.UsageError as exc:
            self.error = exc
            return None

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        if self.error is not None:
            raise self.error

    def activate(self) -> Role:
        """Validate the settings and register this process's role (once)."""
        if self.role is not None:
            return self.role
        from .controller import XdistController  # only now that densebench is in use, see above
        from .isolating import IsolatingParent
        from .local import LocalRun

        config = self.config
        settings = settings_from_config(config)
        workers = xdist_workers(config)
        if workers is not None:
            role: Role = XdistController(config, settings, workers)
        elif is_xdist_worker(config):
            role = self._worker_roles(settings)
        else:
            role = (IsolatingParent if settings.isolate else LocalRun)(config, settings)
        self.role = role
        config.pluginmanager.register(role, f"densebench-{role.name}")
        if self.worker is not None:
            config.pluginmanager.register(self.worker, "densebench-xdist-worker")
        if self._session_started:  # activated during collection: catch up on session start
            role.attach()
            if self.worker is not None:
                self.worker.attach()
        return role

    def _worker_roles(self, settings: Settings) -> Measurer:
        from .isolating import IsolatingParent
        from .local import LocalRun
        from .worker import XdistWorker

        name = self.config.workerinput["workerid"]
        index = int(name[2:]) if name[2:].isdigit() else 0
        count = int(self.config.workerinput.get("workercount", parallel.worker_count()))
        assignment = parallel.assign(settings.device, count, index)
        if assignment.pinned and assignment.device:
            settings = dataclasses.replace(settings, device=assignment.device)
        pinning = assignment.as_dict()
        measurer = (IsolatingParent if settings.isolate else LocalRun)(self.config, settings, name, pinning)
        self.worker = XdistWorker(self.config, assignment, measurer)
        return measurer

    def measurer(self) -> Measurer:
        """The role that runs densebench's tests here (activating densebench if needed)."""
        from .base import Measurer  # only now that densebench is in use, see above

        role = self.activate()
        if not isinstance(role, Measurer):
            raise pytest.UsageError("densebench: this process does not run tests (xdist controller)")
        return role

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """A worker finished with densebench results although the controller was never activated
        (no densebench option given; the worker found the benchmarks at collection)."""
        if self.role is None and getattr(node, "workeroutput", {}).get("densebench"):
            from .controller import XdistController  # only now that densebench is in use, see above

            role = self.activate()
            if isinstance(role, XdistController):
                role.pytest_testnodedown(node, None)


__all__ = ["Activation", "explicitly_used", "flag_value", "ini_value", "settings_from_config"]
