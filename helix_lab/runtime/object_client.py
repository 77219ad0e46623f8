"""The object a hook runs in, as the :class:`~.handle.SessionClient` of a real handle.

``after_start``, ``after_resume`` and ``after_retry`` (and
``ExecutionState.get_handle()``) get an :class:`~.handle.AgentHandle`, the class a notebook
holds: it streams, resumes, retries, sends and reads, as the seed's
``AgentExecutionHandle`` does. Its calls go to the object's own ``fetch``, not through the
object's stub: a hook runs inside a request that holds the object's input gate, and a
second request through that gate would wait for the first one forever. A call made
later, after the hook returned, also goes straight to the object; that is as safe as
Cloudflare's own input gates, which let requests interleave at every await, because each
endpoint checks that the object is idle and starts its run with no await in between. Its
stream reads the object's subscription directly, as the in-kernel backend does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol
from urllib.parse import urlencode

from ..errors import UserError, backend_error
from .http import Request, Response
from .stream import DOStreamManager, Subscription, client_chunks

__all__ = ["ObjectClient"]


class _Object(Protocol):
    """The agent server, as its own client sees it."""

    session_id: str

    @property
    def stream(self) -> DOStreamManager: ...

    async def fetch(self, request: Request) -> Response: ...


class ObjectClient:
    """A :class:`~.handle.SessionClient` that is the session's own object."""

    def __init__(self, server: _Object) -> None:
        self._server = server

    def _check(self, session_id: str) -> None:
        if session_id != self._server.session_id:
            raise UserError(f"This handle belongs to session {self._server.session_id!r}; "
                            f"session {session_id!r} is another object.")

    async def request(self, session_id: str, method: str, endpoint: str, *, json: Any = None,
                      params: dict[str, Any] | None = None) -> Any:
        """Call one endpoint of the object; an error answer raises its ``BackendError``."""
        self._check(session_id)
        url = endpoint + (f"?{urlencode(params)}" if params else "")
        request = Request(method, url) if json is None else Request(method, url, json=json)
        response = await self._server.fetch(request)
        body = response.json() if response.body else {}
        if response.status >= 400:
            raise backend_error(response.status, body)
        return body

    def stream(self, session_id: str, from_sequence: int = 0, *,
               follow: bool = False) -> AsyncIterator[dict[str, Any]]:
        """The object's chunks after ``from_sequence``, from its subscription: the
        subscription's own client generator, as the in-kernel backend's stream is."""

        async def subscribe() -> Subscription:
            self._check(session_id)
            # subscribe() flushes first: it starts behind everything already written.
            return self._server.stream.subscribe(from_sequence, follow=follow)

        return client_chunks(subscribe)
