"""LocalD1: the D1 Worker API (prepare/bind/all/first/run/raw, batch, exec) over sqlite3."""

from __future__ import annotations

from pathlib import Path

import pytest

from helix_lab.workflows import D1Error, LocalD1


async def test_prepare_bind_run_all_first_raw(tmp_path: Path):
    db = LocalD1(tmp_path / "d1.sqlite3")
    created = await db.exec("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT);\n"
                            "CREATE INDEX tb ON t (b);")
    assert created["count"] == 2
    insert = db.prepare("INSERT INTO t (b) VALUES (?1)")
    first = await insert.bind("x").run()
    second = await insert.bind("y").run()  # bind() returned new statements
    assert first["success"] is True and first["results"] == []
    assert first["meta"]["changes"] == 1 and first["meta"]["changed_db"] is True
    assert (first["meta"]["last_row_id"], second["meta"]["last_row_id"]) == (1, 2)
    rows = await db.prepare("SELECT * FROM t ORDER BY a").all()
    assert rows["results"] == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    assert rows["meta"]["rows_read"] == 2 and rows["meta"]["changes"] == 0
    select = db.prepare("SELECT b FROM t WHERE a = ?")
    assert await select.bind(2).first() == {"b": "y"}
    assert await select.bind(2).first("b") == "y"
    assert await select.bind(9).first() is None
    assert await db.prepare("SELECT a, b FROM t").raw() == [[1, "x"], [2, "y"]]
    assert (await db.prepare("SELECT a, b FROM t WHERE a > 5").raw(column_names=True)
            == [["a", "b"]])
    db.close()
    reopened = LocalD1(tmp_path / "d1.sqlite3")  # it is a file: it survives
    assert await reopened.prepare("SELECT COUNT(*) AS n FROM t").first("n") == 2
    reopened.close()


async def test_batch_is_all_or_nothing():
    db = LocalD1()
    await db.exec("CREATE TABLE t (a INTEGER PRIMARY KEY)")
    results = await db.batch([db.prepare("INSERT INTO t VALUES (?)").bind(i) for i in (1, 2)])
    assert [r["meta"]["changes"] for r in results] == [1, 1]
    with pytest.raises(D1Error, match="UNIQUE constraint failed"):
        await db.batch([db.prepare("INSERT INTO t VALUES (3)"),
                        db.prepare("INSERT INTO t VALUES (1)")])
    assert await db.prepare("SELECT COUNT(*) AS n FROM t").first("n") == 2  # 3 rolled back
    db.close()


async def test_bad_input_is_a_clear_d1_error():
    db = LocalD1()
    await db.exec("CREATE TABLE t (a INTEGER)")
    with pytest.raises(D1Error, match="bind\\(\\) value 1 is a dict"):
        db.prepare("INSERT INTO t VALUES (?)").bind({"no": "objects"})
    with pytest.raises(D1Error, match="no such table: nope"):
        await db.prepare("SELECT * FROM nope").all()
    with pytest.raises(D1Error, match="column 'zz' is not in the result"):
        await db.prepare("SELECT 1 AS a").first("zz")
    with pytest.raises(D1Error, match="non-empty SQL"):
        db.prepare("  ")
    with pytest.raises(D1Error, match="in statement 2"):
        await db.exec("CREATE TABLE u (a); SELEC oops;")
    db.close()
