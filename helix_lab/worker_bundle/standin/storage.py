"""``ctx.storage`` of a SQLite-backed Durable Object, on a ``sqlite3`` file.

What ``exec`` keeps of the real ``ctx.storage.sql`` (workerd ``api/sql.c++``):

- ``exec(query, *bindings)`` is synchronous and returns a cursor: ``toArray()`` (rows as
  dicts), ``one()`` (exactly one row, else an error), iteration, ``raw()``,
  ``columnNames``, ``rowsRead``, ``rowsWritten``;
- several ``;``-separated statements may be sent at once: all but the last run first,
  and the bindings and the result belong to the last;
- ``BEGIN``/``COMMIT``/``ROLLBACK``/``SAVEPOINT``/``RELEASE`` are refused (use
  ``transactionSync``), as are names starting with ``_cf_``;
- bindings are ``str``, ``int``, ``float``, ``bytes`` or ``None``; a ``bool`` is refused;
- numbers come back as JavaScript numbers do: a whole REAL becomes an ``int``.

``transactionSync(fn)`` runs ``fn`` atomically and takes its writes back if ``fn``
raises; transactions nest. The file, its pragmas and the transactions are the runtime's
own SQLite binding (:class:`helix_lab.runtime.sql.SqliteStorage`), so the kernel and the
stand-in cannot disagree on what a nested transaction does.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from helix_lab.runtime.sql import SqliteStorage

from .workers import JsDict

__all__ = ["DurableObjectStorage", "SqlCursor", "SqlError", "SqlStorage", "split_statements"]

T = TypeVar("T")

_FORBIDDEN = re.compile(r"^\s*(BEGIN|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE)\b", re.IGNORECASE)
_RESERVED = re.compile(r"(?<![A-Za-z0-9_])_cf_\w*", re.IGNORECASE)
_COMMENTS = re.compile(r"(--[^\n]*\n?|/\*.*?\*/)", re.DOTALL)


class SqlError(Exception):
    """A SQL error, as the JavaScript ``Error`` that ``exec`` throws on Cloudflare."""


def split_statements(query: str) -> list[str]:
    """``query`` cut into complete statements (``;`` inside strings stays put)."""
    statements: list[str] = []
    buffer = ""
    pieces = query.split(";")
    for i, piece in enumerate(pieces):
        buffer += piece + (";" if i < len(pieces) - 1 else "")
        if i < len(pieces) - 1 and not sqlite3.complete_statement(buffer):
            continue
        if _COMMENTS.sub("", buffer).strip(" \t\r\n;"):
            statements.append(buffer)
        buffer = ""
    return statements


@functools.lru_cache(maxsize=1024)
def _statements(query: str) -> tuple[str, ...]:
    """The checked statements of a query. A session sends the same few query texts over
    and over, so each is cut and checked once (a refused one raises every time)."""
    statements = split_statements(query)
    if not statements:
        raise SqlError("SQL query did not contain a statement.")
    for statement in statements:
        text = _COMMENTS.sub(" ", statement)
        if _FORBIDDEN.match(text):
            raise SqlError(
                "To execute a transaction, please use the state.storage.transaction() or "
                "state.storage.transactionSync() APIs instead of the SQL BEGIN TRANSACTION "
                "or SAVEPOINT statements.")
        if _RESERVED.search(text):
            raise SqlError("not authorized: names starting with _cf_ are reserved.")
    return tuple(statements)


_PLAIN = frozenset({str, int, float, bytes, type(None)})


def _check_binding(value: Any) -> Any:
    if type(value) in _PLAIN:
        return value
    if isinstance(value, bool):
        raise TypeError("SQL bindings cannot be booleans on Cloudflare; pass 0 or 1.")
    if value is None or isinstance(value, str | int | float | bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"Unsupported SQL binding type {type(value).__name__}: use str, int, "
                    "float, bytes or None.")


def _plain(values: tuple[Any, ...]) -> bool:
    """Whether every binding passes as it is (the common case, checked in C)."""
    return all(map(_PLAIN.__contains__, map(type, values)))


def _js_value(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class SqlCursor:
    """The result of one ``exec``: rows already read, offered the way the JS cursor is."""

    def __init__(self, columns: list[str], rows: list[tuple[Any, ...]], written: int) -> None:
        self.columnNames = columns
        self._rows = rows
        self._next = 0
        self.rowsRead = len(rows)
        self.rowsWritten = written

    def _row(self, values: tuple[Any, ...]) -> JsDict:
        if float in map(type, values):  # rare: only a REAL column needs converting
            values = tuple([_js_value(v) for v in values])
        return JsDict(zip(self.columnNames, values, strict=True))

    def __iter__(self) -> Iterator[JsDict]:
        return self

    def __next__(self) -> JsDict:
        if self._next >= len(self._rows):
            raise StopIteration
        self._next += 1
        return self._row(self._rows[self._next - 1])

    def next(self) -> dict[str, Any]:
        """The JS iterator protocol: ``{"done": bool, "value": row}``."""
        try:
            return {"done": False, "value": next(self)}
        except StopIteration:
            return {"done": True}

    def toArray(self) -> list[JsDict]:
        rest, self._next = self._rows[self._next:], len(self._rows)
        return [self._row(values) for values in rest]

    def one(self) -> JsDict:
        rest = self.toArray()
        if len(rest) != 1:
            detail = "no results" if not rest else "more than one row"
            raise SqlError(f"Expected exactly one result from SQL query, but got {detail}.")
        return rest[0]

    def raw(self) -> Iterator[list[Any]]:
        while self._next < len(self._rows):
            self._next += 1
            yield [_js_value(v) for v in self._rows[self._next - 1]]


class SqlStorage:
    """``ctx.storage.sql``."""

    def __init__(self, connection: sqlite3.Connection, path: str) -> None:
        self._conn = connection
        self._path = path

    def exec(self, query: str, *bindings: Any) -> SqlCursor:
        if not isinstance(query, str):
            raise TypeError("exec() takes the SQL text as its first argument.")
        statements = _statements(query)
        params = bindings if _plain(bindings) else tuple([_check_binding(v) for v in bindings])
        try:
            for statement in statements[:-1]:
                self._conn.execute(statement)
            before = self._conn.total_changes
            cursor = self._conn.execute(statements[-1], params)
            rows = cursor.fetchall()
        except sqlite3.Error as exc:
            raise SqlError(f"{exc}: SQLITE_ERROR") from None
        columns = [d[0] for d in cursor.description or ()]
        return SqlCursor(columns, rows, self._conn.total_changes - before)

    @property
    def databaseSize(self) -> int:
        if self._path == ":memory:":
            return 0
        return sum(os.path.getsize(p) for p in (self._path, self._path + "-wal")
                   if os.path.exists(p))


def _synchronous(result: T) -> T:
    """``result``, unless it is an awaitable: ``transactionSync`` takes a synchronous
    function, and raising inside the transaction takes back what ``fn`` wrote."""
    if result is not None and inspect.isawaitable(result):
        close = getattr(result, "close", None)
        if close is not None:
            close()
        raise TypeError("transactionSync() takes a synchronous function; use "
                        "transaction() for an async one.")
    return result


class DurableObjectStorage:
    """``ctx.storage``: the SQL API and transactions (the KV API is not emulated)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._db = SqliteStorage(path)
        self.sql = SqlStorage(self._db.connection, path)

    def transactionSync(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` atomically; if it raises, none of its writes stay."""
        return self._db.transaction(lambda: _synchronous(fn()))

    async def transaction(self, fn: Callable[[Any], Any]) -> Any:
        """``await storage.transaction(async_fn)``; ``async_fn`` gets this storage as ``txn``."""
        with self._db.atomic():
            result = fn(self)
            if inspect.isawaitable(result):
                result = await result
        return result

    def close(self) -> None:
        self._db.close()
