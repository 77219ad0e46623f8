"""``AgentHandle``: one session, with every control a user needs, over any transport.

A handle is cheap: a :class:`SessionClient` and a session id, plus the run id it was made
for. ``resume``, ``retry`` and ``send`` return a new handle for the new run. The client
backends (:mod:`helix_lab.client`) are one kind of :class:`SessionClient`; the object a
hook runs in is another (:mod:`.object_client`), so that ``after_*`` hooks get this very
class. It lives in the runtime for that reason; :mod:`helix_lab.client.handle` is its
public home.

As in the seed, ``stream_id`` names the session's stream (a Durable Object holds one
session and one stream, so it is the session id), and ``can_resume()`` answers
``{canResume, reason}`` as a :class:`ResumeCheck`, which is also truthy when resumable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ..errors import RunError, RunInterrupted, RunPaused, UserError

__all__ = ["CHECKPOINT_PAGE", "AgentHandle", "ResumeCheck", "RunInterrupted", "SessionClient"]

CHECKPOINT_PAGE = 1000
"""Checkpoints per request when :meth:`AgentHandle.checkpoints` reads them all."""


def describe_calls(pending: Iterable[dict[str, Any]]) -> str:
    """``toolName (toolCallId), ...`` of tool calls waiting for approval, for messages."""
    return ", ".join(f"{p['toolName']} ({p['toolCallId']})" for p in pending)


async def _paged(read: Callable[[int], Awaitable[dict[str, Any]]], key: str,
                 after: int = 0) -> AsyncIterator[dict[str, Any]]:
    """The ``key`` items of the pages ``read(after)`` answers, in order: each next page
    starts after the last item's ``sequence``, until one is empty or has no ``hasMore``."""
    while True:
        body = await read(after)
        items = body[key]
        for item in items:
            yield item
        if not items or not body.get("hasMore"):
            return
        after = items[-1]["sequence"]


@dataclass(frozen=True)
class ResumeCheck:
    """The seed's ``{canResume, reason}``: truthy when the session can resume.

    ``if await handle.can_resume():`` and ``can, reason = await handle.can_resume()``
    both work; ``reason`` says why not (``None`` when it can).
    """

    can_resume: bool
    reason: str | None = None

    def __bool__(self) -> bool:
        return self.can_resume

    def __iter__(self) -> Iterator[Any]:
        return iter((self.can_resume, self.reason))

    @classmethod
    def of(cls, status: dict[str, Any]) -> ResumeCheck:
        """Read the check from a ``GET /status`` body."""
        if status.get("status") == "paused":
            calls = describe_calls(status.get("pendingApprovals", []))
            return cls(True, f"paused: {calls or 'a tool call'} waits for approval; "
                       "approve() or deny() it to go on")
        if status.get("canResume"):
            return cls(True)
        session = status.get("sessionId")
        if session is None:
            return cls(False, "The session has not been started.")
        if status.get("isExecuting"):
            return cls(False, f"Session {session!r} is still running; interrupt it first.")
        state = status.get("status")
        why = {"completed": "it completed; send() a new message or resume from a checkpoint",
               "failed": "it failed (retry() it) or was aborted, a hard stop (send() a new "
                          "message)"}
        return cls(False, f"Session {session!r} is {state}: "
                   + why.get(str(state), "only interrupted or paused sessions resume") + ".")


class SessionClient(Protocol):
    """What a handle needs of its transport (a :class:`~helix_lab.client.Backend`, or the
    object a hook runs in): calls and a stream."""

    async def request(self, session_id: str, method: str, endpoint: str, *, json: Any = None,
                      params: dict[str, Any] | None = None) -> Any: ...

    def stream(self, session_id: str, from_sequence: int = 0, *,
               follow: bool = False) -> AsyncIterator[dict[str, Any]]: ...

    def export_lines(self, session_id: str) -> AsyncIterator[dict[str, Any]]: ...


