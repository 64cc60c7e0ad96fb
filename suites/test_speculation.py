"""Speculative configs must actually speculate, and be judged against their reference.

A config with --spec-type flags that silently falls back to plain decoding (wrong GGUF, unsupported
context) still answers correctly, just slower: only draft_n tells. Speedup is measured against the
config's `reference` in the same run, on the same points, as paired sample ratios.
"""

from statistics import median

import pytest

from pytest_specgate import Budget, crossover_point, crossovers, paired_ratios


def test_speculation_is_active(specgate_measure, specgate_check, specgate_config, specgate_gate):
    """Drafts > 0 on every sample of a speculative config, none on a plain one; acceptance judged, mean run read.

    Where the numbers come from (the pinned build): ``draft_n`` and ``draft_n_accepted`` are in each response's
    ``timings`` (``server_slot_stats::to_json``, tools/server/server-common.cpp; omitted when nothing was
    drafted). The verification-step count behind the mean accepted run is in no response and not in ``/slots``;
    ``/metrics`` has it (``spec_decode_num_drafts_total``) only with ``--metrics``, which would change the argv
    under test, so it is read from the per-request log line (``draft acceptance = ... mean len = ...``,
    tools/server/server-context.cpp). A sample whose line is missing says so in the run's notes.
    """
    point = max(specgate_config.workloads.sweep)
    m = specgate_measure("sweep", point)
    drafted = [s.timings.draft_n for s in m.samples]
    if not specgate_config.speculative:
        assert not any(drafted), (
            f"config {specgate_config.name!r} has no speculative flags, but its samples drafted {drafted} tokens "
            f"(timings.draft_n): the server speculates on its own (a changed default?). Fix: check the build's "
            f"--spec-* defaults, or set expect_speculative = true if the config means to speculate.")
        print(f"{specgate_config.name}: no speculative flags, drafts per sample {drafted} (all 0, as expected)")
        return
    silent = [i for i, n in enumerate(drafted) if n == 0]
    assert not silent, (
        f"config {specgate_config.name!r} asks for speculative decoding but samples {silent} drafted nothing "
        f"(timings.draft_n == 0): the server fell back to plain decoding. Check the server log for "
        f"'speculative decoding not supported' or a missing draft/MTP model."
    )
    missing = [i for i, s in enumerate(m.samples) if s.mean_accepted_run is None]
    if missing:
        specgate_gate.notes.append(
            f"{specgate_config.name}: mean_accepted_run not available for samples {missing} of sweep@{point} (no "
            f"'draft acceptance = ... mean len = ...' line in the server log after those requests: this build "
            f"logs speculative statistics in another format, or at another log level)")
    runs = [s.mean_accepted_run for s in m.samples]
    print(f"{specgate_config.name}: drafts per sample {drafted}, accepted "
          f"{[s.timings.draft_n_accepted for s in m.samples]}, mean accepted run {runs}")
    budgets = specgate_config.budgets_for("sweep", point)
    if not any(b.metric == "acceptance" for b in budgets) and specgate_config.expect_acceptance:
        budgets = [*budgets, Budget(metric="acceptance", workload="sweep", point=point, min=0.01,
                                    note="default floor: drafts must sometimes be accepted")]
    specgate_check(m, [b for b in budgets if b.metric == "acceptance"])


@pytest.mark.specgate_workload("sweep")
def test_speedup_over_reference(specgate_measure_pair, specgate_check, specgate_config, specgate_gate,
                                specgate_output_len):
    """decode_tps and wall clock over the reference config's, sample by sample, A/B alternated."""
    cur, ref = specgate_measure_pair("sweep", specgate_output_len)
    specgate_gate.derive(specgate_config.name, "sweep", specgate_output_len, "speedup",
                         paired_ratios(cur.values("decode_tps"), ref.values("decode_tps")), variant="ab")
    m = specgate_gate.derive(specgate_config.name, "sweep", specgate_output_len, "wall_speedup",
                             paired_ratios(ref.values("wall_ms"), cur.values("wall_ms")), variant="ab")
    specgate_check(m)  # the config's speedup / wall_speedup budgets at this point


