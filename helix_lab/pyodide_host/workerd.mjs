// The workerd host objects a Python Worker sees, named as workerd names them (the `workers`
// SDK recognises them by constructor.name): WebSocketPair, a Response that takes status 101
// with a webSocket, and Durable Object namespaces, ids, stubs and states.

import crypto from "node:crypto";
import path from "node:path";

import { DurableObjectStorage } from "./sql.mjs";

const log = (...parts) => console.error("[pyodide-host]", ...parts);

// -- WebSocketPair ---------------------------------------------------------------------------

export const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

// One end of a WebSocketPair. Events sent before accept() wait in a queue, as in workerd.
// An end accepted with ctx.acceptWebSocket() hands its events to the object's handlers.
export class WebSocket {
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

export class WebSocketPair {
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
export class Response extends NodeResponse {
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

export class DurableObjectId {
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
    const { storageDir, sqlite3 } = namespace.host;
    const file = path.join(storageDir, `${id.toString()}.sqlite`);
    this.host = namespace.host;
    this.state = new DurableObjectState(this, id, new DurableObjectStorage(sqlite3, file));
    this.sockets = new Set();
    this.instance = null;
  }
  python() {
    this.instance ||= this.host.construct(this.state);
    return this.instance;
  }
  async fetch(request) {
    return await this.host.call(this.python(), "fetch", [request]);
  }
  socketEvent(ws, event) {
    const call =
      event.type === "message"
        ? ["webSocketMessage", [ws, event.data]]
        : ["webSocketClose", [ws, event.code, event.reason, event.wasClean]];
    if (event.type === "close") this.sockets.delete(ws);
    watch(this.host.call(this.python(), ...call), `${call[0]} of a Durable Object`);
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

// `host`: {storageDir, sqlite3 (the initialised @sqlite.org/sqlite-wasm module),
//          construct(state) -> instance, call(instance, method, args)}.
export class DurableObjectNamespace {
  constructor(host) {
    this.host = host;
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

export class ExecutionContext {
  waitUntil(promise) {
    watch(promise, "a waitUntil task of the Worker");
  }
  passThroughOnException() {}
}

// A Python awaitable handed to JS is a proxy that Pyodide destroys when the call returns,
// so subscribe to it right away.
export function watch(promise, what) {
  try {
    promise?.then?.(undefined, (error) => log(`${what} failed:`, error?.message ?? error));
  } catch (error) {
    log(`${what} could not be watched:`, error?.message ?? error);
  }
}

