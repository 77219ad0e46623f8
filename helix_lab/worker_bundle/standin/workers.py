"""The ``workers`` SDK surface the Worker bundle uses, on CPython: installed as ``workers``.

Shapes follow ``workers-runtime-sdk`` 1.9, the SDK version ``helix deploy`` vendors:
``Request`` with ``url``, ``method`` (an ``HTTPMethod``), case-insensitive
``headers`` (an ``http.client.HTTPMessage``) and one-shot ``await bytes()/text()/json()``;
``Response(body, status=, status_text=, headers=, web_socket=)`` whose body is ``None``,
``str``, ``bytes`` or a ``ReadableStream``; static ``Response.json(data, status=)``;
``async fetch(url, *, method, headers, body)`` for outbound HTTP (httpx underneath; a
network failure raises ``OSError``, as Pyodide's ``pyfetch`` does).
"""

from __future__ import annotations

import json as _json
from http import HTTPMethod, HTTPStatus
from http.client import HTTPMessage
from typing import Any

from .js import ReadableStream, WebSocket

__all__ = [
    "DurableObject",
    "FetchResponse",
    "JsDict",
    "JsResponse",
    "Request",
    "Response",
    "WorkerEntrypoint",
    "WorkflowEntrypoint",
    "fetch",
    "set_fetch_transport",
]

Headers = dict[str, str] | list[tuple[str, str]] | HTTPMessage | None


class JsDict(dict):
    """A dict whose keys also read as attributes, as the SDK's RPC results are."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _headers(given: Headers) -> HTTPMessage:
    message = HTTPMessage()
    if given is None:
        return message
    items = given.items() if isinstance(given, dict | HTTPMessage) else given
    for key, value in items:
        message[str(key).lower()] = str(value)  # JS Headers lower-case names
    return message


def _body_bytes(body: Any) -> bytes | None:
    if body is None:
        return None
    if isinstance(body, str):
        return body.encode()
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    raise TypeError(f"Unsupported type in Request: {type(body).__name__}")


class _Body:
    """Shared body handling: a body can be read once, whole or as a stream."""

    _stream: ReadableStream | None
    _used: bool

    @property
    def body(self) -> ReadableStream | None:
        return self._stream

    @property
    def body_used(self) -> bool:
        return self._used or (self._stream is not None and self._stream.locked)

    def _raise_if_failed(self) -> None:
        if self.body_used:
            raise OSError("Body already used")

    async def bytes(self) -> bytes:
        self._raise_if_failed()
        self._used = True
        if self._stream is None:
            return b""
        return await self._stream.read_all()

    async def text(self) -> str:
        return (await self.bytes()).decode("utf-8", errors="replace")


class Request(_Body):
    """An incoming (or outgoing) HTTP request."""

    def __init__(self, input: str | Request, *, method: str | HTTPMethod = "GET",
                 headers: Headers = None, body: Any = None, **_options: Any) -> None:
        if isinstance(input, Request):
            if input.body_used:
                raise OSError("Body already used")
            self._url, self._method = input._url, input._method
            self._headers = _headers(headers) if headers is not None else input._headers
            self._stream, self._used = input._stream, False
            input._used = True
            return
        if not isinstance(input, str) or "://" not in input:
            raise TypeError(f"Failed to parse URL from {input!r}: a Request needs an absolute URL.")
        name = method.value if isinstance(method, HTTPMethod) else str(method).upper()
        data = _body_bytes(body)
        if data is not None and name in ("GET", "HEAD"):
            raise TypeError("Request with a GET or HEAD method cannot have a body.")
        self._url, self._method = input, name
        self._headers = _headers(headers)
        self._stream = ReadableStream.of(data) if data is not None else None
        self._used = False

    @property
    def url(self) -> str:
        return self._url

    @property
    def method(self) -> HTTPMethod:
        return HTTPMethod[self._method]  # KeyError for an unknown method, as in the SDK

    @property
    def headers(self) -> HTTPMessage:
        return self._headers

    @property
    def js_object(self) -> Request:
        return self

    async def json(self, **kwargs: Any) -> Any:
        return _json.loads(await self.text(), **kwargs)

    def clone(self) -> Request:
        raise NotImplementedError("Request.clone is not emulated.")

    def __repr__(self) -> str:
        return f"Request(method={self._method!r}, url={self._url!r})"


class JsResponse:
    """What ``Response.js_object`` gives in the SDK: the JS ``Response`` with its ``webSocket``.

    The Python ``Response`` has no ``webSocket``; the host reads it from the JS object.
    """

    def __init__(self, status: int, web_socket: WebSocket | None) -> None:
        self.status = status
        self.webSocket = web_socket


class FetchResponse(_Body):
    """A response, as ``fetch`` and Durable Object stubs return it."""

    def __init__(self, body: Any = None, status: HTTPStatus | int | None = None,
                 status_text: str = "", headers: Headers = None,
                 web_socket: WebSocket | None = None) -> None:
        code = int(status) if status else 200
        if web_socket is not None and code != 101:
            raise ValueError("A Response with a webSocket must have status 101.")
        if code == 101 and web_socket is None:
            raise ValueError("Responses may only be constructed with status 101 when they "
                             "carry a webSocket.")
        if code != 101 and not 200 <= code <= 599:
            raise ValueError(f"Response status {code} is outside 200-599.")
        if isinstance(body, ReadableStream):
            stream: ReadableStream | None = body
        elif body is None:
            stream = None
        elif isinstance(body, str | bytes | bytearray | memoryview):
            stream = ReadableStream.of(_body_bytes(body) or b"")
        else:
            raise TypeError(f"Unsupported type in Response: {type(body).__name__}")
        self.status = code
        self.status_text = status_text
        self._headers = _headers(headers)
        self._stream, self._used = stream, False
        self._js = JsResponse(code, web_socket)

    @property
    def headers(self) -> HTTPMessage:
        return self._headers

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def js_object(self) -> JsResponse:
        """The JS ``Response``: its ``webSocket`` is the client end of an accepted upgrade."""
        return self._js

    def json(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        # As in the SDK: an instance method that reads the body, and also usable
        # statically, ``Response.json(data, status=...)``, to build a JSON response.
        if isinstance(self, FetchResponse):
            return self._read_json()
        return Response.from_json(self, *args, **kwargs)

    async def _read_json(self) -> Any:
        return _json.loads(await self.text())

    @staticmethod
    def from_json(data: Any, status: HTTPStatus | int = HTTPStatus.OK, status_text: str = "",
                  headers: Headers = None) -> Response:
        merged = _headers(headers)
        if "content-type" not in merged:
            merged["content-type"] = "application/json"
        return Response(_json.dumps(data), status=status, status_text=status_text,
                        headers=list(merged.items()))

    def __repr__(self) -> str:
        return f"Response(status={self.status})"


class Response(FetchResponse):
    """The response a handler returns."""


class WorkerEntrypoint:
    """Base class of a Worker's entrypoint: ``self.ctx`` (ExecutionContext), ``self.env``."""

    def __init__(self, ctx: Any, env: Any) -> None:
        self.ctx = ctx
        self.env = env


