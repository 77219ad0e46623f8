// ctx.storage of a SQLite-backed Durable Object, on sql.js: SqlStorage with workerd's cursor
// API, and transactionSync. One database file per object, rewritten at each commit.

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

// A blob comes back as an ArrayBuffer, as in workerd; sql.js gives a Uint8Array.
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
    const db = this._storage._db;
    try {
      // sql.js frees each statement of the iterator when it yields the next one.
      const texts = [];
      for (const statement of db.iterateStatements(query)) texts.push(statement.getSQL());
      for (const text of texts) {
        if (TRANSACTION_STATEMENT.test(text)) throw new Error(TRANSACTION_REFUSED);
        if (/\b_cf_/i.test(text)) throw new Error("not authorized: names starting with _cf_ are reserved");
      }
      if (!texts.length) throw new Error("SQL query did not contain a statement.");
      const before = this._storage._totalChanges();
      let columns = [];
      let rows = [];
      texts.forEach((text, index) => {
        const statement = db.prepare(text);
        try {
          if (index === texts.length - 1 && bindings.length) statement.bind(bindings.map(bindable));
          columns = statement.getColumnNames();
          rows = [];
          while (statement.step()) rows.push(statement.get().map(jsValue));
        } finally {
          statement.free();
        }
      });
      const written = this._storage._totalChanges() - before;
      if (written || !texts.every((text) => READ_ONLY_STATEMENT.test(text))) this._storage._changed();
      return new SqlStorageCursor(columns, rows, rows.length, written);
    } catch (error) {
      const message = String(error?.message ?? error).replace(/: SQLITE_\w+$/, "");
      throw new Error(`${message}: SQLITE_ERROR`);
    }
  }
  get databaseSize() {
    return this._storage._db.export().byteLength;
  }
}

function bindable(value) {
  if (value === undefined) return null;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (typeof value === "boolean") return value ? 1 : 0;
  return value;
}

export class DurableObjectStorage {
  constructor(SQL, file) {
    this._file = file;
    this._db = fs.existsSync(file) ? new SQL.Database(fs.readFileSync(file)) : new SQL.Database();
    this._db.run("PRAGMA foreign_keys=ON");
    this._depth = 0;
    this.sql = new SqlStorage(this);
  }
  _totalChanges() {
    return this._db.exec("SELECT total_changes()")[0].values[0][0];
  }
  // Writes reach the file when they commit (a whole transaction, or one statement outside
  // one), so a host killed mid-run keeps exactly what was committed, as a Durable Object does.
  _changed() {
    if (this._depth === 0) this._persist();
  }
  _persist() {
    const data = this._db.export(); // sql.js re-opens the database, resetting pragmas
    this._db.run("PRAGMA foreign_keys=ON");
    const temporary = `${this._file}.tmp`;
    fs.writeFileSync(temporary, data);
    fs.renameSync(temporary, this._file);
  }
  transactionSync(fn) {
    const name = `_cf_txn_${this._depth}`;
    this._db.run(`SAVEPOINT ${name}`);
    this._depth += 1;
    let result;
    try {
      result = fn();
      if (result && typeof result.then === "function") {
        throw new TypeError("transactionSync() takes a synchronous function.");
      }
    } catch (error) {
      this._depth -= 1;
      this._db.run(`ROLLBACK TO ${name}`);
      this._db.run(`RELEASE ${name}`);
      throw error;
    }
    this._depth -= 1;
    this._db.run(`RELEASE ${name}`);
    this._changed();
    return result;
  }
  close() {
    this._db.close();
  }
}

