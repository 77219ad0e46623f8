"""helix_lab: a Jupyter workbench for durable, tool-using LLM agents.

In a notebook::

    %load_ext helix_lab

    %%helix_agent researcher
    What do we know about sea otters?

In Python::

    from helix_lab import Agent, tool, ToolContext, LLMConfig

Public names are imported lazily, so ``import helix_lab`` stays fast: pydantic, the model
SDKs, httpx and the widgets load the first time something needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Agent": "helix_lab.agent",
    "AgentHooks": "helix_lab.agent",
    "LLMConfig": "helix_lab.agent",
    "tool": "helix_lab.tools",
    "Tool": "helix_lab.tools",
    "ToolContext": "helix_lab.tools",
    "AgentRegistry": "helix_lab.runtime.registry",
    "default_registry": "helix_lab.runtime.registry",
    "create_agent_server": "helix_lab.runtime.server",
    "ServerHooks": "helix_lab.runtime.hooks",
    "AbortResult": "helix_lab.runtime.hooks",
    "ExecutionState": "helix_lab.runtime.hooks",
    "LocalNamespace": "helix_lab.runtime.namespace",
    "Backend": "helix_lab.client.backend",
    "LocalBackend": "helix_lab.client.backend",
    "RemoteBackend": "helix_lab.client.backend",
    "poll_until": "helix_lab.client.backend",
    "diff_runs": "helix_lab.client.diff",
    "AgentHandle": "helix_lab.client.handle",
    "ScriptedLLM": "helix_lab.llm.scripted",
    "Turn": "helix_lab.llm.scripted",
    "call": "helix_lab.llm.scripted",
    "HelixError": "helix_lab.errors",
    "UserError": "helix_lab.errors",
    "AgentNotFoundError": "helix_lab.errors",
    "RunError": "helix_lab.errors",
    "ToolError": "helix_lab.errors",
    "BackendError": "helix_lab.errors",
}

__all__ = [
    "AbortResult",
    "Agent",
    "AgentHandle",
    "AgentHooks",
    "AgentNotFoundError",
    "AgentRegistry",
    "Backend",
    "BackendError",
    "ExecutionState",
    "HelixError",
    "LLMConfig",
    "LocalBackend",
    "LocalNamespace",
    "RemoteBackend",
    "RunError",
    "ScriptedLLM",
    "ServerHooks",
    "Tool",
    "ToolContext",
    "ToolError",
    "Turn",
    "UserError",
    "__version__",
    "call",
    "create_agent_server",
    "default_registry",
    "diff_runs",
    "load_ipython_extension",
    "poll_until",
    "tool",
    "unload_ipython_extension",
]


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())


def __dir__() -> list[str]:
    return sorted(__all__)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext helix_lab``: register the ``%%helix_agent`` and ``%helix`` magics."""
    from .magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from .magics import unload_ipython_extension as unload

    unload(ipython)


if TYPE_CHECKING:
    from .agent import Agent, AgentHooks, LLMConfig
    from .client.backend import Backend, LocalBackend, RemoteBackend, poll_until
    from .client.diff import diff_runs
    from .client.handle import AgentHandle
    from .errors import AgentNotFoundError, BackendError, HelixError, RunError, ToolError, UserError
    from .llm.scripted import ScriptedLLM, Turn, call
    from .runtime.hooks import AbortResult, ExecutionState, ServerHooks
    from .runtime.namespace import LocalNamespace
    from .runtime.registry import AgentRegistry, default_registry
    from .runtime.server import create_agent_server
    from .tools import Tool, ToolContext, tool
