"""``HelixAgentServer``: the Durable Object that holds one session.

It runs the same :class:`~helix_lab.runtime.server.AgentServer` as the kernel, over the
object's own SQLite (:class:`~.do_sql.DOSqlStorage`), built on first use from the agents
module (:func:`~.agents.load_agents`). Its host context gives the runtime a task spawner
and the ``AGENTS`` namespace (for sub-agents); a WebSocket upgrade on any path is
accepted through :class:`~.sockets.SocketSet`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from workers import DurableObject

from ..runtime.server import AgentServer
from .agents import AgentsUnavailable, load_agents
from .convert import (
    BadMethod,
    cancel_tasks,
    is_upgrade,
    spawner,
    to_helix_request,
    to_worker_response,
    worker_error,
)
from .do_sql import DOSqlStorage
from .env import EnvView
from .sockets import SocketSet, close_code
from .stubs import WorkerNamespace

__all__ = ["HelixAgentServer"]

log = logging.getLogger("helix_lab.worker")


def _object_id(ctx: Any) -> str:
    object_id = ctx.id
    to_string = getattr(object_id, "toString", None)
    return str(to_string() if to_string is not None else object_id)


class _DOHost:
    """The :class:`~helix_lab.runtime.server.HostContext` of one Durable Object."""

    def __init__(self, owner: HelixAgentServer) -> None:
        self._owner = owner
        self.id = _object_id(owner.ctx)
        self.sql = DOSqlStorage(owner.ctx.storage)

    @property
    def namespace(self) -> WorkerNamespace | None:
        binding = EnvView(self._owner.env).get("AGENTS")
        return WorkerNamespace(binding) if binding is not None else None

    def spawn(self, coro: Coroutine[Any, Any, None]) -> Any:
        return self._owner._spawn(coro)


class HelixAgentServer(DurableObject):
    """One session: the runtime's ``AgentServer`` on this object's SQLite."""

    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        self._tasks: set[asyncio.Future[Any]] = set()
        self._spawn = spawner(self._tasks)
        self._server: AgentServer | None = None
        self._sockets = SocketSet(ctx)

    def _agent_server(self) -> AgentServer:
        """The runtime object, built (and recovered) on first use.

        Private on purpose: a Durable Object's public methods are RPC endpoints."""
        if self._server is None:
            env = EnvView(self.env)
            server = load_agents(env).server_class(_DOHost(self), env)
            self._server = server
            self._sockets.rehydrate(server)
        return self._server

    async def fetch(self, request: Any) -> Any:
        try:
            server = self._agent_server()
            try:
                inner = await to_helix_request(request)
            except BadMethod:
                return worker_error(405, "method_not_allowed", "Use GET or POST.")
            if is_upgrade(inner.headers):
                return await self._sockets.accept(server, inner, self._spawn)
            return to_worker_response(await server.fetch(inner), self._spawn)
        except AgentsUnavailable as exc:
            return worker_error(503, "agents_unavailable", str(exc))
        except Exception as exc:
            log.error("the session object failed on a request: %s: %s", type(exc).__name__, exc)
            return worker_error(500, "internal_error",
                                "The agent server hit an unexpected error; see its log.")

    async def webSocketMessage(self, ws: Any, message: Any) -> None:
        """Clients only listen; what they send is ignored."""

    async def webSocketClose(self, ws: Any, code: int, reason: str, was_clean: bool) -> None:
        self._sockets.forget(ws, self._server)
        try:
            ws.close(close_code(code), reason or "")
        except Exception:
            pass  # already closed

    async def webSocketError(self, ws: Any, error: Any) -> None:
        self._sockets.forget(ws, self._server)

    async def _host_shutdown(self) -> None:
        """Stop background work and close streams (a local host shutting down calls this)."""
        await cancel_tasks(self._tasks)
        if self._server is not None:
            self._server.stream.close_all()
