"""The read endpoints of a session: they look at its storage and change nothing.

Each is a small async function ``(request, session) -> Response`` over a
:class:`SessionView`, the read-only face of an ``AgentServer``, so that each can be called
and tested on its own and the server class keeps only what runs agents::

    GET /status  /sse?fromSequence=N  /history?fromSequence=N&limit=M
    GET /usage  /messages  /snapshot  /checkpoints/{id}
    GET /checkpoints?branch=&after=&before=&limit=  /branches  /search?q=&limit=
    GET /export   the session's stored rows, streamed as JSON Lines (a .helix file's content)
    GET /steps/{step}?checkpointId=&messages=N       (the step inspector, see .inspector)

``fromSequence=N`` means "I have seen up to N": the answer starts at N + 1. On ``/sse`` a
``Last-Event-ID`` header (what an ``EventSource`` sends when it reconnects: the ``id`` of
the last event it got, which is that chunk's sequence) means the same, and wins over the
query, which still holds the first connection's value. ``/sse?batch=1`` asks for the
batched framing (see :mod:`.sse`): one event per page of chunks instead of one per chunk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeAlias

from ..errors import BadRequestError, NotFoundError
from .chunks import RESUMABLE
from .export import stream_rows
from .http import Request, Response, json_response
from .inspector import DEFAULT_MESSAGES, missing_step, step_view
from .session_storage import SessionOwner
from .sse import encode_batch, encode_end
from .state_store import Checkpoint
from .stream import DOStreamManager
from .usage import UsageStore

__all__ = ["READS", "ReadEndpoint", "SessionView", "int_param", "only_params", "sse_response",
           "status_body"]

CHECKPOINT_PAGE = 1000
MAX_CHECKPOINT_PAGE = 10_000
MAX_HITS = 200
MAX_QUERY = 1000

_STREAM_STATUS = {"running": "active", "interrupted": "paused", "paused": "paused",
                  "completed": "ended", "failed": "failed"}


class SessionView(SessionOwner, Protocol):
    """What the read endpoints see of a server."""

    @property
    def is_executing(self) -> bool: ...

    @property
    def usage_store(self) -> UsageStore:
        """The store ``/usage`` answers from: a custom one, or the session's own."""

    def describe_agent(self) -> dict[str, Any] | None:
        """The session's agent as its model sees it (``model``, ``system``, ``tools``),
        or ``None`` when this host cannot build it."""


ReadEndpoint: TypeAlias = Callable[[Request, SessionView], Awaitable[Response]]


def int_param(request: Request, name: str, default: int, maximum: int | None = None) -> int:
    """A whole-number query parameter, or a 400 that names it."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequestError(f"{name} must be a whole number, got {raw[:40]!r}.",
                              field=name) from None
    if value < 0:
        raise BadRequestError(f"{name} must be 0 or more, got {raw[:40]}.", field=name)
    # SQLite integers are 64-bit; no sequence or limit comes anywhere near that.
    return min(value, maximum if maximum is not None else 2**63 - 1)


def require_session(session: SessionView) -> dict[str, Any]:
    """The session row, or a 404 that says to start it."""
    row = session.storage.state.get_session()
    if row is None:
        raise NotFoundError("This session has not been started; POST /start first.",
                            code="session_not_found")
    return row


def head_checkpoint(session: SessionView, row: dict[str, Any]) -> Checkpoint:
    """The session's newest checkpoint, or a 404."""
    head = session.storage.state.get_checkpoint(row["head_checkpoint"] or "")
    if head is None:
        raise NotFoundError("This session has no checkpoint yet.", code="checkpoint_not_found")
    return head


def find_checkpoint(session: SessionView, cp_id: str) -> Checkpoint:
    """Checkpoint ``cp_id`` of this session, or a 404 that says where to look."""
    cp = session.storage.state.get_checkpoint(cp_id)
    if cp is None:
        raise NotFoundError(f"No checkpoint {cp_id!r} in session {session.session_id!r}; "
                            "GET /checkpoints lists them.", code="checkpoint_not_found")
    return cp


def _checkpoint_or_head(request: Request, session: SessionView) -> Checkpoint:
    row = require_session(session)
    wanted = request.query.get("checkpointId")
    return find_checkpoint(session, wanted) if wanted else head_checkpoint(session, row)


