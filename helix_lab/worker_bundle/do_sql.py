"""``DOSqlStorage``: the runtime's :class:`~helix_lab.runtime.sql.SqlStorage` over a
SQLite-backed Durable Object's ``ctx.storage``.

Rows come back as plain dicts with JS ``null`` as ``None`` and blobs as ``bytes``;
``transaction`` runs in ``transactionSync``, keeping the result and any exception on the
Python side.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["DOSqlStorage"]

T = TypeVar("T")


_PLAIN = frozenset({str, int, float, bytes, type(None)})


def _row(row: Any) -> dict[str, Any]:
    if isinstance(row, dict) and _PLAIN.issuperset(map(type, row.values())):
        return dict(row)  # the common row (the stand-in's always): nothing to convert
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
        if bool in map(type, params):  # rare: checked in C, converted only when needed
            params = tuple([_binding(p) for p in params])
        cursor = self._sql.exec(sql, *params)
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
