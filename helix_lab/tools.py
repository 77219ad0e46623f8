"""Tools: plain Python functions an agent may call, and the context they run in.

::

    @tool
    async def search(query: str, ctx: ToolContext) -> list[str]:
        \"\"\"Search the notes corpus.\"\"\"
        ctx.update_state(lambda s: s.notes.append(query))
        return corpus.search(query)

The input schema comes from the signature (through pydantic), the description from the
docstring. ``@tool(requires_approval=True)`` (or a predicate ``(input, state) -> bool``)
makes the run pause before the call until a person approves, edits or denies it. A parameter annotated ``ToolContext`` is filled in by the runtime and hidden
from the model. Sync and async functions both work; a sync tool runs on the event loop,
so keep it quick (the runtime must also run where there are no threads).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, get_type_hints, overload

import pydantic
from pydantic_core import PydanticSerializationError, to_jsonable_python

from .errors import ToolError, ToolInputError, UserError

__all__ = ["AbortSignal", "ApprovalRule", "Tool", "ToolContext", "ToolInputError",
           "ToolResultNotJSONError", "tool"]

ApprovalRule: TypeAlias = "bool | Callable[[dict[str, Any], Any], bool]"
"""``True``: every call waits for approval; a predicate ``(input, state) -> bool`` decides
per call, from the model's arguments and the agent's state."""


class ToolResultNotJSONError(ToolError):
    """A tool returned something that is not JSON. The DO runtime tells the model; a
    durable (Workflows) step cannot store it, so there the run fails, naming the tool."""


class AbortSignal:
    """Set when the run is aborted; long tools should check it or ``await`` it."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.reason: str | None = None

    @property
    def aborted(self) -> bool:
        return self._event.is_set()

    def abort(self, reason: str = "aborted") -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    async def wait(self) -> None:
        await self._event.wait()


class _StepHost(Protocol):
    """What a tool context needs from the executor's current step."""

    def get_state(self) -> Any: ...

    def update_state(self, change: Any) -> None: ...

    async def emit(self, chunk: dict[str, Any]) -> None: ...

    def record_usage(self, entry: dict[str, Any]) -> None: ...


class ToolContext:
    """Handed to a tool that asks for it: state, streaming and the abort signal.

    State changes are staged: they become visible to the next tool at once, and are
    committed together with the step's checkpoint, or not at all.
    """

    def __init__(
        self,
        host: _StepHost,
        *,
        session_id: str,
        run_id: str,
        step: int,
        agent_type: str,
        tool_call_id: str,
        abort_signal: AbortSignal,
    ) -> None:
        self._host = host
        self.session_id = session_id
        self.run_id = run_id
        self.step = step
        self.agent_type = agent_type
        self.tool_call_id = tool_call_id
        self.abort_signal = abort_signal

    def get_state(self) -> Any:
        """The agent's state as staged so far in this step."""
        return self._host.get_state()

    def update_state(self, change: Callable[[Any], Any] | list[dict[str, Any]]) -> None:
        """Change the state with a function (mutate, or return a new state) or a JSON patch."""
        self._host.update_state(change)

    async def emit(self, chunk: dict[str, Any]) -> None:
        """Send a chunk (usually ``{"type": "custom", "name": ..., "data": ...}``) to clients."""
        if not isinstance(chunk, dict) or "type" not in chunk:
            raise UserError('emit() takes a dict with a "type", e.g. {"type": "custom", ...}.')
        try:
            await self._host.emit(chunk)
        except (TypeError, ValueError) as exc:  # json.dumps refused it; nothing was sent
            raise ToolError(f"emit() takes JSON data only: {exc}.") from None

    def record_usage(
        self,
        *,
        kind: str = "tool",
        name: str | None = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost: float = 0.0,
        **metadata: Any,
    ) -> None:
        """Add a usage entry (an external API call, tokens of a nested model, a cost)."""
        self._host.record_usage(
            {
                "kind": kind,
                "name": name or self.tool_call_id,
                "inputTokens": input_tokens,
                "outputTokens": output_tokens,
                "cost": cost,
                "metadata": metadata,
            }
        )


