"""What the network adapters share: which failures are transient, Retry-After, redaction,
what a request's ``tool_choice`` asks for, and closing a client only if they made it.

Kept free of any HTTP library so that importing an adapter module stays cheap.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any, Self

from .base import LLMError, LLMRequest

__all__ = ["ClientOwner", "forced_tool", "is_transient_status", "redact", "retry_after_seconds",
           "tool_input"]


class ClientOwner:
    """An adapter over an HTTP client that it made itself, or that the caller passed in.

    :meth:`aclose` (and leaving ``async with adapter:``) closes the client and its
    connections only in the first case: a caller's client is the caller's to close.
    """

    _owns_client: bool

    async def _close_client(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Close the client, if this adapter made it."""
        if self._owns_client:
            await self._close_client()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def tool_input(text: str, tool: str, *, source: str = "The model") -> dict[str, Any]:
    """A streamed tool call's arguments, which must be a JSON object.

    ``text`` is what the deltas added up to; ``source`` names who sent it in the error.
    """
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise LLMError(f"{source} returned invalid JSON for the input of tool call {tool!r} "
                       f"({exc}): {text[:200]!r}. If the response hit max_tokens, raise "
                       "max_tokens.") from exc
    if not isinstance(value, dict):
        raise LLMError(f"{source} returned a {type(value).__name__} as the input of tool call "
                       f"{tool!r}; tool input must be a JSON object.")
    return value


def forced_tool(request: LLMRequest) -> str | None:
    """The tool ``request`` makes the model call, or ``None`` when the model decides.

    Each adapter writes the answer in its own API's shape; the rule is here once: ``None``
    and ``"auto"`` leave it to the model, anything else names a tool, which the request
    must offer.
    """
    choice = request.tool_choice
    if choice in (None, "auto"):
        return None
    if not request.tools:
        raise LLMError(f"tool_choice={choice!r} names a tool, but the request has no tools.")
    return choice


def is_transient_status(status: int) -> bool:
    """Whether a retry of the same request may succeed: timeouts, conflicts, 429, 5xx (529 too)."""
    return status in (408, 409, 429) or status >= 500


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The server's requested wait in seconds, or ``None`` if it did not say.

    ``headers`` should be case-insensitive (``httpx.Headers`` is). ``retry-after-ms`` wins
    because it is more precise; ``retry-after`` may be seconds or an HTTP date.
    """
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(float(millis) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def redact(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` masked, so keys never reach an error."""
    if secret and secret in text:
        return text.replace(secret, "***")
    return text
