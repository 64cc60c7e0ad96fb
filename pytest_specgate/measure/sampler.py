"""The sampling loop: warm-ups, then samples up to planned looks while a budget is undecided, and A/B blocks.

Why a class of its own: the session owns the measurements and the servers; this takes samples
into a measurement it is handed. Whether a budget is decided is a callback (the verdict layer sits
above this one), so sampling never imports judging.

Why planned looks: judging after every extra sample gives noise one more chance to cross the limit
each time (simulated: a 2.7% false-alarm rate became 4.3%). The sampler asks the callback only at the
looks of ``verdict.sequential.Plan`` (``samples``, then ``max_samples``), whose verdicts split the error
budget between the looks, so the false-FAIL rate holds at (1 - confidence) / 2 over the whole loop.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from pytest_specgate.config import Budget, ServingConfig
from pytest_specgate.errors import SampleError
from pytest_specgate.measure import workloads
from pytest_specgate.measure.measurement import Measurement
from pytest_specgate.measure.sample import Sample
from pytest_specgate.server.pool import Running

__all__ = ["CANDIDATE", "Decided", "Sampler", "mean_accepted_run", "planned_looks", "sample_counts"]

#: the candidate's side in an A/B block schedule (``verdict.paired.abba_schedule`` builds schedules)
CANDIDATE = "A"

#: whether ``budgets`` are decided on the measurement's samples so far (asked at planned looks only)
Decided = Callable[[Measurement, list[Budget]], bool]

# llama-server's speculative-decoding statistics line (``print_timings``, tools/server/server-context.cpp):
# "draft acceptance = 0.52505 (  262 accepted /   499 generated), mean len =  1.86" (%5.2f pads the mean)
_MEAN_LEN = re.compile(r"draft acceptance = [\d.]+ \(\s*\d+ accepted /\s*\d+ generated\), mean len =\s*([\d.]+)")


def mean_accepted_run(log_text: str) -> float | None:
    """The last 'mean len' the server logged: 1 + accepted tokens per verification step."""
    found = _MEAN_LEN.findall(log_text)
    return float(found[-1]) if found else None


def sample_counts(cfg: ServingConfig, quick: bool, override: int | None = None) -> tuple[int, int]:
    """(samples to take, most samples to take while a budget is undecided); ``override`` is --specgate-samples."""
    wl = cfg.workloads
    n = override or (wl.quick_samples if quick else wl.samples)
    return n, (n if quick or override else max(n, wl.max_samples))


def planned_looks(cfg: ServingConfig, quick: bool, override: int | None = None) -> list[int]:
    """The sample counts budgets are judged at: ``samples`` then ``max_samples``; one look in quick mode or
    with --specgate-samples (``verdict.sequential.Plan.from_confidence`` builds the same plan)."""
    n_min, n_max = sample_counts(cfg, quick, override)
    return sorted({n_min, n_max})


class Sampler:
    """Takes samples of configs' workload points on the servers that ``server`` hands out."""

    def __init__(self, config: Callable[[str], ServingConfig], server: Callable[[str], Running], *,
                 samples: int | None, quick: bool, stop: Callable[[], None] = lambda: None) -> None:
        self.config = config
        self.server = server
        #: stops the live server, so the next ``server`` call loads the model afresh
        self.stop = stop
        self.samples = samples
        self.quick = quick

    def counts(self, cfg: ServingConfig, quick: bool) -> tuple[int, int]:
        return sample_counts(cfg, quick, self.samples)

    @staticmethod
    def body(running: Running, cfg: ServingConfig, workload: str, point: int | None, tag: str,
             cache: dict[str, Any]) -> dict[str, Any]:
        wl, extras = cfg.workloads, cfg.request_extras
        if workload == "sweep":
            return workloads.body("sweep", seed=wl.seed, tag=tag, exact_tokens=point, extras=extras)
        if workload == "latency":
            return workloads.body("latency", seed=wl.seed, tag=tag, exact_tokens=1, extras=extras)
        if workload in ("chat-short", "code-long"):
            return workloads.body(workload, seed=wl.seed, tag=tag, exact_tokens=point or wl.fixed_output, extras=extras)
        if workload == "tool-call":
            return workloads.body("tool-call", seed=wl.seed, tag=tag, extras=extras)
        if workload == "natural":  # sample i of each config gets task i, so A/B pairs compare the same task
            return workloads.natural_body(cache["index"], seed=wl.seed, tag=tag, max_tokens=point or max(wl.sweep),
                                          extras=extras)
        if workload == "long-context":
            if "turns" not in cache:
                cache["turns"] = workloads.long_context_turns(
                    running.client, point or wl.long_context_tokens, seed=wl.seed, output_tokens=wl.long_context_output,
                    extras=extras)
            return workloads.long_context_body(cache["turns"], seed=wl.seed, tag=tag,
                                               output_tokens=wl.long_context_output, extras=extras, cold=True)
        raise ValueError(f"unknown workload {workload!r}")

    def take(self, name: str, m: Measurement, count: int, cache: dict[str, Any], *, warmup: bool = True) -> None:
        """W warm-ups (discarded), then ``count`` samples. Never judges: a failure leaves ``m`` partial."""
        cfg = self.config(name)
        try:
            self._take(cfg, self.server(name), m, count, cache, cfg.workloads.warmup if warmup else 0)
        except BaseException:
            m.partial = True
            raise

    def _take(self, cfg: ServingConfig, running: Running, m: Measurement, count: int, cache: dict[str, Any],
              warmups: int) -> None:
        for i in range(warmups + count):
            tag = workloads.nonce()
            cache["index"] = len(m.samples) if i >= warmups else -1 - i  # warm-ups take tasks from the end
            body = self.body(running, cfg, m.workload, m.point, tag, cache)
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

    def measure(self, m: Measurement, budgets: list[Budget], decided: Decided) -> Measurement:
        """Measure one point: W discarded warm-ups, then samples up to each planned look; stop at the first
        look where every budget is decided. ``m`` stays ``partial`` unless every step completed."""
        cfg = self.config(m.config)
        m.samples.clear()
        m.warmup_samples.clear()
        m.looks = planned_looks(cfg, self.quick, self.samples)
        m.partial = True
        cache: dict[str, Any] = {}
        for i, look in enumerate(m.looks):
            self.take(m.config, m, look - len(m.samples), cache, warmup=i == 0)
            if not budgets or decided(m, budgets):
                break
        m.partial = False
        return m

    def measure_pair(self, a: Measurement, b: Measurement,
                     schedule: list[tuple[str, int]]) -> tuple[Measurement, Measurement]:
        """A/B of one point (see ``measure_blocks``)."""
        self.measure_blocks([(a, b)], schedule)
        return a, b

    def measure_blocks(self, pairs: list[tuple[Measurement, Measurement]], schedule: list[tuple[str, int]],
                       *, fresh: bool = False) -> list[tuple[Measurement, Measurement]]:
        """A/B in one run: (candidate, other) measurements of several points, in blocks that span them all.

        Only one server runs at a time (a GPU rarely fits two 20 GiB servers), so every change of side
        is a model load. Blocks follow ``schedule`` ("A" = the candidate, first): ABBA measures every
        point of the candidate, then every point of the other config twice over, then the candidate
        again, so a pair costs 3 loads (one per block when ``fresh``) whatever the number of points, and
        linear machine drift cancels (``verdict.paired``). The old order, reference first then candidate
        per point and per round, put every candidate sample after its partner and restarted servers for every
        point. Warm-ups are taken after each load only: the next block of the same side runs on a warm server.

        ``fresh``: every block on its own load (the upgrade verdict), so each block is one draw of the
        load-to-load spread, which the verdict then measures instead of mistaking it for a change.
        """
        caches: dict[str, dict[tuple[str, int | None], dict[str, Any]]] = {}
        previous = ""
        for side, count in schedule:
            switched = side != previous or fresh
            if fresh and side == previous:
                self.stop()
            previous = side
            for a, b in pairs:
                m = a if side == CANDIDATE else b
                cache = caches.setdefault(m.config, {}).setdefault((m.workload, m.point), {})
                self.take(m.config, m, count, cache, warmup=switched)
        return pairs

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
                f"config {cfg.name!r}, {s.workload}{'' if s.point is None else f'@{s.point}'}: sample {i} came back "
                f"with {s.timings.predicted_n} of {s.requested_tokens} requested tokens "
                f"(finish_reason={s.finish_reason!r}). A short sample is not a measurement. Fix: give the server "
                f"room for prompt + output (raise -c), or lower the sweep lengths for this config."
            )