def status_body(session: SessionView) -> dict[str, Any]:
    """``AgentStatusResponse``: what ``/status`` answers, and what control calls return."""
    storage = session.storage
    row = storage.state.get_session()
    if row is None:
        return {"sessionId": None, "status": "idle", "stepCount": 0, "isExecuting": False,
                "canResume": False, "lastSequence": 0}
    head = storage.state.get_checkpoint(row["head_checkpoint"] or "")
    status = row["status"]
    body: dict[str, Any] = {
        "sessionId": row["session_id"], "agentType": row["agent_type"],
        "status": status, "runId": row["run_id"], "stepCount": head.step if head else 0,
        "checkpointId": head.id if head else None, "isExecuting": session.is_executing,
        "canResume": status in RESUMABLE,
        "streamStatus": _STREAM_STATUS.get(status, "ended"),
        "lastSequence": storage.stream.sequence, "branch": head.branch if head else 0,
    }
    if row["output"] is not None:
        body["output"] = row["output"]
    if row["error"]:
        body["error"] = row["error"]
    if status == "paused" and head is not None:
        kept = storage.pending.get(head.id)
        body["canResume"] = True  # by deciding the waiting calls (POST /approve)
        body["reason"] = "approval_required"
        body["pendingApprovals"] = kept.to_wire() if kept else []
    return body


async def status(request: Request, session: SessionView) -> Response:
    return json_response(status_body(session))


def last_event_id(request: Request) -> int | None:
    """The ``Last-Event-ID`` header as a sequence, or ``None`` when there is none."""
    raw = request.headers.get("last-event-id")
    if raw is None or raw.strip() == "":
        return None
    raw = raw.strip()
    if not raw.isascii() or not raw.isdigit():
        raise BadRequestError(f"Last-Event-ID must be the sequence of a chunk, got "
                              f"{raw[:40]!r}.", field="Last-Event-ID")
    return min(int(raw), 2**63 - 1)


def flag_param(request: Request, name: str) -> bool:
    """A yes/no query parameter (``1``/``true`` or ``0``/``false``), or a 400 that names it."""
    raw = request.query.get(name)
    if raw in (None, "", "0", "false"):
        return False
    if raw in ("1", "true"):
        return True
    raise BadRequestError(f"{name} must be 1 or 0, got {raw[:40]!r}.", field=name)


def sse_response(request: Request, stream: DOStreamManager) -> Response:
    """``GET /sse`` of a stream: its chunks after ``fromSequence`` (or ``Last-Event-ID``),
    then an end event; ``follow=1`` waits for new chunks instead of ending when idle, and
    ``batch=1`` sends one event per page. Each page's text is built by SQLite."""
    after = int_param(request, "fromSequence", 0)
    reconnect = last_event_id(request)
    if reconnect is not None:
        after = reconnect
    follow = request.query.get("follow") in ("1", "true")
    batch = flag_param(request, "batch")
    tail = stream.tail(after, follow=follow, events=not batch)

    async def body() -> AsyncIterator[bytes]:
        try:
            async for page in tail:
                yield encode_batch(page.last, page.text) if batch else page.text.encode()
            yield encode_end()
        finally:
            tail.close()

    return Response(status=200, stream=body(), headers={
        "content-type": "text/event-stream", "cache-control": "no-cache",
        "x-accel-buffering": "no"})


async def sse(request: Request, session: SessionView) -> Response:
    return sse_response(request, session.storage.stream)


async def history(request: Request, session: SessionView) -> Response:
    after = int_param(request, "fromSequence", 0)
    limit = int_param(request, "limit", 1000, maximum=10_000)
    stream = session.storage.stream
    stream.flush()
    chunks = stream.read(after, limit + 1)
    return json_response({"chunks": chunks[:limit], "hasMore": len(chunks) > limit,
                          "lastSequence": stream.sequence})


async def usage(request: Request, session: SessionView) -> Response:
    store = session.usage_store
    entries = await store.get_entries(session.session_id)
    return json_response({"sessionId": session.session_id or None, "entries": entries,
                          "rollup": await store.get_rollup(session.session_id)})


async def messages(request: Request, session: SessionView) -> Response:
    cp = _checkpoint_or_head(request, session)
    return json_response({"checkpointId": cp.id,
                          "messages": session.storage.state.load_messages(cp.message_head)})


async def snapshot(request: Request, session: SessionView) -> Response:
    body = status_body(session)
    if body["sessionId"] is None:
        return json_response({**body, "state": None, "messages": [], "checkpoints": []})
    cp = _checkpoint_or_head(request, session)
    state = session.storage.state
    newest, _ = state.page_checkpoints(before=2**62, limit=50)  # not every one: 10,000 is fine
    return json_response({
        **body, "state": state.state_at(cp.id),
        "messages": state.load_messages(cp.message_head),
        "checkpoints": [c.to_json() for c in newest],
        "checkpointCount": state.checkpoint_count(),
        "usage": (await session.storage.usage.get_rollup())["total"],
    })


def only_params(request: Request, allowed: tuple[str, ...]) -> None:
    """A 400 for a query parameter the endpoint does not take (a typo must not be ignored)."""
    unknown = sorted(set(request.query) - set(allowed))
    if unknown:
        raise BadRequestError(f"Unknown query parameter(s) {', '.join(unknown)}; this endpoint "
                              f"takes {', '.join(allowed)}.", field=unknown[0])


