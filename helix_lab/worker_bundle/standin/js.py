"""The few JavaScript globals ``entry.py`` touches, in Python: installed as ``js``.

On Cloudflare these come from Pyodide's ``js`` module (``from js import TransformStream``);
constructors are called as ``X.new()``. Only what the Worker bundle uses is here:

- ``TransformStream.new()``: ``.readable`` (async-iterable of chunks) and
  ``.writable.getWriter()`` with ``await write(chunk)`` / ``await close()``;
- ``await readable.pipeTo(WritableStream.new(sink))``: what the host does with a
  response body (workerd pipes it to the network). Once piped, a ``write`` goes straight
  to the sink, in the writer's own turn, instead of waking a reader task;
- ``TextEncoder.new().encode(text)`` -> :class:`Uint8Array`;
- ``WebSocketPair.new().object_values()`` -> ``(client, server)`` :class:`WebSocket` ends.

A ``Uint8Array`` chunk has ``.to_bytes()`` as a Pyodide ``JsProxy`` of one does, so code
that reads a body with ``chunk.to_bytes()`` runs unchanged on both hosts.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

__all__ = [
    "ReadableStream",
    "TextEncoder",
    "TransformStream",
    "Uint8Array",
    "UnderlyingSink",
    "WebSocket",
    "WebSocketPair",
    "WritableStream",
]

_END: Any = object()
HIGH_WATER_MARK = 16
"""Chunks a stream buffers before ``write`` waits for the reader (backpressure)."""


class Uint8Array(bytes):
    """Bytes with the one method a Pyodide ``Uint8Array`` proxy offers that we use."""

    def to_bytes(self) -> bytes:
        return bytes(self)

    def to_py(self) -> bytes:
        return bytes(self)


def _as_chunk(value: Any) -> Uint8Array:
    if isinstance(value, Uint8Array):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return Uint8Array(bytes(value))
    if isinstance(value, str):
        raise TypeError("A stream chunk must be bytes (a Uint8Array), not str; encode it first.")
    raise TypeError(f"A stream chunk must be bytes (a Uint8Array), not {type(value).__name__}.")


class StreamClosed(OSError):
    """Writing to a stream whose reader went away (the client disconnected)."""


class UnderlyingSink(Protocol):
    """What ``WritableStream.new(sink)`` writes to, as a JS underlying sink."""

    async def write(self, chunk: Uint8Array) -> None: ...

    async def close(self) -> None: ...

    async def abort(self, reason: Any) -> None: ...


class ReadableStream:
    """A one-reader byte stream, iterated with ``async for chunk in stream``."""

    def __init__(self, *, high_water_mark: int = HIGH_WATER_MARK) -> None:
        self._queue: deque[Any] = deque()
        self._readable = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._limit = max(1, high_water_mark)
        self._closed = False
        self._error: BaseException | None = None
        self.cancelled = False
        self.locked = False
        self._on_cancel: list[Callable[[], Any]] = []
        self._sink: UnderlyingSink | None = None
        """Set by :meth:`pipeTo` once the queue is drained: writes then go straight here."""
        self._sink_lock = asyncio.Lock()
        self._piped: asyncio.Future[None] | None = None
        """Resolved when a piped stream closes, fails or is cancelled."""

    # -- constructors the stand-in uses ----------------------------------------------------

    @classmethod
    def of(cls, data: bytes) -> ReadableStream:
        """A closed stream holding ``data`` as one chunk (an empty stream for ``b""``)."""
        stream = cls()
        if data:
            stream._queue.append(_as_chunk(data))
            stream._readable.set()
        stream._close()
        return stream

    @classmethod
    def from_async_iterator(cls, source: AsyncIterator[bytes],
                            on_close: Callable[[], Awaitable[None]] | None = None
                            ) -> ReadableStream:
        """A stream fed from ``source`` by a background task (as a JS pull source would)."""
        stream = cls()

        async def pump() -> None:
            try:
                async for piece in source:
                    if stream.cancelled:
                        break
                    await stream._enqueue(_as_chunk(piece))
                stream._close()
            except StreamClosed:
                pass
            except Exception as exc:  # surfaces to the reader, like a JS stream error
                stream._fail(exc)
            finally:
                closer = getattr(source, "aclose", None)
                if closer is not None:
                    try:
                        await closer()
                    except Exception:
                        pass
                if on_close is not None:
                    await on_close()

        task = asyncio.get_running_loop().create_task(pump())
        stream._on_cancel.append(task.cancel)
        _keep(task)
        return stream

    # -- the writer side -------------------------------------------------------------------

    async def _enqueue(self, chunk: Uint8Array) -> None:
        if self._sink is not None:
            await self._write_through(self._sink, chunk)
            return
        while len(self._queue) >= self._limit and not self.cancelled:
            self._space.clear()
            await self._space.wait()
        if self.cancelled:
            raise StreamClosed("The stream was cancelled by its reader.")
        if self._closed:
            raise StreamClosed("The stream is closed.")
        self._queue.append(chunk)
        self._readable.set()

    async def _write_through(self, sink: UnderlyingSink, chunk: Uint8Array) -> None:
        """A piped stream's write: the sink takes it now, and its backpressure is the
        writer's (the write returns when the sink has taken the chunk)."""
        async with self._sink_lock:  # concurrent writers still reach the sink in order
            if self.cancelled:
                raise StreamClosed("The stream was cancelled by its reader.")
            if self._closed:
                raise StreamClosed("The stream is closed.")
            try:
                await sink.write(chunk)
            except Exception as exc:  # the destination failed: the pipe is over
                self._end_pipe(exc)
                self.cancel(exc)
                raise StreamClosed(f"The piped destination failed: {exc}") from exc

    def _end_pipe(self, error: BaseException | None = None) -> None:
        piped, self._piped = self._piped, None
        if piped is not None and not piped.done():
            if error is None:
                piped.set_result(None)
            else:
                piped.set_exception(error)

    def _close(self) -> None:
        self._closed = True
        self._readable.set()
        self._end_pipe()

    def _fail(self, exc: BaseException) -> None:
        self._error = exc
        self._close()

    # -- the reader side -------------------------------------------------------------------

    def cancel(self, reason: Any = None) -> None:
        """The reader is done: pending and later writes fail, buffered chunks are dropped."""
        if self.cancelled:
            return
        self.cancelled = True
        self._queue.clear()
        self._space.set()
        self._readable.set()
        self._end_pipe()
        for callback in self._on_cancel:
            callback()

    async def pipeTo(self, destination: WritableStream) -> None:
        """Write every chunk to ``destination``'s sink, then close it; returns when the
        stream has closed, or has been cancelled (the sink is then left as it is).

        Chunks queued before the pipe go first, joined into one write; from then on each
        ``write`` reaches the sink directly. If the stream fails, the sink is aborted and
        the error raised here; if the sink fails, the stream is cancelled (its writer
        gets :class:`StreamClosed`) and the sink's error raised here.
        """
        sink = destination._sink
        if sink is None:
            raise TypeError("pipeTo() takes a WritableStream made with WritableStream.new(sink).")
        if self.locked:
            raise TypeError("This ReadableStream is locked to a reader already.")
        self.locked = True
        piped = asyncio.get_running_loop().create_future()
        self._piped = piped
        while self._queue and not self.cancelled:
            pending = b"".join(self._queue)
            self._queue.clear()
            self._space.set()
            try:
                await sink.write(Uint8Array(pending))
            except Exception as exc:
                self._end_pipe(exc)
                self.cancel(exc)
                break
        if not (self._closed or self.cancelled or piped.done()):
            self._sink = sink  # no await since the queue emptied: nothing can slip past
        try:
            if not piped.done() and not self._closed and not self.cancelled:
                await piped
            elif piped.done():
                piped.result()  # the sink's failure while draining
        finally:
            self._sink = None
        if self.cancelled:
            return
        if self._error is not None:
            await sink.abort(self._error)
            raise self._error
        await sink.close()

    def __aiter__(self) -> AsyncIterator[Uint8Array]:
        if self.locked:
            raise TypeError("This ReadableStream is locked to a reader already.")
        self.locked = True
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Uint8Array]:
        while True:
            if self._queue:
                chunk = self._queue.popleft()
                self._space.set()
                yield chunk
                continue
            if self.cancelled:
                return
            if self._closed:
                if self._error is not None:
                    raise self._error
                return
            self._readable.clear()
            await self._readable.wait()

    async def read_all(self) -> bytes:
        return b"".join([bytes(chunk) async for chunk in self])


