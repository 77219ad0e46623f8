"""The Worker bundle under real Pyodide: the runtime Cloudflare runs, in Node, offline.

``helix deploy``'s bundle (the real ``workers`` SDK vendored, pydantic's wasm wheels) is
served by ``helix_lab/pyodide_host/host.mjs``. The shared e2e scenario, auth and bad-input
checks run on it in ``test_serve_remote.py`` (``helix serve --engine pyodide``). Here: a
host killed mid-run and restarted on the same storage loses nothing committed, and the
run resumes; ``helix serve --engine pyodide`` serves the bundled researcher, which calls a fake Claude through the Worker's
``fetch`` (Node's, under Pyodide). Pyodide starts once per host (5 to 20 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import e2e_scenario
import httpx
import pytest
import websockets
from fakes.anthropic_server import FakeAnthropic, Text, ToolUse, turn
from helpers import read_sse
from served import TOKEN, Served

from helix_lab import RemoteBackend
from helix_lab.errors import BackendError
from helix_lab.pyodide_host import PyodideHost, PyodideHostError, build_bundle, home, install

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PyodideHost]:
    """The scenario's bundle (agents from :mod:`e2e_scenario`) on one Pyodide host."""
    install()  # pinned and cached: a no-op after `make pyodide-deps`
    folder = tmp_path_factory.mktemp("pyodide")
    bundle = build_bundle(folder / "worker", "e2e_scenario")
    log = folder / "host.log"
    with log.open("w") as stderr:
        served = PyodideHost(bundle, folder / "objects", token=TOKEN, agents="e2e_scenario",
                             stderr=stderr).start()
        yield served
        served.stop()
    text = log.read_text()
    assert TOKEN not in text, "the host logged the token"
    assert "Traceback" not in text, text[-3000:]


def _remote(host: PyodideHost, stream_via: str = "sse") -> RemoteBackend:
    return RemoteBackend(host.url, token=TOKEN, stream_via=stream_via)


async def test_health_agents_and_auth(host: PyodideHost) -> None:
    assert "stepper" in host.agent_types  # the host asked the Worker at start
    async with httpx.AsyncClient(base_url=host.url) as client:
        assert (await client.get("/health")).json() == {"ok": True}
        refused = await client.get("/agents", headers={"authorization": "Bearer wrong"})
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthorized"
        agents = await client.get("/agents", headers={"authorization": f"Bearer {TOKEN}"})
        assert agents.json() == {"agents": host.agent_types}


async def test_branches_pages_and_search_work(host: PyodideHost) -> None:
    """The branch tree, checkpoint pages and FTS5 search, on the host's SQLite (SQLite's
    WebAssembly build, which has FTS5 as Durable Object SQLite does)."""
    async with _remote(host) as backend:
        handle = await backend.start("stepper", "steps=2", session_id="viewer")
        await handle.result()
        first = (await handle.checkpoints())[1]
        fork = await handle.resume(mode="from_checkpoint", checkpoint_id=first["checkpointId"])
        await fork.result()
        branches = await handle.branches()
        assert [(b["branch"], b["parentBranch"], b["current"]) for b in branches] == [
            (0, None, False), (1, 0, True)]
        assert branches[1]["forkCheckpointId"] == first["checkpointId"]
        page = await handle.checkpoints_page(branch=1, limit=2)
        assert len(page["checkpoints"]) == 2 and page["hasMore"]
        hits = await handle.search("finished")
        assert hits and all("«finished»" in hit["snippet"] for hit in hits)
        assert {hit["type"] for hit in hits} == {"text_delta"}
        with pytest.raises(BackendError) as info:
            await handle.search('"unclosed')
    assert info.value.status == 400  # FTS5's own parse error, named


async def test_the_seed_worker_routes_and_last_event_id(host: PyodideHost) -> None:
    """The seed example Worker's /stream/{id} and /ws/{id} under the real workers SDK: the
    object takes a WebSocket upgrade on any path, and /sse honours Last-Event-ID."""
    auth = {"authorization": f"Bearer {TOKEN}"}
    async with _remote(host) as backend:
        handle = await backend.start("stepper", "steps=1", session_id="seed-routes")
        await handle.result()
    async with httpx.AsyncClient(base_url=host.url, headers=auth, timeout=60) as client:
        stored = (await client.get("/sessions/seed-routes/history")).json()["chunks"]
        async with client.stream("GET", "/stream/seed-routes",
                                 headers={"Last-Event-ID": "2"}) as response:
            streamed = await read_sse(response.aiter_bytes())
    assert len(stored) > 4 and streamed == stored[2:]
    received: list[dict[str, Any]] = []
    url = host.url.replace("http", "ws", 1) + "/ws/seed-routes?fromSequence=0"
    async with websockets.connect(url, additional_headers=auth) as ws:
        while len(received) < len(stored):
            received.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
    assert received == stored


async def test_host_killed_mid_run_restarts_on_the_same_storage(host: PyodideHost) -> None:
    backend = _remote(host)
    backend.reconnect_attempts = 200  # the restart takes as long as Pyodide's start
    try:
        await e2e_scenario.run_kill_scenario(
            backend, host.kill, lambda: asyncio.to_thread(host.start), deadline=300)
    finally:
        await backend.aclose()


# -- helix serve --engine pyodide --------------------------------------------------------------


