"""Debugging a run on the real runtime: tool approvals, the step inspector, cost and
budgets, and editing a tool result before re-running what follows it."""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest
from helpers import Runtime, error_of, of_type

from helix_lab import Agent, LLMConfig, ToolContext, tool
from helix_lab.llm import ScriptedLLM, Turn, call
from helix_lab.llm.base import LLMRequest
from helix_lab.pricing import cost_usd
from helix_lab.runtime import Request

SENT: list[dict[str, Any]] = []


class Outbox(pydantic.BaseModel):
    sent: list[str] = []
    limit: int = 100


@tool(requires_approval=True)
def send_email(to: str, subject: str, ctx: ToolContext) -> str:
    """Send an email."""
    SENT.append({"to": to, "subject": subject})
    ctx.update_state(lambda s: s.sent.append(to))
    return f"sent to {to}"


@tool(requires_approval=lambda args, state: args["amount"] > state.limit)
def pay(amount: int) -> str:
    """Pay an amount."""
    return f"paid {amount}"


@tool
def lookup(name: str) -> str:
    """Look up an address."""
    return f"{name}@example.com"


def mail_agent(**options: Any) -> Agent:
    return Agent(name="mailer", tools=[send_email, pay, lookup], state_schema=Outbox,
                 register=False, **options)


@pytest.fixture(autouse=True)
def _clear_outbox() -> None:
    SENT.clear()


async def stored(rt: Runtime, sid: str) -> dict[str, Any]:
    """Everything a refused request must leave as it was."""
    status = await rt.get(sid, "/status")
    return {"status": status, "checkpoints": await rt.checkpoints(sid),
            "chunks": await rt.chunks(sid), "usage": await rt.get(sid, "/usage"),
            "pending": rt.server(sid).storage.pending.get(status.get("checkpointId"))}


async def approve(rt: Runtime, sid: str, *decisions: dict[str, Any]) -> Any:
    return await rt.call(sid, "POST", "/approve", json={"decisions": list(decisions)})


def email_turn(to: str = "bob@example.com", subject: str = "hi") -> Turn:
    return Turn(text="Sending.", tool_calls=[call("send_email", to=to, subject=subject)])


async def paused_for_approval(make_runtime: Any, llm: ScriptedLLM) -> tuple[Runtime, Any]:
    """A mailer run in session ``s1`` paused at its one risky call, and that pending call."""
    rt = make_runtime([mail_agent()], llm)
    await rt.run("s1", "mail bob", "mailer")
    [pending] = (await rt.get("s1", "/status"))["pendingApprovals"]
    return rt, pending


# -- approvals ------------------------------------------------------------------------------


async def test_a_risky_call_pauses_the_run_before_anything_runs(make_runtime: Any) -> None:
    llm = ScriptedLLM([Turn(tool_calls=[call("lookup", name="bob"),
                                        call("send_email", to="bob@example.com", subject="hi")]),
                       "done"])
    rt = make_runtime([mail_agent()], llm)
    status = await rt.run("s1", "mail bob", "mailer")
    assert status["status"] == "paused" and status["canResume"]
    assert status["reason"] == "approval_required"
    [pending] = status["pendingApprovals"]
    assert pending["toolName"] == "send_email"
    assert pending["input"] == {"to": "bob@example.com", "subject": "hi"}
    assert not rt.server("s1").is_executing  # nothing waits in a task
    chunks = await rt.chunks("s1")
    assert not of_type(chunks, "tool_start")  # not even the harmless lookup ran
    [required] = of_type(chunks, "approval_required")
    assert required["toolCallId"] == pending["toolCallId"]
    assert required["toolName"] == "send_email" and required["input"] == pending["input"]
    assert chunks[-1] == required
    assert (await rt.checkpoints("s1"))[-1]["status"] == "paused"
    assert rt.server("s1").execution_state.status == "paused"
    assert SENT == []


