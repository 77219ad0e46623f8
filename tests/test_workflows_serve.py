"""``helix serve --approach workflows``: the Workflows bundle as a real process, on the
stand-in's Workflows binding and D1, driven by RemoteBackend; and the stand-in bindings
and the bundle's JavaScript adapters on their own."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import e2e_scenario
import httpx
import pytest
from helpers import check_served_framings
from served import TOKEN, Served

from helix_lab import RemoteBackend
from helix_lab.client.backend import LocalBackend
from helix_lab.errors import ConflictError, NotFoundError
from helix_lab.workflows import LocalD1, LocalWorkflowBinding, WorkflowSessions, local_workflows

DEADLINE = 120.0


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = Served(tmp_path_factory.mktemp("serve-wf") / "objects",
                    approach="workflows").start()
    yield server
    server.stop()
    everything = "".join(server.output) + server.log.read_text()
    assert TOKEN not in everything, "helix serve printed the token"
    assert "Traceback" not in everything
    assert "approach workflows" in everything


async def local_summary(tmp_path: Path) -> dict[str, Any]:
    wf = local_workflows(llm_adapter=e2e_scenario.llm_adapter, agents=e2e_scenario.registry,
                         storage=tmp_path / "local")
    backend = LocalBackend(WorkflowSessions(wf, e2e_scenario.registry))  # type: ignore[arg-type]
    try:
        return await e2e_scenario.run_scenario(backend, "local", forks=False)
    finally:
        await backend.aclose()
        await wf.aclose()


async def test_the_e2e_scenario_on_helix_serve_matches_the_kernel(served: Served,
                                                                  tmp_path: Path) -> None:
    async with RemoteBackend(served.url, token=TOKEN) as backend:
        remote = await asyncio.wait_for(
            e2e_scenario.run_scenario(backend, "sse", forks=False), DEADLINE)
        status = await backend.handle("basic-sse").status()
    assert status["approach"] == "workflows" and status["instanceStatus"] == "complete"
    assert [s["name"] for s in status["steps"]][:2] == ["initialize", "model 1"]
    assert remote == await local_summary(tmp_path)


async def test_bad_input_is_a_clear_4xx(served: Served) -> None:
    headers = {"authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=served.url, headers=headers) as client:
        idle = await client.get("/sessions/nobody-here/status")  # as a DO never started
        assert idle.status_code == 200 and idle.json()["status"] == "idle"
        missing = await client.get("/sessions/nobody-here/messages")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "session_not_found"
        started = await client.post("/sessions/fork-me/start", json={
            "agentType": "stepper", "input": {"message": "steps=1"}})
        assert started.status_code == 200
        fork = await client.post("/sessions/fork-me/resume", json={
            "agentType": "stepper", "options": {"mode": "branch", "checkpointId": "x",
                                                "modifyState": {"label": "forked"}}})
        assert fork.status_code == 400
        assert "use retry" in fork.json()["error"]["message"]
        async with RemoteBackend(served.url, token=TOKEN) as backend:
            assert await backend.handle("fork-me").result() == "finished 1 steps"
        retry = await client.post("/sessions/fork-me/resume", json={
            "agentType": "stepper", "options": {"mode": "branch", "checkpointId": "x"}})
        assert retry.status_code == 404  # retry from a checkpoint that is not there
        assert retry.json()["error"]["code"] == "checkpoint_not_found"
        unknown = await client.post("/sessions/who/start", json={"agentType": "nobody"})
        assert unknown.status_code == 404 and "stepper" in unknown.json()["error"]["message"]
        bad = await client.post("/sessions/bad/start", content=b"{not json")
        assert bad.status_code == 400
        assert (await client.get("/sessions/fork-me/sse?fromSequence=-1")).status_code == 400


async def test_both_sse_framings_carry_the_same_chunks(served: Served) -> None:
    await check_served_framings(served.url, TOKEN, steps=2)


async def test_the_standin_workflows_binding_has_the_javascript_shape(tmp_path: Path) -> None:
    from helix_lab.worker_bundle.standin.workflows import WorkflowBinding

    async def run(event: Any, step: Any) -> Any:
        got = await step.wait_for_event("wait", type="go", timeout="1 minute")
        return {"param": event.payload["x"], "event": got["payload"]}

    engine = LocalWorkflowBinding(run, tmp_path / "wf.sqlite3")
    binding = WorkflowBinding(engine)
    instance = await binding.create({"id": "js-1", "params": {"x": 1}})
    assert (await instance.status())["status"] in ("queued", "running", "waiting")
    await instance.sendEvent({"type": "go", "payload": {"y": 2}})
    again = await binding.get("js-1")
    status = await asyncio.wait_for(engine.get("js-1"), DEADLINE)
    assert await asyncio.wait_for(status.wait(), DEADLINE) == {
        "status": "complete", "error": None, "output": {"param": 1, "event": {"y": 2}}}
    assert [s["name"] for s in await again.steps()] == ["wait"]
    with pytest.raises(ConflictError, match="takes no more events"):
        await again.sendEvent({"type": "go", "payload": {}})
    with pytest.raises(NotFoundError):
        await binding.get("nope")
    await engine.aclose()


@pytest.fixture
def standin_installed() -> Iterator[None]:
    from helix_lab.worker_bundle import standin

    was = standin.installed()
    standin.install()
    yield
    if not was:
        standin.uninstall()


async def test_the_bundle_adapters_give_python_calls_over_the_bindings(
        tmp_path: Path, standin_installed: None) -> None:
    from helix_lab.worker_bundle.standin.workflows import WorkflowBinding
    from helix_lab.worker_bundle.workflows_app import JsD1, JsWorkflows

    db = JsD1(LocalD1(tmp_path / "d1.sqlite3"))
    await db.exec("CREATE TABLE t (a INTEGER, b TEXT)")
    await db.batch([db.prepare("INSERT INTO t VALUES (?, ?)").bind(i, str(i)) for i in (1, 2)])
    assert (await db.prepare("SELECT * FROM t ORDER BY a").all())["results"] == [
        {"a": 1, "b": "1"}, {"a": 2, "b": "2"}]
    assert await db.prepare("SELECT b FROM t WHERE a = ?").bind(2).first("b") == "2"

    async def run(event: Any, step: Any) -> Any:
        return await step.do("double", lambda: event.payload * 2)

    engine = LocalWorkflowBinding(run, tmp_path / "wf.sqlite3")
    workflows = JsWorkflows(WorkflowBinding(engine))
    instance = await workflows.create(id="py-1", params=21)
    await asyncio.wait_for((await engine.get("py-1")).wait(), DEADLINE)
    assert (await instance.status())["output"] == 42
    assert [s["name"] for s in await instance.steps()] == ["double"]
    with pytest.raises(NotFoundError):
        await workflows.get("missing")
    await engine.aclose()
