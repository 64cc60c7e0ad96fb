"""The session object: one per pytest run, kept in ``config.stash``; the hooks only delegate here.

It reads the options once, loads the config file lazily (only when a test asks for a server, so the
plugin costs nothing to unrelated test suites), runs preflight, owns the server pool, measures
workload points with adaptive sampling, memoises measurements so derived checks (speedup, collapse,
crossover) reuse them, and collects every verdict for the reports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_specgate import preflight, workloads
from pytest_specgate.config import Budget, ServingConfig, SpecgateFile, find_config_file, load
from pytest_specgate.errors import SampleError, SpecgateConfigError
from pytest_specgate.measure import BudgetResult, Measurement, Verdict, decisive
from pytest_specgate.pool import Running, ServerPool
from pytest_specgate.sample import Sample
from pytest_specgate.server import LlamaServer


@dataclass
class Options:
    config: str | None
    file: str | None
    strict: bool
    samples: int | None
    results_dir: str
    rootdir: Path
    quick: bool

    @classmethod
    def from_pytest(cls, config: pytest.Config) -> Options:
        def get(name: str) -> Any:
            value = config.getoption(f"specgate_{name}")
            return value if value not in (None, "") else config.getini(f"specgate_{name}") or None

        samples = get("samples")
        return cls(config=get("config"), file=get("file"), strict=bool(config.getoption("specgate_strict")),
                   samples=int(samples) if samples else None,
                   results_dir=get("results") or ".specgate", rootdir=Path(config.rootpath),
                   quick="quick" in (config.getoption("markexpr", "") or ""))


@dataclass
class Gate:
    options: Options
    _file: SpecgateFile | None = None
    _resolved: dict[str, preflight.Resolved] = field(default_factory=dict)
    pool: ServerPool | None = None
    log_dir: Path | None = None
    measurements: dict[tuple[str, str, int | None, bool], Measurement] = field(default_factory=dict)
    results: list[BudgetResult] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    @property
    def quick(self) -> bool:
        """``-m quick`` runs: fewer samples per point (the config's ``quick_samples``)."""
        return self.options.quick

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

    def config(self, name: str) -> ServingConfig:
        return self.file.get(name)

    def reference(self) -> ServingConfig | None:
        ref = self.selected.reference
        return self.file.get(ref) if ref else None

    def resolve(self, name: str) -> preflight.Resolved:
        if name not in self._resolved:
            self._resolved[name] = preflight.run(self.config(name))
        return self._resolved[name]

    def preflight_selected(self) -> None:
        """Fail fast (before any model load) for the selected config and its reference."""
        self.resolve(self.selected.name)
        if self.selected.reference:
            self.resolve(self.selected.reference)

    # ---- servers ----

    def _factory(self, name: str) -> LlamaServer:
        r = self.resolve(name)
        assert self.log_dir is not None
        return LlamaServer(name, r.binary, r.model, r.args, r.config.env, self.log_dir,
                           startup_timeout=r.config.startup_timeout)

    def server(self, name: str, log_dir: Path) -> Running:
        if self.pool is None:
            self.log_dir = log_dir
            self.pool = ServerPool(self._factory, request_timeout=self.selected.workloads.request_timeout)
        running = self.pool.get(name)
        return running

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.stop()

    # ---- measuring ----

    def _body(self, running: Running, cfg: ServingConfig, workload: str, point: int | None, tag: str,
              cache: dict[str, Any]) -> dict[str, Any]:
        wl = cfg.workloads
        if workload == "sweep":
            return workloads.body("sweep", seed=wl.seed, tag=tag, exact_tokens=point)
        if workload == "latency":
            return workloads.body("latency", seed=wl.seed, tag=tag, exact_tokens=1)
        if workload in ("chat-short", "code-long"):
            return workloads.body(workload, seed=wl.seed, tag=tag, exact_tokens=point or wl.fixed_output)
        if workload == "tool-call":
            return workloads.body("tool-call", seed=wl.seed, tag=tag)
        if workload == "long-context":
            if "turns" not in cache:
                cache["turns"] = workloads.long_context_turns(
                    running.client, point or wl.long_context_tokens, seed=wl.seed, output_tokens=wl.long_context_output)
            return workloads.long_context_body(cache["turns"], seed=wl.seed, tag=tag, output_tokens=wl.long_context_output)
        raise ValueError(f"unknown workload {workload!r}")

    def sample_counts(self, cfg: ServingConfig, quick: bool) -> tuple[int, int]:
        wl = cfg.workloads
        n = self.options.samples or (wl.quick_samples if quick else wl.samples)
        return n, (n if quick or self.options.samples else max(n, wl.max_samples))

    def measure(self, name: str, workload: str, point: int | None = None, *, quick: bool = False,
                log_dir: Path, budgets: list[Budget] | None = None) -> Measurement:
        """Measure one point: W discarded warm-ups, then N samples, more while a budget is undecided."""
        key = (name, workload, point, quick)
        if key in self.measurements:
            return self.measurements[key]
        cfg = self.config(name)
        running = self.server(name, log_dir)
        n_min, n_max = self.sample_counts(cfg, quick)
        budgets = cfg.budgets_for(workload, point) if budgets is None else budgets
        m = Measurement(config=name, workload=workload, point=point, warmups=cfg.workloads.warmup,
                        confidence=cfg.workloads.confidence)
        cache: dict[str, Any] = {}
        for i in range(cfg.workloads.warmup + n_max):
            tag = workloads.nonce()
            body = self._body(running, cfg, workload, point, tag, cache)
            try:
                sample = running.client.chat(body, workload=workload, point=point, nonce=tag)
            except Exception:
                running.server.check_alive()  # a crash explains itself better than a connection error
                raise
            if i < cfg.workloads.warmup:
                continue
            self._require_exact(cfg, sample, len(m.samples) + 1)
            m.samples.append(sample)
            if len(m.samples) >= n_min and (not budgets or decisive(m.check(budgets))):
                break
        self.measurements[key] = m
        return m

    @staticmethod
    def _require_exact(cfg: ServingConfig, s: Sample, i: int) -> None:
        if not s.exact:
            raise SampleError(
                f"config {cfg.name!r}, {s.workload}{'' if s.point is None else f'@{s.point}'}: sample {i} came back with "
                f"{s.timings.predicted_n} of {s.requested_tokens} requested tokens (finish_reason={s.finish_reason!r}). "
                f"A short sample is not a measurement. Fix: give the server room for prompt + output (raise -c), "
                f"or lower the sweep lengths for this config."
            )

    # ---- verdicts ----

    def judge(self, results: list[BudgetResult]) -> None:
        """Record verdicts; raise AssertionError for failures (and inconclusive under --specgate-strict)."""
        self.results.extend(results)
        bad = [r for r in results if r.verdict is Verdict.FAIL
               or (r.verdict is Verdict.INCONCLUSIVE and self.options.strict)]
        if bad:
            raise AssertionError("specgate budget broken:\n" + "\n".join(r.message for r in bad))
        for r in results:
            if r.verdict is Verdict.INCONCLUSIVE:
                import warnings

                warnings.warn(pytest.PytestWarning(f"specgate: {r.message}"), stacklevel=3)

    def derive(self, name: str, workload: str, point: int | None, metric: str, values: list[float]) -> Measurement:
        """Record a figure computed from other measurements (speedup, collapse, crossover, memory)."""
        key = (name, workload, point, False)
        cfg = self.config(name)
        m = self.measurements.setdefault(
            key, Measurement(config=name, workload=workload, point=point, confidence=cfg.workloads.confidence))
        m.extra[metric] = [float(v) for v in values]
        return m

    def check(self, m: Measurement, budgets: list[Budget] | None = None) -> list[BudgetResult]:
        cfg = self.config(m.config)
        results = m.check(cfg.budgets_for(m.workload, m.point) if budgets is None else budgets)
        self.judge(results)
        return results
