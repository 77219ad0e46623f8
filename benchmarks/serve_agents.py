"""The agents module ``helix serve --agents benchmarks.serve_agents`` loads for figure 3.

One agent, ``talker``, whose zero-latency model streams ``$HELIX_BENCH_DELTAS`` text
deltas in a single step, so a session with that many stored chunks is built through the
served Worker itself.
"""

from __future__ import annotations

import os
from typing import Any

from helix_lab import Agent, AgentRegistry
from helix_lab.llm import ScriptedLLM, Turn

from .common import TINY_USAGE, words

registry = AgentRegistry()
registry.register(Agent(name="talker", max_steps=2, register=False))


def llm_adapter(env: Any, ctx: Any) -> ScriptedLLM:
    deltas = int(os.environ.get("HELIX_BENCH_DELTAS", "1000"))
    return ScriptedLLM([Turn(text=words(deltas), usage=TINY_USAGE)])
