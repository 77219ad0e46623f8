"""The seed's contract to the letter: its own example requests, on both backends.

Each test sends what ``shared/seed/runtime-cloudflare-docs.txt`` shows (the request
shapes, hooks, ``AbortResult``, ``AgentResolverInterface``, ``Logger``, the handle, the
example Worker's ``/ws/{id}`` and ``/stream/{id}``) and checks the answer the seed
promises. Where the behaviour is visible on the wire, the test runs twice: in the kernel
(a :class:`LocalNamespace` behind the same gateway code, through httpx) and on
``helix serve`` as a real process. Both serve :mod:`seed_agents`, whose server is built
with a custom resolver object, a plain-dict ``AbortResult`` hook and the seed's logger.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import e2e_scenario
import httpx
import pytest
import seed_agents
import websockets
from helpers import eventually, read_sse
from served import TOKEN, Served

from helix_lab import Agent, AgentRegistry, ServerHooks, create_agent_server
from helix_lab.client import AgentHandle, Backend, LocalBackend, RemoteBackend, ResumeCheck
from helix_lab.client.transport import NamespaceTransport
from helix_lab.errors import ConflictError
from helix_lab.llm.scripted import ScriptedLLM, Turn
from helix_lab.runtime import LocalNamespace, Request
from helix_lab.runtime.gateway import route
from helix_lab.runtime.http import json_response

AUTH = {"authorization": f"Bearer {TOKEN}"}
AGENTS_MODULE = "seed_agents"
CAMEL = re.compile(r"^[a-z][a-zA-Z0-9]*$")


@dataclass
class Wire:
    """One backend seen from outside: raw HTTP (httpx) and the client's Backend."""

    kind: str
    http: httpx.AsyncClient
    backend: Backend

    async def post(self, sid: str, endpoint: str, body: Any) -> httpx.Response:
        response = await self.http.post(f"/sessions/{sid}{endpoint}", json=body)
        assert response.status_code < 500 and "Traceback" not in response.text, response.text
        return response

    async def get(self, sid: str, endpoint: str) -> Any:
        response = await self.http.get(f"/sessions/{sid}{endpoint}")
        assert response.status_code == 200, response.text
        return response.json()

    async def sse(self, path: str, headers: dict[str, str] | None = None
                  ) -> list[dict[str, Any]]:
        async with self.http.stream("GET", path, headers=headers) as response:
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"] == "text/event-stream"
            return await read_sse(response.aiter_bytes())

    async def run(self, sid: str, message: str) -> dict[str, Any]:
        """Start ``stepper`` on ``message`` and wait for the run to end."""
        started = await self.post(sid, "/start", {"agentType": "stepper",
                                                  "input": {"message": message}})
        assert started.status_code == 200, started.text
        await self.sse(f"/sessions/{sid}/sse")
        return await self.get(sid, "/status")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = Served(tmp_path_factory.mktemp("seed") / "objects", agents=AGENTS_MODULE).start()
    yield server
    server.stop()
    assert "Traceback" not in server.log.read_text()


@pytest.fixture(params=["local", "serve"])
async def wire(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Wire]:
    if request.param == "local":
        namespace = LocalNamespace(seed_agents.AgentServer, storage=tmp_path / "objects")
        http = httpx.AsyncClient(transport=NamespaceTransport(namespace),
                                 base_url="http://helix.local")
        backend: Backend = LocalBackend(namespace)
        try:
            yield Wire("local", http, backend)
        finally:
            await http.aclose()
            await backend.aclose()
            await namespace.aclose()
        return
    async with serve_wire(request.getfixturevalue("served")) as served_wire:
        yield served_wire


@asynccontextmanager
async def serve_wire(served: Served) -> AsyncIterator[Wire]:
    """``helix serve`` seen from outside, closed on exit."""
    async with (httpx.AsyncClient(base_url=served.url, headers=AUTH, timeout=30) as http,
                RemoteBackend(served.url, token=TOKEN) as backend):
        yield Wire("serve", http, backend)


