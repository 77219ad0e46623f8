"""One end-to-end scenario, run against any :class:`~helix_lab.client.Backend`.

This module is also the agents module that ``helix serve --agents e2e_scenario`` loads in
the remote tests, so both backends run the very same agent and model:

- ``stepper`` calls its ``work`` tool once per step, ``n = 1, 2, ...``, until it has done
  ``steps=N`` of them (N comes from the user message), then answers
  ``"finished N steps"``. The plan is read from the messages alone, so a resumed, retried
  or forked run carries on exactly where its checkpoint left off.
- ``outbox`` looks an address up, then sends two emails with ``send_email``, a tool that
  needs approval, and reports what happened (:func:`run_debug_scenario` drives it).
- ``llm_adapter`` is the deterministic model behind both (the entry point picks it up).
  A message with ``hold=K gate=PATH`` makes it wait once per session, before step K,
  until the file PATH exists: the scenario stops a run there whatever the machine's
  speed (an interrupt cuts the waiting model call), then creates the file. Once is
  enough, and it also serves ``helix serve --engine pyodide``, whose agents cannot see
  the file: the run that goes on after the interrupt is not held again.

It imports neither pytest nor anything heavy: the serve subprocess imports it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from helix_lab import Agent, AgentRegistry, ToolContext, tool
from helix_lab.errors import BackendError, BadRequestError, ConflictError, NotFoundError
from helix_lab.llm.base import LLMRequest
from helix_lab.llm.scripted import ScriptedLLM, Turn, call
from helix_lab.runtime.chunks import CHUNK_TYPES

__all__ = ["Gate", "interrupt_held", "llm_adapter", "outbox", "registry", "run_debug_scenario",
           "run_in_kernel", "run_kill_scenario", "run_scenario", "stepper", "summary_of", "wait_for_file"]

WORK_DELAY = 0.04
CHUNK_DELAY = 0.005
HOLD_LIMIT = 60.0


class Progress(BaseModel):
    done: list[int] = []
    label: str = ""


@tool
async def work(n: int, ctx: ToolContext) -> str:
    """Do unit of work number ``n``."""
    await asyncio.sleep(WORK_DELAY)
    ctx.update_state(lambda s: s.done.append(n))
    await ctx.emit({"type": "custom", "name": "progress", "data": {"n": n}})
    return f"did {n}"


stepper = Agent(name="stepper", system_prompt="Work through the steps.", tools=[work],
                state_schema=Progress, max_steps=200, register=False)


class Mail(BaseModel):
    sent: list[str] = []


@tool
def lookup(name: str) -> str:
    """The email address of a person."""
    return f"{name}@example.com"


@tool(requires_approval=True)
def send_email(to: str, subject: str, ctx: ToolContext) -> str:
    """Send an email (a person approves each one first)."""
    ctx.update_state(lambda s: s.sent.append(to))
    return f"sent to {to}: {subject}"


outbox = Agent(name="outbox", system_prompt="Send the emails you are asked to send.",
               tools=[lookup, send_email], state_schema=Mail, register=False)
registry = AgentRegistry()
registry.register(stepper)
registry.register(outbox)


def _outbox_plan(request: LLMRequest) -> Turn:
    """lookup(bob), then send_email to what it found, then to carol, then a report."""
    results = [block["content"] for message in request.messages
               if isinstance(message["content"], list)
               for block in message["content"] if block.get("type") == "tool_result"]
    if not results:
        return Turn(thinking="Find Bob first.", tool_calls=[call("lookup", name="bob")])
    if len(results) == 1:
        return Turn(text="Writing to Bob.",
                    tool_calls=[call("send_email", to=results[0], subject="Hello Bob")])
    if len(results) == 2:
        return Turn(text="Now Carol.", tool_calls=[
            call("send_email", to="carol@example.com", subject="Hello Carol")])
    return Turn(text="Report: " + " | ".join(results[1:]))


def _progress(request: LLMRequest) -> tuple[int, int, str]:
    """The steps asked for, the steps done since, and the last user message."""
    target, done, asked = 0, 0, ""
    for message in request.messages:
        content = message["content"]
        if message["role"] == "user" and isinstance(content, str):
            found = re.search(r"steps=(\d+)", content)
            target, done, asked = (int(found.group(1)) if found else 1), 0, content
        elif isinstance(content, list):
            done += sum(1 for block in content if block.get("type") == "tool_result")
    return target, done, asked


def _plan(request: LLMRequest) -> Turn:
    target, done, _ = _progress(request)
    if done < target:
        return Turn(thinking=f"Step {done + 1} of {target}.",
                    tool_calls=[call("work", n=done + 1)])
    return Turn(text=f"finished {target} steps")


_HELD: set[str] = set()
"""The sessions held once already (in the process that runs the model)."""


async def _held(request: LLMRequest, session_id: str) -> None:
    """Wait before step K of a ``hold=K gate=PATH`` message until PATH exists, once."""
    _, done, asked = _progress(request)
    found = re.search(r"hold=(\d+) gate=(\S+)", asked)
    if found is None or done + 1 != int(found.group(1)) or session_id in _HELD:
        return
    _HELD.add(session_id)  # before the wait, which an interrupt may cut
    await wait_for_file(Path(found.group(2)))


async def wait_for_file(path: Path) -> None:
    """Until ``path`` exists, or for ``HOLD_LIMIT`` seconds (only a hung test waits so long)."""
    limit = time.monotonic() + HOLD_LIMIT
    # Another process (the test, when this runs under ``helix serve``) creates the file,
    # so no in-process event can say so; a stat every 10 ms costs nothing.
    while time.monotonic() < limit:
        if path.exists():  # noqa: ASYNC240
            return
        await asyncio.sleep(0.01)


class StepperLLM:
    """The deterministic model of ``stepper``: see the module docstring."""

    __test__ = False

    def __init__(self, plan: Any = _plan, session_id: str = "") -> None:
        self.plan, self.session_id = plan, session_id

    async def stream(self, request: LLMRequest) -> Any:
        await _held(request, self.session_id)
        player = ScriptedLLM([self.plan(request)], chunk_delay=CHUNK_DELAY)
        async for event in player.stream(request):
            yield event


def llm_adapter(env: Any, context: Any) -> StepperLLM:
    return StepperLLM(_outbox_plan if context.agent_type == "outbox" else _plan,
                      context.session_id)


def run_in_kernel(scenario: Callable[[Any], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """``scenario``'s summary on an in-kernel LocalBackend (the reference every remote
    tier must match), on a fresh in-memory namespace and event loop."""
    from helix_lab import LocalBackend, create_agent_server
    from helix_lab.runtime import LocalNamespace

    async def run() -> dict[str, Any]:
        server = create_agent_server(llm_adapter=llm_adapter, agents=registry)
        namespace = LocalNamespace(server, storage=":memory:")
        async with LocalBackend(namespace) as backend:
            summary = await scenario(backend)
        await namespace.aclose()
        return summary

    return asyncio.run(run())


# -- the scenario -----------------------------------------------------------------------------


def contiguous(chunks: list[dict[str, Any]], start: int = 1) -> list[int]:
    sequences = [c["sequence"] for c in chunks]
    assert sequences == list(range(start, start + len(sequences))), sequences
    return sequences


async def wait_for_step(handle: Any, step: int, from_sequence: int = 0) -> list[dict[str, Any]]:
    """Read the stream until a checkpoint of ``step`` (or later) is committed."""
    seen: list[dict[str, Any]] = []
    async with contextlib.aclosing(handle.stream(from_sequence)) as stream:
        async for chunk in stream:
            seen.append(chunk)
            if chunk["type"] == "checkpoint" and chunk["step"] >= step:
                break
    return seen


class Gate:
    """A file whose existence lets a ``hold=K gate=PATH`` run go on past step K-1."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="helix-gate-")) / "open"

    def open(self) -> None:
        self.path.touch()


