"""Between the ``workers`` SDK and the runtime: requests in, responses out.

The runtime speaks its own small :class:`~helix_lab.runtime.http.Request` and
:class:`~helix_lab.runtime.http.Response`; the front door and the Durable Object convert
at their edge with :func:`to_helix_request` and :func:`to_worker_response`. A streaming
body (SSE) is written into a ``TransformStream`` by a background task, which is why the
converters take a ``spawn`` function.
"""

from __future__ import annotations

import asyncio
import codecs
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

from workers import Response

from ..errors import BackendError
from ..runtime.http import Request as HelixRequest
from ..runtime.http import Response as HelixResponse
from ..runtime.http import error_response

__all__ = ["BadMethod", "Spawn", "cancel_tasks", "is_upgrade", "spawner", "to_helix_request",
           "to_worker_response", "worker_error"]

Spawn = Callable[[Coroutine[Any, Any, Any]], Any]


class BadMethod(BackendError):
    """The request's method is not one the runtime can name (answered with a 405)."""

    status = 405
    default_code = "method_not_allowed"

    def __init__(self) -> None:
        super().__init__("Use GET or POST.")


class _UpgradeMarker:
    """Stands in the front door's request for the socket only the object can create."""

    def send(self, text: str) -> None:
        raise RuntimeError("The front door has no WebSocket; the Durable Object accepts it.")

    def close(self, code: int = 1000, reason: str = "") -> None:
        pass


def is_upgrade(headers: dict[str, str]) -> bool:
    """Whether the (lower-cased) headers ask for a WebSocket."""
    return headers.get("upgrade", "").lower() == "websocket"


async def to_helix_request(request: Any) -> HelixRequest:
    """A ``workers.Request`` as the runtime's request (the body is read here)."""
    try:
        method = request.method
    except (KeyError, ValueError):
        raise BadMethod() from None
    method = str(getattr(method, "value", method)).upper()
    parts = urlsplit(str(request.url))
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {str(k).lower(): str(v) for k, v in request.headers.items()}
    body = b"" if method in ("GET", "HEAD") else await request.bytes()
    return HelixRequest(method, target, body=body, headers=headers,
                        websocket=_UpgradeMarker() if is_upgrade(headers) else None)


def spawner(tasks: set[asyncio.Future[Any]]) -> Spawn:
    """A ``spawn`` that keeps each task in ``tasks`` (a strong reference) until it ends."""

    def spawn(coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    return spawn


async def cancel_tasks(tasks: set[asyncio.Future[Any]]) -> None:
    """Cancel what a :func:`spawner` started and wait until it has ended (a host shuts down)."""
    for task in list(tasks):
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


def _streaming_response(stream: AsyncIterator[bytes], status: int, headers: dict[str, str],
                        spawn: Spawn) -> Any:
    """A Response whose body is written from ``stream`` by a background task."""
    from js import TextEncoder, TransformStream

    pipe = TransformStream.new()
    writer = pipe.writable.getWriter()
    encoder = TextEncoder.new()

    async def pump() -> None:
        utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        try:
            async for piece in stream:
                text = utf8.decode(piece)
                if text:
                    await writer.write(encoder.encode(text))
        except Exception:
            pass  # the reader went away; stop quietly
        finally:
            closer = getattr(stream, "aclose", None)
            if closer is not None:
                try:
                    await closer()
                except Exception:
                    pass
            try:
                await writer.close()
            except Exception:
                pass

    spawn(pump())  # not awaited here: a write waits for a reader, which needs the Response
    return Response(pipe.readable, status=status, headers=headers)


def to_worker_response(response: HelixResponse, spawn: Spawn) -> Any:
    """The runtime's response as a ``workers.Response`` (an object's own one passes through)."""
    native = getattr(response, "native", None)
    if native is not None:
        return native
    if response.stream is not None:
        return _streaming_response(response.stream, response.status, dict(response.headers),
                                   spawn)
    return Response(response.body, status=response.status, headers=dict(response.headers))


def _no_spawn(coro: Coroutine[Any, Any, Any]) -> None:
    coro.close()
    raise RuntimeError("no background tasks here")


def worker_error(status: int, code: str, message: str) -> Any:
    """The wire's error body as a ``workers.Response``."""
    return to_worker_response(error_response(status, code, message), _no_spawn)