def session(wire: Wire, name: str) -> str:
    """A session id of its own per backend, as the serve process outlives one test."""
    return f"{name}-{wire.kind}-{secrets.token_hex(3)}"


async def completed_session(wire: Wire, name: str) -> tuple[str, Any]:
    """A session that ran one step to completion, and its ``/checkpoints`` then, which a
    refused request must leave as they were."""
    sid = session(wire, name)
    assert (await wire.run(sid, "steps=1"))["status"] == "completed"
    return sid, await wire.get(sid, "/checkpoints")


# -- 1. a before_* hook may return the seed's AbortResult as a plain dict -------------------


async def test_a_plain_dict_abort_result_answers_the_request(wire: Wire) -> None:
    sid = session(wire, "refused")
    refused = await wire.post(sid, "/start", {"agentType": "stepper",
                                             "input": {"message": "forbidden"}})
    assert refused.status_code == 403
    assert refused.json() == {"error": {"code": "forbidden", "message": "Not this message."}}
    status = await wire.get(sid, "/status")
    assert status["sessionId"] is None, "an aborted /start must store nothing"


async def test_every_before_hook_takes_a_plain_dict(make_runtime: Any) -> None:
    refusal = {"abort": True, "response": json_response({"no": True}, status=418)}
    seen: list[str] = []

    def refuse(name: str) -> Any:
        def hook(ctx: Any) -> Any:
            seen.append(name)
            return refusal if ctx.request.headers.get("x-refuse") else None

        return hook

    hooks = ServerHooks(before_start=refuse("start"), before_resume=refuse("resume"),
                        before_retry=refuse("retry"))
    llm = ScriptedLLM(["one", "two"])
    rt = make_runtime([Agent(name="a", register=False)], llm, hooks=hooks)
    await rt.run("s")
    before = await rt.checkpoints("s")
    for path, body in (("/start", {"agentType": "a", "sessionId": "s",
                                   "input": {"message": "again"}}),
                       ("/resume", {"agentType": "a"}), ("/retry", {"agentType": "a"})):
        response = await rt.stub("s").fetch(Request("POST", path, json=body,
                                                    headers={"X-Refuse": "1"}))
        assert response.status == 418 and response.json() == {"no": True}, path
    assert seen == ["start", "start", "resume", "retry"]
    assert await rt.checkpoints("s") == before and len(llm.requests) == 1
    # {"abort": False} is not an abort.
    refusal["abort"] = False
    response = await rt.stub("s").fetch(Request("POST", "/start", json={
        "agentType": "a", "sessionId": "s", "input": {"message": "again"}},
        headers={"X-Refuse": "1"}))
    assert response.status == 200


# -- 2. /resume and /retry require agentType and check it -----------------------------------

RESUME_AND_RETRY = (("/resume", {"mode": "continue"}), ("/retry", {"mode": "from_start"}))
"""The endpoints that take an ``agentType``, each with options it accepts."""


async def test_resume_and_retry_require_the_agent_type(wire: Wire) -> None:
    sid, before = await completed_session(wire, "untyped")
    for endpoint, options in RESUME_AND_RETRY:
        for body in ({"options": options}, {"agentType": "", "options": options}):
            missing = await wire.post(sid, endpoint, body)
            assert missing.status_code == 400, (endpoint, missing.text)
            assert missing.json()["error"]["field"] == "agentType"
        empty = await wire.http.post(f"/sessions/{sid}{endpoint}")
        assert empty.status_code == 400 and empty.json()["error"]["field"] == "agentType"
    assert await wire.get(sid, "/checkpoints") == before