async def test_approve_with_edited_input_runs_and_records_exactly_that(
        make_runtime: Any) -> None:
    llm = ScriptedLLM([email_turn(), "done"])
    rt, pending = await paused_for_approval(make_runtime, llm)
    edited = {"to": "alice@example.com", "subject": "edited"}
    response = await approve(rt, "s1", {"toolCallId": pending["toolCallId"], "action": "edit",
                                        "input": edited})
    assert response.status == 200, response.body
    status = await rt.wait("s1")
    assert status["status"] == "completed" and status["output"] == "done"
    assert [edited] == SENT
    messages = (await rt.get("s1", "/messages"))["messages"]
    tool_use = next(b for b in messages[1]["content"] if b["type"] == "tool_use")
    assert tool_use["input"] == edited  # the history records what ran
    result = messages[2]["content"][0]
    assert result["content"] == "sent to alice@example.com" and not result["is_error"]
    # The model's next request carries the edited call and its result.
    last = llm.requests[-1].messages
    assert last[-2]["content"][-1]["input"] == edited
    assert last[-1]["content"][0]["content"] == "sent to alice@example.com"
    chunks = await rt.chunks("s1")
    [resolved] = of_type(chunks, "approval_resolved")
    assert resolved == {**resolved, "toolCallId": pending["toolCallId"], "action": "edit"}
    [start] = of_type(chunks, "tool_start")
    assert start["input"] == edited
    assert (await rt.get("s1", "/snapshot"))["state"]["sent"] == ["alice@example.com"]


async def test_deny_gives_the_model_an_error_result_with_the_message(
        make_runtime: Any) -> None:
    llm = ScriptedLLM([email_turn(), "I will not send it."])
    rt, pending = await paused_for_approval(make_runtime, llm)
    response = await approve(rt, "s1", {"toolCallId": pending["toolCallId"], "action": "deny",
                                        "message": "not to bob"})
    assert response.status == 200
    assert (await rt.wait("s1"))["status"] == "completed"
    assert SENT == []
    result = llm.requests[-1].messages[-1]["content"][0]
    assert result["tool_use_id"] == pending["toolCallId"] and result["is_error"]
    assert "not to bob" in result["content"]
    [end] = of_type(await rt.chunks("s1"), "tool_end")
    assert "not to bob" in end["error"] and end["denied"]


async def test_several_calls_in_one_step_are_decided_together(make_runtime: Any) -> None:
    llm = ScriptedLLM([Turn(tool_calls=[call("send_email", to="a@x.org", subject="1"),
                                        call("lookup", name="c"),
                                        call("send_email", to="b@x.org", subject="2")]),
                       "done"])
    rt = make_runtime([mail_agent()], llm)
    await rt.run("s1", "mail both", "mailer")
    first, second = (await rt.get("s1", "/status"))["pendingApprovals"]
    response = await approve(rt, "s1", {"toolCallId": first["toolCallId"], "action": "approve"})
    assert response.status == 200
    status = await rt.get("s1", "/status")
    assert status["status"] == "paused"  # the other call still waits; nothing ran
    assert [p["toolCallId"] for p in status["pendingApprovals"]] == [second["toolCallId"]]
    assert SENT == [] and len(llm.requests) == 1
    await approve(rt, "s1", {"toolCallId": second["toolCallId"], "action": "deny"})
    assert (await rt.wait("s1"))["status"] == "completed"
    assert SENT == [{"to": "a@x.org", "subject": "1"}]
    results = llm.requests[-1].messages[-1]["content"]
    assert [r["is_error"] for r in results] == [False, False, True]
    assert results[1]["content"] == "c@example.com"


async def test_a_predicate_decides_per_call(make_runtime: Any) -> None:
    llm = ScriptedLLM([Turn(tool_calls=[call("pay", amount=5)]),
                       Turn(tool_calls=[call("pay", amount=500)]), "done"])
    rt = make_runtime([mail_agent()], llm)
    status = await rt.run("s1", "pay", "mailer")
    assert status["status"] == "paused" and status["stepCount"] == 2
    assert status["pendingApprovals"][0]["input"] == {"amount": 500}


