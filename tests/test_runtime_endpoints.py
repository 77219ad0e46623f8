"""Every endpoint of an agent server, its happy path and its error statuses: through
``stub.fetch(Request(...))``, through ``LocalBackend``/``AgentHandle``, and through the
gateway. Also the server hooks, custom endpoints and a custom usage store.

The ``make_runtime`` fixture fails any test during which a response was a 500 or carried
a traceback, so every malformed request below also checks that rule.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from helpers import (
    _UNSET,
    Runtime,
    assert_contiguous,
    error_of,
    eventually,
    of_type,
    stored_files,
    types,
)
from note_taker import notes_agent

from helix_lab import Agent
from helix_lab.client.handle import AgentHandle
from helix_lab.errors import AuthError, BadRequestError, ConflictError, NotFoundError
from helix_lab.llm import ScriptedLLM, Turn, call
from helix_lab.llm.base import LLMError
from helix_lab.runtime import (
    AbortResult,
    CompleteContext,
    EndpointContext,
    Request,
    ServerHooks,
    json_response,
)
from helix_lab.runtime.gateway import route
from helix_lab.runtime.hooks import (
    AfterStartContext,
    BeforeResumeContext,
    BeforeRetryContext,
    BeforeStartContext,
)

AGENT = notes_agent()
SLOW = Agent(name="slow", register=False)


def two_step_llm() -> ScriptedLLM:
    return ScriptedLLM([Turn(text="Let me note it.", tool_calls=[call("remember", word="x")]),
                        "All done."], loop=True)


def slow_llm() -> ScriptedLLM:
    return ScriptedLLM([Turn(delay=30, text="too late")], loop=True)


@pytest.fixture
def rt(make_runtime: Any) -> Runtime:
    return make_runtime([AGENT, SLOW], {"a": two_step_llm(), "slow": slow_llm()})


START = {"agentType": "a", "sessionId": "s1", "input": {"message": "remember x"}}


async def status_of(rt: Runtime, sid: str) -> dict[str, Any]:
    return await rt.get(sid, "/status")


# -- POST /start ---------------------------------------------------------------------------


async def test_start_runs_the_agent_and_status_reports_it(rt: Runtime) -> None:
    fresh = await status_of(rt, "s1")
    assert fresh == {"sessionId": None, "status": "idle", "stepCount": 0, "isExecuting": False,
                     "canResume": False, "lastSequence": 0}
    response = await rt.call("s1", "POST", "/start", json=START)
    assert response.status == 200
    body = response.json()
    assert body["sessionId"] == "s1" and body["streamId"] == "s1"
    assert body["status"] == "started" and re.fullmatch(r"run_[0-9a-f]{12}", body["runId"])
    status = await rt.wait("s1")
    chunks = await rt.chunks("s1")
    assert status == {
        "sessionId": "s1", "agentType": "a", "status": "completed", "runId": body["runId"],
        "stepCount": 2, "checkpointId": status["checkpointId"], "isExecuting": False,
        "canResume": False, "streamStatus": "ended", "lastSequence": chunks[-1]["sequence"],
        "branch": 0, "output": "All done.",
    }
    assert_contiguous(chunks)
    assert types(chunks)[:3] == ["run_started", "checkpoint", "step_started"]
    assert chunks[-1]["type"] == "run_completed" and chunks[-1]["output"] == "All done."
    assert chunks[-1]["checkpointId"] == status["checkpointId"]
    for chunk in chunks:
        assert {"type", "sequence", "agentId", "agentType", "step", "timestamp"} <= set(chunk)
        assert chunk["agentId"] == "s1" and chunk["agentType"] == "a"
        assert chunk["runId"] == body["runId"]


@pytest.mark.parametrize(("body", "field", "words"), [
    (b"", None, "empty"),
    (b"{not json", None, "not valid JSON"),
    (b"\xff\xfe\x00", None, "not valid JSON"),
    (b"[" * 100_000, None, "nested too deeply"),
    (b"[1, 2]", None, "must be a JSON object, got list"),
    (b'"text"', None, "must be a JSON object, got str"),
    ({"agentType": "a", "sessionId": "s1"}, "input", "input: Field required"),
    ({"agentType": "a", "sessionId": "s1", "input": {}}, "input.message",
     "input.message: Field required"),
    ({"agentType": "a", "sessionId": "s1", "input": {"message": ""}}, "input.message",
     "input.message"),
    ({"agentType": "a", "sessionId": "s1", "input": "hello"}, "input", "input"),
    ({"sessionId": "s1", "input": {"message": "m"}}, "agentType", "agentType: Field required"),
    ({"agentType": 7, "sessionId": "s1", "input": {"message": "m"}}, "agentType", "agentType"),
    ({"agentType": "a", "input": {"message": "m"}}, "sessionId", "sessionId: Field required"),
    ({"agentType": "a", "sessionId": "no spaces!", "input": {"message": "m"}}, "sessionId",
     "sessionId"),
    ({**START, "input": {"message": "m", "state": 5}}, "input.state", "input.state"),
    ({**START, "input": {"message": "m", "state": {"notes": "nope"}}}, "input.state",
     "does not fit a's state schema"),
    ({**START, "input": {"message": "m", "messages": [{"role": "system", "content": "x"}]}},
     "input.messages[0]", "input.messages[0] must be"),
    ({**START, "metadata": {"k": 1}}, "metadata.k", "metadata.k"),
    ({**START, "tags": "not-a-list"}, "tags", "tags"),
])
async def test_start_rejects_malformed_bodies_naming_the_field(
        rt: Runtime, body: Any, field: str | None, words: str) -> None:
    if isinstance(body, bytes):
        response = await rt.call("s1", "POST", "/start", body=body)
    else:
        response = await rt.call("s1", "POST", "/start", json=body)
    assert response.status == 400
    error = error_of(response)
    assert error["code"] == "bad_request"
    assert error.get("field") == field
    assert words in error["message"]
    assert (await status_of(rt, "s1"))["sessionId"] is None, "a 400 must store nothing"
    assert (await rt.call("s1", "GET", "/checkpoints")).status == 404


async def test_start_of_an_unknown_agent_is_404_listing_the_types(rt: Runtime) -> None:
    response = await rt.call("s1", "POST", "/start", json={**START, "agentType": "writer"})
    assert response.status == 404
    error = error_of(response)
    assert error["code"] == "agent_not_found"
    assert error["agentType"] == "writer"
    assert error["availableTypes"] == ["a", "slow"]
    assert "writer" in error["message"]
    assert (await status_of(rt, "s1"))["sessionId"] is None


async def test_start_while_executing_is_409(rt: Runtime) -> None:
    slow = {"agentType": "slow", "sessionId": "busy", "input": {"message": "m"}}
    assert (await rt.call("busy", "POST", "/start", json=slow)).status == 200
    again = await rt.call("busy", "POST", "/start", json=slow)
    assert again.status == 409
    error = error_of(again)
    assert error["code"] == "already_executing"
    assert "interrupt or abort" in error["message"]
    status = await status_of(rt, "busy")
    assert status["isExecuting"] and status["status"] == "running"
    assert status["streamStatus"] == "active"
    await rt.call("busy", "POST", "/abort", json={})


async def test_a_follow_up_start_continues_the_session(rt: Runtime) -> None:
    await rt.run("s1", "first")
    assert (await rt.run("s1", "second"))["status"] == "completed"
    messages = (await rt.get("s1", "/messages"))["messages"]
    users = [m["content"] for m in messages if isinstance(m["content"], str)]
    assert users == ["first", "second"]
    assert len(messages) == 8
    assert (await rt.get("s1", "/snapshot"))["state"] == {"notes": ["x", "x"]}
    runs = {c["runId"] for c in await rt.chunks("s1")}
    assert len(runs) == 2
    mismatch = await rt.call("s1", "POST", "/start", json={**START, "sessionId": "other"})
    assert mismatch.status == 409 and error_of(mismatch)["code"] == "session_mismatch"
    other = await rt.call("s1", "POST", "/start", json={**START, "agentType": "slow"})
    assert other.status == 409 and error_of(other)["code"] == "agent_type_mismatch"


async def test_start_with_initial_state_and_prior_messages(rt: Runtime) -> None:
    prior = [{"role": "user", "content": "earlier"},
             {"role": "assistant", "content": [{"type": "text", "text": "ok"}]}]
    await rt.run("s1", "now", state={"notes": ["seed"]}, messages=prior)
    snapshot = await rt.get("s1", "/snapshot")
    assert snapshot["state"] == {"notes": ["seed", "x"]}
    assert snapshot["messages"][:3] == [*prior, {"role": "user", "content": "now"}]


# -- resume / retry / interrupt / abort: the error statuses ---------------------------------


async def test_resume_errors(rt: Runtime) -> None:
    nothing = await rt.call("s1", "POST", "/resume", json={"agentType": "a"})
    assert nothing.status == 404 and error_of(nothing)["code"] == "session_not_found"
    await rt.run("s1")
    completed = await rt.call("s1", "POST", "/resume", json={"agentType": "a"})
    assert completed.status == 409
    assert error_of(completed)["code"] == "not_resumable"
    assert "completed" in error_of(completed)["message"]
    branch = await rt.call("s1", "POST", "/resume", json={"agentType": "a",
                                                          "options": {"mode": "branch"}})
    assert branch.status == 400
    assert error_of(branch)["field"] == "options.checkpointId"
    unknown = await rt.call("s1", "POST", "/resume", json={
        "agentType": "a", "options": {"mode": "branch", "checkpointId": "cpv1-nope"}})
    assert unknown.status == 404 and error_of(unknown)["code"] == "checkpoint_not_found"
    cp = (await status_of(rt, "s1"))["checkpointId"]
    for options, field in [
        ({"mode": "sideways"}, "options.mode"),
        ({"mode": "branch", "checkpointId": cp, "modifyState": "x"}, "options.modifyState"),
        ({"mode": "branch", "checkpointId": cp,
          "modifyState": [{"op": "remove", "path": "/missing"}]}, "options.modifyState"),
        ({"mode": "branch", "checkpointId": cp, "modifyState": {"notes": 3}},
         "options.modifyState"),
        ({"mode": "branch", "checkpointId": cp, "appendMessages": [{"role": "bot"}]},
         "options.appendMessages[0]"),
    ]:
        response = await rt.call("s1", "POST", "/resume",
                                 json={"agentType": "a", "options": options})
        assert response.status == 400, options
        assert error_of(response)["field"] == field
    assert (await status_of(rt, "s1"))["status"] == "completed"
    assert len(await rt.checkpoints("s1")) == 3, "refused requests must not add checkpoints"


async def test_retry_interrupt_and_abort_errors(rt: Runtime) -> None:
    for path, body in (("/retry", {"agentType": "a"}), ("/abort", {})):
        response = await rt.call("s1", "POST", path, json=body)
        assert response.status == 404, path
    interrupt = await rt.call("s1", "POST", "/interrupt", json={})
    assert interrupt.status == 409 and error_of(interrupt)["code"] == "not_running"
    await rt.run("s1")
    retry = await rt.call("s1", "POST", "/retry", json={"agentType": "a"})
    assert retry.status == 409 and error_of(retry)["code"] == "not_retryable"
    bad_mode = await rt.call("s1", "POST", "/retry",
                             json={"agentType": "a", "options": {"mode": "again"}})
    assert bad_mode.status == 400 and error_of(bad_mode)["field"] == "options.mode"
    for path in ("/interrupt", "/abort"):
        response = await rt.call("s1", "POST", path, json={"reason": "stop"})
        assert response.status == 409 and error_of(response)["code"] == "not_running"
    bad_reason = await rt.call("s1", "POST", "/interrupt", json={"reason": 5})
    assert bad_reason.status == 400 and error_of(bad_reason)["field"] == "reason"


async def test_abort_of_an_interrupted_session_fails_it(rt: Runtime) -> None:
    await rt.call("slow", "POST", "/start", json={
        "agentType": "slow", "sessionId": "slow", "input": {"message": "m"}})
    interrupted = await rt.call("slow", "POST", "/interrupt", json={"reason": "pause"})
    assert interrupted.status == 200 and interrupted.json()["status"] == "interrupted"
    aborted = await rt.call("slow", "POST", "/abort", json={"reason": "give up"})
    assert aborted.status == 200
    body = aborted.json()
    assert body["status"] == "failed" and not body["canResume"]
    assert body["error"] == "Aborted: give up"
    last = (await rt.chunks("slow"))[-1]
    assert last["type"] == "run_failed" and last["aborted"] is True
    assert (await rt.call("slow", "POST", "/resume", json={"agentType": "slow"})).status == 409


async def test_no_malformed_control_request_is_a_server_error(rt: Runtime) -> None:
    bodies: list[Any] = [b"{", b"[]", b"null", b'"s"', b"[" * 50_000, b"\x80",
                         {"options": 5}, {"options": {"mode": 7}}, {"reason": ["x"]},
                         {"options": {"checkpointId": 5}}, {"options": {"modifyState": [1]}},
                         {"options": {"appendMessages": [5]}}, {"options": {"message": {}}}]
    for sid in ("fresh", "s1"):
        if sid == "s1":
            await rt.run("s1")
        for path in ("/start", "/resume", "/retry", "/interrupt", "/abort"):
            for body in bodies:
                if isinstance(body, bytes):
                    response = await rt.call(sid, "POST", path, body=body)
                else:
                    response = await rt.call(sid, "POST", path, json=body)
                assert response.status in (400, 404, 409), (sid, path, body, response.body)
                error_of(response)
    assert rt.violations == []


# -- GET endpoints ---------------------------------------------------------------------------


async def test_sse_replays_from_a_sequence(rt: Runtime) -> None:
    await rt.run("s1")
    everything = await rt.sse("s1")
    assert_contiguous(everything)
    assert everything == await rt.chunks("s1")
    assert await rt.sse("s1", 5) == everything[5:]
    assert await rt.sse("s1", len(everything)) == []
    for bad in ("abc", "-1", "1.5"):
        response = await rt.call("s1", "GET", f"/sse?fromSequence={bad}")
        assert response.status == 400
        assert error_of(response)["field"] == "fromSequence"


async def test_history_pages_and_rejects_bad_numbers(rt: Runtime) -> None:
    await rt.run("s1")
    full = await rt.get("s1", "/history")
    assert not full["hasMore"]
    last = full["lastSequence"]
    assert_contiguous(full["chunks"])
    assert full["chunks"][-1]["sequence"] == last
    page = await rt.get("s1", "/history?fromSequence=3&limit=4")
    assert [c["sequence"] for c in page["chunks"]] == [4, 5, 6, 7]
    assert page["hasMore"] and page["lastSequence"] == last
    tail = await rt.get("s1", f"/history?fromSequence={last - 2}&limit=2")
    assert [c["sequence"] for c in tail["chunks"]] == [last - 1, last]
    assert not tail["hasMore"]
    assert (await rt.get("s1", f"/history?fromSequence={last}"))["chunks"] == []
    assert (await rt.get("s1", "/history?limit=0"))["chunks"] == []
    for query, field in [("fromSequence=x", "fromSequence"), ("limit=ten", "limit"),
                         ("limit=-1", "limit"), ("fromSequence=-3", "fromSequence"),
                         ("limit=2.0", "limit")]:
        response = await rt.call("s1", "GET", f"/history?{query}")
        assert response.status == 400, query
        assert error_of(response)["field"] == field


async def test_usage_has_entries_and_a_rollup(rt: Runtime) -> None:
    empty = await rt.get("s1", "/usage")
    assert empty["entries"] == [] and empty["rollup"]["total"]["totalTokens"] == 0
    response = await rt.call("s1", "POST", "/start", json=START)
    run_id = response.json()["runId"]
    await rt.wait("s1")
    usage = await rt.get("s1", "/usage")
    entries = usage["entries"]
    assert [(e["kind"], e["step"], e["runId"], e["sessionId"]) for e in entries] == [
        ("llm", 1, run_id, "s1"), ("llm", 2, run_id, "s1")]
    assert all(e["model"] == "claude-sonnet-5-5" and e["inputTokens"] > 0 for e in entries)
    total = usage["rollup"]["total"]
    assert total["inputTokens"] == sum(e["inputTokens"] for e in entries)
    assert total["outputTokens"] == sum(e["outputTokens"] for e in entries)
    assert total["totalTokens"] == total["inputTokens"] + total["outputTokens"]
    assert usage["rollup"]["byModel"]["claude-sonnet-5-5"]["calls"] == 2
    assert usage["rollup"]["byKind"]["llm"]["calls"] == 2
    streamed = of_type(await rt.chunks("s1"), "usage")
    assert [c["inputTokens"] for c in streamed] == [e["inputTokens"] for e in entries]


async def test_messages_snapshot_and_checkpoints(rt: Runtime) -> None:
    assert (await rt.call("s1", "GET", "/messages")).status == 404
    fresh = await rt.get("s1", "/snapshot")
    assert fresh["state"] is None and fresh["messages"] == [] and fresh["checkpoints"] == []
    await rt.run("s1", "remember x")
    status = await status_of(rt, "s1")
    messages = (await rt.get("s1", "/messages"))
    assert messages["checkpointId"] == status["checkpointId"]
    msgs = messages["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant"]
    assert msgs[0] == {"role": "user", "content": "remember x"}
    assert msgs[1]["content"][0] == {"type": "text", "text": "Let me note it."}
    tool_use = msgs[1]["content"][1]
    assert tool_use["type"] == "tool_use" and tool_use["name"] == "remember"
    assert msgs[2]["content"] == [{"type": "tool_result", "tool_use_id": tool_use["id"],
                                   "content": "remembered x", "is_error": False}]
    assert msgs[3]["content"] == [{"type": "text", "text": "All done."}]

    checkpoints = await rt.checkpoints("s1")
    assert [(c["step"], c["status"], c["messageCount"]) for c in checkpoints] == [
        (0, "running", 1), (1, "running", 3), (2, "completed", 4)]
    assert checkpoints[-1]["checkpointId"] == status["checkpointId"], "newest last"
    assert [c["parentId"] for c in checkpoints] == [
        None, checkpoints[0]["checkpointId"], checkpoints[1]["checkpointId"]]
    timestamps = [c["timestamp"] for c in checkpoints]
    assert timestamps == sorted(timestamps)
    streamed = of_type(await rt.chunks("s1"), "checkpoint")
    assert [c["checkpointId"] for c in streamed] == [c["checkpointId"] for c in checkpoints]
    assert [c["sequence"] for c in streamed] == [c["sequence"] for c in checkpoints]
    for cp in checkpoints:
        assert re.fullmatch(rf"cpv1-s1-s{cp['step']}-t\d{{13}}-[0-9a-f]{{6}}", cp["checkpointId"])

    first = await rt.get("s1", f"/checkpoints/{checkpoints[0]['checkpointId']}")
    assert first["state"] == {"notes": []} and first["step"] == 0
    assert first["status"] == "running" and first["messageCount"] == 1
    second = await rt.get("s1", f"/checkpoints/{checkpoints[1]['checkpointId']}")
    assert second["state"] == {"notes": ["x"]} and second["messageCount"] == 3
    last = await rt.get("s1", f"/checkpoints/{checkpoints[2]['checkpointId']}")
    assert last["output"] == "All done." and last["status"] == "completed"
    missing = await rt.call("s1", "GET", "/checkpoints/cpv1-s1-s9-t0-000000")
    assert missing.status == 404 and error_of(missing)["code"] == "checkpoint_not_found"

    older = await rt.get("s1", f"/messages?checkpointId={checkpoints[1]['checkpointId']}")
    assert older["messages"] == msgs[:3]
    assert (await rt.call("s1", "GET", "/messages?checkpointId=zzz")).status == 404

    snapshot = await rt.get("s1", "/snapshot")
    assert snapshot["state"] == {"notes": ["x"]} and snapshot["messages"] == msgs
    assert snapshot["checkpoints"] == checkpoints and snapshot["checkpointCount"] == 3
    assert snapshot["status"] == "completed" and snapshot["output"] == "All done."
    assert snapshot["usage"]["totalTokens"] > 0
    at_step_1 = await rt.get("s1", f"/snapshot?checkpointId={checkpoints[1]['checkpointId']}")
    assert at_step_1["state"] == {"notes": ["x"]} and at_step_1["messages"] == msgs[:3]


async def test_unknown_paths_and_wrong_methods(rt: Runtime) -> None:
    unknown = await rt.call("s1", "GET", "/nope")
    assert unknown.status == 404 and error_of(unknown)["code"] == "not_found"
    assert "/start" in error_of(unknown)["message"]
    for method, path, allowed in [("GET", "/start", "POST"), ("POST", "/status", "GET"),
                                  ("DELETE", "/history", "GET"), ("PUT", "/resume", "POST")]:
        response = await rt.call("s1", method, path)
        assert response.status == 405, (method, path)
        error = error_of(response)
        assert error["code"] == "method_not_allowed" and f"use {allowed}" in error["message"]


async def test_websocket_replays_then_follows(rt: Runtime) -> None:
    class Socket:
        def __init__(self) -> None:
            self.sent: list[dict[str, Any]] = []

        def send(self, text: str) -> None:
            self.sent.append(json.loads(text))

        def close(self, code: int = 1000, reason: str = "") -> None:
            pass

    await rt.run("s1")
    first = len(await rt.chunks("s1"))
    socket = Socket()
    upgraded = await rt.stub("s1").fetch(Request("GET", "/?fromSequence=2", websocket=socket))
    assert upgraded.status == 101
    assert [c["sequence"] for c in socket.sent] == list(range(3, first + 1))
    await rt.run("s1", "again")
    assert_contiguous(socket.sent, start=3)
    assert socket.sent == (await rt.chunks("s1"))[2:]
    # Any path: the seed's example worker forwards /ws/{id} to the object unchanged.
    anywhere = Socket()
    assert (await rt.stub("s1").fetch(Request("GET", "/ws/s1", websocket=anywhere))).status == 101
    assert anywhere.sent == await rt.chunks("s1")


# -- the client: LocalBackend and AgentHandle -----------------------------------------------


async def test_the_local_backend_drives_every_endpoint(rt: Runtime) -> None:
    backend = rt.backend
    assert await backend.health() is True
    assert await backend.agents() == ["a", "slow"]
    handle = await backend.start("a", "remember x", session_id="h1")
    assert isinstance(handle, AgentHandle)
    assert handle.session_id == "h1" and handle.run_id.startswith("run_")
    streamed = [c async for c in handle.stream()]
    assert_contiguous(streamed)
    assert streamed[-1]["type"] == "run_completed"
    assert await handle.result() == "All done."
    status = await handle.status()
    assert status["status"] == "completed" and not await handle.can_resume()
    assert await handle.get_state() == {"notes": ["x"]}
    checkpoints = await handle.checkpoints()
    assert [c["step"] for c in checkpoints] == [0, 1, 2]
    one = await handle.checkpoint(checkpoints[1]["checkpointId"])
    assert one["state"] == {"notes": ["x"]} and one["messageCount"] == 3
    history = await handle.history(from_sequence=2, limit=3)
    assert [c["sequence"] for c in history["chunks"]] == [3, 4, 5]
    assert streamed == (await handle.history())["chunks"]
    # Page by page: every chunk once, in order, however small the page.
    assert [c async for c in handle.history_chunks(page=2)] == streamed
    assert [c async for c in handle.history_chunks(4, page=3)] == streamed[4:]
    usage = await handle.usage()
    assert len(usage["entries"]) == 2 and usage["rollup"]["entries"] == 2
    assert len(await handle.messages()) == 4
    assert len(await handle.messages(checkpoints[0]["checkpointId"])) == 1
    assert (await handle.snapshot())["checkpointCount"] == 3

    follow_up = await handle.send("and again")
    assert follow_up.run_id != handle.run_id
    assert await follow_up.result() == "All done."
    assert len(await follow_up.messages()) == 8
    other = backend.handle("h1")
    assert (await other.status())["runId"] == follow_up.run_id


async def test_the_local_backend_raises_typed_errors(rt: Runtime) -> None:
    backend = rt.backend
    with pytest.raises(NotFoundError) as missing:
        await backend.start("writer", "hi", session_id="e1")
    assert missing.value.code == "agent_not_found"
    assert missing.value.details["availableTypes"] == ["a", "slow"]
    busy = await backend.start("slow", "hi", session_id="e2")
    with pytest.raises(ConflictError) as conflict:
        await busy.send("more")
    assert conflict.value.code == "already_executing" and conflict.value.status == 409
    await busy.abort("done")
    assert (await busy.status())["status"] == "failed"
    with pytest.raises(ConflictError):
        await busy.resume()
    with pytest.raises(ConflictError, match="nothing to interrupt"):
        await busy.interrupt()
    with pytest.raises(NotFoundError, match="checkpoint"):
        await busy.resume("from_checkpoint", checkpoint_id="cpv1-missing")
    with pytest.raises(NotFoundError):
        await busy.checkpoint("cpv1-missing")
    with pytest.raises(BadRequestError) as bad:
        await backend.request("e2", "GET", "/history", params={"limit": "lots"})
    assert bad.value.details["field"] == "limit"
    with pytest.raises(BadRequestError, match="Session id 'bad%20id' is not valid") as bad_id:
        await backend.start("a", "hi", session_id="bad id")
    assert bad_id.value.details["field"] == "sessionId"


# -- the gateway ---------------------------------------------------------------------------


async def gw(rt: Runtime, method: str, url: str, *, token: str | None = None,
             json: Any = _UNSET, body: bytes = b"", headers: dict[str, str] | None = None) -> Any:
    if json is _UNSET:
        request = Request(method, url, body=body, headers=headers)
    else:
        request = Request(method, url, json=json, headers=headers)
    response = await route(request, rt.ns, token=token,
                           agent_types=rt.registry.get_registered_types)
    assert response.status < 500 and b"Traceback" not in response.body
    return response


async def test_gateway_routes_health_agents_and_sessions(rt: Runtime) -> None:
    health = await gw(rt, "GET", "/health")
    assert health.status == 200 and health.json() == {"ok": True}
    agents = await gw(rt, "GET", "/agents")
    assert agents.json() == {"agents": ["a", "slow"]}
    assert (await gw(rt, "POST", "/agents")).status == 405
    nowhere = await gw(rt, "GET", "/elsewhere")
    assert nowhere.status == 404 and "/sessions/{sessionId}/{endpoint}" in error_of(
        nowhere)["message"]
    started = await gw(rt, "POST", "/sessions/g1/start",
                       json={"agentType": "a", "input": {"message": "hi"}})
    assert started.status == 200 and started.json()["sessionId"] == "g1", "filled from the path"
    await rt.wait("g1")
    via_gateway = (await gw(rt, "GET", "/sessions/g1/status")).json()
    assert via_gateway == await status_of(rt, "g1")
    page = (await gw(rt, "GET", "/sessions/g1/history?fromSequence=2&limit=2")).json()
    assert [c["sequence"] for c in page["chunks"]] == [3, 4]
    cp = via_gateway["checkpointId"]
    assert (await gw(rt, "GET", f"/sessions/g1/checkpoints/{cp}")).json()["step"] == 2
    assert (await gw(rt, "GET", "/sessions/g1")).status == 404  # the object's "/" is WS only


async def test_gateway_refuses_bad_session_ids_and_mismatched_bodies(rt: Runtime) -> None:
    for bad in ("-starts-with-dash", "has%20space", "x" * 200, "semi;colon"):
        response = await gw(rt, "GET", f"/sessions/{bad}/status")
        assert response.status == 400, bad
        assert error_of(response)["field"] == "sessionId"
    mismatch = await gw(rt, "POST", "/sessions/g1/start",
                        json={**START, "sessionId": "someone-else"})
    assert mismatch.status == 400
    assert error_of(mismatch)["field"] == "sessionId"
    assert "someone-else" in error_of(mismatch)["message"]
    malformed = await gw(rt, "POST", "/sessions/g1/start", body=b"{oops")
    assert malformed.status == 400 and "not valid JSON" in error_of(malformed)["message"]
    deep = await gw(rt, "POST", "/sessions/g1/start", body=b"[" * 100_000)
    assert deep.status == 400
    assert (await status_of(rt, "g1"))["sessionId"] is None


async def test_gateway_bearer_token(rt: Runtime) -> None:
    assert (await gw(rt, "GET", "/health", token="t")).status == 200, "health needs no token"
    for headers in (None, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic t"},
                    {"Authorization": "Bearer "}, {"Authorization": "t"}):
        response = await gw(rt, "POST", "/sessions/sec/start", token="t", json=START,
                            headers=headers)
        assert response.status == 401, headers
        assert error_of(response)["code"] == "unauthorized"
        assert (await gw(rt, "GET", "/agents", token="t", headers=headers)).status == 401
    assert rt.ns.stored_ids() == [], "a refused request must not create or touch an object"
    assert stored_files(rt.ns.storage) == []
    ok = await gw(rt, "POST", "/sessions/sec/start", token="t", json={**START, "sessionId": "sec"},
                  headers={"Authorization": "Bearer t"})
    assert ok.status == 200
    await rt.wait("sec")
    assert len(rt.ns.stored_ids()) == 1


# -- server hooks, custom endpoints, custom usage store --------------------------------------


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_lifecycle_hooks_are_called_in_order(make_runtime: Any, flavour: str) -> None:
    log: list[tuple[Any, ...]] = []
    contexts: dict[str, Any] = {}

    def hook(name: str):  # type: ignore[no-untyped-def]
        def sync_hook(ctx: Any) -> None:
            contexts[name] = ctx
            if isinstance(ctx, CompleteContext):
                log.append((name, ctx.status, ctx.result, ctx.error))
            elif isinstance(ctx, AfterStartContext):
                assert isinstance(ctx.handle, AgentHandle) and ctx.handle.run_id == ctx.run_id
                log.append((name, ctx.agent_type))
            else:
                assert not ctx.execution_state.is_executing
                log.append((name,))

        async def async_hook(ctx: Any) -> None:
            await asyncio.sleep(0)
            sync_hook(ctx)

        return sync_hook if flavour == "sync" else async_hook

    hooks = ServerHooks(**{name: hook(name) for name in (
        "before_start", "after_start", "before_resume", "after_resume", "before_retry",
        "after_retry", "on_complete")})
    llm = ScriptedLLM([Turn(delay=30, text="cut"), "resumed answer",
                       Turn(error=LLMError("model exploded")), "retried answer"])
    rt = make_runtime([SLOW], llm, hooks=hooks, env={"K": "v"})
    response = await rt.start("hk", "first", agent_type="slow")
    run_id = response.json()["runId"]
    assert isinstance(contexts["before_start"], BeforeStartContext)
    assert contexts["before_start"].body.input.message == "first"
    assert contexts["before_start"].request.path == "/start"
    assert contexts["before_start"].env == {"K": "v"}
    assert contexts["after_start"].run_id == run_id and contexts["after_start"].session_id == "hk"
    await eventually(lambda: llm.requests)  # inside the slow model call
    await rt.call("hk", "POST", "/interrupt", json={})
    await eventually(lambda: len(log) == 3)
    assert contexts["on_complete"].run_id == run_id
    assert (await rt.call("hk", "POST", "/resume", json={"agentType": "slow"})).status == 200
    assert isinstance(contexts["before_resume"], BeforeResumeContext)
    await rt.wait("hk")
    await eventually(lambda: len(log) == 6)
    await rt.run("hk", "second", agent_type="slow")
    await eventually(lambda: len(log) == 9)
    assert (await rt.call("hk", "POST", "/retry", json={"agentType": "slow"})).status == 200
    assert isinstance(contexts["before_retry"], BeforeRetryContext)
    await rt.wait("hk")
    await eventually(lambda: len(log) == 12)
    assert log == [
        ("before_start",), ("after_start", "slow"), ("on_complete", "interrupted", None, None),
        ("before_resume",), ("after_resume", "slow"),
        ("on_complete", "completed", "resumed answer", None),
        ("before_start",), ("after_start", "slow"),
        ("on_complete", "failed", None, "The model call failed: model exploded"),
        ("before_retry",), ("after_retry", "slow"),
        ("on_complete", "completed", "retried answer", None),
    ]


async def test_before_hooks_can_refuse_with_their_own_response(make_runtime: Any) -> None:
    refusals: list[str] = []

    def refuse(ctx: Any) -> AbortResult | None:
        refusals.append(type(ctx).__name__)
        if ctx.request.headers.get("x-allow") == "yes":
            return None
        return AbortResult(response=json_response(
            {"error": {"code": "forbidden", "message": "not on my watch"}}, status=403))

    llm = ScriptedLLM(["fine", Turn(delay=30)], loop=True)
    rt = make_runtime([AGENT], llm, hooks=ServerHooks(before_start=refuse,
                                                      before_resume=refuse,
                                                      before_retry=refuse))
    response = await rt.call("no", "POST", "/start", json={**START, "sessionId": "no"})
    assert response.status == 403
    assert error_of(response) == {"code": "forbidden", "message": "not on my watch"}
    assert (await status_of(rt, "no"))["sessionId"] is None, "nothing was started"
    assert (await rt.get("no", "/history"))["chunks"] == []
    assert (await rt.call("no", "POST", "/interrupt", json={})).status == 409
    assert llm.requests == []
    with pytest.raises(AuthError, match="not on my watch"):
        await rt.backend.start("a", "hi", session_id="no")

    allowed = await rt.stub("yes").fetch(Request("POST", "/start", json={
        **START, "sessionId": "yes"}, headers={"X-Allow": "yes"}))
    assert allowed.status == 200
    await rt.wait("yes")
    for path in ("/resume", "/retry"):
        refused = await rt.call("yes", "POST", path, json={"agentType": "a"})
        assert refused.status == 403, path
    assert (await status_of(rt, "yes"))["status"] == "completed"
    assert refusals == ["BeforeStartContext"] * 3 + ["BeforeResumeContext", "BeforeRetryContext"]


async def test_a_before_start_hook_can_supersede_the_running_execution(
        make_runtime: Any) -> None:
    superseded: list[str | None] = []

    async def supersede(ctx: BeforeStartContext) -> None:
        state = ctx.execution_state
        if state.is_executing:
            superseded.append(state.run_id)
            assert state.get_handle() is not None and state.status == "running"
            await state.interrupt("superseded")
            assert not state.is_executing and state.status == "interrupted"

    llm = ScriptedLLM([Turn(delay=30, text="never"), "second answer"])
    rt = make_runtime([SLOW], llm, hooks=ServerHooks(before_start=supersede))
    first = (await rt.start("sup", "first", agent_type="slow")).json()["runId"]
    await eventually(lambda: llm.requests)  # inside the slow model call
    second = await rt.start("sup", "second", agent_type="slow")
    assert second.status == 200
    assert superseded == [first]
    status = await rt.wait("sup")
    assert status["status"] == "completed" and status["output"] == "second answer"
    chunks = await rt.chunks("sup")
    assert_contiguous(chunks)
    [interrupted] = of_type(chunks, "run_interrupted")
    assert interrupted["reason"] == "superseded" and interrupted["runId"] == first
    assert types(chunks).index("run_interrupted") < types(chunks).index("run_completed")
    messages = (await rt.get("sup", "/messages"))["messages"]
    assert [m["content"] for m in messages[:2]] == ["first", "second"]


async def test_transform_request_and_response(make_runtime: Any) -> None:
    def shape(raw: Any, env: Any) -> dict[str, Any]:
        return {"agentType": raw["agent"], "sessionId": raw["sid"],
                "input": {"message": f"{env['PREFIX']}{raw['prompt']}"}}

    async def decorate(response: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
        return {**response, "decorated": info}

    llm = ScriptedLLM(["ok"], loop=True)
    rt = make_runtime([SLOW], llm, env={"PREFIX": ">> "},
                      hooks=ServerHooks(transform_request=shape, transform_response=decorate))
    response = await rt.call("t1", "POST", "/start",
                             json={"agent": "slow", "sid": "t1", "prompt": "hi"})
    assert response.status == 200
    body = response.json()
    assert body["decorated"] == {"sessionId": "t1", "agentType": "slow"}
    assert body["status"] == "started" and body["runId"].startswith("run_")
    await rt.wait("t1")
    assert llm.requests[0].messages[0] == {"role": "user", "content": ">> hi"}
    bad = await rt.call("t2", "POST", "/start", json={"agent": "slow", "sid": "bad id!",
                                                      "prompt": "x"})
    assert bad.status == 400 and error_of(bad)["field"] == "sessionId"


async def test_custom_endpoints_are_checked_before_the_built_ins(make_runtime: Any) -> None:
    seen: list[EndpointContext] = []

    async def my_status(request: Request, ctx: EndpointContext) -> Any:
        return json_response({"custom": True, "executing": ctx.execution_state.is_executing})

    async def echo(request: Request, ctx: EndpointContext) -> Any:
        seen.append(ctx)
        return json_response({"method": request.method, "query": request.query,
                              "session": ctx.execution_state.session_id,
                              "status": ctx.execution_state.status, "env": ctx.env})

    rt = make_runtime([AGENT], two_step_llm(), env={"E": 1},
                      endpoints={"/status": my_status, "/my-endpoint": echo})
    assert (await rt.get("c1", "/status")) == {"custom": True, "executing": False}
    await rt.start("c1", agent_type="a")
    await rt.server("c1").execution.wait()
    answer = await rt.get("c1", "/my-endpoint?x=1")
    assert answer == {"method": "GET", "query": {"x": "1"}, "session": "c1",
                      "status": "completed", "env": {"E": 1}}
    assert seen[0].logger is not None
    assert (await rt.call("c1", "DELETE", "/my-endpoint")).status == 200
    unknown = error_of(await rt.call("c1", "GET", "/other"))
    assert "/my-endpoint" in unknown["message"]


async def test_a_custom_usage_store_receives_the_entries(make_runtime: Any) -> None:
    made: list[tuple[Any, str, Any]] = []

    class ListStore:
        def __init__(self) -> None:
            self.entries: list[dict[str, Any]] = []

        async def record_entry(self, entry: dict[str, Any]) -> None:
            self.entries.append(entry)

        async def get_entries(self, session_id: str) -> list[dict[str, Any]]:
            return [e for e in self.entries if e["sessionId"] == session_id]

        async def get_rollup(self, session_id: str) -> dict[str, Any]:
            return {"custom": len(await self.get_entries(session_id))}

    def factory(env: Any, session_id: str) -> ListStore:
        store = ListStore()
        made.append((env, session_id, store))
        return store

    rt = make_runtime([AGENT], two_step_llm(), usage_store=factory, env={"DB": "x"})
    response = await rt.call("u1", "POST", "/start", json={**START, "sessionId": "u1"})
    run_id = response.json()["runId"]
    await rt.wait("u1")
    assert [(env, sid) for env, sid, _ in made] == [({"DB": "x"}, "u1")]
    store = made[0][2]
    await eventually(lambda: len(store.entries) == 2)
    assert [(e["kind"], e["step"], e["runId"], e["sessionId"]) for e in store.entries] == [
        ("llm", 1, run_id, "u1"), ("llm", 2, run_id, "u1")]
    usage = await rt.get("u1", "/usage")
    assert usage["rollup"] == {"custom": 2}
    assert usage["entries"] == store.entries


async def test_a_probe_of_a_session_that_does_not_exist_stores_nothing(make_runtime: Any) -> None:
    rt = make_runtime([Agent(name="a", register=False)], ScriptedLLM(["hi"]))
    before = stored_files(rt.ns.storage)
    for path in ("/status", "/usage", "/checkpoints", "/history"):
        await rt.call("ghost", "GET", path)
    assert (await rt.call("ghost", "POST", "/resume", json={"agentType": "a"})).status == 404
    assert stored_files(rt.ns.storage) == before
    assert (await rt.run("real"))["status"] == "completed"  # a real session is kept
    assert len(stored_files(rt.ns.storage)) > len(before)
