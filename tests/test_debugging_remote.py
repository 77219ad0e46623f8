"""The debugging scenario on every backend (in-kernel, and ``helix serve`` on the stand-in
and on the Worker bundle under real Pyodide), the approval flow through the real ``anthropic``
SDK, and a paused session that outlives a SIGKILL of ``helix serve``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import e2e_scenario
import pytest
from fakes.anthropic_server import FakeAnthropic, Text, ToolUse, turn
from served import TOKEN, Served

from helix_lab import LocalBackend, RemoteBackend, create_agent_server
from helix_lab.llm.anthropic import AnthropicAdapter
from helix_lab.pricing import cost_usd
from helix_lab.pyodide_host import install
from helix_lab.runtime import LocalNamespace

KEY = "sk-ant-test-approvals-0123456789"


@pytest.fixture(scope="module")
def local_debug_summary() -> dict[str, Any]:
    return e2e_scenario.run_in_kernel(e2e_scenario.run_debug_scenario)


def test_debug_scenario_local(local_debug_summary: dict[str, Any]) -> None:
    assert local_debug_summary["budgetStop"] >= 1


@pytest.mark.timeout(600)
@pytest.mark.parametrize(("engine", "stream_via"), [("cpython", "sse"), ("cpython", "websocket"),
                                                    ("pyodide", "sse")])
async def test_debug_scenario_on_helix_serve_matches_local(
        tmp_path: Path, local_debug_summary: dict[str, Any], engine: str, stream_via: str) -> None:
    if engine == "pyodide":
        install()  # pinned and cached: a no-op after `make pyodide-deps`
    # The pyodide engine is the Worker bundle under real Pyodide (what Cloudflare runs).
    served = Served(tmp_path / "objects", engine=engine, start_timeout=120).start()
    try:
        async with RemoteBackend(served.url, token=TOKEN, stream_via=stream_via) as backend:
            summary = await e2e_scenario.run_debug_scenario(backend, tag=stream_via)
    finally:
        served.stop()
    assert summary == local_debug_summary
    assert "Traceback" not in served.log.read_text()


async def test_sigkill_while_paused_then_restart_still_paused_and_approvable(
        tmp_path: Path) -> None:
    served = Served(tmp_path / "objects").start()
    backend = RemoteBackend(served.url, token=TOKEN)
    try:
        handle = await backend.start("outbox", "Email Bob.", session_id="kept")
        async for _ in handle.stream():
            pass
        [pending] = await handle.pending_approvals()
        served.kill()
        served.start()  # same port, same storage
        status = await handle.status()
        assert status["status"] == "paused" and status["canResume"]
        assert status["pendingApprovals"] == [pending]
        resumed = await handle.approve(input={"to": "kept@example.com", "subject": "after"})
        async for _ in resumed.stream():
            pass
        assert (await handle.get_state())["sent"] == ["kept@example.com"]
        assert (await handle.pending_approvals())[0]["input"]["to"] == "carol@example.com"
    finally:
        await backend.aclose()
        served.stop()


def _outbox_with_claude(fake: FakeAnthropic) -> Any:
    adapter = AnthropicAdapter(api_key=KEY, base_url=fake.base_url)
    return create_agent_server(llm_adapter=lambda env, ctx: adapter,
                               agents=e2e_scenario.registry)


@pytest.mark.parametrize("decision", ["edit", "deny"])
async def test_the_next_claude_request_carries_the_decision(decision: str) -> None:
    with FakeAnthropic() as fake:
        fake.push(turn(ToolUse("send_email", {"to": "bob@example.com", "subject": "Hi"},
                               id="toolu_01SendBob")),
                  turn(Text("Done.")))
        namespace = LocalNamespace(_outbox_with_claude(fake), storage=":memory:")
        async with LocalBackend(namespace) as backend:
            handle = await backend.start("outbox", "Email Bob.")
            async for _ in handle.stream():
                pass
            [pending] = await handle.pending_approvals()
            assert pending["toolCallId"] == "toolu_01SendBob"
            if decision == "edit":
                after = await handle.approve(input={"to": "rob@example.com", "subject": "Yo"})
            else:
                after = await handle.deny("Do not email Bob.")
            assert await after.result() == "Done."
            entries = (await handle.usage())["entries"]
        await namespace.aclose()
        sent = [r.json() for r in fake.requests]
    assert len(sent) == 2 and sent[0]["model"] == "claude-sonnet-5-5"
    *_, asked, answered = sent[1]["messages"]
    [tool_use] = [b for b in asked["content"] if b["type"] == "tool_use"]
    [result] = answered["content"]
    assert result["tool_use_id"] == "toolu_01SendBob"
    if decision == "edit":
        assert tool_use["input"] == {"to": "rob@example.com", "subject": "Yo"}
        assert result["content"] == "sent to rob@example.com: Yo"
        assert not result.get("is_error")
    else:
        assert tool_use["input"] == {"to": "bob@example.com", "subject": "Hi"}
        assert result["is_error"] and "Do not email Bob." in result["content"]
    # The fake's usage (25 in, 17 out per call) priced at Sonnet 5.5's rates.
    assert [e["costUsd"] for e in entries] == [
        pytest.approx(cost_usd("claude-sonnet-5-5", input_tokens=25, output_tokens=17))] * 2
