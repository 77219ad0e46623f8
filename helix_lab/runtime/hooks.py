"""Server hooks and the execution view they get: ``ServerHooks``, ``AbortResult``,
``ExecutionState`` and the context object of each hook.

Every hook may be sync or async (:func:`call_hook` awaits either). A ``before_*`` hook may
answer the request itself by returning ``AbortResult(response=...)`` or the seed's plain
``{"abort": True, "response": ...}``; ``before_start`` may also make room for the new run
by interrupting the running one through ``execution_state.interrupt(...)``. ``after_*``
hooks (and ``execution_state.get_handle()``) get a real
:class:`~helix_lab.runtime.handle.AgentHandle` over the object: it streams, resumes,
retries and sends.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .http import Request, Response
from .wire import ResumeAgentRequestV2, RetryAgentRequestV2, StartAgentRequestV2

if TYPE_CHECKING:
    from .handle import AgentHandle

__all__ = [
    "AbortResult",
    "AfterResumeContext",
    "AfterRetryContext",
    "AfterStartContext",
    "BeforeResumeContext",
    "BeforeRetryContext",
    "BeforeStartContext",
    "CompleteContext",
    "EndpointContext",
    "ExecutionState",
    "RunControl",
    "ServerHooks",
    "call_hook",
]


async def call_hook(hook: Callable[..., Any] | None, *args: Any) -> Any:
    """Call a sync or async hook; ``None`` for no hook."""
    if hook is None:
        return None
    result = hook(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


class RunControl(Protocol):
    """What hooks may do with a run: the executor's ``Execution`` is one."""

    run_id: str
    status: str

    @property
    def is_executing(self) -> bool: ...

    async def interrupt(self, reason: str = "interrupted") -> None: ...

    async def abort(self, reason: str = "aborted") -> None: ...

    async def result(self) -> Any: ...


class _RunOwner(Protocol):
    """The server, as :class:`ExecutionState` sees it."""

    session_id: str

    @property
    def execution(self) -> RunControl | None: ...

    @property
    def is_executing(self) -> bool: ...

    @property
    def status(self) -> str: ...

    def current_handle(self) -> AgentHandle | None: ...


@dataclass
class AbortResult:
    """Return this from a ``before_*`` hook to answer with ``response`` instead."""

    response: Response
    abort: bool = True


@dataclass
class BeforeStartContext:
    env: Any
    request: Request
    body: StartAgentRequestV2
    execution_state: ExecutionState


@dataclass
class BeforeResumeContext:
    env: Any
    request: Request
    body: ResumeAgentRequestV2
    execution_state: ExecutionState


@dataclass
class BeforeRetryContext:
    env: Any
    request: Request
    body: RetryAgentRequestV2
    execution_state: ExecutionState


@dataclass
class AfterStartContext:
    env: Any
    session_id: str
    run_id: str
    agent_type: str
    handle: AgentHandle


AfterResumeContext = AfterStartContext
AfterRetryContext = AfterStartContext


@dataclass
class CompleteContext:
    env: Any
    session_id: str
    run_id: str
    status: str
    result: Any = None
    error: str | None = None


@dataclass
class EndpointContext:
    env: Any
    execution_state: ExecutionState
    logger: Any


@dataclass
class ServerHooks:
    """Lifecycle hooks; each may be sync or async. ``before_*`` may return an AbortResult."""

    before_start: Callable[[BeforeStartContext], Any] | None = None
    after_start: Callable[[AfterStartContext], Any] | None = None
    before_resume: Callable[[BeforeResumeContext], Any] | None = None
    after_resume: Callable[[AfterStartContext], Any] | None = None
    before_retry: Callable[[BeforeRetryContext], Any] | None = None
    after_retry: Callable[[AfterStartContext], Any] | None = None
    on_complete: Callable[[CompleteContext], Any] | None = None
    transform_request: Callable[[Any, Any], Any] | None = None
    """``(raw_body, env) -> StartAgentRequestV2-shaped dict`` for ``/start``."""
    transform_response: Callable[[dict[str, Any], dict[str, Any]], Any] | None = None
    """``(response, {"sessionId", "agentType"}) -> body`` for ``/start``."""


class ExecutionState:
    """The view of the current execution that hooks and custom endpoints get."""

    def __init__(self, server: _RunOwner) -> None:
        self._server = server

    @property
    def session_id(self) -> str | None:
        return self._server.session_id or None

    @property
    def run_id(self) -> str | None:
        """The running run's id; ``None`` when nothing runs (it is cleared when a run ends)."""
        execution = self._server.execution
        return execution.run_id if execution is not None and self._server.is_executing else None

    @property
    def is_executing(self) -> bool:
        """Whether a run executes now; read afresh on each access, like ``status``."""
        return self._server.is_executing

    @property
    def status(self) -> str:
        """The session's status: ``idle`` (no session yet), ``running``, ``paused``,
        ``interrupted``, ``completed`` or ``failed``."""
        return self._server.status

    def get_handle(self) -> AgentHandle | None:
        """A handle on the running run, the kind ``after_*`` hooks get; ``None`` when idle."""
        return self._server.current_handle()

    async def interrupt(self, reason: str = "interrupted") -> None:
        if self._server.execution is not None:
            await self._server.execution.interrupt(reason)

    async def abort(self, reason: str = "aborted") -> None:
        if self._server.execution is not None:
            await self._server.execution.abort(reason)