async def test_bad_decisions_are_refused_and_change_nothing(make_runtime: Any) -> None:
    llm = ScriptedLLM([email_turn(), "done"], loop=True)
    rt, pending = await paused_for_approval(make_runtime, llm)
    tcid = pending["toolCallId"]
    before = await stored(rt, "s1")
    cases = [
        ({"toolCallId": "toolu_nope", "action": "approve"}, 409, "unknown_tool_call", None),
        ({"toolCallId": tcid, "action": "edit", "input": {"to": "x"}}, 400, "bad_request",
         "decisions[0].input.subject"),
        ({"toolCallId": tcid, "action": "edit", "input": {"to": 3, "subject": "s"}}, 400,
         "bad_request", "decisions[0].input.to"),
        ({"toolCallId": tcid, "action": "edit", "input": {"to": "x", "subject": "s",
                                                          "bcc": "y"}},
         400, "bad_request", "decisions[0].input.bcc"),
        ({"toolCallId": tcid, "action": "edit"}, 400, "bad_request", "decisions[0].input"),
        ({"toolCallId": tcid, "action": "maybe"}, 400, "bad_request", None),
        ({"toolCallId": tcid, "action": "approve", "extra": 1}, 400, "bad_request", None),
    ]
    for decision, status, code, field in cases:
        response = await approve(rt, "s1", decision)
        assert response.status == status, (decision, response.body)
        error = error_of(response)
        assert error["code"] == code
        if field is not None:
            assert error["field"] == field and field in error["message"]
    for raw in (b"", b"{}", b'{"decisions": []}', b"[1]", b"{bad"):
        response = await rt.call("s1", "POST", "/approve", body=raw)
        assert response.status == 400, raw
    assert await stored(rt, "s1") == before
    # Approving a session that is not paused: 409, and nothing changes either.
    rt2 = make_runtime([mail_agent()], ScriptedLLM(["plain answer"]))
    await rt2.run("s2", "hello", "mailer")
    before = await stored(rt2, "s2")
    response = await approve(rt2, "s2", {"toolCallId": "t", "action": "approve"})
    assert response.status == 409 and error_of(response)["code"] == "not_paused"
    assert await stored(rt2, "s2") == before
    # A paused session is not resumed by a plain resume: that would skip the decision.
    response = await rt.call("s1", "POST", "/resume", json={"agentType": "mailer"})
    assert response.status == 409 and error_of(response)["code"] == "approval_pending"


async def test_a_paused_session_survives_a_restart_and_can_be_approved(
        make_runtime: Any) -> None:
    llm = ScriptedLLM([email_turn(), "done"])
    rt = make_runtime([mail_agent()], llm)
    await rt.run("s1", "mail bob", "mailer")
    restarted = rt.reopen()
    status = await restarted.get("s1", "/status")
    assert status["status"] == "paused" and len(status["pendingApprovals"]) == 1
    assert not any(c["type"] == "run_interrupted" for c in await restarted.chunks("s1"))
    handle = restarted.backend.handle("s1", "mailer")
    resumed = await handle.approve(input={"to": "carol@example.com", "subject": "later"})
    assert await resumed.result() == "done"
    assert SENT == [{"to": "carol@example.com", "subject": "later"}]


async def test_interrupt_and_abort_work_while_paused(make_runtime: Any) -> None:
    llm = ScriptedLLM([email_turn(), "done"])
    rt, pending = await paused_for_approval(make_runtime, llm)
    response = await rt.call("s1", "POST", "/interrupt", json={"reason": "later"})
    assert response.status == 200 and response.json()["status"] == "interrupted"
    assert of_type(await rt.chunks("s1"), "run_interrupted")[-1]["reason"] == "later"
    # Resuming brings the same call back for a decision; the model is not asked again.
    response = await rt.call("s1", "POST", "/resume", json={"agentType": "mailer"})
    assert response.status == 200 and response.json()["status"] == "paused"
    status = await rt.get("s1", "/status")
    assert status["status"] == "paused"
    assert status["pendingApprovals"][0]["toolCallId"] == pending["toolCallId"]
    assert len(llm.requests) == 1
    response = await rt.call("s1", "POST", "/abort", json={"reason": "no"})
    assert response.status == 200 and response.json()["status"] == "failed"
    assert not response.json()["canResume"]
    assert SENT == []


# -- the step inspector ---------------------------------------------------------------------