class AgentHandle:
    """Controls and observes one session through a :class:`SessionClient`."""

    def __init__(self, backend: SessionClient, session_id: str, run_id: str | None = None,
                 agent_type: str | None = None) -> None:
        self.backend = backend
        self.session_id = session_id
        self.run_id = run_id
        self.agent_type = agent_type

    @property
    def stream_id(self) -> str:
        """The session's stream: one per Durable Object, so the session id (as the server's
        ``streamId``)."""
        return self.session_id

    def __repr__(self) -> str:
        agent = self.agent_type or "?"
        return f"<AgentHandle {agent} session={self.session_id!r} run={self.run_id!r}>"

    async def _call(self, method: str, endpoint: str, json: Any = None,
                    params: dict[str, Any] | None = None) -> Any:
        return await self.backend.request(self.session_id, method, endpoint, json=json,
                                          params=params)

    def _next(self, body: dict[str, Any]) -> AgentHandle:
        return AgentHandle(self.backend, self.session_id, body.get("runId"), self.agent_type)

    # -- observing -------------------------------------------------------------------------

    def stream(self, from_sequence: int = 0, *, follow: bool = False
               ) -> AsyncIterator[dict[str, Any]]:
        """Chunks after ``from_sequence``, in order and without duplicates.

        Ends when the session stops executing, unless ``follow`` keeps it open across runs.
        """
        return self.backend.stream(self.session_id, from_sequence, follow=follow)

    async def status(self) -> dict[str, Any]:
        return await self._call("GET", "/status")

    async def result(self) -> Any:
        """Wait for the session to stop; the output, or :class:`RunError`."""
        status = await self.status()
        if status["isExecuting"]:
            async for _ in self.stream(status.get("lastSequence", 0)):
                pass
            status = await self.status()
        if status["status"] == "completed":
            return status.get("output")
        if status["status"] == "paused":
            calls = describe_calls(status.get("pendingApprovals", []))
            raise RunPaused(f"Session {self.session_id!r} is paused at step "
                            f"{status['stepCount']}: waiting for approval of {calls or 'a call'}."
                            " Call approve() or deny(message) to go on.")
        if status["status"] == "interrupted":
            raise RunInterrupted(f"Session {self.session_id!r} was interrupted at step "
                                 f"{status['stepCount']}; call resume() to go on.")
        if status["status"] == "failed":
            raise RunError(status.get("error") or "the run failed")
        raise RunError(f"Session {self.session_id!r} is {status['status']}.")

    async def get_state(self) -> Any:
        return (await self._call("GET", "/snapshot"))["state"]

    async def messages(self, checkpoint_id: str | None = None) -> list[dict[str, Any]]:
        params = {"checkpointId": checkpoint_id} if checkpoint_id else None
        return (await self._call("GET", "/messages", params=params))["messages"]

    async def snapshot(self) -> dict[str, Any]:
        return await self._call("GET", "/snapshot")

    async def checkpoints(self) -> list[dict[str, Any]]:
        """Every checkpoint of every branch, oldest first (read page by page)."""
        return [c async for c in _paged(
            lambda after: self.checkpoints_page(after=after, limit=CHECKPOINT_PAGE),
            "checkpoints")]

    async def checkpoints_page(self, *, branch: int | None = None, after: int | None = None,
                               before: int | None = None, limit: int = 100) -> dict[str, Any]:
        """One page of checkpoints, oldest first: ``{"checkpoints", "hasMore"}``.

        ``after`` / ``before`` are checkpoint sequences (exclusive); ``before`` pages back
        from there (``hasMore`` then means older ones exist). ``branch`` keeps one branch.
        """
        params = {"branch": branch, "after": after, "before": before, "limit": limit}
        return await self._call("GET", "/checkpoints",
                                params={k: v for k, v in params.items() if v is not None})

    async def branches(self) -> list[dict[str, Any]]:
        """Every branch: where it forked (``parentBranch``, ``forkCheckpointId``,
        ``forkStep``), its head (``headCheckpointId``, ``headStep``), its ``status``, and
        ``current`` on the branch the session is on."""
        return (await self._call("GET", "/branches"))["branches"]

    async def search(self, query: str, limit: int = 20) -> list[dict[str, Any]]:
        """Full-text search (SQLite FTS5 syntax) over the session's text, thinking and tool
        inputs and outputs: ``[{sequence, step, type, snippet}]``, best first."""
        return (await self._call("GET", "/search", params={"q": query, "limit": limit}))["hits"]

    async def checkpoint(self, checkpoint_id: str) -> dict[str, Any]:
        """One checkpoint with its full state."""
        return await self._call("GET", f"/checkpoints/{checkpoint_id}")

    async def history(self, from_sequence: int = 0, limit: int = 1000) -> dict[str, Any]:
        return await self._call("GET", "/history",
                                params={"fromSequence": from_sequence, "limit": limit})

    def history_chunks(self, from_sequence: int = 0, *, page: int = 1000
                       ) -> AsyncIterator[dict[str, Any]]:
        """Every stored chunk after ``from_sequence``, in order, read ``page`` at a time
        (unlike :meth:`stream`, it ends at the last stored chunk and never waits)."""
        return _paged(lambda after: self.history(after, page), "chunks", from_sequence)

    def export_lines(self) -> AsyncIterator[dict[str, Any]]:
        """The session's stored rows, streamed (what ``.helix`` files are written from)."""
        return self.backend.export_lines(self.session_id)

    async def usage(self) -> dict[str, Any]:
        """Usage entries and the rollup (by step, model and kind), with ``costUsd``."""
        return await self._call("GET", "/usage")

    async def step(self, step: int, *, checkpoint_id: str | None = None,
                   messages: int | None = None) -> dict[str, Any]:
        """What the model was sent and returned at ``step`` (on the branch of
        ``checkpoint_id``, the head by default), with tokens, cost and timing.
        ``messages`` caps how many of the messages sent come back (newest last)."""
        params: dict[str, Any] = {}
        if checkpoint_id:
            params["checkpointId"] = checkpoint_id
        if messages is not None:
            params["messages"] = messages
        return await self._call("GET", f"/steps/{int(step)}", params=params or None)

    # -- approvals -------------------------------------------------------------------------

    async def pending_approvals(self) -> list[dict[str, Any]]:
        """The tool calls waiting for a decision: ``{toolCallId, toolName, input, step}``."""
        return list((await self.status()).get("pendingApprovals", []))

    async def _decide(self, tool_call_id: str | None, decision: dict[str, Any],
                      what: str) -> AgentHandle:
        if tool_call_id is None:
            pending = await self.pending_approvals()
            if not pending:
                raise UserError(f"Nothing in session {self.session_id!r} waits for approval.")
            if len(pending) > 1 and "input" in decision:
                ids = ", ".join(p["toolCallId"] for p in pending)
                raise UserError(f"{len(pending)} calls wait ({ids}); name the one to {what} "
                                "with tool_call_id=...")
            ids = [p["toolCallId"] for p in pending]
        else:
            ids = [tool_call_id]
        body = await self._call("POST", "/approve", json={
            "decisions": [{"toolCallId": i, **decision} for i in ids]})
        return self._next(body)

    async def approve(self, tool_call_id: str | None = None,
                      input: dict[str, Any] | None = None) -> AgentHandle:
        """Approve a waiting tool call (every one when ``tool_call_id`` is None), or run
        it with ``input`` instead (checked against the tool's schema). Once every waiting
        call is decided the run goes on; the returned handle follows it."""
        decision: dict[str, Any] = ({"action": "approve"} if input is None
                                    else {"action": "edit", "input": input})
        return await self._decide(tool_call_id, decision, "edit")

    async def deny(self, message: str, tool_call_id: str | None = None) -> AgentHandle:
        """Refuse a waiting call (every one when ``tool_call_id`` is None): the model gets
        an error tool_result carrying ``message``."""
        return await self._decide(tool_call_id, {"action": "deny", "message": message}, "deny")

    # -- controlling -----------------------------------------------------------------------

    async def interrupt(self, reason: str = "interrupted") -> dict[str, Any]:
        """Soft stop at the next safe point; resumable. Returns the new status."""
        return await self._call("POST", "/interrupt", json={"reason": reason})

    async def abort(self, reason: str = "aborted") -> dict[str, Any]:
        """Hard stop; the session becomes failed and cannot be resumed."""
        return await self._call("POST", "/abort", json={"reason": reason})

    async def can_resume(self) -> ResumeCheck:
        """``{canResume, reason}`` as in the seed; truthy when the session can resume."""
        return ResumeCheck.of(await self.status())

    async def _agent_type(self) -> str:
        """The session's agent type, which ``/resume`` and ``/retry`` require (and check)."""
        if self.agent_type is None:
            self.agent_type = (await self.status()).get("agentType")
        if not self.agent_type:
            raise UserError(f"Session {self.session_id!r} has not been started; start() it "
                            "first.")
        return self.agent_type

    async def resume(
        self,
        mode: Literal["continue", "with_message", "from_checkpoint"] = "continue",
        *,
        message: str | None = None,
        checkpoint_id: str | None = None,
        modify_state: Any = None,
        edit_tool_results: dict[str, Any] | None = None,
        max_cost_usd: float | None = None,
    ) -> AgentHandle:
        """Go on after an interrupt, optionally with a message, or fork from a checkpoint.

        ``from_checkpoint`` with ``modify_state`` (an object merged into the state, or a
        JSON patch) starts a new branch; the original history stays as it was. With
        ``edit_tool_results`` (tool call id -> output) the branch starts at the step that
        produced those results, with the outputs replaced, and re-runs only what follows.
        ``max_cost_usd`` sets the budget for this run (the session's total spend).
        """
        options: dict[str, Any] = {"mode": "continue"}
        if mode == "with_message":
            if not message:
                raise UserError("resume(mode='with_message') needs message=...")
            options["appendMessages"] = [{"role": "user", "content": message}]
        elif mode == "from_checkpoint":
            if not checkpoint_id:
                raise UserError("resume(mode='from_checkpoint') needs checkpoint_id=...")
            options = {"mode": "branch", "checkpointId": checkpoint_id}
            if message:
                options["appendMessages"] = [{"role": "user", "content": message}]
        elif mode != "continue":
            raise UserError(f"Unknown resume mode {mode!r}: use 'continue', 'with_message' "
                            "or 'from_checkpoint'.")
        if edit_tool_results:
            if mode != "from_checkpoint":
                raise UserError("edit_tool_results needs mode='from_checkpoint' and "
                                "checkpoint_id=...")
            options["editToolResults"] = [{"toolCallId": k, "output": v}
                                          for k, v in edit_tool_results.items()]
        if modify_state is not None:
            options["modifyState"] = modify_state
        if max_cost_usd is not None:
            options["maxCostUsd"] = max_cost_usd
        body = await self._call("POST", "/resume",
                                json={"agentType": await self._agent_type(), "options": options})
        return self._next(body)

    async def retry(self, mode: Literal["from_checkpoint", "from_start"] = "from_checkpoint",
                    *, message: str | None = None) -> AgentHandle:
        """Run again from the last checkpoint, or from the very start (a new branch)."""
        options: dict[str, Any] = {"mode": mode}
        if message is not None:
            options["message"] = message
        body = await self._call("POST", "/retry",
                                json={"agentType": await self._agent_type(), "options": options})
        return self._next(body)

    async def send(self, message: str) -> AgentHandle:
        """A follow-up message in the same session, after the last run ended."""
        body = await self._call("POST", "/start", json={
            "agentType": await self._agent_type(), "sessionId": self.session_id,
            "input": {"message": message}})
        return self._next(body)
