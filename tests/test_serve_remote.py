"""The remote path end to end: ``helix serve`` as a real process, driven by RemoteBackend.

The same scenario (:mod:`e2e_scenario`) runs on a LocalBackend and, over HTTP with SSE
and with WebSockets, on a served Worker bundle, on both engines of ``helix serve`` (the
CPython stand-in, and real Pyodide in Node); all must agree chunk for chunk. On both
engines too: authentication (401s that store nothing) and malformed input (never a 500).
Then, on the stand-in (tests/test_pyodide.py does these under Pyodide): a SIGKILL in
the middle of a run (nothing committed lost, an open stream carries on without
duplicates), the bundled example agents on the offline model, and the Worker's own
Claude client against a fake Messages API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import e2e_scenario
import h11
import httpx
import pytest
import websockets
from fakes.anthropic_server import FakeAnthropic, Text, ToolUse, http_error, overloaded, turn
from helpers import check_served_framings
from served import TOKEN, Served

from helix_lab import RemoteBackend
from helix_lab.errors import AuthError
from helix_lab.llm.base import LLMError, LLMRequest
from helix_lab.pyodide_host import install


@pytest.fixture(scope="module", params=["cpython", "pyodide"])
def served(tmp_path_factory: pytest.TempPathFactory,
           request: pytest.FixtureRequest) -> Iterator[Served]:
    """``helix serve`` on each engine: the stand-in, and the bundle under real Pyodide."""
    if request.param == "pyodide":
        install()  # pinned and cached: a no-op after `make pyodide-deps`
    server = Served(tmp_path_factory.mktemp("serve") / "objects", engine=request.param,
                    start_timeout=300).start()
    yield server
    server.stop()
    everything = "".join(server.output) + server.log.read_text()
    assert TOKEN not in everything, "helix serve printed the token"
    assert "Traceback" not in everything


def test_scenario_local(local_summary: dict[str, Any]) -> None:
    assert local_summary["messages"][0] == "user"


@pytest.mark.parametrize("stream_via", ["sse", "websocket"])
async def test_scenario_remote_matches_local(served: Served, local_summary: dict[str, Any],
                                             stream_via: str) -> None:
    async with RemoteBackend(served.url, token=TOKEN, stream_via=stream_via) as backend:
        assert await backend.health()
        summary = await e2e_scenario.run_scenario(backend, tag=stream_via)
    assert summary == local_summary


async def test_without_a_valid_token_nothing_happens(served: Served) -> None:
    before = served.object_files()
    async with httpx.AsyncClient(base_url=served.url) as client:
        assert (await client.get("/health")).json() == {"ok": True}
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": TOKEN},
                        {"authorization": "Basic " + TOKEN}):
            for method, path, body in (
                    ("GET", "/agents", None),
                    ("POST", "/sessions/intruder/start",
                     {"agentType": "stepper", "input": {"message": "steps=1"}}),
                    ("GET", "/sessions/intruder/status", None),
                    ("GET", "/sessions/intruder/sse", None)):
                response = await client.request(method, path, json=body, headers=headers)
                assert response.status_code == 401, (headers, path)
                assert response.json()["error"]["code"] == "unauthorized"
    for token in (None, "wrong"):
        async with RemoteBackend(served.url, token=token, stream_via="websocket") as backend:
            with pytest.raises(AuthError):
                async for _ in backend.stream("intruder"):
                    pass
            with pytest.raises(AuthError):
                await backend.start("stepper", "steps=1", session_id="intruder")
    assert served.object_files() == before


async def test_bad_input_is_a_clear_4xx(served: Served) -> None:
    auth = {"authorization": f"Bearer {TOKEN}"}
    cases: list[tuple[str, str, Any, int]] = [
        ("POST", "/sessions/bad-1/start", b"{not json", 400),
        ("POST", "/sessions/bad-1/start", b"[1, 2]", 400),
        ("POST", "/sessions/bad-1/start", b"", 400),
        ("POST", "/sessions/bad-1/start", json.dumps({"agentType": "stepper"}).encode(), 400),
        ("POST", "/sessions/bad-1/start",
         json.dumps({"agentType": "stepper", "input": {"message": 7}}).encode(), 400),
        ("POST", "/sessions/bad-1/start",
         json.dumps({"agentType": "ghost", "input": {"message": "x"}}).encode(), 404),
        ("POST", "/sessions/bad-1/start",
         json.dumps({"agentType": "stepper", "sessionId": "other",
                     "input": {"message": "x"}}).encode(), 400),
        ("POST", "/sessions/bad-1/resume", b"\xff\xfe", 400),
        ("GET", "/sessions/bad-1/history?fromSequence=abc", None, 400),
        ("GET", "/sessions/bad-1/checkpoints/nope", None, 404),
        ("GET", "/sessions/bad-1/nowhere", None, 404),
        ("PUT", "/sessions/bad-1/start", None, 405),
        ("DELETE", "/agents", None, 405),
        ("GET", "/sessions/" + "x" * 300 + "/status", None, 400),
        ("GET", "/sessions/%00%ff/status", None, 400),
        ("GET", "/nowhere", None, 404),
    ]
    async with httpx.AsyncClient(base_url=served.url, headers=auth) as client:
        for method, path, body, status in cases:
            response = await client.request(method, path, content=body)
            assert response.status_code == status, (method, path, response.text)
            assert "Traceback" not in response.text
            assert response.json()["error"]["message"]
        odd = await client.request("PROPFIND", "/sessions/bad-1/status")
        assert odd.status_code == 405
        # The object takes an upgrade on any path (the seed's worker forwards /ws/{id}
        # unchanged), so a WebSocket is refused for what is wrong before it: the session id.
        for path in ("/sessions/bad%20id/", "/ws/bad%20id"):
            websocket = served.url.replace("http", "ws") + path
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with websockets.connect(websocket, additional_headers=auth):
                    pass
            assert refused.value.response.status_code == 400, path


async def test_both_sse_framings_carry_the_same_chunks(served: Served) -> None:
    """The seed's one event per chunk for any reader, one event per page for ``batch=1``
    (what RemoteBackend asks for), on both engines: the same chunks, once, resumable."""
    await check_served_framings(served.url, TOKEN, steps=3, seed_route=True)


async def test_a_body_over_16_mb_is_a_413(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url,
                                 headers={"authorization": f"Bearer {TOKEN}"}) as client:
        response = await client.post("/sessions/big/start", content=b"x" * (16 * 2**20 + 1))
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "too_large"
        assert (await client.get("/health")).json() == {"ok": True}  # still serving


async def test_an_idle_connection_outlives_a_clients_own_keep_alive(served: Served) -> None:
    """A client (httpx keeps an idle connection 5 s) must be the side that closes it: a
    server closing first races the client's next request, which then fails to read."""
    host, port = served.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    connection = h11.Connection(h11.CLIENT)
    try:
        for attempt in range(2):
            if attempt:
                await asyncio.sleep(6)  # idle past httpx's keepalive_expiry
            writer.write(connection.send(h11.Request(method="GET", target="/health",
                                                     headers=[("host", host)])))
            writer.write(connection.send(h11.EndOfMessage()))
            await writer.drain()
            status, body = 0, b""
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    connection.receive_data(await asyncio.wait_for(reader.read(65536), 60))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    break
            assert (status, json.loads(body)) == (200, {"ok": True})
            connection.start_next_cycle()
    finally:
        writer.close()


