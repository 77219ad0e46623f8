"""Run control on the real runtime: interrupt, resume, abort, retry, time travel, replay,
sub-agents, ``max_steps`` and model retries; and the rule that a step's state is committed
with its checkpoint or not at all."""

from __future__ import annotations

import asyncio
from typing import Any

import pydantic
import pytest
from helpers import Runtime, assert_contiguous, error_of, eventually, of_type, types
from note_taker import notes_agent, remember_turn

from helix_lab import Agent, ToolContext, tool
from helix_lab.client.handle import RunInterrupted
from helix_lab.errors import ConflictError, RunError
from helix_lab.llm import ScriptedLLM, Turn, call
from helix_lab.llm.base import LLMError
from helix_lab.runtime import RetryPolicy

HANG = 60.0
"""Seconds before a wait is called a hang. What must be cut hangs for an hour, so a
deadline this long fails only when the cut did not happen, never on a slow machine."""


class HeldBack:
    """Plays ``inner``, but from call ``hold_from`` on waits for ``release`` first.

    ``waiting`` is set once a held call waits; ``ended`` once a held call's stream is
    over, however it ends (finished, cancelled or closed)."""

    def __init__(self, inner: ScriptedLLM, hold_from: int) -> None:
        self.inner = inner
        self.hold_from = hold_from
        self.release = asyncio.Event()
        self.waiting = asyncio.Event()
        self.ended = asyncio.Event()

    async def stream(self, request: Any) -> Any:
        held = self.inner.calls + 1 >= self.hold_from
        try:
            if held:
                self.waiting.set()
                await self.release.wait()
            async for event in self.inner.stream(request):
                yield event
        finally:
            if held:
                self.ended.set()


class Answer(pydantic.BaseModel):
    answer: str
    confidence: float = 1.0


async def committed_messages(rt: Runtime, sid: str) -> list[dict[str, Any]]:
    return (await rt.get(sid, "/messages"))["messages"]


# -- interrupt and resume --------------------------------------------------------------------


@pytest.mark.parametrize("slowness", [{"delay": 3600.0}, {"chunk_delay": 0.05}])
async def test_interrupt_during_a_slow_model_call_cuts_the_step(
        make_runtime: Any, slowness: dict[str, float]) -> None:
    # Either way the model would talk for over an hour: only a cut ends the call.
    words = " ".join(f"word{i}" for i in range(100_000))
    llm = ScriptedLLM([remember_turn("a"), Turn(text=words, **slowness), "finished"])
    rt = make_runtime([notes_agent()], llm)
    handle = await rt.backend.start("a", "go", session_id="cut")
    await eventually(lambda: len(llm.requests) == 2)
    if "chunk_delay" in slowness:  # the cut comes mid-stream, after some deltas went out
        await eventually(lambda: rt.server("cut").stream.sequence > 14)
    status = await asyncio.wait_for(handle.interrupt("user pause"), HANG)
    assert status["status"] == "interrupted" and status["canResume"] and not status["isExecuting"]
    assert status["stepCount"] == 1, "the cut step is not committed"
    with pytest.raises(RunInterrupted):
        await handle.result()

    chunks = await rt.chunks("cut")
    assert_contiguous(chunks)
    assert chunks[-1]["type"] == "run_interrupted" and chunks[-1]["reason"] == "user pause"
    assert chunks[-2]["type"] == "checkpoint" and chunks[-2]["step"] == 1
    assert chunks[-1]["checkpointId"] == chunks[-2]["checkpointId"] == status["checkpointId"]
    deltas = "".join(c["delta"] for c in of_type(chunks, "text_delta"))
    assert len(deltas) < len(words)
    messages = await committed_messages(rt, "cut")
    assert len(messages) == 3 and "word0" not in str(messages)
    assert await handle.get_state() == {"notes": ["a"]}
    cps = await rt.checkpoints("cut")
    assert [(c["step"], c["status"]) for c in cps] == [(0, "running"), (1, "running"),
                                                      (1, "interrupted")]

    resumed = await handle.resume()
    assert resumed.run_id != handle.run_id
    assert await resumed.result() == "finished"
    assert llm.requests[2].messages == messages
    assert await committed_messages(rt, "cut") == [
        *messages, {"role": "assistant", "content": [{"type": "text", "text": "finished"}]}]
    resumed_chunk = of_type(await rt.chunks("cut"), "run_resumed")[0]
    assert resumed_chunk["mode"] == "continue"
    assert resumed_chunk["fromCheckpointId"] == status["checkpointId"]
    assert_contiguous(await rt.chunks("cut"))