async def test_resume_and_retry_check_the_agent_type(wire: Wire) -> None:
    sid, before = await completed_session(wire, "typed")
    for endpoint, options in RESUME_AND_RETRY:
        other = await wire.post(sid, endpoint, {"agentType": "researcher", "options": options})
        assert other.status_code == 409, (endpoint, other.text)
        error = other.json()["error"]
        assert error["code"] == "agent_type_mismatch"
        assert "'stepper'" in error["message"] and "'researcher'" in error["message"]
    assert await wire.get(sid, "/checkpoints") == before
    right = await wire.post(sid, "/retry", {"agentType": "stepper",
                                            "options": {"mode": "from_start"}})
    assert right.status_code == 200, right.text


async def test_handles_send_the_agent_type_they_learn_from_the_session(wire: Wire) -> None:
    sid = session(wire, "learn")
    started = await wire.backend.start("stepper", "steps=1", session_id=sid)
    await started.result()
    bare = wire.backend.handle(sid)  # knows no agent type
    again = await bare.retry("from_start", message="steps=2")
    assert await again.result() == "finished 2 steps"
    assert bare.agent_type == "stepper"


# -- 3. one wire format: unknown, misspelt and snake_case keys are refused -----------------


async def test_unknown_keys_get_a_400_naming_the_camel_case_key(wire: Wire) -> None:
    sid, before = await completed_session(wire, "keys")
    cases = [
        ("/resume", {"agentType": "stepper", "options": {"mode": "continue",
                                                         "modifystate": {"label": "x"}}},
         "options.modifystate", "modifyState"),
        ("/resume", {"agentType": "stepper", "options": {
            "appendMesages": [{"role": "user", "content": "hi"}]}},
         "options.appendMesages", "appendMessages"),
        ("/resume", {"agentType": "stepper", "options": {"checkpoint_id": "cpv1-x"}},
         "options.checkpoint_id", "checkpointId"),
        ("/start", {"agent_type": "stepper", "input": {"message": "steps=1"}},
         "agent_type", "agentType"),
        ("/start", {"agentType": "stepper", "input": {"message": "steps=1"},
                    "user_id": "u1"}, "user_id", "userId"),
        ("/retry", {"agentType": "stepper", "options": {"mode": "from_start",
                                                        "mesage": "steps=2"}},
         "options.mesage", "message"),
        ("/interrupt", {"reasn": "stop"}, "reasn", "reason"),
    ]
    for endpoint, body, field, meant in cases:
        response = await wire.post(sid, endpoint, body)
        assert response.status_code == 400, (body, response.text)
        error = response.json()["error"]
        assert error["field"] == field, error
        assert f"did you mean '{meant}'" in error["message"], error
    nothing_close = await wire.post(sid, "/interrupt", {"zzzzzz": 1})
    assert nothing_close.status_code == 400
    assert "did you mean" not in nothing_close.json()["error"]["message"]
    assert "reason" in nothing_close.json()["error"]["message"]  # what is accepted there
    assert await wire.get(sid, "/checkpoints") == before


# -- 4. the wire is camelCase everywhere: chunks and responses ------------------------------


def camel_keys(where: str, value: dict[str, Any]) -> None:
    bad = [k for k in value if not CAMEL.match(k)]
    assert not bad, f"{where} has keys that are not camelCase: {bad}"


async def test_usage_chunks_and_every_response_are_camel_case(wire: Wire) -> None:
    sid = session(wire, "camel")
    assert (await wire.run(sid, "steps=2"))["status"] == "completed"
    chunks = await wire.sse(f"/sessions/{sid}/sse")
    for chunk in chunks:
        camel_keys(f"chunk {chunk['type']}", chunk)
    usage_chunks = [c for c in chunks if c["type"] == "usage"]
    usage = await wire.get(sid, "/usage")
    llm_entries = [e for e in usage["entries"] if e["kind"] == "llm"]
    assert len(usage_chunks) == len(llm_entries) == 3
    for chunk, entry in zip(usage_chunks, llm_entries, strict=True):
        for key in ("inputTokens", "outputTokens", "cacheReadTokens", "cacheWriteTokens"):
            assert chunk[key] == entry[key], key
        assert chunk["inputTokens"] > 0
    camel_keys("/usage", usage)
    camel_keys("/usage rollup", usage["rollup"]["total"])
    for entry in usage["entries"]:
        camel_keys("/usage entry", entry)
    checkpoints = (await wire.get(sid, "/checkpoints"))["checkpoints"]
    for cp in checkpoints:
        camel_keys("/checkpoints item", cp)
    for endpoint in ("/status", "/snapshot", "/messages", "/history",
                     f"/checkpoints/{checkpoints[-1]['checkpointId']}"):
        camel_keys(endpoint, await wire.get(sid, endpoint))
    started = await wire.post(sid, "/start", {"agentType": "stepper",
                                              "input": {"message": "steps=1"}})
    camel_keys("/start", started.json())
    await wire.sse(f"/sessions/{sid}/sse")


