"""The configs a run serves and the servers it runs: the base of the ``Session``.

Why apart from the session: resolving configs and running servers is a concept of its own (the
config file, loaded lazily so the plugin costs nothing to unrelated suites; preflight per config;
the server pool and the tenants on its GPUs; SIGTERM teardown), while the session adds what it
measures and judges on top. ``Session`` subclasses :class:`Serving`, so callers see one object.
"""

from __future__ import annotations

import os
import signal
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_specgate import preflight
from pytest_specgate.config import ServingConfig, SpecgateFile, find_config_file, load
from pytest_specgate.errors import SpecgateConfigError, SpecgateError
from pytest_specgate.options import Options
from pytest_specgate.server.gpu import worker_gpu_candidates
from pytest_specgate.server.pool import Running, ServerPool
from pytest_specgate.server.process import LlamaServer, kill_all, refuse_new_servers

__all__ = ["Serving"]


@dataclass
class Serving:
    options: Options
    _file: SpecgateFile | None = None
    #: preflight results per config name
    resolved: dict[str, preflight.Resolved] = field(default_factory=dict)
    pool: ServerPool | None = None
    log_dir: Path | None = None
    #: one-line verdicts that are not budgets (e.g. tool-call snapshots), printed with the table
    notes: list[str] = field(default_factory=list)
    #: set when Ctrl-C or SIGTERM ended the run: it is stored as interrupted, never as a baseline
    interrupted: bool = False
    #: set while the results are stored: a SIGTERM then only marks the run interrupted (the plugin's handler)
    finishing: bool = False
    #: where the pool says it waits for a device lock (the plugin points it at the terminal)
    announce: Any = None

    # ---- configs ----

    @property
    def file(self) -> SpecgateFile:
        if self._file is None:
            if self.options.file:
                path = Path(self.options.file)
                if not path.is_absolute():
                    path = self.options.rootdir / path
            else:
                found = find_config_file(self.options.rootdir)
                if found is None:
                    raise SpecgateConfigError(
                        f"no specgate.toml in {self.options.rootdir} or its parents, and no [tool.specgate] in a "
                        f"pyproject.toml. Fix: create specgate.toml (see the README), or pass --specgate-file PATH."
                    )
                path = found
            self._file = load(path)
        return self._file

    @property
    def selected(self) -> ServingConfig:
        return self.file.get(self.options.config or self.file.default)

    def selected_name(self) -> str:
        """The selected config's name, even when the config file cannot be read (for the stored run)."""
        try:
            return self.options.config or self.file.default
        except SpecgateError:
            return self.options.config or "unknown"

    def config(self, name: str) -> ServingConfig:
        return self.file.get(name)

    def resolve(self, name: str) -> preflight.Resolved:
        if name not in self.resolved:
            self.resolved[name] = preflight.run(self.config(name))
        return self.resolved[name]

    def preflight_selected(self) -> None:
        """Fail fast (before any model load) for the selected config, its reference and the deployed config."""
        self.resolve(self.selected.name)
        if self.selected.reference:
            self.resolve(self.selected.reference)
        against = self.against_name()
        if against:
            self.resolve(against)

    def against_name(self) -> str | None:
        """The deployed config the upgrade verdict holds the selected one against (``--specgate-against``
        first, then the config's ``against`` key); None when there is none."""
        name = self.options.against or getattr(self.selected, "against", None)
        if name:
            self.config(name)  # an unknown name fails here, listing the known ones
            if name == self.selected.name:
                raise SpecgateConfigError(
                    f"--specgate-against {name!r} is the selected config itself: there is nothing to hold it "
                    f"against. Fix: name the deployed config (old binary/GGUF/flags), or give the candidate its "
                    f"own config that extends it (`extends = {name!r}`, `against = {name!r}`).")
        return name or None

    # ---- servers ----

    def _factory(self, name: str) -> LlamaServer:
        r = self.resolve(name)
        assert self.log_dir is not None
        return LlamaServer(name, r.binary, r.model, r.args, r.config.device_env, self.log_dir,
                           startup_timeout=r.config.startup_timeout)

    def server(self, name: str, log_dir: Path) -> Running:
        if self.pool is None:
            self.log_dir = log_dir
            self.pool = ServerPool(self._factory, request_timeout=self.selected.workloads.request_timeout,
                                   lock_timeout=self.options.lock_timeout, **({"announce": self.announce}
                                                                              if self.announce else {}))
        if self.pool.gpu_candidates is None:  # an xdist worker on a multi-GPU machine takes a GPU of its own
            self.pool.gpu_candidates = worker_gpu_candidates(os.environ.get("PYTEST_XDIST_WORKER"))
        running = self.pool.get(name)
        self._check_tenants(name, running)
        return running

    def _check_tenants(self, name: str, running: Running) -> None:
        """Other processes on the measured GPUs make its figures untrustworthy: a warning, or a failure
        under --specgate-strict (said once per config)."""
        why = running.memory.foreign_tenants()
        if not why or f"{name}: {why}" in self.notes:
            return
        self.notes.append(f"{name}: {why}")
        if self.options.strict:
            pytest.fail(f"specgate: config {name}: {why} (--specgate-strict)", pytrace=False)
        warnings.warn(pytest.PytestWarning(f"specgate: config {name}: {why}"), stacklevel=3)

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.stop()
            self.notes += [n for c, d in self.pool.memory_notes.items() if (n := f"{c}: {d}") not in self.notes]

    def terminate(self, signum: int) -> None:
        """SIGTERM/SIGHUP (a CI cancel, ``timeout``) end the run like Ctrl-C: servers are killed at once,
        none starts again, the run is marked interrupted, and pytest unwinds as for KeyboardInterrupt
        (no test records a failure, no later test runs). While results are stored it only marks the run."""
        name = signal.Signals(signum).name
        self.interrupted = True
        refuse_new_servers(f"pytest got {name}")
        kill_all()
        try:
            self.shutdown()
        except (SpecgateError, OSError):
            pass
        if not self.finishing:
            raise KeyboardInterrupt(f"specgate: {name} received; the run stops here")
