"""Every exception helix_lab raises on purpose, in one place.

Three kinds are kept apart, as pydantic-ai does: a mistake by the developer using the
library, a failure while an agent runs, and an HTTP-level refusal from a backend::

    HelixError
    ├── UserError                 wrong use of the API: fix your code
    │   └── AgentNotFoundError    unknown agent type (lists the available ones)
    ├── RunError                  an agent run failed (max_steps, a model error, ...)
    ├── ToolError                 a tool refused or failed; the model sees the message
    └── BackendError              a backend answered with an error body
        ├── AuthError             401 / 403
        ├── NotFoundError         404 (agent type, session or checkpoint)
        ├── ConflictError         409 (already executing, not resumable)
        ├── BadRequestError       400 (names the field)
        └── UnreachableError      no answer at all (connection refused, DNS, timeout)

``LLMError`` lives in :mod:`helix_lab.llm.base` beside the protocol it belongs to.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AgentNotFoundError",
    "AuthError",
    "BackendError",
    "BadRequestError",
    "ConflictError",
    "HelixError",
    "NotFoundError",
    "RunError",
    "ToolError",
    "UnreachableError",
    "UserError",
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


class RunError(HelixError):
    """An agent run ended in failure."""


class ToolError(HelixError):
    """Raise from a tool to report a failure to the model without a traceback."""


class BackendError(HelixError):
    """A backend refused a request. ``code`` is the machine-readable error code."""

    status: int = 0

    def __init__(self, message: str, *, code: str = "error", status: int | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        if status is not None:
            self.status = status
        self.details = details or {}


class BadRequestError(BackendError):
    status = 400


class AuthError(BackendError):
    status = 401


class NotFoundError(BackendError):
    status = 404


class ConflictError(BackendError):
    status = 409


class UnreachableError(BackendError):
    status = 0


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