# -- 5. WebSockets on any path; the seed example's /ws/{id} and /stream/{id} --------------


class RecordingSocket:
    """The host's accepted socket, as the runtime sees it: what was sent to it."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed = False

    def send(self, text: str) -> None:
        self.sent.append(json.loads(text))

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = True


async def test_the_object_accepts_a_websocket_on_any_path(make_runtime: Any) -> None:
    rt = make_runtime(e2e_scenario.registry, e2e_scenario.llm_adapter)
    assert (await rt.run("sock", "steps=1", agent_type="stepper"))["status"] == "completed"
    stored = await rt.chunks("sock")
    for path in ("/", "/ws/sock", "/anything/at/all"):
        socket = RecordingSocket()
        response = await rt.stub("sock").fetch(Request(
            "GET", f"{path}?fromSequence=0", headers={"upgrade": "websocket"},
            websocket=socket))
        assert response.status == 101, (path, response.body)
        await eventually(lambda s=socket: len(s.sent) == len(stored))
        assert socket.sent == stored


async def test_the_seed_stream_route_in_the_kernel(make_runtime: Any) -> None:
    rt = make_runtime(e2e_scenario.registry, e2e_scenario.llm_adapter)
    assert (await rt.run("seeds", "steps=1", agent_type="stepper"))["status"] == "completed"
    stored = await rt.chunks("seeds")

    async def through_gateway(request: Request) -> Any:
        return await route(request, rt.ns, token=None, agent_types=list)

    streamed = await through_gateway(Request("GET", "/stream/seeds"))
    assert streamed.status == 200 and streamed.stream is not None
    assert await read_sse(streamed.stream) == stored
    later = await through_gateway(Request("GET", "/stream/seeds?fromSequence=4"))
    assert later.stream is not None and await read_sse(later.stream) == stored[4:]
    plain = await through_gateway(Request("GET", "/ws/seeds"))
    assert plain.status == 426 and "Upgrade: websocket" in plain.json()["error"]["message"]
    posted = await through_gateway(Request("POST", "/stream/seeds", json={}))
    assert posted.status == 405
    for bad in ("/stream/bad%20id", "/ws/bad%20id"):
        assert (await through_gateway(Request("GET", bad))).status == 400


async def test_the_seed_websocket_route_in_the_kernel(make_runtime: Any) -> None:
    rt = make_runtime(e2e_scenario.registry, e2e_scenario.llm_adapter)
    assert (await rt.run("seedr", "steps=1", agent_type="stepper"))["status"] == "completed"
    stored = await rt.chunks("seedr")
    socket = RecordingSocket()
    upgraded = await route(Request("GET", "/ws/seedr", headers={"upgrade": "websocket"},
                                   websocket=socket), rt.ns, token=None, agent_types=list)
    assert upgraded.status == 101, upgraded.body
    await eventually(lambda: socket.sent == stored)


async def test_the_seed_stream_route_on_helix_serve(served: Served) -> None:
    sid = "seed-stream"
    async with serve_wire(served) as wire:
        await wire.run(sid, "steps=2")
        stored = await wire.sse(f"/sessions/{sid}/sse")
        assert await wire.sse(f"/stream/{sid}") == stored
        assert await wire.sse(f"/stream/{sid}?fromSequence=3") == stored[3:]
        reconnect = await wire.sse(f"/stream/{sid}", headers={"Last-Event-ID": "6"})
        assert reconnect == stored[6:]
        plain = await wire.http.get(f"/ws/{sid}")
        assert plain.status_code == 426
    async with httpx.AsyncClient(base_url=served.url) as anonymous:
        assert (await anonymous.get(f"/stream/{sid}")).status_code == 401


async def test_websockets_on_any_path_on_helix_serve(served: Served) -> None:
    sid = "seed-ws"
    async with serve_wire(served) as wire:
        await wire.run(sid, "steps=2")
        stored = await wire.sse(f"/sessions/{sid}/sse")
    base = served.url.replace("http", "ws", 1)
    for path in (f"/ws/{sid}", f"/sessions/{sid}/ws", f"/sessions/{sid}/"):
        received: list[dict[str, Any]] = []
        async with websockets.connect(f"{base}{path}?fromSequence=0",
                                      additional_headers=AUTH) as ws:
            while len(received) < len(stored):
                received.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
        assert received == stored, path
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(f"{base}/ws/{sid}", additional_headers={}):
            pass
    assert refused.value.response.status_code == 401


# -- 6. abort is a hard stop: /retry of an aborted run is a 409 -----------------------------


async def test_retry_of_an_aborted_run_is_refused(wire: Wire) -> None:
    sid = session(wire, "aborted")
    gate = e2e_scenario.Gate()  # the run waits before step 2: the abort finds it running
    handle = await wire.backend.start("stepper", f"steps=50 hold=2 gate={gate.path}",
                                      session_id=sid)
    await e2e_scenario.wait_for_step(handle, 1)
    assert (await handle.abort("enough"))["status"] == "failed"
    gate.open()
    before = await wire.get(sid, "/checkpoints")
    for endpoint, options in (("/retry", {"mode": "from_checkpoint"}), ("/retry", {}),
                              ("/resume", {"mode": "retry"})):
        response = await wire.post(sid, endpoint, {"agentType": "stepper", "options": options})
        assert response.status_code == 409, (endpoint, options, response.text)
        error = response.json()["error"]
        assert error["code"] == "aborted"
        assert "hard stop" in error["message"] and "cannot resume" in error["message"]
    with pytest.raises(ConflictError, match="hard stop"):
        await handle.retry()
    assert await wire.get(sid, "/checkpoints") == before
    # Starting over is not going on: a new message, or a retry from the start (a new branch).
    follow_up = await handle.send("steps=1")
    assert await follow_up.result() == "finished 1 steps"
    over = await follow_up.retry("from_start", message="steps=2")
    assert await over.result() == "finished 2 steps"


# -- 7. a custom resolver object (resolve/has) -----------------------------------------------


async def test_a_resolver_object_serves_agents(wire: Wire) -> None:
    sid = session(wire, "resolved")
    assert (await wire.run(sid, "steps=1"))["output"] == "finished 1 steps"
    missing = await wire.post(session(wire, "nobody"), "/start", {
        "agentType": "ghost", "input": {"message": "hi"}})
    assert missing.status_code == 404
    assert missing.json()["error"]["availableTypes"] == ["stepper"]
    if wire.kind == "local":
        assert "stepper" in seed_agents.resolver.resolved


async def test_create_agent_server_takes_any_resolve_has_object(make_runtime: Any) -> None:
    class Only:
        def resolve(self, agent_type: str, context: Any) -> Agent:
            return e2e_scenario.stepper

        def has(self, agent_type: str) -> bool:
            return True

    rt = make_runtime(Only(), e2e_scenario.llm_adapter)
    assert (await rt.run("only", "steps=1", agent_type="stepper"))["status"] == "completed"
    with pytest.raises(Exception, match="resolve"):
        create_agent_server(llm_adapter=e2e_scenario.llm_adapter, agents=object())


# -- 8. the handle: stream_id, can_resume() -> {canResume, reason}, the hooks' handle ------


async def test_the_handle_has_stream_id_and_can_resume_with_a_reason(wire: Wire) -> None:
    sid = session(wire, "handle")
    gate = e2e_scenario.Gate()  # the run waits before step 2: the interrupt finds it running
    handle = await wire.backend.start("stepper", f"steps=40 hold=2 gate={gate.path}",
                                      session_id=sid)
    assert handle.stream_id == sid
    assert "stepper" in repr(handle) and sid in repr(handle)
    await e2e_scenario.wait_for_step(handle, 1)
    running = await handle.can_resume()
    assert isinstance(running, ResumeCheck) and not running
    assert not running.can_resume and "running" in (running.reason or "")
    await e2e_scenario.interrupt_held(handle, gate, "pause")
    check = await handle.can_resume()
    assert check and check.can_resume and check.reason is None
    can, reason = check
    assert (can, reason) == (True, None)
    if await handle.can_resume():  # the old boolean use keeps working
        resumed = await handle.resume()
    assert await resumed.result() == "finished 40 steps"
    done = await resumed.can_resume()
    assert not done and "completed" in (done.reason or "")
    raw = await wire.post(session(wire, "raw"), "/start", {"agentType": "stepper",
                                                          "input": {"message": "steps=1"}})
    assert raw.json()["streamId"] == raw.json()["sessionId"]


async def test_after_hooks_get_a_handle_that_streams_resumes_and_sends(
        make_runtime: Any) -> None:
    handles: dict[str, Any] = {}

    def keep(name: str) -> Any:
        def hook(ctx: Any) -> None:
            handles[name] = ctx.handle

        return hook

    hooks = ServerHooks(after_start=keep("start"), after_resume=keep("resume"),
                        after_retry=keep("retry"))
    rt = make_runtime(e2e_scenario.registry, e2e_scenario.llm_adapter, hooks=hooks)
    gate = e2e_scenario.Gate()  # the run waits before step 2: the interrupt finds it running
    assert (await rt.start("hooked", f"steps=30 hold=2 gate={gate.path}",
                           agent_type="stepper")).status == 200
    handle = handles["start"]
    assert handle.session_id == handle.stream_id == "hooked"
    assert handle.agent_type == "stepper" and "stepper" in repr(handle)
    await e2e_scenario.wait_for_step(handle, 1)
    await e2e_scenario.interrupt_held(handle, gate, "hold on")
    assert await handle.can_resume()
    resumed = await handle.resume()
    assert handles["resume"].run_id == resumed.run_id != handle.run_id
    assert await resumed.result() == "finished 30 steps"
    chunks = [c async for c in handle.stream()]
    assert chunks == await rt.chunks("hooked")
    follow = await handle.send("steps=1")
    assert await follow.result() == "finished 1 steps"
    retried = await follow.retry("from_start", message="steps=2")
    assert handles["retry"].run_id == retried.run_id
    assert await retried.result() == "finished 2 steps"
    assert (await handle.get_state())["done"] == [1, 2]


# -- 9. the seed's Logger (warn, no warning), stdlib loggers, and quiet by default ---------


def failing_on_complete(ctx: Any) -> None:
    raise RuntimeError("the on_complete hook broke")


async def test_a_seed_logger_with_warn_only_is_used(make_runtime: Any) -> None:
    logger = seed_agents.SeedLogger()
    rt = make_runtime([Agent(name="a", register=False)], ScriptedLLM(["one"]),
                      hooks=ServerHooks(on_complete=failing_on_complete), logger=logger)
    assert (await rt.run("warned"))["status"] == "completed"
    await eventually(lambda: any(level == "warn" for level, _ in logger.lines))
    assert any("on_complete" in text for level, text in logger.lines if level == "warn")
    assert (await rt.get("warned", "/status"))["status"] == "completed"


async def test_a_stdlib_logger_is_used(make_runtime: Any,
                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="seed.test")
    rt = make_runtime([Agent(name="a", register=False)], ScriptedLLM(["one"]),
                      hooks=ServerHooks(on_complete=failing_on_complete),
                      logger=logging.getLogger("seed.test"))
    assert (await rt.run("std"))["status"] == "completed"
    await eventually(lambda: any("on_complete" in r.getMessage() for r in caplog.records))


async def test_the_default_logger_is_quiet(make_runtime: Any,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    calls: list[str] = []

    def on_complete(ctx: Any) -> None:
        calls.append(ctx.status)
        raise RuntimeError("the on_complete hook broke")

    rt = make_runtime([Agent(name="a", register=False)], ScriptedLLM(["one"]),
                      hooks=ServerHooks(on_complete=on_complete))
    assert (await rt.run("quiet"))["status"] == "completed"
    await eventually(lambda: calls)
    await rt.ns.aclose()  # every hook task has ended
    assert [r.getMessage() for r in caplog.records if r.name.startswith("helix_lab")] == []


# -- 10. Last-Event-ID on /sse reconnects ------------------------------------------------------


async def test_last_event_id_is_honoured_as_from_sequence(wire: Wire) -> None:
    sid = session(wire, "lastid")
    await wire.run(sid, "steps=2")
    stored = await wire.sse(f"/sessions/{sid}/sse")
    assert len(stored) > 8
    again = await wire.sse(f"/sessions/{sid}/sse", headers={"Last-Event-ID": "5"})
    assert again == stored[5:]
    # A browser reconnects to the same URL with the id it saw last: the id wins.
    later = await wire.sse(f"/sessions/{sid}/sse?fromSequence=2",
                           headers={"Last-Event-ID": "7"})
    assert later == stored[7:]
    bad = await wire.http.get(f"/sessions/{sid}/sse", headers={"Last-Event-ID": "x"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "Last-Event-ID"


# -- also: on_complete after crash recovery, run_id cleared, the handle's repr --------------


async def test_on_complete_runs_for_a_run_that_recovery_ends(make_runtime: Any) -> None:
    completed: list[tuple[str, str]] = []
    hooks = ServerHooks(on_complete=lambda ctx: completed.append((ctx.run_id, ctx.status)))
    rt = make_runtime([Agent(name="a", register=False)], ScriptedLLM([Turn(delay=60)]),
                      hooks=hooks)
    started = await rt.start("crashy")
    run_id = started.json()["runId"]
    await rt.ns.aclose()  # the host goes away mid-run
    view = rt.reopen()
    assert (await view.get("crashy", "/status"))["status"] == "interrupted"
    await eventually(lambda: (run_id, "interrupted") in completed)
    assert completed.count((run_id, "interrupted")) == 1


async def test_execution_state_run_id_is_cleared_when_the_run_ends(make_runtime: Any) -> None:
    rt = make_runtime([Agent(name="a", register=False)], ScriptedLLM([Turn(delay=0.2), "b"]))
    run_id = (await rt.start("ids")).json()["runId"]
    state = rt.server("ids").execution_state
    assert state.run_id == run_id and state.is_executing
    await rt.wait("ids")
    assert state.run_id is None and not state.is_executing and state.status == "completed"


async def test_a_local_handle_repr_names_its_agent(tmp_path: Path) -> None:
    server = create_agent_server(llm_adapter=lambda env, ctx: ScriptedLLM(["hi"]),
                                 agents=AgentRegistry())
    namespace = LocalNamespace(server, storage=":memory:")
    async with LocalBackend(namespace) as backend:
        handle = AgentHandle(backend, "s1", "run_1", "researcher")
        assert repr(handle) == "<AgentHandle researcher session='s1' run='run_1'>"
    await namespace.aclose()

