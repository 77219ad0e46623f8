// A small stand-in for workerd: runs a `helix deploy` Worker bundle under real Pyodide in
// Node 20 and serves it over HTTP and WebSockets on 127.0.0.1.
//
//   node host.mjs --bundle DIR --storage DIR --modules NODE_MODULES --wheels DIR [--port N]
//   env: HELIX_TOKEN (required), HELIX_AGENTS_MODULE, ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL
//
// It provides what the Workers runtime gives a Python Worker: the two workerd-internal
// modules the real `workers` SDK imports, `ctx.storage.sql` (SqlStorage on sql.js, one
// database file per object), `transactionSync`, Durable Object namespaces and stubs,
// `WebSocketPair`, and a `Response` that accepts status 101 with a `webSocket`. Host objects
// carry workerd's class names, because the SDK recognises them by `constructor.name`.
//
// It prints `listening on http://HOST:PORT` on stdout when ready; everything else goes to
// stderr. What it does not emulate: input/output gates, hibernation, CPU limits, RPC
// serialization between objects (everything runs in this one process).

import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

const args = parseArgs(process.argv.slice(2));
const requireFrom = createRequire(path.join(args.modules, "noop.js"));
const log = (...parts) => console.error("[pyodide-host]", ...parts);

function parseArgs(argv) {
  const out = { host: "127.0.0.1", port: "0" };
  for (let i = 0; i < argv.length; i += 2) out[argv[i].replace(/^--/, "")] = argv[i + 1];
  for (const key of ["bundle", "storage", "modules", "wheels"]) {
    if (!out[key]) throw new Error(`host.mjs needs --${key}`);
  }
  return out;
}

// -- ctx.storage.sql on sql.js ---------------------------------------------------------------

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

