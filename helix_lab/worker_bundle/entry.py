"""The Cloudflare Python Worker: ``Default`` is the front door, ``HelixAgentServer`` the object.

``Default`` converts each request to the runtime's :class:`~helix_lab.runtime.http.Request`
and hands it to :func:`helix_lab.runtime.gateway.route` (bearer auth, ``/health``,
``/agents``, ``/sessions/{id}/...``), with a namespace adapter over the ``AGENTS``
Durable Object binding. ``HelixAgentServer`` is that Durable Object: the same
:class:`~helix_lab.runtime.server.AgentServer` the kernel runs, over the object's own
SQLite (``ctx.storage.sql``).

Configuration, all from ``env`` (never from the bundle or from storage):

- ``HELIX_TOKEN`` (secret, required): the bearer token clients send. Without it every
  request gets a 503 that says how to set it.
- ``HELIX_AGENTS_MODULE`` (var, default ``helix_lab.examples``): imported on first use.
  It may define ``AgentServer`` (built with ``create_agent_server``), which is used as is;
  otherwise its agents are ``registry`` (an ``AgentRegistry``) if it has one, else the
  default registry its ``Agent(...)`` calls joined, and its ``llm_adapter``
  (``(env, ctx) -> LLMAdapter``) if it has one, else the default model below.
- ``ANTHROPIC_API_KEY`` (secret, optional): Claude through the Worker's ``fetch``
  (:class:`~helix_lab.worker_bundle.fetch_llm.FetchAnthropicLLM`); ``ANTHROPIC_BASE_URL``
  overrides the endpoint. Without a key, the deterministic ``OfflineLLM``.

The module imports ``workers`` (and, lazily, ``js``). On CPython, install the stand-in
first: ``helix_lab.worker_bundle.standin.install()``.
"""

from __future__ import annotations

import asyncio
import codecs
import importlib
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from workers import DurableObject, Response, WorkerEntrypoint
from workers import fetch as worker_fetch

from ..runtime.gateway import route
from ..runtime.http import Request as HelixRequest
from ..runtime.http import Response as HelixResponse
from ..runtime.http import error_response
from ..runtime.registry import AgentRegistry, default_registry
from ..runtime.server import AgentServer, create_agent_server
from .jsbody import body_bytes

__all__ = [
    "DEFAULT_AGENTS_MODULE",
    "AgentsUnavailable",
    "DOSqlStorage",
    "Default",
    "HelixAgentServer",
    "ObjectUnavailable",
    "WorkerNamespace",
    "load_agents",
]

DEFAULT_AGENTS_MODULE = "helix_lab.examples"
INTERNAL_ORIGIN = "https://helix.internal"
"""Requests to Durable Object stubs need an absolute URL; the host is never looked at."""

_NOT_FORWARDED = frozenset({"authorization", "host", "content-length"})
"""Headers the front door does not pass on to the object (the token stays at the door)."""

log = logging.getLogger("helix_lab.worker")
T = TypeVar("T")


class AgentsUnavailable(Exception):
    """The agents module could not be loaded; answered as a 503 naming the fix."""


class ObjectUnavailable(Exception):
    """A Durable Object did not answer (reset, overloaded, unreachable); a 503, retryable."""


class _EnvView:
    """The Worker ``env`` as the runtime's hooks and factories expect it.

    ``env["X"]``, ``env.get("X")`` and ``env.X`` all work; a missing name is a KeyError,
    ``None`` and an AttributeError respectively. Its repr never shows a value.
    """

    def __init__(self, env: Any) -> None:
        object.__setattr__(self, "_env", env)

    def get(self, name: str, default: Any = None) -> Any:
        try:
            value = getattr(self._env, name)
        except AttributeError:
            return default
        return default if value is None else value

    def __getitem__(self, name: str) -> Any:
        missing = object()
        value = self.get(name, missing)
        if value is missing:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)

    def __repr__(self) -> str:
        return "<Worker env>"


# -- the agents module -------------------------------------------------------------------------


@dataclass
class _Loaded:
    server_class: type[AgentServer]

    def agent_types(self) -> list[str]:
        lister = getattr(self.server_class.config.agents, "get_registered_types", None)
        return list(lister()) if lister is not None else []


_LOADED: dict[str, _Loaded] = {}


def _default_llm(env: Any, context: Any) -> Any:
    """Claude through the Worker's fetch when there is a key, else the offline model."""
    key = env.get("ANTHROPIC_API_KEY")
    if key:
        from .fetch_llm import FetchAnthropicLLM

        return FetchAnthropicLLM(key, fetch=worker_fetch, base_url=env.get("ANTHROPIC_BASE_URL"))
    from ..llm.offline import OfflineLLM

    return OfflineLLM()