async def test_interrupt_during_tools_lets_the_step_finish(make_runtime: Any) -> None:
    entered = asyncio.Event()

    @tool
    async def slow_tool(ctx: ToolContext) -> str:
        entered.set()
        await asyncio.sleep(0.2)
        ctx.update_state(lambda s: s.notes.append("slow"))
        return "slow done"

    llm = ScriptedLLM([Turn(tool_calls=[call("slow_tool")]), "after"])
    rt = make_runtime([notes_agent(tools=[slow_tool])], llm)
    handle = await rt.backend.start("a", "go", session_id="tools")
    await asyncio.wait_for(entered.wait(), HANG)
    status = await handle.interrupt()
    assert status["status"] == "interrupted" and status["stepCount"] == 1
    assert await handle.get_state() == {"notes": ["slow"]}
    messages = await committed_messages(rt, "tools")
    assert messages[-1]["content"][0]["content"] == "slow done"
    assert len(llm.requests) == 1, "no model call after the interrupt"
    assert await (await handle.resume()).result() == "after"


async def test_resume_with_a_message_appends_it(make_runtime: Any) -> None:
    llm = ScriptedLLM([remember_turn("a"), Turn(delay=30), "considered y"])
    rt = make_runtime([notes_agent()], llm)
    handle = await rt.backend.start("a", "go", session_id="wm")
    await eventually(lambda: len(llm.requests) == 2)
    await handle.interrupt()
    before = await committed_messages(rt, "wm")
    resumed = await handle.resume("with_message", message="also consider y")
    assert await resumed.result() == "considered y"
    after = await committed_messages(rt, "wm")
    assert after[:len(before)] == before
    assert after[len(before)] == {"role": "user", "content": "also consider y"}
    assert llm.requests[2].messages[-1] == {"role": "user", "content": "also consider y"}
    cps = await rt.checkpoints("wm")
    assert cps[-1]["messageCount"] == len(before) + 2


# -- abort --------------------------------------------------------------------------------------


async def test_abort_is_hard_and_final(make_runtime: Any) -> None:
    # The second model call waits until released: only a cut ends it before that.
    llm = HeldBack(ScriptedLLM([remember_turn("a"), "late words here"]), hold_from=2)
    rt = make_runtime([notes_agent()], llm)
    handle = await rt.backend.start("a", "go", session_id="ab")
    await asyncio.wait_for(llm.waiting.wait(), HANG)
    status = await asyncio.wait_for(handle.abort("changed my mind"), HANG)
    assert status["status"] == "failed" and status["error"] == "Aborted: changed my mind"
    assert not await handle.can_resume()
    with pytest.raises(ConflictError, match="cannot be resumed"):
        await handle.resume()
    with pytest.raises(RunError, match="Aborted: changed my mind"):
        await handle.result()
    # Let the cut call go on if it still can, and wait until it is over, whichever way:
    # nothing of it may leak out.
    llm.release.set()
    await asyncio.wait_for(llm.ended.wait(), HANG)
    chunks = await rt.chunks("ab")
    assert_contiguous(chunks)
    assert chunks[-1]["type"] == "run_failed" and chunks[-1]["aborted"] is True
    assert of_type(chunks, "text_delta") == [t for t in of_type(chunks, "text_delta")
                                             if t["step"] == 1]
    assert (await rt.get("ab", "/status"))["lastSequence"] == chunks[-1]["sequence"]


async def test_abort_right_after_start_does_not_hang(make_runtime: Any) -> None:
    rt = make_runtime([notes_agent()], ScriptedLLM([Turn(delay=3600)]))
    assert (await rt.start("now")).status == 200
    aborted = await asyncio.wait_for(rt.call("now", "POST", "/abort", json={}), HANG)
    assert aborted.json()["status"] == "failed"
    assert types(await rt.chunks("now"))[-1] == "run_failed"