async def interrupt_held(handle: Any, gate: Gate, reason: str = "interrupted") -> dict[str, Any]:
    """Interrupt a run held at its gate, then open the gate for what follows.

    On the seed's runtime the interrupt cuts the held model call. The Workflows approach
    stops at the next step boundary instead, so there the held step must be let go once
    the interrupt is on its way (its flag is then read before the step after)."""
    stopping = asyncio.ensure_future(handle.interrupt(reason))
    if (await handle.status()).get("approach") == "workflows":
        gate.open()
    status: dict[str, Any] = await stopping
    gate.open()
    return status


async def _raises(kind: type[BackendError], coro: Any) -> BackendError:
    try:
        await coro
    except kind as exc:
        return exc
    raise AssertionError(f"expected {kind.__name__}")


async def run_scenario(backend: Any, tag: str | None = None, *,
                       forks: bool = True) -> dict[str, Any]:
    """Drive every control of a session on ``backend``; returns a backend-neutral summary.

    ``forks=False`` leaves out time travel (a fork from a checkpoint with a changed
    state), which the Workflows approach does not have: its retry restarts the instance
    from a step instead."""
    tag = tag or secrets.token_hex(3)
    assert "stepper" in await backend.agents()

    # A full run, streamed: ordered, contiguous chunks from run_started to run_completed.
    h = await backend.start("stepper", "steps=3", session_id=f"basic-{tag}")
    chunks = [c async for c in h.stream()]
    contiguous(chunks)
    assert chunks[0]["type"] == "run_started" and chunks[-1]["type"] == "run_completed"
    assert {c["type"] for c in chunks} <= CHUNK_TYPES
    assert [c["data"]["n"] for c in chunks if c["type"] == "custom"] == [1, 2, 3]
    assert await h.result() == "finished 3 steps"
    assert await h.get_state() == {"done": [1, 2, 3], "label": ""}
    usage = await h.usage()
    assert usage["rollup"]["total"]["totalTokens"] > 0 and len(usage["entries"]) == 4
    messages = await h.messages()
    assert [m["role"] for m in messages] == ["user"] + ["assistant", "user"] * 3 + ["assistant"]
    snapshot = await h.snapshot()
    assert snapshot["status"] == "completed" and snapshot["state"]["done"] == [1, 2, 3]
    checkpoints = await h.checkpoints()
    assert [c["step"] for c in checkpoints] == [0, 1, 2, 3, 4]
    assert (await h.history(0, limit=5))["chunks"] == chunks[:5]

    if forks:
        await _time_travel(h, checkpoints)
    return await _continue_scenario(backend, h, tag, chunks, messages, checkpoints)


