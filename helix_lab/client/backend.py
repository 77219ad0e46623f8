"""``Backend``: the client side of the agent servers, one implementation for both hosts.

Both backends speak the Worker's HTTP routes through an ``httpx.AsyncClient`` for their
control calls; only the transport differs, which is the seam httpx is built around:

- :class:`LocalBackend` mounts a :class:`~helix_lab.runtime.LocalNamespace` as an
  in-process transport (no sockets; the request goes through the same gateway code the
  Worker runs). Its stream skips HTTP altogether: it reads the session's stream
  subscription in this process, so a chunk is never encoded, framed and parsed back;
- :class:`RemoteBackend` uses the network, with a bearer token, and can stream over
  WebSockets instead of SSE.

Streams drop any sequence they have already yielded (the one dedupe, here at the client);
remote streams reconnect from the last sequence seen, with backoff, so a dropped
connection shows up as nothing at all to the caller.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from ..errors import BackendError, UnreachableError, UserError, backend_error
from ..runtime.chunks import TERMINAL
from .handle import AgentHandle

if TYPE_CHECKING:
    import httpx

    from ..runtime.namespace import LocalNamespace
    from ..runtime.stream import Subscription

__all__ = ["Backend", "LocalBackend", "RemoteBackend", "poll_until"]

T = TypeVar("T")


class Backend:
    """Start sessions and talk to them. Subclasses only choose the HTTP transport."""

    name = "backend"

    def __init__(self, client: httpx.AsyncClient, *, reconnect_attempts: int = 8) -> None:
        self._client = client
        self.reconnect_attempts = reconnect_attempts

    # -- plumbing --------------------------------------------------------------------------

    def _url(self, session_id: str, endpoint: str) -> str:
        return f"/sessions/{session_id}{endpoint}"

    async def _send(self, method: str, url: str, *, json_body: Any = None,
                    params: dict[str, Any] | None = None) -> Any:
        import httpx

        try:
            response = await self._client.request(method, url, json=json_body, params=params)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        try:
            body = response.json()
        except ValueError:
            body = {"error": {"code": "bad_response",
                              "message": f"HTTP {response.status_code}: {response.text[:200]}"}}
        if response.status_code >= 400:
            raise backend_error(response.status_code, body)
        return body

    def _unreachable(self, exc: Exception) -> UnreachableError:
        return UnreachableError(f"{self.describe()} is unreachable ({type(exc).__name__}: "
                                f"{exc}). Is the server running?", code="unreachable")

    def describe(self) -> str:
        return self.name

    async def request(self, session_id: str, method: str, endpoint: str, *, json: Any = None,
                      params: dict[str, Any] | None = None) -> Any:
        """Call one endpoint of a session; errors raise :class:`~helix_lab.errors.BackendError`."""
        return await self._send(method, self._url(session_id, endpoint), json_body=json,
                                params=params)

    # -- the Backend protocol --------------------------------------------------------------

    async def agents(self) -> list[str]:
        return (await self._send("GET", "/agents"))["agents"]

    async def health(self) -> bool:
        return bool((await self._send("GET", "/health")).get("ok"))

    async def start(self, agent_type: str, message: str, session_id: str | None = None,
                    state: dict[str, Any] | None = None,
                    messages: list[dict[str, Any]] | None = None, *,
                    max_cost_usd: float | None = None) -> AgentHandle:
        """Start ``agent_type`` on ``message`` in a new (or given) session.

        ``max_cost_usd`` is a budget for the session's spend: past it, the run stops
        softly (reason ``budget_exceeded``); resume with a higher one to go on."""
        import secrets

        session_id = session_id or f"{agent_type}-{secrets.token_hex(4)}"
        payload: dict[str, Any] = {"message": message}
        if state is not None:
            payload["state"] = state
        if messages is not None:
            payload["messages"] = messages
        request: dict[str, Any] = {"agentType": agent_type, "sessionId": session_id,
                                   "input": payload}
        if max_cost_usd is not None:
            request["maxCostUsd"] = max_cost_usd
        body = await self.request(session_id, "POST", "/start", json=request)
        return AgentHandle(self, body.get("sessionId", session_id), body.get("runId"),
                           agent_type)

    def handle(self, session_id: str, agent_type: str | None = None) -> AgentHandle:
        """A handle on an existing session (no request is made)."""
        return AgentHandle(self, session_id, None, agent_type)

    async def stream(self, session_id: str, from_sequence: int = 0, *,
                     follow: bool = False) -> AsyncIterator[dict[str, Any]]:
        """Chunks after ``from_sequence``; reconnects on drops and never repeats a sequence."""
        last = from_sequence
        failures = 0
        while True:
            try:
                # aclosing: a caller that stops early closes the connection there and then,
                # not whenever the loop gets round to finalizing the generator.
                async with aclosing(self._open_stream(session_id, last, follow)) as batches:
                    async for batch in batches:
                        failures = 0
                        for chunk in batch:
                            sequence = chunk["sequence"]
                            if sequence > last:
                                last = sequence
                                yield chunk
                return
            except BackendError:
                raise
            except (OSError, EOFError, ConnectionError, _Dropped) as exc:
                failures += 1
                if failures > self.reconnect_attempts:
                    raise self._unreachable(exc) from None
                await asyncio.sleep(min(0.1 * 2 ** (failures - 1), 2.0))
                resync = await self._resync(session_id, last)
                if resync is not None:
                    last = resync["sequence"]
                    yield resync

    async def _resync(self, session_id: str, last: int) -> dict[str, Any] | None:
        """After a drop: a ``stream_resync`` chunk if the server is now behind this client.

        That happens only when the server lost chunks it had sent (its storage was
        restored from an older copy). Without a resync, the client would drop every new
        chunk as already seen.
        """
        try:
            status = await self.request(session_id, "GET", "/status")
        except BackendError:
            return None  # still down: the next attempt reports it
        server_last = int(status.get("lastSequence") or 0)
        if server_last >= last:
            return None
        return {"type": "stream_resync", "sequence": server_last, "previousSequence": last,
                "agentId": session_id, "reason": "the server has fewer chunks than this "
                "client saw; its storage was reset or restored"}

    async def _open_stream(self, session_id: str, after: int,
                           follow: bool) -> AsyncIterator[list[dict[str, Any]]]:
        """Batches of chunks (one per read) from one connection; ends at the end event.

        It asks for the batched framing (``batch=1``: one event per page of chunks); a
        server that sends one event per chunk instead is read just the same."""
        import httpx
        import msgspec  # a third faster than json.loads on a page of chunks

        from ..runtime.sse import BATCH_EVENT, END_EVENT, iter_sse_batches

        params = {"fromSequence": after, "batch": 1, **({"follow": 1} if follow else {})}
        try:
            async with self._client.stream("GET", self._url(session_id, "/sse"),
                                           params=params, timeout=None) as response:
                await _raise_for_error(response)
                async for events in iter_sse_batches(response.aiter_bytes(), msgspec.json.decode):
                    batch = []
                    for event, data in events:
                        if event == BATCH_EVENT:
                            batch.extend(data)
                        elif event == END_EVENT:
                            if batch:
                                yield batch
                            return
                        else:
                            batch.append(data)
                    yield batch
        except httpx.TransportError as exc:
            raise _Dropped(str(exc)) from exc
        raise _Dropped("the stream ended without its end event")

    async def export_lines(self, session_id: str) -> AsyncIterator[dict[str, Any]]:
        """``GET /export``, one JSON line at a time (see :mod:`helix_lab.runtime.export`)."""
        import httpx

        try:
            async with self._client.stream("GET", self._url(session_id, "/export"),
                                           timeout=None) as response:
                await _raise_for_error(response)
                async for line in response.aiter_lines():
                    if line:
                        yield json.loads(line)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> Backend:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class _Dropped(Exception):
    """The stream broke off; reconnect from the last sequence."""


async def _raise_for_error(response: httpx.Response) -> None:
    """A streamed response that is an error: read its JSON body and raise it."""
    if response.status_code >= 400:
        await response.aread()
        raise backend_error(response.status_code, response.json())


class LocalBackend(Backend):
    """The in-kernel backend: a :class:`LocalNamespace` behind an in-process transport,
    with streams read straight from the session's subscription."""

    name = "local"

    def __init__(self, namespace: LocalNamespace) -> None:
        import httpx

        from .transport import NamespaceTransport

        self.namespace = namespace
        super().__init__(httpx.AsyncClient(transport=NamespaceTransport(namespace),
                                           base_url="http://helix.local", timeout=None))

    def describe(self) -> str:
        return f"the local namespace at {self.namespace.storage}"

    def stream(self, session_id: str, from_sequence: int = 0, *,
               follow: bool = False) -> AsyncIterator[dict[str, Any]]:
        """Chunks after ``from_sequence`` from the session's subscription, in order and
        without repeats; nothing can drop in between, so there is nothing to reconnect.
        The stream is the subscription's own client generator (no generator of ours
        around it: a chunk costs one hop less)."""
        from ..runtime.stream import client_chunks

        return client_chunks(lambda: self._subscribe(session_id, from_sequence, follow))

    async def _subscribe(self, session_id: str, from_sequence: int,
                         follow: bool) -> Subscription | None:
        from ..runtime.gateway import check_session_id, session_object_name

        problem = check_session_id(session_id)
        if problem is not None:
            raise backend_error(problem.status, json.loads(problem.body))
        namespace = self.namespace
        return await namespace.subscribe(
            namespace.id_from_name(session_object_name(session_id)), from_sequence,
            follow=follow)