@pytest.mark.parametrize("how", ["abort", "host_shutdown"])
async def test_state_is_committed_with_the_checkpoint_or_not_at_all(
        make_runtime: Any, how: str) -> None:
    staged = asyncio.Event()
    seen: list[list[str]] = []

    @tool
    def look(ctx: ToolContext) -> str:
        seen.append(list(ctx.get_state().notes))
        return "looked"

    @tool
    async def hang(ctx: ToolContext) -> str:
        staged.set()
        await asyncio.sleep(30)
        return "never"

    llm = ScriptedLLM([remember_turn("a"),
                       Turn(tool_calls=[call("remember", word="b"), call("look"), call("hang")])])
    rt = make_runtime([notes_agent(tools=[look, hang])], llm)
    assert (await rt.start("atomic")).status == 200
    await asyncio.wait_for(staged.wait(), HANG)
    assert seen == [["a", "b"]], "staged changes are visible to the next tool at once"
    if how == "abort":
        await rt.call("atomic", "POST", "/abort", json={})
        view = rt
    else:  # the host goes away mid-step, and a new one opens the same storage
        await rt.ns.aclose()
        view = rt.reopen()
    status = await view.get("atomic", "/status")
    assert status["status"] == ("failed" if how == "abort" else "interrupted")
    last = (await view.chunks("atomic"))[-1]
    if how == "abort":
        assert last["type"] == "run_failed" and last["aborted"] is True
    else:
        assert last["type"] == "run_interrupted" and last["reason"] == "host_restarted"
        assert last["checkpointId"] == status["checkpointId"]
        assert status["canResume"]
    assert status["stepCount"] == 1
    cps = await view.checkpoints("atomic")
    assert [c["step"] for c in cps] == [0, 1], "no checkpoint for the cut step"
    head = await view.get("atomic", f"/checkpoints/{cps[-1]['checkpointId']}")
    assert head["state"] == {"notes": ["a"]}
    assert (await view.get("atomic", "/snapshot"))["state"] == {"notes": ["a"]}
    chunks = await view.chunks("atomic")
    assert_contiguous(chunks)
    assert "'b'" not in str(of_type(chunks, "state_patch"))
    assert len(await committed_messages(view, "atomic")) == 3


# -- retry -----------------------------------------------------------------------------------------


async def test_retry_from_checkpoint_after_a_failure(make_runtime: Any) -> None:
    llm = ScriptedLLM([remember_turn("a"), Turn(error=LLMError("upstream broke")), "recovered"])
    rt = make_runtime([notes_agent()], llm)
    handle = await rt.backend.start("a", "go", session_id="rt")
    with pytest.raises(RunError, match="The model call failed: upstream broke"):
        await handle.result()
    status = await handle.status()
    assert status["status"] == "failed" and not status["canResume"]
    assert status["streamStatus"] == "failed"
    chunks = await rt.chunks("rt")
    assert chunks[-1]["type"] == "run_failed" and "upstream broke" in chunks[-1]["error"]
    assert of_type(chunks, "llm_retry") == [], "a non-retryable error is not retried"
    head = status["checkpointId"]
    before = await committed_messages(rt, "rt")

    retried = await handle.retry()
    assert await retried.result() == "recovered"
    assert llm.requests[2].messages == before
    after = await rt.get("rt", "/status")
    assert after["branch"] == 0 and after["stepCount"] == 2
    assert await retried.get_state() == {"notes": ["a"]}
    resumed = of_type(await rt.chunks("rt"), "run_resumed")[-1]
    assert resumed["mode"] == "retry_from_checkpoint" and resumed["fromCheckpointId"] == head
    with pytest.raises(ConflictError, match="nothing to retry"):
        await retried.retry()


async def test_resume_mode_retry_goes_on_from_the_last_checkpoint(make_runtime: Any) -> None:
    llm = ScriptedLLM([remember_turn("a"), Turn(error=LLMError("flaky")), "fine"])
    rt = make_runtime([notes_agent()], llm)
    await rt.run("rr")
    response = await rt.call("rr", "POST", "/resume", json={"agentType": "a",
                                                           "options": {"mode": "retry"}})
    assert response.status == 200 and response.json()["status"] == "resumed"
    assert (await rt.wait("rr"))["output"] == "fine"