async def _time_travel(h: Any, checkpoints: list[dict[str, Any]]) -> None:
    """Fork from step 1 with a changed state; the original stays as it was."""
    first = next(c for c in checkpoints if c["step"] == 1)
    before = await h.checkpoint(first["checkpointId"])
    fork = await h.resume("from_checkpoint", checkpoint_id=first["checkpointId"],
                          modify_state={"label": "forked"})
    assert await fork.result() == "finished 3 steps"
    assert await fork.get_state() == {"done": [1, 2, 3], "label": "forked"}
    after = await h.checkpoint(first["checkpointId"])
    assert after["state"] == before["state"] == {"done": [1], "label": ""}
    branches = sorted({c["branch"] for c in await h.checkpoints()})
    assert len(branches) == 2


async def _continue_scenario(backend: Any, h: Any, tag: str, chunks: list[dict[str, Any]],
                             messages: list[dict[str, Any]],
                             checkpoints: list[dict[str, Any]]) -> dict[str, Any]:
    # Retry from the start with a new message: a new branch from the root.
    again = await h.retry("from_start", message="steps=2")
    assert await again.result() == "finished 2 steps"
    assert (await again.get_state())["done"] == [1, 2]

    # Interrupt mid-run, then resume: nothing lost, nothing done twice. Each run below
    # waits before a step until its gate opens, so it is still running when stopped.
    gate = Gate()
    h2 = await backend.start("stepper", f"steps=12 hold=3 gate={gate.path}",
                             session_id=f"pause-{tag}")
    await wait_for_step(h2, 2)
    status = await interrupt_held(h2, gate, "pause")
    assert status["status"] == "interrupted" and status["canResume"]
    assert await h2.can_resume()
    paused_at = len((await h2.get_state())["done"])
    assert 2 <= paused_at < 12
    h3 = await h2.resume()
    assert await h3.result() == "finished 12 steps"
    assert (await h3.get_state())["done"] == list(range(1, 13))
    everything = [c async for c in h2.stream()]
    contiguous(everything)
    kinds = [c["type"] for c in everything]
    assert kinds.count("run_interrupted") == 1 and kinds.count("run_resumed") == 1

    # Interrupt, then retry from the checkpoint.
    gate = Gate()
    h4 = await backend.start("stepper", f"steps=8 hold=2 gate={gate.path}",
                             session_id=f"retry-{tag}")
    await wait_for_step(h4, 1)
    assert (await interrupt_held(h4, gate))["status"] == "interrupted"
    h5 = await h4.retry("from_checkpoint")
    assert await h5.result() == "finished 8 steps"
    assert (await h5.get_state())["done"] == list(range(1, 9))

    # Abort: failed for good.
    gate = Gate()
    h6 = await backend.start("stepper", f"steps=50 hold=2 gate={gate.path}",
                             session_id=f"abort-{tag}")
    await wait_for_step(h6, 1)
    busy = await _raises(ConflictError, backend.start("stepper", "again",
                                                      session_id=f"abort-{tag}"))
    assert busy.code == "already_executing"
    aborted = await h6.abort("enough")
    gate.open()
    assert aborted["status"] == "failed" and not aborted["canResume"]
    assert not await h6.can_resume()
    await _raises(ConflictError, h6.resume())
    tail = [c async for c in h6.stream()]
    contiguous(tail)
    assert tail[-1]["type"] == "run_failed"

    # Errors name what is wrong.
    missing = await _raises(NotFoundError, backend.start("nobody", "hi"))
    assert "stepper" in str(missing)

    return summary_of(chunks, messages, checkpoints)