def counting_model(target: int = 3) -> ScriptedLLM:
    """Looks up ``n0``, ``n1``, ... one per step until ``target``, then answers."""

    def plan(request: LLMRequest) -> Turn:
        done = sum(1 for m in request.messages if isinstance(m["content"], list)
                   and any(b.get("type") == "tool_result" for b in m["content"]))
        if done < target:
            return Turn(thinking=f"step {done + 1}", text=f"Looking up n{done}.",
                        tool_calls=[call("lookup", name=f"n{done}")])
        last = request.messages[-1]["content"][0]["content"]
        return Turn(text=f"last result: {last}")

    return ScriptedLLM([plan], loop=True)


async def test_a_step_shows_what_the_model_saw_and_returned(make_runtime: Any) -> None:
    llm = counting_model()
    rt = make_runtime([mail_agent(system_prompt="Be careful.")], llm)
    await rt.run("s1", "count", "mailer")
    view = await rt.get("s1", "/steps/2")
    assert view["step"] == 2
    sent = llm.requests[1]
    assert view["request"]["messages"] == sent.messages
    assert view["request"]["system"] == "Be careful." == sent.system
    assert view["request"]["tools"] == sent.tools
    assert view["request"]["messageCount"] == 3 and view["request"]["messagesOmitted"] == 0
    assert view["response"]["text"] == "Looking up n1."
    assert view["response"]["thinking"] == "step 2"
    [tool_call] = view["response"]["toolCalls"]
    assert tool_call["toolName"] == "lookup" and tool_call["input"] == {"name": "n1"}
    assert view["toolResults"] == [{"toolCallId": tool_call["toolCallId"],
                                    "output": "n1@example.com", "isError": False}]
    entries = [e for e in (await rt.get("s1", "/usage"))["entries"] if e["step"] == 2]
    assert view["usage"]["inputTokens"] == entries[0]["inputTokens"] > 0
    assert view["usage"]["costUsd"] == pytest.approx(entries[0]["costUsd"])
    assert entries[0]["costUsd"] > 0
    timing = view["timing"]
    assert timing["startedAt"] > 0 and timing["durationMs"] >= 0
    assert 0 <= timing["firstTokenMs"] <= timing["durationMs"]
    # The newest messages only, when asked for fewer.
    short = await rt.get("s1", "/steps/3?messages=2")
    assert short["request"]["messages"] == llm.requests[2].messages[-2:]
    assert short["request"]["messagesOmitted"] == 3
    final = await rt.get("s1", "/steps/4")
    assert final["response"]["text"] == "last result: n2@example.com"
    assert final["toolResults"] == []


async def test_unknown_steps_are_404_and_bad_ones_400(make_runtime: Any) -> None:
    rt = make_runtime([mail_agent()], counting_model(1))
    await rt.run("s1", "count", "mailer")
    for step in (0, 3, 99):
        response = await rt.call("s1", "GET", f"/steps/{step}")
        assert response.status == 404 and error_of(response)["code"] == "step_not_found"
    for path in ("/steps/abc", "/steps/2?messages=-1"):
        assert (await rt.call("s1", "GET", path)).status == 400
    assert (await rt.call("s1", "GET", "/steps/1?checkpointId=nope")).status == 404
    assert (await rt.call("nobody", "GET", "/steps/1")).status == 404


async def test_checkpoint_id_picks_the_branch(make_runtime: Any) -> None:
    llm = counting_model(3)
    rt = make_runtime([mail_agent()], llm)
    await rt.run("s1", "count", "mailer")
    first = await rt.checkpoints("s1")
    step1 = next(c for c in first if c["step"] == 1)
    response = await rt.call("s1", "POST", "/resume", json={"agentType": "mailer", "options": {
        "mode": "branch", "checkpointId": step1["checkpointId"],
        "appendMessages": [{"role": "user", "content": "again"}]}})
    assert response.status == 200
    await rt.wait("s1")
    original_head = next(c for c in first if c["step"] == 4)
    old = await rt.get("s1", f"/steps/3?checkpointId={original_head['checkpointId']}")
    new = await rt.get("s1", "/steps/3")
    assert old["branch"] == 0 and new["branch"] == 1
    assert old["request"]["messageCount"] == 5 and new["request"]["messageCount"] == 6
    shared = await rt.get("s1", "/steps/1")  # before the fork: the original step
    assert shared["branch"] == 0 and shared["checkpointId"] == step1["checkpointId"]
    early = await rt.call("s1", "GET", f"/steps/2?checkpointId={step1['checkpointId']}")
    assert early.status == 404  # step 2 came after that checkpoint


