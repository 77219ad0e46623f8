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

import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import e2e_scenario
import httpx
import pytest
from helpers import read_sse
from test_serve_remote import TOKEN, Served

from helix_lab import AgentRegistry, create_agent_server
from helix_lab.client import AgentHandle, Backend, LocalBackend, RemoteBackend, ResumeCheck
from helix_lab.client.transport import NamespaceTransport
from helix_lab.llm.scripted import ScriptedLLM
from helix_lab.runtime import LocalNamespace, Request
from helix_lab.runtime.gateway import route

AUTH = {"authorization": f"Bearer {TOKEN}"}
AGENTS_MODULE = "e2e_scenario"
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
        server = create_agent_server(llm_adapter=e2e_scenario.llm_adapter,
                                     agents=e2e_scenario.registry)
        namespace = LocalNamespace(server, storage=tmp_path / "objects")
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
    served = request.getfixturevalue("served")
    http = httpx.AsyncClient(base_url=served.url, headers=AUTH, timeout=30)
    backend = RemoteBackend(served.url, token=TOKEN)
    try:
        yield Wire("serve", http, backend)
    finally:
        await http.aclose()
        await backend.aclose()


def session(wire: Wire, name: str) -> str:
    """A session id of its own per backend, as the serve process outlives one test."""
    return f"{name}-{wire.kind}-{secrets.token_hex(3)}"


# -- 2. /resume and /retry require agentType and check it -----------------------------------


async def test_resume_and_retry_require_the_agent_type(wire: Wire) -> None:
    sid = session(wire, "untyped")
    assert (await wire.run(sid, "steps=1"))["status"] == "completed"
    before = await wire.get(sid, "/checkpoints")
    for endpoint, options in (("/resume", {"mode": "continue"}),
                              ("/retry", {"mode": "from_start"})):
        for body in ({"options": options}, {"agentType": "", "options": options}):
            missing = await wire.post(sid, endpoint, body)
            assert missing.status_code == 400, (endpoint, missing.text)
            assert missing.json()["error"]["field"] == "agentType"
        empty = await wire.http.post(f"/sessions/{sid}{endpoint}")
        assert empty.status_code == 400 and empty.json()["error"]["field"] == "agentType"
    assert await wire.get(sid, "/checkpoints") == before


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
    sid = session(wire, "keys")
    assert (await wire.run(sid, "steps=1"))["status"] == "completed"
    before = await wire.get(sid, "/checkpoints")
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


# -- 5. WebSockets on any path; the seed example's /ws/{id} and /stream/{id} --------------


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


async def test_the_seed_stream_route_on_helix_serve(served: Served) -> None:
    sid = "seed-stream"
    async with httpx.AsyncClient(base_url=served.url, headers=AUTH, timeout=30) as http:
        wire = Wire("serve", http, RemoteBackend(served.url, token=TOKEN))
        await wire.run(sid, "steps=2")
        stored = await wire.sse(f"/sessions/{sid}/sse")
        assert await wire.sse(f"/stream/{sid}") == stored
        assert await wire.sse(f"/stream/{sid}?fromSequence=3") == stored[3:]
        plain = await http.get(f"/ws/{sid}")
        assert plain.status_code == 426
        await wire.backend.aclose()
    async with httpx.AsyncClient(base_url=served.url) as anonymous:
        assert (await anonymous.get(f"/stream/{sid}")).status_code == 401


# -- 8. the handle: stream_id, can_resume() -> {canResume, reason}, the hooks' handle ------


async def test_the_handle_has_stream_id_and_can_resume_with_a_reason(wire: Wire) -> None:
    sid = session(wire, "handle")
    handle = await wire.backend.start("stepper", "steps=40", session_id=sid)
    assert handle.stream_id == sid
    assert "stepper" in repr(handle) and sid in repr(handle)
    await e2e_scenario.wait_for_step(handle, 1)
    running = await handle.can_resume()
    assert isinstance(running, ResumeCheck) and not running
    assert not running.can_resume and "running" in (running.reason or "")
    await handle.interrupt("pause")
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


# -- also: on_complete after crash recovery, run_id cleared, the handle's repr --------------


async def test_a_local_handle_repr_names_its_agent(tmp_path: Path) -> None:
    server = create_agent_server(llm_adapter=lambda env, ctx: ScriptedLLM(["hi"]),
                                 agents=AgentRegistry())
    namespace = LocalNamespace(server, storage=":memory:")
    async with LocalBackend(namespace) as backend:
        handle = AgentHandle(backend, "s1", "run_1", "researcher")
        assert repr(handle) == "<AgentHandle researcher session='s1' run='run_1'>"
    await namespace.aclose()