async def run_kill_scenario(backend: Any, kill: Callable[[], Any], restart: Callable[[], Any],
                            deadline: float = 60) -> None:
    """A host killed mid-run and ``restart``-ed on the same storage: the open stream
    reconnects and ends with ``host_restarted``, nothing committed is lost, and the run
    resumes to its end. ``deadline`` only catches a hang of the reconnected stream.

    The run is held before step 6 until after the kill, so the kill lands mid-run however
    slowly the test reads the stream."""
    gate = Gate()
    handle = await backend.start("stepper", f"steps=30 hold=6 gate={gate.path}",
                                 session_id="survivor")
    seen: list[dict[str, Any]] = []
    reached = asyncio.Event()

    async def watch() -> None:
        async for chunk in handle.stream():
            seen.append(chunk)
            if chunk["type"] == "checkpoint" and chunk["step"] >= 4:
                reached.set()

    watcher = asyncio.create_task(watch())
    await asyncio.wait_for(reached.wait(), 60)
    kill()
    gate.open()  # the restarted host holds nothing back
    at_kill = list(seen)
    committed = [c["checkpointId"] for c in at_kill if c["type"] == "checkpoint"]
    restarted = restart()  # same port, same storage
    if inspect.isawaitable(restarted):
        await restarted
    await asyncio.wait_for(watcher, deadline)  # the open stream reconnected and ended

    contiguous(seen)
    assert seen[: len(at_kill)] == at_kill
    assert seen[-1]["type"] == "run_interrupted" and seen[-1]["reason"] == "host_restarted"
    status = await handle.status()
    assert status["status"] == "interrupted" and status["canResume"]
    assert set(committed) <= {c["checkpointId"] for c in await handle.checkpoints()}
    done = (await handle.get_state())["done"]
    assert done == list(range(1, len(done) + 1)) and len(done) >= 4

    resumed = await handle.resume()
    assert await resumed.result() == "finished 30 steps"
    assert (await resumed.get_state())["done"] == list(range(1, 31))
    everything = [c async for c in handle.stream()]
    contiguous(everything)
    assert everything[: len(seen)] == seen


