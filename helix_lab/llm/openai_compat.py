"""Any OpenAI-compatible Chat Completions server (OpenAI, Ollama, vLLM, ...) over httpx.

::

    adapter = OpenAICompatAdapter("http://localhost:11434/v1", "qwen3:8b")   # Ollama, no key
    async for event in adapter.stream(LLMRequest(model="", messages=[...])):
        ...

Canonical (Anthropic-shaped) messages are converted on the way out: ``tool_use`` blocks
become assistant ``tool_calls``, ``tool_result`` blocks become ``role: "tool"`` messages,
thinking blocks are dropped (the wire format has no place for them). Streamed
``reasoning_content`` / ``reasoning`` deltas, which vLLM and Ollama send, come back as
thinking deltas. ``thinking_budget`` is not sent: there is no common field for it.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

from ._http import (
    ClientOwner,
    forced_tool,
    is_transient_status,
    redact,
    retry_after_seconds,
    tool_input,
)
from .base import LLMError, LLMEvent, LLMRequest, Message

__all__ = ["OpenAICompatAdapter", "to_openai_messages"]

_STOP_REASONS = {
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "length": "max_tokens",
    "content_filter": "refusal",
}


class OpenAICompatAdapter(ClientOwner):
    """Streams ``POST {base_url}/chat/completions``.

    ``base_url`` is the API root, e.g. ``https://api.openai.com/v1``. ``api_key`` falls back
    to ``OPENAI_API_KEY``; without either no ``Authorization`` header is sent. Pass
    ``http_client`` (an ``httpx.AsyncClient``) to choose timeouts, proxies or a mock
    transport; the adapter closes only a client it made itself.
    """

    def __init__(
        self,
        base_url: str,
        model_default: str | None = None,
        *,
        api_key: str | None = None,
        http_client: Any = None,
    ) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self.model_default = model_default
        self._api_key = api_key or os.environ.get("OPENAI_API_KEY") or None
        self._owns_client = http_client is None
        # Reasoning models can think for minutes before the first byte: httpx's 5 s is too short.
        self._client = http_client or httpx.AsyncClient(timeout=httpx.Timeout(600.0, connect=10.0))

    def __repr__(self) -> str:
        return (
            f"OpenAICompatAdapter(base_url={self.base_url!r}, model_default={self.model_default!r})"
        )

    async def _close_client(self) -> None:
        await self._client.aclose()

    async def stream(self, request: LLMRequest) -> AsyncIterator[LLMEvent]:
        body = self._body(request)
        headers = {"accept": "text/event-stream"}
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        translator = _ChunkTranslator(body["model"])
        url = f"{self.base_url}/chat/completions"
        with self._errors():
            async with self._client.stream("POST", url, json=body, headers=headers) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise self._status_error(response.status_code, response, body["model"])
                done = False
                async for name, data in _sse_messages(response, self.base_url):
                    if data == "[DONE]":
                        done = True
                        break
                    try:
                        chunk = json.loads(data)
                    except ValueError as exc:
                        raise LLMError(
                            f"{self.base_url} sent a stream chunk that is not JSON: {data[:200]!r}"
                        ) from exc
                    if name == "error" or (isinstance(chunk, dict) and "error" in chunk):
                        raise self._stream_error(chunk, body["model"])
                    for event in translator.feed(chunk):
                        yield event
            for event in translator.close(done):
                yield event

    def _body(self, request: LLMRequest) -> dict[str, Any]:
        model = request.model or self.model_default
        if not model:
            raise LLMError(
                "No model given: set LLMRequest.model or OpenAICompatAdapter(model_default=...)."
            )
        body: dict[str, Any] = {
            "model": model,
            "messages": to_openai_messages(request.system, request.messages),
            "max_tokens": request.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t["name"],
                        "description": t["description"],
                        "parameters": t["input_schema"],
                    },
                }
                for t in request.tools
            ]
        tool = forced_tool(request)
        if request.tools:
            body["tool_choice"] = "auto" if tool is None else {
                "type": "function", "function": {"name": tool}}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        return body

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn transport failures into retryable :class:`LLMError`s."""
        import httpx

        try:
            yield
        except httpx.ConnectError as exc:
            raise LLMError(
                self._clean(
                    f"Could not connect to {self.base_url} ({exc}). Is the server running?"
                ),
                retryable=True,
            ) from exc
        except httpx.TransportError as exc:  # read errors, timeouts, a dropped stream
            raise LLMError(
                self._clean(
                    f"The connection to {self.base_url} dropped mid-response "
                    f"({type(exc).__name__}: {exc or 'no detail'})."
                ),
                retryable=True,
            ) from exc

    def _status_error(self, status: int, response: Any, model: str) -> LLMError:
        detail = _error_detail(response)
        return LLMError(
            self._clean(_explain(status, detail, model, self.base_url)),
            retryable=is_transient_status(status),
            status=status,
            retry_after=retry_after_seconds(response.headers),
        )

    def _stream_error(self, chunk: Any, model: str) -> LLMError:
        error = chunk.get("error") if isinstance(chunk, dict) else None
        error = error if isinstance(error, dict) else {"message": str(error or chunk)}
        code = error.get("code") if isinstance(error.get("code"), int) else None
        status = code or 500  # unlabelled mid-stream failures are server-side
        message = _explain(status, str(error.get("message", "")), model, self.base_url)
        return LLMError(
            self._clean(f"The stream from {self.base_url} failed mid-response: {message}"),
            retryable=is_transient_status(status),
            status=status,
        )

    def _clean(self, message: str) -> str:
        return redact(message, self._api_key)


