// The Pyodide host's ctx.storage (helix_lab/pyodide_host/sql.mjs) behaves as a SQLite-backed
// Durable Object's: the SqlStorage cursor API, transactions only through transactionSync
// (nested with savepoints), blobs as ArrayBuffer, FTS5, and a file that holds exactly what
// was committed. Run by tests/test_pyodide_host_js.py (HELIX_NODE_MODULES: where the npm packages are).

import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { pathToFileURL } from "node:url";

import { DurableObjectStorage } from "../../helix_lab/pyodide_host/sql.mjs";

const sqliteWasm = path.join(process.env.HELIX_NODE_MODULES, "@sqlite.org/sqlite-wasm/dist/node.mjs");
const sqlite3 = await (await import(pathToFileURL(sqliteWasm).href)).default({ print: () => {} });

function fresh() {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "helix-sql-")), "object.sqlite");
  const storage = new DurableObjectStorage(sqlite3, file);
  storage.sql.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, data BLOB)");
  return { file, storage, sql: storage.sql };
}

test("the cursor gives rows as objects, raw arrays, names and counts", () => {
  const { sql } = fresh();
  const insert = sql.exec("INSERT INTO t (name) VALUES (?), (?)", "a", "b");
  assert.equal(insert.rowsWritten, 2);
  const cursor = sql.exec("SELECT id, name FROM t ORDER BY id");
  assert.deepEqual(cursor.columnNames, ["id", "name"]);
  assert.deepEqual(cursor.toArray(), [{ id: 1, name: "a" }, { id: 2, name: "b" }]);
  assert.equal(cursor.rowsRead, 2);
  assert.equal(cursor.rowsWritten, 0);
  assert.deepEqual([...sql.exec("SELECT name FROM t ORDER BY id").raw()], [["a"], ["b"]]);
  assert.deepEqual([...sql.exec("SELECT name FROM t WHERE id = ?", 2)], [{ name: "b" }]);
  assert.deepEqual(sql.exec("SELECT name FROM t WHERE id = 1").one(), { name: "a" });
  assert.throws(() => sql.exec("SELECT * FROM t").one(), /exactly one result.*more than one/);
  assert.throws(() => sql.exec("SELECT * FROM t WHERE id = 9").one(), /no results/);
});

test("several statements in one exec run in order; the cursor is the last one's", () => {
  const { sql } = fresh();
  const cursor = sql.exec("INSERT INTO t (name) VALUES ('x'); SELECT count(*) AS n FROM t");
  assert.deepEqual(cursor.toArray(), [{ n: 1 }]);
  assert.equal(cursor.rowsWritten, 1);
});

test("blobs come back as ArrayBuffer; nulls and booleans bind as SQLite values", () => {
  const { sql } = fresh();
  sql.exec("INSERT INTO t (name, data) VALUES (?, ?)", null, new Uint8Array([1, 2, 3]));
  sql.exec("INSERT INTO t (name, data) VALUES (?, ?)", true, new Uint8Array([9]).buffer);
  const rows = sql.exec("SELECT name, data FROM t ORDER BY id").toArray();
  assert.equal(rows[0].name, null);
  assert.ok(rows[0].data instanceof ArrayBuffer);
  assert.deepEqual([...new Uint8Array(rows[0].data)], [1, 2, 3]);
  assert.equal(rows[1].name, "1");
  assert.deepEqual([...new Uint8Array(rows[1].data)], [9]);
});

test("FTS5 is there, as in Durable Object SQLite; integers keep their precision", () => {
  const { sql } = fresh();
  sql.exec("CREATE VIRTUAL TABLE f USING fts5(body)");
  sql.exec("INSERT INTO f VALUES (?), (?)", "sea otters eat urchins", "gulls eat chips");
  assert.deepEqual(sql.exec("SELECT body FROM f WHERE f MATCH ?", "otters").toArray(),
    [{ body: "sea otters eat urchins" }]);
  assert.equal(sql.exec("SELECT 9007199254740993 AS n").one().n, 9007199254740993n);
  assert.deepEqual(sql.exec("SELECT ';' AS s; SELECT 2 AS t").toArray(), [{ t: 2 }]);
});

test("transaction statements are refused in exec, as on Cloudflare", () => {
  const { sql } = fresh();
  for (const statement of ["BEGIN", "BEGIN TRANSACTION", "COMMIT", "ROLLBACK", "SAVEPOINT s",
    "RELEASE s", "  end transaction", "SELECT 1; BEGIN", "/* c */ BEGIN"]) {
    assert.throws(() => sql.exec(statement), /transactionSync\(\)/, statement);
  }
  assert.throws(() => sql.exec("CREATE TABLE _cf_x (a)"), /reserved/);
  assert.throws(() => sql.exec("SELECT * FROM nowhere"), /no such table.*SQLITE_ERROR/);
  assert.throws(() => sql.exec("   "), /did not contain a statement/);
});

test("transactionSync commits, rolls back on a throw, and nests", () => {
  const { storage, sql } = fresh();
  const count = () => sql.exec("SELECT count(*) AS n FROM t").one().n;
  assert.equal(storage.transactionSync(() => {
    sql.exec("INSERT INTO t (name) VALUES ('kept')");
    return "done";
  }), "done");
  assert.throws(() => storage.transactionSync(() => {
    sql.exec("INSERT INTO t (name) VALUES ('lost')");
    throw new Error("boom");
  }), /boom/);
  assert.equal(count(), 1);
  storage.transactionSync(() => {
    sql.exec("INSERT INTO t (name) VALUES ('outer')");
    assert.throws(() => storage.transactionSync(() => {
      sql.exec("INSERT INTO t (name) VALUES ('inner')");
      throw new Error("inner fails");
    }));
  });
  assert.deepEqual(sql.exec("SELECT name FROM t ORDER BY id").toArray().map((r) => r.name),
    ["kept", "outer"]);
  assert.throws(() => storage.transactionSync(async () => {}), /synchronous/);
});

test("the file holds what was committed, and only that", () => {
  const { file, storage, sql } = fresh();
  sql.exec("INSERT INTO t (name) VALUES ('first')");
  const names = () =>
    new DurableObjectStorage(sqlite3, file).sql.exec("SELECT name FROM t ORDER BY id").toArray()
      .map((r) => r.name);
  assert.deepEqual(names(), ["first"]);
  storage.transactionSync(() => {
    sql.exec("INSERT INTO t (name) VALUES ('second')");
    assert.deepEqual(names(), ["first"]); // not yet committed: not on disk
  });
  assert.deepEqual(names(), ["first", "second"]);
  // Pragmas survive the re-open that writing the file does.
  assert.equal(sql.exec("PRAGMA foreign_keys").one().foreign_keys, 1);
});
