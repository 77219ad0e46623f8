"""The Anthropic Messages API wire format, written once for both Claude adapters.

:class:`~helix_lab.llm.AnthropicAdapter` (the ``anthropic`` SDK, in the kernel) and
:class:`~helix_lab.worker_bundle.fetch_llm.FetchAnthropicLLM` (the Worker's ``fetch``,
where the SDK cannot be bundled) differ only in how bytes move. What goes over the wire
and what comes back is here:

- :func:`messages_body`: an :class:`LLMRequest` as the Messages API body (``temperature``
  in the body, ``tool_choice`` mapped, thinking);
- :class:`StreamTranslator`: stream events as JSON objects in, :data:`LLMEvent` dicts out;
- :func:`status_error` and :func:`stream_error`: an HTTP error status, or an ``error``
  event inside a 200 stream, as an :class:`LLMError` that names the fix;
- :func:`parse_event`: one server-sent event's data as a JSON object.

No I/O and nothing but the standard library, so it runs in a Python Worker (Pyodide).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._http import forced_tool, is_transient_status, tool_input
from .base import LLMError, LLMEvent, LLMRequest

__all__ = [
    "ERROR_TYPE_STATUS",
    "USAGE_FIELDS",
    "StreamTranslator",
    "error_detail",
    "explain",
    "messages_body",
    "parse_event",
    "status_error",
    "stream_error",
]

ERROR_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
"""An ``error`` event inside a 200 stream carries no status; its type tells what it would be."""

USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)


def _same(text: str) -> str:
    return text


# -- the request -------------------------------------------------------------------------


def messages_body(request: LLMRequest, model_default: str | None = None, *,
                  no_model: str = "set LLMRequest.model or the adapter's model_default"
                  ) -> dict[str, Any]:
    """The Messages API body for ``request``, without ``stream``.

    ``no_model`` ends the error raised when neither the request nor ``model_default``
    names a model (each adapter knows where its user sets it).
    """
    model = request.model or model_default
    if not model:
        raise LLMError(f"No model given: {no_model}.")
    tool = forced_tool(request)
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_tokens,
        # Canonical messages are already Anthropic-shaped: they go over as they are.
        "messages": request.messages,
    }
    if request.system:
        body["system"] = request.system
    if request.tools:
        body["tools"] = [{"name": t["name"], "description": t["description"],
                          "input_schema": t["input_schema"]} for t in request.tools]
        body["tool_choice"] = {"type": "auto"} if tool is None else {"type": "tool",
                                                                      "name": tool}
    if request.thinking_budget:
        body["thinking"] = {"type": "enabled", "budget_tokens": request.thinking_budget}
    if request.temperature is not None:
        body["temperature"] = request.temperature
    return body


# -- errors ------------------------------------------------------------------------------


def explain(status: int, detail: str, model: str) -> str:
    """A one-line message for an HTTP error status that names the fix where there is one."""
    if status == 401:
        return "Anthropic rejected the API key (401). Set ANTHROPIC_API_KEY to a valid key."
    if status == 402:
        return (f"Anthropic refused the request for billing reasons (402: {detail}). "
                "Check the account's credit.")
    if status == 403:
        return (f"Anthropic refused access (403: {detail}). Check that this API key may use "
                f"model {model!r}.")
    if status == 404:
        return (f"Anthropic found nothing there (404: {detail}). Check the model name "
                f"{model!r} and the base_url.")
    if status == 413:
        return (f"The request is too large for Anthropic (413: {detail}). Shorten the "
                "conversation or tool results.")
    if status == 429:
        return f"Anthropic rate limit reached (429: {detail})."
    if status == 529:
        return f"Anthropic is overloaded (529: {detail})."
    if status >= 500:
        return f"Anthropic had a server error ({status}: {detail})."
    if status == 400:
        return (f"Anthropic rejected the request as invalid (400: {detail}). Fix the messages, "
                "tools or parameters it names.")
    return f"Anthropic returned HTTP {status}: {detail}"


def error_detail(body: Any, fallback: str) -> tuple[str | None, str]:
    """``(error type, message)`` of an API error body (parsed JSON), else ``fallback``."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, fallback
    return error.get("type"), error.get("message") or fallback


def status_error(status: int, detail: str, model: str, *, retry_after: float | None = None,
                 clean: Callable[[str], str] = _same) -> LLMError:
    """An HTTP error response as an :class:`LLMError`; ``clean`` redacts the message."""
    return LLMError(clean(explain(status, detail, model)), retryable=is_transient_status(status),
                    status=status, retry_after=retry_after)


