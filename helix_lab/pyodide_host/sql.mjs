// ctx.storage of a SQLite-backed Durable Object: SqlStorage with workerd's cursor API, and
// transactionSync. On SQLite's own WebAssembly build (npm @sqlite.org/sqlite-wasm), which
// has FTS5 as Durable Object SQLite does (sql.js has not). The database lives in memory and
// its file is rewritten at each commit. `sqlite3` below is that module, initialised.

import fs from "node:fs";

const TRANSACTION_STATEMENT = /^\s*(BEGIN|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE)\b/i;
const READ_ONLY_STATEMENT = /^\s*(SELECT|EXPLAIN)\b/i;

// Real Durable Object SQLite refuses these in sql.exec(); transactions go through
// transactionSync() only. The same refusal here keeps the bundle from relying on them.
const TRANSACTION_REFUSED =
  "To execute a transaction, please use the state.storage.transaction() or " +
  "state.storage.transactionSync() APIs instead of the SQL BEGIN TRANSACTION or SAVEPOINT " +
  "statements. The JavaScript API is safer because it will automatically roll back on " +
  "exceptions, and because it interacts correctly with Durable Objects' automatic atomic " +
  "write coalescing.";

export class SqlStorageCursor {
  constructor(columnNames, rows, rowsRead, rowsWritten) {
    this.columnNames = columnNames;
    this.rowsRead = rowsRead;
    this.rowsWritten = rowsWritten;
    this._rows = rows;
    this._next = 0;
  }
  _object(values) {
    return Object.fromEntries(this.columnNames.map((name, i) => [name, values[i]]));
  }
  next() {
    if (this._next >= this._rows.length) return { done: true, value: undefined };
    return { done: false, value: this._object(this._rows[this._next++]) };
  }
  [Symbol.iterator]() {
    return this;
  }
  toArray() {
    return [...this];
  }
  one() {
    const rest = this.toArray();
    if (rest.length !== 1) {
      const detail = rest.length ? "more than one row" : "no results";
      throw new Error(`Expected exactly one result from SQL query, but got ${detail}.`);
    }
    return rest[0];
  }
  *raw() {
    while (this._next < this._rows.length) yield this._rows[this._next++];
  }
}

// A blob comes back as an ArrayBuffer, as in workerd; SQLite's wasm API gives a Uint8Array.
function jsValue(value) {
  return value instanceof Uint8Array
    ? value.buffer.slice(value.byteOffset, value.byteOffset + value.byteLength)
    : value;
}

export class SqlStorage {
  constructor(storage) {
    this._storage = storage;
  }
  exec(query, ...bindings) {
    if (typeof query !== "string") throw new TypeError("exec() takes the SQL text first.");
    const { _db: db, _sqlite3: sqlite3 } = this._storage;
    try {
      const statements = splitStatements(sqlite3, query);
      for (const { text, bare } of statements) {
        if (TRANSACTION_STATEMENT.test(bare)) throw new Error(TRANSACTION_REFUSED);
        if (/\b_cf_/i.test(text)) throw new Error("not authorized: names starting with _cf_ are reserved");
      }
      if (!statements.length) throw new Error("SQL query did not contain a statement.");
      const before = db.changes(true);
      let columns = [];
      let rows = [];
      statements.forEach(({ text }, index) => {
        const statement = db.prepare(text);
        try {
          if (index === statements.length - 1 && bindings.length) statement.bind(bindings.map(bindable));
          // getColumnNames() throws for a statement without columns (CREATE, INSERT)
          columns = statement.columnCount ? statement.getColumnNames([]) : [];
          rows = [];
          while (statement.step()) rows.push(statement.get([]).map(jsValue));
        } finally {
          statement.finalize();
        }
      });
      const written = db.changes(true) - before;
      const readOnly = statements.every(({ bare }) => READ_ONLY_STATEMENT.test(bare));
      if (written || !readOnly) this._storage._changed();
      return new SqlStorageCursor(columns, rows, rows.length, written);
    } catch (error) {
      // "SQLITE_ERROR: sqlite3 result code 1: no such table: t" -> workerd's "...: SQLITE_ERROR"
      const message = String(error?.message ?? error)
        .replace(/^SQLITE_\w+: sqlite3 result code \d+: /, "")
        .replace(/: SQLITE_\w+$/, "");
      throw new Error(`${message}: SQLITE_ERROR`);
    }
  }
  get databaseSize() {
    return this._storage._sqlite3.capi.sqlite3_js_db_export(this._storage._db).byteLength;
  }
}

const COMMENTS = /--[^\n]*|\/\*[\s\S]*?\*\//g;

function stripComments(text) {
  return text.replace(COMMENTS, " ");
}

// The complete statements of `query`: a ";" inside a string or a trigger body stays put.
// Each comes with its text and, for the checks in exec(), that text without comments.
function splitStatements(sqlite3, query) {
  const statements = [];
  let buffer = "";
  const pieces = query.split(";");
  pieces.forEach((piece, index) => {
    const last = index === pieces.length - 1;
    buffer += last ? piece : `${piece};`;
    if (!last && !sqlite3.capi.sqlite3_complete(buffer)) return;
    const bare = stripComments(buffer);
    if (bare.replace(/[\s;]/g, "")) statements.push({ text: buffer, bare });
    buffer = "";
  });
  return statements;
}

function bindable(value) {
  if (value === undefined) return null;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (typeof value === "boolean") return value ? 1 : 0;
  return value;
}

export class DurableObjectStorage {
  constructor(sqlite3, file) {
    this._sqlite3 = sqlite3;
    this._file = file;
    this._db = new sqlite3.oo1.DB(":memory:", "c");
    if (fs.existsSync(file)) {
      const data = fs.readFileSync(file); // a Buffer, which the wasm allocator refuses
      this._load(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    }
    this._db.exec("PRAGMA foreign_keys=ON");
    this._depth = 0;
    this.sql = new SqlStorage(this);
  }
  _load(bytes) {
    const { capi, wasm } = this._sqlite3;
    const pointer = wasm.allocFromTypedArray(bytes);
    const flags = capi.SQLITE_DESERIALIZE_FREEONCLOSE | capi.SQLITE_DESERIALIZE_RESIZEABLE;
    this._db.checkRc(
      capi.sqlite3_deserialize(this._db.pointer, "main", pointer, bytes.length, bytes.length, flags),
    );
  }
  // Writes reach the file when they commit (a whole transaction, or one statement outside
  // one), so a host killed mid-run keeps exactly what was committed, as a Durable Object does.
  _changed() {
    if (this._depth === 0) this._persist();
  }
  _persist() {
    const data = this._sqlite3.capi.sqlite3_js_db_export(this._db);
    const temporary = `${this._file}.tmp`;
    fs.writeFileSync(temporary, data);
    fs.renameSync(temporary, this._file);
  }
  transactionSync(fn) {
    const name = `_cf_txn_${this._depth}`;
    this._db.exec(`SAVEPOINT ${name}`);
    this._depth += 1;
    let result;
    try {
      result = fn();
      if (result && typeof result.then === "function") {
        throw new TypeError("transactionSync() takes a synchronous function.");
      }
    } catch (error) {
      this._depth -= 1;
      this._db.exec(`ROLLBACK TO ${name}`);
      this._db.exec(`RELEASE ${name}`);
      throw error;
    }
    this._depth -= 1;
    this._db.exec(`RELEASE ${name}`);
    this._changed();
    return result;
  }
  close() {
    this._db.close();
  }
}
