"""Request bodies of the wire, as pydantic models (camelCase JSON, snake_case Python).

Validation errors become a 400 whose message names the field, e.g.
``input.message: Field required``.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import pydantic
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from ..errors import BadRequestError
from .http import Request

__all__ = [
    "AbortRequest",
    "InterruptRequest",
    "ResumeAgentRequestV2",
    "ResumeOptions",
    "RetryAgentRequestV2",
    "RetryOptions",
    "StartAgentRequestV2",
    "StartInput",
    "parse_body",
]

_SESSION_ID = r"^[A-Za-z0-9][A-Za-z0-9._:~-]{0,127}$"


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class StartInput(_Wire):
    message: str = Field(min_length=1)
    state: dict[str, Any] | None = None
    messages: list[dict[str, Any]] | None = None


class StartAgentRequestV2(_Wire):
    agent_type: str = Field(min_length=1)
    input: StartInput
    session_id: str = Field(pattern=_SESSION_ID)
    user_id: str | None = None
    tags: list[str] | None = None
    metadata: dict[str, str] | None = None


class ResumeOptions(_Wire):
    mode: Literal["continue", "retry", "branch"] = "continue"
    checkpoint_id: str | None = None
    modify_state: Any = None
    append_messages: list[dict[str, Any]] | None = None


class ResumeAgentRequestV2(_Wire):
    agent_type: str | None = None
    options: ResumeOptions = Field(default_factory=ResumeOptions)


class RetryOptions(_Wire):
    mode: Literal["from_checkpoint", "from_start"] = "from_checkpoint"
    message: str | None = None


class RetryAgentRequestV2(_Wire):
    agent_type: str | None = None
    options: RetryOptions = Field(default_factory=RetryOptions)


class InterruptRequest(_Wire):
    reason: str = "interrupted"


class AbortRequest(_Wire):
    reason: str = "aborted"


M = TypeVar("M", bound=BaseModel)


def describe(exc: pydantic.ValidationError) -> tuple[str, str]:
    """The first problem of a validation error as ``(field, message)``."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "body"
    return field, f"{field}: {err['msg']}"


def parse_body(request: Request, model: type[M], *, optional: bool = False) -> M:
    """Read and validate a JSON body; a :class:`~helix_lab.errors.BadRequestError` names the offending field."""
    if optional and not request.body.strip():
        data: Any = {}
    else:
        data = request.json()
    if not isinstance(data, dict):
        raise BadRequestError(f"The request body must be a JSON object, got {type(data).__name__}.")
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        field, message = describe(exc)
        raise BadRequestError(message, field=field) from None
