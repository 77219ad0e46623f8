"""The rules of a Durable Object namespace, once, for both hosts that emulate one.

:class:`~helix_lab.runtime.LocalNamespace` (the kernel) and the ``helix serve`` stand-in's
``DurableObjectNamespace`` both wrap an :class:`ObjectHost`, which keeps:

- one live instance per id, built by the wrapper's factory on the id's first event;
- an input gate per id: events run one at a time, in arrival order. An object that sends
  an event to itself from inside one of its own events is refused at once, where a real
  gate would deadlock;
- background tasks held strongly until they end; a failure is logged, not lost;
- ``evict(id)`` drops the instance and keeps its storage, as hibernation does;
  ``discard(id)`` drops both; ``aclose()`` cancels the tasks and closes every storage.

Storage itself is the wrapper's business (a file per id, or memory): the host only opens
it through the wrapper's ``open_storage`` and closes it through ``close_storage``. Nothing
here touches a thread or the filesystem, so it runs under Pyodide as it does in CPython.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

__all__ = ["ObjectHost", "ObjectTasks", "Slot"]

log = logging.getLogger("helix_lab.objects")

K = TypeVar("K", bound=Hashable)
S = TypeVar("S")
I = TypeVar("I")  # noqa: E741  (the instance type)
R = TypeVar("R")


class ObjectTasks:
    """Strong references to background tasks until they finish; failures are logged."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Future[Any]] = set()

    def spawn(self, awaitable: Awaitable[Any]) -> asyncio.Future[Any]:
        future = asyncio.ensure_future(awaitable)
        self.tasks.add(future)
        future.add_done_callback(self._done)
        return future

    def _done(self, future: asyncio.Future[Any]) -> None:
        self.tasks.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.warning("a background task failed", exc_info=future.exception())

    async def cancel_all(self) -> None:
        """Cancel every task and wait until each has finished unwinding."""
        while self.tasks:
            pending = list(self.tasks)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


class Slot(Generic[K, S, I]):
    """One id's place in the namespace: its storage, its instance (if live), its gate."""

    __slots__ = ("gate", "holder", "id", "instance", "storage")

    def __init__(self, object_id: K, storage: S) -> None:
        self.id = object_id
        self.storage = storage
        self.instance: I | None = None
        self.gate = asyncio.Lock()
        self.holder: asyncio.Task[Any] | None = None
        """The task inside the gate, to refuse an event the object sends itself."""


class ObjectHost(Generic[K, S, I]):
    """Instances, gates and tasks of one namespace.

    ``build(slot)`` makes the instance of a slot. ``settle(slot)``, when given, is awaited
    inside the gate before every event and right after an instance is built (the stand-in
    finishes ``blockConcurrencyWhile`` work there). ``close_storage`` may be async.
    """

    def __init__(self, *, open_storage: Callable[[K], S], build: Callable[[Slot[K, S, I]], I],
                 close_storage: Callable[[S], Awaitable[None] | None],
                 settle: Callable[[Slot[K, S, I]], Awaitable[None]] | None = None,
                 drop_instance: Callable[[I], None] | None = None) -> None:
        self._open_storage = open_storage
        self._build = build
        self._close_storage = close_storage
        self._settle = settle
        self._drop_instance = drop_instance
        self.slots: dict[K, Slot[K, S, I]] = {}
        self.tasks = ObjectTasks()

    def slot(self, object_id: K) -> Slot[K, S, I]:
        """The id's slot, opening its storage the first time."""
        slot = self.slots.get(object_id)
        if slot is None:
            slot = self.slots[object_id] = Slot(object_id, self._open_storage(object_id))
        return slot

    def instance(self, object_id: K) -> I:
        """The live instance, built now if it is not (outside the gate: for inspection)."""
        slot = self.slot(object_id)
        if slot.instance is None:
            slot.instance = self._build(slot)
        return slot.instance

    def live(self, object_id: K) -> I | None:
        slot = self.slots.get(object_id)
        return slot.instance if slot is not None else None

    async def event(self, object_id: K, handle: Callable[[I], Awaitable[R]]) -> R:
        """Deliver one event to the object through its input gate."""
        slot = self.slot(object_id)
        current = asyncio.current_task()
        if current is not None and slot.holder is current:
            raise RuntimeError("A Durable Object sent an event to itself from inside one of "
                               "its own events; its input gate would deadlock.")
        async with slot.gate:
            slot.holder = current
            try:
                if self._settle is not None:
                    await self._settle(slot)
                if slot.instance is None:
                    slot.instance = self._build(slot)
                    if self._settle is not None:
                        await self._settle(slot)
                return await handle(slot.instance)
            finally:
                slot.holder = None

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        return self.tasks.spawn(coro)

    def evict(self, object_id: K) -> None:
        """Drop the live instance (as hibernation does); its storage stays open."""
        slot = self.slots.get(object_id)
        if slot is not None and slot.instance is not None:
            instance, slot.instance = slot.instance, None
            if self._drop_instance is not None:
                self._drop_instance(instance)

    async def discard(self, object_id: K) -> None:
        """Drop the instance and close its storage (the wrapper deletes any files)."""
        self.evict(object_id)
        slot = self.slots.pop(object_id, None)
        if slot is not None:
            await self._close(slot.storage)

    async def aclose(self) -> None:
        """Stop background work (as a host shutdown would), then close every storage."""
        await self.tasks.cancel_all()
        slots, self.slots = list(self.slots.values()), {}
        for slot in slots:
            if slot.instance is not None and self._drop_instance is not None:
                self._drop_instance(slot.instance)
            slot.instance = None
            await self._close(slot.storage)

    async def _close(self, storage: S) -> None:
        result = self._close_storage(storage)
        if inspect.isawaitable(result):
            await result
