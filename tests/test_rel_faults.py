"""Fault reliability: every failure gives a clear chunk, a final status, and no wedged session.

The model is the real :class:`AnthropicAdapter` (the ``anthropic`` SDK over real sockets)
against ``FakeAnthropic``, wired into ``create_agent_server`` with a fast retry policy of
three attempts. Faults: 429, 529, 500, an ``error`` event and a dropped connection
mid-stream, a stream that stops before ``message_stop``; persistent overload; a 401;
malformed events (from the wire and from an adapter); a tool that raises, hangs past its
timeout, or returns something that is not JSON; a sub-agent whose model fails; a model
that hangs until interrupted; a tool that hangs until aborted.

After each fault the session is idle (``isExecuting`` false), ``/interrupt`` answers
409, and the session takes a new request (``send``, ``retry`` or ``resume``) that
completes. No assertion depends on the machine's speed: what hangs hangs for an hour,
and the only deadline, ``HANG``, catches a hang, not a slow machine.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fakes import anthropic_server as api
from fakes.anthropic_server import (
    FakeAnthropic,
    Reply,
    Text,
    ToolUse,
    turn,
)
from helpers import eventually, of_type
from rel_helpers import history

from helix_lab.agent import Agent, LLMConfig
from helix_lab.client.backend import LocalBackend
from helix_lab.errors import BackendError, ConflictError
from helix_lab.llm.anthropic import AnthropicAdapter
from helix_lab.llm.base import LLMEvent, LLMRequest
from helix_lab.runtime import AgentRegistry, LocalNamespace, RetryPolicy, create_agent_server
from helix_lab.tools import tool

KEY = "sk-ant-test-faults-0123456789"
ATTEMPTS = 3
HANG = 60.0
"""Seconds before a wait is called a hang; everything here takes milliseconds."""
STREAM_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}


@tool
def lookup(q: str) -> str:
    """Look something up."""
    return f"notes on {q}"


@tool
def boom(x: int = 0) -> str:
    """Always fails."""
    raise ValueError(f"kaboom {x}")


@tool(timeout=0.2)
async def sleepy() -> str:
    """Hangs past its timeout (far past ``HANG``, so only the timeout can end it)."""
    await asyncio.sleep(3600)
    return "never"


@tool(timeout=None)
async def stuck() -> str:
    """Hangs with no timeout at all."""
    await asyncio.sleep(3600)
    return "never"


@tool
def weird() -> Any:
    """Returns something that is not JSON."""
    return object()


MODEL = LLMConfig(model="claude-test")
helper = Agent(name="helper", system_prompt="You help.", llm_config=MODEL, register=False)
boss = Agent(name="boss", tools=[lookup, boom, sleepy, stuck, weird], agents=[helper],
             llm_config=MODEL,
             register=False)


class World:
    """The fake API, the real adapter, and a namespace of agent servers on sqlite."""

    def __init__(self, fake: FakeAnthropic, storage: Path) -> None:
        self.fake = fake
        self.adapter = AnthropicAdapter("claude-test", api_key=KEY, base_url=fake.base_url)
        self.models: dict[str, Any] = {}
        registry = AgentRegistry()
        registry.register(boss)
        server = create_agent_server(
            llm_adapter=lambda env, ctx: self.models.get(ctx.agent_type, self.adapter),
            agents=registry,
            retry=RetryPolicy(base_delay=0.01, max_delay=0.05, max_attempts=ATTEMPTS))
        self.ns = LocalNamespace(server, storage=str(storage))
        self.backend = LocalBackend(self.ns)
        self.count = 0

    async def run(self, message: str = "go") -> tuple[Any, list[dict[str, Any]], dict[str, Any]]:
        """Start a session; return its handle, the chunks a client streamed, the status."""
        self.count += 1
        handle = await self.backend.start("boss", message, session_id=f"f{self.count}")
        chunks = await asyncio.wait_for(collect(handle), HANG)
        return handle, chunks, await handle.status()

    async def close(self) -> None:
        await self.backend.aclose()
        await self.ns.aclose()
        await self.adapter.aclose()


async def collect(handle: Any, after: int = 0) -> list[dict[str, Any]]:
    return [c async for c in handle.stream(after)]


async def until_tool_started(handle: Any) -> None:
    async for chunk in handle.stream():
        if chunk["type"] == "tool_start":
            return


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    with FakeAnthropic() as fake:
        w = World(fake, tmp_path / "db")
        try:
            yield w
        finally:
            await w.close()


async def assert_not_wedged(world: World, handle: Any, *, then: str = "send") -> None:
    """The session is idle, says so at once, and a new request runs to completion."""
    status = await handle.status()
    assert status["isExecuting"] is False, status
    assert status["status"] in ("completed", "failed", "interrupted"), status
    with pytest.raises(BackendError) as info:
        await asyncio.wait_for(handle.interrupt(), HANG)
    assert info.value.status == 409
    world.fake.push(turn(Text("Back to normal.")))
    if then == "send":
        follow = await handle.send("one more thing")
    elif then == "retry":
        follow = await handle.retry()
    else:
        follow = await handle.resume()
    assert await asyncio.wait_for(follow.result(), HANG) == "Back to normal."
    final = await handle.status()
    assert final["status"] == "completed" and not final["isExecuting"]
    chunks = await history(handle)
    assert [c["sequence"] for c in chunks] == list(range(1, len(chunks) + 1))


def assistant_texts(messages: list[dict[str, Any]]) -> list[str]:
    return ["".join(b["text"] for b in m["content"] if b["type"] == "text")
            for m in messages if m["role"] == "assistant"]


# -- the model -------------------------------------------------------------------------------


TRANSIENT = {
    "429": (api.rate_limited(retry_after=0.05), 429, r"rate limit reached \(429"),
    "529": (api.overloaded(), 529, r"overloaded \(529"),
    "500": (api.http_error(500, "api_error", "Internal server error"), 500,
            r"server error \(500"),
    "error-event-mid-stream": (api.error_mid_stream(Text("Partial words here"), after=4), 529,
                               r"failed mid-response \(overloaded_error\)"),
    "dropped-mid-stream": (api.dropped_mid_stream(Text("Partial words here"), after=4), None,
                           r"dropped mid-response"),
    "no-message-stop": (Reply(headers=STREAM_HEADERS, chunks=api.sse(api.message_events(
        Text("Partial words here"))[:-1])), None, r"ended before message_stop"),
}


@pytest.mark.parametrize("fault", list(TRANSIENT))
async def test_a_transient_model_error_is_retried_and_the_run_completes(world, fault):
    reply, status, pattern = TRANSIENT[fault]
    world.fake.push(reply, turn(Text("Recovered answer.")))
    handle, chunks, final = await world.run()

    assert final["status"] == "completed", final
    assert final["output"] == "Recovered answer."
    retries = of_type(chunks, "llm_retry")
    assert len(retries) == 1, chunks
    retry = retries[0]
    assert retry["attempt"] == 1 and retry["maxAttempts"] == ATTEMPTS
    assert retry["status"] == status
    assert re.search(pattern, retry["error"]), retry["error"]
    if fault == "429":
        assert retry["delayMs"] == 50  # the server's Retry-After, not the backoff
    assert of_type(chunks, "run_completed")[0]["output"] == "Recovered answer."
    # Text streamed by the failed attempt is not part of the committed answer.
    assert assistant_texts(await handle.messages()) == ["Recovered answer."]
    usage = await handle.usage()
    assert [e["step"] for e in usage["entries"] if e["kind"] == "llm"] == [1]
    assert len(world.fake.requests) == 2
    await assert_not_wedged(world, handle)


async def test_persistent_overload_fails_clearly_after_max_attempts_and_retry_recovers(world):
    world.fake.push(*[api.overloaded() for _ in range(ATTEMPTS)])
    handle, chunks, final = await world.run()

    assert final["status"] == "failed" and final["isExecuting"] is False
    assert [c["attempt"] for c in of_type(chunks, "llm_retry")] == list(range(1, ATTEMPTS))
    failed = of_type(chunks, "run_failed")
    assert len(failed) == 1 and chunks[-1] is failed[0]
    assert f"after {ATTEMPTS} attempts" in failed[0]["error"]
    assert "529" in failed[0]["error"] and "overloaded" in failed[0]["error"]
    assert final["error"] == failed[0]["error"]
    assert len(world.fake.requests) == ATTEMPTS
    await assert_not_wedged(world, handle, then="retry")


async def test_a_rejected_key_fails_at_once_with_the_fix_and_no_retry(world):
    world.fake.push(api.http_error(401, "authentication_error", f"invalid x-api-key {KEY}"))
    handle, chunks, final = await world.run()

    assert final["status"] == "failed"
    assert not of_type(chunks, "llm_retry")
    error = of_type(chunks, "run_failed")[0]["error"]
    assert "401" in error and "ANTHROPIC_API_KEY" in error
    assert KEY not in error
    assert len(world.fake.requests) == 1
    await assert_not_wedged(world, handle, then="retry")


class BadAdapter:
    """Streams a few good events, then one the protocol does not allow."""

    def __init__(self, bad: Any) -> None:
        self.bad = bad

    async def stream(self, request: LLMRequest) -> AsyncIterator[LLMEvent]:
        yield {"type": "text_delta", "delta": "Fine so far, "}
        yield self.bad


MALFORMED_FROM_ADAPTER = {
    "unknown-type": {"type": "telepathy", "delta": "?"},
    "not-a-dict": ["text_delta", "hi"],
    "tool-input-not-object": {"type": "tool_call", "id": "t1", "name": "lookup", "input": "q"},
    "delta-not-text": {"type": "text_delta", "delta": 42},
}


@pytest.mark.parametrize("kind", list(MALFORMED_FROM_ADAPTER))
async def test_a_malformed_adapter_event_fails_the_run_clearly(world, kind):
    world.models["boss"] = BadAdapter(MALFORMED_FROM_ADAPTER[kind])
    handle, chunks, final = await world.run()

    assert final["status"] == "failed", final
    assert not of_type(chunks, "llm_retry")  # malformed is not transient
    error = of_type(chunks, "run_failed")[0]["error"]
    assert "malformed event" in error, error
    assert of_type(chunks, "text_delta")[0]["delta"] == "Fine so far, "
    assert await handle.messages() == [{"role": "user", "content": "go"}]
    del world.models["boss"]
    await assert_not_wedged(world, handle, then="retry")


MALFORMED_ON_THE_WIRE = {
    "data-not-json": (Reply(headers=STREAM_HEADERS,
                            chunks=[b"event: message_start\ndata: {not json\n\n"]),
                      r"not valid JSON"),
    "event-wrong-shape": (Reply(headers=STREAM_HEADERS, chunks=[
        b'event: message_start\ndata: {"type": "message_start", "message": 5}\n\n']),
        r"malformed 'message_start' stream event"),
    "tool-input-not-json": (turn(ToolUse("lookup", '{"q": ')),
                            r"invalid JSON for the input of tool call 'lookup'"),
    "error-event-invalid-request": (
        api.error_mid_stream(Text("abc"), after=3, error_type="invalid_request_error",
                             message="messages: roles must alternate"),
        r"roles must alternate"),
}


@pytest.mark.parametrize("kind", list(MALFORMED_ON_THE_WIRE))
async def test_a_malformed_stream_from_the_api_fails_the_run_clearly(world, kind):
    reply, pattern = MALFORMED_ON_THE_WIRE[kind]
    world.fake.push(reply)
    handle, chunks, final = await world.run()

    assert final["status"] == "failed", final
    assert not of_type(chunks, "llm_retry")
    error = of_type(chunks, "run_failed")[0]["error"]
    assert error.startswith("The model call failed"), error  # an LLMError, not a crash
    assert re.search(pattern, error), error
    assert "Traceback" not in error
    await assert_not_wedged(world, handle, then="retry")


async def test_a_model_that_hangs_is_cut_by_interrupt_and_resumes(world):
    # Each SSE event of the reply comes an hour after the last: only a cut ends the call.
    world.fake.push(Reply(headers=STREAM_HEADERS, chunks=api.sse(api.message_events(
        Text("slow words", pieces=2))), delay=3600), turn(Text("Resumed fine.")))
    handle = await world.backend.start("boss", "go", session_id="hang")
    await eventually(lambda: world.fake.requests, timeout=HANG)  # the call is in flight
    status = await asyncio.wait_for(handle.interrupt("user stop"), HANG)
    assert status["status"] == "interrupted" and status["isExecuting"] is False
    chunks = await history(handle)
    assert chunks[-1]["type"] == "run_interrupted" and chunks[-1]["reason"] == "user stop"
    assert await handle.messages() == [{"role": "user", "content": "go"}]
    resumed = await handle.resume()
    assert await asyncio.wait_for(resumed.result(), HANG) == "Resumed fine."


# -- tools -----------------------------------------------------------------------------------


TOOL_FAULTS = {
    "raises": (ToolUse("boom", {"x": 7}), r"^Tool 'boom' raised ValueError: kaboom 7$"),
    "times-out": (ToolUse("sleepy", {}), r"^Tool 'sleepy' timed out after 0\.2 s\.$"),
    "not-json": (ToolUse("weird", {}), r"^Tool 'weird' returned a object, which is not JSON"),
    "bad-input": (ToolUse("lookup", {"q": ["not", "a", "string"]}),
                  r"^Invalid input for tool 'lookup': q: "),
    "no-such-tool": (ToolUse("teleport", {}), r"^There is no tool named 'teleport'"),
}


@pytest.mark.parametrize("fault", list(TOOL_FAULTS))
async def test_a_failing_tool_reports_a_clear_error_and_the_run_goes_on(world, fault):
    use, pattern = TOOL_FAULTS[fault]
    world.fake.push(turn(use), turn(Text("Handled the tool error.")))
    handle, chunks, final = await world.run()  # within HANG: sleepy's timeout cut it

    ends = of_type(chunks, "tool_end")
    assert len(ends) == 1 and "output" not in ends[0], ends
    assert re.search(pattern, ends[0]["error"]), ends[0]["error"]
    assert ends[0]["toolName"] == use.name
    assert final["status"] == "completed" and final["output"] == "Handled the tool error."
    # The model was told: its second request carries the error as an is_error result.
    second = world.fake.requests[1].json()["messages"]
    result = second[-1]["content"][0]
    assert result["type"] == "tool_result" and result["is_error"] is True
    assert re.search(pattern, result["content"])
    await assert_not_wedged(world, handle)


async def test_several_tool_faults_in_one_step_each_get_their_own_error(world):
    world.fake.push(
        turn(ToolUse("boom", {"x": 1}, id="toolu_a"), ToolUse("sleepy", {}, id="toolu_b"),
             ToolUse("weird", {}, id="toolu_c"), ToolUse("lookup", {"q": "x"}, id="toolu_d")),
        turn(Text("Three failed, one worked.")))
    handle, chunks, final = await world.run()
    ends = {c["toolCallId"]: c for c in of_type(chunks, "tool_end")}
    assert "kaboom 1" in ends["toolu_a"]["error"]
    assert "timed out" in ends["toolu_b"]["error"]
    assert "not JSON" in ends["toolu_c"]["error"]
    assert ends["toolu_d"]["output"] == "notes on x"
    assert final["status"] == "completed"
    await assert_not_wedged(world, handle)


async def test_a_tool_hanging_without_timeout_is_stopped_by_abort(world):
    world.fake.push(turn(ToolUse("stuck", {})))
    handle = await world.backend.start("boss", "go", session_id="stuck")
    await asyncio.wait_for(until_tool_started(handle), HANG)
    assert (await handle.status())["isExecuting"] is True
    status = await asyncio.wait_for(handle.abort("enough"), HANG)  # stuck sleeps an hour
    assert status["status"] == "failed" and status["isExecuting"] is False
    chunks = await history(handle)
    assert chunks[-1]["type"] == "run_failed" and chunks[-1]["aborted"] is True
    assert "enough" in chunks[-1]["error"]
    with pytest.raises(ConflictError, match="hard stop"):  # abort is final, as in the seed
        await handle.retry()
    await assert_not_wedged(world, handle, then="send")


# -- sub-agents ------------------------------------------------------------------------------


async def test_a_failing_subagent_ends_with_an_error_and_the_parent_still_finishes(world):
    world.fake.push(
        turn(ToolUse("subagent__helper", {"message": "help me"})),
        api.http_error(400, "invalid_request_error", "the helper's request is bad"),
        turn(Text("The helper failed, so I answer alone.")),
    )
    handle, chunks, final = await world.run()

    start = of_type(chunks, "subagent_start")
    end = of_type(chunks, "subagent_end")
    assert len(start) == 1 and len(end) == 1
    assert end[0]["status"] == "failed"
    assert "the helper's request is bad" in end[0]["error"]
    tool_end = of_type(chunks, "tool_end")[0]
    assert tool_end["error"].startswith("Sub-agent 'helper' failed: ")
    assert final["status"] == "completed"
    assert final["output"] == "The helper failed, so I answer alone."

    child = world.backend.handle(start[0]["childSessionId"])
    child_status = await child.status()
    assert child_status["status"] == "failed" and not child_status["isExecuting"]
    assert "400" in child_status["error"]
    await assert_not_wedged(world, handle)


async def test_a_subagent_that_raises_in_its_model_adapter_fails_cleanly(world):
    class Exploding:
        async def stream(self, request: LLMRequest) -> AsyncIterator[LLMEvent]:
            raise RuntimeError("the adapter fell over")
            yield  # pragma: no cover

    world.models["helper"] = Exploding()
    world.fake.push(turn(ToolUse("subagent__helper", {"message": "help me"})),
                    turn(Text("Done without help.")))
    handle, chunks, final = await world.run()
    end = of_type(chunks, "subagent_end")[0]
    assert "RuntimeError: the adapter fell over" in end["error"]
    assert final["status"] == "completed"
    await assert_not_wedged(world, handle)