@pytest.mark.parametrize("message", [None, "a better question"])
async def test_retry_from_start_opens_a_new_branch(make_runtime: Any,
                                                   message: str | None) -> None:
    llm = ScriptedLLM([remember_turn("a"), "first answer", remember_turn("b"), "second answer"])
    rt = make_runtime([notes_agent()], llm)
    handle = await rt.backend.start("a", "the question", session_id="fs")
    assert await handle.result() == "first answer"
    original = await rt.checkpoints("fs")
    original_messages = await committed_messages(rt, "fs")

    retried = await handle.retry("from_start", message=message)
    assert await retried.result() == "second answer"
    status = await retried.status()
    assert status["branch"] == 1
    messages = await committed_messages(rt, "fs")
    assert messages[0] == {"role": "user", "content": message or "the question"}
    assert "Noting a" not in str(messages) and "Noting b" in str(messages)
    assert llm.requests[2].messages == [messages[0]]
    assert await retried.get_state() == {"notes": ["b"]}, "from the start's state"
    cps = await rt.checkpoints("fs")
    assert cps[:len(original)] == original
    new = cps[len(original):]
    assert {c["branch"] for c in new} == {1}
    assert new[0]["parentId"] == original[0]["checkpointId"] and new[0]["step"] == 0
    first_cp = original[-1]["checkpointId"]
    assert (await rt.get("fs", f"/messages?checkpointId={first_cp}"))["messages"] == \
        original_messages


# -- time travel -----------------------------------------------------------------------------


async def test_resume_from_a_checkpoint_forks_a_branch(make_runtime: Any) -> None:
    seen: list[list[str]] = []

    @tool
    def look(ctx: ToolContext) -> str:
        seen.append(list(ctx.get_state().notes))
        return "looked"

    llm = ScriptedLLM([remember_turn("w1"), remember_turn("w2"), remember_turn("w3"), "done",
                       Turn(tool_calls=[call("look")]), "fork done",
                       Turn(tool_calls=[call("look")]), "second fork done"])
    rt = make_runtime([notes_agent(tools=[look])], llm)
    handle = await rt.backend.start("a", "go", session_id="tt")
    assert await handle.result() == "done"
    original = await handle.checkpoints()
    assert [c["step"] for c in original] == [0, 1, 2, 3, 4]
    snapshot_before = {c["checkpointId"]: (await handle.checkpoint(c["checkpointId"]),
                                           await handle.messages(c["checkpointId"]))
                       for c in original}
    step2 = original[2]
    assert snapshot_before[step2["checkpointId"]][0]["state"] == {"notes": ["w1", "w2"]}

    fork = await handle.resume("from_checkpoint", checkpoint_id=step2["checkpointId"],
                               modify_state={"notes": ["forked"]})
    assert await fork.result() == "fork done"
    assert seen == [["forked"]], "the forked run sees the modified state"
    fork_request = llm.requests[4]
    assert fork_request.messages == snapshot_before[step2["checkpointId"]][1]

    after = await handle.checkpoints()
    assert after[:len(original)] == original
    for c in original:  # the original history is untouched
        assert (await handle.checkpoint(c["checkpointId"]),
                await handle.messages(c["checkpointId"])) == snapshot_before[c["checkpointId"]]
    new = after[len(original):]
    assert {c["branch"] for c in new} == {1} and {c["branch"] for c in original} == {0}
    assert new[0]["parentId"] == step2["checkpointId"] and new[0]["step"] == 2
    by_id = {c["checkpointId"]: c for c in after}
    chain, cursor = [], new[-1]["checkpointId"]
    while cursor is not None:
        chain.append(cursor)
        cursor = by_id[cursor]["parentId"]
    assert chain[-3:] == [c["checkpointId"] for c in reversed(original[:3])]
    assert original[3]["checkpointId"] not in chain
    assert [by_id[c]["step"] for c in reversed(chain)] == [0, 1, 2, 2, 3, 4]

    status = await fork.status()
    assert status["branch"] == 1 and status["output"] == "fork done"
    assert await fork.get_state() == {"notes": ["forked"]}
    messages = await fork.messages()
    assert messages[:5] == snapshot_before[step2["checkpointId"]][1]
    assert "w3" not in str(messages)
    resumed = of_type(await rt.chunks("tt"), "run_resumed")[-1]
    assert resumed["mode"] == "branch" and resumed["fromCheckpointId"] == step2["checkpointId"]
    assert resumed["branch"] == 1

    patch_fork = await handle.resume(
        "from_checkpoint", checkpoint_id=step2["checkpointId"],
        modify_state=[{"op": "add", "path": "/notes/-", "value": "patched"}])
    assert await patch_fork.result() == "second fork done"
    assert seen[-1] == ["w1", "w2", "patched"]
    assert (await patch_fork.status())["branch"] == 2
    assert_contiguous(await rt.chunks("tt"))


