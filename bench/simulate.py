"""Error rates of the gate's verdicts, by seeded simulation through the verdict layer's own code.

Prints one table; the README quotes it. Run: `.venv/bin/python bench/simulate.py [--reps N] [--seed S]`
(about 30 s on 2 cores at the default 100,000 repetitions; the legacy bootstrap rows use fewer).

Noise: each sample is true * (1 + 0.05 Z) (normal, CV 5%). Budgets sit at limit 1. The upgrade A/B
runs one session whose machine slows linearly by 14% from first to last sample, with and without a
per-load offset (1 + 0.046 Z: the spread between fresh loads `bench/load_spread.py` measured on the
development machine). Stored baselines
add a run-to-run offset (1 + 0.07 Z) per run. "legacy" rows reproduce the designs issue 8 replaced.

Targets (issue 8): budget at the limit P(FAIL) <= 2.5%, 10% past it P(FAIL) >= 95%; A/B unchanged
P(FAIL) <= 1%, true 10% decode regression P(FAIL) >= 95%, with the shipped N and thresholds.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from pytest_specgate.verdict.paired import AB_ALPHA, AB_LOADS, AB_SAMPLES, abba_schedule, model_loads
from pytest_specgate.verdict.sequential import Plan
from pytest_specgate.verdict.simulation import (
    SEED,
    Rates,
    ab_rates,
    budget_rates,
    legacy_baseline_rates,
    legacy_budget_rates,
    trend_rates,
)

REPO = Path(__file__).resolve().parents[1]
THRESHOLD = 0.05  # the shipped decode_tps baseline threshold (config.Thresholds)
LOAD_SD = 0.046  # decode spread between fresh loads of one config, 2-core dev machine (bench/README.md)


def row(label: str, design: str, rates: Rates, target: str = "", figure: str = "fail") -> str:
    value = getattr(rates, figure)
    name = {"fail": "P(FAIL)", "passed": "P(PASS)"}[figure]
    return (f"{label:<34} {design:<52} {name} {value:7.2%}   pass {rates.passed:6.1%}  inconcl "
            f"{rates.inconclusive:6.1%}  mean N {rates.mean_n:5.2f}  {target}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args()
    reps, seed = args.reps, args.seed
    started = time.monotonic()
    print(f"seed {seed}, {reps} repetitions per row (legacy bootstrap rows: {min(reps, 4000)}), CV 5% normal noise")
    lines: list[str] = []
    add: Callable[[str], None] = lines.append

    add("\n== budgets (min budget at limit 1; 'max' budgets mirror it) ==")
    for samples, max_samples in ((5, 9), (5, 10), (5, 12)):
        plan = Plan.from_confidence(samples, max_samples, 0.95)
        design = f"planned looks N={samples},{max_samples}, t on logs, 1.25%/look"
        add(row(f"at the limit (samples={samples},max={max_samples})", design,
                budget_rates(plan, 1.0, reps=reps, seed=seed), "target <= 2.5%"))
        add(row("10% below the limit", design, budget_rates(plan, 0.9, reps=reps, seed=seed), "target >= 95%"))
        add(row("10% above the limit", design, budget_rates(plan, 1.1, reps=reps, seed=seed), "", "passed"))
    med = Plan(5, 10, 0.025, (5, 10), "median")
    add(row("at the limit", "planned looks N=5,10, order-statistic median", budget_rates(med, 1.0, reps=reps,
                                                                                          seed=seed)))
    add(row("10% below the limit", "planned looks N=5,10, order-statistic median", budget_rates(med, 0.9, reps=reps,
                                                                                                 seed=seed)))
    for n_max in (9, 10, 12):
        add(row("at the limit (legacy)", f"N=5, then +1 sample and re-judge up to {n_max}",
                legacy_budget_rates(5, n_max, 1.0, reps=reps, seed=seed), "peeking"))
    add(row("at the limit (legacy)", "fixed N=5, [min,max] printed as 95% (93.75%)",
            legacy_budget_rates(5, 5, 1.0, reps=reps, seed=seed)))
    add(row("10% below the limit (legacy)", "N=5, then +1 sample up to 9",
            legacy_budget_rates(5, 9, 0.9, reps=reps, seed=seed)))
    quick = Plan.from_confidence(5, 10, 0.95, quick=True, quick_samples=3)
    add(row("quick: at the limit", "one look at N=3, t on logs, 95% CI", budget_rates(quick, 1.0, reps=reps,
                                                                                       seed=seed), "<= 2.5%"))
    add(row("quick: 10% below", "one look at N=3, t on logs, 95% CI", budget_rates(quick, 0.9, reps=reps, seed=seed),
            "honest, not powerful"))
    add(row("quick: 20% below", "one look at N=3, t on logs, 95% CI", budget_rates(quick, 0.8, reps=reps, seed=seed)))
    quick_med = Plan.from_confidence(5, 10, 0.95, quick=True, quick_samples=3, stat="median")
    add(row("quick: 20% below", "N=3 order-statistic (75% CI < 95%)", budget_rates(quick_med, 0.8, reps=reps,
                                                                                    seed=seed), "never decisive"))
    plan = Plan.from_confidence(5, 10, 0.95)
    add(row("at the limit, 10% samples 30% slow", "planned looks N=5,10, t on logs",
            budget_rates(plan, 1.0, reps=reps, seed=seed, contamination=0.1), "robustness"))
    add(row("at the limit, 10% samples 30% slow", "planned looks N=5,10, order-statistic median",
            budget_rates(med, 1.0, reps=reps, seed=seed, contamination=0.1), "robustness"))

    schedule = abba_schedule(AB_SAMPLES, AB_LOADS)
    add(f"\n== upgrade A/B, one session, drift -14% over the session, threshold {THRESHOLD:.0%}, "
        f"alpha {AB_ALPHA:.0%}/side ({1 - 2 * AB_ALPHA:.0%} CI); load = spread between fresh model loads ==")
    add(f"schedule {schedule}: {model_loads(schedule, fresh=True)} model loads per config pair, any number of points")
    for load_sd in (0.0, LOAD_SD):
        for n, loads in ((AB_SAMPLES, AB_LOADS), (AB_SAMPLES, 8), (16, 8), (AB_SAMPLES, 4)):
            design = f"blocks on fresh loads, {n} per side on {loads} loads, load sd {load_sd:.1%}"
            target = (n, loads, load_sd) == (AB_SAMPLES, AB_LOADS, 0.0)
            add(row("unchanged", design, ab_rates(n, 0.0, loads=loads, load_sd=load_sd, reps=reps, seed=seed),
                    "target <= 1%" if (n, loads) == (AB_SAMPLES, AB_LOADS) else ""))
            add(row("true -10% decode", design, ab_rates(n, -0.10, loads=loads, load_sd=load_sd, reps=reps, seed=seed),
                    "target >= 95%" if target else ""))
        design = f"old: ABBA on 3 loads, sample-level crossover, {AB_SAMPLES} per side, load sd {load_sd:.1%}"
        add(row("unchanged", design, ab_rates(AB_SAMPLES, 0.0, "abba3", load_sd=load_sd, reps=reps, seed=seed)))
        add(row("true -10% decode", design, ab_rates(AB_SAMPLES, -0.10, "abba3", load_sd=load_sd, reps=reps,
                                                     seed=seed)))
    design = f"reference always first (BABA, legacy), {AB_SAMPLES} per side"
    add(row("unchanged", design, ab_rates(AB_SAMPLES, 0.0, "ref_first", reps=reps, seed=seed)))
    add(row("true -10% decode", design, ab_rates(AB_SAMPLES, -0.10, "ref_first", reps=reps, seed=seed)))
    shipped = f"blocks on fresh loads, {AB_SAMPLES} per side on {AB_LOADS} loads"
    add(row("unchanged, no drift", shipped, ab_rates(AB_SAMPLES, 0.0, drift=0.0, reps=reps, seed=seed)))
    add(row("unchanged, 10% samples 30% slow", shipped,
            ab_rates(AB_SAMPLES, 0.0, reps=reps, seed=seed, contamination=0.1), "robustness"))
    add(row("-10%, 10% samples 30% slow", shipped,
            ab_rates(AB_SAMPLES, -0.10, reps=reps, seed=seed, contamination=0.1), "robustness"))

    add(f"\n== stored baselines, run-to-run offset sd 7%, N=5 per run, threshold {THRESHOLD:.0%} ==")
    for k in (2, 3, 5, 8):
        design = f"last K={k} runs, 99.5% one-sided prediction bound"
        add(row("unchanged", design, trend_rates(k, 5, 0.0, reps=reps, seed=seed), "target <= 1%"))
        add(row("true -5% decode (at the threshold)", design, trend_rates(k, 5, -0.05, reps=reps, seed=seed),
                "no silent pass: <= 0.5%", "passed"))
        add(row("true -10% decode", design, trend_rates(k, 5, -0.10, reps=reps, seed=seed)))
        add(row("true -30% decode", design, trend_rates(k, 5, -0.30, reps=reps, seed=seed)))
    quiet = "K=5, quiet machine: run-to-run sd 1%"
    add(row("unchanged", quiet, trend_rates(5, 5, 0.0, run_sd=0.01, reps=reps, seed=seed), "", "passed"))
    add(row("true -10% decode", quiet, trend_rates(5, 5, -0.10, run_sd=0.01, reps=reps, seed=seed)))
    lreps = min(reps, 4000)
    add(row("unchanged (legacy)", "one stored run, bootstrap 95% of median change",
            legacy_baseline_rates(5, 0.0, reps=lreps, seed=seed)))
    add(row("true -10% decode (legacy)", "one stored run, bootstrap 95% of median change",
            legacy_baseline_rates(5, -0.10, reps=lreps, seed=seed)))
    print("\n".join(lines))
    print(f"\n{time.monotonic() - started:.1f} s; rerun: .venv/bin/python bench/simulate.py --reps {reps} "
          f"--seed {seed}")


if __name__ == "__main__":
    main()
