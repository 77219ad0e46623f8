"""``LocalNamespace``: Durable Object semantics in the kernel, on sqlite files.

What it keeps of a real Durable Object namespace:

- ``id_from_name(name)`` is deterministic, so the same name reaches the same object;
- one live instance per id;
- an input gate: requests to one object run one at a time (a streaming body, once
  returned, is read outside the gate, as on Cloudflare);
- storage that outlives the process: one sqlite file per object under ``storage``
  (``.helix/`` by default), or a private in-memory database with ``":memory:"``.

Constructing an object runs its recovery, so a run whose kernel died is found
``interrupted`` the first time its session is touched again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from .http import Request, Response, as_request
from .objects import ObjectHost, Slot
from .server import AgentServer
from .sql import SqliteStorage
from .state_store import DOStateStore
from .stream import Subscription

__all__ = ["LocalNamespace", "LocalStub", "ObjectId"]

DEFAULT_STORAGE = ".helix"


class ObjectId(str):
    """A Durable Object id: 64 hex characters derived from a name."""

    __slots__ = ()


class _LocalHost:
    """The :class:`~helix_lab.runtime.server.HostContext` of one in-kernel object."""

    def __init__(self, object_id: ObjectId, sql: SqliteStorage, namespace: LocalNamespace) -> None:
        self.id = object_id
        self.sql = sql
        self.namespace = namespace

    def spawn(self, coro: Coroutine[Any, Any, None]) -> Any:
        return self.namespace._host.spawn(coro)


class LocalStub:
    """The handle to one object; ``await stub.fetch(request)`` goes through its input gate."""

    def __init__(self, namespace: LocalNamespace, object_id: ObjectId) -> None:
        self._namespace = namespace
        self.id = object_id

    async def fetch(self, request: Request | str) -> Response:
        request = as_request(request)
        namespace = self._namespace
        new = not namespace.exists(self.id)

        async def handle(server: AgentServer) -> Response:
            return await server.fetch(request)

        response = await namespace._host.event(self.id, handle)
        if (new and not namespace.in_memory and response.stream is None
                and namespace.instance(self.id).store.get_session() is None):
            await namespace._discard(self.id)  # a probe of a session that does not exist
        return response

    def __repr__(self) -> str:
        return f"<LocalStub {self.id[:12]}>"


def _drop(server: AgentServer) -> None:
    server.stream.close_all()


class LocalNamespace:
    """A namespace of ``server_class`` objects living in this process.

    The Durable Object rules (one instance per id, input gate, background tasks) are
    :class:`~helix_lab.runtime.objects.ObjectHost`'s, shared with the ``helix serve``
    stand-in; this class adds the sqlite file per id and the runtime's own API.
    """

    def __init__(self, server_class: type[AgentServer], env: Any = None,
                 storage: str | os.PathLike[str] = DEFAULT_STORAGE) -> None:
        self.server_class = server_class
        self.env = env if env is not None else {}
        self.storage = str(storage)
        self._host: ObjectHost[ObjectId, SqliteStorage, AgentServer] = ObjectHost(
            open_storage=lambda object_id: SqliteStorage(self._path(object_id)),
            build=self._build, close_storage=SqliteStorage.close, drop_instance=_drop)

    @property
    def in_memory(self) -> bool:
        return self.storage == ":memory:"

    def id_from_name(self, name: str) -> ObjectId:
        return ObjectId(hashlib.sha256(name.encode()).hexdigest())

    def get(self, object_id: ObjectId | str) -> LocalStub:
        return LocalStub(self, ObjectId(object_id))

    def _path(self, object_id: ObjectId) -> str:
        if self.in_memory:
            return ":memory:"
        return str(Path(self.storage) / f"{object_id}.sqlite3")

    def storage_path(self, object_id: ObjectId | str) -> str:
        """The sqlite file that holds (or will hold) an object (``":memory:"`` in memory)."""
        return self._path(ObjectId(object_id))

    def _build(self, slot: Slot[ObjectId, SqliteStorage, AgentServer]) -> AgentServer:
        # Constructing the server runs its recovery: a run whose host died is found here.
        return self.server_class(_LocalHost(slot.id, slot.storage, self), self.env)

    def exists(self, object_id: ObjectId | str) -> bool:
        """Whether the object is live or has storage (in memory: whether it is live)."""
        if object_id in self._host.slots:
            return True
        return not self.in_memory and os.path.exists(self._path(ObjectId(object_id)))

    async def _discard(self, object_id: ObjectId) -> None:
        """Drop an object that stored nothing, as a Durable Object that was never written
        to leaves nothing behind."""
        await self._host.discard(object_id)
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._path(object_id) + suffix)

    def instance(self, object_id: ObjectId | str) -> AgentServer:
        """The live object itself, for inspection in tests and benchmarks."""
        return self._host.instance(ObjectId(object_id))

    async def subscribe(self, object_id: ObjectId | str, from_sequence: int = 0, *,
                        follow: bool = False) -> Subscription | None:
        """The object's chunks after ``from_sequence``, as ``GET /sse`` serves them but
        without the HTTP: the subscription yields the stored chunk objects themselves.

        ``None`` when the object has no storage and ``follow`` is off: there is nothing to
        stream, and a probe should not bring an object to life."""
        object_id = ObjectId(object_id)
        if not follow and not self.exists(object_id):
            return None

        async def handle(server: AgentServer) -> Subscription:
            server.stream.flush()  # subscribe behind everything already written
            return server.stream.subscribe(from_sequence, follow=follow)

        return await self._host.event(object_id, handle)

    def stored_ids(self) -> list[ObjectId]:
        """Ids of every object with storage on disk (or live, in memory)."""
        ids = set(self._host.slots)
        if not self.in_memory and os.path.isdir(self.storage):
            ids.update(ObjectId(p.stem) for p in Path(self.storage).glob("*.sqlite3"))
        return sorted(ids)

    def stored_sessions(self) -> list[dict[str, Any]]:
        """The session row of every stored object, without bringing any object to life."""
        sessions = []
        for object_id in self.stored_ids():
            live = self._host.live(object_id)
            if live is not None:
                session = live.store.get_session()
            else:
                sql = SqliteStorage(self._path(object_id))
                try:
                    session = DOStateStore.peek_session(sql)
                finally:
                    sql.close()
            if session is not None:
                sessions.append(session)
        return sessions

    async def aclose(self) -> None:
        """Stop running tasks (as a host shutdown would) and close every database."""
        await self._host.aclose()

    def __repr__(self) -> str:
        return f"LocalNamespace({self.server_class.__name__}, storage={self.storage!r})"
