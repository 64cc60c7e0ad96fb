"""The field report's workloads, as request bodies.

Names match the report (latency, tool-call, chat-short, code-long, long-context, and the
output-length sweep) so figures can be read side by side. Every measured request is temperature 0
with a fixed seed; each carries a nonce at the very start of the prompt so that prompt-cache replay
cannot inflate a sample (only the cache-reuse checks leave the nonce fixed on purpose).
Decode measurements force an exact length with ``ignore_eos`` + ``n_predict`` (request fields read in
tools/server/server-schema.cpp).

What the gate sends must be what the user's clients send: the tool-call body is the plain OpenAI
shape (messages, tools, tool_choice, temperature, seed, max_tokens) and nothing llama.cpp-specific.
A model that needs more (the demo's small Gemma calls no tool without ``chat_template_kwargs:
{enable_thinking: false}`` and repeats the call until the length limit without ``parallel_tool_calls:
false``) declares it as the config's ``request_extras``, added to every body and shown in the report.
"""

from __future__ import annotations

import uuid
from typing import Any

from pytest_specgate.server.client import Client

SYSTEM = "You are a concise, careful assistant for a software team."

GET_WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}

#: workload -> (user prompt, natural output cap). Exact-length requests override the cap.
PROMPTS: dict[str, tuple[str, int]] = {
    "latency": ("What is 2 + 2? Answer with a single digit.", 8),
    "tool-call": ("What is the weather like in Paris right now?", 128),
    "chat-short": ("Explain the TCP three-way handshake to a new engineer.", 400),
    "code-long": (
        "Write a Python class implementing a doubly linked list with append, prepend, insert_after, "
        "remove, find, __len__, __iter__ and __repr__, with docstrings and type hints.",
        800,
    ),
}

#: the ``natural`` workload: tasks whose answers run long on their own, one per sample in turn, so speculation is
#: measured on text the model did not write before. A forced-length decode (``ignore_eos``) on one fixed prompt
#: repeats the same output in every sample and, past the model's natural end, makes it loop on its own text,
#: which an n-gram drafter predicts perfectly (the demo's ngram-mod accepted 251 of 251 drafts that way).
NATURAL_TASKS: tuple[str, ...] = (
    "Write a detailed tutorial on Git branching for a new engineer: rebasing, merging, resolving conflicts and a "
    "worked example with commands.",
    "Implement an LRU cache in Python with O(1) get and put, then explain every method and give unit tests.",
    "Describe, step by step, how a web browser loads a page: DNS, TCP, TLS, HTTP, parsing, layout and painting.",
    "Write a short story of several paragraphs about a lighthouse keeper who finds a message in a bottle.",
    "Compare SQL and NoSQL databases in depth: data models, consistency, scaling, typical use cases and pitfalls.",
    "Write a Rust command-line tool that counts words in files, with argument parsing, error handling and tests.",
    "Explain how public-key cryptography works, with RSA as a worked example using small numbers.",
    "Plan a two-week study schedule for learning linear algebra, with daily topics, exercises and resources.",
    "Write a JavaScript module implementing a debounced search box with fetch, cancellation and error states.",
    "Explain the causes and consequences of the French Revolution in a structured essay with headings.",
    "Write a bash script that backs up a directory with rotation, logging and a dry-run mode; explain each part.",
    "Describe how garbage collection works in the JVM: generations, collectors, tuning flags and trade-offs.",
)

#: filler for the long-context workload: agent-shaped history, repeated until the target size
_HISTORY = [
    ("user", "The deploy of service {i} failed with exit code 137 on node-{i}. What should I check first?"),
    ("assistant", "Exit code 137 means the process was killed, usually by the OOM killer. Check `dmesg` on "
                  "node-{i} for oom-kill lines, compare the container memory limit with its peak RSS, and look "
                  "for a recent change in batch size or cache settings for service {i}."),
    ("user", "dmesg shows oom-kill for service {i}; the limit is {m} MiB. Peak RSS was close to that."),
    ("assistant", "Then raise the limit for service {i} above the observed peak with 20% headroom, or cap the "
                  "cache it grows. Roll it out to one node first and watch the RSS graph for an hour."),
]


def nonce() -> str:
    return uuid.uuid4().hex[:12]


def base_body(seed: int) -> dict[str, Any]:
    """Sampling pinned per request (a GGUF can carry its own defaults). ``cache_prompt`` is left to
    the server, like a real client does, so a config with --no-cache-prompt is measured as such (cold
    long-context samples alone turn it off: see :func:`long_context_body`)."""
    return {"temperature": 0.0, "top_k": 1, "seed": seed}


def messages(workload: str, tag: str | None) -> list[dict[str, Any]]:
    """System + user for a named workload; ``tag`` (a nonce) goes first so no prefix is shared."""
    system = SYSTEM if tag is None else f"[run {tag}] {SYSTEM}"
    return [{"role": "system", "content": system}, {"role": "user", "content": PROMPTS[workload][0]}]


