"""The host process that ``test_rel_workflow_crash.py`` kills with SIGKILL.

Run as ``python rel_workflow_crash_child.py STORAGE BASE_URL TOOL_LOG STOP_AFTER``: it
starts session ``s1`` of the ``crashy`` agent with the Workflows approach on sqlite files
in ``STORAGE``, its model being the real ``anthropic`` SDK against the fake server at
``BASE_URL``. Each call of the ``work`` tool appends its ``n`` to ``TOOL_LOG`` (a file, so
calls are counted across processes). It prints::

    STEP_DONE <step name>      a step's result is stored
    CHUNK <sequence> <type>    the client received a chunk

and, once the step named ``STOP_AFTER`` is stored, it blocks, so that the parent's kill
lands just after that step and before the next one. Importing this module (as the
parent does, to reopen the storage) only defines the agent and the factory.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from helix_lab.agent import Agent
from helix_lab.llm.anthropic import AnthropicAdapter
from helix_lab.runtime import AgentRegistry
from helix_lab.tools import tool
from helix_lab.workflows import LocalWorkflows, local_workflows
from helix_lab.workflows.store import StepRow, WorkflowStore

AGENT = "crashy"
SESSION = "s1"
MESSAGE = "Please do 3 units of work."


def say(*parts: Any) -> None:
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()


@tool
def work(n: int) -> dict[str, int]:
    """Do unit of work number n (a side effect: a line in the tool log)."""
    with open(os.environ["HELIX_TOOL_LOG"], "a") as log:
        log.write(f"{n}\n")
        log.flush()
        os.fsync(log.fileno())
    return {"n": n, "square": n * n}


agent = Agent(name=AGENT, tools=[work], max_steps=10, register=False,
              system_prompt="Work through the units, one per step.")


def build(storage: str | Path, base_url: str) -> LocalWorkflows:
    registry = AgentRegistry()
    registry.register(agent)
    llm = AnthropicAdapter("claude-test", api_key="sk-test-not-a-real-key", base_url=base_url)
    return local_workflows(llm_adapter=llm, agents=registry, storage=storage)


def stop_after(name: str) -> None:
    original = WorkflowStore.put_step

    def put_step(self: WorkflowStore, instance_id: str, row: StepRow) -> None:
        original(self, instance_id, row)
        if row.state == "done":
            say("STEP_DONE", row.name)
            if row.name == name:
                time.sleep(120)  # blocking on purpose: nothing else happens until the kill

    WorkflowStore.put_step = put_step  # type: ignore[method-assign]


async def main(storage: str, base_url: str, stop: str) -> None:
    stop_after(stop)
    wf = build(storage, base_url)
    handle = await wf.executor.execute(agent, message=MESSAGE, session_id=SESSION)
    async for chunk in handle.stream():
        say("CHUNK", chunk["sequence"], chunk["type"])
    say("FINISHED")
    await wf.aclose()


if __name__ == "__main__":
    os.environ["HELIX_TOOL_LOG"] = sys.argv[3]
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[4]))
