"""Streams of the Workflows approach: a ``StreamServer`` Durable Object per session.

A workflow instance has no socket to stream from, so its steps send their chunks to a
Durable Object named ``"stream:" + sessionId``. Inside it, the DO runtime's own
:class:`~helix_lab.runtime.stream.DOStreamManager` numbers, stores and fans them out,
with the same three rules (no gap, no duplicate, stored before sent) and the same
``/sse`` and ``/history`` wire format as an ``AgentServer``.

Endpoints of a ``StreamServer``: ``POST /append`` ``{"agentId", "agentType", "chunks":
[...]}``, ``POST /open`` and ``POST /end`` (a run starts or stops: readers without
``follow`` end when the stream is not live), ``GET /sse?fromSequence=&follow=&batch=``,
``GET /history?fromSequence=&limit=``, ``GET /status``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from ..errors import BadRequestError
from ..runtime.http import Request, Response, error_response, json_response
from ..runtime.reads import sse_response
from ..runtime.sse import END_EVENT, iter_sse_chunks
from ..runtime.stream import DOStreamManager

__all__ = ["DurableObjectStreamManager", "StreamServer", "stream_object_name"]

_META = "CREATE TABLE IF NOT EXISTS helix_stream_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"


def stream_object_name(stream_id: str) -> str:
    return "stream:" + stream_id


class _Meta:
    """The few facts a stream keeps besides its chunks (who it belongs to, is it live)."""

    def __init__(self, sql: Any) -> None:
        self.sql = sql
        sql.exec(_META)

    def get(self, key: str, default: str | None = None) -> str | None:
        rows = self.sql.exec("SELECT value FROM helix_stream_meta WHERE key = ?", key)
        return rows[0]["value"] if rows else default

    def set(self, key: str, value: str) -> None:
        self.sql.exec("INSERT OR REPLACE INTO helix_stream_meta VALUES (?, ?)", key, value)

    def get_session(self) -> dict[str, Any] | None:
        """Non-``None`` once the stream was opened or written (``LocalNamespace`` asks this,
        to drop an object that a mere probe brought to life)."""
        rows = self.sql.exec("SELECT COUNT(*) AS n FROM helix_stream_meta")
        return {"streamId": self.get("agentId")} if rows[0]["n"] else None


class StreamServer:
    """The Durable Object holding one session's chunk stream."""

    def __init__(self, ctx: Any, env: Any = None) -> None:
        self.ctx = ctx
        self.env = env
        self.store = _Meta(ctx.sql)
        self.stream = DOStreamManager(ctx.sql, is_live=self._is_live)
        self.stream.agent_id = self.store.get("agentId", "") or ""
        self.stream.agent_type = self.store.get("agentType", "") or ""

    def _is_live(self) -> bool:
        return self.store.get("live") == "1"

    async def fetch(self, request: Request) -> Response:
        try:
            route = (request.method, request.path)
            if route == ("POST", "/append"):
                return self._append(request.json())
            if route == ("POST", "/open"):
                self.store.set("live", "1")
                return json_response({"lastSequence": self.stream.sequence})
            if route == ("POST", "/end"):
                self.stream.flush()
                self.store.set("live", "0")
                self.stream.wake_all()
                return json_response({"lastSequence": self.stream.sequence})
            if route == ("GET", "/status"):
                return json_response({"lastSequence": self.stream.sequence,
                                      "live": self._is_live()})
            if route == ("GET", "/sse"):
                return sse_response(request, self.stream)
            if route == ("GET", "/history"):
                after = _int(request, "fromSequence", 0)
                limit = min(_int(request, "limit", 1000), 10_000)
                chunks = self.stream.read(after, limit + 1)
                return json_response({"chunks": chunks[:limit], "hasMore": len(chunks) > limit,
                                      "lastSequence": self.stream.sequence})
        except BadRequestError as exc:
            return error_response(400, exc.code, exc.message, **exc.details)
        return error_response(404, "not_found", f"No stream endpoint {request.method} "
                              f"{request.path}.")

    def _append(self, body: Any) -> Response:
        if not isinstance(body, dict) or not isinstance(body.get("chunks"), list):
            raise _bad('POST /append takes {"agentId", "agentType", "chunks": [...]}.', "chunks")
        for key in ("agentId", "agentType"):
            value = body.get(key)
            if isinstance(value, str) and value != self.store.get(key):
                self.store.set(key, value)
        self.stream.agent_id = self.store.get("agentId", "") or ""
        self.stream.agent_type = self.store.get("agentType", "") or ""
        for chunk in body["chunks"]:
            if not isinstance(chunk, dict) or not isinstance(chunk.get("type"), str):
                raise _bad("Each chunk needs a string 'type'.", "chunks")
            self.stream.write({k: v for k, v in chunk.items() if k not in ("runId", "step")},
                              run_id=chunk.get("runId"), step=int(chunk.get("step") or 0))
        self.stream.flush()
        return json_response({"lastSequence": self.stream.sequence})


