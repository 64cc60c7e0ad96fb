"""Speculative configs must actually speculate, and be judged against their reference.

A config with --spec-type flags that silently falls back to plain decoding (wrong GGUF, unsupported
context) still answers correctly, just slower: only draft_n tells. Speedup is measured against the
config's `reference` in the same run, on the same points, as paired sample ratios.
"""

import pytest

from pytest_specgate.config import Budget
from pytest_specgate.measure import paired_ratios


def test_speculation_is_active(specgate_measure, specgate_check, specgate_config):
    if not specgate_config.speculative:
        pytest.skip(f"config {specgate_config.name!r} has no speculative flags")
    point = max(specgate_config.workloads.sweep)
    m = specgate_measure("sweep", point)
    silent = [i for i, s in enumerate(m.samples) if s.timings.draft_n == 0]
    assert not silent, (
        f"config {specgate_config.name!r} asks for speculative decoding but samples {silent} drafted nothing "
        f"(timings.draft_n == 0): the server fell back to plain decoding. Check the server log for "
        f"'speculative decoding not supported' or a missing draft/MTP model."
    )
    budgets = specgate_config.budgets_for("sweep", point)
    if not any(b.metric == "acceptance" for b in budgets):
        budgets = [*budgets, Budget(metric="acceptance", workload="sweep", point=point, min=0.01,
                                    note="default floor: drafts must sometimes be accepted")]
    specgate_check(m, [b for b in budgets if b.metric == "acceptance"])


def test_speedup_over_reference(specgate_measure_pair, specgate_check, specgate_config, specgate_gate,
                                specgate_output_len):
    """decode_tps and wall clock over the reference config's, sample by sample, A/B alternated."""
    cur, ref = specgate_measure_pair("sweep", specgate_output_len)
    specgate_gate.derive(specgate_config.name, "sweep", specgate_output_len, "speedup",
                         paired_ratios(cur.values("decode_tps"), ref.values("decode_tps")), variant="ab")
    m = specgate_gate.derive(specgate_config.name, "sweep", specgate_output_len, "wall_speedup",
                             paired_ratios(ref.values("wall_ms"), cur.values("wall_ms")), variant="ab")
    specgate_check(m)  # the config's speedup / wall_speedup budgets at this point


def test_wall_clock_crossover(specgate_measure, specgate_check, specgate_config, specgate_reference, specgate_gate):
    """Output length above which this config beats its reference on wall clock.

    From measured prefill (long-context TTFT) and decode at the longest output, as in the report:
    11.5 s / (1/29 - 1/46) tok/s = ~902 tokens. Reported as 0 when the config wins at any length and
    as "never" (a very large number) when it never catches up.
    """
    point = max(specgate_config.workloads.sweep)
    ttft = {}
    dec = {}
    for name in (specgate_reference.name, specgate_config.name):
        ttft[name] = specgate_measure("long-context", config=name).stats("ttft_ms").median / 1000
        dec[name] = specgate_measure("sweep", point, config=name).stats("decode_tps").median
    prefill_tax = ttft[specgate_config.name] - ttft[specgate_reference.name]
    per_token_gain = 1 / dec[specgate_reference.name] - 1 / dec[specgate_config.name]
    if per_token_gain <= 0:
        crossover = 0.0 if prefill_tax < 0 else 1e9
    else:
        crossover = max(0.0, prefill_tax / per_token_gain)
    m = specgate_gate.derive(specgate_config.name, "sweep", None, "crossover_tokens", [crossover])
    specgate_check(m, [b for b in specgate_config.budgets_for("sweep", None) if b.metric == "crossover_tokens"])
