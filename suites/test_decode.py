"""Decode speed against output length: the field report's key table, guarded.

Every point forces an exact output length (ignore_eos + n_predict) at temperature 0, with N samples
after warm-ups. Budgets come from the config (e.g. mtp: decode_tps >= 44 at sweep@2000).
"""

import pytest

from pytest_specgate import paired_ratios


@pytest.mark.specgate_workload("sweep")
def test_decode_at_output_length(specgate_measure, specgate_check, specgate_output_len):
    m = specgate_measure("sweep", specgate_output_len)
    assert m.samples, "no samples were taken"
    specgate_check(m)


@pytest.mark.specgate_workload("sweep")
def test_decode_does_not_collapse(specgate_measure, specgate_check, specgate_config, specgate_gate):
    """Decode at the longest output over decode at the shortest (DFlash: 30.1/46.9 = 0.64)."""
    sweep = specgate_config.workloads.sweep
    if len(sweep) < 2:
        pytest.skip("the sweep has a single output length")
    short, long = specgate_measure("sweep", sweep[0]), specgate_measure("sweep", sweep[-1])
    ratios = paired_ratios(long.values("decode_tps"), short.values("decode_tps"))
    m = specgate_gate.derive(specgate_config.name, "sweep", None, "decode_collapse", ratios)
    specgate_check(m, [b for b in specgate_config.budgets_for("sweep", None) if b.metric == "decode_collapse"])
