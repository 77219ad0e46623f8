"""The debugging surface in the notebook: the view's approval panel and step inspector (on
a recording dummy comm, over a real LocalBackend), the view state of approval chunks and
costs, and ``%helix approve / deny / step / usage`` and ``--budget`` in a real shell."""

from __future__ import annotations

import json
from typing import Any

import pytest
import test_magics
from helpers import eventually
from notebook_agents import MAILER
from test_debugging import (  # _clear_outbox: the autouse fixture that empties SENT
    SENT,
    _clear_outbox,  # noqa: F401
    counting_model,
    email_turn,
    mail_agent,
)
from test_magics import Kernel, wait_until

from helix_lab.llm import ScriptedLLM
from helix_lab.widgets import AgentView, ViewState, allowed_actions
from helix_lab.widgets.debug_panels import StepInspector
from helix_lab.widgets.render import render_header, render_step, render_stream

# The real-shell fixtures of the magics tests.
shell, shown, kernel = test_magics.shell, test_magics.shown, test_magics.kernel


pytestmark = pytest.mark.usefixtures("comms")  # the recording comm, from conftest.py


def chunk(kind: str, sequence: int, step: int = 1, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "sequence": sequence, "agentId": "s", "agentType": "mailer",
            "step": step, "timestamp": 1_700_000_000_000 + sequence, **fields}


# -- the view state ---------------------------------------------------------------------------


def test_approval_chunks_pause_the_view_and_list_the_calls() -> None:
    view = ViewState("mailer", "s")
    view.apply(chunk("run_started", 1, 0))
    view.apply(chunk("step_started", 2))
    view.apply(chunk("checkpoint", 3, checkpointId="cp", branch=0, status="paused"))
    view.apply(chunk("approval_required", 4, toolCallId="t1", toolName="send_email",
                     input={"to": "a"}, checkpointId="cp"))
    assert view.status == "paused" and allowed_actions("paused") == {"interrupt", "abort"}
    assert view.pending == {"t1": {"toolName": "send_email", "input": {"to": "a"}, "step": 1,
                                   "checkpointId": "cp"}}
    assert view.steps[1].status == "paused"
    assert "waiting=['send_email']" in view.summary()
    assert "send_email waits for approval" in render_stream(view)
    view.apply(chunk("approval_resolved", 5, toolCallId="t1", action="edit"))
    assert view.pending == {} and view.items[-1].text == "send_email approved with edits"
    view.apply(chunk("run_resumed", 6, mode="approval"))
    view.apply(chunk("checkpoint", 7, checkpointId="cp2", branch=0))
    assert view.status == "running" and view.steps[1].status == "done"


def test_costs_add_up_and_unpriced_is_never_zero() -> None:
    view = ViewState("a", "s")
    assert view.cost_text() == "$0"
    view.apply(chunk("usage", 1, inputTokens=10, outputTokens=5, costUsd=None))
    assert view.cost_text() == "unpriced" and "unpriced" in render_header(view, "local")
    view.apply(chunk("usage", 2, inputTokens=10, outputTokens=5, costUsd=0.0125))
    assert view.cost_text() == "$0.0125 + unpriced"
    priced = ViewState("a", "s")
    priced.apply(chunk("usage", 1, costUsd=0.002))
    priced.apply(chunk("usage", 2, step=2, costUsd=0.003))
    assert priced.cost_text() == "$0.0050" and priced.steps[2].cost_usd == 0.003


def test_a_step_renders_escaped() -> None:
    html = render_step({
        "step": 2, "branch": 0, "model": "m<", "checkpointId": "cp",
        "request": {"system": "<sys>", "tools": [{"name": "t<"}], "messageCount": 3,
                    "messagesOmitted": 1,
                    "messages": [{"role": "user", "content": "<hi>"}]},
        "response": {"text": "<b>x</b>", "thinking": "<t>", "toolCalls": [
            {"toolCallId": "c", "toolName": "<n>", "input": {"a": "<"}}]},
        "toolResults": [{"toolCallId": "c", "output": "<out>", "isError": True}],
        "usage": {"inputTokens": 1, "outputTokens": 2, "costUsd": None},
        "timing": {"startedAt": 1, "firstTokenMs": None, "durationMs": 3}})
    for raw in ("<sys>", "<hi>", "<b>x</b>", "<t>", "<n>", "<out>", "m<", "t<"):
        assert raw not in html
    assert "unpriced" in html and "1 earlier messages not shown" in html


