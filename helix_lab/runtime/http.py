"""Host-agnostic ``Request`` and ``Response``: what ``AgentServer.fetch`` takes and returns.

These are deliberately small: a Durable Object's ``fetch`` sees a method, a path with a
query, headers and a body. Hosts convert at their edge (the Worker bundle from the
``workers`` SDK, ``LocalNamespace`` and the client transport from plain Python).

A response body is either bytes or an async iterator of bytes (SSE). A WebSocket upgrade
carries the host's socket on the request (``request.websocket``) and answers 101.
"""

from __future__ import annotations

import json as _json
from collections.abc import AsyncIterator
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from ..errors import AgentNotFoundError, BackendError, BadRequestError, UserError

__all__ = [
    "Request",
    "Response",
    "WebSocketLike",
    "as_request",
    "close_code",
    "error_response",
    "json_response",
    "refusal_response",
]

_UNSET: Any = object()


class WebSocketLike(Protocol):
    """The host's accepted server-side socket, as the runtime uses it."""

    def send(self, text: str) -> None: ...

    def close(self, code: int = 1000, reason: str = "") -> None: ...


_RESERVED_CLOSE_CODES = frozenset({1004, 1005, 1006, 1015})
"""Codes that only describe a close and may never be sent in a close frame (RFC 6455 7.4.1)."""


def close_code(code: Any) -> int:
    """``code`` if a close frame may carry it, else 1000 (for echoing a peer's close)."""
    value = int(code)
    return value if 1000 <= value <= 4999 and value not in _RESERVED_CLOSE_CODES else 1000


class Request:
    """An HTTP request as a Durable Object sees it."""

    def __init__(
        self,
        method: str,
        url: str,
        *,
        json: Any = _UNSET,
        body: bytes | str = b"",
        headers: dict[str, str] | None = None,
        websocket: WebSocketLike | None = None,
    ) -> None:
        self.method = method.upper()
        self.url = url
        parts = urlsplit(url)
        self.path = parts.path or "/"
        self.query: dict[str, str] = dict(parse_qsl(parts.query, keep_blank_values=True))
        self.headers: dict[str, str] = {k.lower(): v for k, v in (headers or {}).items()}
        if json is not _UNSET:
            body = _json.dumps(json)
            self.headers.setdefault("content-type", "application/json")
        self.body = body.encode() if isinstance(body, str) else body
        self.websocket = websocket

    def json(self) -> Any:
        """The body as JSON; a :class:`~helix_lab.errors.BadRequestError` (400) when it is not."""
        if not self.body:
            raise BadRequestError("The request body is empty; send a JSON object.")
        try:
            value = _json.loads(self.body)
            if b"\\u" in self.body:
                # A \uD800-\uDFFF escape without its pair decodes to a lone surrogate, which
                # no storage can encode: refuse it here rather than fail half-way through.
                _json.dumps(value, ensure_ascii=False).encode("utf-8")
            return value
        except UnicodeEncodeError:
            raise BadRequestError("The request body is not valid Unicode: it has a lone surrogate "
                             "escape (\\uD800-\\uDFFF without its pair).") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequestError(f"The request body is not valid JSON: {exc}.") from None
        except RecursionError:  # json's decoder recurses per level: absurd nesting is a 400
            raise BadRequestError("The request body is nested too deeply to be read.") from None

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.url}>"


class Response:
    """An HTTP response; ``stream`` is set for streaming bodies such as SSE."""

    def __init__(
        self,
        body: bytes | str = b"",
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        stream: AsyncIterator[bytes] | None = None,
    ) -> None:
        self.status = status
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}
        self.body = body.encode() if isinstance(body, str) else body
        self.stream = stream

    def json(self) -> Any:
        return _json.loads(self.body)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 400

    def __repr__(self) -> str:
        kind = "stream" if self.stream is not None else f"{len(self.body)} bytes"
        return f"<Response {self.status} {kind}>"


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    merged = {"content-type": "application/json", **(headers or {})}
    return Response(_json.dumps(data, default=str), status=status, headers=merged)


def error_response(status: int, code: str, message: str, **extra: Any) -> Response:
    """The one error body of the wire: ``{"error": {"code", "message", ...}}``."""
    return json_response({"error": {"code": code, "message": message, **extra}}, status=status)


def as_request(request: Request | str) -> Request:
    """A request, or a bare path as a GET of it (``await stub.fetch("/status")``)."""
    return Request("GET", request) if isinstance(request, str) else request


def refusal_response(exc: BackendError | UserError) -> Response:
    """The error response to a request refused on purpose: a :class:`BackendError` with
    its own status and code, an unknown agent type as a 404 that lists the known ones, any
    other :class:`UserError` as a 400."""
    if isinstance(exc, BackendError):
        return error_response(exc.status, exc.code, exc.message, **exc.details)
    if isinstance(exc, AgentNotFoundError):
        return error_response(404, "agent_not_found", str(exc), agentType=exc.agent_type,
                              availableTypes=exc.available_types)
    return error_response(400, "bad_request", str(exc))