def load_agents(env: Any) -> _Loaded:
    """Import the agents module named by ``HELIX_AGENTS_MODULE`` (once) and build the server."""
    name = env.get("HELIX_AGENTS_MODULE") or DEFAULT_AGENTS_MODULE
    loaded = _LOADED.get(name)
    if loaded is not None:
        return loaded
    try:
        module = importlib.import_module(name)
    except Exception as exc:
        raise AgentsUnavailable(
            f"The agents module {name!r} failed to import ({type(exc).__name__}: {exc}). "
            "Fix it, or set HELIX_AGENTS_MODULE to a module that defines agents.") from None
    server_class = getattr(module, "AgentServer", None)
    if not (isinstance(server_class, type) and issubclass(server_class, AgentServer)):
        registry = getattr(module, "registry", None)
        if not isinstance(registry, AgentRegistry):
            registry = default_registry
        server_class = create_agent_server(
            llm_adapter=getattr(module, "llm_adapter", None) or _default_llm, agents=registry)
    loaded = _LOADED[name] = _Loaded(server_class)
    return loaded


# -- request and response conversion ------------------------------------------------------------


class _BadMethod(Exception):
    pass


class _UpgradeMarker:
    """Stands in the front door's request for the socket only the object can create."""

    def send(self, text: str) -> None:
        raise RuntimeError("The front door has no WebSocket; the Durable Object accepts it.")

    def close(self, code: int = 1000, reason: str = "") -> None:
        pass


def _is_upgrade(headers: dict[str, str]) -> bool:
    return headers.get("upgrade", "").lower() == "websocket"


async def to_helix_request(request: Any) -> HelixRequest:
    """A ``workers.Request`` as the runtime's request (the body is read here)."""
    try:
        method = request.method
    except (KeyError, ValueError):
        raise _BadMethod() from None
    method = str(getattr(method, "value", method)).upper()
    parts = urlsplit(str(request.url))
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {str(k).lower(): str(v) for k, v in request.headers.items()}
    body = b"" if method in ("GET", "HEAD") else await request.bytes()
    return HelixRequest(method, target, body=body, headers=headers,
                        websocket=_UpgradeMarker() if _is_upgrade(headers) else None)


