// A small stand-in for workerd: runs a `helix deploy` Worker bundle under real Pyodide in
// Node 20 and serves it over HTTP and WebSockets on 127.0.0.1.
//
//   node host.mjs --bundle DIR --storage DIR --modules NODE_MODULES --wheels DIR [--port N]
//   env: HELIX_TOKEN (required), HELIX_AGENTS_MODULE, ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL
//
// It provides what the Workers runtime gives a Python Worker: the two workerd-internal
// modules the real `workers` SDK imports (here), `ctx.storage.sql` and `transactionSync`
// (sql.mjs: SqlStorage on SQLite's WebAssembly build, one file per object), Durable Object
// namespaces and stubs, `WebSocketPair`, and a `Response` that accepts status 101 with a
// `webSocket` (workerd.mjs). This file boots Pyodide and serves HTTP and WebSockets.
//
// It prints `listening on http://HOST:PORT` on stdout when ready; everything else goes to
// stderr. What it does not emulate: input/output gates, hibernation, CPU limits, RPC
// serialization between objects (everything runs in this one process).

import fs from "node:fs";
import http from "node:http";
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

import {
  DurableObjectNamespace,
  ExecutionContext,
  OPEN,
  Response,
  WebSocket,
  WebSocketPair,
  watch,
} from "./workerd.mjs";

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

// -- Pyodide ---------------------------------------------------------------------------------

// SQLite's WebAssembly build, quiet: it reports on stdout that browser-only storage is absent.
async function loadSqlite(modules) {
  const entry = path.join(modules, "@sqlite.org", "sqlite-wasm", "dist", "node.mjs");
  const { default: init } = await import(pathToFileURL(entry).href);
  return await init({ print: () => {}, printErr: (line) => console.error(line) });
}

const runtime = {};

async function bootPython() {
  const started = Date.now();
  const { loadPyodide } = await import(
    pathToFileURL(path.join(args.modules, "pyodide", "pyodide.mjs")).href
  );
  runtime.sqlite3 = await loadSqlite(args.modules);
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
  const namespace = new DurableObjectNamespace({
    storageDir: args.storage,
    sqlite3: runtime.sqlite3,
    construct: (state) => entry.HelixAgentServer(state, runtime.env),
    call: (instance, method, callArgs) => glue.invoke(instance, method, callArgs),
  });
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
  return new globalThis.Response(JSON.stringify({ error: { code, message } }), {
    status,
    headers: { "content-type": "application/json" },
  });
}

const MAX_BODY = 16 * 1024 * 1024; // as helix serve's CPython engine

class TooLarge extends Error {}

async function answer(req) {
  try {
    return await callWorker(toRequest(req, await readBody(req)));
  } catch (error) {
    if (error instanceof TooLarge) {
      return jsonError(413, "too_large", `The request body is larger than ${MAX_BODY} bytes.`);
    }
    log("the Worker failed on a request:", error?.message ?? error);
    return jsonError(500, "internal_error", "The Worker hit an unexpected error; see the host log.");
  }
}

async function readBody(req) {
  const parts = [];
  let size = 0;
  for await (const part of req) {
    size += part.length;
    if (size > MAX_BODY) throw new TooLarge();
    parts.push(part);
  }
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
    answer(req)
      .then((response) => sendResponse(response, res))
      .catch((error) => {
        log("sending a response failed:", error?.message ?? error);
        res.destroy();
      });
  });
  // As helix serve's KEEP_ALIVE_SECONDS: idle connections outlive a client's own limit
  // (httpx: 5 s), so a client never sends on a connection this side is closing.
  server.keepAliveTimeout = 75_000;
  server.headersTimeout = 80_000;
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
