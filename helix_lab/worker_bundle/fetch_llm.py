"""Claude over the Messages API through an injected ``fetch``, for the Python Worker.

The ``anthropic`` SDK cannot be bundled into a Worker (its Rust dependencies have no
Pyodide wheels offline), so inside the Worker model calls go out through the Worker's own
``fetch``: ``POST {base_url}/v1/messages`` with ``"stream": true``, and the server-sent
events are decoded here. The adapter speaks :class:`~helix_lab.llm.base.LLMAdapter`::

    from workers import fetch
    llm = FetchAnthropicLLM(api_key=env.ANTHROPIC_API_KEY, fetch=fetch)

``fetch`` is anything shaped like ``workers.fetch``: ``await fetch(url, method=,
headers=, body=)`` returning an object with ``status``, ``headers.get(name)``,
``await text()`` and ``body``, an async iterable of chunks (bytes, or JS ``Uint8Array``
proxies with ``to_bytes()``). On CPython the ``helix serve`` stand-in's ``fetch`` (httpx)
fits, and tests can pass their own.

The request body, the translation of stream events and the error messages come from
:mod:`helix_lab.llm.anthropic_wire`, as for :class:`~helix_lab.llm.AnthropicAdapter`, so
both send the same body and fail with the same messages and ``retryable`` flags. The
server-sent events are split by :class:`~helix_lab.runtime.sse.SSEDecoder`: neither
httpx-sse nor the SDK's decoder can be imported in a Worker (both import their HTTP
library). The key is only ever
sent in the ``x-api-key`` header; it never appears in an error, a log or a ``repr``.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from ..llm._http import redact, retry_after_seconds
from ..llm.anthropic_wire import (
    StreamTranslator,
    error_detail,
    messages_body,
    parse_event,
    status_error,
)
from ..llm.base import LLMError, LLMEvent, LLMRequest
from ..runtime.sse import SSEDecoder
from .jsbody import body_bytes

__all__ = ["DEFAULT_BASE_URL", "Fetch", "FetchAnthropicLLM"]

DEFAULT_BASE_URL = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"

Fetch = Callable[..., Awaitable[Any]]
"""``await fetch(url, *, method, headers, body) -> response`` (the ``workers.fetch`` shape)."""


class FetchAnthropicLLM:
    """An :class:`~helix_lab.llm.base.LLMAdapter` for Claude on a ``fetch`` function."""

    def __init__(self, api_key: str, *, fetch: Fetch, base_url: str | None = None,
                 model_default: str | None = None,
                 anthropic_version: str = ANTHROPIC_VERSION) -> None:
        if not api_key:
            raise LLMError("No Anthropic API key: set the ANTHROPIC_API_KEY secret "
                           "(wrangler secret put ANTHROPIC_API_KEY).")
        self._key = api_key
        self._fetch = fetch
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self.model_default = model_default
        self.anthropic_version = anthropic_version

    def __repr__(self) -> str:
        return f"FetchAnthropicLLM(base_url={self.base_url!r}, model_default={self.model_default!r})"

    def payload(self, request: LLMRequest) -> dict[str, Any]:
        """The Messages API body for ``request`` (streaming on)."""
        body = messages_body(request, self.model_default,
                             no_model="set the agent's LLMConfig(model=...)")
        body["stream"] = True
        return body

    async def stream(self, request: LLMRequest) -> AsyncIterator[LLMEvent]:
        body = self.payload(request)
        url = f"{self.base_url}/v1/messages"
        headers = {"x-api-key": self._key, "anthropic-version": self.anthropic_version,
                   "content-type": "application/json", "accept": "text/event-stream"}
        try:
            response = await self._fetch(url, method="POST", headers=headers,
                                         body=json.dumps(body))
        except LLMError:
            raise
        except Exception as exc:  # OSError from pyfetch, a JsException, ...
            raise LLMError(self._clean(f"Could not reach Anthropic at {self.base_url}: "
                                       f"{type(exc).__name__}: {exc}"), retryable=True) from None
        status = int(response.status)
        if status >= 400:
            raise await self._status_error(response, status, body["model"])
        translator = StreamTranslator(model=body["model"], clean=self._clean)
        decoder = SSEDecoder()
        utf8 = codecs.getincrementaldecoder("utf-8")()
        finished = False
        try:
            async for chunk in body_bytes(response):
                for event, data in decoder.feed(utf8.decode(chunk)):
                    if event == "ping":
                        continue
                    for item in translator.feed(parse_event(data)):
                        yield item
            translator.check_complete()
            finished = True
        except LLMError:
            raise
        except Exception as exc:
            raise LLMError(self._clean(
                f"The connection to Anthropic dropped mid-response ({type(exc).__name__}: "
                f"{exc or 'no detail'})."), retryable=True) from None
        finally:
            if not finished:
                _cancel(response)

    async def _status_error(self, response: Any, status: int, model: str) -> LLMError:
        try:
            text = await response.text()
        except Exception:
            text = ""
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        _, detail = error_detail(parsed, text[:300] or f"HTTP {status}")
        return status_error(status, detail, model, clean=self._clean,
                            retry_after=retry_after_seconds(_Headers(response.headers)))

    def _clean(self, message: str) -> str:
        return redact(message, self._key)


class _Headers:
    """Case-insensitive ``get`` over whatever headers object the fetch returned."""

    def __init__(self, headers: Any) -> None:
        self._headers = headers

    def get(self, name: str, default: Any = None) -> Any:
        getter = getattr(self._headers, "get", None)
        if getter is None:
            return default
        value = getter(name)
        if value is None:
            value = getter(name.title())
        return default if value is None else value


def _cancel(response: Any) -> None:
    body = getattr(response, "body", None)
    cancel = getattr(body, "cancel", None)
    if cancel is None:
        return
    try:
        cancel()  # on Workers this returns a JS promise; nothing waits for it
    except Exception:
        pass
