"""The Worker's agents: which module defines them, and which model they use by default.

``HELIX_AGENTS_MODULE`` (a var; default ``helix_lab.examples``) is imported on first use.
It may define ``AgentServer`` (built with ``create_agent_server``), which is used as is;
otherwise its agents are ``registry`` (an ``AgentRegistry``) if it has one, else the
``Agent(...)`` objects it defines (and any registered by hand in ``default_registry``),
and its ``llm_adapter``
(``(env, ctx) -> LLMAdapter``) if it has one, else :func:`default_llm_adapter`: Claude
through the Worker's ``fetch`` when ``env`` has an ``ANTHROPIC_API_KEY``, the offline
model otherwise.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Any

from ..errors import UserError
from ..runtime.registry import (
    AgentRegistry,
    NamespaceAgents,
    default_registry,
    registered_types,
)
from ..runtime.server import AgentServer, create_agent_server

__all__ = ["DEFAULT_AGENTS_MODULE", "AgentsUnavailable", "LoadedAgents",
           "default_llm_adapter", "load_agents"]

DEFAULT_AGENTS_MODULE = "helix_lab.examples"

_LOADED: dict[str, LoadedAgents] = {}


class AgentsUnavailable(UserError):
    """The agents module could not be loaded; answered as a 503 naming the fix."""


@dataclass
class LoadedAgents:
    """The server class built from an agents module."""

    server_class: type[AgentServer]

    def agent_types(self) -> list[str]:
        """The agent types, when the module's resolver can list them."""
        return registered_types(self.server_class.config.agents)


def default_llm_adapter(env: Any, context: Any) -> Any:
    """Claude through the Worker's fetch when there is a key, else the offline model."""
    key = env.get("ANTHROPIC_API_KEY")
    if key:
        from workers import fetch as worker_fetch

        from .fetch_llm import FetchAnthropicLLM

        return FetchAnthropicLLM(key, fetch=worker_fetch, base_url=env.get("ANTHROPIC_BASE_URL"))
    from ..llm.offline import OfflineLLM

    return OfflineLLM()


def load_agents(env: Any) -> LoadedAgents:
    """Import the agents module named by ``HELIX_AGENTS_MODULE`` (once) and build the server."""
    name = env.get("HELIX_AGENTS_MODULE") or DEFAULT_AGENTS_MODULE
    loaded = _LOADED.get(name)
    if loaded is not None:
        return loaded
    try:
        module = importlib.import_module(name)
    except Exception as exc:
        raise AgentsUnavailable(
            f"The agents module {name!r} failed to import ({type(exc).__name__}: {exc}). "
            "Fix it, or set HELIX_AGENTS_MODULE to a module that defines agents.") from None
    server_class = getattr(module, "AgentServer", None)
    if not (isinstance(server_class, type) and issubclass(server_class, AgentServer)):
        registry: AgentRegistry | NamespaceAgents | None = getattr(module, "registry", None)
        if not isinstance(registry, AgentRegistry):
            registry = NamespaceAgents(vars(module), default_registry)
        server_class = create_agent_server(
            llm_adapter=getattr(module, "llm_adapter", None) or default_llm_adapter,
            agents=registry, logger=logging.getLogger("helix_lab.worker"))
    loaded = _LOADED[name] = LoadedAgents(server_class)
    return loaded
