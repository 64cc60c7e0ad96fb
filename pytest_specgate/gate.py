"""The session object: one per pytest run, kept in ``config.stash``; the hooks only delegate here.

It reads the options once, loads the config file lazily (only when a test asks for a server, so the
plugin costs nothing to unrelated test suites), runs preflight, owns the server pool, measures
workload points with adaptive sampling, memoises measurements so derived checks (speedup, collapse,
crossover) reuse them, and collects every verdict for the reports.
"""

from __future__ import annotations

import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_specgate import preflight, workloads
from pytest_specgate.config import Budget, ServingConfig, SpecgateFile, find_config_file, load
from pytest_specgate.errors import SampleError, SpecgateConfigError
from pytest_specgate.measure import VARIANT_OF_METRIC, BudgetResult, Measurement, Verdict, decisive
from pytest_specgate.pool import Running, ServerPool
from pytest_specgate.sample import Sample
from pytest_specgate.server import LlamaServer


_MEAN_LEN = re.compile(r"draft acceptance = [\d.]+ \(\s*\d+ accepted /\s*\d+ generated\), mean len = ([\d.]+)")


def mean_accepted_run(log_text: str) -> float | None:
    """The last 'mean len' the server logged: 1 + accepted tokens per verification step."""
    found = _MEAN_LEN.findall(log_text)
    return float(found[-1]) if found else None


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
    measurements: dict[tuple[str, str, int | None, bool, str], Measurement] = field(default_factory=dict)
    results: list[BudgetResult] = field(default_factory=list)
    #: one-line verdicts that are not budgets (e.g. tool-call snapshots), printed with the table
    notes: list[str] = field(default_factory=list)
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
        return self.pool.get(name)

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

    def point(self, name: str, workload: str, point: int | None, variant: str = "") -> Measurement:
        """The session's Measurement for a point (created empty on first use).

        ``variant`` keeps A/B-paired samples apart from a point's standalone samples: they are
        taken in alternating blocks and only mean something as pairs.
        """
        key = (name, workload, point, self.quick, variant)
        if key not in self.measurements:
            cfg = self.config(name)
            self.measurements[key] = Measurement(config=name, workload=workload, point=point, variant=variant,
                                                 warmups=cfg.workloads.warmup, confidence=cfg.workloads.confidence)
        return self.measurements[key]

    def _take(self, name: str, m: Measurement, count: int, log_dir: Path, cache: dict[str, Any],
              budgets: list[Budget], n_min: int, warmup: bool = True) -> None:
        """W warm-ups (discarded), then up to ``count`` samples; stop early once budgets are decided."""
        cfg = self.config(name)
        running = self.server(name, log_dir)
        warmups = cfg.workloads.warmup if warmup else 0
        for i in range(warmups + count):
            tag = workloads.nonce()
            body = self._body(running, cfg, m.workload, m.point, tag, cache)
            try:
                sample = running.client.chat(body, workload=m.workload, point=m.point, nonce=tag)
            except Exception:
                running.server.check_alive()  # a crash explains itself better than a connection error
                raise
            sample.mean_accepted_run = self._mean_run(running, sample)
            if i < warmups:
                m.warmup_samples.append(sample)
                continue
            self._require_exact(cfg, sample, len(m.samples) + 1)
            m.samples.append(sample)
            if len(m.samples) >= n_min and budgets and decisive(m.check(budgets)):
                break

    def measure(self, name: str, workload: str, point: int | None = None, *, log_dir: Path,
                budgets: list[Budget] | None = None) -> Measurement:
        """Measure one point: W discarded warm-ups, then N samples, more while a budget is undecided."""
        m = self.point(name, workload, point)
        if m.samples:
            return m
        cfg = self.config(name)
        n_min, n_max = self.sample_counts(cfg, self.quick)
        if budgets is None:
            budgets = [b for b in cfg.budgets_for(workload, point) if b.metric not in VARIANT_OF_METRIC]
        cache: dict[str, Any] = {}
        self._take(name, m, n_min, log_dir, cache, [], n_min)
        if budgets and not decisive(m.check(budgets)) and n_max > n_min:
            self._take(name, m, n_max - n_min, log_dir, cache, budgets, n_min, warmup=False)
        return m

    def measure_pair(self, name: str, reference: str, workload: str, point: int | None, *,
                     log_dir: Path) -> tuple[Measurement, Measurement]:
        """A/B in one run: alternate blocks of samples between two configs so machine drift cancels.

        Only one server runs at a time (a GPU rarely fits two 20 GiB servers), so each block pays a
        server switch; ``ab_rounds`` blocks per config trade that cost against drift. Sample i of
        one config and sample i of the other were taken close in time, which is what paired ratios
        need.
        """
        a, b = self.point(name, workload, point, "ab"), self.point(reference, workload, point, "ab")
        if a.samples and b.samples:
            return a, b
        cfg = self.config(name)
        n, _ = self.sample_counts(cfg, self.quick)
        rounds = max(1, min(cfg.workloads.ab_rounds, n))
        sizes = [n // rounds + (1 if r < n % rounds else 0) for r in range(rounds)]
        caches: dict[str, dict[str, Any]] = {name: {}, reference: {}}
        for size in sizes:
            for target, m in ((reference, b), (name, a)):
                self._take(target, m, size, log_dir, caches[target], [], size)
        return a, b

    @staticmethod
    def _mean_run(running: Running, sample: Sample) -> float | None:
        """Read the request's 'mean len' log line; it can land a moment after the response."""
        text = running.server.new_log_text()
        for _ in range(10):
            if sample.timings.draft_n == 0 or _MEAN_LEN.search(text):
                break
            time.sleep(0.05)
            text += running.server.new_log_text()
        return mean_accepted_run(text) if sample.timings.draft_n else None

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
                warnings.warn(pytest.PytestWarning(f"specgate: {r.message}"), stacklevel=3)

    def probe_outputs(self, name: str, bodies: list[dict[str, Any]], *, log_dir: Path) -> list[Any]:
        """Temperature-0 outputs of ``bodies`` on config ``name``, served from the reference cache
        when this exact model, argv and body were run before (the cache lives in the results dir)."""
        from pytest_specgate import lossless, results

        r = self.resolve(name)
        store_path = results.results_dir(self) / lossless.STORE_NAME
        store_path.parent.mkdir(parents=True, exist_ok=True)
        model_sha = results.file_sha256(r.model)
        keys = [lossless.key(model_sha, [r.binary_sha256, *r.args], b) for b in bodies]
        with results.locked(store_path.parent):
            store = lossless.load_store(store_path)
        missing = [i for i, k in enumerate(keys) if k not in store.entries]
        if missing:
            running = self.server(name, log_dir)
            for i in missing:
                sample = running.client.chat(bodies[i], workload="lossless-probe", stream=False)
                store.entries[keys[i]] = lossless.Output.of(sample)
            with results.locked(store_path.parent):
                fresh = lossless.load_store(store_path)
                fresh.entries.update({k: store.entries[k] for k in keys})
                results.write_atomic(store_path, fresh.model_dump_json(indent=1))
        return [store.entries[k] for k in keys]

    def derive(self, name: str, workload: str, point: int | None, metric: str, values: list[float],
               variant: str = "") -> Measurement:
        """Record a figure computed from other measurements (speedup, collapse, crossover, memory)."""
        m = self.point(name, workload, point, variant)
        m.extra[metric] = [float(v) for v in values]
        return m

    def check(self, m: Measurement, budgets: list[Budget] | None = None) -> list[BudgetResult]:
        cfg = self.config(m.config)
        if budgets is None:  # the config's budgets for this point that this kind of measurement can judge
            budgets = [b for b in cfg.budgets_for(m.workload, m.point) if VARIANT_OF_METRIC.get(b.metric, "") == m.variant]
        results = m.check(budgets)
        self.judge(results)
        return results