# -- replay -------------------------------------------------------------------------------------


async def test_replay_from_any_sequence_is_exact(make_runtime: Any) -> None:
    llm = ScriptedLLM([remember_turn("a"), remember_turn("b"), "three little words"])
    rt = make_runtime([notes_agent()], llm)
    handle = await rt.backend.start("a", "go", session_id="rp")
    everything = [c async for c in handle.stream()]
    assert everything[-1]["type"] == "run_completed"
    assert_contiguous(everything)
    assert everything == await rt.chunks("rp")
    for k in range(len(everything) + 1):
        replayed = [c async for c in handle.stream(from_sequence=k)]
        assert replayed == everything[k:], k
    assert await rt.sse("rp", 7) == everything[7:]


async def test_live_subscribers_joining_mid_run_see_contiguous_sequences(
        make_runtime: Any) -> None:
    text = " ".join(f"w{i}" for i in range(60))
    llm = ScriptedLLM([remember_turn("a"), text], chunk_delay=0.005)
    rt = make_runtime([notes_agent()], llm)
    handle = await rt.backend.start("a", "go", session_id="live")
    early: list[dict[str, Any]] = []

    async def collect(into: list[dict[str, Any]], after: int = 0) -> None:
        async for chunk in handle.stream(from_sequence=after):
            into.append(chunk)

    early_task = asyncio.create_task(collect(early))
    await eventually(lambda: len(early) >= 12)
    assert rt.server("live").is_executing, "the late subscribers join a live run"
    mid: list[dict[str, Any]] = []
    joined_at = early[-1]["sequence"]
    tail: list[dict[str, Any]] = []
    tasks = [early_task, asyncio.create_task(collect(mid)),
             asyncio.create_task(collect(tail, joined_at))]
    raw_sse = asyncio.create_task(rt.sse("live"))
    await asyncio.wait_for(asyncio.gather(*tasks), HANG)
    everything = await rt.chunks("live")
    assert everything[-1]["type"] == "run_completed"
    assert len([c for c in of_type(everything, "text_delta") if c["step"] == 2]) == 60
    assert early == everything
    assert mid == everything
    assert tail == everything[joined_at:]
    assert await raw_sse == everything
    assert_contiguous(everything)


# -- sub-agents -------------------------------------------------------------------------------


async def test_a_sub_agent_runs_as_its_own_session(make_runtime: Any) -> None:
    helper = notes_agent("helper", description="Finds things.")
    boss = Agent(name="boss", agents=[helper], register=False)
    llms = {"boss": ScriptedLLM([Turn(tool_calls=[call("subagent__helper", message="find x")]),
                                 "boss done"]),
            "helper": ScriptedLLM([remember_turn("x"), "helper result"])}
    rt = make_runtime([boss], llms)
    handle = await rt.backend.start("boss", "delegate", session_id="parent")
    assert await handle.result() == "boss done"
    chunks = await rt.chunks("parent")
    assert_contiguous(chunks)
    [start] = of_type(chunks, "subagent_start")
    [end] = of_type(chunks, "subagent_end")
    child_id = start["childSessionId"]
    assert start["childAgentType"] == "helper" and child_id.startswith("parent--helper-s1-")
    assert start["agentType"] == "boss", "agentType on every chunk is the stream's own"
    assert end["output"] == "helper result" and end["status"] == "completed"
    assert end["toolCallId"] == start["toolCallId"] and end["childSessionId"] == child_id
    assert end["childAgentType"] == "helper"
    kinds = types(chunks)
    assert kinds.index("tool_start") < kinds.index("subagent_start") < kinds.index(
        "subagent_end") < kinds.index("tool_end")
    assert of_type(chunks, "tool_end")[0]["output"] == "helper result"
    assert (await committed_messages(rt, "parent"))[2]["content"][0]["content"] == \
        "helper result"

    child = rt.backend.handle(child_id)
    child_status = await child.status()
    assert child_status["agentType"] == "helper" and child_status["status"] == "completed"
    assert child_status["output"] == "helper result"
    assert [c["step"] for c in await child.checkpoints()] == [0, 1, 2]
    assert await child.get_state() == {"notes": ["x"]}
    child_chunks = [c async for c in child.stream()]
    assert_contiguous(child_chunks)
    assert {c["agentId"] for c in child_chunks} == {child_id}
    assert (await child.messages())[0] == {"role": "user", "content": "find x"}
    assert [c["step"] for c in await handle.checkpoints()] == [0, 1, 2]
    assert llms["boss"].requests[0].tools[-1]["name"] == "subagent__helper"


