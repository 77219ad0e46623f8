"""Shared harness for the runtime tests: real sqlite storage, the real namespace and backend.

``Runtime`` bundles a :class:`LocalNamespace` on a ``tmp_path`` directory, a
:class:`LocalBackend` over it, and request helpers. Every response an object gives is
checked on the way out: a 500 or a traceback on the wire is recorded as a violation and
fails the test at teardown, whichever test provoked it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
from note_taker import notes_agent

from helix_lab import RemoteBackend
from helix_lab.agent import Agent
from helix_lab.client.backend import LocalBackend
from helix_lab.llm.base import LLMAdapter
from helix_lab.llm.scripted import ScriptedLLM, Turn, call
from helix_lab.runtime import (
    AgentRegistry,
    AgentServer,
    LocalNamespace,
    Request,
    Response,
    RetryPolicy,
    create_agent_server,
)
from helix_lab.runtime.sse import END_EVENT, iter_sse_chunks
from helix_lab.tools import tool

_UNSET: Any = object()
FAST_RETRY = RetryPolicy(base_delay=0.01, max_delay=0.05)

LLMSpec = ScriptedLLM | dict[str, LLMAdapter] | Callable[[Any, Any], LLMAdapter]


def response_problem(response: Response) -> str | None:
    """Why a response breaks the "no 500, no traceback on the wire" rule, if it does."""
    if response.status >= 500:
        return f"status {response.status}: {response.body[:300]!r}"
    if b"Traceback" in response.body:
        return f"traceback in body: {response.body[:300]!r}"
    return None


def llm_factory(llm: LLMSpec) -> Callable[[Any, Any], LLMAdapter]:
    """One scripted model for every run, one per agent type, or a factory as given."""
    if isinstance(llm, dict):
        return lambda env, ctx: llm[ctx.agent_type]
    if callable(llm) and not hasattr(llm, "stream"):
        return llm
    return lambda env, ctx: llm  # type: ignore[return-value]


def checked_server(server_class: type[AgentServer], violations: list[str]) -> type[AgentServer]:
    """A subclass whose every response is checked for 500s and tracebacks."""

    async def fetch(self: AgentServer, request: Request) -> Response:
        response = await server_class.fetch(self, request)
        problem = response_problem(response)
        if problem is not None:
            violations.append(f"{request.method} {request.url}: {problem}")
        return response

    return type("CheckedAgentServer", (server_class,), {"fetch": fetch})


class Runtime:
    """A namespace of agent servers on real sqlite files, with request helpers."""

    def __init__(self, storage: Path | str, agents: Iterable[Agent] | AgentRegistry | Callable,
                 llm: LLMSpec, *, env: Any = None, **server_options: Any) -> None:
        if isinstance(agents, AgentRegistry) or callable(agents) or hasattr(agents, "resolve"):
            registry = agents
        else:
            registry = AgentRegistry()
            for agent in agents:
                registry.register(agent)
        self.registry = registry
        self.storage = str(storage)
        self.env = env if env is not None else {}
        self.violations: list[str] = []
        self.server_options = {"retry": FAST_RETRY, **server_options}
        base = create_agent_server(llm_adapter=llm_factory(llm), agents=registry,
                                   **self.server_options)
        self.server_class = checked_server(base, self.violations)
        self.ns = LocalNamespace(self.server_class, env=self.env, storage=self.storage)
        self.backend = LocalBackend(self.ns)
        self._reopened: list[Runtime] = []

    def reopen(self) -> Runtime:
        """A new host on the same storage, as after a kernel restart (same server class)."""
        other = object.__new__(Runtime)
        other.__dict__.update(self.__dict__)
        other.ns = LocalNamespace(self.server_class, env=self.env, storage=self.storage)
        other.backend = LocalBackend(other.ns)
        other._reopened = []
        self._reopened.append(other)
        return other

    # -- objects ---------------------------------------------------------------------------

    def stub(self, session_id: str) -> Any:
        return self.ns.get(self.ns.id_from_name("session:" + session_id))

    def server(self, session_id: str) -> AgentServer:
        return self.ns.instance(self.ns.id_from_name("session:" + session_id))

    # -- requests --------------------------------------------------------------------------

    async def call(self, session_id: str, method: str, path: str, json: Any = _UNSET,
                   body: bytes | str = b"") -> Response:
        if json is _UNSET:
            request = Request(method, path, body=body)
        else:
            request = Request(method, path, json=json)
        response = await self.stub(session_id).fetch(request)
        assert response_problem(response) is None, response_problem(response)
        return response

    async def get(self, session_id: str, path: str) -> Any:
        response = await self.call(session_id, "GET", path)
        assert response.status == 200, (path, response.status, response.body)
        return response.json()

    async def start(self, session_id: str, message: str = "go", agent_type: str = "a",
                    **input_extra: Any) -> Response:
        return await self.call(session_id, "POST", "/start", json={
            "agentType": agent_type, "sessionId": session_id,
            "input": {"message": message, **input_extra}})

    async def run(self, session_id: str, message: str = "go", agent_type: str = "a",
                  **input_extra: Any) -> dict[str, Any]:
        """Start a run, wait for it to stop, and return the final status."""
        response = await self.start(session_id, message, agent_type, **input_extra)
        assert response.status == 200, response.body
        return await self.wait(session_id)

    async def wait(self, session_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until the session's current execution (if any) has stopped."""
        execution = self.server(session_id).execution
        if execution is not None:
            await asyncio.wait_for(execution.wait(), timeout)
        return await self.get(session_id, "/status")

    async def chunks(self, session_id: str, after: int = 0) -> list[dict[str, Any]]:
        """Every stored chunk after ``after``, paging through /history."""
        out: list[dict[str, Any]] = []
        while True:
            page = await self.get(session_id, f"/history?fromSequence={after}&limit=500")
            out.extend(page["chunks"])
            if not page["hasMore"]:
                return out
            after = out[-1]["sequence"]

    async def sse(self, session_id: str, after: int = 0) -> list[dict[str, Any]]:
        """Read ``GET /sse?fromSequence=after`` to its end event."""
        response = await self.call(session_id, "GET", f"/sse?fromSequence={after}")
        assert response.status == 200
        assert response.headers["content-type"] == "text/event-stream"
        assert response.stream is not None
        return await read_sse(response.stream)

    async def checkpoints(self, session_id: str) -> list[dict[str, Any]]:
        return (await self.get(session_id, "/checkpoints"))["checkpoints"]

    async def close(self) -> None:
        for other in self._reopened:
            await other.close()
        await self.backend.aclose()
        await self.ns.aclose()


