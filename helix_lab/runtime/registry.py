"""``AgentRegistry``: agent type names to agents, static or built per request by a factory.

A factory gets an :class:`AgentFactoryContext` (env, session, run), which is how an agent
can read a secret such as an API key from the Worker's environment at run time rather
than at import time.

Defining an ``Agent`` registers it nowhere. Registration is explicit (``register``,
``register_factory``), or scoped: ``with registry.override(agent): ...`` puts an agent in
for the block and restores the registry after it. Where agents are found by name without
a registry (``%%helix_agent NAME`` in a notebook, an agents module for ``helix serve`` and
``helix deploy``), :class:`NamespaceAgents` reads them from the namespace that defines
them, live: the notebook's variables, or the module's globals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
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
    "NamespaceAgents",
    "agents_in",
    "default_registry",
    "registered_types",
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

    @contextmanager
    def override(self, *agents: Agent, **factories: AgentFactory) -> Iterator[AgentRegistry]:
        """Register ``agents`` (and ``name=factory`` pairs) for the ``with`` block only.

        They replace what their names had; when the block ends, the registry is exactly as
        it was before it, whatever was registered or removed inside::

            with default_registry.override(my_agent, brainstorm=make_brainstorm):
                ...
        """
        saved = dict(self._agents), dict(self._factories)
        try:
            for agent in agents:
                self.register(agent)
            for agent_type, factory in factories.items():
                self.register_factory(agent_type, factory)
            yield self
        finally:
            self._agents, self._factories = saved

    def __contains__(self, agent_type: object) -> bool:
        return isinstance(agent_type, str) and self.has(agent_type)

    def __repr__(self) -> str:
        return f"AgentRegistry({self.get_registered_types()})"


default_registry = AgentRegistry()
"""A registry for agents registered by hand; the notebook workbench and agents modules
consult it after the agents they define (see :class:`NamespaceAgents`)."""


def agents_in(namespace: Mapping[str, Any]) -> dict[str, Agent]:
    """The agents a namespace holds, by name: its ``Agent`` values and, recursively, their
    sub-agents, except those made with ``register=False``. A later value wins a name."""
    from ..agent import Agent

    found: dict[str, Agent] = {}

    def add(agent: Agent) -> None:
        if not agent.register or found.get(agent.name) is agent:
            return
        for sub in agent.agents:
            add(sub)
        found[agent.name] = agent

    for value in list(namespace.values()):
        if isinstance(value, Agent):
            add(value)
    return found


class NamespaceAgents:
    """The agents of a namespace, read when asked, then those of ``fallbacks`` in order.

    A notebook's variables change from cell to cell, so nothing is cached: an agent
    defined (or redefined) in one cell runs by name in the next. A name defined in the
    namespace wins over the same name in a fallback.
    """

    def __init__(self, namespace: Mapping[str, Any], *fallbacks: AgentRegistry) -> None:
        self.namespace = namespace
        self.fallbacks = fallbacks

    def __call__(self, agent_type: str, context: AgentFactoryContext) -> Agent:
        """An :data:`AgentResolver`, for ``create_agent_server(agents=...)``."""
        return self.resolve(agent_type, context)

    def resolve(self, agent_type: str, context: AgentFactoryContext) -> Agent:
        agent = agents_in(self.namespace).get(agent_type)
        if agent is not None:
            return agent
        for registry in self.fallbacks:
            if registry.has(agent_type):
                return registry.resolve(agent_type, context)
        raise AgentNotFoundError(agent_type, self.get_registered_types())

    def get(self, agent_type: str) -> Agent | None:
        """The agent of that name (factories are not called), or ``None``."""
        agent = agents_in(self.namespace).get(agent_type)
        for registry in self.fallbacks:
            if agent is not None:
                break
            agent = registry.get(agent_type)
        return agent

    def has(self, agent_type: str) -> bool:
        return agent_type in agents_in(self.namespace) or any(
            registry.has(agent_type) for registry in self.fallbacks)

    def get_registered_types(self) -> list[str]:
        names = set(agents_in(self.namespace))
        for registry in self.fallbacks:
            names.update(registry.get_registered_types())
        return sorted(names)

    def __contains__(self, agent_type: object) -> bool:
        return isinstance(agent_type, str) and self.has(agent_type)

    def __repr__(self) -> str:
        return f"NamespaceAgents({self.get_registered_types()})"


def registered_types(agents: Any) -> list[str]:
    """The agent types ``agents`` can list (``get_registered_types``); ``[]`` for a resolver
    that cannot, such as a function or a seed-style object with only ``resolve``/``has``."""
    lister = getattr(agents, "get_registered_types", None)
    return list(lister()) if callable(lister) else []
