"""A scripted HTTP/1.1 server on 127.0.0.1, the base of the fake LLM APIs.

It serves real sockets from an asyncio loop in a daemon thread, so any client (the
anthropic SDK on httpx2, our adapters on httpx) talks to it exactly as to the real API,
from whichever event loop the test runs. Each request takes the next scripted
:class:`Reply`; streamed replies use chunked encoding, one chunk per write, and can be cut
off by closing the socket part-way (``drop_after``)::

    with ScriptedServer() as server:
        server.push(Reply.json(200, {"ok": True}))
        ...  # call server.base_url
        assert server.requests[0].json() == {...}
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Self

__all__ = ["RecordedRequest", "Reply", "ScriptedServer", "ScriptedToolCall", "split", "unused_port"]


@dataclass
class RecordedRequest:
    """One request as the server received it. Header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    """One scripted response."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    """Sent with Content-Length when ``chunks`` is ``None``."""
    chunks: list[bytes] | None = None
    """Sent with chunked transfer encoding, one chunk per write."""
    drop_after: int | None = None
    """Close the socket after this many chunks, without the terminating chunk."""
    delay: float = 0.0
    """Seconds to wait before each chunk."""

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
        return cls(
            status=status,
            headers={"content-type": "application/json", **(headers or {})},
            body=json.dumps(payload).encode(),
        )


def split(text: str, pieces: int) -> list[str]:
    """``text`` cut into at most ``pieces`` non-empty consecutive parts."""
    if not text:
        return []
    size = max(1, -(-len(text) // max(pieces, 1)))
    return [text[i : i + size] for i in range(0, len(text), size)]


@dataclass
class ScriptedToolCall:
    """A tool call in a scripted reply; each fake names it as its API does."""

    name: str
    arguments: dict[str, Any] | str
    """The arguments; a string is sent as raw JSON text, valid or not."""
    id: str
    pieces: int = 3
    """How many non-empty deltas to split the JSON over."""

    def json_pieces(self) -> list[str]:
        raw = self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)
        return split(raw, self.pieces)


def unused_port() -> int:
    """A local port nothing listens on (for connection-refused tests)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ScriptedServer:
    """Serves scripted replies in order and records every request.

    Subclasses set ``path`` (requests elsewhere get a 404) and may override
    :meth:`error_reply` to shape errors like their API does.
    """

    path = "/"

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._replies: deque[Reply] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self._writers: set[asyncio.StreamWriter] = set()

    # -- scripting ----------------------------------------------------------------------

    def push(self, *replies: Reply) -> None:
        """Queue replies; each request takes the next one."""
        self._replies.extend(replies)

    @property
    def pending(self) -> int:
        """Scripted replies no request has taken yet."""
        return len(self._replies)

    @property
    def origin(self) -> str:
        if not self._port:
            raise RuntimeError("The server is not running; use it as a context manager.")
        return f"http://127.0.0.1:{self._port}"

    def error_reply(self, status: int, message: str) -> Reply:
        return Reply.json(status, {"error": {"message": message}})

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("The server is already running.")
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name=type(self).__name__, daemon=True
        )
        self._thread.start()
        if not ready.wait(60):  # only a hang takes this long
            raise RuntimeError(f"{type(self).__name__} did not start within 60 s.")
        return self

    def close(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._thread = None
        self._loop = None
        self._port = 0

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        server = loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self._port = server.sockets[0].getsockname()[1]
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._shutdown(server))
            loop.close()

    async def _shutdown(self, server: asyncio.Server) -> None:
        # Python 3.11's Server.close() leaves open connections be. Closing them lets each
        # handler see EOF and return; cancelling handlers instead makes asyncio log errors.
        server.close()
        for writer in list(self._writers):
            writer.close()
        handlers = asyncio.all_tasks() - {asyncio.current_task()}
        if handlers:
            _, stuck = await asyncio.wait(handlers, timeout=5)
            for task in stuck:
                task.cancel()
        await server.wait_closed()

    # -- HTTP ---------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while (request := await self._read(reader)) is not None:
                self.requests.append(request)
                if request.path.split("?")[0] != self.path:
                    reply = self.error_reply(404, f"No route for {request.method} {request.path}.")
                elif self._replies:
                    reply = self._replies.popleft()
                else:
                    # 418, not 5xx: adapters must not retry a test that ran out of script.
                    reply = self.error_reply(
                        418,
                        f"Fake server: no scripted reply left for request #{len(self.requests)}.",
                    )
                if not await self._send(writer, reply):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> RecordedRequest | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None  # the client closed the connection between requests
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers: dict[str, str] = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return RecordedRequest(method, path, headers, body)

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, reply: Reply) -> bool:
        """Write one reply; ``False`` when the connection was closed on purpose."""
        try:
            reason = HTTPStatus(reply.status).phrase
        except ValueError:
            reason = "Overloaded" if reply.status == 529 else "Unknown"
        headers = dict(reply.headers)
        if reply.chunks is None:
            headers["content-length"] = str(len(reply.body))
        else:
            headers["transfer-encoding"] = "chunked"
        head = f"HTTP/1.1 {reply.status} {reason}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        writer.write(head.encode("latin-1") + b"\r\n")
        if reply.chunks is None:
            writer.write(reply.body)
            await writer.drain()
            return True
        for chunk in reply.chunks[: reply.drop_after]:
            if reply.delay:
                await asyncio.sleep(reply.delay)
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
        if reply.drop_after is not None:
            writer.close()
            return False
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True
