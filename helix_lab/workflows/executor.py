"""``CloudflareAgentExecutor``: start agent runs as workflow instances and control them.

::

    executor = CloudflareAgentExecutor(workflow_binding=binding, state_store=D1StateStore(db),
                                       stream_manager=DurableObjectStreamManager(streams))
    handle = await executor.execute(researcher, message="What do otters eat?")
    async for chunk in handle.stream():
        ...
    await handle.result()

A handle offers the seed's controls. ``interrupt`` asks the run to stop at the next step
boundary, where it waits (``wait_for_event``) for ``resume``; ``abort`` terminates the
instance; ``retry`` restarts the instance from the step after the last checkpoint, so
the steps before it are not run again; ``send`` starts a new run in the same session.

Touching a handle (``status``, ``stream``, ``result``) continues an instance whose host
died: the binding replays it, answering finished steps from storage.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from ..agent import Agent
from ..errors import ConflictError, NotFoundError, RunError, UserError
from .binding import FINISHED
from .dto import AgentWorkflowInput
from .state import D1StateStore
from .streams import DurableObjectStreamManager
from .workflow import RESUME_EVENT

__all__ = ["CloudflareAgentExecutor", "WorkflowAgentHandle", "instance_id_for", "start_run"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
POLL = 0.02
"""Seconds between looks at D1 while waiting for a run to reach a step boundary."""


def instance_id_for(session_id: str) -> str:
    """A fresh instance id for a run of ``session_id`` (instance ids allow fewer characters)."""
    return f"{_UNSAFE.sub('_', session_id)[:80]}-{secrets.token_hex(6)}"


async def start_run(binding: Any, store: D1StateStore, streams: DurableObjectStreamManager, *,
                    agent_type: str, session_id: str, message: str | None,
                    state: dict[str, Any] | None,
                    parent: tuple[str, str, str] | None = None,
                    reuse: bool = False) -> tuple[str, str]:
    """Create the session row (or take the session for a new run) and its instance.

    ``parent`` is ``(parentSessionId, parentInstanceId, eventType)`` for a sub-agent.
    With ``reuse`` an existing session that already has a run is left as it is (a replayed
    parent step asking again). Returns ``(run_id, instance_id)``."""
    session = await store.get_session(session_id)
    if session is not None and reuse:
        return session["run_id"], session["instance_id"]
    if session is not None and session["status"] == "running":
        raise ConflictError(f"Session {session_id!r} is already running; interrupt or abort "
                            "it first.", code="already_executing")
    instance_id = instance_id_for(session_id)
    run_id = instance_id
    if session is None:
        await store.create_session(session_id=session_id, agent_type=agent_type, run_id=run_id,
                                   instance_id=instance_id, state=state or {},
                                   parent_session_id=parent[0] if parent else None)
    else:
        await store.update_session(session_id, status="running", run_id=run_id,
                                   instance_id=instance_id, error=None, output=None,
                                   interrupt_reason=None, agent_type=agent_type,
                                   runs=session["runs"] + 1)
    await streams.open(session_id)
    params = AgentWorkflowInput(
        agent_type=agent_type, session_id=session_id, run_id=run_id, message=message,
        state=state, parent_session_id=parent[0] if parent else None,
        parent_instance_id=parent[1] if parent else None,
        parent_event_type=parent[2] if parent else None)
    await binding.create(id=instance_id, params=params.wire())
    return run_id, instance_id


class CloudflareAgentExecutor:
    """The seed's executor for the Workflows approach (see the module docstring)."""

    def __init__(self, *, workflow_binding: Any, state_store: D1StateStore,
                 stream_manager: DurableObjectStreamManager, logger: Any = None) -> None:
        self.workflow_binding = workflow_binding
        self.state_store = state_store
        self.stream_manager = stream_manager
        self.logger = logger

    async def execute(self, agent: Agent | str, message: str | None = None, *,
                      state: dict[str, Any] | None = None,
                      session_id: str | None = None) -> WorkflowAgentHandle:
        """Start ``agent`` on ``message`` (in a new session unless ``session_id`` is given)."""
        agent_type = agent if isinstance(agent, str) else agent.name
        if not isinstance(message, str) or not message.strip():
            raise UserError("execute() needs message='...' (a non-empty string).")
        session_id = session_id or f"{agent_type}-{secrets.token_hex(4)}"
        run_id, _ = await start_run(self.workflow_binding, self.state_store,
                                    self.stream_manager, agent_type=agent_type,
                                    session_id=session_id, message=message, state=state)
        return WorkflowAgentHandle(self, session_id, run_id, agent_type)

    async def get_handle(self, agent: Agent | str | None, session_id: str) -> WorkflowAgentHandle:
        """A handle on an existing session (404 if there is none); continues its instance."""
        session = await self.state_store.get_session(session_id)
        if session is None:
            raise NotFoundError(f"There is no session {session_id!r}.", code="session_not_found")
        handle = WorkflowAgentHandle(self, session_id, session["run_id"], session["agent_type"])
        await handle.instance()
        return handle


