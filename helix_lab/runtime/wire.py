"""Request bodies of the wire, as pydantic models (camelCase JSON, snake_case Python).

There is one wire format: camelCase keys, and no others. Validation errors become a 400
whose message names the field, e.g. ``input.message: Field required``. An unknown key is
an error too, never silently dropped: a misspelt or snake_case key gets a 400 that names
the camelCase key it most likely meant (``options.modifystate: unknown key; did you mean
'modifyState'?``).
"""

from __future__ import annotations

import difflib
from typing import Any, Literal, TypeVar, get_args

import pydantic
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from ..errors import BadRequestError
from .http import Request

__all__ = [
    "AbortRequest",
    "ApproveRequest",
    "Decision",
    "InterruptRequest",
    "ResumeAgentRequestV2",
    "ResumeOptions",
    "RetryAgentRequestV2",
    "RetryOptions",
    "StartAgentRequestV2",
    "StartInput",
    "ToolResultEdit",
    "describe",
    "parse_body",
    "suggest_key",
    "validate_body",
]

_SESSION_ID = r"^[A-Za-z0-9][A-Za-z0-9._:~-]{0,127}$"


class _Wire(BaseModel):
    # Keys are read by their camelCase alias only, and unknown keys are refused, so a
    # typo cannot be dropped with a 200 (``validate_by_name`` stays off on purpose).
    model_config = ConfigDict(alias_generator=to_camel, extra="forbid")


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
    max_cost_usd: float | None = Field(default=None, gt=0)
    """A budget in dollars for the session's spend; the run stops softly past it."""


class ToolResultEdit(_Wire):
    """One entry of ``editToolResults``: the new output of a tool call."""

    tool_call_id: str = Field(min_length=1)
    output: Any
    is_error: bool = False


class ResumeOptions(_Wire):
    mode: Literal["continue", "retry", "branch"] = "continue"
    checkpoint_id: str | None = None
    modify_state: Any = None
    append_messages: list[dict[str, Any]] | None = None
    edit_tool_results: list[ToolResultEdit] | None = None
    max_cost_usd: float | None = Field(default=None, gt=0)


class ResumeAgentRequestV2(_Wire):
    agent_type: str = Field(min_length=1)  # required, as in the seed; checked against the session
    options: ResumeOptions = Field(default_factory=ResumeOptions)


class RetryOptions(_Wire):
    mode: Literal["from_checkpoint", "from_start"] = "from_checkpoint"
    message: str | None = None


class RetryAgentRequestV2(_Wire):
    agent_type: str = Field(min_length=1)
    options: RetryOptions = Field(default_factory=RetryOptions)


class Decision(_Wire):
    """One decision of ``POST /approve``: approve, edit (with ``input``) or deny (with a
    ``message`` the model reads)."""

    tool_call_id: str = Field(min_length=1)
    action: Literal["approve", "edit", "deny"]
    input: dict[str, Any] | None = None
    message: str | None = None


class ApproveRequest(_Wire):
    decisions: list[Decision] = Field(min_length=1)


class InterruptRequest(_Wire):
    reason: str = "interrupted"


class AbortRequest(_Wire):
    reason: str = "aborted"


M = TypeVar("M", bound=BaseModel)


def _model_at(model: type[BaseModel], path: tuple[Any, ...]) -> type[BaseModel] | None:
    """The wire model that holds the key at ``path`` (aliases, as pydantic reports them)."""
    for part in path:
        by_alias = {f.alias or name: f for name, f in model.model_fields.items()}
        field = by_alias.get(part) if isinstance(part, str) else None
        if field is None:
            return None
        inner = [t for t in (field.annotation, *get_args(field.annotation))
                 if isinstance(t, type) and issubclass(t, BaseModel)]
        if not inner:
            return None
        model = inner[0]
    return model


def suggest_key(model: type[BaseModel], key: str) -> str | None:
    """The camelCase key of ``model`` that ``key`` most likely meant, if any is close."""
    known = [f.alias or name for name, f in model.model_fields.items()]
    if to_camel(key) in known:  # snake_case for camelCase
        return to_camel(key)
    folded = {k.lower(): k for k in known}
    close = difflib.get_close_matches(key.replace("_", "").lower(), list(folded), n=1,
                                      cutoff=0.6)
    return folded[close[0]] if close else None


def describe(exc: pydantic.ValidationError,
             model: type[BaseModel] | None = None) -> tuple[str, str]:
    """The first problem of a validation error as ``(field, message)``.

    With the wire ``model`` it was raised for, an unknown key is named with the key it
    most likely meant and the keys that are accepted there.
    """
    errors = exc.errors()
    # An unknown key first: a misspelt key is also the cause of the "missing" one.
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    field = ".".join(str(p) for p in err["loc"]) or "body"
    if err["type"] == "extra_forbidden" and model is not None:
        *where, key = err["loc"]
        holder = _model_at(model, tuple(where))
        if holder is not None and isinstance(key, str):
            known = ", ".join(f.alias or n for n, f in holder.model_fields.items())
            guess = suggest_key(holder, key)
            hint = f"did you mean {guess!r}? " if guess else ""
            return field, (f"{field}: unknown key; {hint}Keys are camelCase; accepted here: "
                           f"{known}.")
    return field, f"{field}: {err['msg']}"


def validate_body(model: type[M], data: Any) -> M:
    """Validate an already decoded body; a :class:`~helix_lab.errors.BadRequestError` names
    the offending field."""
    if not isinstance(data, dict):
        raise BadRequestError(f"The request body must be a JSON object, got {type(data).__name__}.")
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        field, message = describe(exc, model)
        raise BadRequestError(message, field=field) from None


def parse_body(request: Request, model: type[M], *, optional: bool = False) -> M:
    """Read and validate a JSON body; a :class:`~helix_lab.errors.BadRequestError` names the
    offending field."""
    data: Any = {} if optional and not request.body.strip() else request.json()
    return validate_body(model, data)