@dataclass
class Tool:
    """A callable the model can use. Build one with :func:`tool`."""

    name: str
    description: str
    fn: Callable[..., Any]
    input_model: type[pydantic.BaseModel]
    context_param: str | None = None
    timeout: float | None = 60.0
    """Seconds before the call is cancelled and reported as an error; ``None``: no limit."""
    requires_approval: ApprovalRule = False

    def needs_approval(self, arguments: dict[str, Any], state: Any) -> bool:
        """Whether this call must wait for a person (see :data:`ApprovalRule`)."""
        rule = self.requires_approval
        if callable(rule):
            return bool(rule(arguments, state))
        return bool(rule)

    def validate_input(self, arguments: Any) -> dict[str, Any]:
        """``arguments`` checked against the input schema, as JSON; :class:`ToolError`
        names the first field that does not fit (unknown fields included)."""
        if not isinstance(arguments, dict):
            raise ToolInputError(f"The input of tool {self.name!r} must be a JSON object.",
                                 field="")
        unknown = sorted(set(arguments) - set(self.input_model.model_fields))
        if unknown:
            raise ToolInputError(
                f"Tool {self.name!r} has no parameter {unknown[0]!r}; its parameters: "
                f"{', '.join(self.input_model.model_fields) or 'none'}.", field=unknown[0])
        try:
            parsed = self.input_model.model_validate(arguments)
        except pydantic.ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ToolInputError(f"Invalid input for tool {self.name!r}: "
                                 f"{where or 'input'}: {err['msg']}", field=where) from None
        return parsed.model_dump(mode="json")

    @property
    def input_schema(self) -> dict[str, Any]:
        schema = self.input_model.model_json_schema()
        schema.pop("title", None)
        return schema

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "input_schema": self.input_schema}

    async def call(self, arguments: dict[str, Any], ctx: ToolContext | None) -> Any:
        """Validate ``arguments``, run the function, and return a JSON-ready result."""
        try:
            parsed = self.input_model.model_validate(arguments)
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'input'}: {err['msg']}"
                for err in exc.errors()
            )
            raise ToolError(f"Invalid input for tool {self.name!r}: {problems}") from None
        kwargs = {name: getattr(parsed, name) for name in type(parsed).model_fields}
        if self.context_param is not None:
            kwargs[self.context_param] = ctx
        result = self.fn(**kwargs)
        if inspect.isawaitable(result):
            result = await result
        return to_json_value(result, self.name)


def to_json_value(value: Any, tool_name: str) -> Any:
    try:
        return to_jsonable_python(value)
    except PydanticSerializationError:
        raise ToolResultNotJSONError(
            f"Tool {tool_name!r} returned a {type(value).__name__}, which is not JSON; "
            "return str, numbers, lists, dicts or pydantic models."
        ) from None


def _is_context(annotation: Any) -> bool:
    return annotation is ToolContext or (
        isinstance(annotation, str) and annotation.split(".")[-1] == "ToolContext"
    )


def _build(fn: Callable[..., Any], name: str | None, description: str | None,
           timeout: float | None, requires_approval: ApprovalRule = False) -> Tool:
    if not callable(fn):
        raise UserError(f"@tool needs a function, got {fn!r}.")
    if not (isinstance(requires_approval, bool) or callable(requires_approval)):
        raise UserError("requires_approval must be True, False or a function "
                        f"(input, state) -> bool; got {requires_approval!r}.")
    signature = inspect.signature(fn)
    try:
        hints = get_type_hints(fn, include_extras=True)
    except Exception:  # unresolvable forward refs: fall back to the raw annotations
        hints = {}
    fields: dict[str, Any] = {}
    context_param = None
    for param in signature.parameters.values():
        annotation = hints.get(param.name, param.annotation)
        if _is_context(annotation):
            context_param = param.name
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise UserError(f"Tool {fn.__name__!r}: *args and **kwargs can't become a schema.")
        if annotation is inspect.Parameter.empty:
            annotation = Any
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (annotation, default)
    tool_name = name or fn.__name__
    model = pydantic.create_model(f"{tool_name}_input", **fields)
    doc = inspect.getdoc(fn) or ""
    return Tool(
        name=tool_name,
        description=description or doc.split("\n\n")[0].strip() or tool_name,
        fn=fn,
        input_model=model,
        context_param=context_param,
        timeout=timeout,
        requires_approval=requires_approval,
    )


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *, name: str | None = None, description: str | None = None, timeout: float | None = 60.0,
    requires_approval: ApprovalRule = False,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = 60.0,
    requires_approval: ApprovalRule = False,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a function into a :class:`Tool`: ``@tool`` or ``@tool(name=..., timeout=...,
    requires_approval=...)``."""
    if fn is not None:
        return _build(fn, name, description, timeout, requires_approval)
    return lambda f: _build(f, name, description, timeout, requires_approval)