def _int(request: Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad(f"{name} must be a whole number, got {raw[:40]!r}.", name) from None
    if value < 0:
        raise _bad(f"{name} must be 0 or more, got {value}.", name)
    return value


def _bad(message: str, field: str) -> BadRequestError:
    return BadRequestError(message, code="bad_request", details={"field": field})


class DurableObjectStreamManager:
    """The stream manager of the Workflows approach, over a namespace of ``StreamServer``s."""

    def __init__(self, namespace: Any) -> None:
        self.namespace = namespace

    def stub(self, stream_id: str) -> Any:
        ns = self.namespace
        return ns.get(ns.id_from_name(stream_object_name(stream_id)))

    async def _post(self, stream_id: str, path: str, body: Any = None) -> dict[str, Any]:
        response = await self.stub(stream_id).fetch(Request("POST", path, json=body or {}))
        return response.json()

    async def write(self, stream_id: str, chunks: list[dict[str, Any]], *,
                    agent_type: str) -> int:
        """Store and broadcast ``chunks`` (each with its ``runId`` and ``step``); the last
        sequence."""
        if not chunks:
            return await self.last_sequence(stream_id)
        body = {"agentId": stream_id, "agentType": agent_type, "chunks": chunks}
        return int((await self._post(stream_id, "/append", body))["lastSequence"])

    async def open(self, stream_id: str) -> None:
        await self._post(stream_id, "/open")

    async def end(self, stream_id: str) -> None:
        await self._post(stream_id, "/end")

    async def status(self, stream_id: str) -> dict[str, Any]:
        return (await self.stub(stream_id).fetch(Request("GET", "/status"))).json()

    async def last_sequence(self, stream_id: str) -> int:
        return int((await self.status(stream_id))["lastSequence"])

    async def history(self, stream_id: str, after: int = 0, limit: int = 1000) -> dict[str, Any]:
        response = await self.stub(stream_id).fetch(
            Request("GET", f"/history?fromSequence={after}&limit={limit}"))
        return response.json()

    async def sse(self, stream_id: str, query: str = "",
                  last_event_id: str | None = None) -> Response:
        """The ``/sse`` response itself, for a front door to pass on (with the reader's
        ``Last-Event-ID``, when it reconnects with one)."""
        headers = {"last-event-id": last_event_id} if last_event_id is not None else {}
        return await self.stub(stream_id).fetch(Request(
            "GET", "/sse" + (f"?{query}" if query else ""), headers=headers))

    async def subscribe(self, stream_id: str, from_sequence: int = 0, *,
                        follow: bool = False) -> AsyncIterator[dict[str, Any]]:
        """Chunks after ``from_sequence``, in order; ends when the stream is not live."""
        query = f"fromSequence={from_sequence}" + ("&follow=1" if follow else "")
        response = await self.sse(stream_id, query)
        if response.stream is None:
            return
        async for event, data in iter_sse_chunks(response.stream):
            if event == END_EVENT:
                return
            yield data if isinstance(data, dict) else json.loads(data)