async def test_an_approved_step_shows_what_was_asked_and_what_ran(make_runtime: Any) -> None:
    rt = make_runtime([mail_agent()], ScriptedLLM([email_turn(), "done"]))
    await rt.run("s1", "mail", "mailer")
    [pending] = (await rt.get("s1", "/status"))["pendingApprovals"]
    await approve(rt, "s1", {"toolCallId": pending["toolCallId"], "action": "edit",
                             "input": {"to": "z@x.org", "subject": "hi"}})
    await rt.wait("s1")
    view = await rt.get("s1", "/steps/1")
    assert view["response"]["toolCalls"][0]["input"] == {"to": "z@x.org", "subject": "hi"}
    assert view["approvals"] == [{
        "toolCallId": pending["toolCallId"], "toolName": "send_email", "action": "edit",
        "modelInput": {"to": "bob@example.com", "subject": "hi"},
        "input": {"to": "z@x.org", "subject": "hi"}}]
    assert view["usage"]["inputTokens"] > 0


# -- cost and budgets ------------------------------------------------------------------------


async def test_usage_is_priced_and_rolled_up_by_step_model_and_kind(make_runtime: Any) -> None:
    rt = make_runtime([mail_agent()], counting_model(2))
    await rt.run("s1", "count", "mailer")
    usage = await rt.get("s1", "/usage")
    for entry in usage["entries"]:
        assert entry["costUsd"] == pytest.approx(cost_usd(
            entry["model"], input_tokens=entry["inputTokens"],
            output_tokens=entry["outputTokens"]))
    rollup = usage["rollup"]
    assert set(rollup["byStep"]) == {"1", "2", "3"}
    total = sum(e["costUsd"] for e in usage["entries"])
    assert rollup["total"]["costUsd"] == pytest.approx(total)
    assert rollup["byModel"]["claude-sonnet-5-5"]["costUsd"] == pytest.approx(total)
    assert rollup["byKind"]["llm"]["unpricedCalls"] == 0
    chunks = of_type(await rt.chunks("s1"), "usage")
    assert [c["costUsd"] for c in chunks] == [e["costUsd"] for e in usage["entries"]]


async def test_an_unknown_model_is_unpriced_unless_given_a_price(make_runtime: Any) -> None:
    unpriced = mail_agent(llm_config=LLMConfig(model="llama3.2"))
    rt = make_runtime([unpriced], counting_model(1))
    await rt.run("s1", "count", "mailer")
    usage = await rt.get("s1", "/usage")
    assert all(e["costUsd"] is None for e in usage["entries"])
    assert usage["rollup"]["total"]["costUsd"] is None
    assert usage["rollup"]["total"]["unpricedCalls"] == 2
    priced = mail_agent(llm_config=LLMConfig(model="llama3.2",
                                             pricing={"input": 1.0, "output": 2.0}))
    rt2 = make_runtime([priced], counting_model(1))
    await rt2.run("s2", "count", "mailer")
    entries = (await rt2.get("s2", "/usage"))["entries"]
    assert [e["costUsd"] for e in entries] == [
        pytest.approx((e["inputTokens"] * 1.0 + e["outputTokens"] * 2.0) / 1e6) for e in entries]


async def test_a_budget_interrupts_at_the_step_that_passes_it_and_resumes_higher(
        make_runtime: Any) -> None:
    llm = counting_model(6)
    # Each scripted step costs well under a cent; the budget is passed within a few steps.
    agent = mail_agent(llm_config=LLMConfig(max_cost_usd=0.0015))
    rt = make_runtime([agent], llm)
    status = await rt.run("s1", "count", "mailer")
    assert status["status"] == "interrupted" and status["canResume"]
    stop = of_type(await rt.chunks("s1"), "run_interrupted")[-1]
    assert stop["reason"] == "budget_exceeded" and stop["budgetUsd"] == 0.0015
    entries = (await rt.get("s1", "/usage"))["entries"]
    spent = sum(e["costUsd"] for e in entries)
    assert stop["spentUsd"] == pytest.approx(spent) and spent > 0.0015
    assert spent - entries[-1]["costUsd"] <= 0.0015  # the last step is the one that passed it
    steps = status["stepCount"]
    assert 1 <= steps < 7
    # Resuming with the same budget stops again at once; with a higher one it finishes.
    response = await rt.call("s1", "POST", "/resume", json={"agentType": "mailer"})
    assert response.status == 200
    assert (await rt.wait("s1"))["stepCount"] == steps
    response = await rt.call("s1", "POST", "/resume", json={"agentType": "mailer", "options": {"maxCostUsd": 1.0}})
    assert response.status == 200
    done = await rt.wait("s1")
    assert done["status"] == "completed" and done["output"] == "last result: n5@example.com"
    bad = await rt.call("s1", "POST", "/resume", json={"agentType": "mailer", "options": {"maxCostUsd": -1}})
    assert bad.status == 400


