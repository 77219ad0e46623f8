"""Claude through the official ``anthropic`` SDK, as a stream of :data:`LLMEvent` dicts.

::

    adapter = AnthropicAdapter("claude-sonnet-5-5")      # key from ANTHROPIC_API_KEY
    async for event in adapter.stream(LLMRequest(model="", messages=[...])):
        print(event)   # {"type": "text_delta", "delta": "Hel"} ... {"type": "finish", ...}

The SDK is imported when the adapter is built, not on ``import helix_lab``: it is slow to
import. Its own retries are switched off (``max_retries=0``) because the executor retries,
so that every retry is visible to the user as a chunk. Every SDK or transport failure
leaves this module as an :class:`LLMError`, mapped in one place: :meth:`AnthropicAdapter._errors`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Self

from ._http import is_transient_status, redact, retry_after_seconds
from .base import LLMError, LLMEvent, LLMRequest

__all__ = ["AnthropicAdapter"]

# An ``error`` event inside a 200 stream carries no status; its type tells what it would be.
_ERROR_TYPE_STATUS = {
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

_USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)


class AnthropicAdapter:
    """Streams Messages API calls through ``anthropic.AsyncAnthropic``.

    ``api_key`` falls back to ``ANTHROPIC_API_KEY``, then to the SDK's own credential chain.
    ``http_client`` must be an ``httpx2.AsyncClient`` (the SDK is built on httpx2); it is
    the seam for custom transports. ``client`` takes a ready SDK client instead; a copy of
    it with retries off is used.
    """

    def __init__(
        self,
        model_default: str | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        http_client: Any = None,
        client: Any = None,
    ) -> None:
        self.model_default = model_default
        if client is not None:
            if api_key is not None or base_url is not None or http_client is not None:
                raise TypeError(
                    "AnthropicAdapter takes either client= or api_key/base_url/http_client, "
                    "not both: configure the client you pass instead."
                )
            with_options = getattr(client, "with_options", None)
            self._client = with_options(max_retries=0) if with_options else client
            self._secret: str | None = getattr(client, "api_key", None)
            self._owns_client = False  # the copy shares the caller's connection pool
        else:
            import anthropic

            key = api_key or os.environ.get("ANTHROPIC_API_KEY") or None
            options: dict[str, Any] = {"max_retries": 0}
            if key:
                options["api_key"] = key
            if base_url:
                options["base_url"] = base_url
            if http_client is not None:
                options["http_client"] = http_client
            try:
                self._client = anthropic.AsyncAnthropic(**options)
            except TypeError as exc:
                if http_client is not None and "http_client" in str(exc):
                    raise TypeError(
                        f"AnthropicAdapter(http_client=...) needs an httpx2.AsyncClient, got "
                        f"{type(http_client).__name__}: anthropic {anthropic.__version__} is "
                        "built on httpx2, not httpx."
                    ) from None
                raise
            self._secret = key
            self._owns_client = True
        self.base_url = str(self._client.base_url)

    def __repr__(self) -> str:
        return f"AnthropicAdapter(model_default={self.model_default!r}, base_url={self.base_url!r})"

    async def aclose(self) -> None:
        """Close the SDK client and its connections, unless the caller passed it in."""
        if self._owns_client:
            await self._client.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def stream(self, request: LLMRequest) -> AsyncIterator[LLMEvent]:
        params = self._params(request)
        translator = _Translator()
        with self._errors(params["model"]):
            response = await self._client.messages.create(**params, stream=True)
            async with response:
                async for raw in response:
                    for event in translator.feed(raw):
                        yield event
            translator.check_complete()

    def _params(self, request: LLMRequest) -> dict[str, Any]:
        model = request.model or self.model_default
        if not model:
            raise LLMError(
                "No model given: set LLMRequest.model or AnthropicAdapter(model_default=...)."
            )
        params: dict[str, Any] = {
            "model": model,
            "max_tokens": request.max_tokens,
            # Canonical messages are already Anthropic-shaped: they go over as they are.
            "messages": request.messages,
        }
        if request.system:
            params["system"] = request.system
        if request.tools:
            params["tools"] = [
                {
                    "name": t["name"],
                    "description": t["description"],
                    "input_schema": t["input_schema"],
                }
                for t in request.tools
            ]
            if request.tool_choice in (None, "auto"):
                params["tool_choice"] = {"type": "auto"}
            else:
                params["tool_choice"] = {"type": "tool", "name": request.tool_choice}
        elif request.tool_choice not in (None, "auto"):
            raise LLMError(
                f"tool_choice={request.tool_choice!r} names a tool, but the request has no tools."
            )
        if request.thinking_budget:
            params["thinking"] = {"type": "enabled", "budget_tokens": request.thinking_budget}
        if request.temperature is not None:
            # This SDK's create() has no temperature parameter; the API still reads the field.
            params["extra_body"] = {"temperature": request.temperature}
        return params

    @contextmanager
    def _errors(self, model: str) -> Iterator[None]:
        """Turn anything the SDK or the transport raises into an :class:`LLMError`."""
        import anthropic

        try:
            yield
        except LLMError:
            raise
        except anthropic.APIStatusError as exc:
            raise self._status_error(exc, model) from exc
        except anthropic.APIConnectionError as exc:  # APITimeoutError included
            raise LLMError(
                self._clean(f"Could not reach Anthropic at {self.base_url}: {exc}"),
                retryable=True,
            ) from exc
        except _transport_errors() as exc:
            raise LLMError(
                self._clean(
                    f"The connection to Anthropic dropped mid-response "
                    f"({type(exc).__name__}: {exc or 'no detail'})."
                ),
                retryable=True,
            ) from exc
        except json.JSONDecodeError as exc:  # the SDK decodes each event's data line
            raise LLMError(
                self._clean(f"Anthropic sent a stream event that is not valid JSON ({exc}).")
            ) from exc
        except TypeError as exc:
            if "Could not resolve authentication" not in str(exc):
                raise
            raise LLMError(
                "No Anthropic credentials found. Set ANTHROPIC_API_KEY or pass "
                "AnthropicAdapter(api_key=...)."
            ) from exc
        except anthropic.AnthropicError as exc:
            raise LLMError(self._clean(f"The anthropic SDK failed: {exc}")) from exc

    def _status_error(self, exc: Any, model: str) -> LLMError:
        body = exc.body if isinstance(exc.body, dict) else {}
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        error_type = error.get("type")
        detail = error.get("message") or str(exc)
        status = exc.status_code
        mid_stream = status < 400  # an ``error`` event after a 200 response
        if mid_stream:
            status = _ERROR_TYPE_STATUS.get(error_type, 500)
        message = _explain(status, detail, model)
        if mid_stream:
            message = f"The Anthropic stream failed mid-response ({error_type}): {message}"
        return LLMError(
            self._clean(message),
            retryable=is_transient_status(status),
            status=status,
            retry_after=None if mid_stream else retry_after_seconds(exc.response.headers),
        )

    def _clean(self, message: str) -> str:
        return redact(message, self._secret)


def _explain(status: int, detail: str, model: str) -> str:
    """A one-line message for an HTTP error status that names the fix where there is one."""
    if status == 401:
        return "Anthropic rejected the API key (401). Set ANTHROPIC_API_KEY to a valid key."
    if status == 402:
        return f"Anthropic refused the request for billing reasons (402: {detail}). Check the account's credit."
    if status == 403:
        return f"Anthropic refused access (403: {detail}). Check that this API key may use model {model!r}."
    if status == 404:
        return f"Anthropic found nothing there (404: {detail}). Check the model name {model!r} and the base_url."
    if status == 413:
        return f"The request is too large for Anthropic (413: {detail}). Shorten the conversation or tool results."
    if status == 429:
        return f"Anthropic rate limit reached (429: {detail})."
    if status == 529:
        return f"Anthropic is overloaded (529: {detail})."
    if status >= 500:
        return f"Anthropic had a server error ({status}: {detail})."
    if status == 400:
        return f"Anthropic rejected the request as invalid (400: {detail}). Fix the messages, tools or parameters it names."
    return f"Anthropic returned HTTP {status}: {detail}"


def _transport_errors() -> tuple[type[BaseException], ...]:
    # A stream that drops after the 200 surfaces as the HTTP library's own error, not the
    # SDK's. Look the classes up among already-imported modules rather than importing them.
    found = [
        sys.modules[name].TransportError for name in ("httpx2", "httpx") if name in sys.modules
    ]
    return tuple(found)


@dataclass
class _ToolBuffer:
    id: str
    name: str
    start_input: Any
    parts: list[str] = field(default_factory=list)

    def event(self) -> LLMEvent:
        text = "".join(self.parts)
        if not text:  # a tool without arguments may send no input_json_delta at all
            value = self.start_input or {}
        else:
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise LLMError(
                    f"Anthropic returned invalid JSON for the input of tool call {self.name!r} "
                    f"({exc}). If the response hit max_tokens, raise max_tokens."
                ) from exc
        if not isinstance(value, dict):
            raise LLMError(
                f"Anthropic returned a {type(value).__name__} as the input of tool call "
                f"{self.name!r}; tool input must be a JSON object."
            )
        return {"type": "tool_call", "id": self.id, "name": self.name, "input": value}


class _Translator:
    """Raw Messages API stream events in, :data:`LLMEvent` dicts out. No I/O."""

    def __init__(self) -> None:
        self._tools: dict[int, _ToolBuffer] = {}
        self._usage: dict[str, int] = {}
        self._stop_reason: str | None = None
        self._stopped = False

    def feed(self, raw: Any) -> list[LLMEvent]:
        try:
            return self._feed(raw)
        except (AttributeError, KeyError, TypeError) as exc:
            raise LLMError(
                f"Anthropic sent a malformed {getattr(raw, 'type', '?')!r} stream event ({exc})."
            ) from exc

    def _feed(self, event: Any) -> list[LLMEvent]:
        kind = event.type
        if kind == "content_block_delta":
            delta = event.delta
            if delta.type == "text_delta":
                return [{"type": "text_delta", "delta": delta.text}]
            if delta.type == "thinking_delta":
                return [{"type": "thinking_delta", "delta": delta.thinking}]
            if delta.type == "signature_delta":
                return [{"type": "thinking_delta", "delta": "", "signature": delta.signature}]
            if delta.type == "input_json_delta":
                buffer = self._tools.get(event.index)
                if buffer is None:
                    raise LLMError(
                        f"Anthropic sent tool input for content block {event.index}, "
                        "which is not a tool_use block."
                    )
                buffer.parts.append(delta.partial_json)
            # Other deltas (citations) have no canonical event yet.
            return []
        if kind == "content_block_start":
            block = event.content_block
            if block.type == "tool_use":
                self._tools[event.index] = _ToolBuffer(block.id, block.name, block.input)
            # redacted_thinking and server tool blocks have no canonical event yet.
            return []
        if kind == "content_block_stop":
            buffer = self._tools.pop(event.index, None)
            return [buffer.event()] if buffer is not None else []
        if kind == "message_start":
            self._merge_usage(event.message.usage)
        elif kind == "message_delta":
            self._stop_reason = event.delta.stop_reason
            # message_delta counts are cumulative: they replace, and absent ones keep the start's.
            self._merge_usage(event.usage)
        elif kind == "message_stop":
            self._stopped = True
            usage: LLMEvent = {"type": "usage", **{f: self._usage.get(f, 0) for f in _USAGE_FIELDS}}  # type: ignore[typeddict-item]
            return [usage, {"type": "finish", "stop_reason": self._stop_reason or "end_turn"}]
        return []

    def _merge_usage(self, usage: Any) -> None:
        for name in _USAGE_FIELDS:
            value = getattr(usage, name, None)
            if value is not None:
                self._usage[name] = value

    def check_complete(self) -> None:
        if not self._stopped:
            raise LLMError(
                "The Anthropic stream ended before message_stop: the response is incomplete.",
                retryable=True,
            )
