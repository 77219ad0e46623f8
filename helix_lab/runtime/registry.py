"""``AgentRegistry``: agent type names to agents, static or built per request by a factory.

A factory gets an :class:`AgentFactoryContext` (env, session, run), which is how an agent
can read a secret such as an API key from the Worker's environment at run time rather
than at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from ..errors import AgentNotFoundError, UserError

if TYPE_CHECKING:
    from ..agent import Agent

__all__ = [
    "AgentFactory",
    "AgentFactoryContext",
    "AgentRegistry",
    "AgentResolver",
    "AgentResolverInterface",
    "default_registry",
]


@dataclass
class AgentFactoryContext:
    env: Any
    session_id: str
    run_id: str
    user_id: str | None = None


AgentFactory: TypeAlias = Callable[[AgentFactoryContext], "Agent"]
AgentResolver: TypeAlias = Callable[[str, AgentFactoryContext], "Agent"]


class AgentResolverInterface(Protocol):
    def resolve(self, agent_type: str, context: AgentFactoryContext) -> Agent: ...

    def has(self, agent_type: str) -> bool: ...


class AgentRegistry:
    """Maps agent type names to agents (``register``) or factories (``register_factory``)."""

    def __init__(self) -> None:
        self._agents: dict[str, Agent] = {}
        self._factories: dict[str, AgentFactory] = {}

    def register(self, agent: Agent) -> None:
        """Add ``agent`` under ``agent.name``; a later registration of the name replaces it."""
        from ..agent import Agent

        if not isinstance(agent, Agent):
            raise UserError(f"register() takes an Agent, got {agent!r}.")
        self._factories.pop(agent.name, None)
        self._agents[agent.name] = agent

    def register_factory(self, agent_type: str, factory: AgentFactory) -> None:
        """Build the agent per request: ``factory(AgentFactoryContext) -> Agent``."""
        if not callable(factory):
            raise UserError(f"register_factory() needs a callable, got {factory!r}.")
        self._agents.pop(agent_type, None)
        self._factories[agent_type] = factory

    def resolve(self, agent_type: str, context: AgentFactoryContext) -> Agent:
        """The agent for ``agent_type``; :class:`AgentNotFoundError` lists what exists."""
        if agent_type in self._agents:
            return self._agents[agent_type]
        if agent_type in self._factories:
            return self._factories[agent_type](context)
        raise AgentNotFoundError(agent_type, self.get_registered_types())

    def get(self, agent_type: str) -> Agent | None:
        """The statically registered agent, or ``None`` (factories are not called)."""
        return self._agents.get(agent_type)

    def has(self, agent_type: str) -> bool:
        return agent_type in self._agents or agent_type in self._factories

    def unregister(self, agent_type: str) -> bool:
        found = self.has(agent_type)
        self._agents.pop(agent_type, None)
        self._factories.pop(agent_type, None)
        return found

    def get_registered_types(self) -> list[str]:
        return sorted({*self._agents, *self._factories})

    def clear(self) -> None:
        self._agents.clear()
        self._factories.clear()

    def __contains__(self, agent_type: object) -> bool:
        return isinstance(agent_type, str) and self.has(agent_type)

    def __repr__(self) -> str:
        return f"AgentRegistry({self.get_registered_types()})"


default_registry = AgentRegistry()
"""Where every ``Agent(...)`` registers itself unless ``register=False``."""
