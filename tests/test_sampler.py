"""The sampling loop judges only at planned looks, keeps its error rate, and never reuses a partial measurement.

The server here is a stand-in, said so plainly: these tests decide what each sample's decode rate is
(seeded noise, a request that breaks on demand), which a real llama-server cannot produce on demand.
The real path (a real server answering the real sampler) is covered by tests/test_demo.py.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from factories import sample

from conftest import REPO
from pytest_specgate.config import Budget, ServingConfig, Workloads, load
from pytest_specgate.errors import SpecgateError
from pytest_specgate.measure.measurement import Measurement
from pytest_specgate.measure.sampler import Sampler, planned_looks
from pytest_specgate.options import Options
from pytest_specgate.session import Session
from pytest_specgate.verdict.budget import check_point, decisive
from pytest_specgate.verdict.sequential import CODES, FAIL, Plan, decide_many


class StandIn:
    """Answers chat requests with a decode rate from ``rates`` (a stand-in: the test picks the noise)."""

    def __init__(self, rates: list[float], fail_at: int | None = None) -> None:
        self.rates, self.fail_at, self.calls = list(rates), fail_at, 0
        self.client = self
        self.server = SimpleNamespace(check_alive=lambda: None, new_log_text=lambda: "")

    def chat(self, body: dict[str, Any], *, workload: str, point: int | None = None, nonce: str = "") -> Any:
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise ConnectionError("stand-in: the request broke mid-measurement")
        return sample(point, self.rates.pop(0), workload=workload)


def config(**workloads: Any) -> ServingConfig:
    return ServingConfig(name="c", binary="b", model="m", workloads=Workloads(**workloads))


def sampler(cfg: ServingConfig, server: StandIn, *, quick: bool = False, samples: int | None = None) -> Sampler:
    return Sampler(lambda name: cfg, lambda name: server, samples=samples, quick=quick)  # type: ignore[arg-type,return-value]


FLOOR = Budget(metric="decode_tps", point=256, min=27)


def test_planned_looks_follow_the_config():
    cfg = config(samples=5, max_samples=10, quick_samples=3)
    assert planned_looks(cfg, quick=False) == [5, 10]
    assert planned_looks(cfg, quick=True) == [3]
    assert planned_looks(cfg, quick=False, override=8) == [8]
    assert planned_looks(config(samples=5, max_samples=5), quick=False) == [5]


def test_the_shipped_configs_use_the_recommended_sample_counts():
    """samples 5, max_samples 10 (two looks, error split between them), quick 3 at the same confidence."""
    assert planned_looks(ServingConfig(name="c", binary="b", model="m"), quick=False) == [5, 10]
    shipped = load(REPO / "specgate.toml")
    for name in ("demo", "autoregressive", "mtp"):
        assert planned_looks(shipped.get(name), quick=False) == [5, 10], name
        assert shipped.get(name).workloads.confidence == 0.95


def test_judges_only_at_the_planned_looks_and_stops_at_the_first_decisive_one():
    cfg = config(samples=5, max_samples=10, warmup=1)
    looked: list[int] = []

    def decided(m: Measurement, budgets: list[Budget]) -> bool:
        looked.append(len(m.samples))
        return False  # never decided: the loop must still stop at max_samples

    server = StandIn([30.0] * 11)
    m = sampler(cfg, server).measure(Measurement(config="c", workload="sweep", point=256), [FLOOR], decided)
    assert looked == [5, 10] and len(m.samples) == 10 and len(m.warmup_samples) == 1
    assert m.looks == [5, 10] and not m.partial

    looked.clear()
    server = StandIn([30.0] * 11)
    m = sampler(cfg, server).measure(Measurement(config="c", workload="sweep", point=256), [FLOOR],
                                     lambda m, b: looked.append(len(m.samples)) or True)
    assert looked == [5] and len(m.samples) == 5 and server.calls == 6


def test_a_measurement_that_breaks_stays_partial_and_is_remeasured(tmp_path: Path):
    cfg = config(samples=5, max_samples=10, warmup=0)
    gate = Session(Options(config="c", file=None, strict=False, samples=None, results_dir="out", rootdir=tmp_path,
                           quick=False))
    gate._file = SimpleNamespace(get=lambda name: cfg)  # type: ignore[assignment]
    broken = StandIn([30.0] * 10, fail_at=3)
    gate.sampler = lambda log_dir: sampler(cfg, broken)  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        gate.measure("c", "sweep", 256, log_dir=tmp_path, budgets=[FLOOR])
    m = gate.point("c", "sweep", 256)
    assert m.partial and len(m.samples) == 2  # what it got before the break, marked partial
    with pytest.raises(SpecgateError, match="did not complete"):
        gate.check(m, [FLOOR])  # never judged
    assert m not in gate.completed()

    fresh = StandIn([30.0] * 10)
    gate.sampler = lambda log_dir: sampler(cfg, fresh)  # type: ignore[method-assign]
    m2 = gate.measure("c", "sweep", 256, log_dir=tmp_path, budgets=[FLOOR])
    assert m2 is m and not m.partial and len(m.samples) == 5 and fresh.calls == 5  # re-measured from scratch
    assert gate.measure("c", "sweep", 256, log_dir=tmp_path, budgets=[FLOOR]) is m and fresh.calls == 5  # reused


def shipped() -> tuple[ServingConfig, Budget]:
    """The shipped autoregressive config (samples 5, max_samples 10, confidence 0.95) and its decode floor."""
    cfg = load(REPO / "specgate.toml").get("autoregressive")
    return cfg, next(b for b in cfg.budgets if b.metric == "decode_tps")


def test_the_sampler_loop_gives_the_verdicts_the_simulations_measure():
    """Row by row, the real loop (Sampler.measure with the session's callback, then the final check) gives
    exactly ``decide_many``'s verdict on the same values: the error rates below are the loop's."""
    cfg, budget = shipped()
    cfg = config(**{**cfg.workloads.model_dump(), "warmup": 0})
    plan = Plan.from_confidence(5, 10, 0.95)
    rng = np.random.default_rng(7)
    for center in (budget.limit, budget.limit * 0.95, budget.limit * 1.05):
        rows = center * (1 + 0.05 * rng.standard_normal((60, 10)))
        codes, used = decide_many(rows, budget.limit, "min", plan)
        for row, code, n in zip(rows, codes, used):
            m = sampler(cfg, StandIn(list(row))).measure(
                Measurement(config="c", workload="sweep", point=budget.point), [budget],
                lambda m, b: decisive(check_point(m, b)))
            result = check_point(m, [budget])[0]
            assert (result.verdict.value, len(m.samples)) == (CODES[code].value, n)


@pytest.mark.parametrize(("shift", "bound", "what"), [
    (1.0, 0.025, "at the limit: a false FAIL at most 2.5% of the time"),
    (0.9, 0.95, "10% below the limit: a FAIL at least 95% of the time"),
])
def test_seeded_simulation_of_the_shipped_sampler(shift: float, bound: float, what: str):
    """Normal noise at CV 5%, 100k seeded runs of the shipped plan against the shipped decode floor."""
    cfg, budget = shipped()
    wl = cfg.workloads
    plan = Plan.from_confidence(wl.samples, wl.max_samples, wl.confidence)
    rng = np.random.default_rng(20261129)
    rows = budget.limit * shift * (1 + 0.05 * rng.standard_normal((100_000, plan.n_max)))
    codes, used = decide_many(rows, budget.limit, "min", plan)
    fails = float(np.mean(codes == FAIL))
    print(f"{what}: P(FAIL) = {fails:.2%}, mean N = {used.mean():.1f}")
    assert (fails <= bound) if bound < 0.5 else (fails >= bound), f"{what}: got {fails:.2%}"
