"""``Agent`` and ``LLMConfig``: the declarative definition of a tool-using agent.

An agent is data: a name, a system prompt, tools, optional pydantic schemas for its state
and its final output, sub-agents, and per-tool hooks. Running it is the runtime's job.
Defining an ``Agent`` registers it nowhere: an ``AgentRegistry`` takes it explicitly, and
the notebook workbench and agents modules find the agents they define by name (see
:mod:`helix_lab.runtime.registry`), so an agent defined in one notebook cell can be run
by name in the next.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import pydantic

from .errors import UserError
from .pricing import Price, parse_price
from .tools import Tool

__all__ = ["DEFAULT_MODEL", "FINISH_TOOL", "SUBAGENT_PREFIX", "Agent", "AgentHooks", "LLMConfig"]

DEFAULT_MODEL = "claude-sonnet-5-5"
"""The newest Sonnet the bundled anthropic SDK knows (claude-sonnet-4-5 ends on 2026-11-30)."""
FINISH_TOOL = "__finish__"
SUBAGENT_PREFIX = "subagent__"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")

ToolHook: TypeAlias = Callable[..., Awaitable[None] | None]


@dataclass
class LLMConfig:
    """Which model to call, and how."""

    model: str = DEFAULT_MODEL
    max_tokens: int = 4096
    temperature: float | None = None
    thinking_budget: int | None = None
    """Tokens of extended thinking per call; ``None`` turns thinking off."""
    pricing: Price | dict[str, float] | None = None
    """Dollars per million tokens for this model (a :class:`~helix_lab.pricing.Price` or a
    dict of ``input``, ``output``, ``cache_read``, ``cache_write``), instead of the shipped
    table; the only way to price a model the table does not know (OpenAI-compatible ones)."""
    max_cost_usd: float | None = None
    """A budget: the run is interrupted (reason ``budget_exceeded``) at the end of the step
    that takes the session's spend past it. Resume with a higher budget to go on."""

    def __post_init__(self) -> None:
        if self.pricing is not None:
            try:
                self.pricing = parse_price(self.pricing)
            except (TypeError, ValueError) as exc:
                raise UserError(f"LLMConfig(pricing=...): {exc}") from None
        budget = self.max_cost_usd
        if budget is not None and (isinstance(budget, bool) or not isinstance(
                budget, int | float) or budget <= 0):
            raise UserError(f"LLMConfig(max_cost_usd=...) must be a positive number of "
                            f"dollars, got {budget!r}.")


@dataclass
class AgentHooks:
    """Per-tool hooks, called in this order: before_tool, the tool, on_state_change,
    on_message, after_tool. Each may be sync or async.

    - ``before_tool(ctx, call)`` where ``call`` is ``{"id", "name", "input"}``
    - ``on_state_change(ctx, old, new)`` with the state as dicts, only when it changed
    - ``on_message(ctx, message)`` with the tool-result message
    - ``after_tool(ctx, call, result)`` where ``result`` is ``{"output"}`` or ``{"error"}``
    """

    before_tool: ToolHook | None = None
    on_state_change: ToolHook | None = None
    on_message: ToolHook | None = None
    after_tool: ToolHook | None = None


@dataclass(eq=False)
class Agent:
    """A tool-using agent. See the module docstring."""

    name: str
    system_prompt: str = "You are a helpful assistant."
    tools: list[Tool] = field(default_factory=list)
    state_schema: type[pydantic.BaseModel] | None = None
    output_schema: type[pydantic.BaseModel] | None = None
    llm_config: LLMConfig = field(default_factory=LLMConfig)
    max_steps: int = 50
    agents: list[Agent] = field(default_factory=list)
    """Sub-agents, each offered to the model as a ``subagent__<name>`` tool."""
    hooks: AgentHooks = field(default_factory=AgentHooks)
    description: str = ""
    """What this agent does, shown to a parent agent that can call it."""
    register: bool = True
    """Found by name where it is defined: ``%%helix_agent NAME`` for an agent in the
    notebook, ``helix serve`` and ``helix deploy`` for one in an agents module. ``False``
    keeps it out of those listings (an ``AgentRegistry`` still takes it explicitly)."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise UserError(
                f"Agent name {self.name!r} is not valid: use a letter, then letters, digits, "
                "'_' or '-' (at most 64)."
            )
        if self.max_steps < 1:
            raise UserError(f"max_steps must be at least 1, got {self.max_steps}.")
        for t in self.tools:
            if not isinstance(t, Tool):
                raise UserError(f"Agent {self.name!r}: {t!r} is not a tool; decorate it with @tool.")
        names = [t.name for t in self.tools] + [SUBAGENT_PREFIX + a.name for a in self.agents]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise UserError(f"Agent {self.name!r} has two tools named {', '.join(duplicates)}.")
        for schema, label in ((self.state_schema, "state_schema"),
                              (self.output_schema, "output_schema")):
            if schema is not None and not (
                isinstance(schema, type) and issubclass(schema, pydantic.BaseModel)
            ):
                raise UserError(f"{label} must be a pydantic BaseModel subclass, got {schema!r}.")

    # -- what the model sees ------------------------------------------------------------

    def tool_specs(self) -> list[dict[str, Any]]:
        specs = [t.spec() for t in self.tools]
        for sub in self.agents:
            specs.append({
                "name": SUBAGENT_PREFIX + sub.name,
                "description": sub.description or f"Delegate a task to the {sub.name} agent.",
                "input_schema": {
                    "type": "object",
                    "properties": {"message": {"type": "string",
                                               "description": "The task for the sub-agent."}},
                    "required": ["message"],
                },
            })
        if self.output_schema is not None:
            schema = self.output_schema.model_json_schema()
            schema.pop("title", None)
            specs.append({
                "name": FINISH_TOOL,
                "description": "Call this exactly once, when you are done, with the final answer.",
                "input_schema": schema,
            })
        return specs

    def find_tool(self, name: str) -> Tool | None:
        return next((t for t in self.tools if t.name == name), None)

    def find_subagent(self, tool_name: str) -> Agent | None:
        if not tool_name.startswith(SUBAGENT_PREFIX):
            return None
        wanted = tool_name[len(SUBAGENT_PREFIX):]
        return next((a for a in self.agents if a.name == wanted), None)

    # -- state ----------------------------------------------------------------------------

    def initial_state(self, given: dict[str, Any] | None = None) -> dict[str, Any]:
        """The starting state as a dict, validated against ``state_schema``."""
        return self.validate_state(given or {})

    def validate_state(self, data: Any) -> dict[str, Any]:
        if self.state_schema is None:
            if not isinstance(data, dict):
                raise UserError(f"State must be a JSON object, got {type(data).__name__}.")
            return data
        if isinstance(data, self.state_schema):
            return data.model_dump(mode="json")
        return self.state_schema.model_validate(data).model_dump(mode="json")

    def load_state(self, data: dict[str, Any]) -> Any:
        """The state object a tool sees: a ``state_schema`` instance, or a dict."""
        if self.state_schema is None:
            return data
        return self.state_schema.model_validate(data)

    def __repr__(self) -> str:
        tools = ", ".join(t.name for t in self.tools)
        return f"Agent(name={self.name!r}, tools=[{tools}], max_steps={self.max_steps})"