@pytest.mark.parametrize("stream_via", ["sse", "websocket"])
async def test_sigkill_mid_run_loses_nothing_committed(tmp_path: Path, stream_via: str) -> None:
    server = Served(tmp_path / "objects").start()
    backend = RemoteBackend(server.url, token=TOKEN, stream_via=stream_via)
    backend.reconnect_attempts = 12
    try:
        await e2e_scenario.run_kill_scenario(backend, server.kill, server.start)
    finally:
        await backend.aclose()
        server.stop()


async def test_serve_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    server = Served(tmp_path / "objects", token=None)
    with pytest.raises(RuntimeError, match="set HELIX_TOKEN="):
        server.start()
    assert server.process is not None and server.process.returncode == 2
    assert not (tmp_path / "objects").exists()


def test_cli_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    from helix_lab.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HELIX_TOKEN", raising=False)
    assert main(["serve", "--port", "0"]) == 2
    assert capsys.readouterr().err.strip().startswith("helix: error: HELIX_TOKEN is not set")
    monkeypatch.setenv("HELIX_TOKEN", TOKEN)
    (tmp_path / "broken_agents.py").write_text("import not_a_real_package_xyz\n")
    assert main(["serve", "--port", "0", "--agents", "broken_agents"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "broken_agents" in err and "not_a_real_package_xyz" in err
    assert TOKEN not in err
    with socket_in_use() as port:
        assert main(["serve", "--port", str(port), "--agents", "e2e_scenario"]) == 2
        assert "pick another --port" in capsys.readouterr().err


@contextlib.contextmanager
def socket_in_use() -> Iterator[int]:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.fixture
def standin_app(tmp_path: Path) -> Iterator[Any]:
    """``helix serve``'s app in this process with the default (bundled example) agents."""
    from helix_lab.serve import create_app
    from helix_lab.worker_bundle import standin

    built = create_app(storage=tmp_path / "objects", token=TOKEN, environ={})
    yield built
    standin.uninstall()


async def test_default_agents_run_on_the_offline_model(standin_app: Any) -> None:
    assert "researcher" in standin_app.agent_types
    transport = httpx.ASGITransport(app=standin_app.app)
    async with RemoteBackend("http://serve.test", token=TOKEN, transport=transport) as backend:
        assert "researcher" in await backend.agents()
        handle = await backend.start("researcher", "What do sea otters eat?")
        chunks = [c async for c in handle.stream()]
        e2e_scenario.contiguous(chunks)
        assert chunks[-1]["type"] == "run_completed"
        assert any(c["type"] == "tool_start" for c in chunks)
        assert await handle.result()
        # A sub-agent runs as its own Durable Object, reached through the AGENTS binding.
        brief = await backend.start("briefing", "Sea otters")
        kinds = [c["type"] async for c in brief.stream()]
        assert "subagent_start" in kinds and "subagent_end" in kinds
        output = await brief.result()
        assert output["summary"]
    await standin_app.app.aclose()


async def test_with_a_key_agents_call_claude_through_the_workers_fetch(tmp_path: Path) -> None:
    from helix_lab.serve import create_app
    from helix_lab.worker_bundle import standin

    with FakeAnthropic() as fake:
        fake.push(turn(ToolUse("search_notes", {"query": "otters"})),
                  turn(Text("Otters use stones as tools [n1].")))
        built = create_app(storage=tmp_path / "objects", token=TOKEN, environ={
            "ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": fake.base_url})
        try:
            transport = httpx.ASGITransport(app=built.app)
            async with RemoteBackend("http://serve.test", token=TOKEN,
                                     transport=transport) as backend:
                handle = await backend.start("researcher", "Do otters use tools?")
                assert await handle.result() == "Otters use stones as tools [n1]."
                assert (await handle.get_state())["queries"] == ["otters"]
            await built.app.aclose()
        finally:
            standin.uninstall()
        sent = fake.requests
    assert len(sent) == 2 and all(r.headers["x-api-key"] == KEY for r in sent)
    assert sent[0].json()["model"] == "claude-sonnet-5-5"
    assert [t["name"] for t in sent[0].json()["tools"]] == ["search_notes", "save_finding",
                                                           "read_note"]


async def test_missing_secret_is_a_503_naming_the_fix(tmp_path: Path) -> None:
    from helix_lab.worker_bundle import standin

    standin.install()
    try:
        from helix_lab.worker_bundle import entry

        namespace = standin.DurableObjectNamespace(entry.HelixAgentServer, tmp_path / "o")
        env = standin.Env(AGENTS=namespace)
        response = await standin.call_entrypoint(
            entry.Default, standin.Request("http://w/agents"), env)
        assert response.status == 503
        message = (await response.json())["error"]["message"]
        assert message == ("HELIX_TOKEN secret is not set; run wrangler secret put "
                           "HELIX_TOKEN")
        await namespace.close()
    finally:
        standin.uninstall()


async def test_websockets_survive_hibernation(tmp_path: Path) -> None:
    from helix_lab.worker_bundle import standin

    standin.install()
    try:
        from helix_lab.worker_bundle import entry

        namespace = standin.DurableObjectNamespace(entry.HelixAgentServer, tmp_path / "o")
        env = standin.Env(AGENTS=namespace, HELIX_TOKEN=TOKEN, HELIX_AGENTS_MODULE="e2e_scenario")
        auth = {"authorization": f"Bearer {TOKEN}"}

        async def call(method: str, path: str, body: Any = None, **headers: str) -> Any:
            request = standin.Request("http://w" + path, method=method, headers={**auth, **headers},
                                      body=None if body is None else json.dumps(body))
            return await standin.call_entrypoint(entry.Default, request, env)

        started = await call("POST", "/sessions/sleepy/start",
                             {"agentType": "stepper", "input": {"message": "steps=1"}})
        assert started.status == 200
        await (await call("GET", "/sessions/sleepy/sse")).text()  # until the run ends
        upgraded = await call("GET", "/sessions/sleepy/?fromSequence=0", upgrade="websocket")
        assert upgraded.status == 101
        client = upgraded.js_object.webSocket
        first = []
        while not first or first[-1]["type"] != "run_completed":
            first.append(json.loads((await client.next_event())[1]))

        namespace.evict(namespace.idFromName("session:sleepy"))  # hibernate; the socket stays
        again = await call("POST", "/sessions/sleepy/start",
                           {"agentType": "stepper", "input": {"message": "steps=1"}})
        assert again.status == 200
        later = []
        while not later or later[-1]["type"] != "run_completed":
            later.append(json.loads((await asyncio.wait_for(client.next_event(), 60))[1]))
        e2e_scenario.contiguous(first + later)
        client.close(1000, "done")
        fresh = namespace.instance(namespace.idFromName("session:sleepy"))
        for _ in range(6000):  # 60 s at least: only a hang takes so long
            if not fresh._sockets:
                break
            await asyncio.sleep(0.01)
        assert not fresh._sockets and fresh.ctx.getWebSockets() == []
        await namespace.close()
    finally:
        standin.uninstall()


# -- the Worker's Claude client --------------------------------------------------------------

SEARCH = {"name": "search", "description": "Search.",
          "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}}
KEY = "sk-ant-test-worker-0123456789"


async def _collect(llm: Any, request: LLMRequest) -> list[dict[str, Any]]:
    return [event async for event in llm.stream(request)]


async def test_fetch_llm_streams_claude_through_fetch() -> None:
    from helix_lab.worker_bundle import standin
    from helix_lab.worker_bundle.fetch_llm import FetchAnthropicLLM

    with FakeAnthropic() as fake:
        fake.push(turn(Text("Otters hold hands."), ToolUse("search", {"query": "otters"})))
        llm = FetchAnthropicLLM(KEY, fetch=standin.fetch, base_url=fake.base_url)
        request = LLMRequest(model="claude-sonnet-5-5", system="Be brief.", tools=[SEARCH],
                             messages=[{"role": "user", "content": "otters?"}])
        events = await _collect(llm, request)
        sent = fake.requests[0]
    text = "".join(e["delta"] for e in events if e["type"] == "text_delta")
    assert text == "Otters hold hands."
    calls = [e for e in events if e["type"] == "tool_call"]
    assert calls[0]["name"] == "search" and calls[0]["input"] == {"query": "otters"}
    assert events[-1]["type"] == "finish" and events[-2]["type"] == "usage"
    assert sent.headers["x-api-key"] == KEY and sent.json()["stream"] is True
    assert sent.json()["system"] == "Be brief." and KEY not in repr(llm)


async def test_fetch_llm_errors_are_retryable_or_not_and_never_show_the_key() -> None:
    from helix_lab.worker_bundle import standin
    from helix_lab.worker_bundle.fetch_llm import FetchAnthropicLLM

    request = LLMRequest(model="claude-sonnet-5-5", messages=[{"role": "user", "content": "x"}])
    with FakeAnthropic() as fake:
        fake.push(overloaded(), http_error(401, "authentication_error", f"bad key {KEY}"))
        llm = FetchAnthropicLLM(KEY, fetch=standin.fetch, base_url=fake.base_url)
        with pytest.raises(LLMError) as first:
            await _collect(llm, request)
        with pytest.raises(LLMError) as second:
            await _collect(llm, request)
    assert first.value.retryable and first.value.status == 529
    assert not second.value.retryable and "ANTHROPIC_API_KEY" in second.value.message
    assert KEY not in first.value.message + second.value.message
    nowhere = FetchAnthropicLLM(KEY, fetch=standin.fetch, base_url="http://127.0.0.1:9")
    with pytest.raises(LLMError) as unreachable:
        await _collect(nowhere, request)
    assert unreachable.value.retryable and KEY not in unreachable.value.message
