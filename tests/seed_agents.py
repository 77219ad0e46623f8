"""The agents module of the seed-contract tests on ``helix serve`` (``--agents seed_agents``).

It builds its own ``AgentServer`` the way the seed's ``agent-server.ts`` does, with the
parts of the seed's contract that a Worker's author writes:

- agents come from a custom resolver object with ``resolve``/``has`` (the seed's
  ``AgentResolverInterface``), not an ``AgentRegistry``;
- ``before_start`` answers with the seed's plain ``{"abort": True, "response": ...}``
  when the message is ``"forbidden"``;
- the logger has the seed's ``Logger`` shape: ``debug``, ``info``, ``warn``, ``error``
  and no ``warning``.

The agent and its model are :mod:`e2e_scenario`'s ``stepper``.
"""

from __future__ import annotations

from typing import Any

import e2e_scenario

from helix_lab import Agent, AgentNotFoundError, ServerHooks, create_agent_server
from helix_lab.runtime.http import json_response

__all__ = ["AgentServer", "SeedLogger", "SeedResolver", "refuse_forbidden"]


class SeedResolver:
    """``AgentResolverInterface``: ``resolve(agent_type, context)`` and ``has(agent_type)``."""

    def __init__(self, *agents: Agent) -> None:
        self.agents = {a.name: a for a in agents}
        self.resolved: list[str] = []

    def resolve(self, agent_type: str, context: Any) -> Agent:
        if agent_type not in self.agents:
            raise AgentNotFoundError(agent_type, sorted(self.agents))
        self.resolved.append(agent_type)
        return self.agents[agent_type]

    def has(self, agent_type: str) -> bool:
        return agent_type in self.agents


class SeedLogger:
    """The seed's ``Logger``: debug, info, warn, error; records what it is told."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def debug(self, message: str, *args: Any, **kwargs: Any) -> None:
        self.lines.append(("debug", message))

    def info(self, message: str, *args: Any, **kwargs: Any) -> None:
        self.lines.append(("info", message))

    def warn(self, message: str, *args: Any, **kwargs: Any) -> None:
        self.lines.append(("warn", message))

    def error(self, message: str, *args: Any, **kwargs: Any) -> None:
        self.lines.append(("error", message))


def refuse_forbidden(context: Any) -> dict[str, Any] | None:
    """A ``before_start`` hook returning the seed's ``AbortResult`` as a plain dict."""
    if context.body.input.message == "forbidden":
        return {"abort": True, "response": json_response(
            {"error": {"code": "forbidden", "message": "Not this message."}}, status=403)}
    return None


resolver = SeedResolver(e2e_scenario.stepper)
logger = SeedLogger()
AgentServer = create_agent_server(llm_adapter=e2e_scenario.llm_adapter, agents=resolver,
                                  hooks=ServerHooks(before_start=refuse_forbidden),
                                  logger=logger)
