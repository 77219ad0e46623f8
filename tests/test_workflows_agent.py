"""The Workflows approach end to end in the kernel: an agent run of memoized steps, its
stream, interrupt and resume through wait_for_event, retry as a restart from a step,
abort, sub-agents as child instances, and the bad inputs of issue 12."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from helix_lab.agent import Agent
from helix_lab.errors import ConflictError, NotFoundError, RunError
from helix_lab.llm.base import LLMRequest
from helix_lab.llm.scripted import ScriptedLLM, Turn, call
from helix_lab.runtime import AgentRegistry
from helix_lab.tools import ToolContext, tool
from helix_lab.workflows import local_workflows

DEADLINE = 30.0


class Tally(BaseModel):
    count: int = 0


tool_calls: list[int] = []


@tool
async def work(n: int, ctx: ToolContext) -> dict[str, int]:
    """Do unit n."""
    tool_calls.append(n)
    ctx.update_state(lambda s: setattr(s, "count", s.count + 1))
    await ctx.emit({"type": "custom", "name": "worked", "data": {"n": n}})
    return {"square": n * n}


@tool
def opaque() -> object:
    """Return something that is not JSON."""
    return object()


def counting_model(units: int) -> ScriptedLLM:
    """One ``work`` call per step until ``units``, then an answer; decided from messages."""

    def respond(request: LLMRequest) -> Turn:
        done = sum(1 for m in request.messages if m["role"] == "assistant")
        if done < units:
            return Turn(text=f"Unit {done + 1}.", tool_calls=[call("work", n=done + 1)])
        return Turn(text=f"Did {units} units.")

    return ScriptedLLM([respond], loop=True)


def registry_of(*agents: Agent) -> AgentRegistry:
    registry = AgentRegistry()
    for agent in agents:
        registry.register(agent)
    return registry


worker = Agent(name="worker", tools=[work, opaque], state_schema=Tally, register=False)


async def collect(handle: Any, after: int = 0) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        return [c async for c in handle.stream(after)]

    return await asyncio.wait_for(read(), DEADLINE)


def types(chunks: list[dict[str, Any]]) -> list[str]:
    return [c["type"] for c in chunks]


@pytest.fixture(autouse=True)
def _reset_tool_calls() -> None:
    tool_calls.clear()


async def test_a_run_is_memoized_steps_with_one_contiguous_stream(tmp_path: Path):
    llm = counting_model(2)
    wf = local_workflows(llm_adapter=llm, agents=registry_of(worker), storage=tmp_path)
    handle = await wf.executor.execute(worker, message="do 2", state={"count": 0})
    chunks = await collect(handle)
    assert await asyncio.wait_for(handle.result(), DEADLINE) == "Did 2 units."
    assert [c["sequence"] for c in chunks] == list(range(1, len(chunks) + 1))
    assert {c["agentId"] for c in chunks} == {handle.session_id}
    assert {c["agentType"] for c in chunks} == {"worker"}
    assert types(chunks)[0] == "run_started" and types(chunks)[-2:] == [
        "workflow_step", "run_completed"]
    assert types(chunks).count("tool_start") == 2 and types(chunks).count("checkpoint") == 4
    assert [c["data"]["n"] for c in chunks if c["type"] == "custom"] == [1, 2]
    ran = [(c["name"], c["status"]) for c in chunks if c["type"] == "workflow_step"]
    assert ran[:4] == [("initialize", "ran"), ("model 1", "ran"), ("tool 1.0 work", "ran"),
                       ("commit 1", "ran")]
    status = await handle.status()
    assert status["status"] == "completed" and status["instanceStatus"] == "complete"
    assert status["stepCount"] == 3 and status["lastSequence"] == len(chunks)
    assert [s["name"] for s in status["steps"]][:3] == ["initialize", "model 1", "tool 1.0 work"]
    assert await handle.get_state() == {"count": 2}
    messages = await handle.messages()
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user",
                                              "assistant"]
    usage = await handle.usage()
    assert [e["kind"] for e in usage["entries"]] == ["llm", "llm", "llm"]
    assert len(llm.requests) == 3 and tool_calls == [1, 2]
    assert [c["step"] for c in await handle.checkpoints()] == [0, 1, 2, 3]
    await wf.aclose()


async def test_interrupt_waits_for_a_resume_event_then_goes_on(tmp_path: Path):
    release, started = asyncio.Event(), asyncio.Event()

    @tool
    async def slow(n: int) -> int:
        """Wait for the test."""
        started.set()
        await release.wait()
        return n

    agent = Agent(name="slowpoke", tools=[slow], register=False)

    def respond(request: LLMRequest) -> Turn:
        done = sum(1 for m in request.messages if m["role"] == "assistant")
        last = request.messages[-1]["content"]
        if done and isinstance(last, str):
            return Turn(text=f"finished after {last!r}")
        return Turn(text="go", tool_calls=[call("slow", n=done)])

    wf = local_workflows(llm_adapter=ScriptedLLM([respond], loop=True),
                         agents=registry_of(agent), storage=tmp_path)
    handle = await wf.executor.execute(agent, message="start")
    await asyncio.wait_for(started.wait(), DEADLINE)  # step 1 is in its tool call
    interrupting = asyncio.ensure_future(handle.interrupt("user_requested"))
    await asyncio.sleep(0.05)
    assert not interrupting.done()  # soft: the step finishes first
    release.set()
    status = await asyncio.wait_for(interrupting, DEADLINE)
    assert status["status"] == "interrupted" and status["canResume"] is True
    assert status["instanceStatus"] == "waiting"  # on wait_for_event("resume")
    first = await collect(handle)
    assert types(first)[-3:] == ["checkpoint", "workflow_step", "run_interrupted"]
    with pytest.raises(RunError, match="was interrupted at step 1"):
        await handle.result()

    resumed = await handle.resume("with_message", message="carry on")
    assert await asyncio.wait_for(resumed.result(), DEADLINE) == "finished after 'carry on'"
    rest = await collect(handle, first[-1]["sequence"])
    assert rest[0]["type"] == "run_resumed"
    assert [c["sequence"] for c in first + rest] == list(range(1, len(first) + len(rest) + 1))
    with pytest.raises(ConflictError, match="not interrupted"):
        await handle.resume()
    await wf.aclose()


async def test_retry_restarts_the_instance_after_the_last_checkpoint(tmp_path: Path):
    plan = {"fail": True}

    def respond(request: LLMRequest) -> Turn:
        done = sum(1 for m in request.messages if m["role"] == "assistant")
        if done == 0:
            return Turn(text="first", tool_calls=[call("work", n=1)])
        if plan["fail"]:
            from helix_lab.llm.base import LLMError

            return Turn(error=LLMError("invalid request", status=400))
        return Turn(text="second try worked")

    llm = ScriptedLLM([respond], loop=True)
    wf = local_workflows(llm_adapter=llm, agents=registry_of(worker), storage=tmp_path)
    handle = await wf.executor.execute(worker, message="go")
    with pytest.raises(RunError, match="The model call failed: invalid request"):
        await asyncio.wait_for(handle.result(), DEADLINE)
    status = await handle.status()
    assert status["status"] == "failed" and status["instanceStatus"] == "errored"
    assert tool_calls == [1] and len(llm.requests) == 2

    plan["fail"] = False
    again = await handle.retry()
    assert await asyncio.wait_for(again.result(), DEADLINE) == "second try worked"
    assert tool_calls == [1]  # step 1 and its tool call were not run again
    assert len(llm.requests) == 3
    assert [m["role"] for m in await handle.messages()] == ["user", "assistant", "user",
                                                             "assistant"]

    # Retry from the first checkpoint (step 0): the instance restarts from "model 1";
    # "initialize" keeps its stored result, and the conversation is cut back to it.
    first = (await handle.checkpoints())[0]
    assert first["step"] == 0
    again = await handle.retry(checkpoint_id=first["id"])
    assert await asyncio.wait_for(again.result(), DEADLINE) == "second try worked"
    assert tool_calls == [1, 1] and len(llm.requests) == 5
    assert [m["role"] for m in await handle.messages()] == ["user", "assistant", "user",
                                                             "assistant"]
    names = [s["name"] for s in (await handle.status())["steps"]]
    assert names.count("initialize") == 1 and names.count("model 1") == 1
    with pytest.raises(NotFoundError, match="No checkpoint 'cpv1-nope'"):
        await handle.retry(checkpoint_id="cpv1-nope")
    await wf.aclose()


async def test_abort_terminates_the_instance_and_fails_the_session(tmp_path: Path):
    started = asyncio.Event()

    @tool
    async def forever() -> str:
        """Never ends."""
        started.set()
        await asyncio.sleep(3600)
        return "never"

    agent = Agent(name="stuck", tools=[forever], register=False)
    wf = local_workflows(llm_adapter=ScriptedLLM([Turn(tool_calls=[call("forever")])]),
                         agents=registry_of(agent), storage=tmp_path)
    handle = await wf.executor.execute(agent, message="go")
    await asyncio.wait_for(started.wait(), DEADLINE)
    status = await handle.abort("user cancelled")
    assert status["status"] == "failed" and status["error"] == "Aborted: user cancelled"
    assert status["instanceStatus"] == "terminated" and status["canResume"] is False
    chunks = await collect(handle)
    assert chunks[-1]["type"] == "run_failed" and chunks[-1]["aborted"] is True
    await wf.aclose()


async def test_a_sub_agent_is_a_child_instance_joined_by_wait_for_event(tmp_path: Path):
    helper = Agent(name="helper", register=False, description="Answers one question.")
    boss = Agent(name="boss", agents=[helper], register=False)

    def respond(request: LLMRequest) -> Turn:
        if request.system and request.tools and request.tools[0]["name"] == "subagent__helper":
            if len(request.messages) == 1:
                return Turn(text="asking", tool_calls=[call("subagent__helper", message="2+2?")])
            return Turn(text=f"helper said {request.messages[-1]['content'][0]['content']}")
        return Turn(text="four")

    wf = local_workflows(llm_adapter=ScriptedLLM([respond], loop=True),
                         agents=registry_of(boss, helper), storage=tmp_path)
    handle = await wf.executor.execute(boss, message="delegate")
    assert await asyncio.wait_for(handle.result(), DEADLINE) == "helper said four"
    chunks = await collect(handle)
    start = next(c for c in chunks if c["type"] == "subagent_start")
    end = next(c for c in chunks if c["type"] == "subagent_end")
    assert end["status"] == "completed" and end["output"] == "four"
    child = await wf.executor.get_handle(helper, start["childSessionId"])
    assert (await child.status())["status"] == "completed"
    names = [s["name"] for s in (await handle.status())["steps"]]
    assert any(n.startswith("wait subagent 1 ") for n in names)
    await wf.aclose()


async def test_a_tool_result_that_is_not_json_fails_the_run_cleanly(tmp_path: Path):
    llm = ScriptedLLM([Turn(tool_calls=[call("opaque")]), "unreached"])
    wf = local_workflows(llm_adapter=llm, agents=registry_of(worker), storage=tmp_path)
    handle = await wf.executor.execute(worker, message="go")
    with pytest.raises(RunError, match="Tool 'opaque' returned a object, which is not JSON"):
        await asyncio.wait_for(handle.result(), DEADLINE)
    status = await handle.status()
    assert status["instanceStatus"] == "errored" and status["isExecuting"] is False
    chunks = await collect(handle)
    assert chunks[-1]["type"] == "run_failed"
    again = await handle.send("try something else")  # not wedged: a new run starts
    assert await asyncio.wait_for(again.result(), DEADLINE) == "unreached"
    await wf.aclose()


async def test_unknown_session_and_busy_session_are_clear_errors(tmp_path: Path):
    wf = local_workflows(llm_adapter=ScriptedLLM([Turn(delay=5)]), agents=registry_of(worker),
                         storage=tmp_path)
    with pytest.raises(NotFoundError, match="no session 'ghost'"):
        await wf.executor.get_handle(worker, "ghost")
    handle = await wf.executor.execute(worker, message="go", session_id="busy")
    with pytest.raises(ConflictError, match="already running"):
        await wf.executor.execute(worker, message="again", session_id="busy")
    await handle.abort()
    await wf.aclose()