def stream_error(error_type: str | None, detail: str, model: str = "", *,
                 clean: Callable[[str], str] = _same) -> LLMError:
    """An ``error`` event inside a 200 stream, with the status its type stands for."""
    kind = error_type or "api_error"
    status = ERROR_TYPE_STATUS.get(kind, 500)
    message = f"The Anthropic stream failed mid-response ({kind}): {explain(status, detail, model)}"
    return LLMError(clean(message), retryable=is_transient_status(status), status=status)


# -- the response stream -----------------------------------------------------------------


def parse_event(data: str) -> dict[str, Any]:
    """One event's ``data`` as the JSON object it must be."""
    try:
        raw = json.loads(data)
    except ValueError as exc:
        raise LLMError(f"Anthropic sent a stream event that is not valid JSON ({exc}): "
                       f"{data[:200]!r}.") from None
    if not isinstance(raw, dict):
        raise LLMError(f"Anthropic sent a stream event that is not a JSON object: {data[:200]!r}.")
    return raw


@dataclass
class _ToolBuffer:
    id: str
    name: str
    start_input: Any
    parts: list[str] = field(default_factory=list)

    def event(self) -> LLMEvent:
        text = "".join(self.parts)
        if text:
            value = tool_input(text, self.name, source="Anthropic")
        else:  # a tool without arguments may send no input_json_delta at all
            value = self.start_input or {}
            if not isinstance(value, dict):
                raise LLMError(f"Anthropic returned a {type(value).__name__} as the input of "
                               f"tool call {self.name!r}; tool input must be a JSON object.")
        return {"type": "tool_call", "id": self.id, "name": self.name, "input": value}


class StreamTranslator:
    """Messages API stream events (JSON objects) in, :data:`LLMEvent` dicts out. No I/O.

    ``error`` events raise :func:`stream_error`; ``ping`` and event types with no
    canonical form yet (citations, server tools) yield nothing. :meth:`check_complete`
    after the last event tells a finished response from a cut one.
    """

    def __init__(self, *, model: str = "", clean: Callable[[str], str] = _same) -> None:
        self._model = model
        self._clean = clean
        self._tools: dict[int, _ToolBuffer] = {}
        self._usage: dict[str, int] = {}
        self._stop_reason: str | None = None
        self._stopped = False

    def feed(self, event: dict[str, Any]) -> list[LLMEvent]:
        try:
            return self._feed(event)
        except (AttributeError, KeyError, TypeError) as exc:
            kind = event.get("type", "?") if isinstance(event, dict) else "?"
            raise LLMError(f"Anthropic sent a malformed {kind!r} stream event ({exc!r}).") from exc

    def _feed(self, event: dict[str, Any]) -> list[LLMEvent]:
        kind = event["type"]
        if kind == "content_block_delta":
            delta = event["delta"]
            kind = delta["type"]
            if kind == "text_delta":
                return [{"type": "text_delta", "delta": delta["text"]}]
            if kind == "thinking_delta":
                return [{"type": "thinking_delta", "delta": delta["thinking"]}]
            if kind == "signature_delta":
                return [{"type": "thinking_delta", "delta": "", "signature": delta["signature"]}]
            if kind == "input_json_delta":
                buffer = self._tools.get(event["index"])
                if buffer is None:
                    raise LLMError(f"Anthropic sent tool input for content block "
                                   f"{event['index']}, which is not a tool_use block.")
                buffer.parts.append(delta["partial_json"])
            return []
        if kind == "content_block_start":
            block = event["content_block"]
            if block["type"] == "tool_use":
                self._tools[event["index"]] = _ToolBuffer(block["id"], block["name"],
                                                          block.get("input"))
            return []
        if kind == "content_block_stop":
            buffer = self._tools.pop(event["index"], None)
            return [buffer.event()] if buffer is not None else []
        if kind == "message_start":
            self._merge_usage(event["message"].get("usage") or {})
        elif kind == "message_delta":
            self._stop_reason = event["delta"].get("stop_reason")
            # message_delta counts are cumulative: they replace, absent ones keep the start's.
            self._merge_usage(event.get("usage") or {})
        elif kind == "message_stop":
            self._stopped = True
            usage: LLMEvent = {"type": "usage",  # type: ignore[typeddict-item]
                               **{name: self._usage.get(name, 0) for name in USAGE_FIELDS}}
            return [usage, {"type": "finish", "stop_reason": self._stop_reason or "end_turn"}]
        elif kind == "error":
            error_type, detail = error_detail(event, "")
            raise stream_error(error_type, detail or error_type or "no detail", self._model,
                               clean=self._clean)
        return []

    def _merge_usage(self, usage: dict[str, Any]) -> None:
        for name in USAGE_FIELDS:
            value = usage.get(name)
            if value is not None:
                self._usage[name] = value

    def check_complete(self) -> None:
        if not self._stopped:
            raise LLMError(
                "The Anthropic stream ended before message_stop: the response is incomplete.",
                retryable=True,
            )
