"""The host side of the stand-in: env, contexts and a Durable Object namespace.

:class:`DurableObjectNamespace` keeps the Durable Object semantics that matter here:

- ``idFromName(name)`` is deterministic (the same name always reaches the same object);
- one live instance per id, built on its first event;
- an input gate: events to one object (``fetch``, RPC calls, WebSocket messages and
  closes) run one at a time; a streaming response body is read after the event ended,
  outside the gate, as on Cloudflare;
- storage that outlives the process: one sqlite file per id under ``storage``;
- ``evict(id)`` drops the instance but keeps its storage and its accepted WebSockets,
  as hibernation does; the next event builds a new instance.

The rules of instances, gates and tasks are the runtime's
:class:`~helix_lab.runtime.objects.ObjectHost`, the same core ``LocalNamespace`` wraps;
this module adds the JavaScript-shaped API around it.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import re
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from helix_lab.runtime.objects import ObjectHost, ObjectTasks, Slot

from .js import WebSocket
from .storage import DurableObjectStorage
from .workers import FetchResponse, JsDict, Request, Response

__all__ = [
    "DurableObjectId",
    "DurableObjectNamespace",
    "DurableObjectState",
    "DurableObjectStub",
    "Env",
    "ExecutionContext",
    "call_entrypoint",
]

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
STORAGE_SUFFIX = ".sqlite"


class Env:
    """A Worker's ``env``: bindings and vars as attributes; a missing one is an AttributeError.

    A :class:`DurableObjectNamespace` passed in without an env of its own is given this one,
    since its objects see the same ``env`` as the Worker.
    """

    def __init__(self, **bindings: Any) -> None:
        for name, value in bindings.items():
            if value is None:
                continue
            object.__setattr__(self, name, value)
            if isinstance(value, DurableObjectNamespace) and value.env is None:
                value.env = self

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"env has no binding or variable named {name!r}")

    def __repr__(self) -> str:  # names only: values may be secrets
        return f"Env({', '.join(sorted(vars(self)))})"


class ExecutionContext:
    """The ``ctx`` of a Worker entrypoint."""

    def __init__(self) -> None:
        self._tasks = ObjectTasks()

    def waitUntil(self, awaitable: Awaitable[Any]) -> None:
        self._tasks.spawn(awaitable)

    def passThroughOnException(self) -> None:
        pass

    async def drain(self) -> None:
        """Wait for every ``waitUntil`` task (a test helper)."""
        while self._tasks.tasks:
            await asyncio.gather(*list(self._tasks.tasks), return_exceptions=True)


class DurableObjectId:
    """An object id: 64 hex characters; ``name`` when it was made from one."""

    def __init__(self, hex_id: str, name: str | None = None) -> None:
        self._hex = hex_id
        self.name = name

    def toString(self) -> str:
        return self._hex

    def equals(self, other: DurableObjectId) -> bool:
        return isinstance(other, DurableObjectId) and other._hex == self._hex

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DurableObjectId) and other._hex == self._hex

    def __hash__(self) -> int:
        return hash(self._hex)

    def __str__(self) -> str:
        return self._hex

    def __repr__(self) -> str:
        return f"DurableObjectId({self._hex[:12]}…{', ' + repr(self.name) if self.name else ''})"


class DurableObjectState:
    """The ``ctx`` of one Durable Object."""

    def __init__(self, namespace: DurableObjectNamespace, object_id: DurableObjectId,
                 storage: DurableObjectStorage) -> None:
        self._namespace = namespace
        self.id = object_id
        self.storage = storage
        self._tasks = ObjectTasks()
        self._blockers: list[asyncio.Future[Any]] = []

    def waitUntil(self, awaitable: Awaitable[Any]) -> None:
        self._tasks.spawn(awaitable)

    def blockConcurrencyWhile(self, fn: Callable[[], Awaitable[Any]]) -> asyncio.Future[Any]:
        """Run ``fn``; no other event reaches the object until it is done."""
        future = asyncio.ensure_future(fn())
        self._blockers.append(future)
        return future

    async def _drain_blockers(self) -> None:
        while self._blockers:
            await self._blockers.pop(0)

    def acceptWebSocket(self, ws: WebSocket, tags: list[str] | None = None) -> None:
        """Hibernation API: the socket's messages and close go to this object's handlers."""
        if not isinstance(ws, WebSocket):
            raise TypeError("acceptWebSocket() takes the server end of a WebSocketPair.")
        if ws.dispatch is not None:
            raise TypeError("This WebSocket was accepted already.")
        ws.tags = list(tags or [])
        ws.dispatch = self._namespace._socket_dispatcher(self.id)
        self._namespace._sockets.setdefault(self.id, []).append(ws)

    def getWebSockets(self, tag: str | None = None) -> list[WebSocket]:
        sockets = self._namespace._sockets.get(self.id, [])
        return [ws for ws in sockets if ws.readyState != 3 and (tag is None or tag in ws.tags)]

    def abort(self, reason: str | None = None) -> None:
        self._namespace.evict(self.id)
        raise RuntimeError(reason or "Durable Object abort requested")


async def _settle(slot: Slot[DurableObjectId, DurableObjectState, Any]) -> None:
    await slot.storage._drain_blockers()


async def _close_state(state: DurableObjectState) -> None:
    await state._tasks.cancel_all()
    state.storage.close()


def _clone(value: Any) -> Any:
    """A structured clone, as RPC arguments and results get (JSON-shaped values only)."""
    if isinstance(value, tuple | bytearray):
        raise TypeError(f"{type(value)} cannot be sent over RPC.")
    if inspect.isawaitable(value):
        raise TypeError(f"Awaitable {type(value)} cannot be sent over RPC.")
    if isinstance(value, dict):
        return JsDict({str(k): _clone(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_clone(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool | bytes):
        return value
    return json.loads(json.dumps(value))


class DurableObjectStub:
    """``namespace.get(id)``: ``await stub.fetch(...)`` and ``await stub.some_method(...)``."""

    def __init__(self, namespace: DurableObjectNamespace, object_id: DurableObjectId) -> None:
        self._namespace = namespace
        self.id = object_id
        self.name = object_id.name

    async def fetch(self, resource: str | Request, **options: Any) -> Response:
        request = resource if isinstance(resource, Request) and not options else Request(
            resource, **options)

        async def handle(instance: Any) -> Any:
            handler = getattr(instance, "fetch", None)
            if handler is None:
                raise TypeError(f"{type(instance).__name__} has no fetch() handler.")
            return await handler(request)

        response = await self._namespace._event(self.id, handle)
        if not isinstance(response, FetchResponse):
            raise TypeError("Incorrect type for Promise: the Promise did not resolve to "
                            f"'Response' (got {type(response).__name__}).")
        return response

    def __getattr__(self, method: str) -> Callable[..., Awaitable[Any]]:
        if method.startswith("_"):
            raise AttributeError(method)

        async def call(*args: Any) -> Any:
            cloned = [_clone(a) for a in args]

            async def handle(instance: Any) -> Any:
                result = getattr(instance, method)(*cloned)
                return await result if inspect.isawaitable(result) else result

            return _clone(await self._namespace._event(self.id, handle))

        return call

    def __repr__(self) -> str:
        return f"<DurableObjectStub {self.id!r}>"


class DurableObjectNamespace:
    """A binding like ``env.AGENTS``: objects of ``object_class``, sqlite files in ``storage``."""

    def __init__(self, object_class: type, storage: str | Path, *, env: Any = None,
                 name: str = "AGENTS") -> None:
        self.object_class = object_class
        self.storage = str(storage)
        self.env = env
        self.name = name
        self._sockets: dict[DurableObjectId, list[WebSocket]] = {}
        self._host: ObjectHost[DurableObjectId, DurableObjectState, Any] = ObjectHost(
            open_storage=lambda object_id: DurableObjectState(
                self, object_id, DurableObjectStorage(self.path_of(object_id))),
            build=lambda slot: self.object_class(slot.storage, self.env),
            close_storage=_close_state, settle=_settle)

    # -- ids and stubs ---------------------------------------------------------------------

    def idFromName(self, name: str) -> DurableObjectId:
        return DurableObjectId(hashlib.sha256(name.encode()).hexdigest(), name)

    def newUniqueId(self) -> DurableObjectId:
        return DurableObjectId(secrets.token_hex(32))

    def idFromString(self, hex_id: str) -> DurableObjectId:
        if not isinstance(hex_id, str) or not _HEX64.match(hex_id):
            raise TypeError(f"Invalid Durable Object ID {hex_id!r}: expected 64 hex digits.")
        return DurableObjectId(hex_id)

    def get(self, object_id: DurableObjectId) -> DurableObjectStub:
        if not isinstance(object_id, DurableObjectId):
            raise TypeError("get() takes a DurableObjectId (from idFromName / newUniqueId).")
        return DurableObjectStub(self, object_id)

    def getByName(self, name: str) -> DurableObjectStub:
        return self.get(self.idFromName(name))

    # -- objects ---------------------------------------------------------------------------

    def path_of(self, object_id: DurableObjectId) -> str:
        if self.storage == ":memory:":
            return ":memory:"
        return str(Path(self.storage) / f"{object_id.toString()}{STORAGE_SUFFIX}")

    def stored_ids(self) -> list[str]:
        """Ids of every object with a storage file."""
        if self.storage == ":memory:" or not Path(self.storage).is_dir():
            return []
        return sorted(p.name[:-len(STORAGE_SUFFIX)]
                      for p in Path(self.storage).glob(f"*{STORAGE_SUFFIX}"))

    def instance(self, object_id: DurableObjectId) -> Any:
        """The live instance, or ``None`` (for tests)."""
        return self._host.live(object_id)

    def instances(self) -> list[Any]:
        """Every live instance."""
        return [slot.instance for slot in self._host.slots.values() if slot.instance is not None]

    async def _event(self, object_id: DurableObjectId, handle: Callable[[Any], Awaitable[Any]]
                     ) -> Any:
        """Deliver one event to the object through its input gate."""
        if self.env is None:
            raise RuntimeError("This namespace has no env yet: pass it to Env(...).")
        return await self._host.event(object_id, handle)

    def _socket_dispatcher(self, object_id: DurableObjectId
                           ) -> Callable[[WebSocket, str, tuple[Any, ...]], None]:
        def dispatch(ws: WebSocket, handler: str, args: tuple[Any, ...]) -> None:
            async def handle(instance: Any) -> None:
                method = getattr(instance, handler, None)
                if method is None:
                    return
                result = method(ws, *args)
                if inspect.isawaitable(result):
                    await result

            async def deliver() -> None:
                await self._event(object_id, handle)
                if handler == "webSocketClose":
                    sockets = self._sockets.get(object_id, [])
                    if ws in sockets:
                        sockets.remove(ws)

            self._host.spawn(deliver())

        return dispatch

    def evict(self, object_id: DurableObjectId) -> None:
        """Drop the live instance (as hibernation does); storage and sockets stay."""
        self._host.evict(object_id)

    async def close(self) -> None:
        """Cancel background work and close every database."""
        await self._host.aclose()

    def __repr__(self) -> str:
        return f"DurableObjectNamespace({self.object_class.__name__}, storage={self.storage!r})"


async def call_entrypoint(entrypoint: type, request: Request, env: Any,
                          ctx: ExecutionContext | None = None) -> Response:
    """Run a Worker entrypoint's ``fetch`` for one request, as the runtime does."""
    worker = entrypoint(ctx or ExecutionContext(), env)
    response = await worker.fetch(request)
    if not isinstance(response, FetchResponse):
        raise TypeError("The Worker's fetch() did not return a Response "
                        f"(got {type(response).__name__}).")
    return response