class _Clicks:
    """A PanelHost that records what the inspector's re-run button sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def decide(self, tool_call_id: str, action: str) -> None: ...

    def open_step(self, step: int) -> None: ...

    def rerun_with_output(self, tool_call_id: str, text: str) -> None:
        self.sent.append((tool_call_id, text))


@pytest.mark.parametrize("output", [{"to": "bob", "sent": True, "cc": None}, [1, "two"],
                                    "plain text", 'a "quoted" word'])
def test_the_result_editor_shows_json_that_reads_back_to_the_output(output: Any) -> None:
    # The re-run reads the editor's text as JSON where it parses (AgentView.rerun_with_output):
    # a structured result shown as a Python repr would come back as a string.
    host = _Clicks()
    inspector = StepInspector(host)
    inspector.show({
        "step": 1, "branch": 0, "model": "m", "checkpointId": "cp",
        "request": {"system": "", "tools": [], "messageCount": 0, "messages": []},
        "response": {"text": "", "thinking": "", "toolCalls": []},
        "toolResults": [{"toolCallId": "c1", "output": output, "isError": False}],
        "usage": {"inputTokens": 1, "outputTokens": 1, "costUsd": None},
        "timing": {"startedAt": 1, "firstTokenMs": None, "durationMs": 1}})
    [editor] = [w for box in inspector.edits.children for w in box.children
                if "helix-result-editor" in w._dom_classes]
    if isinstance(output, str):
        assert editor.value == output
    else:
        assert json.loads(editor.value) == output
    [button] = [w for box in inspector.edits.children for w in box.children
                if getattr(w, "description", "") == "Edit output and re-run from here"]
    button.click()
    assert host.sent == [("c1", editor.value)]


# -- the widget over a real backend ----------------------------------------------------------


async def follow_until(view: AgentView, check: Any, timeout: float = 60.0) -> None:
    """Wait until the view has received chunks that make ``check(view.state)`` true (the
    deadline only catches a hang), then draw them now instead of on the coalescing timer."""
    await eventually(lambda: check(view.state), timeout=timeout)
    view.flush()


async def test_the_panel_approves_edited_arguments_and_denies_with_a_message(
        make_runtime: Any) -> None:
    llm = ScriptedLLM([email_turn(), email_turn("carol@example.com", "second"), "done"])
    rt = make_runtime([mail_agent()], llm)
    await rt.run("s1", "mail", "mailer")
    view = AgentView(rt.backend.handle("s1", "mailer"), min_interval=0.02)
    try:
        view.follow()
        await follow_until(view, lambda s: s.pending)
        [(call_id, row)] = view.approvals.rows.items()
        assert json.loads(row["editor"].value) == {"to": "bob@example.com", "subject": "hi"}
        assert "paused" in view.header.value and view.buttons["resume"].disabled
        row["editor"].value = "{not json"
        assert view.decide(call_id, "approve") is None
        assert "not valid JSON" in view.message.value
        row["editor"].value = json.dumps({"to": "robert@example.com", "subject": "hi"})
        await view.decide(call_id, "approve")
        assert "with the edited arguments" in view.message.value
        await follow_until(view, lambda s: s.pending and call_id not in s.pending)
        assert SENT == [{"to": "robert@example.com", "subject": "hi"}]
        [(second, row)] = view.approvals.rows.items()
        row["message"].value = "Carol is on holiday"
        await view.decide(second, "deny")
        await follow_until(view, lambda s: s.status == "completed")
        assert view.approvals.children == ()
        assert "Carol is on holiday" in llm.requests[-1].messages[-1]["content"][0]["content"]
        assert SENT == [{"to": "robert@example.com", "subject": "hi"}]
    finally:
        view.close()


async def test_clicking_a_step_opens_it_and_edit_and_rerun_forks(make_runtime: Any) -> None:
    llm = counting_model(3)
    rt = make_runtime([mail_agent()], llm)
    await rt.run("s1", "count", "mailer")
    view = AgentView(rt.backend.handle("s1", "mailer"), min_interval=0.02)
    try:
        view.follow()
        await follow_until(view, lambda s: s.status == "completed")
        assert list(view.inspector.picker.options) == ["1", "2", "3", "4"]
        view.inspector.picker.value = "2"  # the click
        await eventually(lambda: view.inspector.shown is not None)
        assert view.tabs.selected_index == 3
        assert view.inspector.shown["step"] == 2
        assert "Looking up n1." in view.inspector.body.value
        [editor] = [w for box in view.inspector.edits.children for w in box.children
                    if "helix-result-editor" in w._dom_classes]
        assert editor.value == "n1@example.com"
        editor.value = "nobody@example.com"
        [button] = [w for box in view.inspector.edits.children for w in box.children
                    if getattr(w, "description", "") == "Edit output and re-run from here"]
        calls = len(llm.requests)
        button.click()
        await eventually(lambda: "Re-running from step 3" in view.message.value)
        await rt.wait("s1")
        assert len(llm.requests) == calls + 2  # step 3 and the answer, nothing before
        assert llm.requests[-1].messages[-1]["content"][0]["content"] == "n2@example.com"
        assert llm.requests[-2].messages[4]["content"][0]["content"] == "nobody@example.com"
        missing = view.open_step(42)
        await missing
        assert "Could not open step 42" in view.message.value
    finally:
        view.close()


# -- magics -----------------------------------------------------------------------------------

MAIL_AGENT = MAILER + '''
def plan(request):
    results = tool_results(request)
    if len(results) == 0:
        return Turn(text="one", tool_calls=[call("send_email", to="bob@x.org", subject="1")])
    if len(results) == 1:
        return Turn(text="two", tool_calls=[call("send_email", to="eve@x.org", subject="2")])
    return Turn(text=" | ".join(results))

script = ScriptedLLM([plan], loop=True)
'''


async def wait_status(kernel: Kernel, session: str, wanted: str) -> dict[str, Any]:
    """The session's status once it has stopped at ``wanted``."""
    return await wait_until(kernel, session,
                            lambda s: s["status"] == wanted and not s["isExecuting"])


