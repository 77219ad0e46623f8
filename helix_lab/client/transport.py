"""An httpx transport that answers requests from a namespace in this process.

It runs the same :func:`~helix_lab.runtime.gateway.route` as the Worker, so the local
backend exercises the real routes, status codes and SSE framing without a socket.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from ..runtime.gateway import route
from ..runtime.http import Request
from ..runtime.registry import registered_types

__all__ = ["NamespaceTransport", "agent_types_of"]


def agent_types_of(server_class: Any) -> list[str]:
    """The agent types a server class can resolve, when its resolver can list them."""
    return registered_types(server_class.config.agents)


class _Body(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterator[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for piece in self._stream:
            yield piece

    async def aclose(self) -> None:
        closer = getattr(self._stream, "aclose", None)
        if closer is not None:
            await closer()


class NamespaceTransport(httpx.AsyncBaseTransport):
    """Route httpx requests to a :class:`~helix_lab.runtime.LocalNamespace`."""

    def __init__(self, namespace: Any, token: str | None = None) -> None:
        self.namespace = namespace
        self.token = token

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        inner = Request(request.method, request.url.raw_path.decode("ascii"), body=body,
                        headers=dict(request.headers))
        response = await route(inner, self.namespace, token=self.token,
                               agent_types=lambda: agent_types_of(self.namespace.server_class))
        if response.stream is not None:
            return httpx.Response(response.status, headers=response.headers,
                                  stream=_Body(response.stream))
        return httpx.Response(response.status, headers=response.headers, content=response.body)
