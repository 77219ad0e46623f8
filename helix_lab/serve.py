"""``helix serve``: the Worker bundle on this machine, so the remote path runs with no network.

::

    $ export HELIX_TOKEN=$(python -c "import secrets; print(secrets.token_urlsafe(24))")
    $ helix serve --port 8787
    helix serve listening on http://127.0.0.1:8787

    >>> backend = RemoteBackend("http://127.0.0.1:8787", token=os.environ["HELIX_TOKEN"])

It runs ``helix_lab/worker_bundle/entry.py`` (the code that is deployed) under uvicorn,
with the CPython stand-in in place of the ``workers`` runtime: one sqlite file per
Durable Object under ``--storage``, one instance per id, an input gate per object, SSE
and WebSockets. :class:`WorkerApp` is the ASGI glue: each HTTP request or WebSocket
becomes a ``workers.Request`` for the Worker's ``Default.fetch``, and its ``Response``
(streams and ``101`` upgrades included) is sent back.

``--engine pyodide`` serves the same bundle, as ``helix deploy`` writes it, under real
Pyodide in Node instead (:mod:`helix_lab.pyodide_host`): the runtime Cloudflare runs, with
the real ``workers`` SDK and pydantic's wasm wheels, still offline.

The token comes from ``HELIX_TOKEN`` and is never printed. Errors are JSON bodies, never
tracebacks; unexpected failures are logged on the server's stderr only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .deploy import APPROACHES
from .errors import ServeError
from .runtime.http import close_code

__all__ = ["APPROACHES", "DEFAULT_HOST", "DEFAULT_PORT", "DEFAULT_STORAGE", "ENGINES",
           "PYODIDE_STORAGE", "ServeError", "WorkerApp", "create_app", "serve"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
KEEP_ALIVE_SECONDS = 75
"""How long an idle connection stays open. Longer than a client's own idle limit (httpx
keeps one 5 s), so the client is the side that closes it: with equal limits a client could
send a request on a connection the server was closing that moment, and get a read error."""
DEFAULT_STORAGE = ".helix/serve"
PYODIDE_STORAGE = ".helix/serve-pyodide"
"""The pyodide engine's default: its database files (whole-file snapshots) are not the
stand-in's (WAL)."""
ENGINES = ("cpython", "pyodide")
"""``cpython``: the bundle on this interpreter with the stand-in runtime (the default);
``pyodide``: the bundle under real Pyodide in Node."""
MAX_BODY = 16 * 1024 * 1024
_PASSED_ENV = ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL")

log = logging.getLogger("helix_lab.serve")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def _json(status: int, code: str, message: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return status, [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())], body


