"""The Durable Object's WebSockets, on the hibernation API.

:class:`SocketSet` accepts an upgrade (a ``WebSocketPair`` whose server end the object
accepts with ``ctx.acceptWebSocket``, tagged with an id in its attachment), hands it to
the runtime's stream as a :class:`~helix_lab.runtime.http.WebSocketLike`, and after
hibernation puts the sockets the object still holds back on the stream. Clients only
listen; a close or error detaches the socket.
"""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING, Any

from workers import Response

from ..runtime.http import Request as HelixRequest
from ..runtime.http import close_code
from .convert import Spawn, to_worker_response

if TYPE_CHECKING:
    from ..runtime.server import AgentServer

__all__ = ["Socket", "SocketSet", "close_code"]


class Socket:
    """The runtime's view of an accepted WebSocket (``send`` / ``close``)."""

    def __init__(self, ws: Any, socket_id: str) -> None:
        self.ws = ws
        self.socket_id = socket_id

    def send(self, text: str) -> None:
        self.ws.send(text)

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.ws.close(code, reason)


def _socket_id(ws: Any) -> str | None:
    try:
        attachment = ws.deserializeAttachment()
        data = json.loads(attachment) if isinstance(attachment, str) else attachment
        return str(data["helixSocket"])
    except Exception:
        return None


class SocketSet:
    """The sockets one Durable Object holds, by the id in their attachment."""

    def __init__(self, ctx: Any) -> None:
        self._ctx = ctx
        self._sockets: dict[str, Socket] = {}

    def __len__(self) -> int:
        return len(self._sockets)

    def rehydrate(self, server: AgentServer) -> None:
        """After hibernation, put the sockets the object still holds back on the stream."""
        get_sockets = getattr(self._ctx, "getWebSockets", None)
        if get_sockets is None:
            return
        for ws in get_sockets():
            socket_id = _socket_id(ws)
            if socket_id is None or socket_id in self._sockets:
                continue
            sock = self._sockets[socket_id] = Socket(ws, socket_id)
            # Hibernation only happens when idle, so the socket had every chunk.
            server.stream.attach_socket(sock, server.stream.sequence)

    async def accept(self, server: AgentServer, inner: HelixRequest, spawn: Spawn) -> Any:
        """Answer an upgrade: a 101 with the client end, or the runtime's refusal."""
        from js import WebSocketPair

        client, end = WebSocketPair.new().object_values()
        self._ctx.acceptWebSocket(end)  # hibernation API: close events come to webSocketClose
        socket_id = secrets.token_hex(8)
        end.serializeAttachment(json.dumps({"helixSocket": socket_id}))
        sock = self._sockets[socket_id] = Socket(end, socket_id)
        response = await server.fetch(HelixRequest(inner.method, inner.url, body=inner.body,
                                                   headers=inner.headers, websocket=sock))
        if response.status != 101:
            self.forget(end, server)
            try:
                end.close(1008, "rejected")
            except Exception:
                pass
            return to_worker_response(response, spawn)
        return Response(None, status=101, web_socket=client)

    def forget(self, ws: Any, server: AgentServer | None) -> None:
        """Detach ``ws`` from the stream (it closed, failed or was refused)."""
        sock = self._sockets.pop(_socket_id(ws) or "", None)
        if sock is not None and server is not None:
            server.websocket_closed(sock)
