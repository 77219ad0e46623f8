"""``HelixAgentServer``: the Durable Object that holds one session.

It runs the same :class:`~helix_lab.runtime.server.AgentServer` as the kernel, over the
object's own SQLite (:class:`~.do_sql.DOSqlStorage`), built on first use from the agents
module (:func:`~.agents.load_agents`). Its host context gives the runtime a task spawner
and the ``AGENTS`` namespace (for sub-agents); a WebSocket upgrade on any path is
accepted through :class:`~.sockets.SocketSet`.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from ..runtime.http import Request
from ..runtime.server import AgentServer
from .agents import AgentsUnavailable, load_agents
from .convert import is_upgrade, worker_error
from .do_sql import DOSqlStorage
from .env import EnvView
from .serving import ServingObject
from .sockets import SocketSet, close_code
from .stubs import WorkerNamespace

__all__ = ["HelixAgentServer"]

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


class HelixAgentServer(ServingObject):
    """One session: the runtime's ``AgentServer`` on this object's SQLite."""

    kind = "session object"

    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        self._sockets = SocketSet(ctx)

    def _build(self) -> AgentServer:
        """The runtime object (recovered, and its sockets taken back, as it is built)."""
        env = EnvView(self.env)
        server = load_agents(env).server_class(_DOHost(self), env)
        self._sockets.rehydrate(server)
        return server

    async def _answer(self, server: Any, request: Request) -> Any:
        if is_upgrade(request.headers):
            return await self._sockets.accept(server, request, self._spawn)
        return await super()._answer(server, request)

    def _failed(self, exc: Exception) -> Any:
        if isinstance(exc, AgentsUnavailable):
            return worker_error(503, "agents_unavailable", str(exc))
        return super()._failed(exc)

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
