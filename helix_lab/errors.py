"""Every exception helix_lab raises on purpose, in one place.

Three kinds are kept apart, as pydantic-ai does: a mistake by the developer using the
library, a failure while an agent runs, and an HTTP-level refusal::

    HelixError
    ├── UserError                 wrong use of the API: fix your code
    │   ├── AgentNotFoundError    unknown agent type (lists the available ones)
    │   ├── JsonPatchError        a JSON patch is malformed or does not apply
    │   ├── DeployError           helix deploy cannot go on
    │   ├── ServeError            helix serve cannot start
    │   ├── PyodideHostError              (pyodide_host) the Pyodide host cannot start
    │   ├── SessionFileError              (session_file) not a .helix file, or a damaged one
    │   ├── AgentsUnavailable             (worker_bundle.agents) the Worker's agents module fails
    │   ├── D1Error                       (workflows.d1) a D1 query failed
    │   ├── StepResultTooLargeError       (workflows.errors) over Cloudflare's 1 MiB
    │   └── StepResultNotJSONError        (workflows.errors) cannot be stored
    ├── RunError                  an agent run failed (max_steps, a model error, ...)
    │   ├── RunInterrupted        result() of a run that was interrupted: resume it
    │   ├── RunPaused             result() of a run waiting for tool approvals: decide them
    │   ├── NonRetryableError             (workflows.errors) fail a step without retries
    │   └── WorkflowTimeoutError          (workflows.errors) a step or a wait timed out
    ├── ToolError                 a tool refused or failed; the model sees the message
    │   ├── ToolInputError        arguments that do not fit the tool's schema (names the field)
    │   └── ToolResultNotJSONError        (tools) a result that is not JSON
    ├── LLMError                  a model call failed (``retryable`` ones are retried)
    │   └── CassetteMismatch              (llm.cassette) a replay was asked something new
    └── BackendError              an HTTP-level refusal: status, code, message, details
        ├── BadRequestError       400 (names the field)
        │   └── SearchQueryError          (runtime.search) FTS5 cannot parse the query
        ├── SearchUnavailableError        (runtime.search) 501: this SQLite has no FTS5
        ├── BadMethod                     (worker_bundle.convert) 405: a method no endpoint takes
        ├── AuthError             401 / 403
        ├── NotFoundError         404 (agent type, session or checkpoint)
        ├── ConflictError         409 (already executing, not resumable)
        └── UnreachableError      no answer at all (connection refused, DNS, timeout)
            └── ObjectUnavailable         (worker_bundle.stubs) a Durable Object did not answer

The classes marked with a module live beside the code that raises them; every other one
is defined here. ``BackendError`` is the one HTTP error type on both sides of the wire: the
runtime raises it to refuse a request and ``AgentServer.fetch`` turns it into the JSON error body
``{"error": {"code", "message", **details}}``; a client turns that body back into the same
class with :func:`backend_error`.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AgentNotFoundError",
    "AuthError",
    "BackendError",
    "BadRequestError",
    "ConflictError",
    "DeployError",
    "HelixError",
    "JsonPatchError",
    "LLMError",
    "NotFoundError",
    "RunError",
    "RunInterrupted",
    "RunPaused",
    "ServeError",
    "ToolError",
    "ToolInputError",
    "UnreachableError",
    "UserError",
    "backend_error",
]


class HelixError(Exception):
    """Base class of helix_lab's own exceptions."""


class UserError(HelixError):
    """The library was used wrongly; the message says how to fix it."""


class AgentNotFoundError(UserError):
    """No agent is registered under ``agent_type``."""

    def __init__(self, agent_type: str, available_types: list[str]) -> None:
        self.agent_type = agent_type
        self.available_types = list(available_types)
        available = ", ".join(self.available_types) or "none registered"
        super().__init__(f"Unknown agent type {agent_type!r}. Available types: {available}.")


class JsonPatchError(UserError, ValueError):
    """A JSON patch is malformed or does not apply to the document."""


class DeployError(UserError):
    """``helix deploy`` cannot go on; the message says what to do."""


class ServeError(UserError):
    """``helix serve`` cannot start; the message names the fix."""


class RunError(HelixError):
    """An agent run ended in failure."""


class RunInterrupted(RunError):
    """``result()`` of a run that was interrupted; resume it to get a result."""


class RunPaused(RunError):
    """``result()`` of a run that waits for tool approvals; approve or deny them first."""


class ToolError(HelixError):
    """Raise from a tool to report a failure to the model without a traceback."""


class ToolInputError(ToolError):
    """Arguments that do not fit a tool's input schema; ``field`` names the first culprit."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class LLMError(HelixError):
    """A model call failed.

    ``retryable`` marks transient failures (429, 529, 5xx, a dropped connection) that the
    executor retries with backoff, emitting an ``llm_retry`` chunk each time.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = False,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


class BackendError(HelixError):
    """An HTTP-level refusal. ``code`` is the machine-readable error code, and ``details``
    the body's other fields (``field``, ``availableTypes``, ...)."""

    status: int = 500
    default_code: str = "error"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        if status is not None:
            self.status = status
        self.details = details or {}

    def to_body(self) -> dict[str, Any]:
        """The JSON error body of the wire."""
        return {"error": {"code": self.code, "message": self.message, **self.details}}


class BadRequestError(BackendError):
    """400: the request is malformed; ``field`` names what to fix."""

    status = 400
    default_code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None,
                 status: int | None = None, details: dict[str, Any] | None = None) -> None:
        details = dict(details or {})
        if field:
            details["field"] = field
        super().__init__(message, code=code, status=status, details=details)

    @property
    def field(self) -> str | None:
        return self.details.get("field")


class AuthError(BackendError):
    """401 or 403: the bearer token is missing or wrong; ``status`` keeps which."""

    status = 401
    default_code = "unauthorized"


class NotFoundError(BackendError):
    """404: no such session, checkpoint, step, workflow instance or endpoint."""

    status = 404
    default_code = "not_found"


class ConflictError(BackendError):
    """409: the session cannot do that now (it is executing, paused for approvals, or
    not resumable); ``code`` says which, and the message what to do instead."""

    status = 409
    default_code = "conflict"


class UnreachableError(BackendError):
    """No HTTP answer at all: the connection was refused, the host did not resolve, or
    the request timed out. ``status`` is 0."""

    status = 0
    default_code = "unreachable"


_BY_STATUS: dict[int, type[BackendError]] = {
    400: BadRequestError,
    401: AuthError,
    403: AuthError,
    404: NotFoundError,
    409: ConflictError,
}


def backend_error(status: int, body: Any) -> BackendError:
    """Build the right :class:`BackendError` from an error response body."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        message = str(error.get("message") or f"HTTP {status}")
        code = str(error.get("code") or "error")
        details = {k: v for k, v in error.items() if k not in ("message", "code")}
    else:
        message, code, details = f"HTTP {status}: {body!r}"[:500], "error", {}
    cls = _BY_STATUS.get(status, BackendError)
    return cls(message, code=code, status=status, details=details)