async def read_sse(stream: AsyncIterator[bytes]) -> list[dict[str, Any]]:
    chunks: list[dict[str, Any]] = []
    ended = False
    async for event, data in iter_sse_chunks(stream):
        if event == END_EVENT:
            ended = True
            break
        chunks.append(data)
    assert ended, "the SSE stream stopped without its end event"
    return chunks


def framed_chunks(body: str, *, batch: bool) -> list[dict[str, Any]]:
    """The chunks of a whole ``/sse`` body, read literally (not with the client's decoder),
    after checking its framing: one ``chunk`` event per chunk whose ``id`` is its
    sequence, or (``batch``) ``chunks`` events, each a JSON array whose last sequence is
    the event's ``id``; then the ``end`` event."""
    assert body.endswith("\n\n"), body[-200:]
    events = []
    for block in body[:-2].split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        assert set(fields) <= {"id", "event", "data"}, block[:200]
        events.append(fields)
    assert events[-1] == {"event": "end", "data": '{"reason": "idle"}'}
    chunks: list[dict[str, Any]] = []
    for fields in events[:-1]:
        value = json.loads(fields["data"])
        if batch:
            assert fields["event"] == "chunks" and isinstance(value, list) and value
            assert fields["id"] == str(value[-1]["sequence"])
            chunks.extend(value)
        else:
            assert fields["event"] == "chunk" and fields["id"] == str(value["sequence"])
            chunks.append(value)
    return chunks


