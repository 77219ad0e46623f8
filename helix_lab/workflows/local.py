"""``local_workflows(...)``: the Workflows approach assembled in this process.

::

    wf = local_workflows(llm_adapter=lambda env, ctx: ScriptedLLM([...]), agents=registry,
                         storage=".helix/workflows")
    handle = await wf.executor.execute("researcher", "What do otters eat?")
    ...
    await wf.aclose()

Under ``storage``: ``d1.sqlite3`` (the D1 database), ``workflows.sqlite3`` (the Workflows
engine: instances, step results, events) and ``streams/`` (one ``StreamServer`` Durable
Object per session, as ``LocalNamespace`` keeps any object). ``":memory:"`` keeps it all
in memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..runtime.namespace import LocalNamespace
from .binding import LocalWorkflowBinding
from .d1 import LocalD1
from .executor import CloudflareAgentExecutor
from .state import D1StateStore
from .streams import DurableObjectStreamManager, StreamServer
from .workflow import create_workflow_runner

__all__ = ["LocalWorkflows", "local_workflows"]


@dataclass
class LocalWorkflows:
    db: LocalD1
    streams: LocalNamespace
    binding: LocalWorkflowBinding
    executor: CloudflareAgentExecutor

    async def aclose(self) -> None:
        """Stop live instances (they stay resumable), then close every database."""
        await self.binding.aclose()
        await self.streams.aclose()
        self.db.close()


def local_workflows(*, llm_adapter: Any, agents: Any, storage: str | os.PathLike[str] = ":memory:",
                    env: Any = None, logger: Any = None) -> LocalWorkflows:
    memory = str(storage) == ":memory:"
    root = Path(storage)

    def place(name: str) -> str:
        return ":memory:" if memory else str(root / name)

    db = LocalD1(place("d1.sqlite3"))
    streams = LocalNamespace(StreamServer, env=env, storage=place("streams"))  # type: ignore[arg-type]
    state_store = D1StateStore(db)
    stream_manager = DurableObjectStreamManager(streams)
    runner = create_workflow_runner(state_store=state_store, stream_manager=stream_manager,
                                    llm_adapter=llm_adapter, registry=agents, env=env,
                                    logger=logger)
    binding = LocalWorkflowBinding(runner, place("workflows.sqlite3"), env=env, logger=logger)
    runner.deps.workflow_binding = binding
    executor = CloudflareAgentExecutor(workflow_binding=binding, state_store=state_store,
                                       stream_manager=stream_manager, logger=logger)
    return LocalWorkflows(db, streams, binding, executor)