# -- edit a tool result, re-run downstream ---------------------------------------------------


async def test_editing_a_tool_result_reruns_only_what_follows(make_runtime: Any) -> None:
    llm = counting_model(3)
    rt = make_runtime([mail_agent()], llm)
    await rt.run("s1", "count", "mailer")
    assert len(llm.requests) == 4
    step1 = await rt.get("s1", "/steps/1")
    tcid = step1["toolResults"][0]["toolCallId"]
    head = (await rt.get("s1", "/status"))["checkpointId"]
    response = await rt.call("s1", "POST", "/resume", json={"agentType": "mailer", "options": {
        "mode": "branch", "checkpointId": head,
        "editToolResults": [{"toolCallId": tcid, "output": {"edited": True}}]}})
    assert response.status == 200, response.body
    status = await rt.wait("s1")
    assert status["status"] == "completed" and status["branch"] == 1
    # Steps 2, 3 and the answer ran again; step 1 did not.
    assert len(llm.requests) == 7
    rerun = llm.requests[4].messages
    assert rerun[:2] == llm.requests[1].messages[:2]
    assert rerun[2]["content"][0]["content"] == json.dumps({"edited": True})
    assert (await rt.get("s1", "/steps/1"))["checkpointId"] == step1["checkpointId"]
    assert (await rt.get("s1", "/steps/2"))["branch"] == 1
    resumed = of_type(await rt.chunks("s1"), "run_resumed")[-1]
    assert resumed["editedToolResults"] == [tcid]
    # The original branch is as it was.
    old = await rt.get("s1", f"/steps/2?checkpointId={head}")
    assert old["request"]["messages"][2]["content"][0]["content"] == "n0@example.com"


async def test_bad_tool_result_edits_are_400_and_store_nothing(make_runtime: Any) -> None:
    rt = make_runtime([mail_agent()], counting_model(2))
    await rt.run("s1", "count", "mailer")
    checkpoints = await rt.checkpoints("s1")
    step1 = next(c for c in checkpoints if c["step"] == 1)
    later = (await rt.get("s1", "/steps/2"))["toolResults"][0]["toolCallId"]
    first = (await rt.get("s1", "/steps/1"))["toolResults"][0]["toolCallId"]
    before = await stored(rt, "s1")
    head = before["status"]["checkpointId"]
    cases = [
        (step1["checkpointId"], [{"toolCallId": later, "output": "x"}]),  # after that point
        (head, [{"toolCallId": "toolu_nope", "output": "x"}]),
        (head, [{"toolCallId": first, "output": "x"}, {"toolCallId": later, "output": "y"}]),
        (head, [{"toolCallId": first, "output": "x"}, {"toolCallId": first, "output": "y"}]),
        (head, []),
        (head, [{"toolCallId": first}]),
        (head, [{"toolCallId": first, "output": "x", "extra": 1}]),
    ]
    for checkpoint, edits in cases:
        response = await rt.call("s1", "POST", "/resume", json={"agentType": "mailer", "options": {
            "mode": "branch", "checkpointId": checkpoint, "editToolResults": edits}})
        assert response.status == 400, (edits, response.body)
        assert "editToolResults" in error_of(response)["message"]
    response = await rt.call("s1", "POST", "/resume", json={"agentType": "mailer", "options": {
        "editToolResults": [{"toolCallId": first, "output": "x"}]}})
    assert response.status == 400
    assert await stored(rt, "s1") == before
    again = await rt.call("s1", "POST", "/resume", json={"agentType": "mailer", "options": {
        "mode": "branch", "checkpointId": head,
        "appendMessages": [{"role": "user", "content": "more"}]}})
    assert again.status == 200 and (await rt.wait("s1"))["branch"] == 1  # no branch was used


