"""The host process that ``test_rel_crash.py`` kills with SIGKILL.

Run as ``python rel_crash_child.py STORAGE SEED SESSIONS``: it starts ``SESSIONS`` runs of the
``crashy`` agent at once on a :class:`LocalNamespace` over sqlite files in ``STORAGE``, and
reads each one's stream through a :class:`LocalBackend`, the way a notebook client does. It
prints one line per event the parent can aim a kill at::

    CHUNK <session> <sequence> <type>   a chunk the client received
    LLM_IN <session> <step>             a model call began streaming
    TOOL_IN <session> <n>               a tool call began (it then sleeps a little)
    COMMIT_IN <step>                    a checkpoint row is written, its transaction still open
    FINISHED <session> <status>         the client's stream ended
    DONE                                every run ended

Everything random (delays, the number of steps) comes from the seed. Importing this module
(as the parent does to reopen the storage) only defines the agent and the server factory;
the commit delay is installed by ``main`` alone.
"""

from __future__ import annotations

import asyncio
import random
import re
import sys
import time
from typing import Any

from pydantic import BaseModel

from helix_lab.agent import Agent
from helix_lab.llm.base import LLMRequest
from helix_lab.llm.scripted import ScriptedLLM, Turn, call
from helix_lab.runtime import AgentRegistry, LocalNamespace, RetryPolicy, create_agent_server
from helix_lab.runtime.state_store import DOStateStore
from helix_lab.tools import ToolContext, tool

AGENT = "crashy"
COMMIT_PAUSE = 0.03
"""Seconds the child sleeps inside a checkpoint's transaction, so kills can land there."""

_delays = {"on": False, "seed": 0}


def say(*parts: Any) -> None:
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()


def rng_for(session_id: str, salt: str) -> random.Random:
    return random.Random(f"{_delays['seed']}:{session_id}:{salt}")


class Tally(BaseModel):
    count: int = 0
    seen: list[int] = []


@tool
async def work(n: int, ctx: ToolContext) -> dict[str, int]:
    """Do unit of work number n."""
    if _delays["on"]:
        say("TOOL_IN", ctx.session_id, n)
        await asyncio.sleep(rng_for(ctx.session_id, f"tool{n}").uniform(0.02, 0.06))

    def tally(state: Tally) -> None:
        state.count += 1
        state.seen.append(n)

    ctx.update_state(tally)
    await ctx.emit({"type": "custom", "name": "worked", "data": {"n": n}})
    return {"n": n, "square": n * n}


agent = Agent(name=AGENT, tools=[work], state_schema=Tally, max_steps=20, register=False,
              system_prompt="Work through the units, one per step.")


def steps_wanted(messages: list[dict[str, Any]]) -> int:
    first = messages[0]["content"]
    match = re.search(r"steps=(\d+)", first if isinstance(first, str) else "")
    return int(match.group(1)) if match else 3


def done_steps(messages: list[dict[str, Any]]) -> int:
    return sum(1 for m in messages if m["role"] == "assistant")


def answer(messages: list[dict[str, Any]]) -> str:
    return f"finished {steps_wanted(messages)} units"


def model_for(session_id: str) -> ScriptedLLM:
    """A deterministic model: one ``work`` call per step until the wanted count, then text.

    It decides from the messages it is sent, so a run resumed after a crash goes on from
    its last checkpoint and ends the same way."""

    def respond(request: LLMRequest) -> Turn:
        done = done_steps(request.messages)
        wanted = steps_wanted(request.messages)
        delay = 0.0
        if _delays["on"]:
            say("LLM_IN", session_id, done + 1)
            delay = rng_for(session_id, f"llm{done}").uniform(0.001, 0.005)
        if done < wanted:
            return Turn(thinking=f"Unit {done + 1} of {wanted} is next, so I call work.",
                        text=f"Working on unit {done + 1} now, with the work tool, step by step.",
                        tool_calls=[call("work", n=done + 1)], chunk_delay=delay)
        return Turn(text=f"All units are done: {answer(request.messages)}.", chunk_delay=delay)

    return ScriptedLLM([respond], loop=True)


def build_server() -> type:
    registry = AgentRegistry()
    registry.register(agent)
    return create_agent_server(
        llm_adapter=lambda env, ctx: model_for(ctx.session_id), agents=registry,
        retry=RetryPolicy(base_delay=0.01, max_delay=0.05))


def install_commit_pause() -> None:
    original = DOStateStore.save_checkpoint

    def save_checkpoint(self: DOStateStore, **kwargs: Any) -> Any:
        cp = original(self, **kwargs)
        say("COMMIT_IN", kwargs["step"])
        time.sleep(COMMIT_PAUSE)  # blocking on purpose: the transaction stays open
        return cp

    DOStateStore.save_checkpoint = save_checkpoint  # type: ignore[method-assign]


async def drive(backend: Any, session_id: str, steps: int) -> None:
    handle = await backend.start(AGENT, f"Please do steps={steps} units of work.",
                                 session_id=session_id)
    async for chunk in handle.stream():
        say("CHUNK", session_id, chunk["sequence"], chunk["type"])
    status = await handle.status()
    say("FINISHED", session_id, status["status"])


async def main(storage: str, seed: int, sessions: int) -> None:
    from helix_lab.client.backend import LocalBackend

    _delays.update(on=True, seed=seed)
    install_commit_pause()
    rng = random.Random(seed)
    namespace = LocalNamespace(build_server(), storage=storage)
    backend = LocalBackend(namespace)
    say("READY")
    await asyncio.gather(*(drive(backend, f"s{i}", rng.randint(3, 5)) for i in range(sessions)))
    say("DONE")
    await backend.aclose()
    await namespace.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
