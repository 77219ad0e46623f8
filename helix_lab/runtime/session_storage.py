"""``SessionStorage``: one session's tables behind one object, written by one ``commit()``.

A Durable Object holds one session. Its state store (session row, messages, checkpoints),
its stream (numbered chunks), its usage ledger, the turns waiting for approval and the step
log of the inspector share one :class:`SqlStorage`, and
everything a step or a control request changes must land together: the checkpoint, the
session row and the chunks that announce them. :meth:`SessionStorage.commit` is the one
way to do that; the caller broadcasts the chunks it returns once it has updated its own
view, so that no client sees a chunk before the server's state agrees with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from .approvals import PendingStore
from .inspector import StepLog
from .sql import SqlStorage
from .state_store import DOStateStore
from .stream import Chunk, DOStreamManager
from .usage import DOUsageStore

__all__ = ["SessionOwner", "SessionStorage"]

T = TypeVar("T")


def _nothing() -> None:
    return None


class SessionStorage:
    """The state store, stream and usage ledger of one session, on one ``SqlStorage``."""

    def __init__(self, sql: SqlStorage, *, is_live: Callable[[], bool] = lambda: False,
                 logger: Any = None) -> None:
        self.sql = sql
        # One transaction for every table's schema: one commit (one fsync) per new object.
        # The step log indexes the checkpoints, so it comes after the state store.
        self.state, self.stream, self.usage, self.pending, self.steps = sql.transaction(
            lambda: (DOStateStore(sql), DOStreamManager(sql, is_live=is_live, logger=logger),
                     DOUsageStore(sql), PendingStore(sql), StepLog(sql)))

    def commit(self, write: Callable[[], T] = _nothing, /,
               **session: Any) -> tuple[T, list[Chunk]]:
        """Run ``write``, store ``session`` fields and every queued chunk, atomically.

        Returns what ``write`` returned and the stored chunks, for the caller to broadcast
        with :meth:`publish`. If the transaction fails, the queued chunks are dropped:
        nobody may see chunks of a change that was never stored.
        """

        def transaction() -> tuple[T, list[Chunk]]:
            value = write()
            if session:
                self.state.update_session(**session)
            return value, self.stream.take_pending()

        try:
            return self.sql.transaction(transaction)
        except BaseException:
            self.stream.discard_pending()
            raise

    def publish(self, chunks: list[Chunk]) -> None:
        """Send committed chunks to every live subscriber and socket."""
        self.stream.broadcast(chunks)


class SessionOwner(Protocol):
    """An object that holds one session and its storage: an ``AgentServer``, as the
    executor (``RunHost``) and the read endpoints (``SessionView``) see it."""

    @property
    def session_id(self) -> str: ...

    @property
    def storage(self) -> SessionStorage: ...