def to_openai_messages(system: str, messages: list[Message]) -> list[dict[str, Any]]:
    """Canonical messages (see :mod:`helix_lab.llm.base`) in Chat Completions form."""
    out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for message in messages:
        role, content = message["role"], message["content"]
        if isinstance(content, str):
            out.append({"role": role, "content": content})
        elif role == "assistant":
            out.append(_assistant_message(content))
        else:
            # Tool results must directly follow the assistant turn that called the tools.
            parts: list[dict[str, Any]] = []
            for block in content:
                if block["type"] == "tool_result":
                    out.append(
                        {
                            "role": "tool",
                            "tool_call_id": block["tool_use_id"],
                            "content": _tool_result_text(block),
                        }
                    )
                elif block["type"] == "text":
                    parts.append({"type": "text", "text": block["text"]})
                elif block["type"] == "image" and block.get("source", {}).get("type") == "base64":
                    source = block["source"]
                    url = f"data:{source['media_type']};base64,{source['data']}"
                    parts.append({"type": "image_url", "image_url": {"url": url}})
            if parts:
                if all(p["type"] == "text" for p in parts):
                    out.append({"role": role, "content": "".join(p["text"] for p in parts)})
                else:
                    out.append({"role": role, "content": parts})
    return out


def _assistant_message(content: list[dict[str, Any]]) -> dict[str, Any]:
    text = "".join(b["text"] for b in content if b["type"] == "text")
    calls = [
        {
            "id": b["id"],
            "type": "function",
            "function": {"name": b["name"], "arguments": json.dumps(b["input"])},
        }
        for b in content
        if b["type"] == "tool_use"
    ]
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_result_text(block: dict[str, Any]) -> str:
    content = block.get("content", "")
    if not isinstance(content, str):
        content = "".join(p.get("text", "") for p in content if p.get("type") == "text")
    # The wire format has no is_error flag: say it in the text so the model sees it.
    return f"Error: {content}" if block.get("is_error") else content


async def _sse_messages(response: Any, base_url: str) -> AsyncIterator[tuple[str, str]]:
    """``(event name, data)`` for each server-sent event of an httpx response (httpx-sse)."""
    import httpx_sse

    try:
        async for event in httpx_sse.EventSource(response).aiter_sse():
            yield event.event, event.data
    except httpx_sse.SSEError as exc:
        raise LLMError(f"{base_url} did not answer with a stream of server-sent events ({exc}).",
                       status=response.status_code) from exc