async def check_sse_framings(http: Any, path: str, expected: list[dict[str, Any]]) -> None:
    """``GET path`` (an idle session's ``/sse``, on an ``httpx.AsyncClient``) in both
    framings, from the start and resumed with ``Last-Event-ID``, gives exactly
    ``expected``; a ``batch`` that is not a yes or a no is a 400 that names it."""
    assert len(expected) > 4
    for batch in (False, True):
        params = {"batch": 1} if batch else {}
        whole = await http.get(path, params=params)
        assert whole.status_code == 200, whole.text
        assert whole.headers["content-type"] == "text/event-stream"
        assert framed_chunks(whole.text, batch=batch) == expected
        middle = expected[len(expected) // 2 - 1]["sequence"]
        resumed = await http.get(path, params=params, headers={"Last-Event-ID": str(middle)})
        assert framed_chunks(resumed.text, batch=batch) == expected[len(expected) // 2:]
    for bad in ("yes", "2", "-1"):
        refused = await http.get(path, params={"batch": bad})
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert error["code"] == "bad_request" and error["field"] == "batch"
        assert "batch must be 1 or 0" in error["message"]


async def check_served_framings(url: str, token: str, *, steps: int,
                                seed_route: bool = False) -> None:
    """A ``stepper`` run started and streamed by RemoteBackend (which asks for ``batch=1``)
    on a served ``url`` gives the stored chunks, once each; then both framings of its
    ``/sse`` (and, with ``seed_route``, ``/stream/{id}?batch=1``) give them too."""
    async with RemoteBackend(url, token=token) as backend:
        handle = await backend.start("stepper", f"steps={steps}", session_id="framings")
        streamed = [c async for c in handle.stream()]
    async with httpx.AsyncClient(base_url=url, timeout=60,
                                 headers={"authorization": f"Bearer {token}"}) as client:
        stored = (await client.get("/sessions/framings/history?limit=10000")).json()["chunks"]
        assert streamed == stored and stored[-1]["type"] == "run_completed"
        await check_sse_framings(client, "/sessions/framings/sse", stored)
        if seed_route:
            seed = await client.get("/stream/framings", params={"batch": 1})
            assert framed_chunks(seed.text, batch=True) == stored


def assert_contiguous(chunks: list[dict[str, Any]], start: int = 1) -> None:
    """Sequences run ``start, start + 1, ...`` with no gap and no repeat."""
    sequences = [c["sequence"] for c in chunks]
    assert sequences == list(range(start, start + len(chunks))), sequences


def types(chunks: Iterable[dict[str, Any]]) -> list[str]:
    return [c["type"] for c in chunks]


def of_type(chunks: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [c for c in chunks if c["type"] == kind]


async def eventually(check: Callable[[], Any], timeout: float = 60.0,
                     interval: float = 0.005) -> Any:
    """Poll ``check`` until it returns something truthy (the deadline only catches a hang)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


def error_of(response: Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["code"], str) and body["error"]["message"]
    return body["error"]


def stored_files(directory: str | Path) -> list[str]:
    """Files under a storage directory (none when it was never created)."""
    path = Path(directory)
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


# -- the agent of the crash test (imported by its child process, too) ------------------------

CRASH_SESSION = "crash"


@tool(timeout=None)
async def hang() -> str:
    """Never returns: the process running it is killed."""
    print("HANGING", flush=True)
    await asyncio.sleep(3600)
    return "unreachable"


def crash_agent() -> Agent:
    return notes_agent("crashy", tools=[hang])


def crash_turns() -> list[Turn]:
    """Steps 1 and 2 commit; step 3 stages a change, then hangs until the kill."""
    return [Turn(text="First a.", tool_calls=[call("remember", word="a")]),
            Turn(text="Then b.", tool_calls=[call("remember", word="b")]),
            Turn(text="Then c, slowly.", tool_calls=[call("remember", word="c"), call("hang")])]
