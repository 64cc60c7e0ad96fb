"""The field report's published DFlash and MTP figures, replayed as samples through the shipped budgets.

Why: the `dflash` and `mtp` configs carry budgets taken from the report (decode at 100 and 2000 output
tokens, decode collapse, long-context prefill against `autoregressive`, crossover). This checks that those
budgets, judged the way the suites judge them (per-sample paired ratios, the interval of the median),
give the verdicts the report's numbers imply, and it states where they do not:

- DFlash fails on decode collapse (30.1 / 46.9 = 0.64 < 0.8), as the report's lesson says it should.
- DFlash's prefill tax is +17.8% (44153 / 37498 ms), which is *inside* "no more than 20% slower": the
  prefill budget does not fail the report's DFlash. Only the collapse does.
- MTP passes decode, collapse and crossover, but its prefill is ~49000 / 37498 = +31%, so the shipped
  `mtp` budget `prefill_slowdown <= 1.2` (from issue 8) fails the config the report shipped. The two
  cannot both hold with these numbers; the test pins what the shipped budgets do rather than bending
  the numbers.

The report publishes one figure per cell (from N=10 runs); each is replayed as 10 samples with a 1% seeded
spread, so every verdict is decisive at the budgets' 95% confidence, not a coin toss.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_specgate.config import load
from pytest_specgate.measure.measurement import Measurement
from pytest_specgate.measure.stats import crossovers, paired_ratios
from pytest_specgate.verdict.budget import Verdict, check_point
from tests.factories import rates

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = (100, 500, 1000, 2000)
#: decode tok/s at each output length (the report's table "output_len | Autoregressive | DFlash | MTP")
DECODE = {
    "autoregressive": (28.9, 29.1, 29.1, 29.0),
    "dflash": (46.9, 37.0, 30.2, 30.1),
    "mtp": (44.6, 39.1, 44.4, 48.9),
}
#: long-context (43K) prefill in ms
PREFILL = {"autoregressive": 37498.0, "dflash": 44153.0, "mtp": 49000.0}
N = 10


def _series(center: float, seed: int) -> list[float]:
    return rates(center, n=N, spread=0.01, seed=seed)


def _verdicts(name: str) -> dict[str, Verdict]:
    """Every budget of the shipped config ``name`` judged on the replayed samples: {budget text: verdict}."""
    cfg = load(ROOT / "specgate.toml").get(name)
    decode = {n: _series(v, seed=i) for i, (n, v) in enumerate(zip(OUTPUT, DECODE[name], strict=True))}
    ref_decode = {n: _series(v, seed=10 + i) for i, (n, v) in enumerate(zip(OUTPUT, DECODE["autoregressive"],
                                                                             strict=True))}
    prefill, ref_prefill = _series(PREFILL[name], seed=20), _series(PREFILL["autoregressive"], seed=21)

    figures: list[Measurement] = []
    for n in OUTPUT:
        figures.append(Measurement(config=name, workload="sweep", point=n, extra={"decode_tps": decode[n]}))
    whole_sweep = {
        "decode_collapse": paired_ratios(decode[OUTPUT[-1]], decode[OUTPUT[0]]),
        # per-sample crossovers exactly as suites/test_speculation.py computes them (TTFT ~ prefill, seconds)
        "crossover_tokens": [v for v in crossovers([p / 1000 for p in prefill], decode[OUTPUT[-1]],
                                                   [p / 1000 for p in ref_prefill], ref_decode[OUTPUT[-1]])
                             if v is not None],
    }
    figures.append(Measurement(config=name, workload="sweep", point=None, extra=whole_sweep))
    figures.append(Measurement(config=name, workload="long-context", point=None,
                               extra={"prefill_slowdown": paired_ratios(prefill, ref_prefill)}))

    out: dict[str, Verdict] = {}
    for m in figures:
        budgets = [b for b in cfg.budgets_for(m.workload, m.point) if m.values(b.metric)]
        for r in check_point(m, budgets):
            out[r.budget.describe()] = r.verdict
    return out


def test_dflash_fails_on_collapse_and_its_prefill_tax_fits_the_20_percent_budget() -> None:
    v = _verdicts("dflash")
    assert v["decode_collapse >= 0.8 at sweep"] is Verdict.FAIL            # 0.64
    assert v["decode_tps >= 44 at sweep@100"] is Verdict.PASS              # 46.9
    assert v["decode_tps >= 27 at sweep@2000"] is Verdict.PASS             # 30.1, inherited from autoregressive
    # +17.8% is inside +20%: this budget does not fail the report's DFlash (see the module docstring)
    assert v["prefill_slowdown <= 1.2 at long-context"] is Verdict.PASS
    assert Verdict.FAIL in v.values()


def test_mtp_passes_decode_collapse_and_crossover_but_the_shipped_prefill_budget_fails_it() -> None:
    v = _verdicts("mtp")
    assert v["decode_tps >= 44 at sweep@2000"] is Verdict.PASS             # 48.9
    assert v["decode_collapse >= 0.8 at sweep"] is Verdict.PASS            # 48.9 / 44.6 = 1.10
    assert v["crossover_tokens <= 1000 at sweep"] is Verdict.PASS          # ~820 tokens
    # 49000 / 37498 = 1.31: the report shipped MTP with a +31% prefill; issue 8's budget says at most +20%
    assert v["prefill_slowdown <= 1.2 at long-context"] is Verdict.FAIL
    failed = sorted(k for k, verdict in v.items() if verdict is Verdict.FAIL)
    assert failed == ["prefill_slowdown <= 1.2 at long-context"], failed


@pytest.mark.parametrize("name", ["dflash", "mtp"])
def test_every_budget_the_replay_can_reach_is_judged(name: str) -> None:
    """No budget of these configs is silently left out of the replay except VRAM and tool calls (not in the
    report's tables) and, for dflash, none at all."""
    cfg = load(ROOT / "specgate.toml").get(name)
    judged = set(_verdicts(name))
    left = sorted(b.describe() for b in cfg.budgets if b.describe() not in judged)
    expected = {"dflash": [], "mtp": ["exact_match >= 1 at tool-call", "vram_peak_mib <= 21504 at memory"]}
    assert left == expected[name]
