"""The storage seam: ``SqlStorage.exec(sql, *params)``, as a Durable Object's ``ctx.storage.sql``.

Everything the runtime persists goes through this protocol. In the kernel it is bound to
a ``sqlite3`` connection (:class:`SqliteStorage`); in a Python Worker, to the Durable
Object's own SQLite (see ``helix_lab.worker_bundle``). Rows come back as plain dicts.

``transaction(fn)`` runs ``fn`` atomically, like ``ctx.storage.transactionSync``: either
every write inside it lands or none does. That is what makes a step's checkpoint, its
state, its messages and its chunks commit together. Transactions nest as they do on
Cloudflare: an inner one that raises takes back its own writes only (a savepoint).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

__all__ = ["SqlStorage", "SqlTables", "SqliteStorage", "insert_rows"]

T = TypeVar("T")
Row = dict[str, Any]


@runtime_checkable
class SqlStorage(Protocol):
    """What the runtime needs from a SQL database."""

    def exec(self, sql: str, *params: Any) -> list[Row]:
        """Run one statement and return its rows (empty for writes)."""
        ...

    def transaction(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` so that all of its writes commit together, or none do."""
        ...


class SqlTables:
    """A store kept in some tables of one :class:`SqlStorage`.

    Making one creates its tables: the ``SCHEMA`` statements run in order, each written
    to be harmless when its table or index is there already (``IF NOT EXISTS``)."""

    SCHEMA: ClassVar[Sequence[str]] = ()

    def __init__(self, sql: SqlStorage) -> None:
        self.sql = sql
        for statement in self.SCHEMA:
            sql.exec(statement)


def insert_rows(sql: SqlStorage, statement: str, rows: list[tuple[Any, ...]]) -> None:
    """Run one insert for each row: in bulk when the storage offers ``executemany`` (the
    kernel's sqlite3 does; a Durable Object's ``ctx.storage.sql`` does not)."""
    bulk = getattr(sql, "executemany", None)
    if bulk is not None:
        bulk(statement, rows)
    else:
        for row in rows:
            sql.exec(statement, *row)


class SqliteStorage:
    """:class:`SqlStorage` on a ``sqlite3`` file (or ``":memory:"``).

    WAL with ``synchronous=NORMAL``: a committed transaction survives the process being
    killed (the log is in the OS before ``commit`` returns); only a power cut can lose the
    last few transactions, the same promise a Durable Object's storage makes per region.

    This is the one SQLite binding of the in-process hosts: the ``helix serve`` stand-in's
    ``ctx.storage`` is built on it too, and shares its transactions (:meth:`atomic`).
    """

    def __init__(self, path: str | os.PathLike[str] = ":memory:") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        import sqlite3  # not in every Pyodide build; only this binding needs it

        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so autocommit otherwise.
        self._conn = sqlite3.connect(self.path, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._depth = 0
        if self.path != ":memory:":
            # The switch to WAL is written once, when the file is new: without syncs it
            # costs ~1 ms instead of ~12 (a burst of new sessions blocks the loop that
            # much less). Only a power cut during it could hurt, and then only an empty
            # file; every open sets WAL again.
            self._conn.execute("PRAGMA synchronous=OFF")
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")

    def exec(self, sql: str, *params: Any) -> list[Row]:
        cursor = self._conn.execute(sql, params)
        return [dict(row) for row in cursor.fetchall()]

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """Bulk insert; an optimisation the runtime uses when the storage offers it."""
        self._conn.executemany(sql, rows)

    def iter_rows(self, sql: str, *params: Any) -> Iterator[Row]:
        """Stream a large result without materialising it."""
        cursor = self._conn.execute(sql, params)
        for row in cursor:
            yield dict(row)

    @property
    def connection(self) -> Any:
        """The ``sqlite3`` connection, for a binding that offers another API on top."""
        return self._conn

    def _enter(self) -> int:
        """Open one level of :meth:`atomic`; returns the depth to give :meth:`_leave`."""
        depth = self._depth
        if depth:
            self._conn.execute(f"SAVEPOINT helix_txn_{depth}")
        else:
            self._conn.execute("BEGIN IMMEDIATE")
        self._depth = depth + 1
        return depth

    def _leave(self, depth: int, failed: bool) -> None:
        """Close the level :meth:`_enter` opened at ``depth``: keep its writes, or not."""
        self._depth = depth
        execute = self._conn.execute
        if depth:
            name = f"helix_txn_{depth}"
            if failed:
                execute(f"ROLLBACK TO {name}")
            execute(f"RELEASE {name}")
        else:
            execute("ROLLBACK" if failed else "COMMIT")

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """Every write inside lands together, or none does; nests.

        The outermost level is ``BEGIN IMMEDIATE`` (it takes the write lock at once, so it
        cannot fail half-way on a lock another connection holds); an inner level is a
        savepoint, rolled back alone if its body raises. The body may await: the level
        stays open until the block ends.
        """
        depth = self._enter()
        try:
            yield
        except BaseException:
            self._leave(depth, True)
            raise
        self._leave(depth, False)

    def transaction(self, fn: Callable[[], T]) -> T:
        """``fn()`` inside :meth:`atomic`, without the generator a ``with`` block costs:
        the commit of every small flush of chunks comes through here."""
        depth = self._enter()
        try:
            result = fn()
        except BaseException:
            self._leave(depth, True)
            raise
        self._leave(depth, False)
        return result

    def close(self) -> None:
        self._conn.close()

    def __repr__(self) -> str:
        return f"SqliteStorage({self.path!r})"
