// The Pyodide host's workerd objects (helix_lab/pyodide_host/workerd.mjs): WebSocketPair ends
// that queue until accepted and close with a handshake, a Response that takes 101 only with a
// webSocket, and Durable Object namespaces with deterministic ids, one live object per id,
// accepted sockets whose events reach the object. Run by tests/test_pyodide_host_js.py.

import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { pathToFileURL } from "node:url";

import {
  DurableObjectNamespace,
  Response,
  WebSocketPair,
} from "../../helix_lab/pyodide_host/workerd.mjs";

const sqliteWasm = path.join(process.env.HELIX_NODE_MODULES, "@sqlite.org/sqlite-wasm/dist/node.mjs");
const sqlite3 = await (await import(pathToFileURL(sqliteWasm).href)).default({ print: () => {} });

test("a WebSocketPair's ends talk to each other; events wait for accept()", () => {
  const [client, server] = Object.values(new WebSocketPair());
  assert.equal(client.constructor.name, "WebSocket");
  const got = [];
  server.addEventListener("message", (event) => got.push(event.data));
  client.send("early");
  assert.deepEqual(got, []);
  server.accept();
  client.send("late");
  assert.deepEqual(got, ["early", "late"]);
  server.serializeAttachment({ helixSocket: "abc" });
  assert.deepEqual(server.deserializeAttachment(), { helixSocket: "abc" });
});

test("closing one end tells the other, which answers the close", () => {
  const [client, server] = Object.values(new WebSocketPair());
  const closes = [];
  client.addEventListener("close", (event) => closes.push(["client", event.code]));
  server.addEventListener("close", (event) => {
    closes.push(["server", event.code, event.reason]);
    server.close(event.code, event.reason);
  });
  client.accept();
  server.accept();
  client.close(4000, "bye");
  assert.deepEqual(closes, [["server", 4000, "bye"]]);
  assert.equal(client.readyState, 3);
  assert.equal(server.readyState, 3);
  assert.throws(() => client.send("x"), /after close/);
});

test("Response takes 101 only with a webSocket; others keep Node's rules", async () => {
  const [client] = Object.values(new WebSocketPair());
  const upgrade = new Response(null, { status: 101, webSocket: client });
  assert.equal(upgrade.status, 101);
  assert.equal(upgrade.webSocket, client);
  assert.equal(upgrade.constructor.name, "Response");
  assert.throws(() => new Response(null, { status: 101 }), /webSocket/);
  const plain = new Response("hi", { status: 201 });
  assert.equal(plain.status, 201);
  assert.equal(plain.webSocket, null);
  assert.equal(await plain.text(), "hi");
  assert.throws(() => new Response("x", { status: 99 }), RangeError);
});

function namespace(calls) {
  const storageDir = fs.mkdtempSync(path.join(os.tmpdir(), "helix-do-"));
  let built = 0;
  return new DurableObjectNamespace({
    storageDir,
    sqlite3,
    construct: (state) => ({ state, number: ++built }),
    call: async (instance, method, args) => {
      calls.push([instance.number, method, ...args.slice(1)]);
      if (method !== "fetch") return undefined;
      const [request] = args;
      const { state } = instance;
      state.storage.sql.exec("CREATE TABLE IF NOT EXISTS hits (url TEXT)");
      state.storage.sql.exec("INSERT INTO hits VALUES (?)", request.url);
      if (request.headers.get("upgrade") === "websocket") {
        const [client, server] = Object.values(new WebSocketPair());
        state.acceptWebSocket(server, ["t"]);
        return new Response(null, { status: 101, webSocket: client });
      }
      const hits = state.storage.sql.exec("SELECT count(*) AS n FROM hits").one().n;
      return new Response(JSON.stringify({ id: state.id.toString(), hits }));
    },
  });
}

test("ids are deterministic; each id is one live object with its own storage", async () => {
  const calls = [];
  const ns = namespace(calls);
  const id = ns.idFromName("session:a");
  assert.equal(id.constructor.name, "DurableObjectId");
  assert.ok(id.equals(ns.idFromName("session:a")) && !id.equals(ns.idFromName("session:b")));
  assert.match(id.toString(), /^[0-9a-f]{64}$/);
  assert.equal(ns.constructor.name, "DurableObjectNamespace");
  const stub = ns.get(id);
  assert.equal(stub.constructor.name, "DurableObject");
  assert.deepEqual(await (await stub.fetch("https://x/1")).json(), { id: id.toString(), hits: 1 });
  assert.deepEqual(await (await ns.getByName("session:a").fetch("https://x/2")).json(),
    { id: id.toString(), hits: 2 });
  assert.equal((await (await ns.getByName("session:b").fetch("https://x/")).json()).hits, 1);
  assert.deepEqual(calls.map(([number]) => number), [1, 1, 2]);
  assert.ok(fs.existsSync(path.join(ns.host.storageDir, `${id.toString()}.sqlite`)));
  assert.throws(() => ns.get("not an id"), TypeError);
  assert.throws(() => ns.idFromString("xyz"), TypeError);
});

test("an accepted socket's messages and close reach the object", async () => {
  const calls = [];
  const ns = namespace(calls);
  const response = await ns.getByName("chat").fetch("https://x/ws", {
    headers: { upgrade: "websocket" },
  });
  assert.equal(response.status, 101);
  const client = response.webSocket;
  client.accept();
  const live = ns.object(ns.idFromName("chat"));
  assert.equal(live.state.getWebSockets("t").length, 1);
  assert.equal(live.state.getWebSockets("other").length, 0);
  client.send("hello");
  client.close(1000, "done");
  assert.deepEqual(calls.slice(1).map((c) => c.slice(1)), [
    ["webSocketMessage", "hello"],
    ["webSocketClose", 1000, "done", true],
  ]);
  assert.equal(live.state.getWebSockets().length, 0);
});
