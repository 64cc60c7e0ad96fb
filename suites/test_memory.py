"""Memory budgets: VRAM through NVML (GPU), RSS through psutil (always).

The probe samples in the background from the moment the server is ready: idle is the after-load
figure, peak the highest seen while requests ran. A VRAM budget on a machine without an NVIDIA GPU
is reported as skipped, with the reason. With a GPU present it is judged, or it fails with the
reason VRAM could not be measured (a container hiding the server's PID next to another tenant, ...):
a green run must never hide an unjudged VRAM budget on the machine it is meant for.
"""

import pytest

from pytest_specgate import Verdict, check_budget


@pytest.mark.quick
def test_memory_budget(specgate_measure, specgate_memory, specgate_config, specgate_gate, specgate_check):
    specgate_measure("sweep", max(specgate_config.workloads.sweep))  # load the KV cache before reading peaks
    specgate_memory.read()
    figures = specgate_memory.figures()
    assert "rss_peak_mib" in figures, "psutil could not read the server's memory"
    for metric, value in figures.items():
        m = specgate_gate.derive(specgate_config.name, "memory", None, metric, [value])
    budgets = specgate_config.budgets_for("memory", None)
    results = specgate_check(m, [b for b in budgets if b.metric in figures])  # fails the test on a broken budget
    skipped = [check_budget(b, None, specgate_memory.skip_reason(b.metric))
               .model_copy(update={"config": specgate_config.name})
               for b in budgets if b.metric not in figures]
    if specgate_memory.gpu_present:
        skipped = [r.model_copy(update={"verdict": Verdict.FAIL,
                                        "message": r.message.replace(": skipped (", ": FAIL (")})
                   if r.budget.metric.startswith("vram") else r for r in skipped]
    specgate_gate.judge(skipped)
    if skipped and not results:
        pytest.skip("; ".join(r.message for r in skipped))