class WritableStreamDefaultWriter:
    def __init__(self, stream: ReadableStream) -> None:
        self._stream = stream

    async def write(self, chunk: Any) -> None:
        await self._stream._enqueue(_as_chunk(chunk))

    async def close(self) -> None:
        self._stream._close()

    async def abort(self, reason: Any = None) -> None:
        self._stream._fail(StreamClosed(str(reason or "The stream was aborted.")))

    def releaseLock(self) -> None:
        pass


class WritableStream:
    """The writable side of a :class:`TransformStream`, or a stream over an underlying
    sink (``WritableStream.new(sink)``), the destination of :meth:`ReadableStream.pipeTo`."""

    def __init__(self, readable: ReadableStream | None = None, *,
                 sink: UnderlyingSink | None = None) -> None:
        self._readable = readable
        self._sink = sink

    @classmethod
    def new(cls, sink: UnderlyingSink) -> WritableStream:
        return cls(sink=sink)

    def getWriter(self) -> WritableStreamDefaultWriter:
        if self._readable is None:
            raise TypeError("Only a TransformStream's writable side has a writer here; "
                            "pipe a ReadableStream to a sink's WritableStream instead.")
        return WritableStreamDefaultWriter(self._readable)


class TransformStream:
    """An identity transform: what is written to ``writable`` is read from ``readable``."""

    def __init__(self) -> None:
        self.readable = ReadableStream()
        self.writable = WritableStream(self.readable)

    @classmethod
    def new(cls) -> TransformStream:
        return cls()


