"""The Worker's front door: bearer auth, ``/health``, ``/agents``, and session routing.

``/sessions/{sessionId}/{endpoint}`` goes to the object named ``"session:" + sessionId``
with the path rewritten to ``/{endpoint}``. The seed's example Worker routes are answered
too: ``GET /stream/{sessionId}`` is the session's ``/sse`` (its query and a
``Last-Event-ID`` header go along), and ``/ws/{sessionId}`` is forwarded unchanged to the
object, which accepts a WebSocket upgrade on any path. The Python Worker's ``Default``
entrypoint, ``helix serve`` and the in-process client transport all route through
:func:`route`, so the remote and local paths cannot drift apart.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Callable
from typing import Any, Protocol

from .http import Request, Response, error_response, json_response

__all__ = ["Namespace", "check_bearer", "check_session_id", "route", "session_object_name"]

_SESSION_PATH = re.compile(r"^/sessions/([^/]+)(/.*)?$")
_SEED_PATH = re.compile(r"^/(ws|stream)/([^/]+)$")
"""The seed example's ``/ws/{sessionId}`` and ``/stream/{sessionId}``."""
_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:~-]{0,127}$")


class Namespace(Protocol):
    def id_from_name(self, name: str) -> Any: ...

    def get(self, object_id: Any) -> Any: ...


def session_object_name(session_id: str) -> str:
    return "session:" + session_id


def check_bearer(request: Request, token: str | None) -> Response | None:
    """``None`` when the request may pass; a 401 response otherwise."""
    if token is None:
        return None
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer" or not value:
        return error_response(401, "unauthorized",
                              "Missing bearer token: send 'Authorization: Bearer <HELIX_TOKEN>'.")
    if not hmac.compare_digest(value.strip().encode(), token.encode()):
        return error_response(401, "unauthorized", "The bearer token is wrong.")
    return None


def check_session_id(session_id: str) -> Response | None:
    """``None`` for a valid session id; a 400 that states the rule otherwise."""
    if _SESSION_ID.match(session_id):
        return None
    return error_response(400, "bad_request",
                          f"Session id {session_id[:80]!r} is not valid: use letters, "
                          "digits and . _ : ~ - (at most 128).", field="sessionId")


async def route(request: Request, namespace: Namespace, *, token: str | None,
                agent_types: Callable[[], list[str]]) -> Response:
    """Answer a request to the Worker as a whole."""
    if request.path == "/health":
        return json_response({"ok": True})
    denied = check_bearer(request, token)
    if denied is not None:
        return denied
    if request.path == "/agents":
        if request.method != "GET":
            return error_response(405, "method_not_allowed", "Use GET /agents.")
        return json_response({"agents": agent_types()})
    seed = _SEED_PATH.match(request.path)
    if seed is not None:
        return await _seed_route(request, namespace, seed.group(1), seed.group(2))
    match = _SESSION_PATH.match(request.path)
    if match is None:
        return error_response(404, "not_found", f"No route {request.path}. Routes: /health, "
                              "/agents, /sessions/{sessionId}/{endpoint}, /stream/{sessionId}, "
                              "/ws/{sessionId}.")
    session_id, rest = match.group(1), match.group(2) or "/"
    problem = check_session_id(session_id)
    if problem is not None:
        return problem
    body = request.body
    if request.method == "POST" and rest == "/start" and body:
        body, problem = _bind_session(body, session_id)
        if problem is not None:
            return problem
    return await _forward(request, namespace, session_id, rest, body)


async def _seed_route(request: Request, namespace: Namespace, kind: str,
                      session_id: str) -> Response:
    """The seed example Worker's ``/stream/{id}`` (the object's ``/sse``) and ``/ws/{id}``."""
    problem = check_session_id(session_id)
    if problem is not None:
        return problem
    if request.method != "GET":
        return error_response(405, "method_not_allowed", f"Use GET /{kind}/{{sessionId}}.")
    if kind == "stream":
        return await _forward(request, namespace, session_id, "/sse", b"")
    if request.websocket is None:
        return error_response(426, "upgrade_required", f"/ws/{session_id} is a WebSocket: "
                              "connect with 'Upgrade: websocket' (or read /stream/"
                              f"{session_id} over SSE).")
    return await _forward(request, namespace, session_id, request.path, b"")


async def _forward(request: Request, namespace: Namespace, session_id: str, path: str,
                   body: bytes) -> Response:
    """Send ``request`` to the session's object at ``path``, with its query."""
    query = request.url.partition("?")[2]
    inner = Request(request.method, path + ("?" + query if query else ""), body=body,
                    headers=request.headers, websocket=request.websocket)
    stub = namespace.get(namespace.id_from_name(session_object_name(session_id)))
    return await stub.fetch(inner)


def _bind_session(body: bytes, session_id: str) -> tuple[bytes, Response | None]:
    """Fill in ``sessionId`` from the path, and refuse a body naming another session."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return body, None  # the object itself answers with a precise 400
    if not isinstance(data, dict):
        return body, None
    given = data.get("sessionId")
    if given is None:
        data["sessionId"] = session_id
        return json.dumps(data).encode(), None
    if given != session_id:
        return body, error_response(400, "bad_request", f"sessionId {given!r} in the body does "
                                    f"not match {session_id!r} in the path.", field="sessionId")
    return body, None