@pytest.mark.specgate_workload("natural")  # its A/B pairs share the sweep's ABBA blocks (3 model loads)
def test_speculation_on_natural_outputs(specgate_measure_pair, specgate_check, specgate_config, specgate_reference,
                                        specgate_gate):
    """Acceptance and speedup on answers that are long on their own, not on forced-length loops.

    The sweep forces its length (``ignore_eos``) on one prompt, so every sample repeats one output and, past
    the model's natural end, the model loops on its own text: an n-gram drafter then accepts nearly every draft
    and the "speedup" measures the loop. Here each sample is another task whose answer runs long
    (``workloads.NATURAL_TASKS``), capped at the longest sweep point and stopped at EOS; sample i of the
    config and of its reference answer the same task, so the speedup is paired. The achieved lengths are
    recorded (``output_tokens``) and printed: a speedup over 40-token answers says little about 2000.
    """
    cur, ref = specgate_measure_pair("natural")
    name = specgate_config.name
    lengths = [s.timings.predicted_n for s in cur.samples]
    specgate_gate.derive(name, "natural", None, "output_tokens", lengths, variant="ab")
    m = specgate_gate.derive(name, "natural", None, "speedup",
                             paired_ratios(cur.values("decode_tps"), ref.values("decode_tps")), variant="ab")
    accepted = sum(s.timings.draft_n_accepted for s in cur.samples)
    drafted = sum(s.timings.draft_n for s in cur.samples)
    cap = max(specgate_config.workloads.sweep)
    print(f"{name} natural outputs (cap {cap}, stop at EOS): achieved lengths {lengths}, acceptance "
          f"{accepted}/{drafted}, speedup over {specgate_reference.name} "
          f"{[round(v, 2) for v in m.extra['speedup']]}")
    specgate_check(m)  # the config's speedup budget at workload "natural", if any


@pytest.mark.specgate_workload("sweep")
def test_wall_clock_crossover(specgate_measure, specgate_measure_pair, specgate_check, specgate_config,
                              specgate_reference, specgate_gate):
    """Output length where this config and its reference take the same wall clock.

    From measured prefill (long-context TTFT) and decode at the longest output, as in the report:
    11.5 s / (1/29 - 1/46) tok/s = ~902 tokens, MTP faster above it. Recorded per sample (0 when the
    config is faster at every length); a sample where it is never faster at long outputs breaks a
    crossover budget outright. The sentence, from the medians, says which side wins.
    """
    point = max(specgate_config.workloads.sweep)
    decode = dict(zip((specgate_config.name, specgate_reference.name), specgate_measure_pair("sweep", point)))
    names = (specgate_config.name, specgate_reference.name)
    ttft = {name: [v / 1000 for v in specgate_measure("long-context", config=name).values("ttft_ms")] for name in names}
    rate = {name: decode[name].values("decode_tps") for name in names}
    (t_c, d_c), (t_r, d_r) = ((median(ttft[n]), median(rate[n])) for n in names)
    crossover, verdict = crossover_point(specgate_config.name, specgate_reference.name, t_c, d_c, t_r, d_r)
    print(f"crossover: {verdict} (TTFT {t_c:.2f} s vs {t_r:.2f} s, decode {d_c:.1f} vs {d_r:.1f} tok/s)")
    # one crossover per sample (sample i of each series), so the budget is judged on an interval like any figure
    per_sample = crossovers(ttft[names[0]], rate[names[0]], ttft[names[1]], rate[names[1]])
    never = sum(v is None for v in per_sample)
    budgets = [b for b in specgate_config.budgets_for("sweep", None) if b.metric == "crossover_tokens"]
    assert not (never and budgets), (
        f"{never} of {len(per_sample)} samples of {specgate_config.name} are not faster than "
        f"{specgate_reference.name} at long outputs (no crossover), so crossover_tokens "
        f"{', '.join(b.describe() for b in budgets)} is broken: {verdict}")
    m = specgate_gate.derive(specgate_config.name, "sweep", None, "crossover_tokens",
                             [v for v in per_sample if v is not None])
    specgate_check(m, budgets)