async def test_a_failing_or_interrupted_sub_agent_is_reported_to_the_parent(
        make_runtime: Any) -> None:
    helper = Agent(name="helper", register=False)
    boss = Agent(name="boss", agents=[helper], register=False)
    llms = {"boss": ScriptedLLM([Turn(tool_calls=[call("subagent__helper", message="x")]),
                                 "coped", Turn(tool_calls=[call("subagent__helper",
                                                                message="y")])]),
            "helper": ScriptedLLM([Turn(error=LLMError("child model down")), Turn(delay=30)])}
    rt = make_runtime([boss], llms)
    handle = await rt.backend.start("boss", "go", session_id="p2")
    assert await handle.result() == "coped"
    [end] = of_type(await rt.chunks("p2"), "subagent_end")
    assert "child model down" in end["error"]
    [tool_end] = of_type(await rt.chunks("p2"), "tool_end")
    assert tool_end["error"].startswith("Sub-agent 'helper' failed:")

    second = await handle.send("again")
    await eventually(lambda: len(llms["helper"].requests) == 2)
    status = await asyncio.wait_for(second.interrupt("stop all"), HANG)
    assert status["status"] == "interrupted"
    child_id = of_type(await rt.chunks("p2"), "subagent_start")[-1]["childSessionId"]
    child_status = await rt.backend.handle(child_id).status()
    assert child_status["status"] == "interrupted", "the interrupt reaches the child"


# -- max_steps -------------------------------------------------------------------------------


async def test_max_steps_with_an_output_schema_forces_finish(make_runtime: Any) -> None:
    agent = notes_agent(output_schema=Answer, max_steps=2)
    llm = ScriptedLLM([remember_turn("a"),
                       Turn(tool_calls=[call("__finish__", answer="42", confidence=0.5)])])
    rt = make_runtime([agent], llm)
    handle = await rt.backend.start("a", "go", session_id="ms")
    assert await handle.result() == {"answer": "42", "confidence": 0.5}
    assert [r.tool_choice for r in llm.requests] == [None, "__finish__"]
    assert "__finish__" in [t["name"] for t in llm.last_request.tools]
    last = (await rt.chunks("ms"))[-1]
    assert last["type"] == "run_completed" and last["output"] == {"answer": "42",
                                                                  "confidence": 0.5}


async def test_an_output_schema_agent_answering_in_prose_is_made_to_finish(
        make_runtime: Any) -> None:
    agent = notes_agent(output_schema=Answer)
    llm = ScriptedLLM([Turn(tool_calls=[call("__finish__", answer="bad", confidence="high")]),
                       "Just prose.", Turn(tool_calls=[call("__finish__", answer="ok")])])
    rt = make_runtime([agent], llm)
    assert (await rt.run("prose"))["output"] == {"answer": "ok", "confidence": 1.0}
    assert [r.tool_choice for r in llm.requests] == [None, None, "__finish__"]
    [invalid] = [e for e in of_type(await rt.chunks("prose"), "tool_end") if "error" in e]
    assert "does not match the output schema" in invalid["error"]
    assert llm.requests[1].messages[-1]["content"][0]["is_error"] is True


