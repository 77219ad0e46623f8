"""One agent step's logic without its host: build the request, consume the model's turn,
run a tool call. Both runtimes use it: the Durable Object executor (one step inside one
transaction) and the Workflows approach (each piece a memoized ``step.do``).

Nothing here stores anything or knows about sessions. Chunks go out through ``emit``;
state goes through a :class:`ToolHost` (what a :class:`~helix_lab.tools.ToolContext`
needs), so a host can stage it the way it commits.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import anyio
import pydantic

from ..agent import FINISH_TOOL, Agent
from ..errors import RunError, ToolError
from ..llm.base import LLMAdapter, LLMError, LLMRequest
from ..tools import AbortSignal, ToolContext, ToolResultNotJSONError
from .hooks import call_hook
from .jsonpatch import JsonPatchError, apply_patch
from .state_store import now_ms
from .stream import MAX_BATCH

__all__ = [
    "Emit",
    "ModelTurn",
    "ToolHost",
    "build_request",
    "call_tool",
    "changed_state",
    "consume_turn",
    "limit_error",
    "must_finish",
    "run_tool_call",
    "tool_result_block",
]

Emit = Callable[[dict[str, Any]], Any]
"""Send one chunk (without its stamp) to the session's stream."""


@dataclass
class ModelTurn:
    """What the model said in one call."""

    text: str = ""
    thinking: str = ""
    signature: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    stop_reason: str = "end_turn"
    model: str | None = None
    """The model that answered, when the adapter says (else the one asked for)."""
    first_token_ms: int | None = None

    def message(self) -> dict[str, Any]:
        """The assistant message this turn adds to the conversation."""
        content: list[dict[str, Any]] = []
        if self.thinking or self.signature:
            block: dict[str, Any] = {"type": "thinking", "thinking": self.thinking}
            if self.signature:
                block["signature"] = self.signature
            content.append(block)
        if self.text:
            content.append({"type": "text", "text": self.text})
        for call in self.tool_calls:
            content.append({"type": "tool_use", **call})
        if not content:
            content.append({"type": "text", "text": ""})
        return {"role": "assistant", "content": content}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelTurn:
        return cls(**data)


def must_finish(messages: list[dict[str, Any]]) -> bool:
    """An agent with an output schema answered in prose last time: make it finish."""
    last = messages[-1] if messages else None
    if not last or last.get("role") != "assistant":
        return False
    content = last.get("content")
    return isinstance(content, list) and not any(
        b.get("type") == "tool_use" for b in content if isinstance(b, dict))


def build_request(agent: Agent, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
                  *, force_finish: bool) -> LLMRequest:
    config = agent.llm_config
    return LLMRequest(
        model=config.model, system=agent.system_prompt, messages=messages,
        tools=tools,  # type: ignore[arg-type]
        tool_choice=FINISH_TOOL if force_finish else None, max_tokens=config.max_tokens,
        temperature=config.temperature, thinking_budget=config.thinking_budget)


def limit_error(agent: Agent, *, forced: bool) -> RunError:
    """The error of a run that reached ``max_steps`` without an answer."""
    if forced:
        return RunError(
            f"Agent {agent.name!r} was required to call {FINISH_TOOL} with its output at "
            f"max_steps={agent.max_steps} and did not; check the model and the output schema.")
    return RunError(
        f"Agent {agent.name!r} reached max_steps={agent.max_steps} without a final answer. "
        "Raise max_steps, or give the agent an output_schema so that it is made to answer "
        "at the limit.")


async def consume_turn(llm: LLMAdapter, request: LLMRequest,
                       write_delta: Callable[[str, str], Any]) -> ModelTurn:
    """Stream one model call; each text or thinking delta goes to ``write_delta(kind,
    delta)`` as it comes (``kind`` is the chunk type: ``text_delta`` or ``thinking``)."""
    turn = ModelTurn()
    text: list[str] = []
    thinking: list[str] = []
    deltas = 0
    started = now_ms()
    waiting = True  # for the first token (a local: this loop runs once per delta)
    async for event in llm.stream(request):
        kind = event.get("type") if isinstance(event, dict) else None
        if waiting and kind in ("text_delta", "thinking_delta", "tool_call"):
            turn.first_token_ms = now_ms() - started
            waiting = False
        if kind == "text_delta" and isinstance(delta := event.get("delta"), str):
            text.append(delta)
            write_delta("text_delta", delta)
            deltas += 1
        elif kind == "thinking_delta" and isinstance(event.get("delta", ""), str):
            if delta := event.get("delta"):
                thinking.append(delta)
                write_delta("thinking", delta)
                deltas += 1
            if event.get("signature"):
                turn.signature = event["signature"]
        elif (kind == "tool_call" and isinstance(event.get("id"), str)
              and isinstance(event.get("name"), str) and isinstance(event.get("input"), dict)):
            turn.tool_calls.append({"id": event["id"], "name": event["name"],
                                    "input": event["input"]})
        elif kind == "usage":
            turn.usage.update({k: int(v) for k, v in event.items()
                               if k != "type" and isinstance(v, int)})
            if isinstance(event.get("model"), str) and event["model"]:
                turn.model = event["model"]
        elif kind == "finish":
            turn.stop_reason = str(event.get("stop_reason", "end_turn"))
        else:
            raise LLMError(f"The model adapter sent a malformed event: {event!r:.200}")
        if deltas >= MAX_BATCH:
            # A model that never awaits (scripted, cached) would hold the loop for its
            # whole answer: every other session and every client would wait, and a
            # client would read the deltas back from storage instead of from memory.
            deltas = 0
            await asyncio.sleep(0)
    turn.text, turn.thinking = "".join(text), "".join(thinking)
    return turn