KEY = "sk-ant-test-pyodide-0123456789"


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def claude() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture(scope="module")
def served_pyodide(tmp_path_factory: pytest.TempPathFactory,
                   claude: FakeAnthropic) -> Iterator[Served]:
    """``helix serve --engine pyodide`` with the default agents, on a fake Claude."""
    install()
    server = Served(tmp_path_factory.mktemp("serve-pyodide") / "objects", agents=None,
                    engine="pyodide", start_timeout=300,
                    environ={"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": claude.base_url})
    yield server.start()
    # A killed helix serve leaves no Node host behind: the host exits when its stdin closes.
    assert server.process is not None
    hosts = _children(server.process.pid)
    assert len(hosts) == 1
    server.kill()
    deadline = time.monotonic() + 60
    while _alive(hosts[0]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(hosts[0]), "the Node host outlived helix serve"
    everything = "".join(server.output) + server.log.read_text()
    assert TOKEN not in everything and KEY not in everything
    assert "Traceback" not in everything


async def test_serve_engine_pyodide_runs_the_researcher(served_pyodide: Served,
                                                        claude: FakeAnthropic) -> None:
    async with httpx.AsyncClient(base_url=served_pyodide.url) as client:
        assert (await client.get("/health")).json() == {"ok": True}
    claude.push(turn(ToolUse("search_notes", {"query": "otters"})),
                turn(Text("Otters use stones as tools [n1].")))
    async with RemoteBackend(served_pyodide.url, token=TOKEN) as backend:
        assert "researcher" in await backend.agents()
        handle = await backend.start("researcher", "Do otters use tools?")
        chunks = [c async for c in handle.stream()]  # over SSE
        e2e_scenario.contiguous(chunks)
        assert chunks[-1]["type"] == "run_completed"
        assert [c["toolName"] for c in chunks if c["type"] == "tool_start"] == ["search_notes"]
        # Claude's streamed reply reached the agent through the Worker's fetch, in pieces.
        assert len([c for c in chunks if c["type"] == "text_delta"]) > 1
        assert await handle.result() == "Otters use stones as tools [n1]."
        assert (await handle.get_state())["queries"] == ["otters"]
    sent = claude.requests[-2:]
    assert [r.headers["x-api-key"] for r in sent] == [KEY, KEY]
    assert sent[0].json()["stream"] is True and sent[0].json()["model"] == "claude-sonnet-5-5"

    # The same run's chunks over a WebSocket, from the start.
    url = served_pyodide.url.replace("http", "ws") + f"/sessions/{handle.session_id}/"
    over_socket = []
    async with websockets.connect(url + "?fromSequence=0",
                                  additional_headers={"authorization": f"Bearer {TOKEN}"}) as ws:
        while not over_socket or over_socket[-1]["type"] != "run_completed":
            over_socket.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
    assert over_socket == chunks
    assert "engine pyodide" in "".join(served_pyodide.output)  # announced after listening


async def test_serve_engine_pyodide_refuses_an_unknown_agents_module(tmp_path: Path) -> None:
    server = Served(tmp_path / "objects", agents="not_a_module_xyz", engine="pyodide")
    with pytest.raises(RuntimeError, match="not_a_module_xyz"):
        server.start()
    assert server.process is not None and server.process.wait(60) == 2


async def test_a_session_exports_from_pyodide_and_imports_here(host: PyodideHost,
                                                               tmp_path: Path) -> None:
    """``GET /export`` streams from the Durable Object's SQLite under Pyodide; the file
    imports into a local namespace and reads back the same."""
    from helix_lab import LocalBackend, LocalNamespace, create_agent_server
    from helix_lab.session_file import export_session, import_session

    path = tmp_path / "pyodide.helix"
    async with _remote(host) as backend:
        handle = await backend.start("stepper", "steps=2", session_id="exported")
        assert await handle.result() == "finished 2 steps"
        manifest = await export_session(handle, path)
        remote = (await handle.checkpoints(), await handle.messages(),
                  (await handle.history(0, 1000))["chunks"])
    assert manifest["agent"]["tools"] == e2e_scenario.stepper.tool_specs()

    server = create_agent_server(llm_adapter=e2e_scenario.llm_adapter,
                                 agents=e2e_scenario.registry)
    namespace = LocalNamespace(server, storage=tmp_path / "here")
    await import_session(path, namespace)
    async with LocalBackend(namespace) as local:
        imported = local.handle("exported")
        assert (await imported.checkpoints(), await imported.messages(),
                (await imported.history(0, 1000))["chunks"]) == remote
    await namespace.aclose()


def test_a_wheel_that_does_not_load_stops_the_host(tmp_path: Path) -> None:
    """loadPackage reports a wheel it cannot load only to its error callback, and goes on;
    the host treats any such message as a failed start."""
    install()
    (tmp_path / "wheels").mkdir()
    (tmp_path / "node").symlink_to(home() / "node")
    for wheel in (home() / "wheels").glob("*.whl"):
        (tmp_path / "wheels" / wheel.name).symlink_to(wheel)
    (tmp_path / "wheels" / "ghost-1.0-py3-none-any.whl").symlink_to(tmp_path / "gone.whl")
    bundle = build_bundle(tmp_path / "worker", "e2e_scenario")
    log = tmp_path / "host.log"
    with log.open("w") as stderr:
        host = PyodideHost(bundle, tmp_path / "objects", token=TOKEN, root=tmp_path,
                           stderr=stderr)
        with pytest.raises(PyodideHostError, match="exited with status 1"):
            host.start()
    assert "loading the wheels failed" in log.read_text() and "ghost" in log.read_text()

