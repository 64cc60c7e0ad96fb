"""HTTP client for llama-server: one request in, one ``Sample`` out.

Streaming is the default because only a stream shows what a user feels: the client clock at the
first visible token (TTFT) and at the last one. SSE framing is parsed by ``httpx-sse``; keep-alive
comments (``:``) are ignored by it.

Every request has one overall deadline (``request_timeout``), streaming included: httpx's timeout
bounds each read, so a server that trickles a token every few seconds would run on forever. A timer
shuts the connection's socket down at the deadline, which ends the blocked read at once. A transport
failure or a deadline becomes the ``fault`` callback's ``ServerError`` (the pool wires it to the
server, which knows its exit status and log), never a bare httpx traceback. ``trust_env=False``: an
``HTTP_PROXY`` in the environment must not capture requests to 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from httpx_sse import connect_sse

from pytest_specgate.errors import SampleError, ServerError
from pytest_specgate.measure.sample import Sample, Timings, ToolCall


def _error_text(resp: httpx.Response) -> str:
    try:
        body = resp.read().decode("utf-8", "replace")
        return str(json.loads(body).get("error", {}).get("message", body))
    except (ValueError, AttributeError):
        return resp.text[:500]


def _refused(what: str, resp: httpx.Response) -> ServerError:
    """An HTTP error status from llama-server, with the fix for the statuses a config causes."""
    fix = {401: "Fix: the server wants an API key: remove --api-key/--api-key-file from the config's args "
                "(specgate sends no key).",
           404: "Fix: this llama-server build lacks the endpoint; use a newer build.",
           }.get(resp.status_code, "Fix: the server's log says why it refused the request.")
    said = _error_text(resp).rstrip(". ")
    return ServerError(f"llama-server answered {what} with HTTP {resp.status_code}: {said}. {fix}")


#: (what the client saw, whether the server looks hung) -> the error to raise
Fault = Callable[[str, bool], ServerError]


def _plain_fault(what: str, hung: bool) -> ServerError:
    return ServerError(f"{what}. Fix: check that llama-server is running and answering.")


class _Deadline:
    """Shuts a response's socket down when the request's overall time is up (from a timer thread)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def watch(self, resp: httpx.Response) -> None:
        stream = resp.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        with self._lock:
            self._sock = sock
            if self.expired:
                self._shutdown()

    def _fire(self) -> None:
        with self._lock:
            self.expired = True
            self._shutdown()

    def _shutdown(self) -> None:
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Client:
    """A thin wrapper around ``httpx.Client`` that knows llama-server's extra endpoints."""

    def __init__(self, base_url: str, timeout: float = 600.0, *, fault: Fault | None = None) -> None:
        self.base_url = base_url
        self.timeout = timeout
        self.fault = fault or _plain_fault
        self.http = httpx.Client(base_url=base_url, timeout=httpx.Timeout(timeout, connect=10.0), trust_env=False)
        self._tokens = 0  # visible pieces of the request in flight, for the timeout message

    @contextmanager
    def _guard(self, what: str, deadline: _Deadline | None = None, seconds: float | None = None) -> Iterator[None]:
        """httpx errors and the deadline become the fault callback's ServerError (raised from None)."""
        try:
            yield
        except httpx.TimeoutException:
            limit = f"{self.timeout:g} s (request_timeout, {what})" if seconds is None else f"{seconds:g} s ({what})"
            err = self.fault(f"no token for {limit}", True)
        except httpx.HTTPError as e:
            if deadline is not None and deadline.expired:
                said = (f"request exceeded {self.timeout:g} s (request_timeout, {what}; {self._tokens} tokens back "
                        "by then)" if self._tokens else f"no token for {self.timeout:g} s (request_timeout, {what})")
                err = self.fault(said, True)
            else:
                err = self.fault(f"{what} failed: {type(e).__name__}: {e}", False)
        else:
            return
        raise err from None

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- small endpoints ----

    def get_json(self, path: str) -> Any:
        with self._guard(f"GET {path}", seconds=30.0):
            resp = self.http.get(path, timeout=30.0)
        if resp.status_code != 200:
            raise _refused(f"GET {self.base_url}{path}", resp)
        return resp.json()

    def props(self) -> dict[str, Any]:
        props: dict[str, Any] = self.get_json("/props")
        return props

    def count_chat_tokens(self, body: dict[str, Any]) -> int:
        """Exact prompt size after templating, from the server's own tokenizer."""
        with self._guard("POST /v1/chat/completions/input_tokens", seconds=60.0):
            resp = self.http.post("/v1/chat/completions/input_tokens", json=body, timeout=60.0)
        if resp.status_code != 200:
            raise _refused("POST /v1/chat/completions/input_tokens", resp)
        return int(resp.json()["input_tokens"])

    # ---- the measured request ----

    def chat(self, body: dict[str, Any], *, workload: str, point: int | None = None, nonce: str = "",
             stream: bool = True) -> Sample:
        """Send one chat completion and turn it into a Sample.

        When the body asks for an exact length (``ignore_eos`` + ``n_predict``), the Sample records
        whether exactly that many tokens came back; callers treat a short sample as an error.
        """
        body = dict(body)
        requested = body.get("n_predict") if body.get("ignore_eos") else None
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
            sample = self._stream(body, workload=workload, point=point, nonce=nonce)
        else:
            body["stream"] = False
            sample = self._once(body, workload=workload, point=point, nonce=nonce)
        if requested is not None:
            sample.requested_tokens = int(requested)
            sample.exact = sample.timings.predicted_n == int(requested)
        return sample

    def _once(self, body: dict[str, Any], **meta: Any) -> Sample:
        t0 = time.perf_counter()
        self._tokens = 0
        with _Deadline(self.timeout) as deadline, self._guard("POST /v1/chat/completions", deadline), \
                self.http.stream("POST", "/v1/chat/completions", json=body) as resp:
            deadline.watch(resp)
            resp.read()
        wall = (time.perf_counter() - t0) * 1000
        if resp.status_code != 200:
            raise _refused("POST /v1/chat/completions", resp)
        data = resp.json()
        choice = data["choices"][0]
        msg = choice.get("message", {})
        calls = [
            ToolCall(index=i, id=c.get("id", ""), type=c.get("type", "function"),
                     name=c.get("function", {}).get("name", ""), arguments=c.get("function", {}).get("arguments", ""))
            for i, c in enumerate(msg.get("tool_calls") or [])
        ]
        usage = data.get("usage", {})
        return Sample(
            stream=False, wall_ms=wall, timings=Timings.model_validate(data.get("timings", {})),
            prompt_tokens=usage.get("prompt_tokens", 0), completion_tokens=usage.get("completion_tokens", 0),
            finish_reason=choice.get("finish_reason"), content=msg.get("content") or "",
            reasoning_content=msg.get("reasoning_content") or "", tool_calls=calls, raw_message=msg, **meta,
        )

    def _stream(self, body: dict[str, Any], **meta: Any) -> Sample:
        content: list[str] = []
        reasoning: list[str] = []
        calls: dict[int, ToolCall] = {}
        timings: dict[str, Any] = {}
        usage: dict[str, Any] = {}
        finish: str | None = None
        first = last = None
        n_events = 0
        t0 = time.perf_counter()
        self._tokens = 0
        with _Deadline(self.timeout) as deadline, self._guard("POST /v1/chat/completions (stream)", deadline), \
                connect_sse(self.http, "POST", "/v1/chat/completions", json=body) as source:
            deadline.watch(source.response)
            headers = time.perf_counter()  # llama-server flushes headers when the slot starts
            if source.response.status_code != 200:
                raise _refused("POST /v1/chat/completions", source.response)
            for event in source.iter_sse():
                now = time.perf_counter()
                if event.data == "[DONE]":
                    break
                obj = json.loads(event.data)
                n_events += 1
                if "error" in obj:
                    raise ServerError(f"llama-server reported an error mid-stream: {obj['error']}")
                timings = obj.get("timings") or timings
                usage = obj.get("usage") or usage
                for choice in obj.get("choices") or []:
                    finish = choice.get("finish_reason") or finish
                    delta = choice.get("delta") or {}
                    visible = False
                    if delta.get("content"):
                        content.append(delta["content"])
                        visible = True
                    if delta.get("reasoning_content"):
                        reasoning.append(delta["reasoning_content"])  # one chunk per reasoning token
                        visible = True
                    for tc in delta.get("tool_calls") or []:
                        visible = True
                        call = calls.setdefault(tc.get("index", 0), ToolCall(index=tc.get("index", 0)))
                        call.id = tc.get("id") or call.id
                        fn = tc.get("function") or {}
                        call.name = fn.get("name") or call.name
                        call.arguments += fn.get("arguments") or ""
                    if visible:
                        self._tokens += 1
                        first = now if first is None else first
                        last = now
        wall = (time.perf_counter() - t0) * 1000
        if not timings:
            raise SampleError("the stream ended without a `timings` object: the server closed it early")
        return Sample(
            wall_ms=wall,
            ttft_ms=None if first is None else (first - t0) * 1000,
            headers_ms=(headers - t0) * 1000,
            last_token_ms=None if last is None else (last - t0) * 1000,
            n_events=n_events, timings=Timings.model_validate(timings),
            prompt_tokens=usage.get("prompt_tokens", 0), completion_tokens=usage.get("completion_tokens", 0),
            finish_reason=finish, content="".join(content), reasoning_content="".join(reasoning),
            reasoning_chunks=len(reasoning), tool_calls=[calls[i] for i in sorted(calls)], **meta,
        )