async def test_max_steps_without_an_output_schema_fails_clearly(make_runtime: Any) -> None:
    agent = notes_agent(max_steps=2)
    llm = ScriptedLLM([remember_turn("a"), remember_turn("b"), "never asked"])
    rt = make_runtime([agent], llm)
    status = await rt.run("nolimit")
    assert status["status"] == "failed"
    assert "max_steps=2" in status["error"] and "output_schema" in status["error"]
    assert len(llm.requests) == 2 and all(r.tool_choice is None for r in llm.requests)
    assert [c["step"] for c in await rt.checkpoints("nolimit")] == [0, 1, 2]
    assert (await rt.get("nolimit", "/snapshot"))["state"] == {"notes": ["a", "b"]}
    last = (await rt.chunks("nolimit"))[-1]
    assert last["type"] == "run_failed" and "max_steps=2" in last["error"]


async def test_a_forced_finish_that_is_not_made_fails_clearly(make_runtime: Any) -> None:
    agent = notes_agent(output_schema=Answer, max_steps=1)
    rt = make_runtime([agent], ScriptedLLM([remember_turn("a")]))
    status = await rt.run("stubborn")
    assert status["status"] == "failed"
    assert "__finish__" in status["error"] and "max_steps=1" in status["error"]


# -- model retries ----------------------------------------------------------------------------


async def test_a_transient_model_error_is_retried_visibly(make_runtime: Any) -> None:
    llm = ScriptedLLM([Turn(error=LLMError("overloaded", retryable=True, status=529)), "ok"])
    rt = make_runtime([notes_agent()], llm, retry=RetryPolicy(base_delay=0.01))
    status = await rt.run("retry529")
    assert status["status"] == "completed" and status["output"] == "ok"
    chunks = await rt.chunks("retry529")
    [retry] = of_type(chunks, "llm_retry")
    assert retry["attempt"] == 1 and retry["status"] == 529 and retry["error"] == "overloaded"
    assert retry["maxAttempts"] == 5 and 0 <= retry["delayMs"] <= 20
    assert types(chunks).index("llm_retry") < types(chunks).index("run_completed")
    assert len(llm.requests) == 2
    assert len((await rt.get("retry529", "/usage"))["entries"]) == 1


async def test_retries_give_up_after_max_attempts(make_runtime: Any) -> None:
    busy = LLMError("rate limited", retryable=True, status=429, retry_after=0.01)
    llm = ScriptedLLM([Turn(error=busy)] * 3)
    rt = make_runtime([notes_agent()], llm,
                      retry=RetryPolicy(max_attempts=3, base_delay=0.01))
    status = await rt.run("giveup")
    assert status["status"] == "failed"
    assert status["error"] == "The model call failed after 3 attempts: rate limited"
    retries = of_type(await rt.chunks("giveup"), "llm_retry")
    assert [r["attempt"] for r in retries] == [1, 2]
    assert all(r["delayMs"] == 10 for r in retries), "Retry-After is honoured"


async def test_an_interrupt_cuts_the_wait_before_a_retry(make_runtime: Any) -> None:
    llm = ScriptedLLM([Turn(error=LLMError("overloaded", retryable=True, status=529)), "ok"])
    rt = make_runtime([notes_agent()], llm, retry=RetryPolicy(base_delay=600, max_delay=600))
    assert (await rt.start("backoff")).status == 200
    stream = rt.server("backoff").stream
    await eventually(lambda: any(c["type"] == "llm_retry" for c in stream.read(0, 100)))
    # The run now waits ten minutes before its retry; the interrupt must not wait with it.
    interrupted = await asyncio.wait_for(
        rt.call("backoff", "POST", "/interrupt", json={"reason": "not now"}), HANG)
    assert interrupted.json()["status"] == "interrupted"
    assert len(llm.requests) == 1  # no retry was made
    assert types(await rt.chunks("backoff"))[-2:] == ["checkpoint", "run_interrupted"]


async def test_conflicting_requests_during_a_run(make_runtime: Any) -> None:
    llm = ScriptedLLM([Turn(delay=30)])
    rt = make_runtime([notes_agent()], llm)
    await rt.start("busy")
    for path in ("/resume", "/retry"):
        response = await rt.call("busy", "POST", path, json={"agentType": "a"})
        assert response.status == 409 and error_of(response)["code"] == "already_executing"
    await rt.call("busy", "POST", "/abort", json={})
