"""``LocalD1``: Cloudflare D1's Worker API over a ``sqlite3`` file.

::

    db = LocalD1(".helix/agents.sqlite3")
    await db.exec("CREATE TABLE t (a INTEGER, b TEXT)")
    await db.prepare("INSERT INTO t VALUES (?, ?)").bind(1, "x").run()
    row = await db.prepare("SELECT * FROM t WHERE a = ?").bind(1).first()   # {"a": 1, "b": "x"}
    b = await db.prepare("SELECT b FROM t").first("b")                       # "x"
    rows = (await db.prepare("SELECT * FROM t").all())["results"]
    await db.batch([db.prepare("UPDATE t SET b = ?").bind("y"), ...])        # all or nothing

As D1 does: ``bind`` returns a new statement and takes ``?`` / ``?NNN`` parameters only;
``run()`` and ``all()`` return ``{"success": True, "meta": {...}, "results": [...]}``
with ``meta`` carrying ``changes``, ``last_row_id``, ``changed_db``, ``rows_read``,
``rows_written``, ``duration`` and ``size_after``; ``first(column)`` of a missing column
is an error; ``raw()`` returns rows as lists (``column_names=True`` puts the names
first); ``batch`` runs its statements in one transaction; ``exec`` runs a script and
returns ``{"count", "duration"}``. A bound value must be ``None``, a bool, a number, a
string or bytes; anything else is refused with a message naming it.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ..errors import UserError

__all__ = ["D1Error", "D1PreparedStatement", "LocalD1"]

_BINDABLE = (type(None), bool, int, float, str, bytes)


class D1Error(UserError):
    """A query failed (D1_ERROR); the message carries SQLite's reason."""


class D1PreparedStatement:
    """A statement with its bound values; immutable, so it can be reused."""

    def __init__(self, db: LocalD1, sql: str, params: tuple[Any, ...] = ()) -> None:
        self._db = db
        self.sql = sql
        self.params = params

    def bind(self, *values: Any) -> D1PreparedStatement:
        for i, value in enumerate(values, 1):
            if not isinstance(value, _BINDABLE):
                raise D1Error(f"D1_TYPE_ERROR: bind() value {i} is a {type(value).__name__}; "
                              "D1 takes None, bool, int, float, str or bytes.")
        return D1PreparedStatement(self._db, self.sql, tuple(values))

    async def all(self) -> dict[str, Any]:
        return self._db._execute(self)[0]

    async def run(self) -> dict[str, Any]:
        return self._db._execute(self)[0]

    async def first(self, column: str | None = None) -> Any:
        rows = self._db._execute(self)[0]["results"]
        if not rows:
            return None
        if column is None:
            return rows[0]
        if column not in rows[0]:
            raise D1Error(f"D1_COLUMN_NOTFOUND: column {column!r} is not in the result "
                          f"(columns: {', '.join(rows[0])}).")
        return rows[0][column]

    async def raw(self, *, column_names: bool = False) -> list[list[Any]]:
        result, columns = self._db._execute(self)
        rows = [[row[c] for c in columns] for row in result["results"]]
        return [columns, *rows] if column_names else rows

    def __repr__(self) -> str:
        return f"<D1PreparedStatement {self.sql[:60]!r} params={len(self.params)}>"


class LocalD1:
    """A D1 database on one sqlite3 file (``":memory:"`` for a private one)."""

    def __init__(self, path: str | os.PathLike[str] = ":memory:") -> None:
        import sqlite3

        self.path = str(path)
        if self.path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._sqlite3 = sqlite3
        self._conn = sqlite3.connect(self.path, isolation_level=None)
        if self.path != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
        self._in_batch = False

    def prepare(self, sql: str) -> D1PreparedStatement:
        if not isinstance(sql, str) or not sql.strip():
            raise D1Error("D1_ERROR: prepare() needs a non-empty SQL string.")
        return D1PreparedStatement(self, sql)

    async def batch(self, statements: list[D1PreparedStatement]) -> list[dict[str, Any]]:
        """Run every statement in one transaction; one failure rolls them all back."""
        for s in statements:
            if not isinstance(s, D1PreparedStatement):
                raise D1Error(f"D1_ERROR: batch() takes prepared statements, got {s!r}.")
        self._conn.execute("BEGIN IMMEDIATE")
        self._in_batch = True
        try:
            results = [self._execute(s)[0] for s in statements]
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        finally:
            self._in_batch = False
        self._conn.execute("COMMIT")
        return results

    async def exec(self, script: str) -> dict[str, Any]:
        """Run ``;``-separated statements without parameters (migrations, schema)."""
        start = time.perf_counter()
        count = 0
        try:
            for statement in _statements(script):
                self._conn.execute(statement)
                count += 1
        except self._sqlite3.Error as exc:
            raise D1Error(f"D1_EXEC_ERROR: {exc} (in statement {count + 1}).") from None
        return {"count": count, "duration": (time.perf_counter() - start) * 1000}

    def _execute(self, statement: D1PreparedStatement) -> tuple[dict[str, Any], list[str]]:
        start = time.perf_counter()
        before = self._conn.total_changes
        try:
            cursor = self._conn.execute(statement.sql, statement.params)
            columns = [d[0] for d in cursor.description or ()]
            rows = [dict(zip(columns, r, strict=True)) for r in cursor.fetchall()]
        except self._sqlite3.Error as exc:
            raise D1Error(f"D1_ERROR: {exc}: {statement.sql[:200]}") from None
        changes = self._conn.total_changes - before
        return {
            "success": True,
            "results": rows,
            "meta": {
                "duration": (time.perf_counter() - start) * 1000,
                "changes": changes,
                "last_row_id": cursor.lastrowid or 0,
                "changed_db": changes > 0,
                "rows_read": len(rows),
                "rows_written": changes,
                "size_after": self._size(),
            },
        }, columns

    def _size(self) -> int:
        page_count = self._conn.execute("PRAGMA page_count").fetchone()[0]
        page_size = self._conn.execute("PRAGMA page_size").fetchone()[0]
        return int(page_count * page_size)

    def close(self) -> None:
        self._conn.close()

    def __repr__(self) -> str:
        return f"LocalD1({self.path!r})"


def _statements(script: str) -> list[str]:
    """Split a script on ``;`` at statement ends, using sqlite3's own completeness check."""
    import sqlite3

    statements, current = [], ""
    for piece in script.split(";"):
        current += piece + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \n\t;"):
                statements.append(current.strip())
            current = ""
    if current.strip(" \n\t;"):
        statements.append(current.strip())
    return statements