@dataclass(eq=False, repr=False)
class WorkflowAgentHandle:
    """One session of the Workflows approach, with the seed's controls."""

    executor: CloudflareAgentExecutor
    session_id: str
    run_id: str
    agent_type: str

    @property
    def stream_id(self) -> str:
        """The session's stream: a session has one, so the session id."""
        return self.session_id

    def __repr__(self) -> str:
        return f"<WorkflowAgentHandle session={self.session_id!r} run={self.run_id!r}>"

    async def _session(self) -> dict[str, Any]:
        session = await self.executor.state_store.get_session(self.session_id)
        if session is None:
            raise NotFoundError(f"There is no session {self.session_id!r}.",
                                code="session_not_found")
        return session

    async def instance(self) -> Any:
        """The session's current workflow instance (continuing it if its host died)."""
        session = await self._session()
        return await self.executor.workflow_binding.get(session["instance_id"])

    # -- observing ----------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        instance = await self.instance()
        session = await self._session()
        workflow = await instance.status()
        stream = await self.executor.stream_manager.status(self.session_id)
        executing = session["status"] == "running" and workflow["status"] not in FINISHED
        return {"sessionId": self.session_id, "runId": session["run_id"],
                "agentType": session["agent_type"], "status": session["status"],
                "isExecuting": executing,
                "canResume": session["status"] == "interrupted",
                "stepCount": session["step_count"], "output": session["output"],
                "error": session["error"], "lastSequence": stream["lastSequence"],
                "approach": "workflows", "instanceId": instance.id,
                "instanceStatus": workflow["status"], "steps": await instance.steps()}

    async def stream(self, from_sequence: int = 0, *,
                     follow: bool = False) -> AsyncIterator[dict[str, Any]]:
        await self.instance()
        async for chunk in self.executor.stream_manager.subscribe(
                self.session_id, from_sequence, follow=follow):
            yield chunk

    async def result(self) -> Any:
        """Wait until the session stops; its output, or :class:`RunError`."""
        status = await self.status()
        if status["status"] == "running":
            async for _ in self.stream(status["lastSequence"]):
                pass
            status = await self.status()
        if status["status"] == "completed":
            return status["output"]
        if status["status"] == "interrupted":
            raise RunError(f"Session {self.session_id!r} was interrupted at step "
                           f"{status['stepCount']}; call resume() to go on.")
        raise RunError(status["error"] or f"Session {self.session_id!r} is {status['status']}.")

    async def get_state(self) -> Any:
        return (await self._session())["state"]

    async def messages(self) -> list[dict[str, Any]]:
        session = await self._session()
        return await self.executor.state_store.load_messages(self.session_id,
                                                             session["message_count"])

    async def checkpoints(self) -> list[dict[str, Any]]:
        return await self.executor.state_store.checkpoints(self.session_id)

    async def usage(self) -> dict[str, Any]:
        entries = await self.executor.state_store.usage(self.session_id)
        return {"sessionId": self.session_id, "entries": entries,
                "rollup": {"inputTokens": sum(e.get("inputTokens", 0) for e in entries),
                           "outputTokens": sum(e.get("outputTokens", 0) for e in entries)}}

    # -- controlling --------------------------------------------------------------------

    async def _settled(self) -> dict[str, Any]:
        """Wait until the run is no longer mid-step (it stopped, or it waits)."""
        while True:
            session = await self._session()
            instance = await self.instance()
            if session["status"] != "running" or (await instance.status())["status"] in FINISHED:
                return session
            await asyncio.sleep(POLL)

    async def interrupt(self, reason: str = "interrupted") -> dict[str, Any]:
        """Soft stop at the next step boundary; the instance then waits for ``resume``."""
        session = await self._session()
        if session["status"] == "running":
            await self.executor.state_store.update_session(self.session_id,
                                                           interrupt_reason=reason)
            await self._settled()
        return await self.status()

    async def abort(self, reason: str = "aborted") -> dict[str, Any]:
        """Hard stop: the instance is terminated and the session fails, for good."""
        session = await self._session()
        instance = await self.instance()
        if (await instance.status())["status"] not in FINISHED:
            await instance.terminate()
        if session["status"] in ("running", "interrupted"):
            error = f"Aborted: {reason}"
            await self.executor.state_store.update_session(self.session_id, status="failed",
                                                           error=error, interrupt_reason=None)
            streams = self.executor.stream_manager
            await streams.write(self.session_id, [{"type": "run_failed", "error": error,
                                                   "aborted": True, "runId": session["run_id"],
                                                   "step": session["step_count"]}],
                                agent_type=session["agent_type"])
            await streams.end(self.session_id)
        return await self.status()

    async def can_resume(self) -> bool:
        return (await self._session())["status"] == "interrupted"

    async def resume(self, mode: Literal["continue", "with_message"] = "continue", *,
                     message: str | None = None) -> WorkflowAgentHandle:
        """Go on after an interrupt (the waiting instance takes a ``resume`` event)."""
        session = await self._session()
        if session["status"] != "interrupted":
            raise ConflictError(f"Session {self.session_id!r} is {session['status']}, not "
                                "interrupted; there is nothing to resume.", code="not_resumable")
        if mode == "with_message" and not message:
            raise UserError("resume(mode='with_message') needs message=...")
        instance = await self.instance()
        if (await instance.status())["status"] in FINISHED:
            run_id, _ = await start_run(
                self.executor.workflow_binding, self.executor.state_store,
                self.executor.stream_manager, agent_type=session["agent_type"],
                session_id=self.session_id, message=message, state=None)
            return WorkflowAgentHandle(self.executor, self.session_id, run_id, self.agent_type)
        await self.executor.state_store.update_session(self.session_id, status="running")
        await self.executor.stream_manager.open(self.session_id)
        await instance.send_event(RESUME_EVENT, {"mode": mode, "message": message})
        return WorkflowAgentHandle(self.executor, self.session_id, session["run_id"],
                                   self.agent_type)

    async def retry(self, mode: Literal["from_checkpoint", "from_start"] = "from_checkpoint",
                    *, message: str | None = None,
                    checkpoint_id: str | None = None) -> WorkflowAgentHandle:
        """Restart the instance after the last checkpoint (or after ``checkpoint_id``, or
        from the start): the steps before it keep their stored results and are not run
        again. ``from_start`` with a ``message`` starts the session over, as a new run."""
        session = await self._session()
        if session["status"] == "running":
            raise ConflictError(f"Session {self.session_id!r} is running; interrupt or abort "
                                "it before retrying.", code="already_executing")
        if mode not in ("from_checkpoint", "from_start"):
            raise UserError(f"Unknown retry mode {mode!r}: use 'from_checkpoint' or "
                            "'from_start'.")
        store = self.executor.state_store
        instance = await self.instance()
        if (await instance.status())["status"] not in FINISHED:
            await instance.terminate()  # it waits for a resume that will not come
        if mode == "from_start" and message is not None:
            await store.update_session(self.session_id, status="idle", step_count=0,
                                       message_count=0, state={})
            return await self.executor.execute(session["agent_type"], message,
                                               session_id=self.session_id)
        checkpoints = [c for c in await store.checkpoints(self.session_id)
                       if c["run_id"] == session["run_id"] and c["status"] != "interrupted"]
        if checkpoint_id is not None:
            chosen = [c for c in checkpoints if c["id"] == checkpoint_id]
            if not chosen:
                raise NotFoundError(
                    f"No checkpoint {checkpoint_id!r} in the current run of session "
                    f"{self.session_id!r}; a workflow restarts from its own steps only.",
                    code="checkpoint_not_found")
            checkpoints = checkpoints[:checkpoints.index(chosen[0]) + 1]
        await self.executor.stream_manager.open(self.session_id)
        if mode == "from_start" or not checkpoints:
            await store.update_session(self.session_id, status="running", error=None,
                                       output=None, step_count=0, message_count=0, state={})
            await instance.restart()
        else:
            last = await store.checkpoint(self.session_id, checkpoints[-1]["id"])
            assert last is not None
            await store.update_session(self.session_id, status="running", error=None,
                                       output=None, step_count=last["step"],
                                       message_count=last["message_count"], state=last["state"])
            try:
                await instance.restart({"from": {"name": f"model {last['step'] + 1}"}})
            except NotFoundError:  # it failed after its last commit: run that ending again
                await instance.restart({"from": {"name": "fail"}})
        return WorkflowAgentHandle(self.executor, self.session_id, session["run_id"],
                                   self.agent_type)

    async def send(self, message: str) -> WorkflowAgentHandle:
        """A follow-up message in the same session, as a new run (a new instance)."""
        return await self.executor.execute(self.agent_type, message, session_id=self.session_id)
