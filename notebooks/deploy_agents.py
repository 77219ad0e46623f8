"""The agents module that deploy.ipynb serves: the bundled researcher.

``helix serve --agents deploy_agents`` (``%helix serve`` in the notebook) imports it by
name, as a deployed Worker imports its ``HELIX_AGENTS_MODULE``: the agents come from
``registry``, the model from ``llm_adapter(env, context)``, called once per run.

Here the model replays ``cassettes/deploy.jsonl``, so the tutorial needs no key and no
network. For Claude, delete ``llm_adapter``: the Worker then calls Claude with the
``ANTHROPIC_API_KEY`` secret (and the deterministic offline model when there is none).
"""

from __future__ import annotations

from typing import Any

from helix_lab import AgentRegistry
from helix_lab.examples import researcher

registry = AgentRegistry()
registry.register(researcher)

CASSETTE = "cassettes/deploy.jsonl"
_replay: Any = None


def llm_adapter(env: Any, context: Any) -> Any:
    """The cassette's next calls; one replay for the whole server, so calls stay in order."""
    global _replay
    if _replay is None:  # opened on first use: a deployed Worker has no cassette file
        from helix_lab.llm import ReplayLLM

        _replay = ReplayLLM(CASSETTE)
    return _replay