async def run_debug_scenario(backend: Any, tag: str | None = None) -> dict[str, Any]:
    """Approve with an edit, deny, inspect, a budget, and edit a tool result and re-run:
    every debugging control through ``backend``; returns a backend-neutral summary."""
    tag = tag or secrets.token_hex(3)
    h = await backend.start("outbox", "Email Bob and Carol.", session_id=f"mail-{tag}")
    assert [c["type"] async for c in h.stream()][-1] == "approval_required"
    [pending] = await h.pending_approvals()
    assert pending["toolName"] == "send_email" and pending["step"] == 2
    assert pending["input"] == {"to": "bob@example.com", "subject": "Hello Bob"}
    status = await h.status()
    assert status["status"] == "paused" and status["canResume"] and not status["isExecuting"]
    bad = await _raises(BadRequestError, h.approve(pending["toolCallId"],
                                                   input={"to": "robert@example.com"}))
    assert bad.details["field"] == "decisions[0].input.subject"
    unknown = await _raises(ConflictError, h.approve("toolu_unknown"))
    assert unknown.code == "unknown_tool_call"
    assert await h.status() == status  # the refused decisions changed nothing

    # Approve with edited arguments: exactly those run and are recorded.
    edited = {"to": "robert@example.com", "subject": "Hello Robert"}
    await h.approve(input=edited)
    assert [c["type"] async for c in h.stream(status["lastSequence"])][-1] == (
        "approval_required")
    [carol] = await h.pending_approvals()
    assert carol["input"]["to"] == "carol@example.com" and carol["step"] == 3
    assert (await h.get_state())["sent"] == ["robert@example.com"]

    # Deny the next one: the model is told, with the message.
    await h.deny("Carol asked not to be emailed.")
    report = await h.result()
    assert report == ("Report: sent to robert@example.com: Hello Robert | Denied by the user: "
                      "Carol asked not to be emailed.")
    assert (await h.get_state())["sent"] == ["robert@example.com"]
    chunks = [c async for c in h.stream()]
    contiguous(chunks)
    resolved = [(c["toolCallId"], c["action"]) for c in chunks
                if c["type"] == "approval_resolved"]
    assert resolved == [(pending["toolCallId"], "edit"), (carol["toolCallId"], "deny")]
    refused = await _raises(ConflictError, h.approve(carol["toolCallId"]))
    assert refused.code == "not_paused"

    # Inspect: what the model saw and returned at each step.
    step2 = await h.step(2)
    assert step2["response"]["toolCalls"][0]["input"] == edited
    assert step2["approvals"][0]["modelInput"]["to"] == "bob@example.com"
    assert step2["toolResults"][0]["output"] == "sent to robert@example.com: Hello Robert"
    assert step2["request"]["system"] == outbox.system_prompt
    assert [t["name"] for t in step2["request"]["tools"]] == ["lookup", "send_email"]
    step4 = await h.step(4)
    assert step4["request"]["messages"][-1]["content"][0]["is_error"]
    assert step4["response"]["text"] == report and step4["usage"]["costUsd"] > 0
    missing = await _raises(NotFoundError, h.step(9))
    assert missing.code == "step_not_found"
    usage = await h.usage()
    assert set(usage["rollup"]["byStep"]) == {"1", "2", "3", "4"}
    assert abs(usage["rollup"]["total"]["costUsd"]
               - sum(e["costUsd"] for e in usage["entries"])) < 1e-9

    # Edit the lookup's result and re-run from there: steps 2 on run again, step 1 does not.
    calls_before = len(usage["entries"])
    lookup_call = (await h.step(1))["toolResults"][0]["toolCallId"]
    bad_edit = await _raises(BadRequestError, h.resume(
        "from_checkpoint", checkpoint_id=status["checkpointId"],
        edit_tool_results={"toolu_unknown": "x"}))
    assert "editToolResults" in bad_edit.message
    fork = await h.resume("from_checkpoint", checkpoint_id=(await h.step(1))["checkpointId"],
                          edit_tool_results={lookup_call: "bobby@example.com"})
    [again] = [p async for p in _pending_after(fork)]
    assert again["input"] == {"to": "bobby@example.com", "subject": "Hello Bob"}
    await fork.approve()
    [_ async for _ in _pending_after(fork)]
    await fork.deny("no")
    rerun = await fork.result()
    assert rerun.startswith("Report: sent to bobby@example.com: Hello Bob | Denied")
    usage = await h.usage()
    assert len(usage["entries"]) == calls_before + 3  # steps 2, 3 and 4 only
    assert (await h.status())["branch"] == 1

    # A budget stops the run at the step that passes it; a higher one lets it finish.
    b = await backend.start("stepper", "steps=6", session_id=f"budget-{tag}",
                            max_cost_usd=0.0008)
    stopped = [c async for c in b.stream()][-1]
    assert stopped["type"] == "run_interrupted" and stopped["reason"] == "budget_exceeded"
    spent = (await b.usage())["rollup"]["total"]["costUsd"]
    assert spent > 0.0008 and abs(stopped["spentUsd"] - spent) < 1e-9
    halted_at = (await b.status())["stepCount"]
    assert 1 <= halted_at < 6
    more = await b.resume(max_cost_usd=1.0)
    assert await more.result() == "finished 6 steps"
    return {"chunks": [(c["sequence"], c["type"], c["step"]) for c in chunks],
            "budgetStop": halted_at, "report": report, "rerun": rerun}


async def _pending_after(handle: Any) -> Any:
    """Wait for the run to stop, then yield what waits for approval."""
    async for _ in handle.stream():
        pass
    for pending in await handle.pending_approvals():
        yield pending


def summary_of(chunks: list[dict[str, Any]], messages: list[dict[str, Any]],
               checkpoints: list[dict[str, Any]]) -> dict[str, Any]:
    """What must be identical on every backend (no ids, no timestamps)."""
    return {
        "chunks": [(c["sequence"], c["type"], c["step"]) for c in chunks],
        "messages": [m["role"] for m in messages],
        "checkpoints": [(c["step"], c["status"], c["messageCount"]) for c in checkpoints],
    }