class WorkflowEntrypoint:
    """Base class of a Python Workflow: ``run(event, step)``; ``self.env`` as a Worker's."""

    def __init__(self, ctx: Any, env: Any) -> None:
        self.ctx = ctx
        self.env = env


class DurableObject:
    """Base class of a Durable Object: ``self.ctx`` (DurableObjectState), ``self.env``."""

    def __init__(self, ctx: Any, env: Any) -> None:
        self.ctx = ctx
        self.env = env


_transport: Any = None


def set_fetch_transport(transport: Any) -> None:
    """Route :func:`fetch` through an ``httpx.AsyncBaseTransport`` (``None``: the network)."""
    global _transport
    _transport = transport


async def fetch(resource: str | Request, *, method: str | HTTPMethod | None = None,
                headers: Headers = None, body: Any = None, redirect: str = "follow",
                **_options: Any) -> Response:
    """Outbound HTTP; the response body streams (``async for chunk in response.body``)."""
    import httpx

    if isinstance(resource, Request):
        url = resource.url
        method = method or resource._method
        headers = headers if headers is not None else resource.headers
        if body is None and resource.body is not None:
            body = await resource.bytes()
    else:
        url = resource
    name = (method.value if isinstance(method, HTTPMethod) else (method or "GET")).upper()
    client = httpx.AsyncClient(transport=_transport, timeout=httpx.Timeout(300.0, connect=30.0),
                               follow_redirects=redirect == "follow")
    try:
        request = client.build_request(name, url, headers=list(_headers(headers).items()),
                                       content=_body_bytes(body))
        upstream = await client.send(request, stream=True)
    except httpx.HTTPError as exc:
        await client.aclose()
        raise OSError(f"fetch {url} failed: {type(exc).__name__}: {exc}") from None
    except BaseException:
        await client.aclose()
        raise

    async def chunks() -> Any:
        try:
            async for piece in upstream.aiter_bytes():
                yield piece
        except httpx.HTTPError as exc:
            raise OSError(f"the response body of {url} broke off: {exc}") from None

    async def close() -> None:
        await upstream.aclose()
        await client.aclose()

    stream = ReadableStream.from_async_iterator(chunks(), on_close=close)
    headers_out = [(k, v) for k, v in upstream.headers.multi_items()
                   if k.lower() not in ("content-encoding", "content-length",
                                        "transfer-encoding")]
    return Response(stream, status=upstream.status_code, headers=headers_out)