def _spawner(tasks: set[asyncio.Future[Any]]) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    def spawn(coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        tasks.add(task)  # a strong reference until it ends
        task.add_done_callback(tasks.discard)
        return task

    return spawn


def _streaming_response(stream: AsyncIterator[bytes], status: int, headers: dict[str, str],
                        spawn: Callable[[Coroutine[Any, Any, Any]], Any]) -> Any:
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


def to_worker_response(response: HelixResponse,
                       spawn: Callable[[Coroutine[Any, Any, Any]], Any]) -> Any:
    """The runtime's response as a ``workers.Response`` (an object's own one passes through)."""
    native = getattr(response, "native", None)
    if native is not None:
        return native
    if response.stream is not None:
        return _streaming_response(response.stream, response.status, dict(response.headers),
                                   spawn)
    return Response(response.body, status=response.status, headers=dict(response.headers))


def _error(status: int, code: str, message: str) -> Any:
    return to_worker_response(error_response(status, code, message), _no_spawn)


def _no_spawn(coro: Coroutine[Any, Any, Any]) -> None:
    coro.close()
    raise RuntimeError("no background tasks here")


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
        if isinstance(request, str):
            request = HelixRequest("GET", request)
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


# -- the front door ------------------------------------------------------------------------------


class Default(WorkerEntrypoint):
    """Every request to the Worker: auth and routing; sessions go to their Durable Object."""

    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        self._tasks: set[asyncio.Future[Any]] = set()

    async def fetch(self, request: Any) -> Any:
        try:
            return await self._fetch(request)
        except AgentsUnavailable as exc:
            return _error(503, "agents_unavailable", str(exc))
        except ObjectUnavailable as exc:
            log.error("a session object did not answer: %s", exc)
            return _error(503, "object_unavailable", "The session's object did not answer; "
                          "try again.")
        except Exception as exc:
            log.error("the Worker failed on a request: %s: %s", type(exc).__name__, exc)
            return _error(500, "internal_error", "The Worker hit an unexpected error; see its "
                          "log.")

    async def _fetch(self, request: Any) -> Any:
        env = _EnvView(self.env)
        token = env.get("HELIX_TOKEN")
        if not token:
            return _error(503, "not_configured", "HELIX_TOKEN secret is not set; run "
                          "wrangler secret put HELIX_TOKEN")
        binding = env.get("AGENTS")
        if binding is None:
            return _error(503, "not_configured", "The AGENTS Durable Object binding is "
                          "missing; add it to wrangler.toml ([[durable_objects.bindings]]).")
        try:
            inner = await to_helix_request(request)
        except _BadMethod:
            return _error(405, "method_not_allowed", "Use GET or POST.")
        response = await route(inner, WorkerNamespace(binding), token=token,
                               agent_types=lambda: load_agents(env).agent_types())
        def spawn(coro: Coroutine[Any, Any, Any]) -> Any:
            task = _spawner(self._tasks)(coro)
            self.ctx.waitUntil(task)  # the Worker stays up until the body is written
            return task

        return to_worker_response(response, spawn)


# -- the Durable Object --------------------------------------------------------------------------


def _row(row: Any) -> dict[str, Any]:
    items = row.items() if hasattr(row, "items") else dict(row).items()
    out: dict[str, Any] = {}
    for key, value in items:
        if value is not None and type(value).__name__ == "JsNull":
            value = None
        elif isinstance(value, memoryview):
            value = bytes(value)
        out[key] = value
    return out


def _binding(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value


class DOSqlStorage:
    """:class:`~helix_lab.runtime.sql.SqlStorage` over ``ctx.storage`` of a SQLite object."""

    def __init__(self, storage: Any) -> None:
        self._storage = storage
        self._sql = storage.sql

    def exec(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        cursor = self._sql.exec(sql, *[_binding(p) for p in params])
        rows = cursor.toArray()
        if hasattr(rows, "to_py"):  # an unwrapped storage binding gives a JS array
            rows = rows.to_py()
        return [_row(r) for r in rows]

    def transaction(self, fn: Callable[[], T]) -> T:
        # The result and any exception stay on the Python side: only None crosses to JS,
        # so nothing has to survive an RPC conversion (tuples would not).
        result: list[T] = []
        failure: list[BaseException] = []

        def body() -> None:
            try:
                result.append(fn())
            except BaseException as exc:
                failure.append(exc)
                raise

        try:
            self._storage.transactionSync(body)
        except BaseException:
            if failure:
                raise failure[0] from None
            raise
        return result[0]


class _Socket:
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
        binding = _EnvView(self._owner.env).get("AGENTS")
        return WorkerNamespace(binding) if binding is not None else None

    def spawn(self, coro: Coroutine[Any, Any, None]) -> Any:
        return self._owner._spawn(coro)


class HelixAgentServer(DurableObject):
    """One session: the runtime's ``AgentServer`` on this object's SQLite."""

    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        self._tasks: set[asyncio.Future[Any]] = set()
        self._spawn = _spawner(self._tasks)
        self._server: AgentServer | None = None
        self._sockets: dict[str, _Socket] = {}

    def _agent_server(self) -> AgentServer:
        """The runtime object, built (and recovered) on first use.

        Private on purpose: a Durable Object's public methods are RPC endpoints."""
        if self._server is None:
            env = _EnvView(self.env)
            server = load_agents(env).server_class(_DOHost(self), env)
            self._server = server
            self._rehydrate_sockets(server)
        return self._server

    def _rehydrate_sockets(self, server: AgentServer) -> None:
        """After hibernation, put the sockets the object still holds back on the stream."""
        get_sockets = getattr(self.ctx, "getWebSockets", None)
        if get_sockets is None:
            return
        for ws in get_sockets():
            socket_id = _socket_id(ws)
            if socket_id is None or socket_id in self._sockets:
                continue
            sock = self._sockets[socket_id] = _Socket(ws, socket_id)
            # Hibernation only happens when idle, so the socket had every chunk.
            server.stream.attach_socket(sock, server.stream.sequence)

    async def fetch(self, request: Any) -> Any:
        try:
            server = self._agent_server()
            try:
                inner = await to_helix_request(request)
            except _BadMethod:
                return _error(405, "method_not_allowed", "Use GET or POST.")
            if _is_upgrade(inner.headers):
                return await self._accept_websocket(server, inner)
            return to_worker_response(await server.fetch(inner), self._spawn)
        except AgentsUnavailable as exc:
            return _error(503, "agents_unavailable", str(exc))
        except Exception as exc:
            log.error("the session object failed on a request: %s: %s", type(exc).__name__, exc)
            return _error(500, "internal_error",
                          "The agent server hit an unexpected error; see its log.")

    async def _accept_websocket(self, server: AgentServer, inner: HelixRequest) -> Any:
        from js import WebSocketPair

        client, end = WebSocketPair.new().object_values()
        self.ctx.acceptWebSocket(end)  # hibernation API: close events come to webSocketClose
        socket_id = secrets.token_hex(8)
        end.serializeAttachment(json.dumps({"helixSocket": socket_id}))
        sock = self._sockets[socket_id] = _Socket(end, socket_id)
        response = await server.fetch(HelixRequest(inner.method, inner.url, body=inner.body,
                                                   headers=inner.headers, websocket=sock))
        if response.status != 101:
            self._forget(end)
            try:
                end.close(1008, "rejected")
            except Exception:
                pass
            return to_worker_response(response, self._spawn)
        return Response(None, status=101, web_socket=client)

    def _forget(self, ws: Any) -> None:
        sock = self._sockets.pop(_socket_id(ws) or "", None)
        if sock is not None and self._server is not None:
            self._server.websocket_closed(sock)

    async def webSocketMessage(self, ws: Any, message: Any) -> None:
        """Clients only listen; what they send is ignored."""

    async def webSocketClose(self, ws: Any, code: int, reason: str, was_clean: bool) -> None:
        self._forget(ws)
        try:
            ws.close(code if 1000 <= int(code) <= 4999 and int(code) not in (
                1004, 1005, 1006, 1015) else 1000, reason or "")
        except Exception:
            pass  # already closed

    async def webSocketError(self, ws: Any, error: Any) -> None:
        self._forget(ws)

    async def _host_shutdown(self) -> None:
        """Stop background work and close streams (a local host shutting down calls this)."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.stream.close_all()