async def test_magics_approve_deny_step_and_usage(kernel: Kernel) -> None:
    await kernel.ok(MAIL_AGENT)
    await kernel.ok("%helix llm scripted script")
    await kernel.ok("%%helix_agent mailer --session m1\nmail them")
    await wait_status(kernel, "m1", "paused")
    error = await kernel.usage_error("%helix approve m1 --input '{not json'")
    assert "--input is not valid JSON" in error
    error = await kernel.usage_error("""%helix approve m1 --input '{"to": "x"}'""")
    assert "decisions[0].input.subject" in error
    ran = await kernel.ok("""%helix approve m1 --input '{"to": "ann@x.org", "subject": "1"}'""")
    assert ran.out.startswith("approved with the edited input")
    await wait_status(kernel, "m1", "paused")
    ran = await kernel.ok('%helix deny m1 "not eve"')
    assert ran.out.strip().startswith("denied")
    status = await wait_status(kernel, "m1", "completed")
    assert status["output"] == "sent to ann@x.org: 1 | Denied by the user: not eve"
    ran = await kernel.ok("%helix step 2 m1")
    assert ran.out.startswith("step 2 · branch 0 · claude-sonnet-5-5")
    assert "text: two" in ran.out and "error toolu_" in ran.out and "not eve" in ran.out
    assert "approve" not in (await kernel.usage_error("%helix step x m1"))
    assert "Step 9 does not exist" in await kernel.usage_error("%helix step 9 m1")
    ran = await kernel.ok("%helix usage m1")
    lines = ran.out.splitlines()
    assert any(line.startswith("model claude-sonnet-5-5") and "$0.0" in line for line in lines)
    assert [line.split()[1] for line in lines if line.startswith("step ")] == ["1", "2", "3"]
    assert lines[-1].startswith("total") and "$" in lines[-1]
    error = await kernel.usage_error("%helix approve m1")
    assert "Nothing in session 'm1' waits for approval" in error


async def test_budget_option_stops_the_run_and_resume_raises_it(kernel: Kernel) -> None:
    await kernel.ok("""
from helix_lab import Agent, tool, LLMConfig
from helix_lab.llm import ScriptedLLM, Turn, call

@tool
def tick(n: int) -> str:
    '''Tick.'''
    return f"tick {n}"

ticker = Agent(name="ticker", tools=[tick])
def plan(request):
    done = sum(1 for m in request.messages if isinstance(m["content"], list)
               for b in m["content"] if b.get("type") == "tool_result")
    return Turn(tool_calls=[call("tick", n=done)]) if done < 5 else Turn(text="ticked")
script = ScriptedLLM([plan], loop=True)
""")
    await kernel.ok("%helix llm scripted script")
    assert "--budget must be a positive" in await kernel.usage_error(
        "%%helix_agent ticker --budget 0\ngo")
    await kernel.ok("%%helix_agent ticker --session b1 --budget 0.0003\ngo")
    status = await wait_status(kernel, "b1", "interrupted")
    assert 1 <= status["stepCount"] < 6
    handle = kernel.magics.workbench.local.handle("b1")
    stop = [c async for c in handle.stream()][-1]
    assert stop["reason"] == "budget_exceeded"
    await kernel.ok("%helix resume b1 --budget 1")
    assert (await wait_status(kernel, "b1", "completed"))["output"] == "ticked"
