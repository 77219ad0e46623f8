"""Reading a Workers response body from Python, chunk by chunk, as bytes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

__all__ = ["body_bytes"]


async def body_bytes(response: Any) -> AsyncIterator[bytes]:
    """The body of a ``workers`` response (a JS ReadableStream on Cloudflare) as bytes."""
    body = response.body
    if body is None:
        return
    async for chunk in body:
        to_bytes = getattr(chunk, "to_bytes", None)  # a JS Uint8Array proxy
        yield to_bytes() if to_bytes is not None else bytes(chunk)
