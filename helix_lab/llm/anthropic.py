"""Claude through the official ``anthropic`` SDK, as a stream of :data:`LLMEvent` dicts.

::

    adapter = AnthropicAdapter("claude-sonnet-5-5")      # key from ANTHROPIC_API_KEY
    async for event in adapter.stream(LLMRequest(model="", messages=[...])):
        print(event)   # {"type": "text_delta", "delta": "Hel"} ... {"type": "finish", ...}

The SDK is imported when the adapter is built, not on ``import helix_lab``: it is slow to
import. Its own retries are switched off (``max_retries=0``) because the executor retries,
so that every retry is visible to the user as a chunk. Every SDK or transport failure
leaves this module as an :class:`LLMError`, mapped in one place: :meth:`AnthropicAdapter._errors`.

The request body and the translation of stream events are the wire module's
(:mod:`helix_lab.llm.anthropic_wire`), shared with the Worker's fetch adapter; the SDK
parses the server-sent events. Body fields that this SDK's ``create()`` does not name
(``temperature`` in this version) go in ``extra_body``, so the API still reads them.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

from ._http import ClientOwner, redact, retry_after_seconds
from .anthropic_wire import (
    StreamTranslator,
    error_detail,
    messages_body,
    status_error,
    stream_error,
)
from .base import LLMError, LLMEvent, LLMRequest

__all__ = ["AnthropicAdapter"]

class AnthropicAdapter(ClientOwner):
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
        self._create_params: frozenset[str] | None = None

    def __repr__(self) -> str:
        return f"AnthropicAdapter(model_default={self.model_default!r}, base_url={self.base_url!r})"

    async def _close_client(self) -> None:
        await self._client.close()

    async def stream(self, request: LLMRequest) -> AsyncIterator[LLMEvent]:
        body = messages_body(request, self.model_default,
                             no_model="set LLMRequest.model or AnthropicAdapter(model_default=...)")
        translator = StreamTranslator(model=body["model"], clean=self._clean)
        with self._errors(body["model"]):
            response = await self._client.messages.create(**self._sdk_params(body), stream=True)
            async with response:
                async for raw in response:
                    # The SDK builds its event objects without validating them; as plain
                    # JSON they go through the same translation as the Worker's.
                    for event in translator.feed(raw.model_dump(warnings=False)):
                        yield event
            translator.check_complete()

    def _sdk_params(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` as ``create()`` keywords; fields it does not name go in ``extra_body``."""
        if self._create_params is None:
            self._create_params = frozenset(
                inspect.signature(self._client.messages.create).parameters)
        params = {k: v for k, v in body.items() if k in self._create_params}
        extra = {k: v for k, v in body.items() if k not in self._create_params}
        if extra:
            params["extra_body"] = extra
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
        error_type, detail = error_detail(exc.body, str(exc))
        if exc.status_code < 400:  # an ``error`` event after a 200 response
            return stream_error(error_type, detail, model, clean=self._clean)
        return status_error(exc.status_code, detail, model, clean=self._clean,
                            retry_after=retry_after_seconds(exc.response.headers))

    def _clean(self, message: str) -> str:
        return redact(message, self._secret)


def _transport_errors() -> tuple[type[BaseException], ...]:
    # A stream that drops after the 200 surfaces as the HTTP library's own error, not the
    # SDK's. Look the classes up among already-imported modules rather than importing them.
    found = [
        sys.modules[name].TransportError for name in ("httpx2", "httpx") if name in sys.modules
    ]
    return tuple(found)