class SqlStorageCursor {
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

class SqlStorage {
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

class DurableObjectStorage {
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

// -- WebSocketPair ---------------------------------------------------------------------------

const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

// One end of a WebSocketPair. Events sent before accept() wait in a queue, as in workerd.
// An end accepted with ctx.acceptWebSocket() hands its events to the object's handlers.
class WebSocket {
  constructor() {
    this.readyState = OPEN;
    this._peer = null;
    this._accepted = false;
    this._queue = [];
    this._listeners = { message: [], close: [], error: [] };
    this._attachment = undefined;
    this._owner = null; // {object, tags} once a Durable Object accepted it
  }
  accept() {
    this._accepted = true;
    for (const event of this._queue.splice(0)) this._dispatch(event);
  }
  addEventListener(type, listener) {
    (this._listeners[type] ||= []).push(listener);
  }
  send(data) {
    if (this.readyState !== OPEN) throw new TypeError("Can't call WebSocket send() after close().");
    this._peer._receive({ type: "message", data });
  }
  close(code = 1000, reason = "") {
    if (this.readyState === CLOSED) return;
    const answering = this.readyState === CLOSING; // the peer closed first
    this.readyState = CLOSED;
    if (!answering) this._peer._receive({ type: "close", code, reason, wasClean: true });
  }
  serializeAttachment(value) {
    this._attachment = structuredClone(value);
  }
  deserializeAttachment() {
    return structuredClone(this._attachment ?? null);
  }
  _receive(event) {
    if (event.type === "close") {
      if (this.readyState === CLOSED) return;
      this.readyState = this.readyState === OPEN ? CLOSING : CLOSED;
    }
    if (this._accepted) this._dispatch(event);
    else this._queue.push(event);
  }
  _dispatch(event) {
    if (this._owner) {
      this._owner.object.socketEvent(this, event);
      return;
    }
    for (const listener of this._listeners[event.type] || []) listener(event);
  }
}

class WebSocketPair {
  constructor() {
    const client = new WebSocket();
    const server = new WebSocket();
    client._peer = server;
    server._peer = client;
    this[0] = client;
    this[1] = server;
  }
}

// workerd's Response takes status 101 with a webSocket; Node's refuses any status below 200.
const NodeResponse = globalThis.Response;
class Response extends NodeResponse {
  constructor(body, init = {}) {
    const upgrade = init?.status === 101;
    if (upgrade && !init.webSocket) {
      throw new RangeError("Responses may only be constructed with status 101 with a webSocket.");
    }
    super(body, upgrade ? { ...init, status: 200 } : init);
    this._webSocket = upgrade ? init.webSocket : null;
  }
  get status() {
    return this._webSocket ? 101 : super.status;
  }
  get webSocket() {
    return this._webSocket;
  }
}

// -- Durable Objects -------------------------------------------------------------------------

class DurableObjectId {
  constructor(hex, name) {
    this._hex = hex;
    if (name !== undefined) this.name = name;
  }
  toString() {
    return this._hex;
  }
  equals(other) {
    return other instanceof DurableObjectId && other._hex === this._hex;
  }
}

class DurableObjectState {
  constructor(object, id, storage) {
    this._object = object;
    this.id = id;
    this.storage = storage;
  }
  waitUntil(promise) {
    watch(promise, "a waitUntil task of a Durable Object");
  }
  async blockConcurrencyWhile(fn) {
    return await fn();
  }
  acceptWebSocket(ws, tags = []) {
    if (!(ws instanceof WebSocket)) throw new TypeError("acceptWebSocket() takes a WebSocket.");
    if (ws._owner) throw new TypeError("This WebSocket was accepted already.");
    ws._owner = { object: this._object, tags: [...tags] };
    this._object.sockets.add(ws);
    ws.accept();
  }
  getWebSockets(tag) {
    return [...this._object.sockets].filter(
      (ws) => ws.readyState !== CLOSED && (tag === undefined || ws._owner.tags.includes(tag)),
    );
  }
}

// A live object: its Python instance, built on the first event, and its accepted sockets.
class LiveObject {
  constructor(namespace, id) {
    const file = path.join(namespace.storageDir, `${id.toString()}.sqlite`);
    this.namespace = namespace;
    this.state = new DurableObjectState(this, id, new DurableObjectStorage(runtime.SQL, file));
    this.sockets = new Set();
    this.instance = null;
  }
  python() {
    this.instance ||= this.namespace.pythonClass(this.state, runtime.env);
    return this.instance;
  }
  async fetch(request) {
    return await runtime.call(this.python(), "fetch", [request]);
  }
  socketEvent(ws, event) {
    const call =
      event.type === "message"
        ? ["webSocketMessage", [ws, event.data]]
        : ["webSocketClose", [ws, event.code, event.reason, event.wasClean]];
    if (event.type === "close") this.sockets.delete(ws);
    watch(runtime.call(this.python(), ...call), `${call[0]} of a Durable Object`);
  }
}

// The stub a namespace's get() returns; workerd's class for it is named DurableObject.
class DurableObject {
  constructor(namespace, id) {
    this._namespace = namespace;
    this.id = id;
    this.name = id.name;
  }
  async fetch(input, init) {
    const request = input instanceof Request && !init ? input : new Request(input, init);
    const response = await this._namespace.object(this.id).fetch(request);
    if (!(response instanceof NodeResponse)) {
      throw new TypeError("Incorrect type for Promise: the Promise did not resolve to 'Response'.");
    }
    return response;
  }
}

class DurableObjectNamespace {
  constructor(pythonClass, storageDir) {
    this.pythonClass = pythonClass;
    this.storageDir = storageDir;
    this._objects = new Map();
  }
  idFromName(name) {
    const hex = crypto.createHash("sha256").update(String(name)).digest("hex");
    return new DurableObjectId(hex, String(name));
  }
  newUniqueId() {
    return new DurableObjectId(crypto.randomBytes(32).toString("hex"));
  }
  idFromString(hex) {
    if (!/^[0-9a-f]{64}$/.test(hex)) throw new TypeError(`Invalid Durable Object ID ${hex}`);
    return new DurableObjectId(hex);
  }
  get(id) {
    if (!(id instanceof DurableObjectId)) throw new TypeError("get() takes a DurableObjectId.");
    return new DurableObject(this, id);
  }
  getByName(name) {
    return this.get(this.idFromName(name));
  }
  object(id) {
    let live = this._objects.get(id.toString());
    if (!live) {
      live = new LiveObject(this, id);
      this._objects.set(id.toString(), live);
    }
    return live;
  }
  close() {
    for (const live of this._objects.values()) live.state.storage.close();
  }
}

class ExecutionContext {
  waitUntil(promise) {
    watch(promise, "a waitUntil task of the Worker");
  }
  passThroughOnException() {}
}

// A Python awaitable handed to JS is a proxy that Pyodide destroys when the call returns,
// so subscribe to it right away.
function watch(promise, what) {
  try {
    promise?.then?.(undefined, (error) => log(`${what} failed:`, error?.message ?? error));
  } catch (error) {
    log(`${what} could not be watched:`, error?.message ?? error);
  }
}

// -- Pyodide ---------------------------------------------------------------------------------

const runtime = {};

async function bootPython() {
  const started = Date.now();
  const { loadPyodide } = await import(
    pathToFileURL(path.join(args.modules, "pyodide", "pyodide.mjs")).href
  );
  runtime.SQL = await requireFrom("sql.js")();
  const py = await loadPyodide({
    indexURL: path.join(args.modules, "pyodide") + path.sep,
    stdout: (line) => console.error(line),
    stderr: (line) => console.error(line),
  });
  const booted = Date.now();
  const wheels = fs
    .readdirSync(args.wheels)
    .filter((name) => name.endsWith(".whl"))
    .map((name) => path.resolve(args.wheels, name));
  const problems = [];
  await py.loadPackage(wheels, { messageCallback: () => {}, errorCallback: (m) => problems.push(m) });
  if (problems.length) throw new Error(`loading the wheels failed: ${problems.join("; ")}`);

  const workersModule = { env: null, waitUntil: (p) => watch(p, "waitUntil") };
  py.registerJsModule(
    "_cloudflare_compat_flags",
    new Proxy({}, { get: (_, key) => (typeof key === "string" && !key.startsWith("__") ? false : undefined) }),
  );
  py.registerJsModule("_pyodide_entrypoint_helper", {
    cloudflareWorkersModule: workersModule,
    cloudflareSocketsModule: {},
    doAnImport: (name) => import(name),
    patchWaitUntil: () => {}, // ExecutionContext.waitUntil takes Python awaitables already
    *patch_env_helper(patch) {
      const saved = { ...runtime.env };
      Object.assign(runtime.env, patch.toJs?.() ?? patch);
      try {
        yield;
      } finally {
        for (const key of Object.keys(runtime.env)) delete runtime.env[key];
        Object.assign(runtime.env, saved);
      }
    },
  });
  Object.assign(globalThis, { WebSocketPair, WebSocket, Response });

  py.FS.mkdirTree("/bundle");
  py.FS.mount(py.FS.filesystems.NODEFS, { root: path.resolve(args.bundle) }, "/bundle");
  py.FS.mkdirTree("/host");
  py.FS.writeFile("/host/helix_host_glue.py", fs.readFileSync(new URL("./glue.py", import.meta.url)));
  py.runPython(`
import sys
sys.dont_write_bytecode = True
sys.path[:0] = ["/host", "/bundle/src", "/bundle/python_modules"]
`);
  const glue = py.pyimport("helix_host_glue");
  const entry = py.pyimport("entry");
  const namespace = new DurableObjectNamespace(entry.HelixAgentServer, args.storage);
  runtime.env = {
    AGENTS: namespace,
    HELIX_TOKEN: process.env.HELIX_TOKEN,
    HELIX_AGENTS_MODULE: process.env.HELIX_AGENTS_MODULE || "helix_lab.examples",
  };
  for (const name of ["ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"]) {
    if (process.env[name]) runtime.env[name] = process.env[name];
  }
  workersModule.env = runtime.env;
  runtime.namespace = namespace;
  runtime.call = (instance, method, callArgs) => glue.invoke(instance, method, callArgs);
  runtime.entrypoint = entry.Default;
  runtime.pyodide = py;
  log(`Pyodide ${py.version} booted in ${booted - started} ms; bundle loaded in ${Date.now() - booted} ms`);
}

// A new entrypoint instance per request, with its own ExecutionContext, as in workerd.
async function callWorker(request) {
  const instance = runtime.entrypoint(new ExecutionContext(), runtime.env);
  try {
    return await runtime.call(instance, "fetch", [request]);
  } finally {
    instance.destroy();
  }
}

// -- HTTP and WebSockets ---------------------------------------------------------------------

function toRequest(req, body) {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    headers.set(name, Array.isArray(value) ? value.join(", ") : value);
  }
  const hasBody = body.length && !["GET", "HEAD"].includes(req.method);
  return new Request(`http://${req.headers.host || "localhost"}${req.url}`, {
    method: req.method,
    headers,
    body: hasBody ? body : undefined,
  });
}

function jsonError(status, code, message) {
  return new NodeResponse(JSON.stringify({ error: { code, message } }), {
    status,
    headers: { "content-type": "application/json" },
  });
}

async function answer(req) {
  try {
    return await callWorker(toRequest(req, await readBody(req)));
  } catch (error) {
    log("the Worker failed on a request:", error?.message ?? error);
    return jsonError(500, "internal_error", "The Worker hit an unexpected error; see the host log.");
  }
}

async function readBody(req) {
  const parts = [];
  for await (const part of req) parts.push(part);
  return Buffer.concat(parts);
}

async function sendResponse(response, res) {
  const headers = {};
  response.headers.forEach((value, name) => (headers[name] = value));
  delete headers["content-length"];
  res.writeHead(response.status, headers);
  res.flushHeaders();
  if (!response.body) return res.end();
  const reader = response.body.getReader();
  // The client went away. A reason that is an Error: Pyodide cannot raise a bare undefined
  // in the Python side still writing to the stream.
  res.on("close", () => reader.cancel(new Error("the client disconnected")).catch(() => {}));
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      res.write(value);
    }
  } catch {
    // the stream was cancelled
  }
  res.end();
}

