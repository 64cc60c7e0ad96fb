"""One request's worth of evidence: client clocks plus the server's own ``timings``.

Both clocks are kept because they answer different questions: the server's ``timings`` say what
the model did (prefill, decode), the client's clocks say what a user waited for (TTFT, wall).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Timings(BaseModel):
    """The server's ``timings`` object (built in tools/server/server-common.cpp). Missing speculative fields are 0."""

    model_config = ConfigDict(extra="ignore")

    cache_n: int = 0
    prompt_n: int = 0
    prompt_ms: float = 0.0
    prompt_per_second: float = 0.0
    predicted_n: int = 0
    predicted_ms: float = 0.0
    predicted_per_second: float = 0.0
    draft_n: int = 0
    draft_n_accepted: int = 0


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="allow")

    index: int = 0
    id: str = ""
    type: str = "function"
    name: str = ""
    arguments: str = ""


class Sample(BaseModel):
    """A single measured request. Times are milliseconds; ``t_*`` are offsets from the send."""

    model_config = ConfigDict(extra="forbid")

    workload: str
    point: int | None = None
    nonce: str = ""
    requested_tokens: int | None = None
    exact: bool = True
    stream: bool = True
    wall_ms: float
    ttft_ms: float | None = None
    #: response headers arrived: the server flushes them when a slot starts on the request, so this
    #: is HTTP + templating + tokenization + queueing, before ``timings.prompt_ms`` starts counting
    headers_ms: float | None = None
    last_token_ms: float | None = None
    n_events: int = 0
    timings: Timings = Field(default_factory=Timings)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    content: str = ""
    reasoning_content: str = ""
    #: streamed chunks that carried reasoning text: llama-server sends one per generated token
    #: (``send_partial_response`` in tools/server/server-context.cpp), except where it holds back a partial
    #: UTF-8 sequence or a possible ``</think>`` prefix, which joins the next chunk; so a count that can
    #: only fall short of the tokens, never exceed them
    reasoning_chunks: int | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    raw_message: dict[str, Any] | None = None
    #: 1 + accepted drafts per verification step, from the server log (no API field carries it)
    mean_accepted_run: float | None = None

    # ---- derived metrics: one place, so reports and budgets agree on definitions ----

    @property
    def decode_tps(self) -> float | None:
        """The server's rate: n-1 tokens over the time from the first token sampled to the last.

        In the pinned source, ``n_gen_tps()`` (tools/server/server-common.h) divides ``n_gen_steps() = n_gen - 1``
        (the first token comes from the prompt's logits: no decode step) by ``t_gen_last - t_prompt_last``, and
        tools/server/server-context.cpp sets ``t_prompt_last`` when the first token is sampled and ``t_gen_last``
        after each later one (or each accepted draft batch). None for one-token answers.
        """
        return self.timings.predicted_per_second if self.timings.predicted_n > 1 else None

    @property
    def client_decode_tps(self) -> float | None:
        """Decode rate seen by the client: (predicted_n - 1) tokens over first-to-last visible event time.

        The server's definition (``decode_tps``) measured on the client's clock: the same n-1 tokens over
        the span from the first streamed token to the last, so the two agree when the harness adds no
        latency of its own. A first token that streams nothing visible (a chat template's ``<think>`` tag
        swallowed by the reasoning parser) shortens the client's span by one token time, so it reads
        slightly high on very short outputs.
        """
        if self.ttft_ms is None or self.last_token_ms is None:
            return None
        span = self.last_token_ms - self.ttft_ms
        n = self.timings.predicted_n - 1
        return 1000.0 * n / span if span > 0 and n > 0 else None

    @property
    def prefill_ms(self) -> float:
        return self.timings.prompt_ms

    @property
    def prompt_tps(self) -> float:
        return self.timings.prompt_per_second

    @property
    def cache_reuse(self) -> float:
        total = self.timings.cache_n + self.timings.prompt_n
        return self.timings.cache_n / total if total else 0.0

    @property
    def acceptance(self) -> float | None:
        t = self.timings
        return t.draft_n_accepted / t.draft_n if t.draft_n else None

    @property
    def reasoning_tokens(self) -> int | None:
        """Reasoning tokens of a streamed response (its reasoning chunks); None for a non-streamed one.

        The budget this backs (``--reasoning-budget 256``: at most 256 plus the closing tag) is a ceiling, and
        the count never exceeds the true number, so a build that stops honouring the flag (its reasoning then
        runs to the output length) fails it; an overrun of a token or two hidden in a joined chunk could pass.
        """
        return self.reasoning_chunks if self.stream else None

    @property
    def reasoning_share(self) -> float:
        total = len(self.reasoning_content) + len(self.content)
        return len(self.reasoning_content) / total if total else 0.0

    def metric(self, name: str) -> float | None:
        """A metric by its budget name, or None when this sample cannot say (e.g. no drafts)."""
        value = getattr(self, name, None)
        return None if value is None else float(value)