async def checkpoints(request: Request, session: SessionView) -> Response:
    """A page of checkpoints, oldest first: ``?branch=B&after=S&before=S&limit=N``.

    ``after`` / ``before`` are checkpoint sequences (exclusive); with ``before`` the page
    is the ``limit`` checkpoints just before it, and ``hasMore`` says older ones exist."""
    only_params(request, ("branch", "after", "before", "limit"))
    require_session(session)
    store = session.storage.state
    branch = int_param(request, "branch", -1)
    after = int_param(request, "after", 0)
    before = int_param(request, "before", -1)
    limit = int_param(request, "limit", CHECKPOINT_PAGE, maximum=MAX_CHECKPOINT_PAGE)
    page, more = store.page_checkpoints(branch=branch if branch >= 0 else None, after=after,
                                        before=before if before >= 0 else None, limit=limit)
    if branch >= 0 and not page and not store.page_checkpoints(branch=branch, limit=1)[0]:
        raise NotFoundError(f"No branch {branch} in session {session.session_id!r}; "
                            "GET /branches lists them.", code="branch_not_found")
    return json_response({"sessionId": session.session_id, "hasMore": more,
                          "checkpoints": [c.to_json() for c in page]})


async def branches(request: Request, session: SessionView) -> Response:
    """The branch tree: each branch's fork point, head and status; ``current`` marks the
    branch the session is on, whose status is the session's."""
    only_params(request, ())
    row = require_session(session)
    head = session.storage.state.get_checkpoint(row["head_checkpoint"] or "")
    current = head.branch if head else 0
    rows = session.storage.state.branches()
    for branch in rows:
        branch["current"] = branch["branch"] == current
        if branch["current"]:
            branch["status"] = row["status"]
    return json_response({"sessionId": session.session_id, "branches": rows})


async def search(request: Request, session: SessionView) -> Response:
    """Full-text search (FTS5 syntax) over text, thinking, tool inputs and outputs."""
    only_params(request, ("q", "limit"))
    require_session(session)
    query = (request.query.get("q") or "").strip()
    if not query:
        raise BadRequestError("q is required: the words to search for, e.g. ?q=otters.",
                              field="q")
    if len(query) > MAX_QUERY:
        raise BadRequestError(f"q is {len(query)} characters; at most {MAX_QUERY}.",
                              field="q")
    limit = int_param(request, "limit", 20, maximum=MAX_HITS)
    stream = session.storage.stream
    stream.flush()
    return json_response({"hits": stream.search.search(query, limit)})


async def checkpoint(request: Request, session: SessionView) -> Response:
    """``GET /checkpoints/{id}``: one checkpoint with its state and output."""
    require_session(session)
    cp = find_checkpoint(session, request.path[len("/checkpoints/"):])
    return json_response({**cp.to_json(), "state": session.storage.state.state_at(cp.id),
                          "output": cp.output})


async def export(request: Request, session: SessionView) -> Response:
    """``GET /export``: every stored row of the session, as JSON Lines (see
    :mod:`~helix_lab.runtime.export`), read as of this request."""
    row = require_session(session)
    session.storage.stream.flush()
    manifest = {"sessionId": session.session_id, "agentType": row["agent_type"],
                "status": row["status"], "agent": session.describe_agent()}
    return Response(status=200, stream=stream_rows(session.storage.sql, manifest),
                    headers={"content-type": "application/x-ndjson"})


READS: dict[str, ReadEndpoint] = {
    "/status": status,
    "/sse": sse,
    "/history": history,
    "/usage": usage,
    "/messages": messages,
    "/snapshot": snapshot,
    "/checkpoints": checkpoints,
    "/export": export,
    "/branches": branches,
    "/search": search,
}
"""``GET`` routes by exact path; ``/checkpoints/{id}`` is matched by prefix."""

async def step(request: Request, session: SessionView) -> Response:
    """What the model was sent and returned at one step (``GET /steps/{step}``)."""
    require_session(session)
    raw = request.path[len("/steps/"):]
    try:
        number = int(raw)
    except ValueError:
        raise BadRequestError(f"The step must be a whole number, got {raw[:40]!r}: "
                              "GET /steps/3.", field="step") from None
    limit = int_param(request, "messages", DEFAULT_MESSAGES, maximum=1_000_000)
    ref = _checkpoint_or_head(request, session)
    found = session.storage.steps.find(number, ref) if number >= 1 else None
    if found is None:
        raise missing_step(number, session.session_id)
    # The agent's current prompt and tools: they are not stored per step.
    agent = session.describe_agent() or {"system": None, "tools": []}
    return json_response(step_view(session.storage.sql, found, system=agent["system"],
                                   tools=agent["tools"], limit=limit))


PREFIX_READS: dict[str, ReadEndpoint] = {"/checkpoints/": checkpoint, "/steps/": step}
"""``GET`` routes whose path continues with an id, by prefix."""
