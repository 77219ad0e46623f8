"""``ServingObject``: a Durable Object whose requests one of our servers answers.

Both bundles' objects work this way: the session object (``HelixAgentServer``, an
``AgentServer``) and the Workflows approach's stream object (``StreamServerObject``, a
``StreamServer``). The object builds its server on first use, converts each request in
and each response out (a method the runtime cannot name is a 405), keeps its background
tasks, answers any failure with a logged 500 (never a traceback on the wire), and on a
host's shutdown cancels those tasks and closes its streams. A subclass says how to build
its server, and may answer a request or a failure its own way.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from workers import DurableObject

from ..runtime.http import Request, Response
from .convert import (
    BadMethod,
    cancel_tasks,
    spawner,
    to_helix_request,
    to_worker_response,
    worker_error,
)

__all__ = ["ServingObject"]

log = logging.getLogger("helix_lab.worker")


class _Streams(Protocol):
    def close_all(self) -> None: ...


class Server(Protocol):
    """What a :class:`ServingObject` needs of its server."""

    @property
    def stream(self) -> _Streams: ...

    async def fetch(self, request: Request) -> Response: ...


class ServingObject(DurableObject):
    """The Durable Object around one server, built on first use by :meth:`_build`."""

    kind = "object"
    """Names the object in its log and in its 500s ("the stream object ...")."""

    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        self._tasks: set[asyncio.Future[Any]] = set()
        self._spawn = spawner(self._tasks)
        self._server: Server | None = None

    def _build(self) -> Server:
        raise NotImplementedError

    def _served(self) -> Server:
        """The server, built on first use (private: an object's public methods are RPC)."""
        if self._server is None:
            self._server = self._build()
        return self._server

    async def _answer(self, server: Server, request: Request) -> Any:
        """The ``workers.Response`` to one converted request."""
        return to_worker_response(await server.fetch(request), self._spawn)

    def _failed(self, exc: Exception) -> Any:
        """The response to a request that raised ``exc``."""
        log.error("the %s failed on a request: %s: %s", self.kind, type(exc).__name__, exc)
        return worker_error(500, "internal_error",
                            f"The {self.kind} hit an unexpected error; see its log.")

    async def fetch(self, request: Any) -> Any:
        try:
            server = self._served()
            try:
                inner = await to_helix_request(request)
            except BadMethod as exc:
                return worker_error(exc.status, exc.code, exc.message)
            return await self._answer(server, inner)
        except Exception as exc:
            return self._failed(exc)

    async def _host_shutdown(self) -> None:
        """Stop background work and close streams (a local host shutting down calls this)."""
        await cancel_tasks(self._tasks)
        if self._server is not None:
            self._server.stream.close_all()