class _BodySink:
    """Where a streamed response body is piped: each chunk one ASGI body message."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.ended = False

    async def write(self, chunk: bytes) -> None:
        await self._send({"type": "http.response.body", "body": bytes(chunk),
                          "more_body": True})

    async def close(self) -> None:
        if not self.ended:
            self.ended = True
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    async def abort(self, reason: Any) -> None:
        pass  # the error reaches _send_response, which ends the exchange


class WorkerApp:
    """An ASGI app that answers every request with a Worker entrypoint's ``fetch``."""

    def __init__(self, entrypoint: type, env: Any, namespace: Any = None,
                 closers: list[Callable[[], Awaitable[None]]] | None = None) -> None:
        from .worker_bundle import standin

        self._standin = standin
        self.entrypoint = entrypoint
        self.env = env
        self.namespace = namespace
        self.closers = closers or []
        """More to close at shutdown (the Workflows engine, D1), after the objects."""
        self.ctx = standin.ExecutionContext()
        self._streams: set[Any] = set()
        self._sockets: set[Any] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    # -- plumbing --------------------------------------------------------------------------

    @staticmethod
    def _url(scope: Scope, scheme: str = "http") -> str:
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        if not host:
            server = scope.get("server") or (DEFAULT_HOST, DEFAULT_PORT)
            host = f"{server[0]}:{server[1]}"
        raw = scope.get("raw_path") or scope["path"].encode("utf-8")
        query = scope.get("query_string") or b""
        url = f"{scheme}://{host}{raw.decode('latin-1')}"
        return url + (f"?{query.decode('latin-1')}" if query else "")

    @staticmethod
    def _headers(scope: Scope) -> list[tuple[str, str]]:
        return [(k.decode("latin-1").lower(), v.decode("latin-1"))
                for k, v in scope.get("headers") or []]

    async def _call(self, request: Any) -> Any:
        try:
            return await self._standin.call_entrypoint(self.entrypoint, request, self.env,
                                                       self.ctx)
        except Exception:
            log.exception("the Worker raised while answering %r", request)
            return None

    # -- HTTP ------------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > MAX_BODY:
                await self._send_plain(send, *_json(413, "too_large", "The request body is "
                                                   f"larger than {MAX_BODY} bytes."))
                return
            if not message.get("more_body"):
                break
        method = scope["method"].upper()
        try:
            request = self._standin.Request(
                self._url(scope), method=method, headers=self._headers(scope),
                body=bytes(body) if body and method not in ("GET", "HEAD") else None)
        except (TypeError, ValueError) as exc:
            await self._send_plain(send, *_json(400, "bad_request", f"Malformed request: {exc}"))
            return
        response = await self._call(request)
        if response is None:
            await self._send_plain(send, *_json(500, "internal_error", "The Worker hit an "
                                               "unexpected error; see the server log."))
            return
        await self._send_response(response, receive, send)

    @staticmethod
    async def _send_plain(send: Send, status: int, headers: list[tuple[bytes, bytes]],
                          body: bytes) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _send_response(self, response: Any, receive: Receive, send: Send) -> None:
        headers = [(k.encode("latin-1"), v.encode("latin-1"))
                   for k, v in response.headers.items() if k != "content-length"]
        stream = response.body
        streaming = "text/event-stream" in (response.headers.get("content-type") or "")
        if stream is None or not streaming:
            data = await response.bytes() if stream is not None else b""
            headers.append((b"content-length", str(len(data)).encode()))
            await self._send_plain(send, response.status, headers, data)
            return
        await send({"type": "http.response.start", "status": response.status,
                    "headers": headers})
        self._streams.add(stream)

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            stream.cancel()

        watcher = asyncio.ensure_future(watch_disconnect())
        try:
            # Piped, as workerd pipes a body to the network: the Worker's own write
            # reaches the socket in its turn, with no reader task to wake in between.
            sink = _BodySink(send)
            await stream.pipeTo(self._standin.WritableStream.new(sink))
            await sink.close()  # a cancelled stream (shutdown) still ends the response
        except OSError:  # the client went away while we were sending
            stream.cancel()
        finally:
            watcher.cancel()
            self._streams.discard(stream)

    # -- WebSockets ------------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        headers = [(k, v) for k, v in self._headers(scope) if k not in ("upgrade", "connection")]
        headers += [("upgrade", "websocket"), ("connection", "Upgrade")]
        request = self._standin.Request(self._url(scope), method="GET", headers=headers)
        response = await self._call(request)
        client = response.js_object.webSocket if response is not None else None
        if response is None or response.status != 101 or client is None:
            await self._reject(scope, send, response)
            return
        await send({"type": "websocket.accept"})
        self._sockets.add(client)
        outgoing = asyncio.ensure_future(self._pump_out(client, send))
        try:
            while True:
                incoming = asyncio.ensure_future(receive())
                done, _ = await asyncio.wait({incoming, outgoing},
                                             return_when=asyncio.FIRST_COMPLETED)
                if incoming not in done:
                    incoming.cancel()
                    return  # the object closed the socket; the close frame is sent
                message = incoming.result()
                if message["type"] == "websocket.receive":
                    data = message.get("text")
                    if data is None:
                        data = message.get("bytes") or b""
                    if client.readyState == 1:
                        client.send(data)
                elif message["type"] == "websocket.disconnect":
                    client.disconnect(int(message.get("code") or 1005),
                                      message.get("reason") or "")
                    return
        finally:
            outgoing.cancel()
            self._sockets.discard(client)

    @staticmethod
    async def _pump_out(client: Any, send: Send) -> None:
        while True:
            event = await client.next_event()
            if event[0] == "message":
                data = event[1]
                await send({"type": "websocket.send", "text": data} if isinstance(data, str)
                           else {"type": "websocket.send", "bytes": bytes(data)})
            else:
                await send({"type": "websocket.close", "code": close_code(event[1]),
                            "reason": event[2] or ""})
                return

    async def _reject(self, scope: Scope, send: Send, response: Any) -> None:
        if response is None:
            status, headers, body = _json(500, "internal_error", "The Worker hit an unexpected "
                                          "error; see the server log.")
        elif response.status == 101:
            status, headers, body = _json(500, "internal_error", "The Worker accepted the "
                                          "WebSocket without a socket.")
        else:
            body = await response.bytes() if response.body is not None else b""
            status = response.status
            headers = [(k.encode("latin-1"), v.encode("latin-1"))
                       for k, v in response.headers.items() if k != "content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
        if "websocket.http.response" in (scope.get("extensions") or {}):
            await send({"type": "websocket.http.response.start", "status": status,
                        "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008})

    # -- lifecycle -------------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def close_connections(self) -> None:
        """End open streams and sockets, so a shutdown need not wait for them."""
        for stream in list(self._streams):
            stream.cancel()
        for client in list(self._sockets):
            client.disconnect(1001, "server shutting down")

    async def aclose(self) -> None:
        """Stop every object's background work and close the databases."""
        self.close_connections()
        if self.namespace is not None:
            for instance in self.namespace.instances():
                shutdown = getattr(instance, "_host_shutdown", None)
                if shutdown is not None:
                    await shutdown()
            await self.namespace.close()
        for close in self.closers:
            await close()


@dataclass
class _Built:
    app: WorkerApp
    agent_types: list[str]
    agents_module: str


def create_app(*, storage: str | os.PathLike[str] = DEFAULT_STORAGE,
               agents: str | None = None, token: str | None = None,
               environ: dict[str, str] | None = None,
               approach: str = "durable-objects") -> _Built:
    """Build the ASGI app serving the bundle; ``token`` defaults to ``$HELIX_TOKEN``.

    ``approach="workflows"`` serves the Workflows bundle (:mod:`.worker_bundle.workflows_app`)
    with the stand-in's Workflows binding over :class:`~helix_lab.workflows.LocalWorkflowBinding`
    and :class:`~helix_lab.workflows.LocalD1` as D1, under ``storage``.

    Raises :class:`ServeError` if there is no token or the agents module does not import.
    """
    if approach not in APPROACHES:
        raise ServeError(f"Unknown approach {approach!r}: use one of {', '.join(APPROACHES)}.")
    from .worker_bundle import standin

    environ = dict(os.environ if environ is None else environ)
    token = token if token is not None else environ.get("HELIX_TOKEN")
    if not token:
        raise ServeError("HELIX_TOKEN is not set: set HELIX_TOKEN=... (any long random "
                         "string; clients send it as 'Authorization: Bearer ...').")
    standin.install()
    from .worker_bundle.agents import DEFAULT_AGENTS_MODULE, AgentsUnavailable, load_agents
    from .worker_bundle.entry import Default, HelixAgentServer
    from .worker_bundle.env import EnvView

    module = agents or environ.get("HELIX_AGENTS_MODULE") or DEFAULT_AGENTS_MODULE
    passed = {name: environ[name] for name in _PASSED_ENV if environ.get(name)}
    if approach == "workflows":
        app, env = _workflows_app(Path(storage), token, module, passed)
    else:
        namespace = standin.DurableObjectNamespace(HelixAgentServer, storage=Path(storage))
        env = standin.Env(AGENTS=namespace, HELIX_TOKEN=token, HELIX_AGENTS_MODULE=module,
                          **passed)
        app = WorkerApp(Default, env, namespace)
    try:
        loaded = load_agents(EnvView(env))
    except AgentsUnavailable as exc:
        raise ServeError(f"{exc} (--agents MODULE)") from None
    return _Built(app, loaded.agent_types(), module)


def _workflows_app(storage: Path, token: str, module: str,
                   passed: dict[str, str]) -> tuple[WorkerApp, Any]:
    """The Workflows bundle on the stand-in: STREAMS objects, D1 and the Workflows engine."""
    from .worker_bundle import standin
    from .worker_bundle.standin.workflows import WorkflowBinding
    from .worker_bundle.workflows_app import AgentWorkflow, StreamServerObject, WorkflowsDefault
    from .workflows import LocalD1, LocalWorkflowBinding

    streams = standin.DurableObjectNamespace(StreamServerObject, storage=storage / "streams",
                                             name="STREAMS")
    db = LocalD1(storage / "d1.sqlite3")
    env = standin.Env(STREAMS=streams, AGENT_DB=db, HELIX_TOKEN=token,
                      HELIX_AGENTS_MODULE=module, **passed)
    engine = LocalWorkflowBinding(AgentWorkflow, storage / "workflows.sqlite3", env=env)
    env.AGENT_WORKFLOW = WorkflowBinding(engine)

    async def close_engine() -> None:
        await engine.aclose()
        db.close()

    return WorkerApp(WorkflowsDefault, env, streams, closers=[close_engine]), env


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only when
    # the listening socket says it is TCP; with proto 0 every small reply waits ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServeError(f"Cannot listen on {host}:{port} ({exc.strerror or exc}); pick "
                         "another --port, or stop what is using it.") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _ws_protocol() -> str:
    # The legacy implementation answers a refused upgrade (401, 404) cleanly; the sans-I/O
    # one of uvicorn 0.54 logs a spurious "returned without completing handshake" for it.
    import warnings

    warnings.filterwarnings("ignore", message=r"The `websockets` implementation is deprecated")
    return "websockets"


def _warn_if_public(host: str, announce: Callable[[str], None]) -> None:
    if host not in ("127.0.0.1", "localhost", "::1"):
        announce(f"warning: {host} is reachable from other machines over plain HTTP; only "
                 "the bearer token protects it.")


def _serve_pyodide(*, host: str, port: int, storage: str | os.PathLike[str],
                   agents: str | None, announce: Callable[[str], None]) -> None:
    """Build the bundle into a temporary folder and serve it with the Pyodide host."""
    import signal
    import tempfile

    from .pyodide_host import PyodideHost, build_bundle

    token = os.environ.get("HELIX_TOKEN")
    if not token:
        raise ServeError("HELIX_TOKEN is not set: set HELIX_TOKEN=... (any long random "
                         "string; clients send it as 'Authorization: Bearer ...').")
    module = agents or os.environ.get("HELIX_AGENTS_MODULE") or "helix_lab.examples"
    # SIGTERM ends this process through the finally below, which stops the host.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with tempfile.TemporaryDirectory(prefix="helix-pyodide-") as folder:
        bundle = build_bundle(Path(folder) / "worker", module)
        served = PyodideHost(bundle, storage, token=token, agents=module, host=host, port=port)
        try:
            served.start()
            announce(f"helix serve listening on {served.url}")
            announce(f"agents from {module}: {', '.join(served.agent_types) or 'none'}; "
                     f"storage {os.fspath(storage)}; engine pyodide (started in "
                     f"{served.boot_seconds:.1f} s)")
            _warn_if_public(host, announce)
            served.wait()
        finally:
            served.stop()


def serve(*, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          storage: str | os.PathLike[str] = DEFAULT_STORAGE, agents: str | None = None,
          engine: str = "cpython", approach: str = "durable-objects",
          announce: Callable[[str], None] = print) -> None:
    """Run ``helix serve`` until interrupted. Raises :class:`ServeError` before binding."""
    if engine not in ENGINES:
        raise ServeError(f"Unknown engine {engine!r}: use one of {', '.join(ENGINES)}.")
    if engine == "pyodide":
        if approach != "durable-objects":
            raise ServeError("--engine pyodide serves the Durable Object approach only; "
                             "drop --approach workflows, or use --engine cpython.")
        if os.fspath(storage) == DEFAULT_STORAGE:
            storage = PYODIDE_STORAGE
        _serve_pyodide(host=host, port=port, storage=storage, agents=agents, announce=announce)
        return
    import uvicorn

    built = create_app(storage=storage, agents=agents, approach=approach)
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    _warn_if_public(host, announce)
    # "auto" picks httptools and uvloop (dependencies; uvloop where it builds): the HTTP
    # framing and the event loop in C, about a third fewer Python calls per streamed chunk
    # than h11 on asyncio's loop. No proxy stands in front of this server, so
    # X-Forwarded-* headers are neither trusted nor parsed.
    config = uvicorn.Config(built.app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=3, ws=_ws_protocol(),
                            timeout_keep_alive=KEEP_ALIVE_SECONDS, http="auto", loop="auto",
                            proxy_headers=False)

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if not self.should_exit:
                types = ", ".join(built.agent_types) or "none"
                announce(f"helix serve listening on http://{shown}:{bound_port}")
                announce(f"agents from {built.agents_module}: {types}; storage "
                         f"{os.fspath(storage)}; approach {approach}")

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            built.app.close_connections()
            await super().shutdown(sockets)

    server = _Server(config)
    try:
        server.run(sockets=[sock])  # on the loop its config names (uvloop when installed)
    finally:
        sock.close()

