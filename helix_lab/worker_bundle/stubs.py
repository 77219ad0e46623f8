"""The ``AGENTS`` Durable Object binding as the runtime's namespace.

:class:`WorkerNamespace` adapts the binding to :class:`~helix_lab.runtime.gateway.Namespace`,
and :class:`WorkerStub` a stub's ``fetch`` to the runtime's requests and responses. The
front door routes sessions through it, and an object reaches its sub-agents' objects
through it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ..errors import UnreachableError
from ..runtime.http import Request as HelixRequest
from ..runtime.http import Response as HelixResponse
from ..runtime.http import as_request
from .jsbody import body_bytes

__all__ = ["INTERNAL_ORIGIN", "ObjectUnavailable", "WorkerNamespace", "WorkerStub"]

INTERNAL_ORIGIN = "https://helix.internal"
"""Requests to Durable Object stubs need an absolute URL; the host is never looked at."""

_NOT_FORWARDED = frozenset({"authorization", "host", "content-length"})
"""Headers the front door does not pass on to the object (the token stays at the door)."""


class ObjectUnavailable(UnreachableError):
    """A Durable Object did not answer (reset, overloaded, unreachable); a 503, retryable."""

    status = 503
    default_code = "object_unavailable"


class _Forwarded(HelixResponse):
    """An object's answer: JSON bodies read, streams and upgrades kept as the native response."""

    def __init__(self, status: int, headers: dict[str, str], *, body: bytes = b"",
                 native: Any = None, stream: AsyncIterator[bytes] | None = None) -> None:
        super().__init__(body, status=status, headers=headers, stream=stream)
        self.native = native


class WorkerStub:
    """A Durable Object stub that takes and returns the runtime's requests and responses."""

    def __init__(self, stub: Any) -> None:
        self._stub = stub

    async def fetch(self, request: HelixRequest | str) -> HelixResponse:
        request = as_request(request)
        headers = {k: v for k, v in request.headers.items() if k not in _NOT_FORWARDED}
        options: dict[str, Any] = {"method": request.method, "headers": headers}
        if request.method not in ("GET", "HEAD") and request.body:
            try:  # text crosses into JS fetch() without a conversion question
                options["body"] = request.body.decode("utf-8")
            except UnicodeDecodeError:
                options["body"] = request.body
        try:
            native = await self._stub.fetch(INTERNAL_ORIGIN + request.url, **options)
        except Exception as exc:
            raise ObjectUnavailable(f"{type(exc).__name__}: {exc}") from exc
        status = int(native.status)
        reply_headers = {str(k).lower(): str(v) for k, v in native.headers.items()}
        if status == 101:
            return _Forwarded(status, reply_headers, native=native)
        if "text/event-stream" in reply_headers.get("content-type", ""):
            return _Forwarded(status, reply_headers, native=native, stream=body_bytes(native))
        return _Forwarded(status, reply_headers, body=await native.bytes())


class WorkerNamespace:
    """:class:`~helix_lab.runtime.gateway.Namespace` over a Durable Object binding."""

    def __init__(self, binding: Any) -> None:
        self._binding = binding

    def id_from_name(self, name: str) -> Any:
        return self._binding.idFromName(name)

    def get(self, object_id: Any) -> WorkerStub:
        return WorkerStub(self._binding.get(object_id))