def natural_body(task: int, *, seed: int, tag: str | None, max_tokens: int,
                 extras: dict[str, Any] | None = None) -> dict[str, Any]:
    """Task ``task`` (in turn) of :data:`NATURAL_TASKS`, stopping at EOS or at ``max_tokens``: no ``ignore_eos``,
    so the achieved length is the model's own (a sample's ``timings.predicted_n``)."""
    b = base_body(seed)
    system = SYSTEM if tag is None else f"[run {tag}] {SYSTEM}"
    b["messages"] = [{"role": "system", "content": system},
                     {"role": "user", "content": NATURAL_TASKS[task % len(NATURAL_TASKS)]}]
    b["n_predict"] = max_tokens
    return {**b, **(extras or {})}


def body(workload: str, *, seed: int, tag: str | None, exact_tokens: int | None = None,
         extras: dict[str, Any] | None = None) -> dict[str, Any]:
    """A chat body for ``workload``, plus the config's ``request_extras``. With ``exact_tokens`` the
    output length is forced."""
    if workload == "tool-call" and exact_tokens is None:
        return {**tool_call_body(seed=seed, tag=tag), **(extras or {})}
    b = base_body(seed)
    b["messages"] = messages("code-long" if workload == "sweep" else workload, tag)
    if exact_tokens is not None:
        b["n_predict"] = exact_tokens
        b["ignore_eos"] = True
    else:
        b["n_predict"] = PROMPTS["code-long" if workload == "sweep" else workload][1]
    return {**b, **(extras or {})}


def tool_call_body(*, seed: int, tag: str | None) -> dict[str, Any]:
    """The tool-call request exactly as an OpenAI client writes it (``openai`` SDK: ``tools`` +
    ``tool_choice="required"``); the config's ``request_extras`` are added by ``body``."""
    # user turn only, nonce at the end: the tools block is the system prompt, and the small demo
    # model stops calling tools when a system message or a prefix tag is added (measured)
    user = PROMPTS["tool-call"][0] + ("" if tag is None else f" (request {tag})")
    return {"messages": [{"role": "user", "content": user}], "tools": [GET_WEATHER], "tool_choice": "required",
            "temperature": 0.0, "seed": seed, "max_tokens": PROMPTS["tool-call"][1]}


def long_context_messages(n_turns: int, tag: str | None) -> list[dict[str, Any]]:
    system = SYSTEM if tag is None else f"[run {tag}] {SYSTEM}"
    msgs: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for i in range(n_turns):
        role, text = _HISTORY[i % len(_HISTORY)]
        msgs.append({"role": role, "content": text.format(i=i // len(_HISTORY), m=512 + 64 * (i // len(_HISTORY)))})
    if msgs[-1]["role"] == "user":
        msgs.append({"role": "assistant", "content": "Understood."})
    msgs.append({"role": "user", "content": "Summarise the incidents above in three bullet points."})
    return msgs


def long_context_body(n_turns: int, *, seed: int, tag: str | None, output_tokens: int,
                      tools: bool = True, extras: dict[str, Any] | None = None, cold: bool = False) -> dict[str, Any]:
    """The agent-shaped long prompt. ``cold``: a cold-prefill sample, ``cache_prompt: false``.

    The nonce goes first in the system message, but a template may render the tools block before it
    (Qwen3.5/3.6's: ``# Tools ... <tools>`` opens the system turn), so ~550 tokens of every prompt would
    still be served from the cache; ``cache_prompt: false`` makes the server start from position 0
    (``n_past = 0`` unless ``cache_prompt``, tools/server/server-context.cpp) whatever the template.
    """
    b = base_body(seed)
    b["messages"] = long_context_messages(n_turns, tag)
    if tools:
        b["tools"] = [GET_WEATHER]
    b["n_predict"] = output_tokens
    b["ignore_eos"] = True
    if cold:
        b["cache_prompt"] = False
    return {**b, **(extras or {})}


def long_context_turns(client: Client, target_tokens: int, *, seed: int, output_tokens: int,
                       extras: dict[str, Any] | None = None) -> int:
    """How many history turns make the prompt reach ``target_tokens`` by the server's own tokenizer.

    Counted with ``/v1/chat/completions/input_tokens`` (the exact templated prompt), so "43K context"
    means what the model actually prefills, not a characters-per-token guess. The nonce added later
    changes the size by a few tokens only.
    """
    def size(n: int) -> int:
        return client.count_chat_tokens(long_context_body(n, seed=seed, tag=nonce(), output_tokens=output_tokens,
                                                          extras=extras))

    lo, hi = 0, 4
    while size(hi) < target_tokens:
        lo, hi = hi, hi * 2
        if hi > 1_000_000:
            raise ValueError(f"cannot reach {target_tokens} prompt tokens")
    while hi - lo > 1:  # largest n whose prompt stays <= target
        mid = (lo + hi) // 2
        if size(mid) <= target_tokens:
            lo = mid
        else:
            hi = mid
    return lo