async def call_tool(agent: Agent, call: dict[str, Any], ctx: ToolContext) -> Any:
    """Run one of ``agent``'s own tools (not a sub-agent) within its timeout."""
    name = call["name"]
    tool = agent.find_tool(name)
    if tool is None:
        available = ", ".join(s["name"] for s in agent.tool_specs()) or "none"
        raise ToolError(f"There is no tool named {name!r}. Available tools: {available}.")
    # fail_after raises TimeoutError when the tool outlives its timeout (none: no limit).
    with anyio.fail_after(tool.timeout):
        return await tool.call(call["input"], ctx)


class ToolHost(Protocol):
    """The step a tool call runs in: its staged state, its stream, its usage."""

    working: Any

    def get_state(self) -> Any: ...

    def update_state(self, change: Any) -> None: ...

    async def emit(self, chunk: dict[str, Any]) -> None: ...

    def record_usage(self, entry: dict[str, Any]) -> None: ...


def changed_state(agent: Agent, working: Any, change: Any) -> Any:
    """The state a tool's ``update_state(change)`` leaves: ``change`` is a function (that
    mutates the state or returns a new one) or a JSON patch; the result fits the schema."""
    if isinstance(change, list):
        try:
            new: Any = apply_patch(copy.deepcopy(agent.validate_state(working)), change)
        except JsonPatchError as exc:
            raise ToolError(f"The state patch does not apply: {exc}") from None
    elif callable(change):
        result = change(working)
        new = working if result is None else result
    else:
        raise ToolError("update_state() takes a function or a JSON patch (a list of ops).")
    try:
        return agent.load_state(agent.validate_state(new))
    except pydantic.ValidationError as exc:
        raise ToolError(f"The state change does not fit the state schema: {exc}") from None


def tool_result_block(call: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    content = result.get("output", result.get("error"))
    return {"type": "tool_result", "tool_use_id": call["id"],
            "content": content if isinstance(content, str) else json.dumps(content),
            "is_error": "error" in result}


async def run_tool_call(
    agent: Agent,
    call: dict[str, Any],
    host: ToolHost,
    *,
    session_id: str,
    run_id: str,
    step: int,
    abort_signal: AbortSignal,
    emit: Emit,
    execute: Callable[[str, dict[str, Any], ToolContext], Awaitable[Any]],
    log: Callable[[str, str, BaseException], None],
    strict_json: bool = False,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Run one tool call with its hooks; its tool_result block, and the final output when
    the call was a valid ``__finish__``.

    A failed call leaves no trace in the state: the model is told it failed, and a
    half-done update would contradict that. With ``strict_json`` a result that is not
    JSON raises instead of being reported to the model (a durable step must store it).
    """
    name = call["name"]
    ctx = ToolContext(host, session_id=session_id, run_id=run_id, step=step,
                      agent_type=agent.name, tool_call_id=call["id"], abort_signal=abort_signal)
    emit({"type": "tool_start", "toolCallId": call["id"], "toolName": name,
          "input": call["input"]})
    await call_hook(agent.hooks.before_tool, ctx, call)
    before = _dump(agent, host.working)
    final = None
    try:
        if name == FINISH_TOOL and agent.output_schema is not None:
            output = agent.output_schema.model_validate(call["input"]).model_dump(mode="json")
            final = {"output": output}
            result: dict[str, Any] = {"output": "Final answer recorded."}
        else:
            result = {"output": await execute(name, call, ctx)}
    except pydantic.ValidationError as exc:
        result = {"error": f"The final answer does not match the output schema: {exc}"}
    except ToolResultNotJSONError as exc:
        if strict_json:
            raise
        result = {"error": str(exc)}
    except ToolError as exc:
        result = {"error": str(exc)}
    except TimeoutError:
        tool = agent.find_tool(name)
        timeout = tool.timeout if tool else None
        result = {"error": f"Tool {name!r} timed out after {timeout:g} s."}
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log("warning", f"tool {name} raised", exc)
        result = {"error": f"Tool {name!r} raised {type(exc).__name__}: {exc}"}
    if "error" in result:
        host.working = agent.load_state(before)
    emit({"type": "tool_end", "toolCallId": call["id"], "toolName": name, **result})
    after = _dump(agent, host.working)
    if after != before:
        await call_hook(agent.hooks.on_state_change, ctx, before, after)
    block = tool_result_block(call, result)
    await call_hook(agent.hooks.on_message, ctx, {"role": "user", "content": [block]})
    await call_hook(agent.hooks.after_tool, ctx, call, result)
    return block, final


def _dump(agent: Agent, working: Any) -> dict[str, Any]:
    return copy.deepcopy(agent.validate_state(working))