async function upgrade(req, socket, head, wss) {
  const response = await answer(req);
  const client = response.webSocket;
  if (response.status !== 101 || !client) {
    const body = Buffer.from(await response.arrayBuffer());
    const lines = [`HTTP/1.1 ${response.status} ${http.STATUS_CODES[response.status] || ""}`];
    response.headers.forEach((value, name) => name !== "content-length" && lines.push(`${name}: ${value}`));
    lines.push(`content-length: ${body.length}`, "connection: close", "", "");
    socket.end(Buffer.concat([Buffer.from(lines.join("\r\n")), body]));
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    client.addEventListener("message", (event) => ws.send(event.data));
    client.addEventListener("close", (event) => {
      client.close(event.code, event.reason);
      ws.close(validCloseCode(event.code), event.reason);
    });
    client.accept();
    ws.on("message", (data, isBinary) => {
      if (client.readyState === OPEN) client.send(isBinary ? data : data.toString());
    });
    ws.on("close", (code, reason) => {
      if (client.readyState === OPEN) client.close(validCloseCode(code), reason.toString());
    });
  });
}

function validCloseCode(code) {
  return code >= 1000 && code <= 4999 && ![1004, 1005, 1006, 1015].includes(code) ? code : 1000;
}

// Ask the Worker itself for /agents, so a broken agents module stops the host at start.
async function checkAgents() {
  const request = new Request("http://host.check/agents", {
    headers: { authorization: `Bearer ${process.env.HELIX_TOKEN}` },
  });
  const response = await callWorker(request);
  const body = await response.json();
  if (response.status !== 200) throw new Error(body?.error?.message ?? `/agents: ${response.status}`);
  console.log(`agents: ${body.agents.join(", ")}`);
}

async function main() {
  if (!process.env.HELIX_TOKEN) throw new Error("HELIX_TOKEN is not set.");
  fs.mkdirSync(args.storage, { recursive: true });
  await bootPython();
  await checkAgents();
  const { WebSocketServer } = requireFrom("ws");
  const wss = new WebSocketServer({ noServer: true });
  const server = http.createServer((req, res) => {
    answer(req).then((response) => sendResponse(response, res));
  });
  server.on("upgrade", (req, socket, head) => {
    upgrade(req, socket, head, wss).catch((error) => {
      log("a WebSocket upgrade failed:", error?.message ?? error);
      socket.destroy();
    });
  });
  server.listen(Number(args.port), args.host, () => {
    const { port } = server.address();
    console.log(`listening on http://${args.host}:${port}`);
  });
  const stop = () => {
    for (const ws of wss.clients) ws.close(1001, "host shutting down");
    server.close();
    server.closeAllConnections();
    runtime.namespace.close();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  // The launcher holds our stdin open; when it goes away, so do we.
  process.stdin.on("end", stop);
  process.stdin.resume();
}

main().catch((error) => {
  log("failed to start:", error?.stack ?? error);
  process.exit(1);
});
