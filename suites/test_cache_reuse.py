"""Prompt-cache reuse: "cache reuse beats every decode optimization when it hits" (~60x prefill).

Two checks from the report: an identical second request must reuse >= 99% of the prompt with a
much shorter prefill, and a stable prefix with a varying last user turn must reuse the prefix.
Defaults apply unless the config sets budgets for workload "cache-reuse".
"""

from pytest_specgate import Budget, workloads

DEFAULTS = [
    Budget(metric="cache_reuse", workload="cache-reuse", min=0.99,
           note="identical request: >= 99% of the prompt from cache"),
    Budget(metric="prefill_speedup", workload="cache-reuse", min=2.0,
           note="identical request: prefill at least 2x faster"),
    Budget(metric="prefix_reuse", workload="cache-reuse", min=0.8,
           note="varying last turn: the stable prefix is reused"),
]


def test_cache_reuse(specgate_client, specgate_config, specgate_gate, specgate_check):
    wl = specgate_config.workloads
    extras = specgate_config.request_extras
    n_turns = workloads.long_context_turns(specgate_client, wl.long_context_tokens, seed=wl.seed, output_tokens=8,
                                           extras=extras)
    reuse, speedup, prefix = [], [], []
    for _ in range(specgate_gate.sample_counts(specgate_config, specgate_gate.quick)[0]):
        tag = workloads.nonce()  # fixed within the trio, new across trios: each trio starts cold
        body = workloads.long_context_body(n_turns, seed=wl.seed, tag=tag, output_tokens=8, extras=extras)
        cold = specgate_client.chat(body, workload="cache-reuse", nonce=tag)
        warm = specgate_client.chat(body, workload="cache-reuse", nonce=tag)
        varied = dict(body, messages=[*body["messages"][:-1],
                                      {"role": "user", "content": f"Now list the node names only ({tag})."}])
        third = specgate_client.chat(varied, workload="cache-reuse", nonce=tag)
        reuse.append(warm.cache_reuse)
        speedup.append(cold.prefill_ms / max(warm.prefill_ms, 1e-3))
        prefix.append(third.cache_reuse)
    gate = specgate_gate
    gate.derive(specgate_config.name, "cache-reuse", None, "cache_reuse", reuse)
    gate.derive(specgate_config.name, "cache-reuse", None, "prefill_speedup", speedup)
    m = gate.derive(specgate_config.name, "cache-reuse", None, "prefix_reuse", prefix)
    own = {b.metric: b for b in specgate_config.budgets_for("cache-reuse", None)}
    specgate_check(m, [own.get(b.metric, b) for b in DEFAULTS] + [b for k, b in own.items()
                                                                   if k not in {d.metric for d in DEFAULTS}])