class _ChunkTranslator:
    """Chat Completions stream chunks in, :data:`LLMEvent` dicts out. No I/O."""

    def __init__(self, model: str = "") -> None:
        self.model = model
        """Named on the usage event: the model that was called is the one priced, whatever
        the agent's config says (``%helix llm openai`` swaps the model under it)."""
        self._calls: dict[int, dict[str, Any]] = {}
        self._usage: dict[str, Any] = {}
        self._finish: str | None = None

    def feed(self, chunk: dict[str, Any]) -> list[LLMEvent]:
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        events: list[LLMEvent] = []
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning:
                events.append({"type": "thinking_delta", "delta": reasoning})
            if delta.get("content"):
                events.append({"type": "text_delta", "delta": delta["content"]})
            for call in delta.get("tool_calls") or []:
                buffer = self._calls.setdefault(
                    call.get("index", len(self._calls)), {"id": None, "name": "", "arguments": []}
                )
                function = call.get("function") or {}
                buffer["id"] = call.get("id") or buffer["id"]
                buffer["name"] = function.get("name") or buffer["name"]
                buffer["arguments"].append(function.get("arguments") or "")
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return events

    def close(self, done: bool) -> list[LLMEvent]:
        """The tool calls, usage and finish events, once the stream has ended."""
        if not done and self._finish is None:
            raise LLMError(
                "The chat completions stream ended before its last chunk: the response is incomplete.",
                retryable=True,
            )
        events: list[LLMEvent] = [self._tool_call(i, b) for i, b in sorted(self._calls.items())]
        usage = self._usage
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        events.append(
            {
                "type": "usage",
                # prompt_tokens counts cached tokens too; Anthropic's input_tokens does not.
                "input_tokens": (usage.get("prompt_tokens") or 0) - cached,
                "output_tokens": usage.get("completion_tokens") or 0,
                "cache_read_input_tokens": cached,
                "cache_creation_input_tokens": 0,
                **({"model": self.model} if self.model else {}),
            }
        )
        stop_reason = _STOP_REASONS.get(self._finish or "stop", self._finish or "end_turn")
        if self._calls and stop_reason == "end_turn":
            stop_reason = "tool_use"  # Ollama reports "stop" even when it called tools
        events.append({"type": "finish", "stop_reason": stop_reason})
        return events

    @staticmethod
    def _tool_call(index: int, buffer: dict[str, Any]) -> LLMEvent:
        value = tool_input("".join(buffer["arguments"]) or "{}", buffer["name"])
        return {
            "type": "tool_call",
            "id": buffer["id"] or f"call_{index}",
            "name": buffer["name"],
            "input": value,
        }


def _error_detail(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error or body)[:500]


def _explain(status: int, detail: str, model: str, base_url: str) -> str:
    """A one-line message for an HTTP error status that names the fix where there is one."""
    if status == 401:
        return (
            f"{base_url} rejected the API key (401: {detail}). Set OPENAI_API_KEY, or pass "
            "OpenAICompatAdapter(api_key=...), to a valid key for this server."
        )
    if status == 403:
        return f"{base_url} refused access (403: {detail}). Check that the key may use model {model!r}."
    if status == 404:
        return (
            f"{base_url}/chat/completions returned 404 ({detail}). Check the model name "
            f"{model!r} and that base_url is the API root (e.g. http://localhost:11434/v1)."
        )
    if status == 429:
        return f"{base_url} rate limit reached (429: {detail})."
    if status >= 500:
        return f"{base_url} had a server error ({status}: {detail})."
    if status == 400:
        return f"{base_url} rejected the request as invalid (400: {detail}). Fix the messages, tools or parameters it names."
    return f"{base_url} returned HTTP {status}: {detail}"
