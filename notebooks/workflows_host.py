"""The host process that ``workflows.ipynb`` kills: the researcher, as a workflow.

Run as ``python workflows_host.py STORAGE STOP_AFTER``: it starts session ``otters-wf`` of
the bundled ``researcher`` with the Workflows approach on sqlite files under ``STORAGE``,
its model the offline one, and counts each model call in ``STORAGE/model-calls.log`` (a
file, so that calls are counted across processes). It prints ``STEP_DONE <name>`` when a
step's result is stored, and blocks once the step named ``STOP_AFTER`` is, so that the
notebook's SIGKILL lands between two steps. ``build`` is what the notebook reuses.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from helix_lab.examples import researcher
from helix_lab.llm.offline import OfflineLLM
from helix_lab.runtime import AgentRegistry
from helix_lab.workflows import LocalWorkflows, local_workflows
from helix_lab.workflows.store import StepRow, WorkflowStore

SESSION = "otters-wf"
QUESTION = "What do sea otters do with stones?"


class CountedModel:
    """The offline model, with every call written down."""

    def __init__(self, log: Path) -> None:
        self.inner = OfflineLLM(chunk_delay=0.0)
        self.log = log

    async def stream(self, request: Any) -> Any:
        with self.log.open("a") as out:
            out.write(f"call with {len(request.messages)} messages\n")
        async for event in self.inner.stream(request):
            yield event


def build(storage: str | Path) -> LocalWorkflows:
    registry = AgentRegistry()
    registry.register(researcher)
    return local_workflows(llm_adapter=CountedModel(Path(storage) / "model-calls.log"),
                           agents=registry, storage=storage)


def main(storage: str, stop: str) -> None:
    original = WorkflowStore.put_step

    def put_step(self: WorkflowStore, instance_id: str, row: StepRow) -> None:
        original(self, instance_id, row)
        if row.state == "done":
            print("STEP_DONE", row.name, flush=True)
            if row.name == stop:
                time.sleep(120)  # nothing else happens until the kill

    WorkflowStore.put_step = put_step  # type: ignore[method-assign]

    async def run() -> None:
        wf = build(storage)
        handle = await wf.executor.execute(researcher, message=QUESTION, session_id=SESSION)
        await handle.result()

    asyncio.run(run())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