class RemoteBackend(Backend):
    """A deployed Worker or ``helix serve``, over HTTP with a bearer token."""

    name = "remote"

    def __init__(self, base_url: str, token: str | None = None, *,
                 stream_via: Literal["sse", "websocket"] = "sse", timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        import httpx

        if not base_url.startswith(("http://", "https://")):
            raise UserError(f"base_url must start with http:// or https://, got {base_url!r}.")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.stream_via = stream_via
        headers = {"authorization": f"Bearer {token}"} if token else {}
        super().__init__(httpx.AsyncClient(base_url=self.base_url, headers=headers,
                                           timeout=timeout, transport=transport))

    def describe(self) -> str:
        return f"the server at {self.base_url}"

    def __repr__(self) -> str:  # never show the token
        return f"RemoteBackend({self.base_url!r}, stream_via={self.stream_via!r})"

    async def _open_stream(self, session_id: str, after: int,
                           follow: bool) -> AsyncIterator[list[dict[str, Any]]]:
        if self.stream_via == "sse":
            async with aclosing(super()._open_stream(session_id, after, follow)) as batches:
                async for batch in batches:
                    yield batch
            return
        import websockets

        url = self.base_url.replace("http", "ws", 1) + self._url(session_id, "/")
        headers = {"authorization": f"Bearer {self._token}"} if self._token else {}
        try:
            async with websockets.connect(f"{url}?fromSequence={after}",
                                          additional_headers=headers) as ws:
                async for text in ws:
                    chunk = json.loads(text)
                    yield [chunk]
                    if chunk["type"] in TERMINAL and not follow:
                        status = await self.request(session_id, "GET", "/status")
                        if not status["isExecuting"] and chunk["sequence"] >= status[
                                "lastSequence"]:
                            return
        except websockets.InvalidStatus as exc:
            status = exc.response.status_code
            raise backend_error(status, json.loads(exc.response.body or b"{}")) from None
        except websockets.ConnectionClosed as exc:
            raise _Dropped(str(exc)) from exc
        raise _Dropped("the WebSocket closed")


async def poll_until(check: Callable[[], Awaitable[Any]], interval: float = 1.0,
                     timeout: float = 60.0) -> Any:
    """Call ``check`` every ``interval`` seconds until it reports done; return its value.

    ``check`` returns ``{"done": True, "value": v}`` / ``{"done": False}`` as in the seed,
    or a ``(done, value)`` tuple. Raises :class:`TimeoutError` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if isinstance(result, tuple):
            done, value = result
        elif isinstance(result, dict):
            done, value = bool(result.get("done")), result.get("value")
        else:
            raise UserError("poll_until's check must return {'done': ..., 'value': ...} or "
                            "a (done, value) tuple.")
        if done:
            return value
        if time.monotonic() + interval > deadline:
            raise TimeoutError(f"poll_until gave up after {timeout:g} s.")
        await asyncio.sleep(interval)