async def test_retry_of_a_paused_step_asks_the_model_again(make_runtime: Any) -> None:
    llm = ScriptedLLM([email_turn(), Turn(tool_calls=[call("lookup", name="x")]), "done"])
    rt = make_runtime([mail_agent()], llm)
    await rt.run("s1", "mail bob", "mailer")
    response = await rt.call("s1", "POST", "/retry", json={"agentType": "mailer"})
    assert response.status == 200
    status = await rt.wait("s1")
    assert status["status"] == "completed" and status["stepCount"] == 2
    assert SENT == [] and len(llm.requests) == 3
    assert llm.requests[1].messages == llm.requests[0].messages  # step 1, asked again


async def test_a_fork_of_a_paused_step_with_a_new_message_asks_the_model_again(
        make_runtime: Any) -> None:
    llm = ScriptedLLM([email_turn(), "I will wait, as you say."])
    rt = make_runtime([mail_agent()], llm)
    await rt.run("s1", "mail bob", "mailer")
    paused = (await rt.get("s1", "/status"))["checkpointId"]
    response = await rt.call("s1", "POST", "/resume", json={"agentType": "mailer", "options": {
        "mode": "branch", "checkpointId": paused,
        "appendMessages": [{"role": "user", "content": "Actually, wait."}]}})
    assert response.status == 200
    status = await rt.wait("s1")
    assert status["status"] == "completed" and status["stepCount"] == 1  # step 1 again
    assert llm.requests[1].messages[-1] == {"role": "user", "content": "Actually, wait."}
    assert SENT == []


async def test_an_interrupt_before_the_approved_step_runs_keeps_it(make_runtime: Any) -> None:
    llm = ScriptedLLM([email_turn(), "done"])
    rt, pending = await paused_for_approval(make_runtime, llm)
    server = rt.server("s1")
    # Straight to the object, so nothing else runs between the answer and the next line:
    # the approval run has been launched but has not taken its first step.
    response = await server.fetch(Request("POST", "/approve", json={"decisions": [
        {"toolCallId": pending["toolCallId"], "action": "edit",
         "input": {"to": "z@x.org", "subject": "hi"}}]}))
    assert response.status == 200
    assert server.execution is not None and server.execution.pending is not None
    server.execution.interrupt_reason = "stopped at once"  # what interrupt() sets first
    status = await rt.wait("s1")
    assert status["status"] == "interrupted" and SENT == []
    response = await rt.call("s1", "POST", "/resume", json={"agentType": "mailer"})
    assert response.status == 200
    status = await rt.wait("s1")
    assert status["status"] == "completed" and SENT == [{"to": "z@x.org", "subject": "hi"}]
    assert len(llm.requests) == 2  # the model was not asked for step 1 again


async def test_the_model_that_answered_is_the_one_priced(make_runtime: Any) -> None:
    from helix_lab.llm.offline import OFFLINE_MODEL, OfflineLLM

    # The agent names Claude, but the offline stand-in answers: no price, never Claude's.
    rt = make_runtime([mail_agent()], OfflineLLM())
    await rt.run("s1", "Who is Bob?", "mailer")
    usage = await rt.get("s1", "/usage")
    assert {e["model"] for e in usage["entries"]} == {OFFLINE_MODEL}
    assert usage["rollup"]["total"]["costUsd"] is None
    # A served model named on the usage event, with a price given for it.
    served = mail_agent(llm_config=LLMConfig(pricing={"input": 1.0, "output": 1.0}))
    llm = ScriptedLLM([Turn(text="hi", usage={"input_tokens": 500_000, "output_tokens": 0,
                                             "model": "llama3.2"})])  # type: ignore[dict-item]
    rt2 = make_runtime([served], llm)
    await rt2.run("s2", "hello", "mailer")
    [entry] = (await rt2.get("s2", "/usage"))["entries"]
    assert entry["model"] == "llama3.2" and entry["costUsd"] == pytest.approx(0.5)