class TextEncoder:
    @classmethod
    def new(cls) -> TextEncoder:
        return cls()

    def encode(self, text: str = "") -> Uint8Array:
        return Uint8Array(text.encode("utf-8"))


# -- WebSockets ------------------------------------------------------------------------------

SocketDispatch = Callable[["WebSocket", str, tuple[Any, ...]], None]
"""How an end accepted by a Durable Object hands its events to the object (set by the host)."""

CONNECTING, OPEN, CLOSING, CLOSED = 0, 1, 2, 3
_RESERVED_CODES = frozenset({1004, 1005, 1006, 1015})
"""Codes that only describe a close and may never be sent in a close frame."""


class WebSocket:
    """One end of a :class:`WebSocketPair`.

    The Worker side uses the JS API (``accept``, ``send``, ``close``,
    ``serializeAttachment``, ``addEventListener``). The host side (``helix serve``, tests)
    reads what the other end sent with ``await next_event()``.
    """

    def __init__(self) -> None:
        self.peer: WebSocket | None = None
        self.readyState = OPEN
        self._inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self._attachment: str | None = None
        self._listeners: dict[str, list[Callable[..., Any]]] = {}
        self._accepted = False
        self.dispatch: SocketDispatch | None = None
        """Set by ``ctx.acceptWebSocket``: events go to the Durable Object's handlers."""
        self.tags: list[str] = []

    # -- the JS API ------------------------------------------------------------------------

    def accept(self) -> None:
        self._accepted = True

    def addEventListener(self, kind: str, callback: Callable[..., Any]) -> None:
        self._listeners.setdefault(kind, []).append(callback)

    def send(self, data: str | bytes) -> None:
        if self.readyState != OPEN:
            raise OSError("WebSocket send() after close: the socket is closed.")
        if not isinstance(data, str | bytes | bytearray):
            raise TypeError(f"WebSocket.send takes str or bytes, not {type(data).__name__}.")
        assert self.peer is not None
        self.peer._deliver("message", bytes(data) if not isinstance(data, str) else data)

    def close(self, code: int = 1000, reason: str = "") -> None:
        if self.readyState == CLOSED:
            return
        if not 1000 <= code <= 4999 or code in _RESERVED_CODES:
            raise ValueError(f"Invalid WebSocket close code {code}.")
        self.readyState = CLOSED
        assert self.peer is not None
        self.peer._deliver("close", code, reason)

    def serializeAttachment(self, value: Any) -> None:
        self._attachment = json.dumps(value)

    def deserializeAttachment(self) -> Any:
        return None if self._attachment is None else json.loads(self._attachment)

    # -- delivery --------------------------------------------------------------------------

    def _deliver(self, kind: str, *args: Any) -> None:
        if kind == "close":
            if self.readyState == CLOSED:
                return
            self.readyState = CLOSED
        if self.dispatch is not None:
            handler = "webSocketMessage" if kind == "message" else "webSocketClose"
            extra = (True,) if kind == "close" else ()  # wasClean
            self.dispatch(self, handler, (*args, *extra))
            return
        listeners = self._listeners.get(kind)
        if self._accepted and listeners:
            event = _Event(kind, *args)
            for callback in listeners:
                callback(event)
            return
        self._inbox.put_nowait((kind, *args))

    # -- the host side ---------------------------------------------------------------------

    async def next_event(self) -> tuple[Any, ...]:
        """``("message", data)`` or ``("close", code, reason)``, in the order sent."""
        return await self._inbox.get()

    def disconnect(self, code: int = 1006, reason: str = "") -> None:
        """The remote client went away: the other end sees a close with ``code``.

        Unlike :meth:`close`, any code is allowed (1005 "no status", 1006 "abnormal"),
        since nothing is sent on the wire.
        """
        if self.readyState == CLOSED:
            return
        self.readyState = CLOSED
        assert self.peer is not None
        self.peer._deliver("close", code, reason)

    def __repr__(self) -> str:
        return f"<WebSocket state={self.readyState}>"


class _Event:
    def __init__(self, kind: str, *args: Any) -> None:
        self.type = kind
        if kind == "message":
            self.data = args[0]
        else:
            self.code, self.reason = args[0], args[1]
            self.wasClean = True


class WebSocketPair:
    """``WebSocketPair.new().object_values()`` -> ``(client, server)``."""

    def __init__(self) -> None:
        self.client, self.server = WebSocket(), WebSocket()
        self.client.peer, self.server.peer = self.server, self.client

    @classmethod
    def new(cls) -> WebSocketPair:
        return cls()

    def object_values(self) -> tuple[WebSocket, WebSocket]:
        return self.client, self.server

    def __getitem__(self, index: int) -> WebSocket:
        return (self.client, self.server)[index]


_TASKS: set[asyncio.Task[Any]] = set()


def _keep(task: asyncio.Task[Any]) -> None:
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)
